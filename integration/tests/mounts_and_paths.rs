//! Mounts from config.json, and paths in the rootfs that try to lead a
//! mount or a device node outside it.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use conman_integration::{host_mounts_mentioning, Bundle, Output, Runtime};
use serde_json::json;

fn run(rt: &Runtime, bundle: &Bundle, name: &str) -> Output {
    let id = rt.id(name);
    rt.output(&["run", "--bundle", bundle.path_str(), &id])
}

/// Returns the line of /proc/mounts (as printed in the container) whose mount
/// point is `target`.
fn mount_line<'a>(mounts: &'a str, target: &str) -> Option<&'a str> {
    mounts.lines().find(|line| line.split_whitespace().nth(1) == Some(target))
}

#[test]
fn tmpfs_options_applied() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "stat -c %a /scratch /private; cat /proc/mounts"]);
    bundle.add_mount(json!({
        "destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=1777"]
    }));
    // 1777 is also tmpfs's default mode, so a second mount checks that the
    // mode option reaches the kernel at all.
    bundle.add_mount(json!({
        "destination": "/private", "type": "tmpfs", "source": "tmpfs", "options": ["mode=700"]
    }));

    let out = run(&rt, &bundle, "tmpfs");

    assert_eq!(out.code, 0, "{out}");
    let modes: Vec<&str> = out.stdout.lines().take(2).collect();
    assert_eq!(modes, ["1777", "700"], "{out}");
    let line = mount_line(&out.stdout, "/scratch").unwrap_or_else(|| panic!("/scratch not mounted: {out}"));
    assert!(line.starts_with("tmpfs "), "{line}");
    assert!(line.contains("size=1024k"), "{line}");
}

/// Creates a host directory with one file in it, for bind mounts.
fn host_dir_with_file(rt: &Runtime) -> PathBuf {
    let dir = rt.tempdir("host-data");
    fs::write(dir.join("hello.txt"), "from the host\n").unwrap();
    dir
}

#[test]
fn read_only_bind() {
    let rt = Runtime::new();
    let host = host_dir_with_file(&rt);
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "cat /data/hello.txt; echo new > /data/new.txt"]);
    bundle.add_mount(json!({
        "destination": "/data", "type": "bind", "source": host, "options": ["bind", "ro"]
    }));

    let out = run(&rt, &bundle, "bind-ro");

    assert_eq!(out.stdout, "from the host\n", "{out}");
    assert_ne!(out.code, 0, "the write succeeded: {out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!host.join("new.txt").exists(), "the write reached the host");
}

/// Filesystem options such as `mode=` and `size=` mean nothing to a bind
/// mount: they are ignored with a warning, and the flag options next to them
/// still apply.
#[test]
fn bind_ignores_filesystem_options() {
    let rt = Runtime::new();
    let host = host_dir_with_file(&rt);
    let mut bundle = Bundle::with_args(
        &rt,
        &["sh", "-c", "cat /data/hello.txt; grep ' /data ' /proc/self/mountinfo; echo new > /data/new.txt"],
    );
    bundle.add_mount(json!({
        "destination": "/data", "type": "bind", "source": host,
        "options": ["bind", "nosuid", "ro", "mode=755", "size=1k"]
    }));
    let log = rt.tempdir("log").join("runtime.log");
    let id = rt.id("bind-fs-options");

    let out = rt.output(&["--log", log.to_str().unwrap(), "run", "--bundle", bundle.path_str(), &id]);

    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("from the host"), "{out}");
    let mount_options = lines.next().unwrap_or_default().split(' ').nth(5).unwrap_or_default().to_owned();
    assert!(mount_options.split(',').any(|o| o == "ro"), "/data is not read-only: {out}");
    assert!(mount_options.split(',').any(|o| o == "nosuid"), "/data is not nosuid: {out}");
    assert_ne!(out.code, 0, "the write succeeded: {out}");
    assert!(!host.join("new.txt").exists(), "the write reached the host");
    let text = fs::read_to_string(&log).unwrap_or_else(|err| panic!("read {}: {err}", log.display()));
    for option in ["mode=755", "size=1k"] {
        assert!(
            text.lines().any(|line| line.contains("level=warning") && line.contains(&format!("option={option}"))),
            "no warning names {option}: {text}"
        );
    }
}

/// Creates a host directory with a tmpfs mounted on its `sub` directory, and
/// one file in each.
fn host_dir_with_submount(rt: &Runtime) -> PathBuf {
    let dir = rt.tempdir("host-tree");
    fs::write(dir.join("top.txt"), "top\n").unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    rt.mount_tmpfs(&dir.join("sub"));
    fs::write(dir.join("sub/inner.txt"), "inner\n").unwrap();
    dir
}

#[test]
fn rbind_includes_submounts() {
    let rt = Runtime::new();
    let host = host_dir_with_submount(&rt);
    let mut bundle = Bundle::with_args(&rt, &["cat", "/tree/top.txt", "/tree/sub/inner.txt"]);
    bundle.add_mount(json!({
        "destination": "/tree", "type": "none", "source": host, "options": ["rbind"]
    }));

    let out = run(&rt, &bundle, "rbind");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "top\ninner\n");
}

