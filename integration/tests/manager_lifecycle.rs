//! The `conman` commands around the monitor: `run -d`, `create`/`start`,
//! `ps`, `logs`, `wait`, `stop`, `kill`, `rm`, `restart`, `inspect`,
//! `exec`, `pause`/`unpause`, `stats`, `prune`, the restart policies, and
//! what is left when a command or a monitor is killed.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use conman_integration::{existing_cgroup_dirs, process_alive, Conman, Output};
use serde_json::Value;

/// Lists the entries of `dir`, or none when it is missing.
fn entries(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Starts a detached container named `name` running `command`; returns
/// its id.
fn run_detached(conman: &Conman, name: &str, command: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name, "--"];
    args.extend_from_slice(command);
    let out = conman.ok(&args);
    out.stdout.trim().to_owned()
}

/// Polls `condition` every 20 ms for up to 10 seconds.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        sleep(Duration::from_millis(20));
    }
}

/// A shell loop that exits with 7 on SIGTERM, so that `stop` ends it at
/// once (a plain `sleep` as pid 1 ignores SIGTERM).
const TRAP_TERM: &str = "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done";

fn ps_json(conman: &Conman) -> Vec<Value> {
    let out = conman.ok(&["ps", "-a", "--format", "json"]);
    serde_json::from_str::<Value>(&out.stdout)
        .unwrap_or_else(|err| panic!("ps --format json is not JSON ({err}): {out}"))
        .as_array()
        .expect("ps --format json prints an array")
        .clone()
}

fn monitor_pid(conman: &Conman, name: &str) -> i32 {
    conman.inspect(name)["monitor"]["pid"].as_i64().expect("inspect shows the monitor pid") as i32
}

fn container_pid(conman: &Conman, name: &str) -> i32 {
    conman.inspect(name)["state"]["pid"].as_i64().expect("inspect shows the pid") as i32
}

/// Asserts that the store and the host hold nothing of container `id`.
fn assert_gone(conman: &Conman, id: &str) {
    assert!(!conman.containers_dir().join(id).exists(), "the record of {id} is left behind");
    assert!(!conman.runtime_dir().join(id).exists(), "the runtime state of {id} is left behind");
    let cgroups = existing_cgroup_dirs(id);
    assert!(cgroups.is_empty(), "cgroups of {id} are left behind: {cgroups:?}");
}

#[test]
fn run_detached_prints_id() {
    let conman = Conman::new();

    let id = run_detached(&conman, "bg", &["sleep", "100"]);

    assert_eq!(id.len(), 64, "run -d must print the full id: {id:?}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id:?}");
    assert_eq!(conman.status("bg"), "running");
    let pid = container_pid(&conman, "bg");
    assert!(process_alive(pid), "the container's init {pid} is not alive");
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");
    let monitor = monitor_pid(&conman, "bg");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let parent = status.lines().find_map(|l| l.strip_prefix("PPid:")).unwrap().trim().parse::<i32>().unwrap();
    assert_eq!(parent, monitor, "the monitor must be the parent of the container's init");

    conman.ok(&["rm", "-f", "bg"]);
    assert_gone(&conman, &id);
    assert!(!process_alive(monitor), "the monitor {monitor} outlived rm -f");
}

#[test]
fn run_detached_missing_program_exits_127() {
    let conman = Conman::new();

    let out = conman.output(&["run", "-d", "--", "no-such-program"]);

    assert_eq!(out.code, 127, "{out}");
    assert!(out.stderr.contains("no-such-program"), "the message does not name the program: {out}");
    assert!(out.stderr.contains("executable file not found"), "{out}");
    assert!(out.stdout.is_empty(), "no id must be printed for a failed start: {out}");
    assert!(entries(&conman.containers_dir()).is_empty(), "the failed run left a record");
    assert!(entries(&conman.runtime_dir()).is_empty(), "the failed run left runtime state");
}

#[test]
fn run_detached_not_executable_exits_126() {
    let conman = Conman::new();

    let out = conman.output(&["run", "-d", "--", "/etc/hostname"]);

    assert_eq!(out.code, 126, "{out}");
    assert!(out.stderr.contains("/etc/hostname"), "{out}");
    assert!(entries(&conman.containers_dir()).is_empty(), "the failed run left a record");
}

#[test]
fn foreground_run_killed_keeps_truthful_record() {
    let conman = Conman::new();
    let cli = conman.spawn(&["run", "--name", "fg", "--", "sh", "-c", "echo begin; sleep 1; echo end; exit 4"]);
    eventually("the container runs", || {
        conman.output(&["inspect", "fg"]).success() && conman.status("fg") == "running"
    });

    // SAFETY: kill our own child process.
    unsafe { libc::kill(cli.pid(), libc::SIGKILL) };
    assert_eq!(cli.wait(Duration::from_secs(5)).code, 137);

    let waited = conman.ok(&["wait", "fg"]);
    assert_eq!(waited.stdout.trim(), "4", "{waited}");
    assert_eq!(conman.status("fg"), "exited");
    let logs = conman.ok(&["logs", "fg"]);
    assert_eq!(logs.stdout, "begin\nend\n", "{logs}");
}

#[test]
fn foreground_run_forwards_sigterm() {
    let conman = Conman::new();
    let cli = conman.spawn(&["run", "--name", "fwd", "--", "sh", "-c", TRAP_TERM]);
    eventually("the container prints ready", || conman.output(&["logs", "fwd"]).stdout.contains("ready"));

    // SAFETY: signal our own child process.
    unsafe { libc::kill(cli.pid(), libc::SIGTERM) };
    let out = cli.wait(Duration::from_secs(20));

    assert_eq!(out.code, 7, "the container's exit code: {out}");
    assert!(out.stdout.contains("got-term"), "{out}");
}

#[test]
fn monitor_killed_reported_and_cleaned() {
    let conman = Conman::new();
    let id = run_detached(&conman, "orphan", &["sleep", "100"]);
    let monitor = monitor_pid(&conman, "orphan");
    let init = container_pid(&conman, "orphan");

    // SAFETY: kill the monitor that this test started.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    eventually("the monitor is gone", || !process_alive(monitor));

    assert_eq!(conman.status("orphan"), "unmonitored");
    let listed = ps_json(&conman);
    assert_eq!(listed[0]["status"], "unmonitored", "{listed:?}");
    assert_eq!(listed[0]["monitorAlive"], false, "{listed:?}");
    let table = conman.ok(&["ps"]);
    assert!(table.stdout.contains("unmonitored"), "ps without -a must list it: {table}");
    assert!(process_alive(init), "the container must survive its monitor");

    let removed = conman.output(&["rm", "-f", "orphan"]);

    assert_eq!(removed.code, 0, "{removed}");
    assert!(!process_alive(init), "rm -f left the container's init {init} running");
    assert_gone(&conman, &id);
}

