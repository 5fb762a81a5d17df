//! Container lifecycle: create, start, state, kill, delete, run, list.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use conman_integration::{
    cgroup_dir, existing_cgroup_dirs, process_alive, processes_of, Bundle, Runtime, Spawned, COMMAND_TIMEOUT,
};
use serde_json::Value;

fn read_pid_file(path: &Path) -> i32 {
    let text = fs::read_to_string(path).unwrap_or_else(|err| panic!("read pid file {}: {err}", path.display()));
    text.trim().parse().unwrap_or_else(|err| panic!("pid file contains {text:?}, not a pid: {err}"))
}

#[test]
fn create_start_kill_delete() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "100"]);
    let id = rt.id("lifecycle");
    let pid_file = rt.tempdir("pid").join("init.pid");

    rt.ok(&["create", "--bundle", bundle.path_str(), "--pid-file", pid_file.to_str().unwrap(), &id]);
    let state = rt.state(&id);
    assert_eq!(state["status"], "created", "state after create: {state}");
    let pid = read_pid_file(&pid_file);
    assert_eq!(state["pid"], pid, "state pid differs from the pid file");
    assert!(Path::new(&format!("/proc/{pid}")).is_dir(), "/proc/{pid} of the init is missing");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["bundle"], bundle.path_str());
    for controller in ["memory", "pids"] {
        let procs = fs::read_to_string(cgroup_dir(controller, &id).join("cgroup.procs")).unwrap_or_default();
        assert!(
            procs.lines().any(|line| line.trim() == pid.to_string()),
            "init {pid} is not in the {controller} cgroup (cgroup.procs: {procs:?})"
        );
    }

    rt.ok(&["start", &id]);
    assert_eq!(rt.status(&id), "running");
    assert!(
        !rt.container_dir(&id).join("exec.fifo").exists(),
        "exec.fifo is still there after start"
    );

    rt.ok(&["kill", &id, "KILL"]);
    assert_eq!(rt.wait_for_status(&id, "stopped"), "stopped");
    assert_eq!(rt.state(&id)["pid"], 0, "a stopped container reports pid 0");

    rt.ok(&["delete", &id]);
    assert!(!rt.container_dir(&id).exists(), "state directory left after delete");
    assert!(!cgroup_dir("memory", &id).exists(), "memory cgroup left after delete");
    assert!(!cgroup_dir("pids", &id).exists(), "pids cgroup left after delete");
    assert!(!process_alive(pid), "init {pid} still runs after delete");
}

#[test]
fn process_exit_means_stopped() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sh", "-c", "exit 0"]);
    let id = rt.id("exit-stopped");

    rt.create(&bundle, &id);
    rt.ok(&["start", &id]);

    assert_eq!(rt.wait_for_status(&id, "stopped"), "stopped");
    rt.ok(&["delete", &id]);
    assert!(!rt.container_dir(&id).exists(), "state directory left after delete");
    assert!(!cgroup_dir("pids", &id).exists(), "pids cgroup left after delete");
}

#[test]
fn run_returns_exit_status() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sh", "-c", "exit 3"]);
    let id = rt.id("run-exit");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 3, "{out}");
    assert!(!rt.container_dir(&id).exists(), "run left the state directory");
}

/// With --keep, the stopped container stays, with its cgroups, until
/// `delete`.
#[test]
fn run_keep_leaves_stopped_container() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sh", "-c", "exit 3"]);
    let id = rt.id("run-keep");

    let out = rt.output(&["run", "--keep", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 3, "{out}");
    assert_eq!(rt.status(&id), "stopped");
    assert!(!existing_cgroup_dirs(&id).is_empty(), "run --keep removed the cgroups");
    rt.ok(&["delete", &id]);
    assert_ne!(rt.output(&["state", &id]).code, 0, "state still works after delete");
    assert!(existing_cgroup_dirs(&id).is_empty(), "delete left cgroups");
}

/// The container has no pid namespace here: as pid 1 of its own namespace,
/// sh could not kill itself with SIGKILL, because the kernel drops
/// SIGKILL sent to a namespace's init from inside the namespace.
#[test]
fn run_reports_sigkill_as_137() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "kill -9 $$; echo survived"]);
    bundle.edit(|config| {
        let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.retain(|ns| ns["type"] != "pid");
    });
    let id = rt.id("run-sigkill");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 137, "{out}");
    assert!(!out.stdout.contains("survived"), "{out}");
}

#[test]
fn run_passes_stdout() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["echo", "hello"]);
    let id = rt.id("run-stdout");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "hello\n");
}

#[test]
fn run_forwards_sigterm() {
    let rt = Runtime::new();
    let script = r#"trap "exit 7" TERM; echo ready; while true; do sleep 0.1; done"#;
    let bundle = Bundle::with_args(&rt, &["sh", "-c", script]);
    let id = rt.id("run-sigterm");

    let mut run = Spawned::new(rt.command(&["run", "--bundle", bundle.path_str(), &id]));
    // Signal only once the trap is set: before that, sh as pid 1 of its
    // namespace has no handler and the kernel drops the signal.
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        let so_far = run.read_output(-1);
        if so_far.stdout.contains("ready") {
            break;
        }
        assert!(run.try_wait().is_none(), "run exited before the trap was set: {so_far}");
        assert!(Instant::now() < deadline, "container never printed ready: {so_far}");
        sleep(Duration::from_millis(10));
    }
    // SAFETY: kill on the pid of our own child process.
    let rc = unsafe { libc::kill(run.pid(), libc::SIGTERM) };
    assert_eq!(rc, 0, "kill the run process");

    let out = run.wait(COMMAND_TIMEOUT);
    assert_eq!(out.code, 7, "{out}");
}

