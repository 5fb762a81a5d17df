//! Operations on a container's cgroups: pause, resume, ps, update, resource
//! limits at create time, a limit the host refuses, kill --all, and
//! delete --force of a paused container. Each check reads the v1 or the v2
//! file, whichever the host has.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use conman_integration::{
    cgroup_dir, controller_site, controller_site_at, existing_cgroup_dirs, process_alive, read_pid_file, Bundle,
    ControllerSite, Runtime, Spawned, COMMAND_TIMEOUT,
};
use serde_json::{json, Value};

/// Starts `bundle` with `run --detach` and returns the init's host pid.
fn run_detached(rt: &Runtime, bundle: &Bundle, id: &str) -> i32 {
    let pid_file = rt.tempdir("pid").join("init.pid");
    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), "--pid-file", pid_file.to_str().unwrap(), id]);
    read_pid_file(&pid_file)
}

/// Adds a read-write bind mount of a new host directory at `/out` and
/// returns the host directory.
fn bind_out_dir(rt: &Runtime, bundle: &mut Bundle) -> PathBuf {
    let dir = rt.tempdir("out");
    bundle.add_mount(json!({ "destination": "/out", "type": "bind", "source": dir, "options": ["rbind", "rw"] }));
    dir
}

/// Reads one cgroup file of container `id`, without the trailing newline.
fn read_cgroup_file(controller: &str, id: &str, file: &str) -> String {
    let path = cgroup_dir(controller, id).join(file);
    fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
        .trim_end()
        .to_owned()
}

/// Returns the sorted pids in the pids cgroup of container `id`.
fn cgroup_procs(id: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = read_cgroup_file("pids", id, "cgroup.procs")
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// Waits until the pids cgroup of container `id` contains `count` processes,
/// and returns them.
fn wait_for_procs(id: &str, count: usize) -> Vec<i32> {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        let pids = cgroup_procs(id);
        if pids.len() == count || Instant::now() >= deadline {
            return pids;
        }
        sleep(Duration::from_millis(10));
    }
}

/// Reads the counter that the container writes into `/out/counter`, or
/// `None` before the first write.
fn read_counter(out_dir: &Path) -> Option<u64> {
    fs::read_to_string(out_dir.join("counter")).ok()?.trim().parse().ok()
}

/// Increments a number in `/out/counter` every 50 ms. Each value goes to a
/// temporary file first and is renamed over the counter, so the host never
/// reads a half-written number.
const COUNTER_LOOP: &str =
    "n=0; while true; do n=$((n+1)); echo $n > /out/counter.tmp; mv /out/counter.tmp /out/counter; sleep 0.05; done";

#[test]
fn pause_stops_counter() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", COUNTER_LOOP]);
    let out_dir = bind_out_dir(&rt, &mut bundle);
    let id = rt.id("pause-counter");
    run_detached(&rt, &bundle, &id);
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while read_counter(&out_dir).is_none_or(|n| n < 2) {
        assert!(Instant::now() < deadline, "the container never wrote its counter");
        sleep(Duration::from_millis(20));
    }

    rt.ok(&["pause", &id]);
    assert_eq!(rt.status(&id), "paused");
    let first = read_counter(&out_dir);
    sleep(Duration::from_millis(300));
    let second = read_counter(&out_dir);
    assert_eq!(first, second, "the counter moved while the container was paused");

    rt.ok(&["resume", &id]);
    assert_eq!(rt.status(&id), "running");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = read_counter(&out_dir);
    while after == second && Instant::now() < deadline {
        sleep(Duration::from_millis(20));
        after = read_counter(&out_dir);
    }
    assert_ne!(after, second, "the counter did not move after resume");
}

#[test]
fn ps_json_matches_cgroup() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sh", "-c", "sleep 1000 & sleep 1000"]);
    let id = rt.id("ps-json");
    run_detached(&rt, &bundle, &id);
    // sh starts the background sleep and then execs the last command in
    // place of itself, so the container has two processes.
    let expected = wait_for_procs(&id, 2);
    assert_eq!(expected.len(), 2, "cgroup.procs of {id}: {expected:?}");

    let out = rt.ok(&["ps", "--format", "json", &id]);

    let mut listed: Vec<i32> =
        serde_json::from_str(&out.stdout).unwrap_or_else(|err| panic!("not a JSON array of pids ({err}): {out}"));
    listed.sort_unstable();
    assert_eq!(listed, expected, "{out}");
}

