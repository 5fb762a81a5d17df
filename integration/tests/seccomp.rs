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

/// Two conditions on the same argument are alternatives: the rule denies
/// SIGUSR1 and SIGUSR2 alike, and still lets other signals through.
#[test]
fn same_argument_conditions_either_match() {
    let rt = Runtime::new();
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 55,
            "args": [
                { "index": 1, "value": 10, "op": "SCMP_CMP_EQ" },
                { "index": 1, "value": 12, "op": "SCMP_CMP_EQ" }
            ]
        }]
    });
    let script = "trap '' USR1 USR2; kill -USR1 $$; echo usr1=$?; kill -USR2 $$; echo usr2=$?; kill -0 $$; echo zero=$?";
    let bundle = bundle_with(&rt, script, profile);

    let out = run(&rt, &bundle, "kill-either");

    assert!(out.stdout.contains("usr1=1"), "kill with SIGUSR1 was not denied: {out}");
    assert!(out.stdout.contains("usr2=1"), "kill with SIGUSR2 was not denied: {out}");
    assert!(out.stdout.contains("zero=0"), "kill with signal 0 was denied: {out}");
    assert!(out.stderr.contains("No anode"), "errno 55 (ENOANO) expected: {out}");
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
fn notify_without_listener_path_rejected() {
    let rt = Runtime::new();
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }]
    });
    let bundle = bundle_with(&rt, "true", profile);
    let id = rt.id("notify");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("listenerPath"), "{out}");
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

/// A seccomp agent for the SCMP_ACT_NOTIFY tests: it accepts connections
/// on a Unix socket, keeps the container process state that each one
/// sends, and answers every notified syscall with `errno`.
mod agent {
    use std::io::IoSliceMut;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::net::UnixListener;
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::thread;

    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use serde_json::Value;

    #[repr(C)]
    #[derive(Default)]
    struct SeccompData {
        nr: i32,
        arch: u32,
        instruction_pointer: u64,
        args: [u64; 6],
    }

    /// struct seccomp_notif of linux/seccomp.h.
    #[repr(C)]
    #[derive(Default)]
    struct Notification {
        id: u64,
        pid: u32,
        flags: u32,
        data: SeccompData,
    }

    /// struct seccomp_notif_resp of linux/seccomp.h.
    #[repr(C)]
    struct Response {
        id: u64,
        val: i64,
        error: i32,
        flags: u32,
    }

    /// _IOWR('!', 0, struct seccomp_notif) and _IOWR('!', 1, struct
    /// seccomp_notif_resp).
    const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
    const NOTIF_SEND: libc::c_ulong = 0xc018_2101;

    #[derive(Default)]
    pub struct Seen {
        /// The process states, one per connection.
        pub states: Vec<Value>,
        /// The pids of the processes whose syscalls were notified.
        pub notified_pids: Vec<u32>,
    }

    /// Starts the agent on `path`; the threads end with the test process.
    pub fn start(path: &Path, errno: i32) -> Arc<Mutex<Seen>> {
        let listener = UnixListener::bind(path).unwrap_or_else(|err| panic!("bind {}: {err}", path.display()));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut buf = vec![0u8; 65536];
                let mut iov = [IoSliceMut::new(&mut buf)];
                let mut space = nix::cmsg_space!([RawFd; 1]);
                let message = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
                    .expect("receive the process state");
                let mut fd = None;
                for cmsg in message.cmsgs().expect("control messages") {
                    if let ControlMessageOwned::ScmRights(fds) = cmsg {
                        // SAFETY: the kernel installed this descriptor for us.
                        fd = fds.first().map(|&raw| unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
                let length = message.bytes;
                let state: Value = serde_json::from_slice(&buf[..length]).unwrap_or(Value::Null);
                shared.lock().unwrap().states.push(state);
                if let Some(fd) = fd {
                    let shared = Arc::clone(&shared);
                    thread::spawn(move || serve(fd, errno, &shared));
                }
            }
        });
        seen
    }

    /// Replies to the notifications on `fd` until every process of the filter
    /// has exited.
    fn serve(fd: OwnedFd, errno: i32, seen: &Mutex<Seen>) {
        loop {
            let mut poll = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, 100) };
            if ready < 0 || poll.revents & libc::POLLHUP != 0 {
                return;
            }
            if poll.revents & libc::POLLIN == 0 {
                continue;
            }
            let mut notification = Notification::default();
            // SAFETY: the ioctl fills the zeroed struct of the kernel's size.
            if unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_RECV, &mut notification) } < 0 {
                continue;
            }
            seen.lock().unwrap().notified_pids.push(notification.pid);
            let response = Response { id: notification.id, val: 0, error: -errno, flags: 0 };
            // SAFETY: the struct has the kernel's layout and size.
            unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_SEND, &response) };
        }
    }
}

/// Returns the profile that sends mkdir to the agent at `socket`.
fn notify_profile(socket: &Path) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket,
        "listenerMetadata": "test-metadata",
        "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY" }]
    })
}

#[test]
fn notify_agent_answers_syscall() {
    let rt = Runtime::new();
    let socket = rt.tempdir("agent").join("agent.sock");
    let seen = agent::start(&socket, libc::EXDEV);
    let bundle = bundle_with(&rt, "mkdir /dev/shm/x; echo status=$?; ls /dev/shm", notify_profile(&socket));
    let id = rt.id("notify");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("status=1"), "mkdir did not fail: {out}");
    assert!(out.stderr.contains("cross-device"), "the agent's errno (EXDEV) did not arrive: {out}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.states.len(), 1, "connections to the agent: {:?}", seen.states);
    let state = &seen.states[0];
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
    assert_eq!(state["metadata"], "test-metadata", "{state}");
    assert_eq!(state["state"]["id"], id.as_str(), "{state}");
    assert!(state["pid"].as_i64().unwrap_or(0) > 0, "{state}");
    assert_eq!(seen.notified_pids.len(), 1, "notified syscalls: {:?}", seen.notified_pids);
}

#[test]
fn notify_reaches_exec_process() {
    let rt = Runtime::new();
    let socket = rt.tempdir("agent").join("agent.sock");
    let seen = agent::start(&socket, libc::EXDEV);
    let bundle = bundle_with(&rt, "exec sleep 1000", notify_profile(&socket));
    let id = rt.id("notify-exec");
    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), &id]);

    let out = rt.output(&["exec", &id, "mkdir", "/dev/shm/y"]);

    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("cross-device"), "{out}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.states.len(), 2, "one connection for the init, one for exec: {:?}", seen.states);
    assert_eq!(seen.states[1]["state"]["status"], "running", "{}", seen.states[1]);
}

#[test]
fn notify_without_agent_fails_create() {
    let rt = Runtime::new();
    let socket = rt.tempdir("agent").join("nobody-listens.sock");
    let bundle = bundle_with(&rt, "true", notify_profile(&socket));
    let id = rt.id("notify-noagent");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("listenerPath"), "{out}");
    assert!(!rt.container_dir(&id).exists(), "state left behind");
    assert!(conman_integration::existing_cgroup_dirs(&id).is_empty(), "cgroups left behind");
}