#[test]
fn monitor_and_container_killed_is_lost() {
    let conman = Conman::new();
    run_detached(&conman, "lost", &["sleep", "100"]);
    let monitor = monitor_pid(&conman, "lost");
    let init = container_pid(&conman, "lost");

    // SAFETY: kill processes that this test started.
    unsafe {
        libc::kill(monitor, libc::SIGKILL);
        libc::kill(init, libc::SIGKILL);
    }
    eventually("both are gone", || !process_alive(monitor) && !process_alive(init));

    assert_eq!(conman.status("lost"), "lost");
    let waited = conman.output(&["wait", "lost"]);
    assert_eq!(waited.code, 125, "{waited}");
    assert!(waited.stderr.contains("exit code is unknown"), "{waited}");
    let started = conman.output(&["start", "lost"]);
    assert_eq!(started.code, 0, "a lost container can be started again: {started}");
    assert_eq!(conman.status("lost"), "running");
}

#[test]
fn ps_reports_damaged_record() {
    let conman = Conman::new();
    let good = conman.ok(&["create", "--name", "good", "--", "true"]).stdout.trim().to_owned();
    let bad = conman.ok(&["create", "--name", "bad", "--", "true"]).stdout.trim().to_owned();
    let record = conman.containers_dir().join(&bad).join("container.json");
    let text = fs::read_to_string(&record).unwrap();
    fs::write(&record, &text[..text.len() / 2]).unwrap();

    let table = conman.output(&["ps", "-a"]);

    assert_eq!(table.code, 0, "{table}");
    assert!(table.stdout.contains("good"), "{table}");
    let bad_row = table.stdout.lines().find(|l| l.starts_with(&bad[..12]));
    assert!(bad_row.is_some_and(|row| row.contains("damaged")), "{table}");
    assert!(table.stderr.contains(&bad), "the error must name the container: {table}");
    let listed = ps_json(&conman);
    let damaged: Vec<&Value> = listed.iter().filter(|c| c["status"] == "damaged").collect();
    assert_eq!(damaged.len(), 1, "{listed:?}");
    assert_eq!(damaged[0]["id"], bad.as_str());
    assert!(listed.iter().any(|c| c["id"] == good.as_str() && c["status"] == "created"), "{listed:?}");

    let refused = conman.output(&["rm", &bad]);
    assert_eq!(refused.code, 125, "{refused}");
    assert!(refused.stderr.contains("rm -f"), "{refused}");
    conman.ok(&["rm", "-f", &bad]);
    assert!(!conman.containers_dir().join(&bad).exists());
}

#[test]
fn ps_quiet_and_all() {
    let conman = Conman::new();
    let running = run_detached(&conman, "up", &["sleep", "100"]);
    let done = conman.ok(&["run", "--name", "down", "--", "true"]);
    assert!(done.stdout.is_empty(), "{done}");

    let quiet = conman.ok(&["ps", "-q"]);
    let quiet_all = conman.ok(&["ps", "-a", "-q"]);

    assert_eq!(quiet.stdout.lines().collect::<Vec<_>>(), [running.as_str()], "{quiet}");
    assert_eq!(quiet_all.stdout.lines().count(), 2, "{quiet_all}");
}