#[test]
fn ps_table_shows_init() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "1000"]);
    let id = rt.id("ps-table");
    let init_pid = run_detached(&rt, &bundle, &id);

    let out = rt.ok(&["ps", &id]);

    let header = out.stdout.lines().next().unwrap_or_default();
    let column = header.split_whitespace().position(|name| name == "PID");
    assert!(column.is_some(), "the header has no PID column: {out}");
    let column = column.unwrap();
    let init_line = out
        .stdout
        .lines()
        .skip(1)
        .find(|line| line.split_whitespace().nth(column) == Some(init_pid.to_string().as_str()));
    assert!(init_line.is_some(), "no line for init {init_pid}: {out}");
    assert!(init_line.unwrap().contains("sleep 1000"), "{out}");
}

/// ps(1) options may follow the id directly, as runc takes them, or come
/// after `--`.
#[test]
fn ps_options_after_id() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "1000"]);
    let id = rt.id("ps-options");
    let init_pid = run_detached(&rt, &bundle, &id);

    for args in [vec!["ps", id.as_str(), "-o", "pid,comm"], vec!["ps", id.as_str(), "--", "-o", "pid,comm"]] {
        let out = rt.ok(&args);

        let mut lines = out.stdout.lines();
        assert_eq!(lines.next().map(|h| h.split_whitespace().collect::<Vec<_>>()), Some(vec!["PID", "COMMAND"]), "{args:?}: {out}");
        let expected = format!("{init_pid} sleep");
        assert!(
            lines.any(|line| line.split_whitespace().collect::<Vec<_>>().join(" ") == expected),
            "{args:?}: no line \"{expected}\": {out}"
        );
    }
}

/// Reads the memory limit of container `id` (v1 or v2 file).
fn memory_limit(id: &str) -> String {
    controller_site("memory", id).read("memory.limit_in_bytes", "memory.max")
}

/// The cpu.shares value 512 as the runtime writes it: as it is on v1, as
/// the matching cpu.weight on v2.
fn shares_512(id: &str) -> (String, &'static str) {
    let site = controller_site("cpu", id);
    let expected = if site.is_v2() { "20" } else { "512" };
    (site.read("cpu.shares", "cpu.weight"), expected)
}

/// Starts `sleep 1000` for the update tests.
fn start_for_update(rt: &Runtime, name: &str) -> String {
    let bundle = Bundle::with_args(rt, &["sleep", "1000"]);
    let id = rt.id(name);
    run_detached(rt, &bundle, &id);
    id
}

#[test]
fn update_memory_and_pids() {
    let rt = Runtime::new();
    let id = start_for_update(&rt, "update-flags");

    rt.ok(&["update", "--memory", "64m", "--pids-limit", "20", &id]);

    assert_eq!(memory_limit(&id), "67108864");
    assert_eq!(read_cgroup_file("pids", &id, "pids.max"), "20");
}

const RESOURCES_JSON: &str = r#"{"memory":{"limit":33554432},"cpu":{"shares":512}}"#;

#[test]
fn update_resources_file() {
    let rt = Runtime::new();
    let id = start_for_update(&rt, "update-file");
    let path = rt.tempdir("resources").join("resources.json");
    fs::write(&path, RESOURCES_JSON).expect("write resources.json");

    rt.ok(&["update", "--resources", path.to_str().unwrap(), &id]);

    assert_eq!(memory_limit(&id), "33554432");
    let (shares, expected) = shares_512(&id);
    assert_eq!(shares, expected);
}

