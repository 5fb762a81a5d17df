//! The `conman` manager: `run` with and without `--rm`, names, exit codes,
//! the image-less default root, `--rootfs`, and parallel runs.

use std::fs;
use std::path::Path;

use conman_integration::{Bundle, Conman, Output, Runtime};

/// Lists the entries of `dir`, or none when it is missing.
fn entries(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Runs `conman run --rm -- <command>` in the image-less default root.
fn run_rm(conman: &Conman, command: &[&str]) -> Output {
    let mut args = vec!["run", "--rm", "--"];
    args.extend_from_slice(command);
    conman.output(&args)
}

#[test]
fn run_rm_returns_exit_code() {
    let conman = Conman::new();

    let out = run_rm(&conman, &["sh", "-c", "echo hi; exit 3"]);

    assert_eq!(out.code, 3, "{out}");
    assert_eq!(out.stdout, "hi\n", "{out}");
    let left = entries(&conman.containers_dir());
    assert!(left.is_empty(), "run --rm left container directories: {left:?}");
}

#[test]
fn run_keeps_record() {
    let conman = Conman::new();

    let out = conman.output(&["run", "--", "sh", "-c", "echo hi; exit 3"]);
    assert_eq!(out.code, 3, "{out}");
    let kept = entries(&conman.containers_dir());
    assert_eq!(kept.len(), 1, "run without --rm must keep one record: {kept:?}");

    let listing = conman.output(&["ps", "-a"]);
    assert_eq!(listing.code, 0, "{listing}");
    // Columns: CONTAINER ID, NAME, STATUS, EXIT, then the command, which
    // may contain spaces.
    let short_id = &kept[0][..12];
    let line = listing.stdout.lines().find(|line| line.starts_with(short_id));
    assert!(line.is_some(), "ps does not list {short_id}: {listing}");
    let fields: Vec<&str> = line.unwrap().split_whitespace().collect();
    assert_eq!(fields.get(3), Some(&"3"), "exit code column: {listing}");
    assert_eq!(fields.get(4..).map(|rest| rest.join(" ")), Some("sh -c echo hi; exit 3".to_owned()), "{listing}");
}

#[test]
fn duplicate_name_rejected() {
    let conman = Conman::new();
    let first = conman.output(&["run", "--name", "web", "--", "true"]);
    assert_eq!(first.code, 0, "first run --name web: {first}");
    let kept = entries(&conman.containers_dir());
    assert_eq!(kept.len(), 1, "the first run must keep its record: {kept:?}");
    let first_id = &kept[0];

    let second = conman.output(&["run", "--name", "web", "--", "true"]);

    assert_eq!(second.code, 125, "{second}");
    assert!(second.stderr.contains("\"web\""), "the message does not name \"web\": {second}");
    assert!(second.stderr.contains(first_id.as_str()), "the message does not name {first_id}: {second}");
    assert!(second.stderr.contains("conman rm web"), "the message does not say how to free the name: {second}");
    assert_eq!(entries(&conman.containers_dir()), kept, "the rejected run changed the store");
}

#[test]
fn invalid_name_rejected() {
    let conman = Conman::new();

    let out = conman.output(&["run", "--name", "-x", "--", "true"]);

    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("invalid container name \"-x\""), "{out}");
    let left = entries(&conman.containers_dir());
    assert!(left.is_empty(), "the rejected run left container directories: {left:?}");
}

#[test]
fn missing_program_exits_127() {
    let conman = Conman::new();

    let out = run_rm(&conman, &["no-such-program"]);

    assert_eq!(out.code, 127, "{out}");
    assert!(out.stderr.contains("executable file not found"), "{out}");
    assert!(out.stderr.contains("no-such-program"), "{out}");
}

#[test]
fn default_root_has_usr_etc() {
    let conman = Conman::new();

    let out = run_rm(&conman, &["ls", "/"]);

    assert_eq!(out.code, 0, "{out}");
    let names: Vec<&str> = out.stdout.lines().collect();
    assert!(names.contains(&"usr"), "/ has no usr: {out}");
    assert!(names.contains(&"etc"), "/ has no etc: {out}");
}

#[test]
fn default_root_hides_shadow() {
    let conman = Conman::new();
    assert!(Path::new("/etc/shadow").exists(), "this test needs a host /etc/shadow");

    let out = run_rm(&conman, &["cat", "/etc/shadow"]);

    assert_ne!(out.code, 0, "/etc/shadow is readable in the container: {out}");
    assert!(out.stdout.is_empty(), "/etc/shadow content reached the container: {out}");
}