#[test]
fn start_twice_fails() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "100"]);
    let id = rt.id("start-twice");
    rt.create(&bundle, &id);
    rt.ok(&["start", &id]);

    let out = rt.output(&["start", &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains(&id), "{out}");
    assert_eq!(rt.status(&id), "running");
}

#[test]
fn run_detach_leaves_running() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "100"]);
    let id = rt.id("run-detach");
    let pid_file = rt.tempdir("pid").join("init.pid");

    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), "--pid-file", pid_file.to_str().unwrap(), &id]);

    let state = rt.state(&id);
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(state["pid"], read_pid_file(&pid_file), "state pid differs from the pid file");
}

#[test]
fn delete_running_needs_force() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "100"]);
    let id = rt.id("delete-force");
    let pid_file = rt.tempdir("pid").join("init.pid");
    rt.ok(&["create", "--bundle", bundle.path_str(), "--pid-file", pid_file.to_str().unwrap(), &id]);
    rt.ok(&["start", &id]);
    let pid = read_pid_file(&pid_file);

    let rejected = rt.output(&["delete", &id]);
    assert_ne!(rejected.code, 0, "{rejected}");
    assert!(rejected.stderr.contains("--force"), "{rejected}");
    assert_eq!(rt.status(&id), "running", "a rejected delete must leave the container running");

    rt.ok(&["delete", "--force", &id]);
    assert!(!rt.container_dir(&id).exists(), "state directory left after delete --force");
    assert!(!cgroup_dir("pids", &id).exists(), "pids cgroup left after delete --force");
    assert!(!process_alive(pid), "init {pid} still runs after delete --force");
}

#[test]
fn kill_accepts_signal_forms() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "100"]);
    for signal in ["KILL", "SIGKILL", "9"] {
        let id = rt.id(&format!("kill-{signal}"));
        rt.create(&bundle, &id);
        rt.ok(&["start", &id]);

        let out = rt.output(&["kill", &id, signal]);

        assert_eq!(out.code, 0, "kill {signal}: {out}");
        assert_eq!(rt.wait_for_status(&id, "stopped"), "stopped", "after kill {signal}");
    }
}

#[test]
fn kill_rejects_bogus_signal() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "100"]);
    let id = rt.id("kill-bogus");
    rt.create(&bundle, &id);
    rt.ok(&["start", &id]);

    let out = rt.output(&["kill", &id, "BOGUS"]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("BOGUS"), "{out}");
    assert_eq!(rt.status(&id), "running", "a rejected kill must not stop the container");
}

#[test]
fn list_quiet_prints_ids() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "100"]);
    let first = rt.id("list-a");
    let second = rt.id("list-b");
    rt.create(&bundle, &first);
    rt.create(&bundle, &second);

    let out = rt.ok(&["list", "-q"]);

    let mut listed: Vec<&str> = out.stdout.lines().collect();
    listed.sort();
    let mut expected = vec![first.as_str(), second.as_str()];
    expected.sort();
    assert_eq!(listed, expected, "{out}");
}

#[test]
fn list_json_has_states() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "100"]);
    let first = rt.id("json-a");
    let second = rt.id("json-b");
    rt.create(&bundle, &first);
    rt.create(&bundle, &second);
    rt.ok(&["start", &second]);

    let out = rt.ok(&["list", "--format", "json"]);

    let parsed: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|err| panic!("not JSON ({err}): {out}"));
    let entries = parsed.as_array().unwrap_or_else(|| panic!("not a JSON array: {out}"));
    assert_eq!(entries.len(), 2, "{out}");
    let find = |id: &str| entries.iter().find(|e| e["id"] == id).cloned();
    let first_entry = find(&first).unwrap_or_else(|| panic!("{first} missing: {out}"));
    let second_entry = find(&second).unwrap_or_else(|| panic!("{second} missing: {out}"));
    assert_eq!(first_entry["status"], "created");
    assert_eq!(second_entry["status"], "running");
    // Scripts written for runc match the raw text, in runc's field order.
    let pid = second_entry["pid"].as_i64().unwrap_or(0);
    let prefix = format!("{{\"ociVersion\":{},\"id\":\"{second}\",\"pid\":{pid},\"status\":\"running\",\"bundle\":", second_entry["ociVersion"]);
    assert!(out.stdout.contains(&prefix), "no {prefix} in {out}");
}

#[test]
fn parallel_runs_leave_root_empty() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["true"]);
    let ids: Vec<String> = (0..10).map(|i| rt.id(&format!("parallel{i}"))).collect();

    let outputs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| {
                let rt = &rt;
                let bundle = &bundle;
                scope.spawn(move || rt.output(&["run", "--bundle", bundle.path_str(), id]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("run thread panicked")).collect()
    });

    for (id, out) in ids.iter().zip(&outputs) {
        assert_eq!(out.code, 0, "run {id}: {out}");
    }
    let left: Vec<_> = fs::read_dir(rt.root())
        .expect("read the state root")
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "state root is not empty: {left:?}");
    for id in &ids {
        assert!(!cgroup_dir("pids", id).exists(), "pids cgroup of {id} left behind");
        assert!(processes_of(id).is_empty(), "processes of {id} left behind");
    }
}

#[test]
fn kill_stopped_says_not_running() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["true"]);
    let id = rt.id("kill-stopped");
    rt.create(&bundle, &id);
    rt.ok(&["start", &id]);
    rt.wait_for_status(&id, "stopped");

    let out = rt.output(&["kill", &id, "KILL"]);

    // containerd and podman recognise this case by the words
    // "container not running".
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("container not running"), "{out}");
}

#[test]
fn usage_error_exits_1() {
    let rt = Runtime::new();

    let out = rt.output(&["kill", "--no-such-flag", "x"]);

    assert_eq!(out.code, 1, "{out}");
}