#[test]
fn update_resources_stdin() {
    let rt = Runtime::new();
    let id = start_for_update(&rt, "update-stdin");

    let update = Spawned::with_stdin(rt.command(&["update", "--resources", "-", &id]), RESOURCES_JSON.as_bytes());
    let out = update.wait(COMMAND_TIMEOUT);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(memory_limit(&id), "33554432");
    let (shares, expected) = shares_512(&id);
    assert_eq!(shares, expected);
}

/// Copies the limits read inside the container to /out, then tries to start
/// 40 background processes, each of which appends a line to /out/started.
/// The inner shell stops at its first failed fork.
const FORK_LOOP: &str = r#"cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null > /out/memory
cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null > /out/pids
sh -c 'for i in $(seq 40); do (echo x >> /out/started; exec sleep 5) & done' 2>/dev/null
sleep 0.2
wc -l < /out/started > /out/count"#;

#[test]
fn create_applies_limits() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", FORK_LOOP]);
    let out_dir = bind_out_dir(&rt, &mut bundle);
    bundle.edit(|config| {
        config["linux"]["resources"]["memory"] = json!({ "limit": 50 * 1024 * 1024 });
        config["linux"]["resources"]["pids"] = json!({ "limit": 16 });
    });
    let id = rt.id("create-limits");

    rt.create(&bundle, &id);
    assert_eq!(memory_limit(&id), "52428800");
    assert_eq!(read_cgroup_file("pids", &id, "pids.max"), "16");

    rt.ok(&["start", &id]);
    assert_eq!(rt.wait_for_status(&id, "stopped"), "stopped");
    let read_out = |name: &str| {
        let path = out_dir.join(name);
        fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display())).trim().to_owned()
    };
    assert_eq!(read_out("memory"), "52428800", "memory limit seen inside the container");
    assert_eq!(read_out("pids"), "16", "pids limit seen inside the container");
    let started: u32 = read_out("count").parse().unwrap_or_else(|err| panic!("count is not a number: {err}"));
    assert!(started > 0, "no background process started");
    assert!(started < 40, "all 40 background processes started despite pids.max 16");
}

/// Asserts that a create with `value` in `linux.resources.<resource>` fails
/// with a message that names `field`, and leaves no state directory and no
/// cgroup.
fn assert_create_rejects(resource: &str, value: Value, field: &str) {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(|config| config["linux"]["resources"][resource] = value);
    let id = rt.id("unsupported");

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains(field), "the message does not name {field}: {out}");
    assert!(!rt.container_dir(&id).exists(), "state directory left behind: {out}");
    let cgroups = existing_cgroup_dirs(&id);
    assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
}

/// A real-time CPU budget in a cgroup whose parent has none: v1 refuses
/// the write, v2 has no such setting. Either way the create fails, names
/// the field, and leaves nothing behind.
#[test]
fn realtime_runtime_refused() {
    assert_create_rejects(
        "cpu",
        json!({ "realtimeRuntime": 1000, "realtimePeriod": 1000000 }),
        "linux.resources.cpu.realtime",
    );
}

/// net_cls is a v1 controller that this host does not mount, and that v2
/// does not have.
#[test]
fn network_class_id_refused() {
    assert_create_rejects("network", json!({ "classID": 1048577 }), "linux.resources.network.classID");
}

#[test]
fn unknown_hugepage_size_refused() {
    assert_create_rejects(
        "hugepageLimits",
        json!([{ "pageSize": "3MB", "limit": 2097152 }]),
        "linux.resources.hugepageLimits",
    );
}

/// Sends SIGKILL to every pid in the list when dropped, so that a failed
/// `kill --all` leaves no process behind.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if process_alive(pid) {
                // SAFETY: kill on a process of this test's container.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The container shares the host's pid namespace. In a namespace of its own,
