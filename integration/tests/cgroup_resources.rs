//! `linux.resources` field by field, checked from outside (the cgroup file
//! the runtime wrote) and, where the container can read it, from inside.
//! Also OOM kills and `events`, the cgroup path forms, and processes left
//! in the cgroup after the init exits. Each check reads the v1 or the v2 file,
//! whichever the host has, so the same tests run in the cgroup v2 guest.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use conman_integration::{
    cgroup_v2_only, controller_site, controller_site_at, existing_cgroup_dirs, process_alive, read_pid_file,
    v2_controllers, Bundle, Runtime, Spawned, COMMAND_TIMEOUT,
};
use serde_json::{json, Value};

/// Adds a read-write bind mount of a new host directory at `/out` and
/// returns the host directory.
fn bind_out_dir(rt: &Runtime, bundle: &mut Bundle) -> PathBuf {
    let dir = rt.tempdir("out");
    bundle.add_mount(json!({ "destination": "/out", "type": "bind", "source": dir, "options": ["rbind", "rw"] }));
    dir
}

/// Reads `/out/NAME` as the container wrote it, trimmed.
fn read_out(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
        .trim()
        .to_owned()
}

/// Starts `bundle` detached and returns the init's host pid.
fn run_detached(rt: &Runtime, bundle: &Bundle, id: &str) -> i32 {
    let pid_file = rt.tempdir("pid").join("init.pid");
    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), "--pid-file", pid_file.to_str().unwrap(), id]);
    read_pid_file(&pid_file)
}

/// Returns the `major:minor` of a block device on this host, if it has one.
fn block_device() -> Option<(u64, u64)> {
    let mut names: Vec<_> = fs::read_dir("/sys/block").ok()?.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let name = name.to_string_lossy().into_owned();
        // A loop device without a backing file takes no I/O limits.
        if name.starts_with("loop") {
            continue;
        }
        let dev = fs::read_to_string(Path::new("/sys/block").join(&name).join("dev")).ok()?;
        let (major, minor) = dev.trim().split_once(':')?;
        return Some((major.parse().ok()?, minor.parse().ok()?));
    }
    None
}

#[test]
fn cpuset_pins_the_process() {
    let rt = Runtime::new();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = (cpus - 1).to_string();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "grep Cpus_allowed_list /proc/self/status > /out/status"]);
    let out_dir = bind_out_dir(&rt, &mut bundle);
    bundle.edit(|config| config["linux"]["resources"]["cpu"] = json!({ "cpus": cpu, "mems": "0" }));
    let id = rt.id("cpuset");

    rt.create(&bundle, &id);
    let site = controller_site("cpuset", &id);
    assert_eq!(site.read("cpuset.cpus", "cpuset.cpus"), cpu);
    rt.ok(&["start", &id]);
    assert_eq!(rt.wait_for_status(&id, "stopped"), "stopped");

    let status = read_out(&out_dir, "status");
    assert_eq!(status.split_whitespace().last(), Some(cpu.as_str()), "inside: {status}");
}

/// Copies the CPU quota file of the container's own cgroup to /out: with
/// a cgroup namespace, /sys/fs/cgroup/cpu/cpu.cfs_quota_us on v1 and
/// /sys/fs/cgroup/cpu.max on v2.
const SHOW_CPU_LIMITS: &str = "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu.max 2>/dev/null > /out/quota";

#[test]
fn cpu_bandwidth_and_weight() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", SHOW_CPU_LIMITS]);
    let out_dir = bind_out_dir(&rt, &mut bundle);
    bundle.edit(|config| {
        config["linux"]["resources"]["cpu"] =
            json!({ "shares": 2048, "quota": 50000, "period": 100000, "burst": 10000 })
    });
    let id = rt.id("cpu-limits");

    rt.create(&bundle, &id);
    let site = controller_site("cpu", &id);
    if site.is_v2() {
        assert_eq!(site.read("", "cpu.max"), "50000 100000");
        assert_eq!(site.read("", "cpu.max.burst"), "10000");
        assert_eq!(site.read("", "cpu.weight"), "79");
    } else {
        assert_eq!(site.read("cpu.cfs_quota_us", ""), "50000");
        assert_eq!(site.read("cpu.cfs_period_us", ""), "100000");
        assert_eq!(site.read("cpu.cfs_burst_us", ""), "10000");
        assert_eq!(site.read("cpu.shares", ""), "2048");
    }
    rt.ok(&["start", &id]);
    assert_eq!(rt.wait_for_status(&id, "stopped"), "stopped");

    let inside = read_out(&out_dir, "quota");
    let expected = if site.is_v2() { "50000 100000" } else { "50000" };
    assert_eq!(inside, expected, "the quota seen inside the container");
}