#[test]
fn default_root_usr_read_only() {
    let conman = Conman::new();
    let marker = "/usr/conman-it-marker";

    let out = run_rm(&conman, &["sh", "-c", &format!("echo x > {marker}")]);

    assert_ne!(out.code, 0, "the write to {marker} succeeded: {out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!Path::new(marker).exists(), "{marker} appeared on the host");
}

#[test]
fn default_root_tmp_writable() {
    let conman = Conman::new();

    let out = run_rm(&conman, &["sh", "-c", "echo written > /tmp/x && cat /tmp/x"]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "written\n", "{out}");
}

#[test]
fn hostname_is_short_id() {
    let conman = Conman::new();

    let out = run_rm(&conman, &["hostname"]);

    assert_eq!(out.code, 0, "{out}");
    let hostname = out.stdout.trim();
    assert_eq!(hostname.len(), 12, "hostname {hostname:?} is not 12 characters");
    assert!(hostname.chars().all(|c| c.is_ascii_hexdigit()), "hostname {hostname:?} is not hex");
}

#[test]
fn command_is_pid_1() {
    let conman = Conman::new();

    let out = run_rm(&conman, &["sh", "-c", "echo $$"]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "1", "{out}");
}

#[test]
fn only_loopback_interface() {
    let conman = Conman::new();

    let out = run_rm(&conman, &["ls", "/sys/class/net"]);

    assert_eq!(out.code, 0, "{out}");
    let interfaces: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(interfaces, ["lo"], "{out}");
}

#[test]
fn rootfs_dir_runs_busybox() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&rt);
    let conman = Conman::new();
    let rootfs = bundle.rootfs();

    let out = conman.output(&["run", "--rm", "--rootfs", rootfs.to_str().unwrap(), "--", "/bin/busybox", "echo", "x"]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "x\n", "{out}");
}

#[test]
fn rootfs_missing_exits_125() {
    let rt = Runtime::new();
    let conman = Conman::new();
    let missing = rt.tempdir("rootfs").join("nonexistent");

    let out = conman.output(&["run", "--rm", "--rootfs", missing.to_str().unwrap(), "--", "true"]);

    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains(missing.to_str().unwrap()), "the message does not name the path: {out}");
}

/// Each run prints its hostname, which is the first 12 characters of its
/// id, so that its cgroup can be looked for after `--rm` removed the
/// record.
#[test]
fn parallel_runs_leave_nothing() {
    let conman = Conman::new();

    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..10).map(|_| scope.spawn(|| run_rm(&conman, &["hostname"]))).collect();
        handles.into_iter().map(|handle| handle.join().expect("run thread panicked")).collect()
    });

    for out in &outputs {
        assert_eq!(out.code, 0, "{out}");
    }
    let containers = entries(&conman.containers_dir());
    assert!(containers.is_empty(), "container directories left behind: {containers:?}");
    let runtime_state = entries(&conman.runtime_dir());
    assert!(runtime_state.is_empty(), "runtime state left behind: {runtime_state:?}");
    let cgroups = entries(Path::new("/sys/fs/cgroup/pids/conman"));
    for out in &outputs {
        let short_id = out.stdout.trim();
        assert_eq!(short_id.len(), 12, "hostname is not a short id: {out}");
        let left: Vec<&String> = cgroups.iter().filter(|name| name.starts_with(short_id)).collect();
        assert!(left.is_empty(), "pids cgroups left behind: {left:?}");
    }
}

#[test]
fn default_seccomp_profile_applied() {
    let conman = Conman::new();

    let out = run_rm(&conman, &["sh", "-c", "grep ^Seccomp: /proc/self/status; unshare -m true 2>/dev/null; echo unshare=$?"]);

    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("Seccomp:\t2"), "no seccomp filter: {out}");
    assert!(out.stdout.contains("unshare=1"), "unshare was not denied: {out}");
}

#[test]
fn seccomp_unconfined_option() {
    let conman = Conman::new();

    let out = conman.output(&["run", "--rm", "--security-opt", "seccomp=unconfined", "--", "grep", "^Seccomp:", "/proc/self/status"]);

    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("Seccomp:\t0"), "a filter was loaded: {out}");
}
