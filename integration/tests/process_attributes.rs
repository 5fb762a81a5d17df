//! Process attributes set with one syscall each: personality, scheduler,
//! I/O priority, NUMA memory policy, exec CPU affinity, and the time
//! namespace with its clock offsets. Each is read back from /proc, from
//! inside the container or from the host.

use std::fs;

use conman_integration::{read_pid_file, Bundle, Output, Runtime};
use serde_json::{json, Value};

/// Runs `bundle` to completion with `run` and returns the output.
fn run(rt: &Runtime, bundle: &Bundle, name: &str) -> Output {
    let id = rt.id(name);
    rt.output(&["run", "--bundle", bundle.path_str(), &id])
}

/// Creates a container from `bundle` and returns its init's host pid: the
/// init has applied every attribute when `create` returns, and keeps them
/// across the execve that `start` releases.
fn create_init(rt: &Runtime, bundle: &Bundle, name: &str) -> i32 {
    let id = rt.id(name);
    let pid_file = rt.tempdir("pid").join("init.pid");
    rt.ok(&["create", "--bundle", bundle.path_str(), "--pid-file", pid_file.to_str().unwrap(), &id]);
    read_pid_file(&pid_file)
}

/// Asserts that `create` fails and that the message names `field`.
fn assert_create_rejects(change: impl FnOnce(&mut Value), field: &str) {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(change);
    let id = rt.id("rejected");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains(field), "the message does not name {field}: {out}");
    assert!(!rt.container_dir(&id).exists(), "state left behind");
}

#[test]
fn personality_linux32() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["uname", "-m"]);
    bundle.edit(|config| config["linux"]["personality"] = json!({ "domain": "LINUX32" }));

    let out = run(&rt, &bundle, "personality");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "i686", "uname -m under PER_LINUX32");
}

#[test]
fn personality_flags_rejected() {
    assert_create_rejects(
        |config| config["linux"]["personality"] = json!({ "domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"] }),
        "linux.personality.flags",
    );
}

/// Returns field `index` (1-based, as proc(5) numbers them) of
/// /proc/PID/stat.
fn stat_field(pid: i32, index: usize) -> String {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let after_name = &stat[stat.rfind(')').expect("a command name in parentheses") + 2..];
    // Fields 1 and 2 are the pid and the name; the rest follow the ')'.
    after_name.split_whitespace().nth(index - 3).expect("the field exists").to_owned()
}

#[test]
fn scheduler_batch_with_nice() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| config["process"]["scheduler"] = json!({ "policy": "SCHED_BATCH", "nice": 7 }));

    let pid = create_init(&rt, &bundle, "sched-batch");

    assert_eq!(stat_field(pid, 41), "3", "policy field of /proc/{pid}/stat (SCHED_BATCH is 3)");
    assert_eq!(stat_field(pid, 19), "7", "nice field of /proc/{pid}/stat");
}

#[test]
fn scheduler_iso_rejected() {
    assert_create_rejects(
        |config| config["process"]["scheduler"] = json!({ "policy": "SCHED_ISO" }),
        "SCHED_ISO",
    );
}

#[test]
fn io_priority_idle_class() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| config["process"]["ioPriority"] = json!({ "class": "IOPRIO_CLASS_IDLE", "priority": 0 }));

    let pid = create_init(&rt, &bundle, "ioprio");

    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    // SAFETY: ioprio_get(2) takes plain values.
    let value = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, pid as libc::c_long) };
    assert!(value >= 0, "ioprio_get: {}", std::io::Error::last_os_error());
    assert_eq!(value >> 13, 3, "I/O class of pid {pid} (idle is 3): ioprio {value:#x}");
}

#[test]
fn io_priority_out_of_range_rejected() {
    assert_create_rejects(
        |config| config["process"]["ioPriority"] = json!({ "class": "IOPRIO_CLASS_BE", "priority": 9 }),
        "process.ioPriority.priority",
    );
}

#[test]
fn memory_policy_bind() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| config["linux"]["memoryPolicy"] = json!({ "mode": "MPOL_BIND", "nodes": "0" }));

    let pid = create_init(&rt, &bundle, "mempolicy");

    let maps = fs::read_to_string(format!("/proc/{pid}/numa_maps")).expect("read numa_maps");
    let first = maps.lines().next().unwrap_or_default();
    assert!(first.split_whitespace().nth(1) == Some("bind:0"), "policy of pid {pid}: {first}");
}

#[test]
fn memory_policy_bad_nodes_rejected() {
    assert_create_rejects(
        |config| config["linux"]["memoryPolicy"] = json!({ "mode": "MPOL_BIND", "nodes": "0-x" }),
        "linux.memoryPolicy.nodes",
    );
}

/// A boot time one year ahead: /proc/uptime inside reports it.
#[test]
fn time_namespace_offsets() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["cat", "/proc/uptime"]);
    bundle.edit(|config| {
        config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({ "type": "time" }));
        config["linux"]["timeOffsets"] = json!({ "boottime": { "secs": 31_536_000, "nanosecs": 0 } });
    });

    let out = run(&rt, &bundle, "timens");

    assert_eq!(out.code, 0, "{out}");
    let inside: f64 = out.stdout.split_whitespace().next().unwrap_or("").parse().expect("uptime seconds");
    let host: f64 = fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let difference = inside - host;
    assert!((31_535_990.0..31_536_010.0).contains(&difference), "inside {inside}, host {host}");
}

#[test]
fn time_offsets_need_time_namespace() {
    assert_create_rejects(
        |config| config["linux"]["timeOffsets"] = json!({ "monotonic": { "secs": 10 } }),
        "linux.timeOffsets",
    );
}

#[test]
fn exec_cpu_affinity_final() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "1000"]);
    let id = rt.id("affinity");
    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), &id]);
    let process = rt.tempdir("process").join("process.json");
    let mut spec = bundle.config()["process"].clone();
    spec["args"] = json!(["grep", "Cpus_allowed_list", "/proc/self/status"]);
    spec["execCPUAffinity"] = json!({ "initial": "0", "final": "0" });
    fs::write(&process, spec.to_string()).unwrap();

    let out = rt.output(&["exec", "--process", process.to_str().unwrap(), &id]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.split_whitespace().last(), Some("0"), "{out}");
}

#[test]
fn intel_rdt_rejected_without_resctrl() {
    assert_create_rejects(|config| config["linux"]["intelRdt"] = json!({ "closID": "c1" }), "linux.intelRdt");
}