#[test]
fn bind_skips_submounts() {
    let rt = Runtime::new();
    let host = host_dir_with_submount(&rt);
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "cat /tree/top.txt; ls /tree/sub"]);
    bundle.add_mount(json!({
        "destination": "/tree", "type": "none", "source": host, "options": ["bind"]
    }));

    let out = run(&rt, &bundle, "bind");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "top\n", "a plain bind showed the submount");
}

#[test]
fn no_host_mounts_remain() {
    let rt = Runtime::new();
    let host = host_dir_with_file(&rt);
    let mut bundle = Bundle::with_args(&rt, &["sleep", "100"]);
    bundle.add_mount(json!({
        "destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]
    }));
    bundle.add_mount(json!({
        "destination": "/data", "type": "bind", "source": host, "options": ["rbind", "ro"]
    }));
    let id = rt.id("mount-leak");

    rt.create(&bundle, &id);
    rt.ok(&["start", &id]);
    let while_running = host_mounts_mentioning(bundle.path_str());
    rt.ok(&["delete", "--force", &id]);
    let after_delete = host_mounts_mentioning(bundle.path_str());

    assert!(while_running.is_empty(), "container mounts visible on the host: {while_running:#?}");
    assert!(after_delete.is_empty(), "mounts left on the host: {after_delete:#?}");
}

/// Creates the directory under /tmp that a symlink in the rootfs points at.
/// The tests check that nothing appears in it.
fn escape_target(rt: &Runtime) -> PathBuf {
    rt.tempdir("escape-target")
}

fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Makes rootfs/mnt/evil a symlink to `link_target` and mounts a tmpfs on
/// /mnt/evil/x; the mount must land inside the rootfs.
fn assert_mount_stays_inside(link_target: &str, target: &Path, name: &str) {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["cat", "/proc/mounts"]);
    fs::create_dir_all(bundle.rootfs().join("mnt")).unwrap();
    symlink(link_target, bundle.rootfs().join("mnt/evil")).unwrap();
    bundle.add_mount(json!({ "destination": "/mnt/evil/x", "type": "tmpfs", "source": "tmpfs" }));

    let out = run(&rt, &bundle, name);

    assert_eq!(out.code, 0, "{out}");
    assert!(!target.join("x").exists(), "the mount point was made on the host at {}", target.join("x").display());
    assert_eq!(entries(target), Vec::<String>::new(), "files appeared in {}", target.display());
    let inside = bundle.rootfs().join(target.strip_prefix("/").unwrap()).join("x");
    assert!(inside.is_dir(), "the mount point is not inside the rootfs at {}", inside.display());
    let in_container = format!("{}/x", target.display());
    assert!(
        mount_line(&out.stdout, &in_container).is_some_and(|l| l.starts_with("tmpfs ")),
        "no tmpfs at {in_container} in the container: {out}"
    );
}

#[test]
fn mount_via_absolute_symlink() {
    let rt = Runtime::new();
    let target = escape_target(&rt);

    assert_mount_stays_inside(target.to_str().unwrap(), &target, "abs-symlink");
}

#[test]
fn mount_via_relative_symlink() {
    let rt = Runtime::new();
    let target = escape_target(&rt);
    // More "../" than the rootfs is deep, so that outside the rootfs the
    // link would reach /tmp/<dir>.
    let link = format!("../../../../../../../..{}", target.display());

    assert_mount_stays_inside(&link, &target, "rel-symlink");
}

#[test]
fn mount_via_dotdot_destination() {
    let rt = Runtime::new();
    let target = escape_target(&rt);
    let destination = format!("/../../../../../../../..{}/y", target.display());
    let mut bundle = Bundle::with_args(&rt, &["cat", "/proc/mounts"]);
    bundle.add_mount(json!({ "destination": destination, "type": "tmpfs", "source": "tmpfs" }));

    let out = run(&rt, &bundle, "dotdot");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(entries(&target), Vec::<String>::new(), "files appeared in {}", target.display());
    let in_container = format!("{}/y", target.display());
    assert!(
        mount_line(&out.stdout, &in_container).is_some_and(|l| l.starts_with("tmpfs ")),
        "no tmpfs at {in_container} in the container: {out}"
    );
}