#[test]
fn logs_cri_format_and_streams() {
    let conman = Conman::new();
    let out = conman.output(&["run", "--name", "lg", "--", "sh", "-c", "echo out1; echo err1 >&2; echo out2; printf partial"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "out1\nout2\npartial", "the foreground run relays stdout: {out}");
    assert_eq!(out.stderr, "err1\n", "the foreground run relays stderr: {out}");

    let id = conman.inspect("lg")["id"].as_str().unwrap().to_owned();
    let log = fs::read_to_string(conman.containers_dir().join(&id).join("ctr.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4, "{log}");
    for line in &lines {
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert_eq!(fields[0].len(), 30, "time field: {line}");
        assert!(fields[0].ends_with('Z'), "time field: {line}");
        assert_eq!(fields[0].as_bytes()[10], b'T', "time field: {line}");
    }
    let rest: Vec<String> = lines.iter().map(|l| l.split_once(' ').unwrap().1.to_owned()).collect();
    assert!(rest.contains(&"stdout F out1".to_owned()), "{log}");
    assert!(rest.contains(&"stderr F err1".to_owned()), "{log}");
    assert_eq!(rest.last().unwrap(), "stdout P partial", "{log}");

    let logs = conman.ok(&["logs", "lg"]);
    assert_eq!(logs.stdout, "out1\nout2\npartial");
    assert_eq!(logs.stderr, "err1\n");
    conman.ok(&["run", "--name", "abc", "--", "sh", "-c", "echo a; echo b; echo c"]);
    let tail = conman.ok(&["logs", "--tail", "2", "abc"]);
    assert_eq!(tail.stdout, "b\nc\n", "{tail}");
    let none = conman.ok(&["logs", "--tail", "0", "abc"]);
    assert_eq!(none.stdout, "", "{none}");
    let stamped = conman.ok(&["logs", "-t", "lg"]);
    let first = stamped.stdout.lines().next().unwrap();
    assert!(first.ends_with(" out1"), "{stamped}");
    assert_eq!(first.len(), 30 + 5, "{stamped}");
}

#[test]
fn logs_follow_until_exit() {
    let conman = Conman::new();
    run_detached(&conman, "follow", &["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.3; done"]);

    let out = conman.output(&["logs", "-f", "follow"]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "line1\nline2\nline3\n", "{out}");
    assert_eq!(conman.status("follow"), "exited");
}

#[test]
fn wait_prints_exit_code() {
    let conman = Conman::new();
    run_detached(&conman, "five", &["sh", "-c", "sleep 0.3; exit 5"]);

    let out = conman.ok(&["wait", "five"]);

    assert_eq!(out.stdout, "5\n");
    assert_eq!(conman.inspect("five")["state"]["exitCode"], 5);
    let again = conman.ok(&["wait", "five"]);
    assert_eq!(again.stdout, "5\n", "wait on an exited container returns its code");
}

#[test]
fn stop_sigterm_then_sigkill() {
    let conman = Conman::new();
    run_detached(&conman, "trap", &["sh", "-c", TRAP_TERM]);
    run_detached(&conman, "deaf", &["sleep", "100"]);
    eventually("trap is ready", || conman.output(&["logs", "trap"]).stdout.contains("ready"));

    let started = Instant::now();
    conman.ok(&["stop", "trap"]);
    let polite = started.elapsed();
    let started = Instant::now();
    conman.ok(&["stop", "-t", "1", "deaf"]);
    let forced = started.elapsed();

    assert!(polite < Duration::from_secs(3), "a container that exits on SIGTERM took {polite:?}");
    assert_eq!(conman.inspect("trap")["state"]["exitCode"], 7);
    assert!(conman.ok(&["logs", "trap"]).stdout.contains("got-term"));
    assert!(forced >= Duration::from_secs(1), "SIGKILL came before the grace period: {forced:?}");
    assert!(forced < Duration::from_secs(5), "stop -t 1 took {forced:?}");
    assert_eq!(conman.inspect("deaf")["state"]["exitCode"], 137);
    assert_eq!(conman.status("deaf"), "exited");
    assert!(!conman.inspect("deaf")["monitor"]["alive"].as_bool().unwrap(), "the monitor must be gone after stop");
    let again = conman.output(&["stop", "deaf"]);
    assert_eq!(again.code, 0, "stopping a stopped container succeeds: {again}");
}

#[test]
fn kill_sends_signal() {
    let conman = Conman::new();
    run_detached(&conman, "usr", &["sh", "-c", "trap 'echo got-usr1; exit 3' USR1; echo ready; while true; do sleep 0.05; done"]);
    run_detached(&conman, "victim", &["sleep", "100"]);
    eventually("usr is ready", || conman.output(&["logs", "usr"]).stdout.contains("ready"));

    conman.ok(&["kill", "-s", "USR1", "usr"]);
    conman.ok(&["kill", "victim"]);

    assert_eq!(conman.ok(&["wait", "usr"]).stdout, "3\n");
    assert!(conman.ok(&["logs", "usr"]).stdout.contains("got-usr1"));
    assert_eq!(conman.ok(&["wait", "victim"]).stdout, "137\n", "kill sends SIGKILL by default");
    let stopped = conman.output(&["kill", "victim"]);
    assert_eq!(stopped.code, 125, "{stopped}");
    assert!(stopped.stderr.contains("victim"), "{stopped}");
    assert!(stopped.stderr.contains("not running"), "{stopped}");
    let bad = conman.output(&["kill", "-s", "NOPE", "victim"]);
    assert_eq!(bad.code, 125, "{bad}");
    assert!(bad.stderr.contains("\"NOPE\""), "{bad}");
}

#[test]
fn rm_refuses_running_container() {
    let conman = Conman::new();
    let id = run_detached(&conman, "busy", &["sleep", "100"]);

    let refused = conman.output(&["rm", "busy"]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(refused.stderr.contains("busy"), "{refused}");
    assert!(refused.stderr.contains("rm -f"), "{refused}");
    assert_eq!(conman.status("busy"), "running");

    let missing = conman.output(&["rm", "nothing-here"]);
    assert_eq!(missing.code, 1, "{missing}");
    assert!(missing.stderr.contains("\"nothing-here\""), "{missing}");

    conman.ok(&["rm", "-f", "busy"]);
    assert_gone(&conman, &id);
}

#[test]
fn rm_flag_removes_detached_container() {
    let conman = Conman::new();
    let id = run_detached_with(&conman, &["--rm", "--name", "temp"], &["sh", "-c", "sleep 0.2"]);

    eventually("the --rm container is removed", || !conman.containers_dir().join(&id).exists());

    assert_gone(&conman, &id);
}

#[test]
fn names_ids_and_prefixes_accepted() {
    let conman = Conman::new();
    let id = run_detached(&conman, "named", &["sh", "-c", TRAP_TERM]);

    assert_eq!(conman.inspect(&id)["name"], "named");
    assert_eq!(conman.inspect(&id[..8])["name"], "named");
    conman.ok(&["stop", &id[..10]]);
    assert_eq!(conman.ok(&["wait", &id]).stdout, "7\n");

    let missing = conman.output(&["inspect", "zzz"]);
    assert_eq!(missing.code, 125, "{missing}");
    assert!(missing.stderr.contains("\"zzz\""), "{missing}");
}

#[test]
fn restart_on_failure_limited() {
    let conman = Conman::new();
    run_detached_with(&conman, &["--restart", "on-failure:2", "--name", "flaky"], &["sh", "-c", "echo attempt; exit 1"]);

    eventually("the retries are used up", || conman.status("flaky") == "exited");

    let details = conman.inspect("flaky");
    assert_eq!(details["state"]["restartCount"], 2, "{details}");
    assert_eq!(details["state"]["exitCode"], 1, "{details}");
    assert_eq!(conman.ok(&["logs", "flaky"]).stdout, "attempt\nattempt\nattempt\n");
}

#[test]
fn restart_always_until_stopped() {
    let conman = Conman::new();
    run_detached_with(&conman, &["--restart", "always", "--name", "loop"], &["sh", "-c", "echo tick; exit 0"]);

    eventually("the container has restarted twice", || {
        conman.inspect("loop")["state"]["restartCount"].as_u64().unwrap_or(0) >= 2
    });
    conman.ok(&["stop", "loop"]);

    assert_eq!(conman.status("loop"), "exited");
    let count = conman.inspect("loop")["state"]["restartCount"].as_u64().unwrap();
    sleep(Duration::from_millis(500));
    assert_eq!(conman.inspect("loop")["state"]["restartCount"].as_u64().unwrap(), count, "restarted after stop");
}

fn run_detached_with(conman: &Conman, flags: &[&str], command: &[&str]) -> String {
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(command);
    conman.ok(&args).stdout.trim().to_owned()
}

#[test]
fn restart_flag_conflicts_rejected() {
    let conman = Conman::new();

    let conflict = conman.output(&["run", "--rm", "--restart", "always", "--", "true"]);
    let invalid = conman.output(&["run", "--restart", "sometimes", "--", "true"]);

    assert_eq!(conflict.code, 125, "{conflict}");
    assert!(conflict.stderr.contains("--rm"), "{conflict}");
    assert!(conflict.stderr.contains("always"), "{conflict}");
    assert_eq!(invalid.code, 125, "{invalid}");
    assert!(invalid.stderr.contains("\"sometimes\""), "{invalid}");
    assert!(entries(&conman.containers_dir()).is_empty());
}

#[test]
fn restart_command_starts_new_run() {
    let conman = Conman::new();
    run_detached(&conman, "again", &["sh", "-c", TRAP_TERM]);
    let first = container_pid(&conman, "again");

    conman.ok(&["restart", "again"]);

    assert_eq!(conman.status("again"), "running");
    let second = container_pid(&conman, "again");
    assert_ne!(first, second);
    assert!(!process_alive(first));
    assert!(process_alive(second));
}

#[test]
fn create_then_start() {
    let conman = Conman::new();
    let id = conman.ok(&["create", "--name", "later", "--", "sh", "-c", "echo started"]).stdout.trim().to_owned();
    assert_eq!(id.len(), 64);
    assert_eq!(conman.status("later"), "created");
    assert_eq!(conman.ok(&["logs", "later"]).stdout, "");

    conman.ok(&["start", "later"]);

    assert_eq!(conman.ok(&["wait", "later"]).stdout, "0\n");
    assert_eq!(conman.ok(&["logs", "later"]).stdout, "started\n");
    let twice = conman.output(&["start", "later"]);
    assert_eq!(twice.code, 0, "an exited container can be started again: {twice}");
    conman.ok(&["wait", "later"]);
}

#[test]
fn exec_runs_in_container() {
    let conman = Conman::new();
    run_detached(&conman, "host", &["sh", "-c", TRAP_TERM]);
    let init = container_pid(&conman, "host");

    let plain = conman.output(&["exec", "host", "sh", "-c", "echo $$; hostname; exit 3"]);
    let options = conman.ok(&["exec", "-e", "GREETING=hi", "-w", "/tmp", "-u", "1000:1000", "host", "sh", "-c", "echo $GREETING; pwd; id -u; id -g"]);
    let missing = conman.output(&["exec", "host", "no-such-program"]);

    assert_eq!(plain.code, 3, "{plain}");
    let lines: Vec<&str> = plain.stdout.lines().collect();
    assert_ne!(lines[0], "1", "exec must not be the init: {plain}");
    let uts = |pid: i32| fs::read_link(format!("/proc/{pid}/ns/uts")).unwrap();
    assert_eq!(lines[1].len(), 12, "exec must see the container's hostname: {plain}");
    assert_ne!(uts(init), uts(std::process::id() as i32));
    assert_eq!(options.stdout, "hi\n/tmp\n1000\n1000\n", "{options}");
    assert_eq!(missing.code, 127, "{missing}");
    assert!(missing.stderr.contains("no-such-program"), "{missing}");
}

#[test]
fn exec_detached_and_stopped() {
    let conman = Conman::new();
    run_detached(&conman, "target", &["sh", "-c", TRAP_TERM]);

    let detached = conman.output(&["exec", "-d", "target", "sh", "-c", "sleep 0.2; echo from-exec > /tmp/marker"]);
    assert_eq!(detached.code, 0, "{detached}");
    eventually("the detached exec wrote its file", || {
        conman.output(&["exec", "target", "cat", "/tmp/marker"]).stdout == "from-exec\n"
    });
    conman.ok(&["stop", "target"]);
    let stopped = conman.output(&["exec", "target", "true"]);
    assert_eq!(stopped.code, 125, "{stopped}");
    assert!(stopped.stderr.contains("not running"), "{stopped}");
}

#[test]
fn pause_and_unpause() {
    let conman = Conman::new();
    let id = run_detached(&conman, "freeze", &["sh", "-c", TRAP_TERM]);
    let init = container_pid(&conman, "freeze");

    conman.ok(&["pause", "freeze"]);
    assert_eq!(conman.status("freeze"), "paused");
    let freezer = Path::new("/sys/fs/cgroup/freezer/conman").join(&id).join("freezer.state");
    if freezer.exists() {
        assert_eq!(fs::read_to_string(&freezer).unwrap().trim(), "FROZEN");
    }
    let state = fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
    assert!(state.contains(") S ") || state.contains(") D "), "a frozen process sleeps: {state}");
    let twice = conman.output(&["pause", "freeze"]);
    assert_eq!(twice.code, 125, "{twice}");
    assert!(twice.stderr.contains("paused"), "{twice}");

    conman.ok(&["unpause", "freeze"]);
    assert_eq!(conman.status("freeze"), "running");
    conman.ok(&["stop", "freeze"]);
    assert_eq!(conman.inspect("freeze")["state"]["exitCode"], 7);
}

#[test]
fn stats_reads_cgroup() {
    let conman = Conman::new();
    run_detached_with(&conman, &["--memory", "64m", "--name", "load"], &["sh", "-c", "while true; do :; done"]);

    let out = conman.ok(&["stats", "--no-stream", "--format", "json", "load"]);

    let stats: Value = serde_json::from_str(&out.stdout).unwrap();
    let sample = &stats[0];
    assert_eq!(sample["name"], "load");
    assert!(sample["pids"].as_u64().unwrap() >= 1, "{out}");
    assert!(sample["memoryBytes"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(sample["memoryLimit"], 64 << 20, "{out}");
    assert!(sample["cpuPercent"].as_f64().unwrap() > 10.0, "a busy loop must use CPU: {out}");
    let table = conman.ok(&["stats", "load"]);
    assert!(table.stdout.starts_with("CONTAINER ID"), "{table}");
}

#[test]
fn prune_removes_stopped_only() {
    let conman = Conman::new();
    let running = run_detached(&conman, "keep", &["sleep", "100"]);
    let exited = conman.ok(&["run", "--name", "old", "--", "true"]);
    assert!(exited.success());
    let created = conman.ok(&["create", "--name", "fresh", "--", "true"]).stdout.trim().to_owned();

    let out = conman.ok(&["prune"]);

    assert_eq!(out.stdout.lines().count(), 2, "{out}");
    assert!(out.stdout.contains(&created), "{out}");
    let left = entries(&conman.containers_dir());
    assert_eq!(left, [running], "prune must keep only the running container");
}

#[test]
fn cpus_sets_cfs_quota() {
    let conman = Conman::new();
    let id = run_detached_with(&conman, &["--cpus", "0.5", "--name", "half"], &["sleep", "100"]);

    let quota = fs::read_to_string(Path::new("/sys/fs/cgroup/cpu/conman").join(&id).join("cpu.cfs_quota_us"));
    let period = fs::read_to_string(Path::new("/sys/fs/cgroup/cpu/conman").join(&id).join("cpu.cfs_period_us"));

    assert_eq!(quota.unwrap().trim(), "50000");
    assert_eq!(period.unwrap().trim(), "100000");
    let bad = conman.output(&["run", "--cpus", "-1", "--", "true"]);
    assert_eq!(bad.code, 125, "{bad}");
    assert!(bad.stderr.contains("--cpus"), "{bad}");
}

#[test]
fn entrypoint_prefixes_command() {
    let conman = Conman::new();

    let out = conman.output(&["run", "--rm", "--entrypoint", "echo", "--", "from", "entrypoint"]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "from entrypoint\n");
}

/// `stop -t 2` on a container that ignores SIGTERM holds the container's
/// lock for two seconds: a `pause` issued meanwhile must wait and then find
/// the container exited, while a `stop` of another container runs at once.
#[test]
fn commands_serialised_per_container() {
    let conman = Conman::new();
    run_detached(&conman, "one", &["sleep", "100"]);
    run_detached(&conman, "two", &["sleep", "100"]);

    let started = Instant::now();
    let stop_one = conman.spawn(&["stop", "-t", "2", "one"]);
    sleep(Duration::from_millis(300));
    let stop_two = conman.spawn(&["stop", "-t", "2", "two"]);
    let pause_one = conman.output(&["pause", "one"]);
    let paused_after = started.elapsed();
    let one = stop_one.wait(Duration::from_secs(20));
    let two = stop_two.wait(Duration::from_secs(20));
    let total = started.elapsed();

    assert_eq!(one.code, 0, "{one}");
    assert_eq!(two.code, 0, "{two}");
    assert!(paused_after >= Duration::from_secs(2), "pause ran during stop, after {paused_after:?}");
    assert_eq!(pause_one.code, 125, "{pause_one}");
    assert!(pause_one.stderr.contains("exited"), "pause must see the stopped container: {pause_one}");
    assert!(total < Duration::from_secs(4), "stops of two containers did not overlap: {total:?}");
}

/// Each run prints its hostname, the first 12 digits of its id, so that
/// its cgroups and processes can be looked for after `--rm` removed it.
#[test]
fn twenty_parallel_runs_leave_nothing() {
    let conman = Conman::new();

    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            (0..20).map(|_| scope.spawn(|| conman.output(&["run", "--rm", "--", "hostname"]))).collect();
        handles.into_iter().map(|handle| handle.join().expect("run thread panicked")).collect()
    });

    for out in &outputs {
        assert_eq!(out.code, 0, "{out}");
        assert_eq!(out.stdout.trim().len(), 12, "{out}");
    }
    assert!(entries(&conman.containers_dir()).is_empty(), "records left behind");
    assert!(entries(&conman.runtime_dir()).is_empty(), "runtime state left behind");
    let mounts = conman_integration::host_mounts_mentioning(conman.root().to_str().unwrap());
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
    for out in &outputs {
        let short_id = out.stdout.trim();
        for hierarchy in entries(Path::new("/sys/fs/cgroup")) {
            let left: Vec<String> = entries(&Path::new("/sys/fs/cgroup").join(&hierarchy).join("conman"))
                .into_iter()
                .filter(|name| name.starts_with(short_id))
                .collect();
            assert!(left.is_empty(), "{hierarchy} cgroups left behind: {left:?}");
        }
    }
    let root = conman.root().to_str().unwrap().to_owned();
    eventually("no process mentions the store", || {
        entries(Path::new("/proc")).iter().filter(|p| p.parse::<i32>().is_ok()).all(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !String::from_utf8_lossy(&cmdline).contains(&root) || !process_alive(pid.parse().unwrap())
        })
    });
}

/// 100,000 numbered lines of 1,000 bytes (100 MB): the foreground run
/// relays all of them in order, and `logs` prints all of them.
#[test]
fn large_output_neither_blocks_nor_loses_lines() {
    let conman = Conman::new();
    let program = "BEGIN { pad = sprintf(\"%993s\", \"\"); gsub(/ /, \"x\", pad); for (i = 1; i <= 100000; i++) printf \"%06d%s\\n\", i, pad }";
    let started = Instant::now();

    let out = conman_integration::Spawned::new(conman.command(&["run", "--name", "big", "--", "awk", program]))
        .wait(Duration::from_secs(300));
    let elapsed = started.elapsed();

    assert_eq!(out.code, 0, "exit code {} with stderr {}", out.code, out.stderr);
    check_numbered_lines(&out.stdout, "run's stdout");
    let logs = conman_integration::Spawned::new(conman.command(&["logs", "big"])).wait(Duration::from_secs(300));
    assert_eq!(logs.code, 0, "logs failed: {}", logs.stderr);
    check_numbered_lines(&logs.stdout, "logs");
    eprintln!("100 MB through the monitor in {elapsed:?}");
}

fn check_numbered_lines(text: &str, what: &str) {
    let mut count = 0;
    for (index, line) in text.lines().enumerate() {
        assert_eq!(line.len(), 999, "{what}: line {} has {} bytes", index + 1, line.len());
        assert_eq!(line[..6].parse::<usize>().ok(), Some(index + 1), "{what}: line {} is out of order", index + 1);
        count += 1;
    }
    assert_eq!(count, 100_000, "{what}: lines lost");
}

/// Returns a field of this process's /proc/self/status.
fn own_status_field(name: &str) -> String {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().to_owned()
}

#[test]
fn privileged_lifts_confinement() {
    let conman = Conman::new();
    let script = "grep -E '^(CapEff|Seccomp):' /proc/self/status; head -c 10 /proc/timer_list | wc -c; grep ' /sys ' /proc/mounts; ls /dev";
    let host_device = entries(Path::new("/dev"))
        .into_iter()
        .filter(|name| name.starts_with("loop") && name[4..].parse::<u32>().is_ok())
        .min()
        .expect("this test needs a /dev/loopN device on the host");

    let privileged = conman.output(&["run", "--rm", "--privileged", "--", "sh", "-c", script]);
    let confined = conman.output(&["run", "--rm", "--", "sh", "-c", script]);

    assert_eq!(privileged.code, 0, "{privileged}");
    let lines: Vec<&str> = privileged.stdout.lines().collect();
    assert_eq!(lines[0], format!("CapEff:\t{}", own_status_field("CapBnd:")), "{privileged}");
    assert_eq!(lines[1], "Seccomp:\t0", "{privileged}");
    assert_eq!(lines[2], "10", "/proc/timer_list must not be masked: {privileged}");
    assert!(lines[3].contains(" rw,"), "/sys must be writable: {privileged}");
    assert!(lines[4..].contains(&host_device.as_str()), "/dev/{host_device} is missing: {privileged}");

    assert_eq!(confined.code, 0, "{confined}");
    let lines: Vec<&str> = confined.stdout.lines().collect();
    assert_ne!(lines[0], format!("CapEff:\t{}", own_status_field("CapBnd:")), "{confined}");
    assert_eq!(lines[2], "0", "/proc/timer_list must be masked: {confined}");
    assert!(lines[3].contains(" ro,"), "{confined}");
    assert!(!lines[4..].contains(&host_device.as_str()), "{confined}");
}

#[test]
fn run_interactive_feeds_stdin() {
    let conman = Conman::new();
    // 4 MB of numbered lines, so a lost or reordered chunk shows.
    let input: String = (0..200_000).map(|i| format!("{i:019}\n")).collect();

    let echoed = conman_integration::Spawned::with_stdin(conman.command(&["run", "--rm", "-i", "--", "sh", "-c", "cat; echo; echo end"]), b"line one\nline two\n")
        .wait(Duration::from_secs(60));
    let copied = conman_integration::Spawned::with_stdin(conman.command(&["run", "--rm", "-i", "--", "cat"]), input.as_bytes())
        .wait(Duration::from_secs(60));
    let closed = conman.output(&["run", "--rm", "--", "sh", "-c", "read line; echo status=$?"]);

    assert_eq!(echoed.code, 0, "{echoed}");
    assert_eq!(echoed.stdout, "line one\nline two\n\nend\n", "{echoed}");
    assert_eq!(copied.code, 0, "exit code {}: {}", copied.code, copied.stderr);
    assert_eq!(copied.stdout.len(), input.len());
    assert!(copied.stdout == input, "the copy differs from the input");
    assert_eq!(closed.stdout, "status=1\n", "without -i stdin is empty: {closed}");
}

#[test]
fn run_detached_interactive_keeps_stdin_open() {
    let conman = Conman::new();
    run_detached_with(&conman, &["-i", "--name", "reader"], &["sh", "-c", "read line; echo read-returned"]);

    sleep(Duration::from_millis(500));

    assert_eq!(conman.status("reader"), "running", "stdin must stay open with -d -i");
    assert_eq!(conman.ok(&["logs", "reader"]).stdout, "");
}

#[test]
fn log_max_size_rotates() {
    let conman = Conman::new();
    let run = conman.ok(&["run", "--name", "chatty", "--log-max-size", "10k", "--", "seq", "1", "5000"]);
    assert_eq!(run.stdout.lines().count(), 5000, "the foreground run relays every line");
    let dir = conman.containers_dir().join(conman.inspect("chatty")["id"].as_str().unwrap());

    let current = fs::metadata(dir.join("ctr.log")).unwrap().len();
    let rotated = fs::metadata(dir.join("ctr.log.1")).unwrap().len();
    let logs = conman.ok(&["logs", "chatty"]);

    assert!(current <= 10 * 1024, "ctr.log has {current} bytes");
    assert!(rotated <= 10 * 1024, "ctr.log.1 has {rotated} bytes");
    assert!(!dir.join("ctr.log.2").exists());
    let numbers: Vec<u32> = logs.stdout.lines().map(|line| line.parse().unwrap()).collect();
    assert_eq!(numbers.last(), Some(&5000), "{logs}");
    assert!(numbers.windows(2).all(|pair| pair[1] == pair[0] + 1), "lines are missing: {logs}");
    assert!(numbers[0] > 1, "the oldest lines must be rotated away: {logs}");

    let bad = conman.output(&["run", "--log-max-size", "-5", "--", "true"]);
    assert_eq!(bad.code, 125, "{bad}");
    assert!(bad.stderr.contains("--log-max-size"), "{bad}");
}

#[test]
fn logs_follow_across_rotation() {
    let conman = Conman::new();
    let script = "i=1; while [ $i -le 300 ]; do echo line$i; i=$((i+1)); sleep 0.005; done";
    run_detached_with(&conman, &["--log-max-size", "2k", "--name", "rotating"], &["sh", "-c", script]);

    let out = conman.output(&["logs", "-f", "rotating"]);

    assert_eq!(out.code, 0, "{out}");
    let expected: String = (1..=300).map(|i| format!("line{i}\n")).collect();
    assert_eq!(out.stdout, expected);
}

#[test]
fn rootfs_overlay_keeps_dir_unchanged() {
    let rt = conman_integration::Runtime::new();
    let bundle = conman_integration::Bundle::new(&rt);
    let conman = Conman::new();
    let rootfs = bundle.rootfs();
    let rootfs_arg = rootfs.to_str().unwrap();
    let store = conman.root().to_str().unwrap().to_owned();

    let out = conman.output(&["run", "--name", "ov", "--rootfs", rootfs_arg, "--", "/bin/sh", "-c", "echo new > /created; rm /bin/true; ls /created /bin/true"]);

    assert_eq!(out.code, 1, "ls must find /created but not /bin/true: {out}");
    assert!(out.stdout.contains("/created"), "{out}");
    assert!(!rootfs.join("created").exists(), "the write reached --rootfs");
    assert!(fs::symlink_metadata(rootfs.join("bin/true")).is_ok(), "the removal reached --rootfs");
    let id = conman.inspect("ov")["id"].as_str().unwrap().to_owned();
    let upper = conman.containers_dir().join(&id).join("upper/created");
    assert_eq!(fs::read_to_string(&upper).unwrap(), "new\n", "the write must land in the upper layer");
    assert!(conman_integration::host_mounts_mentioning(&store).is_empty(), "the overlay stays mounted after the exit");

    let writable = conman.output(&["run", "--rm", "--rootfs", rootfs_arg, "--rootfs-rw", "--", "/bin/sh", "-c", "echo rw > /written"]);
    assert_eq!(writable.code, 0, "{writable}");
    assert_eq!(fs::read_to_string(rootfs.join("written")).unwrap(), "rw\n", "--rootfs-rw writes into the directory");
    let alone = conman.output(&["run", "--rootfs-rw", "--", "true"]);
    assert_eq!(alone.code, 125, "{alone}");
    assert!(alone.stderr.contains("--rootfs"), "{alone}");

    run_detached_with(&conman, &["--rootfs", rootfs_arg, "--name", "ovk"], &["/bin/sleep", "100"]);
    assert_eq!(conman_integration::host_mounts_mentioning(&store).len(), 1, "the running container's overlay");
    let monitor = monitor_pid(&conman, "ovk");
    // SAFETY: kill the monitor that this test started.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    eventually("the monitor is gone", || !process_alive(monitor));
    conman.ok(&["rm", "-f", "ovk"]);
    assert!(conman_integration::host_mounts_mentioning(&store).is_empty(), "rm -f left the overlay mounted");
}

/// Reads the pty master until the output contains `needle`.
fn read_pty_until(master: &std::os::fd::OwnedFd, output: &mut String, needle: &str) {
    use std::os::fd::AsRawFd;

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !output.contains(needle) {
        assert!(Instant::now() < deadline, "timed out waiting for {needle:?} on the terminal; output so far: {output:?}");
        let mut fds = [libc::pollfd { fd: master.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(fds.as_mut_ptr(), 1, 100) } <= 0 {
            continue;
        }
        match nix::unistd::read(master.as_raw_fd(), &mut buf) {
            Ok(n) if n > 0 => output.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => sleep(Duration::from_millis(10)),
        }
    }
}

fn set_pty_size(master: &std::os::fd::OwnedFd, rows: u16, columns: u16) {
    use std::os::fd::AsRawFd;

    let size = libc::winsize { ws_row: rows, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ with a valid winsize.
    assert_eq!(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) }, 0);
}

/// `run -it` on a pty that the test opens: the container's shell gets a
/// terminal of the caller's size, follows a resize, receives Ctrl-C as
/// SIGINT, and its exit code is returned.
#[test]
fn run_interactive_terminal() {
    check_interactive_terminal(&[], 1);
}

/// `run -it --init`: the shell runs as pid 2 under the init and still owns
/// the terminal, so Ctrl-C reaches it.
#[test]
fn init_interactive_terminal() {
    check_interactive_terminal(&["--init"], 2);
}

/// Runs an interactive shell with `conman run --rm -it FLAGS -- sh` on a
/// pty that the test opens, and checks its terminal, a resize, Ctrl-C,
/// the shell's pid and its exit code.
fn check_interactive_terminal(flags: &[&str], shell_pid: i32) {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;

    let conman = Conman::new();
    let pty = nix::pty::openpty(None, None).expect("open a pty");
    set_pty_size(&pty.master, 33, 77);
    let mut args = vec!["run", "--rm", "-it"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--", "sh"]);
    let mut command = conman.command(&args);
    command
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = command.spawn().expect("spawn conman run -it");
    drop(pty.slave);
    let mut output = String::new();

    nix::unistd::write(&pty.master, b"tty; stty size\r").unwrap();
    read_pty_until(&pty.master, &mut output, "33 77");
    set_pty_size(&pty.master, 40, 100);
    // SAFETY: signal our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGWINCH) };
    sleep(Duration::from_millis(300));
    nix::unistd::write(&pty.master, b"stty size\r").unwrap();
    read_pty_until(&pty.master, &mut output, "40 100");
    // The shell echoes the typed lines, so the checks look for computed
    // output that the typed text does not contain.
    nix::unistd::write(&pty.master, b"sleep 30; echo slept-$((40+2))\r").unwrap();
    sleep(Duration::from_millis(500));
    nix::unistd::write(&pty.master, b"\x03").unwrap();
    nix::unistd::write(&pty.master, b"echo after-$((1+1))\r").unwrap();
    read_pty_until(&pty.master, &mut output, "after-2\r\n");
    nix::unistd::write(&pty.master, b"echo pid-$(($$+100))\r").unwrap();
    read_pty_until(&pty.master, &mut output, "pid-1");
    nix::unistd::write(&pty.master, b"exit 3\r").unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "conman run -it did not exit; output: {output:?}");
        sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3), "{output:?}");
    assert!(output.contains("/dev/pts/0"), "the shell's stdin must be a terminal: {output:?}");
    assert!(!output.contains("slept-42"), "Ctrl-C did not interrupt sleep: {output:?}");
    let pid_line = format!("pid-{}\r\n", shell_pid + 100);
    assert!(output.contains(&pid_line), "the shell must be pid {shell_pid}: {output:?}");
    assert!(entries(&conman.containers_dir()).is_empty());
}

#[test]
fn run_tty_without_terminal() {
    let conman = Conman::new();

    let out = conman.output(&["run", "--name", "pty", "-t", "--", "sh", "-c", "tty; echo to-stderr >&2"]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "/dev/pts/0\r\nto-stderr\r\n", "a terminal merges stdout and stderr: {out}");
    assert_eq!(out.stderr, "", "{out}");
    let logs = conman.ok(&["logs", "pty"]);
    assert_eq!(logs.stdout, "/dev/pts/0\r\nto-stderr\r\n", "{logs}");
}

#[test]
fn attach_relays_output_and_stdin() {
    let conman = Conman::new();
    run_detached_with(&conman, &["-i", "--name", "att"], &["sh", "-c", "while read line; do echo got:$line; done; echo eof; exit 5"]);
    let observer = conman.spawn(&["attach", "--no-stdin", "att"]);
    sleep(Duration::from_millis(500));

    let second = conman.output(&["attach", "att"]);
    assert_eq!(second.code, 125, "{second}");
    assert!(second.stderr.contains("already has a client attached"), "{second}");
    // SAFETY: kill our own child process.
    unsafe { libc::kill(observer.pid(), libc::SIGKILL) };
    assert_eq!(observer.wait(Duration::from_secs(5)).code, 137);
    assert_eq!(conman.status("att"), "running", "a client leaving without input must not end the container's stdin");

    let feeder = conman_integration::Spawned::with_stdin(conman.command(&["attach", "att"]), b"one\ntwo\n")
        .wait(Duration::from_secs(20));

    assert_eq!(feeder.code, 5, "{feeder}");
    assert_eq!(feeder.stdout, "got:one\ngot:two\neof\n", "{feeder}");
    let stopped = conman.output(&["attach", "att"]);
    assert_eq!(stopped.code, 125, "{stopped}");
    assert!(stopped.stderr.contains("not running"), "{stopped}");
}

/// Returns the descriptors that process `pid` has open, as numbers.
fn open_descriptors(pid: i32) -> Vec<i32> {
    let mut fds: Vec<i32> = entries(Path::new(&format!("/proc/{pid}/fd"))).iter().map(|fd| fd.parse().unwrap()).collect();
    fds.sort();
    fds
}

#[test]
fn init_runs_program_as_pid_2() {
    let conman = Conman::new();
    let script = "cat /proc/1/comm; tr '\\0' '\\n' </proc/1/cmdline | head -n 1; echo $$; exit 7";

    let out = conman.output(&["run", "--rm", "--init", "-e", "SECRET=hidden", "--", "sh", "-c", script]);

    assert_eq!(out.code, 7, "the program's exit code must pass through the init: {out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"conman-init"), "pid 1's comm: {out}");
    assert_eq!(lines.get(1), Some(&"conman-init"), "pid 1's command line: {out}");
    assert_eq!(lines.get(2), Some(&"2"), "the program's pid: {out}");
    assert!(entries(&conman.containers_dir()).is_empty(), "--rm left a record");
}

#[test]
fn init_detached_holds_no_host_descriptors() {
    let conman = Conman::new();

    let started = Instant::now();
    run_detached_with(&conman, &["--init", "--name", "fds"], &["sleep", "100"]);

    assert!(started.elapsed() < Duration::from_secs(10), "run -d --init took {:?}", started.elapsed());
    let init = container_pid(&conman, "fds");
    let comm = fs::read_to_string(format!("/proc/{init}/comm")).unwrap();
    assert_eq!(comm.trim(), "conman-init");
    assert_eq!(open_descriptors(init), vec![0, 1, 2], "the init must hold only the container's stdio");
    let status = fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let rss_kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap();
    assert!(rss_kib < 16 * 1024, "the init uses {rss_kib} KiB of memory");
    let exec = conman.output(&["exec", "fds", "readlink", "/proc/1/fd/1"]);
    assert_ne!(exec.code, 0, "a process in the container must not read the non-dumpable init's fds: {exec}");
    assert_eq!(exec.stdout, "", "{exec}");
}

#[test]
fn init_reaps_orphaned_zombies() {
    let conman = Conman::new();
    // The inner shell exits at once, so its background sleep is orphaned
    // and adopted by pid 1; the outer program never waits for children.
    let command = ["sh", "-c", "sh -c 'sleep 0.2 &'; exec sleep 100"];
    run_detached_with(&conman, &["--init", "--name", "with"], &command);
    run_detached_with(&conman, &["--name", "without"], &command);
    sleep(Duration::from_secs(1));
    let states = |name: &str| {
        let out = conman.ok(&["exec", name, "sh", "-c", "cat /proc/[0-9]*/stat"]);
        out.stdout.lines().map(|line| line.rsplit_once(") ").unwrap().1[..1].to_owned()).collect::<Vec<_>>()
    };

    let with_init = states("with");
    let without_init = states("without");

    assert!(!with_init.contains(&"Z".to_owned()), "a zombie is left under --init: {with_init:?}");
    assert!(without_init.contains(&"Z".to_owned()), "without --init the orphan must stay a zombie, or this test shows nothing: {without_init:?}");
}

#[test]
fn init_stop_and_kill_reach_program() {
    let conman = Conman::new();
    // A plain sleep as pid 1 ignores SIGTERM; under the init it is pid 2.
    run_detached_with(&conman, &["--init", "--name", "st"], &["sleep", "100"]);
    run_detached_with(&conman, &["--init", "--name", "ki"], &["sleep", "100"]);

    let started = Instant::now();
    conman.ok(&["stop", "-t", "10", "st"]);
    let stop_time = started.elapsed();
    conman.ok(&["kill", "-s", "USR1", "ki"]);
    let killed = conman.ok(&["wait", "ki"]);

    assert!(stop_time < Duration::from_secs(5), "stop waited {stop_time:?}: SIGTERM did not reach the program");
    assert_eq!(conman.inspect("st")["state"]["exitCode"], 143, "SIGTERM is exit code 128+15");
    assert_eq!(killed.stdout.trim(), "138", "SIGUSR1 is exit code 128+10: {killed}");
    assert_eq!(conman.status("ki"), "exited");
}

#[test]
fn init_exec_runs_beside_program() {
    let conman = Conman::new();
    run_detached_with(&conman, &["--init", "--name", "ex"], &["sleep", "100"]);

    let out = conman.ok(&["exec", "ex", "sh", "-c", "cat /proc/1/comm /proc/2/comm"]);

    assert_eq!(out.stdout, "conman-init\nsleep\n", "{out}");
    assert_eq!(conman.status("ex"), "running");
}

/// Writes a busybox bundle that runs `args`, with a writable root and
/// `root.path` relative to the bundle.
fn writable_bundle(rt: &conman_integration::Runtime, args: &[&str]) -> conman_integration::Bundle {
    let mut bundle = conman_integration::Bundle::with_args(rt, args);
    bundle.edit(|config| {
        config["root"]["readonly"] = Value::Bool(false);
        config["process"]["env"] = serde_json::json!(["PATH=/bin", "GREETING=from-bundle"]);
    });
    assert_eq!(bundle.config()["root"]["path"], "rootfs", "the bundle's root.path must be relative for this test");
    bundle
}

/// Lists every path under `dir`, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        paths.push(path.display().to_string());
        if path.is_dir() && !path.is_symlink() {
            paths.extend(tree(&path));
        }
    }
    paths.sort();
    paths
}

