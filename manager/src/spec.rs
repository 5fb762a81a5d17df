//! The OCI configuration that the manager generates for a container.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::store::ContainerRecord;
use crate::RootfsSource;

/// Capabilities a container gets by default: the set podman grants.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// Host directories an image-less container sees read-only; a host entry
/// that is a symlink (`/bin` -> `usr/bin` on merged-/usr systems) becomes
/// the same symlink.
const HOST_DIRECTORIES: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// Files and directories of the host's /etc that programs need to run:
/// users and groups, name resolution, the dynamic linker's cache, time zone,
/// Debian's alternatives, and CA certificates. Nothing else of /etc (no
/// /etc/shadow) is visible.
const HOST_ETC_ENTRIES: &[&str] = &[
    "passwd",
    "group",
    "hosts",
    "resolv.conf",
    "nsswitch.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "alternatives",
    "ssl",
    "ca-certificates",
];

/// Prepares the empty root of an image-less container: the symlinks that
/// mirror the host's, and the directories that mounts land on.
pub fn prepare_host_rootfs(dir: &Path) -> Result<()> {
    let create = |path: &Path| {
        fs::create_dir_all(path).map_err(|err| Error::io(format!("create {}", path.display()), err))
    };
    create(dir)?;
    for host in HOST_DIRECTORIES {
        let host = Path::new(host);
        let target = dir.join(host.strip_prefix("/").unwrap());
        match fs::symlink_metadata(host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = fs::read_link(host).map_err(|err| Error::io(format!("read link {}", host.display()), err))?;
                symlink(&link, &target).map_err(|err| Error::io(format!("create symlink {}", target.display()), err))?;
            }
            Ok(meta) if meta.is_dir() => create(&target)?,
            _ => {}
        }
    }
    create(&dir.join("etc"))?;
    create(&dir.join("tmp"))?;
    Ok(())
}

fn bind_read_only(source: &Path) -> Value {
    json!({
        "destination": source,
        "type": "bind",
        "source": source,
        "options": ["rbind", "ro", "nosuid", "nodev", "rprivate"]
    })
}

/// Builds config.json for `record` with `rootfs` as its root.
pub fn build(record: &ContainerRecord, rootfs: &Path, source: &RootfsSource) -> Result<Value> {
    let mut config = runtime::spec::default_config(false, 0, 0);
    let short_id = &record.id[..12];
    config["hostname"] = json!(short_id);
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(record.command);
    config["process"]["noNewPrivileges"] = json!(false);
    config["process"]["env"] = json!([
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "TERM=xterm",
        "container=conman",
        format!("HOSTNAME={short_id}"),
    ]);
    let caps = json!(DEFAULT_CAPABILITIES);
    config["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps
    });
    config["root"] = json!({ "path": rootfs, "readonly": matches!(source, RootfsSource::Host) });

    let mounts = config["mounts"].as_array_mut().expect("default mounts are an array");
    if let RootfsSource::Host = source {
        for host in HOST_DIRECTORIES {
            let path = Path::new(host);
            if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
                mounts.push(bind_read_only(path));
            }
        }
        for entry in HOST_ETC_ENTRIES {
            let path = Path::new("/etc").join(entry);
            match fs::metadata(&path) {
                Ok(_) => mounts.push(bind_read_only(&path)),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io(format!("stat {}", path.display()), err)),
            }
        }
        let hostname_file = rootfs.join("etc/hostname");
        fs::write(&hostname_file, format!("{short_id}\n"))
            .map_err(|err| Error::io(format!("write {}", hostname_file.display()), err))?;
        mounts.push(json!({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777"]
        }));
    }
    Ok(config)
}