#[test]
fn device_via_symlinks() {
    let rt = Runtime::new();
    let target = escape_target(&rt);
    let mut bundle = Bundle::with_args(&rt, &["ls", "-l", "/dev/evil/x", "/dev/evilnode"]);
    // Without the /dev tmpfs, the devices are made in the rootfs's own /dev,
    // where the symlinks are.
    bundle.edit(|config| {
        config["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/dev");
        config["linux"]["devices"] = json!([
            { "path": "/dev/evil/x", "type": "c", "major": 1, "minor": 3 },
            { "path": "/dev/evilnode", "type": "c", "major": 1, "minor": 5 }
        ]);
    });
    let dev = bundle.rootfs().join("dev");
    fs::create_dir_all(&dev).unwrap();
    symlink(&target, dev.join("evil")).unwrap();
    symlink(format!("../../../../../../../..{}/node", target.display()), dev.join("evilnode")).unwrap();

    let out = run(&rt, &bundle, "device");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(entries(&target), Vec::<String>::new(), "device nodes appeared in {}", target.display());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines.iter().any(|l| l.starts_with('c') && l.contains("1,   3")), "{out}");
    assert!(lines.iter().any(|l| l.starts_with('c') && l.contains("1,   5")), "{out}");
}

/// Runs `script` with `sh` in a private mount namespace of its own, with the
/// runtime binary, the state directory, the bundle and `id` as $0 to $3. A
/// container without a mount namespace makes its mounts in the runtime's
/// namespace, so the private one keeps them off the host.
fn in_private_mount_namespace(rt: &Runtime, bundle: &Bundle, id: &str, script: &str) -> Output {
    let mut command = std::process::Command::new("unshare");
    command
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .arg(rt.binary())
        .arg(rt.root())
        .arg(bundle.path())
        .arg(id);
    rt.output_of(command)
}

/// Removes the mount namespace from the bundle's config.
fn drop_mount_namespace(bundle: &mut Bundle) {
    bundle.edit(|config| {
        let namespaces = config["linux"]["namespaces"].as_array_mut().expect("linux.namespaces");
        namespaces.retain(|ns| ns["type"] != "mount");
    });
}

/// Without a mount namespace of its own, the container shares the
/// runtime's and is chrooted into its rootfs, as runc does: it sees the
/// rootfs, its /proc, and a read-only root when `root.readonly` says so.
#[test]
fn no_mount_namespace_chroots_into_rootfs() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(
        &rt,
        &["sh", "-c", "readlink /proc/self/ns/mnt; cat /marker; ls /proc/1/ns >/dev/null && echo proc; touch /new"],
    );
    drop_mount_namespace(&mut bundle);
    bundle.edit(|config| config["root"]["readonly"] = json!(true));
    fs::write(bundle.rootfs().join("marker"), "in the rootfs\n").unwrap();
    let id = rt.id("no-mntns");

    let out = in_private_mount_namespace(
        &rt,
        &bundle,
        &id,
        r#"readlink /proc/self/ns/mnt; "$0" --root "$1" run --bundle "$2" "$3""#,
    );

    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0], lines[1], "the container has a mount namespace of its own: {out}");
    assert_eq!(lines[2], "in the rootfs", "{out}");
    assert_eq!(lines[3], "proc", "{out}");
    assert_ne!(out.code, 0, "touch /new succeeded on a read-only root: {out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!bundle.rootfs().join("new").exists(), "the write reached the rootfs");
    assert!(host_mounts_mentioning(bundle.path_str()).is_empty(), "mounts leaked to the host");
}

/// `exec` in a container that shares the runtime's mount namespace runs in
/// the container's rootfs too, not in the host's root.
#[test]
fn no_mount_namespace_exec_in_rootfs() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sleep", "60"]);
    drop_mount_namespace(&mut bundle);
    fs::write(bundle.rootfs().join("marker"), "in the rootfs\n").unwrap();
    let id = rt.id("no-mntns-exec");

    let out = in_private_mount_namespace(
        &rt,
        &bundle,
        &id,
        r#""$0" --root "$1" create --bundle "$2" "$3" && "$0" --root "$1" start "$3" &&
           "$0" --root "$1" exec "$3" cat /marker; status=$?
           "$0" --root "$1" delete --force "$3"; exit $status"#,
    );

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "in the rootfs\n", "{out}");
    assert!(host_mounts_mentioning(bundle.path_str()).is_empty(), "mounts leaked to the host");
}

/// A read-only tmpfs at /dev still gets its device nodes and the mount
/// points below it, and is read-only once the container runs.
#[test]
fn read_only_dev_tmpfs() {
    let rt = Runtime::new();
    let script = "test -c /dev/null && test -d /dev/pts && echo ready; \
                  touch /dev/new-file 2>/dev/null; echo touch=$?; \
                  grep ' /dev ' /proc/self/mountinfo | cut -d' ' -f6";
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", script]);
    bundle.edit(|config| {
        let mounts = config["mounts"].as_array_mut().unwrap();
        let dev = mounts.iter_mut().find(|m| m["destination"] == "/dev").expect("the default spec mounts /dev");
        dev["options"].as_array_mut().unwrap().push("ro".into());
    });
    let id = rt.id("ro-dev");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"ready"), "{out}");
    assert_eq!(lines.get(1), Some(&"touch=1"), "/dev is writable: {out}");
    assert!(lines.get(2).is_some_and(|options| options.split(',').any(|o| o == "ro")), "mount options of /dev: {out}");
}