#[test]
fn bundle_runs_without_modifying_it() {
    let rt = conman_integration::Runtime::new();
    let conman = Conman::new();
    let bundle = writable_bundle(&rt, &["sh", "-c", "echo $GREETING; pwd; echo x > /written; echo $$"]);
    let config_before = fs::read(bundle.path().join("config.json")).unwrap();
    let tree_before = tree(bundle.path());

    let plain = conman.output(&["run", "--rm", "--bundle", bundle.path_str()]);
    let overridden = conman.output(&[
        "run", "--rm", "--init", "--bundle", bundle.path_str(), "-e", "GREETING=from-flag", "-w", "/tmp", "--name", "ov",
        "--", "sh", "-c", "echo $GREETING; pwd; cat /proc/1/comm; echo $$; exit 4",
    ]);

    assert_eq!(plain.code, 0, "{plain}");
    assert_eq!(plain.stdout, "from-bundle\n/\n1\n", "{plain}");
    assert_eq!(overridden.code, 4, "{overridden}");
    assert_eq!(overridden.stdout, "from-flag\n/tmp\nconman-init\n2\n", "-e, -w, the command and --init apply to a bundle: {overridden}");
    assert_eq!(fs::read(bundle.path().join("config.json")).unwrap(), config_before, "config.json was modified");
    assert_eq!(tree(bundle.path()), tree_before, "files were added to or removed from the bundle");
    assert!(!bundle.rootfs().join("written").exists());
    assert!(entries(&conman.containers_dir()).is_empty(), "--rm left a record");
}

