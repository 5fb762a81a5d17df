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

/// Host directories that an image-less container gets read-only; a host entry
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

/// How the container should differ from the defaults, from `run`'s flags.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `KEY=VALUE` entries added to (or replacing in) the environment.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// `UID[:GID]`, numeric.
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// `HOST:CONTAINER[:ro]` bind mounts.
    pub volumes: Vec<String>,
    /// `CONTAINER[:OPTIONS]` tmpfs mounts.
    pub tmpfs: Vec<String>,
    pub read_only: bool,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    pub pids_limit: Option<i64>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Share the host's network namespace (`--network host`).
    pub host_network: bool,
    pub seccomp: SeccompSetting,
    /// CPU limit in CPUs, applied as a CFS quota per 100 ms period.
    pub cpus: Option<f64>,
    /// `--privileged`: every capability, no default seccomp profile, no
    /// masked or read-only paths, writable /sys, and the host's devices.
    pub privileged: bool,
}

/// `--security-opt seccomp=...`.
#[derive(Clone, Debug, Default)]
pub enum SeccompSetting {
    /// podman's profile from [`crate::seccomp::DEFAULT_PROFILE`].
    #[default]
    Default,
    Unconfined,
    File(std::path::PathBuf),
}

/// Normalises a capability name to the `CAP_` form.
fn cap_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("CAP_") || upper == "ALL" {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

impl Settings {
    /// Checks the values that can be wrong before anything is created.
    pub fn check(&self) -> Result<()> {
        for entry in &self.env {
            if !entry.contains('=') || entry.starts_with('=') {
                return Err(Error::InvalidArgument(format!("invalid environment entry \"{entry}\": use KEY=VALUE")));
            }
        }
        if let Some(workdir) = &self.workdir {
            if !workdir.starts_with('/') {
                return Err(Error::InvalidArgument(format!("--workdir \"{workdir}\" must be an absolute path")));
            }
        }
        if let Some(user) = &self.user {
            parse_user(user)?;
        }
        for volume in &self.volumes {
            parse_volume(volume)?;
        }
        for tmpfs in &self.tmpfs {
            if !tmpfs.starts_with('/') {
                return Err(Error::InvalidArgument(format!("--tmpfs \"{tmpfs}\": the destination must be an absolute path")));
            }
        }
        for cap in self.cap_add.iter().chain(&self.cap_drop) {
            let name = cap_name(cap);
            if name != "ALL" && serde_json::from_value::<runtime::oci_spec::runtime::Capability>(json!(name)).is_err() {
                return Err(Error::InvalidArgument(format!("unknown capability \"{cap}\"")));
            }
        }
        Ok(())
    }

    fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = if self.privileged || self.cap_add.iter().any(|c| cap_name(c) == "ALL") {
            // "All" is conman's own bounding set, which can lack
            // capabilities that the kernel supports.
            caps::read(None, caps::CapSet::Bounding)
                .unwrap_or_else(|_| caps::all())
                .into_iter()
                .map(|c| c.to_string())
                .collect()
        } else {
            DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
        };
        for cap in &self.cap_add {
            let name = cap_name(cap);
            if name != "ALL" && !caps.contains(&name) {
                caps.push(name);
            }
        }
        if self.cap_drop.iter().any(|c| cap_name(c) == "ALL") {
            caps.retain(|c| self.cap_add.iter().any(|a| cap_name(a) == *c));
        }
        caps.retain(|c| !self.cap_drop.iter().any(|d| cap_name(d) == *c));
        caps.sort();
        caps
    }
}

pub(crate) fn parse_user(user: &str) -> Result<(u32, u32)> {
    let invalid = || Error::InvalidArgument(format!("invalid --user \"{user}\": use UID or UID:GID (numbers)"));
    let (uid, gid) = match user.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (user, None),
    };
    let uid: u32 = uid.parse().map_err(|_| invalid())?;
    let gid: u32 = match gid {
        Some(gid) => gid.parse().map_err(|_| invalid())?,
        None => uid,
    };
    Ok((uid, gid))
}

/// Splits `HOST:CONTAINER[:ro|rw]` into its parts.
fn parse_volume(volume: &str) -> Result<(String, String, bool)> {
    let invalid = |why: &str| Error::InvalidArgument(format!("invalid --volume \"{volume}\": {why}"));
    let parts: Vec<&str> = volume.split(':').collect();
    let (host, container, read_only) = match parts.as_slice() {
        [host, container] => (*host, *container, false),
        [host, container, "ro"] => (*host, *container, true),
        [host, container, "rw"] => (*host, *container, false),
        [_, _, other] => return Err(invalid(&format!("unknown option \"{other}\" (use ro or rw)"))),
        _ => return Err(invalid("use HOST:CONTAINER[:ro]")),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(invalid("both paths must be absolute"));
    }
    if !Path::new(host).exists() {
        return Err(invalid(&format!("host path {host} does not exist")));
    }
    Ok((host.to_owned(), container.to_owned(), read_only))
}