#[test]
fn block_io_throttle() {
    let Some((major, minor)) = block_device() else {
        panic!("this host has no block device in /sys/block to throttle");
    };
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| {
        config["linux"]["resources"]["blockIO"] = json!({
            "throttleReadBpsDevice": [{ "major": major, "minor": minor, "rate": 1048576 }],
            "throttleWriteIOPSDevice": [{ "major": major, "minor": minor, "rate": 100 }],
        })
    });
    let id = rt.id("blkio");

    rt.create(&bundle, &id);

    let site = controller_site("blkio", &id);
    if site.is_v2() {
        let max = site.read("", "io.max");
        assert!(max.contains(&format!("{major}:{minor} rbps=1048576")), "io.max: {max}");
        assert!(max.contains("wiops=100"), "io.max: {max}");
    } else {
        assert_eq!(site.read("blkio.throttle.read_bps_device", ""), format!("{major}:{minor} 1048576"));
        assert_eq!(site.read("blkio.throttle.write_iops_device", ""), format!("{major}:{minor} 100"));
    }
}

#[test]
fn block_io_throttle_unknown_device() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| {
        config["linux"]["resources"]["blockIO"] =
            json!({ "throttleReadBpsDevice": [{ "major": 4000, "minor": 7, "rate": 1 }] })
    });
    let id = rt.id("blkio-nodev");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("linux.resources.blockIO.throttleReadBpsDevice"), "{out}");
    assert!(out.stderr.contains("4000:7"), "the message does not name the device: {out}");
    assert!(existing_cgroup_dirs(&id).is_empty(), "cgroups left behind");
    assert!(!rt.container_dir(&id).exists(), "state left behind");
}

/// The hugetlb controller is on v1 or v2 depending on the host, and the
/// development VM has it on v2 only. Wherever it is, the limit must be in
/// the file of that version.
#[test]
fn hugepage_limit() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| {
        config["linux"]["resources"]["hugepageLimits"] = json!([{ "pageSize": "2MB", "limit": 4194304 }])
    });
    let id = rt.id("hugetlb");
    let site = controller_site("hugetlb", &id);
    let available = !site.is_v2() || v2_controllers().iter().any(|c| c == "hugetlb");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    if available {
        assert_eq!(out.code, 0, "{out}");
        assert_eq!(site.read("hugetlb.2MB.limit_in_bytes", "hugetlb.2MB.max"), "4194304");
    } else {
        assert_ne!(out.code, 0, "{out}");
        assert!(out.stderr.contains("hugetlb"), "the message does not name the controller: {out}");
    }
}

/// `unified` writes v2 files by name. The key is one of a controller the
/// host has on v2: pids on a v2 host, hugetlb on this hybrid one.
#[test]
fn unified_key_written() {
    let controllers = v2_controllers();
    let (key, value) = if controllers.iter().any(|c| c == "pids") {
        ("pids.max", "7")
    } else if controllers.iter().any(|c| c == "hugetlb") {
        ("hugetlb.2MB.max", "2097152")
    } else {
        panic!("no v2 controller to test `unified` with: {controllers:?}");
    };
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| config["linux"]["resources"]["unified"] = json!({ key: value }));
    let id = rt.id("unified");

    rt.create(&bundle, &id);

    let root = if cgroup_v2_only() { "/sys/fs/cgroup" } else { "/sys/fs/cgroup/unified" };
    let path = Path::new(root).join("conman").join(&id).join(key);
    let written = fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    assert_eq!(written.trim(), value);
}