/// killing the init alone would also kill the background child, so the test
/// could not distinguish `--all` from a plain kill.
#[test]
fn kill_all_kills_child() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "sleep 1000 & exec sleep 1000"]);
    bundle.edit(|config| {
        let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.retain(|ns| ns["type"] != "pid");
    });
    let id = rt.id("kill-all");
    let init_pid = run_detached(&rt, &bundle, &id);
    let pids = wait_for_procs(&id, 2);
    let _guard = KillOnDrop(pids.clone());
    assert_eq!(pids.len(), 2, "cgroup.procs of {id}: {pids:?}");
    assert!(pids.contains(&init_pid), "init {init_pid} is not in cgroup.procs: {pids:?}");

    rt.ok(&["kill", "--all", &id, "9"]);

    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&pid| process_alive(pid)) && Instant::now() < deadline {
        sleep(Duration::from_millis(10));
    }
    for pid in &pids {
        assert!(!process_alive(*pid), "pid {pid} survived kill --all");
    }
    assert_eq!(rt.wait_for_status(&id, "stopped"), "stopped");
}

#[test]
fn delete_force_paused_container() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "1000"]);
    let id = rt.id("delete-paused");
    let init_pid = run_detached(&rt, &bundle, &id);
    rt.ok(&["pause", &id]);

    let started = Instant::now();
    let out = rt.output(&["delete", "--force", &id]);
    let elapsed = started.elapsed();

    assert_eq!(out.code, 0, "{out}");
    assert!(elapsed < Duration::from_secs(3), "delete --force took {elapsed:?}");
    assert!(!rt.container_dir(&id).exists(), "state directory left after delete --force");
    for controller in ["memory", "pids", "freezer", "cpu"] {
        let dir = cgroup_dir(controller, &id);
        assert!(!dir.exists(), "{} left after delete --force", dir.display());
    }
    assert!(!process_alive(init_pid), "init {init_pid} still runs after delete --force");
}

#[test]
fn update_raises_memory_and_swap() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sleep", "1000"]);
    bundle.edit(|config| config["linux"]["resources"]["memory"] = json!({ "limit": 67108864, "swap": 67108864 }));
    let id = rt.id("update-swap");
    run_detached(&rt, &bundle, &id);

    // v1 rejects a memory limit above memory+swap, so the runtime must
    // raise memory+swap first.
    rt.ok(&["update", "--memory", "134217728", "--memory-swap", "134217728", &id]);

    let site = controller_site("memory", &id);
    assert_eq!(memory_limit(&id), "134217728");
    // v2 counts swap apart from memory: 128 MiB of memory+swap is no swap.
    let expected_swap = if site.is_v2() { "0" } else { "134217728" };
    assert_eq!(site.read("memory.memsw.limit_in_bytes", "memory.swap.max"), expected_swap);
}

#[test]
fn update_memory_minus_one() {
    let rt = Runtime::new();
    let id = start_for_update(&rt, "update-unlimited");
    rt.ok(&["update", "--memory", "64m", &id]);

    rt.ok(&["update", "--memory", "-1", &id]);

    let limit = memory_limit(&id);
    let unlimited = limit == "max" || limit.parse::<u64>().is_ok_and(|l| l > 1 << 40);
    assert!(unlimited, "memory limit still set: {limit}");
}

/// containerd's shim sends `kill --all ID 9` after every task exit. runc
/// exits 0 for a stopped container there, while a plain kill is an error.
#[test]
fn kill_all_of_stopped_container_succeeds() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["true"]);
    let id = rt.id("kill-all-stopped");
    rt.create(&bundle, &id);
    rt.ok(&["start", &id]);
    assert_eq!(rt.wait_for_status(&id, "stopped"), "stopped");

    let all = rt.output(&["kill", "--all", &id, "9"]);
    let plain = rt.output(&["kill", &id, "9"]);

    assert_eq!(all.code, 0, "{all}");
    assert_eq!(plain.code, 1, "{plain}");
    assert!(plain.stderr.contains("container not running"), "{plain}");
}

/// A freezer cgroup made and frozen by the test, thawed and removed on drop.
struct FrozenCgroup(ControllerSite);

impl FrozenCgroup {
    fn new(site: ControllerSite) -> FrozenCgroup {
        fs::create_dir_all(site.dir()).unwrap_or_else(|err| panic!("create {}: {err}", site.dir().display()));
        let frozen = FrozenCgroup(site);
        frozen.write_state("FROZEN", "1");
        frozen
    }