/// Builds config.json for `record` with `rootfs` as its root.
pub fn build(record: &ContainerRecord, rootfs: &Path, source: &RootfsSource, settings: &Settings) -> Result<Value> {
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
    let cap_list = settings.capabilities();
    match &settings.seccomp {
        SeccompSetting::Unconfined => {}
        // As podman: --privileged drops the default profile, but a profile
        // given with --security-opt still applies.
        SeccompSetting::Default if settings.privileged => {}
        SeccompSetting::File(path) => config["linux"]["seccomp"] = crate::seccomp::load(path, &cap_list)?,
        SeccompSetting::Default => {
            let path = Path::new(crate::seccomp::DEFAULT_PROFILE);
            if path.exists() {
                config["linux"]["seccomp"] = crate::seccomp::load(path, &cap_list)?;
            } else {
                // NOTE: without containers-common there is no profile to
                // apply; the container runs without seccomp, as with
                // `--security-opt seccomp=unconfined`.
                tracing::warn!(profile = %path.display(), "seccomp profile not found; running without seccomp");
            }
        }
    }
    let caps = json!(cap_list);
    config["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps
    });
    config["root"] = json!({ "path": rootfs, "readonly": matches!(source, RootfsSource::Host) || settings.read_only });
    if let Some(hostname) = &settings.hostname {
        config["hostname"] = json!(hostname);
    }
    if !settings.env.is_empty() {
        let env = config["process"]["env"].as_array_mut().expect("env is an array");
        for entry in &settings.env {
            let key = entry.split('=').next().unwrap_or("");
            env.retain(|e| e.as_str().and_then(|e| e.split('=').next()) != Some(key));
            env.push(json!(entry));
        }
    }
    if let Some(workdir) = &settings.workdir {
        config["process"]["cwd"] = json!(workdir);
    }
    if let Some(user) = &settings.user {
        let (uid, gid) = parse_user(user)?;
        config["process"]["user"] = json!({ "uid": uid, "gid": gid });
    }
    let mut resources = json!({ "devices": [{ "allow": settings.privileged, "access": "rwm" }] });
    if let Some(memory) = settings.memory {
        resources["memory"] = json!({ "limit": memory });
    }
    if let Some(pids) = settings.pids_limit {
        resources["pids"] = json!({ "limit": pids });
    }
    if let Some(cpus) = settings.cpus {
        const PERIOD: u64 = 100_000;
        resources["cpu"] = json!({ "quota": (cpus * PERIOD as f64).round() as i64, "period": PERIOD });
    }
    config["linux"]["resources"] = resources;
    if settings.host_network {
        let namespaces = config["linux"]["namespaces"].as_array_mut().expect("namespaces is an array");
        namespaces.retain(|ns| ns["type"] != "network");
    }

    if settings.privileged {
        config["linux"]["maskedPaths"] = json!([]);
        config["linux"]["readonlyPaths"] = json!([]);
        config["linux"]["devices"] = json!(host_devices()?);
    }

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
    if settings.host_network {
        // sysfs of the host's network namespace may not be mounted afresh
        // from a new mount namespace without owning it: bind it instead.
        for mount in mounts.iter_mut() {
            if mount["destination"] == "/sys" {
                *mount = json!({
                    "destination": "/sys", "type": "bind", "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]
                });
            }
        }
        mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
        for file in ["/etc/resolv.conf", "/etc/hosts"] {
            if Path::new(file).exists() && !mounts.iter().any(|m| m["destination"] == file) {
                mounts.push(bind_read_only(Path::new(file)));
            }
        }
    }
    if settings.privileged {
        for mount in mounts.iter_mut().filter(|m| m["destination"] == "/sys" || m["destination"] == "/sys/fs/cgroup") {
            if let Some(options) = mount["options"].as_array_mut() {
                options.retain(|o| o != "ro");
            }
        }
    }
    for volume in &settings.volumes {
        let (host, container, read_only) = parse_volume(volume)?;
        let mut options = vec!["rbind", "rprivate"];
        if read_only {
            options.push("ro");
        }
        mounts.push(json!({ "destination": container, "type": "bind", "source": host, "options": options }));
    }
    for tmpfs in &settings.tmpfs {
        let (destination, options) = match tmpfs.split_once(':') {
            Some((destination, options)) => (destination, options.split(',').map(str::to_owned).collect::<Vec<_>>()),
            None => (tmpfs.as_str(), vec!["nosuid".to_owned(), "nodev".to_owned()]),
        };
        mounts.retain(|m| m["destination"] != destination);
        mounts.push(json!({ "destination": destination, "type": "tmpfs", "source": "tmpfs", "options": options }));
    }
    Ok(config)
}

/// Device nodes that the runtime creates in every container's /dev.
const DEFAULT_DEVICE_NAMES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty", "console", "ptmx"];

/// Lists the character and block devices directly in the host's /dev as
/// `linux.devices` entries, for `--privileged`. Devices in subdirectories
/// (`/dev/net/tun`, `/dev/dri/…`) are not included.
fn host_devices() -> Result<Vec<Value>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    let entries = fs::read_dir("/dev").map_err(|err| Error::io("read /dev", err))?;
    let mut devices = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if DEFAULT_DEVICE_NAMES.contains(&name.as_str()) {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        let kind = match meta.file_type() {
            t if t.is_char_device() => "c",
            t if t.is_block_device() => "b",
            _ => continue,
        };
        let rdev = meta.rdev();
        devices.push(json!({
            "path": entry.path(),
            "type": kind,
            "major": libc::major(rdev),
            "minor": libc::minor(rdev),
            "fileMode": meta.mode() & 0o777,
            "uid": meta.uid(),
            "gid": meta.gid(),
        }));
    }
    devices.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    Ok(devices)
}