#[test]
fn unified_unknown_key_refused() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| config["linux"]["resources"]["unified"] = json!({ "nosuch.file": "1" }));
    let id = rt.id("unified-bad");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("\"nosuch.file\""), "the message does not name the key: {out}");
    assert!(existing_cgroup_dirs(&id).is_empty(), "cgroups left behind");
}

/// The container's shell runs a memory hog under a 16 MiB limit and writes
/// the hog's exit status; `events` reports the OOM kill.
#[test]
fn oom_kill_is_reported() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "sleep 0.5; tail /dev/zero; echo $? > /out/status"]);
    let out_dir = bind_out_dir(&rt, &mut bundle);
    bundle.edit(|config| {
        config["linux"]["resources"]["memory"] = json!({ "limit": 16 * 1024 * 1024, "swap": 16 * 1024 * 1024 })
    });
    let id = rt.id("oom");
    rt.create(&bundle, &id);
    let events = Spawned::new(rt.command(&["events", "--interval", "10s", &id]));

    rt.ok(&["start", &id]);
    assert_eq!(rt.wait_for_status(&id, "stopped"), "stopped");
    let events = events.wait(COMMAND_TIMEOUT);

    assert_eq!(read_out(&out_dir, "status"), "137", "the hog was not killed by SIGKILL");
    assert_eq!(events.code, 0, "{events}");
    let lines: Vec<Value> = events
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("not JSON ({err}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|e| e["type"] == "oom" && e["id"] == id.as_str()),
        "no oom event: {events}"
    );
    let oom_line = format!("{{\"type\":\"oom\",\"id\":\"{id}\"}}");
    assert!(events.stdout.lines().any(|l| l == oom_line), "no line {oom_line}: {events}");
    let site = controller_site("memory", &id);
    let failures = if site.is_v2() {
        site.read("", "memory.events")
    } else {
        site.read("memory.oom_control", "")
    };
    assert!(failures.lines().any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0"), "{failures}");
}

#[test]
fn oom_killed_init_exit_status() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["tail", "/dev/zero"]);
    bundle.edit(|config| {
        config["linux"]["resources"]["memory"] = json!({ "limit": 16 * 1024 * 1024, "swap": 16 * 1024 * 1024 })
    });
    let id = rt.id("oom-run");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 137, "{out}");
    assert!(existing_cgroup_dirs(&id).is_empty(), "cgroups left behind");
}

#[test]
fn events_stats_once() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1000"]);
    bundle.edit(|config| {
        config["linux"]["resources"]["memory"] = json!({ "limit": 64 * 1024 * 1024 });
        config["linux"]["resources"]["pids"] = json!({ "limit": 10 });
    });
    let id = rt.id("stats");
    run_detached(&rt, &bundle, &id);
    sleep(Duration::from_millis(300));

    let out = rt.ok(&["events", "--stats", &id]);

    // The fields come in runc's order, which scripts match on the raw line.
    let prefix = format!("{{\"type\":\"stats\",\"id\":\"{id}\",\"data\":{{");
    assert!(out.stdout.starts_with(&prefix), "does not start with {prefix}: {out}");
    let event: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|err| panic!("not JSON ({err}): {out}"));
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], id.as_str());
    let data = &event["data"];
    assert_eq!(data["pids"]["current"], 1, "{data}");
    assert_eq!(data["pids"]["limit"], 10, "{data}");
    assert_eq!(data["memory"]["usage"]["limit"], 64 * 1024 * 1024, "{data}");
    assert!(data["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0, "{data}");
    assert!(data["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0, "{data}");
    for key in ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"] {
        assert!(data.get(key).is_some(), "no \"{key}\" in {data}");
    }
}

#[test]
fn events_refuses_bad_interval_and_stopped_container() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["true"]);
    let id = rt.id("events-bad");
    rt.create(&bundle, &id);

    let out = rt.output(&["events", "--interval", "soon", &id]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("\"soon\""), "{out}");

    rt.ok(&["start", &id]);
    assert_eq!(rt.wait_for_status(&id, "stopped"), "stopped");
    let out = rt.output(&["events", "--stats", &id]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("container not running"), "{out}");
}

