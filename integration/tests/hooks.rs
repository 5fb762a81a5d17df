//! Lifecycle hooks: when each kind runs, in which mount namespace, with
//! which state, and what a failure does.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use conman_integration::{cgroup_dir, Bundle, Runtime};
use serde_json::{json, Value};

/// Writes a hook script that appends "<kind> <mount namespace> <state>" to
/// `log`, and returns its path.
fn recording_hook(rt: &Runtime, log: &Path) -> PathBuf {
    let dir = rt.tempdir("hook");
    let script = dir.join("record.sh");
    let text = format!(
        "#!/bin/sh\necho \"$1 $(readlink /proc/self/ns/mnt) $(cat)\" >> {}\n",
        log.display()
    );
    fs::write(&script, text).expect("write hook script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod hook script");
    script
}

fn hook(path: &Path, kind: &str) -> Value {
    json!({ "path": path, "args": ["record.sh", kind] })
}

#[test]
fn hooks_run_in_order() {
    let rt = Runtime::new();
    let log = rt.tempdir("hook-log").join("log");
    let script = recording_hook(&rt, &log);
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| {
        config["hooks"] = json!({
            "prestart": [hook(&script, "prestart")],
            "createRuntime": [hook(&script, "createRuntime")],
            "createContainer": [hook(&script, "createContainer")],
            "poststart": [hook(&script, "poststart")],
            "poststop": [hook(&script, "poststop")]
        })
    });
    let id = rt.id("hooks");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    let text = fs::read_to_string(&log).expect("hooks wrote the log");
    let kinds: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap_or("")).collect();
    // startContainer runs inside the container, where this script does not
    // exist: `start_container_hook_in_container` covers it.
    assert_eq!(kinds, ["prestart", "createRuntime", "createContainer", "poststart", "poststop"], "{text}");
}

#[test]
fn hook_namespaces_and_state() {
    let rt = Runtime::new();
    let log = rt.tempdir("hook-log").join("log");
    let script = recording_hook(&rt, &log);
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| {
        config["hooks"] = json!({
            "createRuntime": [hook(&script, "createRuntime")],
            "createContainer": [hook(&script, "createContainer")],
            "poststop": [hook(&script, "poststop")]
        })
    });
    let id = rt.id("hook-ns");
    let host_ns = fs::read_link("/proc/self/ns/mnt").expect("read own mount namespace");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    let text = fs::read_to_string(&log).expect("hooks wrote the log");
    let line = |kind: &str| text.lines().find(|l| l.starts_with(kind)).unwrap_or_else(|| panic!("no {kind} line: {text}")).to_owned();
    let namespace = |l: &str| l.split(' ').nth(1).unwrap_or("").to_owned();
    let state = |l: &str| -> Value { serde_json::from_str(l.splitn(3, ' ').nth(2).unwrap_or("")).expect("state JSON") };

    let runtime_line = line("createRuntime");
    let container_line = line("createContainer");
    let poststop_line = line("poststop");
    assert_eq!(namespace(&runtime_line), host_ns.to_string_lossy(), "{text}");
    assert_ne!(namespace(&container_line), host_ns.to_string_lossy(), "createContainer ran in the host's mount namespace: {text}");
    assert_eq!(state(&runtime_line)["id"], id.as_str());
    assert_eq!(state(&runtime_line)["status"], "creating");
    assert!(state(&runtime_line)["pid"].as_i64().unwrap_or(0) > 1, "{text}");
    assert_eq!(state(&poststop_line)["status"], "stopped");
}

#[test]
fn start_container_hook_in_container() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["cat", "/dev/shm/started"]);
    // The hook path resolves inside the container: busybox's sh.
    bundle.edit(|config| {
        config["hooks"] = json!({
            "startContainer": [{ "path": "/bin/sh", "args": ["sh", "-c", "echo inside-$(hostname) > /dev/shm/started"] }]
        })
    });
    let id = rt.id("start-hook");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "inside-conman", "{out}");
}

/// createContainer hooks start in the root filesystem, so a relative path
/// names a file of the container.
#[test]
fn create_container_hook_cwd_is_rootfs() {
    let rt = Runtime::new();
    let cwd_file = rt.tempdir("hook-cwd").join("cwd");
    let mut bundle = Bundle::with_args(&rt, &["ls", "/made-by-hook"]);
    let script = format!("touch ./made-by-hook && pwd > {}", cwd_file.display());
    bundle.edit(|config| {
        config["hooks"] = json!({ "createContainer": [{ "path": "/bin/sh", "args": ["sh", "-c", script] }] })
    });
    let id = rt.id("hook-cwd");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "/made-by-hook", "{out}");
    let cwd = fs::read_to_string(&cwd_file).expect("the hook wrote its cwd");
    assert_eq!(Path::new(cwd.trim()), bundle.rootfs().canonicalize().unwrap());
}

#[test]
fn failing_create_hook_cleans_up() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| {
        config["hooks"] = json!({ "createRuntime": [{ "path": "/bin/sh", "args": ["sh", "-c", "echo hook-broke >&2; exit 3"] }] })
    });
    let id = rt.id("bad-hook");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("createRuntime"), "{out}");
    assert!(out.stderr.contains("hook-broke"), "hook stderr missing: {out}");
    assert!(!rt.container_dir(&id).exists(), "state left: {out}");
    assert!(!cgroup_dir("pids", &id).exists(), "cgroup left: {out}");
}

#[test]
fn failing_poststart_keeps_outcome() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "exit 4"]);
    bundle.edit(|config| config["hooks"] = json!({ "poststart": [{ "path": "/bin/false" }], "poststop": [{ "path": "/bin/false" }] }));
    let id = rt.id("poststart-fails");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 4, "{out}");
    assert!(!rt.container_dir(&id).exists(), "state left: {out}");
}

/// A failed poststart or poststop hook is only a warning: the hooks after
/// it still run, in order, as the runtime spec requires.
#[test]
fn failed_hook_runs_later_hooks() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    let marks = rt.tempdir("hook-marks");
    let mark = |name: &str| {
        json!({ "path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} >> {}/marks", marks.display())] })
    };
    bundle.edit(|config| {
        config["hooks"] = json!({
            "poststart": [{ "path": "/bin/false" }, mark("poststart-after-failure")],
            "poststop": [{ "path": "/bin/false" }, mark("poststop-after-failure")],
        })
    });
    let log = rt.tempdir("log").join("runtime.log");
    let id = rt.id("hook-fails-next-runs");

    let out = rt.output(&["--log", log.to_str().unwrap(), "run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    let marks_text = fs::read_to_string(marks.join("marks")).unwrap_or_default();
    assert_eq!(marks_text, "poststart-after-failure\npoststop-after-failure\n", "{out}");
    let log_text = fs::read_to_string(&log).unwrap_or_else(|err| panic!("read {}: {err}", log.display()));
    for kind in ["poststart", "poststop"] {
        assert!(
            log_text.lines().any(|line| line.contains("level=warning") && line.contains(&format!("{kind} hook #0"))),
            "no warning for the failed {kind} hook: {log_text}"
        );
    }
}

#[test]
fn hook_timeout_enforced() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| {
        config["hooks"] = json!({ "prestart": [{ "path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1 }] })
    });
    let id = rt.id("hook-timeout");
    let started = Instant::now();

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("timed out"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(!rt.container_dir(&id).exists(), "state left: {out}");
}

#[test]
fn relative_hook_path_rejected() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| config["hooks"] = json!({ "prestart": [{ "path": "bin/true" }] }));
    let id = rt.id("relative-hook");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("hooks.prestart"), "{out}");
}
