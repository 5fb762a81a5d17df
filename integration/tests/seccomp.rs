//! linux.seccomp: rule actions, argument conditions, podman's default
//! profile, and profiles that must be rejected.

use std::path::Path;

use conman_integration::{Bundle, Output, Runtime};
use serde_json::{json, Value};

fn run(rt: &Runtime, bundle: &Bundle, name: &str) -> Output {
    let id = rt.id(name);
    rt.output(&["run", "--bundle", bundle.path_str(), &id])
}

/// Builds a bundle whose process runs `script` with `seccomp` as its profile.
fn bundle_with(rt: &Runtime, script: &str, seccomp: Value) -> Bundle {
    let mut bundle = Bundle::with_args(rt, &["sh", "-c", script]);
    bundle.edit(|config| config["linux"]["seccomp"] = seccomp);
    bundle
}

#[test]
fn errno_rule_denies_mkdir() {
    let rt = Runtime::new();
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 }]
    });
    let bundle = bundle_with(&rt, "mkdir /dev/shm/x; echo status=$?", profile);

    let out = run(&rt, &bundle, "mkdir-denied");

    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("status=1"), "mkdir was not denied: {out}");
    assert!(out.stderr.contains("Permission denied"), "errno 13 expected: {out}");
}

#[test]
fn unfiltered_mkdir_works() {
    let rt = Runtime::new();
    let profile = json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [] });
    let bundle = bundle_with(&rt, "mkdir /dev/shm/x; echo status=$?; grep ^Seccomp: /proc/self/status", profile);

    let out = run(&rt, &bundle, "mkdir-allowed");

    assert!(out.stdout.contains("status=0"), "{out}");
    assert!(out.stdout.contains("Seccomp:\t2"), "the filter is not loaded: {out}");
}

#[test]
fn argument_condition_selects_calls() {
    let rt = Runtime::new();
    // Deny kill(2) with signal 10 (SIGUSR1) in argument 1 only.
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
            "args": [{ "index": 1, "value": 10, "op": "SCMP_CMP_EQ" }]
        }]
    });
    let script = "kill -USR1 $$; echo usr1=$?; kill -0 $$; echo zero=$?";
    let bundle = bundle_with(&rt, script, profile);

    let out = run(&rt, &bundle, "kill-arg");

    assert!(out.stdout.contains("usr1=1"), "kill with SIGUSR1 was not denied: {out}");
    assert!(out.stdout.contains("zero=0"), "kill with signal 0 was denied: {out}");
}

#[test]
fn kill_action_kills_process() {
    let rt = Runtime::new();
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS" }]
    });
    let bundle = bundle_with(&rt, "mkdir /dev/shm/x; echo status=$?; test -d /dev/shm/x || echo absent", profile);

    let out = run(&rt, &bundle, "kill-action");

    // The shell forks mkdir, which dies of SIGSYS (31): status 128 + 31.
    assert!(out.stdout.contains("status=159"), "{out}");
    assert!(out.stdout.contains("absent"), "{out}");
}

#[test]
fn notify_action_rejected() {
    let rt = Runtime::new();
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }]
    });
    let bundle = bundle_with(&rt, "true", profile);
    let id = rt.id("notify");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("SCMP_ACT_NOTIFY"), "{out}");
    assert!(!rt.container_dir(&id).exists(), "state left behind: {out}");
}

#[test]
fn unknown_action_rejected() {
    let rt = Runtime::new();
    let profile = json!({ "defaultAction": "SCMP_ACT_BOGUS", "syscalls": [] });
    let bundle = bundle_with(&rt, "true", profile);
    let id = rt.id("bogus-action");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("linux.seccomp.defaultAction"), "{out}");
}

/// Converts a containers-common profile (the format of
/// /usr/share/containers/seccomp.json) into an OCI `linux.seccomp` for an
/// amd64 container holding `caps`, keeping the rules whose `includes` and
/// `excludes` fit, as podman does before it writes config.json.
fn oci_profile(profile: &Value, caps: &[&str]) -> Value {
    let fits = |rule: &Value| {
        let has_all = |list: &Value| list.as_array().is_none_or(|l| l.iter().all(|c| caps.contains(&c.as_str().unwrap_or(""))));
        let has_any = |list: &Value| list.as_array().is_some_and(|l| l.iter().any(|c| caps.contains(&c.as_str().unwrap_or(""))));
        let arch_in = |list: &Value| list.as_array().is_some_and(|l| l.iter().any(|a| a == "amd64"));
        let includes = &rule["includes"];
        let excludes = &rule["excludes"];
        has_all(&includes["caps"])
            && (includes["arches"].is_null() || arch_in(&includes["arches"]))
            && !has_any(&excludes["caps"])
            && !arch_in(&excludes["arches"])
    };
    let syscalls: Vec<Value> = profile["syscalls"]
        .as_array()
        .expect("syscalls is an array")
        .iter()
        .filter(|rule| fits(rule))
        .map(|rule| {
            let mut out = json!({ "names": rule["names"], "action": rule["action"] });
            if let Some(args) = rule["args"].as_array().filter(|a| !a.is_empty()) {
                out["args"] = json!(args);
            }
            if !rule["errnoRet"].is_null() {
                out["errnoRet"] = rule["errnoRet"].clone();
            }
            out
        })
        .collect();
    json!({
        "defaultAction": profile["defaultAction"],
        "defaultErrnoRet": profile["defaultErrnoRet"],
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls
    })
}

#[test]
fn podman_default_profile_works() {
    let path = Path::new("/usr/share/containers/seccomp.json");
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read {} (Debian package golang-github-containers-common): {err}", path.display()));
    let profile: Value = serde_json::from_str(&text).expect("seccomp.json is JSON");
    let rt = Runtime::new();
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let script = "echo works; unshare -m true 2>/dev/null; echo unshare=$?; \
                  mount -t tmpfs none /dev/shm 2>/dev/null; echo mount=$?; \
                  grep ^Seccomp: /proc/self/status";
    let bundle = bundle_with(&rt, script, oci_profile(&profile, &caps));

    let out = run(&rt, &bundle, "podman-profile");

    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("works"), "{out}");
    assert!(out.stdout.contains("unshare=1"), "unshare was not denied: {out}");
    assert!(out.stdout.contains("mount=255") || out.stdout.contains("mount=1"), "mount was not denied: {out}");
    assert!(out.stdout.contains("Seccomp:\t2"), "{out}");
}