#[test]
fn update_check_before_update() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "1000"]);
    let id = rt.id("check-update");
    run_detached(&rt, &bundle, &id);
    let site = controller_site("memory", &id);
    let before = site.read("memory.limit_in_bytes", "memory.max");
    let resources = rt.tempdir("res").join("r.json");
    fs::write(&resources, r#"{"memory":{"limit":4096,"checkBeforeUpdate":true}}"#).unwrap();

    let out = rt.output(&["update", "--resources", resources.to_str().unwrap(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("checkBeforeUpdate"), "{out}");
    assert_eq!(site.read("memory.limit_in_bytes", "memory.max"), before, "the limit changed");
    assert_eq!(rt.status(&id), "running");
}

/// Lists the roots of every cgroup hierarchy on this host.
fn hierarchy_roots() -> Vec<PathBuf> {
    if cgroup_v2_only() {
        return vec![PathBuf::from("/sys/fs/cgroup")];
    }
    fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
}

/// Removes the empty directories `relative` (deepest first) from every
/// hierarchy when dropped: the parents that a test's cgroups path made.
struct RemoveParents(Vec<&'static str>);

impl Drop for RemoveParents {
    fn drop(&mut self) {
        for root in hierarchy_roots() {
            for relative in &self.0 {
                let _ = fs::remove_dir(root.join(relative));
            }
        }
    }
}

#[test]
fn systemd_cgroup_path() {
    let rt = Runtime::new();
    let id = rt.id("systemd");
    let mut bundle = Bundle::with_args(&rt, &["sleep", "1000"]);
    bundle.edit(|config| config["linux"]["cgroupsPath"] = json!(format!("conmantest-a.slice:unit:{id}")));
    let _parents = RemoveParents(vec!["conmantest.slice/conmantest-a.slice", "conmantest.slice"]);
    let relative = PathBuf::from(format!("conmantest.slice/conmantest-a.slice/unit-{id}.scope"));
    let site = controller_site_at("pids", &relative);

    let out = rt.output(&["--systemd-cgroup", "run", "--detach", "--bundle", bundle.path_str(), &id]);
    assert_eq!(out.code, 0, "{out}");
    let procs = site.read("cgroup.procs", "cgroup.procs");
    rt.ok(&["delete", "--force", &id]);

    assert_eq!(procs.lines().count(), 1, "{}: {procs}", site.dir().display());
    assert!(!site.dir().exists(), "{} left after delete", site.dir().display());
}

#[test]
fn systemd_cgroup_path_malformed() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| config["linux"]["cgroupsPath"] = json!("/not/a/slice"));
    let id = rt.id("systemd-bad");

    let out = rt.output(&["--systemd-cgroup", "create", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("SLICE:PREFIX:NAME"), "{out}");
    assert!(!rt.container_dir(&id).exists(), "state left behind");
}

#[test]
fn relative_and_absolute_cgroups_paths() {
    let rt = Runtime::new();
    let _parents = RemoveParents(vec!["conmantest-abs", "conman/nested"]);
    for (name, form) in [("rel", "relative"), ("abs", "absolute")] {
        let id = rt.id(name);
        let (given, relative) = match form {
            "relative" => (format!("nested/{id}"), PathBuf::from(format!("conman/nested/{id}"))),
            _ => (format!("/conmantest-abs/{id}"), PathBuf::from(format!("conmantest-abs/{id}"))),
        };
        let mut bundle = Bundle::with_args(&rt, &["sleep", "1000"]);
        bundle.edit(|config| config["linux"]["cgroupsPath"] = json!(given));
        let site = controller_site_at("pids", &relative);

        run_detached(&rt, &bundle, &id);
        let procs = site.read("cgroup.procs", "cgroup.procs");
        rt.ok(&["delete", "--force", &id]);
        let left = site.dir().exists();

        assert_eq!(procs.lines().count(), 1, "{form} path {given}: {procs}");
        assert!(!left, "{form} path {given}: {} left after delete", site.dir().display());
    }
}

/// Without a pid namespace of its own, the container's processes outlive
/// its init. `delete` of the stopped container kills them and removes the
/// cgroup.
#[test]
fn delete_kills_processes_left_after_init_exit() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "sleep 1000 & echo $! > /out/child"]);
    let out_dir = bind_out_dir(&rt, &mut bundle);
    bundle.edit(|config| {
        let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.retain(|ns| ns["type"] != "pid");
    });
    let id = rt.id("leftover");
    run_detached(&rt, &bundle, &id);
    assert_eq!(rt.wait_for_status(&id, "stopped"), "stopped");
    let child: i32 = read_out(&out_dir, "child").parse().expect("child pid");
    assert!(process_alive(child), "the background sleep {child} is already gone");

    rt.ok(&["delete", &id]);

    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(child) && Instant::now() < deadline {
        sleep(Duration::from_millis(10));
    }
    assert!(!process_alive(child), "pid {child} survived delete");
    assert!(existing_cgroup_dirs(&id).is_empty(), "cgroups left after delete");
}

