//! Spec fields and runtime flags that had no test of their own: each is
//! read back from inside the container or from `state`.

use conman_integration::{build_static_fixture, Bundle, Output, Runtime};
use serde_json::json;

fn run(rt: &Runtime, bundle: &Bundle, name: &str, extra: &[&str]) -> Output {
    let id = rt.id(name);
    let mut args = vec!["run", "--bundle", bundle.path_str()];
    args.extend_from_slice(extra);
    args.push(&id);
    rt.output(&args)
}

#[test]
fn domainname_applied() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["cat", "/proc/sys/kernel/domainname"]);
    bundle.edit(|config| config["domainname"] = json!("example.test"));

    let out = run(&rt, &bundle, "domainname", &[]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "example.test");
}

#[test]
fn annotations_in_state() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| config["annotations"] = json!({ "org.example.key": "value" }));
    let id = rt.id("annotations");

    rt.create(&bundle, &id);

    assert_eq!(rt.state(&id)["annotations"]["org.example.key"], "value");
}

#[test]
fn umask_applied() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "umask"]);
    bundle.edit(|config| config["process"]["user"]["umask"] = json!(0o027));

    let out = run(&rt, &bundle, "umask", &[]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "0027");
}

#[test]
fn no_new_privileges_set_and_unset() {
    let rt = Runtime::new();
    for (value, expected) in [(true, "1"), (false, "0")] {
        let mut bundle = Bundle::with_args(&rt, &["grep", "NoNewPrivs", "/proc/self/status"]);
        bundle.edit(|config| config["process"]["noNewPrivileges"] = json!(value));

        let out = run(&rt, &bundle, "nnp", &[]);

        assert_eq!(out.code, 0, "{out}");
        assert_eq!(out.stdout.split_whitespace().last(), Some(expected), "noNewPrivileges {value}: {out}");
    }
}

/// The optional fields of the root's line in the container's mountinfo:
/// `shared:N` for a shared mount, `master:N` for a slave.
fn root_propagation(out: &Output) -> String {
    let line = out.stdout.lines().find(|l| l.split_whitespace().nth(4) == Some("/")).unwrap_or_default();
    line.split(" - ").next().unwrap_or("").split_whitespace().skip(6).collect::<Vec<_>>().join(" ")
}

#[test]
fn rootfs_propagation_applied() {
    let rt = Runtime::new();
    // A slave of a private host mount (a host without systemd) has no
    // master tag either, so "slave" is only checked for not being shared.
    for (value, expected) in [("private", ""), ("shared", "shared:"), ("slave", "")] {
        let mut bundle = Bundle::with_args(&rt, &["cat", "/proc/self/mountinfo"]);
        bundle.edit(|config| config["linux"]["rootfsPropagation"] = json!(value));

        let out = run(&rt, &bundle, "propagation", &[]);

        assert_eq!(out.code, 0, "{out}");
        let tags = root_propagation(&out);
        if expected.is_empty() {
            assert!(tags.is_empty(), "rootfsPropagation {value}: the root has tags {tags:?}");
        } else {
            assert!(tags.contains(expected), "rootfsPropagation {value}: the root has tags {tags:?}");
        }
    }
}

#[test]
fn mount_propagation_option() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["grep", " /shared ", "/proc/self/mountinfo"]);
    bundle.add_mount(json!({ "destination": "/shared", "type": "tmpfs", "source": "tmpfs", "options": ["shared"] }));

    let out = run(&rt, &bundle, "mount-shared", &[]);

    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("shared:"), "{out}");
}

#[test]
fn no_pivot_runs() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sh", "-c", "ls /bin/busybox && cat /proc/self/mountinfo | wc -l"]);

    let out = run(&rt, &bundle, "no-pivot", &["--no-pivot"]);

    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.starts_with("/bin/busybox\n"), "{out}");
}

/// Without pivot_root the host's /proc would stay in the container's mount
/// namespace below the chroot, fully visible, which lets a process with
/// CAP_SYS_ADMIN in a new user namespace mount a fresh procfs.
#[test]
fn no_pivot_hides_host_proc() {
    let rt = Runtime::new();
    let script = "unshare -mrpf sh -c 'mount -t proc none /proc && echo mounted' 2>&1; echo done";
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", script]);
    bundle.edit(|config| {
        for set in ["bounding", "permitted", "effective"] {
            let list = config["process"]["capabilities"][set].as_array_mut().expect("capability set");
            list.push("CAP_SETFCAP".into());
        }
    });

    let out = run(&rt, &bundle, "no-pivot-proc", &["--no-pivot"]);

    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("done"), "{out}");
    assert!(!out.stdout.contains("mounted"), "a new procfs was mounted: {out}");
    assert!(out.stdout.contains("ermission denied"), "{out}");
}

/// Without --no-new-keyring the container gets a session keyring named
/// after it; with the flag it keeps the caller's.
#[test]
fn session_keyring_per_container() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["/bin/session_keyring"]);
    let helper = build_static_fixture("session_keyring", &rt.tempdir("keyring"));
    std::fs::copy(&helper, bundle.rootfs().join("bin/session_keyring")).expect("copy the helper");

    let own = run(&rt, &bundle, "keyring", &[]);
    let shared = run(&rt, &bundle, "shared-keys", &["--no-new-keyring"]);

    assert_eq!(own.code, 0, "{own}");
    assert!(own.stdout.contains(";_ses.keyring-"), "unexpected session keyring: {own}");
    assert_eq!(shared.code, 0, "{shared}");
    assert!(!shared.stdout.contains("_ses.shared-keys"), "--no-new-keyring still made a keyring: {shared}");
}

/// The seccomp flags reach seccomp(2): the filter loads with them, and
/// TSYNC, which a single-threaded init cannot use, is rejected by name.
#[test]
fn seccomp_flags_load() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["grep", "^Seccomp:", "/proc/self/status"]);
    let flags = json!(["SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG"]);
    bundle.edit(|config| config["linux"]["seccomp"] = json!({ "defaultAction": "SCMP_ACT_ALLOW", "flags": flags, "syscalls": [] }));

    let out = run(&rt, &bundle, "seccomp-flags", &[]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "Seccomp:\t2", "{out}");

    bundle.edit(|config| config["linux"]["seccomp"]["flags"] = json!(["SECCOMP_FILTER_FLAG_TSYNC"]));
    let tsync = run(&rt, &bundle, "seccomp-tsync", &[]);
    assert_ne!(tsync.code, 0, "{tsync}");
    assert!(tsync.stderr.contains("TSYNC"), "{tsync}");
}