#[test]
fn bundle_create_start_and_inspect() {
    let rt = conman_integration::Runtime::new();
    let conman = Conman::new();
    let bundle = writable_bundle(&rt, &["sh", "-c", "echo started; exit 3"]);

    let created = conman.ok(&["create", "--bundle", bundle.path_str(), "--name", "bc"]);
    conman.ok(&["start", "bc"]);
    let waited = conman.ok(&["wait", "bc"]);

    assert_eq!(created.stdout.trim().len(), 64, "{created}");
    assert_eq!(waited.stdout.trim(), "3", "{waited}");
    assert_eq!(conman.ok(&["logs", "bc"]).stdout, "started\n");
    let details = conman.inspect("bc");
    let canonical = fs::canonicalize(bundle.path()).unwrap();
    assert_eq!(details["sourceBundle"], canonical.to_str().unwrap());
    assert_eq!(details["command"], serde_json::json!(["sh", "-c", "echo started; exit 3"]));
}

#[test]
fn bundle_conflicting_flags_rejected() {
    let rt = conman_integration::Runtime::new();
    let conman = Conman::new();
    let bundle = writable_bundle(&rt, &["true"]);
    let rootfs = bundle.rootfs();
    let cases: [(&[&str], &[&str]); 3] = [
        (&["--rootfs", rootfs.to_str().unwrap()], &["--rootfs"]),
        (&["-m", "64m", "-v", "/tmp:/mnt"], &["--volume", "--memory"]),
        (&["--network", "host", "--privileged"], &["--network"]),
    ];

    for (flags, named) in cases {
        let mut args = vec!["run", "--rm", "--bundle", bundle.path_str()];
        args.extend_from_slice(flags);
        let out = conman.output(&args);

        assert_eq!(out.code, 125, "{flags:?}: {out}");
        assert!(out.stderr.contains("--bundle cannot be combined with"), "{flags:?}: {out}");
        for flag in named {
            assert!(out.stderr.contains(flag), "the message must name {flag}: {out}");
        }
        assert!(entries(&conman.containers_dir()).is_empty(), "{flags:?} left a record");
    }
}