    fn write_state(&self, v1_state: &str, v2_value: &str) {
        let (file, value) = if self.0.is_v2() { ("cgroup.freeze", v2_value) } else { ("freezer.state", v1_state) };
        let path = self.0.dir().join(file);
        fs::write(&path, value).unwrap_or_else(|err| panic!("write {value} to {}: {err}", path.display()));
    }
}

impl Drop for FrozenCgroup {
    fn drop(&mut self) {
        self.write_state("THAWED", "0");
        let _ = fs::remove_dir(self.0.dir());
    }
}

/// A cgroup frozen before `create`, its own or a parent of it, would stop
/// the init before it runs: `create` fails at once, names the cgroup, and
/// leaves it, and every other hierarchy, as they were.
#[test]
fn create_rejects_frozen_cgroup() {
    let rt = Runtime::new();
    for below_frozen in [false, true] {
        let id = rt.id(if below_frozen { "frozen-parent" } else { "frozen-own" });
        let frozen = FrozenCgroup::new(controller_site_at("freezer", &Path::new("conman").join(&id)));
        let mut bundle = Bundle::with_args(&rt, &["true"]);
        let cgroups_path = if below_frozen { format!("/conman/{id}/child") } else { format!("/conman/{id}") };
        bundle.edit(|config| config["linux"]["cgroupsPath"] = cgroups_path.clone().into());

        let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

        assert_ne!(out.code, 0, "{cgroups_path}: {out}");
        assert!(out.stderr.contains("frozen"), "{cgroups_path}: {out}");
        assert!(out.stderr.contains(&frozen.0.dir().display().to_string()), "{cgroups_path}: {out}");
        assert_ne!(rt.output(&["state", &id]).code, 0, "{cgroups_path}: a failed create left a state");
        assert_eq!(existing_cgroup_dirs(&id), vec![frozen.0.dir().to_owned()], "{cgroups_path}");
        assert_eq!(frozen.0.read("freezer.state", "cgroup.freeze"), if frozen.0.is_v2() { "1" } else { "FROZEN" });
    }
}

/// A second container given the cgroup of a running one starts, with a
/// warning on stderr that names the cgroup. The first, in an empty cgroup,
/// gets none. No --log is given, so stderr is the only place for it.
#[test]
fn create_warns_about_occupied_cgroup() {
    let rt = Runtime::new();
    let first = rt.id("shared-first");
    let second = rt.id("shared-second");
    let mut bundle = Bundle::with_args(&rt, &["sleep", "60"]);
    bundle.edit(|config| config["linux"]["cgroupsPath"] = format!("/conman/{first}").into());

    let alone = rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), &first]);
    let shared = rt.ok(&["create", "--bundle", bundle.path_str(), &second]);

    assert_eq!(alone.stderr, "", "{alone}");
    assert!(shared.stderr.contains("level=warning"), "{shared}");
    assert!(shared.stderr.contains("cgroup is not empty"), "{shared}");
    let dirs = existing_cgroup_dirs(&first);
    assert!(
        dirs.iter().any(|dir| shared.stderr.contains(&dir.display().to_string())),
        "the warning names none of {dirs:?}: {shared}"
    );
}

/// On v1, lifting the memory limit with `--memory -1` alone also lifts a
/// memory+swap limit set before: the kernel rejects a memory limit above
/// memory+swap, and a finite memory+swap would keep memory limited.
#[test]
fn update_memory_minus_one_after_swap() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sleep", "1000"]);
    bundle.edit(|config| config["linux"]["resources"]["memory"] = json!({ "limit": 33554432, "swap": 67108864 }));
    let id = rt.id("update-unlimited-swap");
    run_detached(&rt, &bundle, &id);

    rt.ok(&["update", "--memory", "-1", &id]);

    let limit = memory_limit(&id);
    let unlimited = |value: &str| value == "max" || value.parse::<u64>().is_ok_and(|l| l > 1 << 40);
    assert!(unlimited(&limit), "memory limit still set: {limit}");
    let site = controller_site("memory", &id);
    if !site.is_v2() {
        let swap = site.read("memory.memsw.limit_in_bytes", "");
        assert!(unlimited(&swap), "memory+swap limit still set: {swap}");
    }
}

