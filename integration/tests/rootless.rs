//! Rootless containers: the runtime run by an unprivileged user, with a
//! user namespace, state under $XDG_RUNTIME_DIR, no cgroups, and id maps
//! written directly (the user's own ids) or through newuidmap/newgidmap.
//!
//! The tests create the user `conman-rootless` (useradd, which also gives
//! it a range in /etc/subuid and /etc/subgid) when it does not exist.

use std::fs;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use conman_integration::{runtime_bin, Bundle, Output, Runtime, Spawned, COMMAND_TIMEOUT};
use serde_json::{json, Value};

const USER: &str = "conman-rootless";

/// The test user's uid and gid, and the start of its subordinate id range.
struct TestUser {
    uid: u32,
    gid: u32,
    subordinate_start: u32,
}

fn test_user() -> &'static TestUser {
    static USER_IDS: OnceLock<TestUser> = OnceLock::new();
    USER_IDS.get_or_init(|| {
        let exists = Command::new("id").arg("-u").arg(USER).output().is_ok_and(|o| o.status.success());
        if !exists {
            let status = Command::new("useradd")
                .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin"])
                .args(["--add-subids-for-system", USER])
                .status()
                .expect("run useradd");
            assert!(status.success(), "useradd {USER} failed");
        }
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").arg(flag).arg(USER).output().expect("run id");
            String::from_utf8_lossy(&out.stdout).trim().parse().expect("a numeric id")
        };
        let subuid = fs::read_to_string("/etc/subuid").unwrap_or_default();
        let subordinate_start = subuid
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{USER}:")))
            .and_then(|rest| rest.split(':').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no /etc/subuid range for {USER}"));
        TestUser { uid: id("-u"), gid: id("-g"), subordinate_start }
    })
}

/// Gives `path` and everything under it to the test user.
fn give_to_user(path: &Path) {
    let user = test_user();
    chown(path, Some(user.uid), Some(user.gid)).unwrap();
    if path.is_dir() && !path.is_symlink() {
        for entry in fs::read_dir(path).unwrap().flatten() {
            give_to_user(&entry.path());
        }
    }
}

/// A runtime command run as the test user, with XDG_RUNTIME_DIR set to
/// `runtime_dir` and no --root: the default state directory applies. The
/// binary is a copy inside `runtime_dir`, because the build directory may
/// be closed to other users (a checkout under a 0700 directory).
fn as_user(runtime_dir: &Path, args: &[&str]) -> Command {
    let user = test_user();
    let binary = runtime_dir.join("bin").join("conman-runtime");
    if !binary.exists() {
        fs::create_dir_all(binary.parent().unwrap()).expect("create the binary directory");
        fs::copy(runtime_bin(), &binary).expect("copy conman-runtime for the test user");
        give_to_user(binary.parent().unwrap());
    }
    let mut command = Command::new(&binary);
    command.args(args).env("XDG_RUNTIME_DIR", runtime_dir).uid(user.uid).gid(user.gid);
    command
}

/// Deletes the user's container `id` when dropped.
struct DeleteAsUser(PathBuf, String);

impl Drop for DeleteAsUser {
    fn drop(&mut self) {
        let _ = as_user(&self.0, &["delete", "--force", &self.1]).output();
    }
}

/// A bundle with the config.json that `spec --rootless` writes for the
/// test user, whose process runs `script`, owned by the test user.
fn rootless_bundle(rt: &Runtime, script: &str, change: impl FnOnce(&mut Value)) -> Bundle {
    let mut bundle = Bundle::new(rt);
    let spec_dir = rt.tempdir("rootless-spec");
    give_to_user(&spec_dir);
    let out = Spawned::new(as_user(&spec_dir, &["spec", "--rootless", "--bundle", spec_dir.to_str().unwrap()]))
        .wait(COMMAND_TIMEOUT);
    assert_eq!(out.code, 0, "spec --rootless as {USER}: {out}");
    let text = fs::read_to_string(spec_dir.join("config.json")).expect("read the rootless config.json");
    let mut config: Value = serde_json::from_str(&text).expect("config.json is JSON");
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["sh", "-c", script]);
    change(&mut config);
    bundle.edit(|current| *current = config);
    give_to_user(bundle.path());
    bundle
}

fn user_runtime_dir(rt: &Runtime) -> PathBuf {
    let dir = rt.tempdir("xdg");
    give_to_user(&dir);
    dir
}

fn run_as_user(rt: &Runtime, bundle: &Bundle, name: &str) -> (Output, PathBuf, String) {
    let runtime_dir = user_runtime_dir(rt);
    let id = format!("{name}-{}", std::process::id());
    let _delete = DeleteAsUser(runtime_dir.clone(), id.clone());
    let out = Spawned::new(as_user(&runtime_dir, &["run", "--bundle", bundle.path_str(), &id])).wait(COMMAND_TIMEOUT);
    (out, runtime_dir, id)
}

#[test]
fn own_id_mapping() {
    let rt = Runtime::new();
    let bundle = rootless_bundle(&rt, "id -u; cat /proc/self/uid_map", |_| {});

    let (out, runtime_dir, id) = run_as_user(&rt, &bundle, "rootless");

    assert_eq!(out.code, 0, "{out}");
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("0"), "uid inside: {out}");
    let map: Vec<u32> = lines.next().unwrap_or("").split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(map, [0, test_user().uid, 1], "{out}");
    let state_root = runtime_dir.join("conman-runtime");
    assert!(state_root.is_dir(), "no state root under XDG_RUNTIME_DIR");
    assert!(!state_root.join(&id).exists(), "state left after run");
}

#[test]
fn subordinate_ranges_through_newuidmap() {
    let rt = Runtime::new();
    let user = test_user();
    let start = user.subordinate_start;
    let bundle = rootless_bundle(&rt, "cat /proc/self/uid_map /proc/self/gid_map", |config| {
        config["linux"]["uidMappings"] =
            json!([{ "containerID": 0, "hostID": user.uid, "size": 1 }, { "containerID": 1, "hostID": start, "size": 1000 }]);
        config["linux"]["gidMappings"] =
            json!([{ "containerID": 0, "hostID": user.gid, "size": 1 }, { "containerID": 1, "hostID": start, "size": 1000 }]);
    });

    let (out, _, _) = run_as_user(&rt, &bundle, "rootless-ranges");

    assert_eq!(out.code, 0, "{out}");
    let lines: Vec<Vec<u32>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[1], [1, start, 1000], "second uid range: {out}");
    assert_eq!(lines[3], [1, start, 1000], "second gid range: {out}");
}

#[test]
fn foreign_range_refused_by_newuidmap() {
    let rt = Runtime::new();
    let bundle = rootless_bundle(&rt, "true", |config| {
        // Host uid 0 is not the user's to map.
        config["linux"]["uidMappings"] = json!([{ "containerID": 0, "hostID": 0, "size": 1 }]);
    });

    let (out, runtime_dir, id) = run_as_user(&rt, &bundle, "rootless-foreign");

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("newuidmap"), "{out}");
    assert!(!runtime_dir.join("conman-runtime").join(id).exists(), "state left behind");
}

#[test]
fn limits_need_delegated_cgroup() {
    let rt = Runtime::new();
    let bundle = rootless_bundle(&rt, "true", |config| {
        config["linux"]["resources"] = json!({ "pids": { "limit": 10 } });
    });

    let (out, _, _) = run_as_user(&rt, &bundle, "rootless-limits");

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("delegate a cgroup"), "{out}");
    assert!(out.stderr.contains(&test_user().uid.to_string()), "the message does not name the uid: {out}");
}
