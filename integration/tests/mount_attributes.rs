//! Mount options that go beyond mount(2) flags: id-mapped bind mounts,
//! recursive attributes (`rro` and the other `r` options, through
//! mount_setattr), `nosymfollow`, and `tmpcopyup`.

use std::fs;
use std::os::unix::fs::MetadataExt;

use conman_integration::{Bundle, Output, Runtime};
use serde_json::json;

fn run(rt: &Runtime, bundle: &Bundle, name: &str) -> Output {
    let id = rt.id(name);
    rt.output(&["run", "--bundle", bundle.path_str(), &id])
}

/// On-disk owner 0 shows as 1000 through a mount mapped 0 to 1000, while
/// the host still sees 0.
#[test]
fn idmapped_bind_shifts_owner() {
    let rt = Runtime::new();
    let source = rt.tempdir("idmap-source");
    fs::write(source.join("file"), "data\n").unwrap();
    let mut bundle = Bundle::with_args(&rt, &["stat", "-c", "%u:%g", "/data/file"]);
    bundle.add_mount(json!({
        "destination": "/data", "type": "bind", "source": source, "options": ["bind"],
        "uidMappings": [{ "containerID": 0, "hostID": 1000, "size": 1 }],
        "gidMappings": [{ "containerID": 0, "hostID": 1000, "size": 1 }]
    }));

    let out = run(&rt, &bundle, "idmap");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "1000:1000", "owner seen through the id-mapped mount");
    let host = fs::metadata(source.join("file")).unwrap();
    assert_eq!((host.uid(), host.gid()), (0, 0), "the host's view changed");
}

#[test]
fn idmap_without_mappings_rejected() {
    let rt = Runtime::new();
    let source = rt.tempdir("idmap-source");
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.add_mount(json!({ "destination": "/data", "type": "bind", "source": source, "options": ["bind", "idmap"] }));
    let id = rt.id("idmap-bad");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("uidMappings"), "{out}");
    assert!(!rt.container_dir(&id).exists(), "state left behind");
}

/// `rro` makes the submounts of an rbind read-only too; `ro` alone leaves
/// them writable.
#[test]
fn recursive_read_only_covers_submounts() {
    let rt = Runtime::new();
    let source = rt.tempdir("rro-source");
    let sub = source.join("sub");
    fs::create_dir(&sub).unwrap();
    rt.mount_tmpfs(&sub);
    let script = "touch /ro/sub/x 2>&1; echo ro=$?; touch /rro/sub/x 2>&1; echo rro=$?";
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", script]);
    bundle.add_mount(json!({ "destination": "/ro", "type": "bind", "source": source, "options": ["rbind", "ro"] }));
    bundle.add_mount(json!({ "destination": "/rro", "type": "bind", "source": source, "options": ["rbind", "rro"] }));

    let out = run(&rt, &bundle, "rro");

    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("ro=0"), "the submount under a plain ro bind should stay writable: {out}");
    assert!(out.stdout.contains("rro=1"), "the submount under rro was writable: {out}");
    assert!(out.stdout.contains("Read-only file system"), "{out}");
}

#[test]
fn nosymfollow_blocks_symlinks() {
    let rt = Runtime::new();
    let script = "echo hi > /m/file; ln -s file /m/link; cat /m/link; echo status=$?";
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", script]);
    bundle.add_mount(json!({ "destination": "/m", "type": "tmpfs", "source": "tmpfs", "options": ["nosymfollow"] }));

    let out = run(&rt, &bundle, "nosymfollow");

    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("status=1"), "the symlink was followed: {out}");
    assert!(!out.stdout.contains("hi"), "{out}");
}

/// The tmpfs starts with the rootfs's files at its destination, and writes
/// to it leave the rootfs unchanged.
#[test]
fn tmpcopyup_copies_rootfs_content() {
    let rt = Runtime::new();
    let script = "cat /seed/file; ls -l /seed/link | grep -c -- '-> file'; echo new > /seed/file; grep /seed /proc/mounts | cut -d' ' -f3";
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", script]);
    let seed = bundle.rootfs().join("seed");
    fs::create_dir(&seed).unwrap();
    fs::write(seed.join("file"), "from the rootfs\n").unwrap();
    std::os::unix::fs::symlink("file", seed.join("link")).unwrap();
    bundle.add_mount(json!({ "destination": "/seed", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"] }));

    let out = run(&rt, &bundle, "tmpcopyup");

    assert_eq!(out.code, 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["from the rootfs", "1", "tmpfs"], "{out}");
    assert_eq!(fs::read_to_string(seed.join("file")).unwrap(), "from the rootfs\n", "the rootfs changed");
}

#[test]
fn tmpcopyup_needs_tmpfs() {
    let rt = Runtime::new();
    let source = rt.tempdir("source");
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.add_mount(json!({ "destination": "/x", "type": "bind", "source": source, "options": ["bind", "tmpcopyup"] }));
    let id = rt.id("tmpcopyup-bind");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("tmpcopyup"), "{out}");
}