/// Cgroup directories made by a test for a parent ("pod") cgroup, removed
/// on drop in every hierarchy, after the containers in them are deleted.
struct PodCgroup(String);

impl Drop for PodCgroup {
    fn drop(&mut self) {
        for dir in existing_cgroup_dirs(&self.0) {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// cgroup v1 checks a new CFS period against the quota already set. Under a
/// pod limited to 50%, a container at 500 ms per 1 s may not move to a
/// 10 ms period with its old quota, but the new quota and period together
/// (30%) are allowed. The runtime writes the quota first when the period
/// alone fails.
#[test]
fn update_shorter_cpu_period_under_pod_limit() {
    let pod = format!("pod-{}", std::process::id());
    let _pod_dirs = PodCgroup(pod.clone());
    let rt = Runtime::new();
    let pod_site = controller_site_at("cpu", &Path::new("conman").join(&pod));
    if pod_site.is_v2() {
        eprintln!("SKIPPED: cpu is on cgroup v2, where quota and period are one write to cpu.max");
        return;
    }
    fs::create_dir_all(pod_site.dir()).unwrap();
    fs::write(pod_site.dir().join("cpu.cfs_quota_us"), "50000").unwrap();
    let id = rt.id("cpu-period-pod");
    let mut bundle = Bundle::with_args(&rt, &["sleep", "1000"]);
    bundle.edit(|config| {
        config["linux"]["cgroupsPath"] = format!("/conman/{pod}/{id}").into();
        config["linux"]["resources"]["cpu"] = json!({ "quota": 500000, "period": 1000000 });
    });
    run_detached(&rt, &bundle, &id);
    let site = controller_site_at("cpu", &Path::new("conman").join(&pod).join(&id));

    let too_much = rt.output(&["update", "--cpu-quota", "600000", &id]);
    rt.ok(&["update", "--cpu-period", "10000", "--cpu-quota", "3000", &id]);

    assert_ne!(too_much.code, 0, "a quota above the pod's limit was accepted: {too_much}");
    assert_eq!(site.read("cpu.cfs_quota_us", ""), "3000");
    assert_eq!(site.read("cpu.cfs_period_us", ""), "10000");
}

/// Directories of a top-level cgroup made by a test, removed on drop in
/// every hierarchy, after the containers in them are deleted.
struct TopCgroup(String);

impl Drop for TopCgroup {
    fn drop(&mut self) {
        let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else { return };
        for entry in entries.flatten() {
            let _ = fs::remove_dir(entry.path().join(&self.0));
        }
    }
}

/// `update --cpu-rt-period` and `--cpu-rt-runtime` set the v1 real-time
/// limits, in a parent cgroup that has a real-time budget to share.
#[test]
fn update_realtime_flags() {
    let parent = format!("conman-rt-{}", std::process::id());
    let _parent_dirs = TopCgroup(parent.clone());
    let rt = Runtime::new();
    let parent_site = controller_site_at("cpu", Path::new(&parent));
    if parent_site.is_v2() || !Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists() {
        eprintln!("SKIPPED: no cgroup v1 cpu controller with real-time group scheduling");
        return;
    }
    fs::create_dir_all(parent_site.dir()).unwrap();
    fs::write(parent_site.dir().join("cpu.rt_runtime_us"), "100000").unwrap();
    let id = rt.id("update-rt");
    let mut bundle = Bundle::with_args(&rt, &["sleep", "1000"]);
    bundle.edit(|config| config["linux"]["cgroupsPath"] = format!("/{parent}/{id}").into());
    run_detached(&rt, &bundle, &id);

    rt.ok(&["update", "--cpu-rt-period", "900001", "--cpu-rt-runtime", "60001", &id]);

    let site = controller_site_at("cpu", &Path::new(&parent).join(&id));
    assert_eq!(site.read("cpu.rt_period_us", ""), "900001");
    assert_eq!(site.read("cpu.rt_runtime_us", ""), "60001");
}