#[test]
fn bad_bundles_rejected() {
    let rt = conman_integration::Runtime::new();
    let conman = Conman::new();
    let missing_dir = rt.tempdir("bundle").join("missing");
    let no_config = rt.tempdir("bundle");
    let malformed = writable_bundle(&rt, &["true"]);
    fs::write(malformed.path().join("config.json"), "{ \"ociVersion\": ").unwrap();
    let mut no_rootfs = writable_bundle(&rt, &["true"]);
    no_rootfs.edit(|config| config["root"]["path"] = Value::String("no-such-root".into()));
    let no_rootfs_path = no_rootfs.path().join("no-such-root");
    let malformed_config = malformed.path().join("config.json");
    let no_config_file = no_config.join("config.json");
    let cases = [
        (missing_dir.as_path(), missing_dir.clone()),
        (no_config.as_path(), no_config_file),
        (malformed.path(), malformed_config),
        (no_rootfs.path(), no_rootfs_path),
    ];

    for (dir, named) in &cases {
        for command in ["run", "create"] {
            let out = conman.output(&[command, "--bundle", dir.to_str().unwrap()]);

            assert_eq!(out.code, 125, "{command} --bundle {}: {out}", dir.display());
            assert!(out.stderr.contains(named.to_str().unwrap()), "the message must name {}: {out}", named.display());
            assert!(entries(&conman.containers_dir()).is_empty(), "{command} --bundle {} left a record", dir.display());
        }
    }
}