/// With a cgroup namespace, the container reads its own cgroup as the root.
#[test]
fn cgroup_namespace_shows_own_root() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "cat /proc/self/cgroup > /out/cgroup"]);
    let out_dir = bind_out_dir(&rt, &mut bundle);
    let id = rt.id("cgroupns");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    let cgroup = read_out(&out_dir, "cgroup");
    assert!(!cgroup.is_empty());
    for line in cgroup.lines() {
        assert!(line.ends_with(":/"), "a cgroup path that is not the namespace root: {line}");
    }
}

/// The memory and cpu fields without a test of their own, each set alone
/// on a new container: on v1 the file must hold the value, on v2 the field
/// is either written to its v2 file or rejected by name.
#[test]
fn single_fields_table() {
    struct Case {
        resource: &'static str,
        value: Value,
        field: &'static str,
        v1: Option<(&'static str, &'static str)>,
        v2: Option<(&'static str, &'static str)>,
    }
    let cases = [
        Case {
            resource: "memory",
            value: json!({ "reservation": 33554432 }),
            field: "memory.reservation",
            v1: Some(("memory.soft_limit_in_bytes", "33554432")),
            v2: Some(("memory.low", "33554432")),
        },
        Case {
            resource: "memory",
            value: json!({ "kernelTCP": 16777216 }),
            field: "memory.kernelTCP",
            v1: Some(("memory.kmem.tcp.limit_in_bytes", "16777216")),
            v2: None,
        },
        Case {
            resource: "memory",
            value: json!({ "swappiness": 10 }),
            field: "memory.swappiness",
            v1: Some(("memory.swappiness", "10")),
            v2: None,
        },
        Case {
            resource: "memory",
            value: json!({ "disableOOMKiller": true }),
            field: "memory.disableOOMKiller",
            v1: Some(("memory.oom_control", "oom_kill_disable 1")),
            v2: None,
        },
        Case {
            resource: "memory",
            value: json!({ "limit": 33554432, "useHierarchy": true }),
            field: "memory.useHierarchy",
            v1: Some(("memory.use_hierarchy", "1")),
            v2: Some(("memory.max", "33554432")),
        },
        Case {
            resource: "cpu",
            value: json!({ "idle": 1 }),
            field: "cpu.idle",
            v1: Some(("cpu.idle", "1")),
            v2: Some(("cpu.idle", "1")),
        },
    ];
    for case in cases {
        let rt = Runtime::new();
        let mut bundle = Bundle::with_args(&rt, &["true"]);
        bundle.edit(|config| config["linux"]["resources"][case.resource] = case.value.clone());
        let id = rt.id("field");
        let controller = if case.resource == "cpu" { "cpu" } else { "memory" };
        let site = controller_site(controller, &id);
        let expected = if site.is_v2() { case.v2 } else { case.v1 };

        let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

        match expected {
            Some((file, value)) => {
                assert_eq!(out.code, 0, "{}: {out}", case.field);
                let text = fs::read_to_string(site.dir().join(file)).unwrap_or_else(|err| panic!("read {file}: {err}"));
                assert!(text.lines().any(|line| line.trim() == value), "{}: {file} is {text:?}, expected a line {value:?}", case.field);
            }
            None => {
                assert_ne!(out.code, 0, "{}: {out}", case.field);
                assert!(out.stderr.contains(case.field), "{}: the message does not name the field: {out}", case.field);
                assert!(existing_cgroup_dirs(&id).is_empty(), "{}: cgroups left behind", case.field);
            }
        }
    }
}
