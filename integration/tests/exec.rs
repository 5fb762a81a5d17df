//! `exec`: a new process in a running container, with the process flags,
//! `--process`, `--tty`, `--detach` and the paused and stopped cases.

use std::fs;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use conman_integration::{
    accept_console, cgroup_v2_only, read_pid_file, read_pty_until_closed, receive_pty_master, Bundle, Runtime, Spawned,
    COMMAND_TIMEOUT,
};
use serde_json::json;

/// Hostname of the test containers, which differs from the host's and from
/// the spec's default (`conman`).
const HOSTNAME: &str = "exec-host";

/// A running container for exec tests: `sleep 1000` as its init, a /tmp
/// directory in its rootfs, and a tmpfs at /scratch.
struct Sleeper {
    id: String,
    init_pid: i32,
}

/// Starts a `Sleeper` with `run --detach`.
fn start_sleeper(rt: &Runtime, name: &str) -> Sleeper {
    let mut bundle = Bundle::with_args(rt, &["sleep", "1000"]);
    fs::create_dir_all(bundle.rootfs().join("tmp")).expect("create rootfs/tmp");
    bundle.edit(|config| config["hostname"] = HOSTNAME.into());
    bundle.add_mount(json!({ "destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"] }));
    let id = rt.id(name);
    let pid_file = rt.tempdir("pid").join("init.pid");

    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), "--pid-file", pid_file.to_str().unwrap(), &id]);

    let init_pid = read_pid_file(&pid_file);
    // `Runtime` owns the bundle directory, so it outlives `bundle`.
    Sleeper { id, init_pid }
}

/// Returns `exec <flags> <id> <command>` as one argument list.
fn exec_args<'a>(flags: &[&'a str], id: &'a str, command: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.push(id);
    args.extend_from_slice(command);
    args
}

/// Returns the value of `field` (`CapEff`, `NSpid`…) in a /proc status
/// text.
fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

#[test]
fn exec_prints_stdout() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-stdout");

    let out = rt.output(&["exec", &container.id, "echo", "hello from exec"]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "hello from exec\n", "{out}");
}

#[test]
fn exec_returns_exit_status() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-status");

    let out = rt.output(&["exec", &container.id, "sh", "-c", "exit 5"]);

    assert_eq!(out.code, 5, "{out}");
}

#[test]
fn exec_joins_container_namespaces() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-ns");
    let names = ["pid", "mnt", "net", "uts", "ipc"];
    let script = "for ns in \"$@\"; do echo \"$ns $(readlink /proc/self/ns/$ns)\"; done";
    let mut command = vec!["sh", "-c", script, "sh"];
    command.extend(names);

    let out = rt.output(&exec_args(&[], &container.id, &command));

    assert_eq!(out.code, 0, "{out}");
    for name in names {
        let host_view = fs::read_link(format!("/proc/{}/ns/{name}", container.init_pid))
            .unwrap_or_else(|err| panic!("readlink /proc/{}/ns/{name}: {err}", container.init_pid));
        let expected = format!("{name} {}", host_view.display());
        assert!(
            out.stdout.lines().any(|line| line == expected),
            "exec is not in the init's {name} namespace (expected {expected:?}): {out}"
        );
    }
}

#[test]
fn exec_sees_container_hostname() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-hostname");

    let out = rt.output(&["exec", &container.id, "hostname"]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), HOSTNAME, "{out}");
}

#[test]
fn exec_sees_container_pids() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-proc");

    let out = rt.output(&["exec", &container.id, "sh", "-c", "echo $$; ls /proc"]);

    assert_eq!(out.code, 0, "{out}");
    let mut lines = out.stdout.lines();
    let own_pid = lines.next().unwrap_or_default();
    let pids: Vec<&str> = lines.filter(|name| name.parse::<u32>().is_ok()).collect();
    assert!(pids.contains(&"1"), "/proc in the exec has no pid 1: {pids:?}");
    assert!(pids.contains(&own_pid), "/proc in the exec lacks the exec's own pid {own_pid}: {pids:?}");
    let host_pid = container.init_pid.to_string();
    assert!(
        !pids.contains(&host_pid.as_str()),
        "/proc in the exec lists the init's host pid {host_pid}: {pids:?}"
    );
}

#[test]
fn detached_exec_joins_cgroup() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-cgroup");
    let pid_file = rt.tempdir("pid").join("exec.pid");

    let out = rt.output(&exec_args(
        &["--detach", "--pid-file", pid_file.to_str().unwrap()],
        &container.id,
        &["sleep", "1000"],
    ));

    assert_eq!(out.code, 0, "{out}");
    let pid = read_pid_file(&pid_file);
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|err| panic!("read /proc/{pid}/cgroup of the exec process: {err}"));
    let expected = format!("/conman/{}", container.id);
    // v1 lists one line per hierarchy with its controllers; v2 has the
    // single line "0::PATH".
    let controllers: &[&str] = if cgroup_v2_only() { &[""] } else { &["pids", "memory", "freezer", "cpu"] };
    for &controller in controllers {
        let line = cgroups
            .lines()
            .find(|line| line.split(':').nth(1).is_some_and(|c| c.split(',').any(|name| name == controller)))
            .unwrap_or_default();
        assert!(
            line.ends_with(&expected),
            "exec process {pid} is not in {expected} of the {controller} controller: {cgroups}"
        );
    }
}

#[test]
fn detached_exec_in_pid_namespace() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-pidns");
    let pid_file = rt.tempdir("pid").join("exec.pid");

    rt.ok(&exec_args(&["-d", "--pid-file", pid_file.to_str().unwrap()], &container.id, &["sleep", "1000"]));

    let pid = read_pid_file(&pid_file);
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|err| panic!("read /proc/{pid}/status of the exec process: {err}"));
    let nspid: Vec<u32> = status_field(&status, "NSpid")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(nspid.len(), 2, "exec process {pid} is not one pid namespace below the host: NSpid {nspid:?}");
    // The container's namespace numbers its processes from 1, and this test
    // started only a few processes in it.
    let inner = nspid[1];
    assert!(inner < 100, "exec process {pid} has pid {inner} in the container, not a small one");

    let out = rt.ok(&["ps", "--format", "json", &container.id]);
    let listed: Vec<i32> = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|err| panic!("ps output is not a JSON array of pids ({err}): {out}"));
    assert!(listed.contains(&pid), "ps does not list exec process {pid}: {out}");
    assert!(listed.contains(&container.init_pid), "ps does not list init {}: {out}", container.init_pid);
}

#[test]
fn exec_env_flag() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-env");

    let out = rt.output(&["exec", "-e", "FOO=bar", &container.id, "sh", "-c", "echo \"$FOO\""]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "bar", "{out}");
}

#[test]
fn exec_cwd_flag() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-cwd");

    let out = rt.output(&["exec", "--cwd", "/tmp", &container.id, "pwd"]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "/tmp", "{out}");
}

/// The directory comes from `--cwd`, so the message must not send the user
/// to config.json.
#[test]
fn exec_missing_cwd_fails() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-missing-cwd");

    let out = rt.output(&["exec", "--cwd", "/no-such-dir", &container.id, "pwd"]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("/no-such-dir"), "{out}");
    assert!(!out.stderr.contains("config.json"), "the message blames config.json for --cwd: {out}");
    assert_eq!(rt.status(&container.id), "running", "a failed exec must leave the container running");
}

#[test]
fn exec_user_flag() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-user");

    let out = rt.output(&["exec", "-u", "1000:1000", &container.id, "sh", "-c", "id -u; id -g"]);

    assert_eq!(out.code, 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"1000"), "uid: {out}");
    assert_eq!(lines.get(1), Some(&"1000"), "gid: {out}");
}

#[test]
fn exec_additional_gids_flag() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-groups");

    let out = rt.output(&["exec", "-u", "1000:1000", "--additional-gids", "10", &container.id, "id", "-G"]);

    assert_eq!(out.code, 0, "{out}");
    let groups: Vec<&str> = out.stdout.split_whitespace().collect();
    assert!(groups.contains(&"10"), "group 10 is missing: {out}");
}

/// Runs `grep CapEff /proc/self/status` in the container with `flags` and
/// returns the effective set.
fn effective_caps(rt: &Runtime, id: &str, flags: &[&str]) -> u64 {
    let out = rt.output(&exec_args(flags, id, &["grep", "CapEff", "/proc/self/status"]));
    assert_eq!(out.code, 0, "{out}");
    let hex = status_field(&out.stdout, "CapEff").unwrap_or_else(|| panic!("no CapEff line: {out}"));
    u64::from_str_radix(hex, 16).unwrap_or_else(|err| panic!("CapEff {hex:?} is not hex ({err}): {out}"))
}

#[test]
fn exec_cap_adds_capability() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-cap");
    const CAP_SYS_ADMIN: u64 = 1 << 21;

    let with_flag = effective_caps(&rt, &container.id, &["--cap", "CAP_SYS_ADMIN"]);
    let without_flag = effective_caps(&rt, &container.id, &[]);

    assert_ne!(with_flag & CAP_SYS_ADMIN, 0, "CapEff {with_flag:#x} lacks CAP_SYS_ADMIN (bit 21)");
    // CAP_AUDIT_WRITE (29), CAP_KILL (5), CAP_NET_BIND_SERVICE (10): the
    // set of the spec's default config.
    assert_eq!(without_flag, 0x2000_0420, "CapEff without --cap is {without_flag:#x}");
}

#[test]
fn exec_missing_program_fails() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-missing");

    let out = rt.output(&["exec", &container.id, "no-such-program"]);

    assert_eq!(out.code, 255, "an exec that cannot start exits 255, as with runc: {out}");
    assert!(out.stderr.contains("executable file not found in $PATH"), "{out}");
    assert_eq!(rt.status(&container.id), "running", "a failed exec must leave the container running");
    let later = rt.output(&["exec", &container.id, "echo", "still here"]);
    assert_eq!(later.code, 0, "exec after the failed one: {later}");
    assert_eq!(later.stdout, "still here\n", "{later}");
}

#[test]
fn exec_into_stopped_fails() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["true"]);
    let id = rt.id("exec-stopped");
    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), &id]);
    assert_eq!(rt.wait_for_status(&id, "stopped"), "stopped");

    let out = rt.output(&["exec", &id, "echo", "ran"]);

    assert_ne!(out.code, 0, "{out}");
    assert!(!out.stdout.contains("ran"), "the exec ran in a stopped container: {out}");
    assert!(out.stderr.contains("stopped"), "{out}");
}

#[test]
fn exec_into_paused_fails() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-paused");
    rt.ok(&["pause", &container.id]);

    let out = rt.output(&["exec", &container.id, "echo", "ran"]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("--ignore-paused"), "{out}");
    assert_eq!(rt.status(&container.id), "paused");
}

/// Maximum time one exec into a paused container may take. An exec returns
/// within milliseconds, and this bound stops a hung one from stalling the
/// suite for the full `COMMAND_TIMEOUT`.
const PAUSED_EXEC_TIMEOUT: Duration = Duration::from_secs(10);

/// Each of many `exec --ignore-paused -d` processes creates a file in the
/// container's tmpfs. None may run before `resume`, and all must finish
/// after it. A process that escapes the freezer does so only for the short
/// time it takes to create its file, so one exec rarely shows it.
/// NOTE: the check is probabilistic. With 100 execs, at least one escaped in
/// most runs on a two-CPU VM.
#[test]
fn ignore_paused_waits_for_resume() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-ignore-paused");
    rt.ok(&["pause", &container.id]);
    let names: Vec<String> = (0..100).map(|i| format!("written-{i}")).collect();

    for name in &names {
        let path = format!("/scratch/{name}");
        let args = ["exec", "--ignore-paused", "-d", &container.id, "touch", &path];
        let out = Spawned::new(rt.command(&args)).wait_within(PAUSED_EXEC_TIMEOUT);
        assert!(
            out.is_some(),
            "exec --ignore-paused -d touch {path} did not return within {PAUSED_EXEC_TIMEOUT:?}"
        );
        let out = out.unwrap();
        assert_eq!(out.code, 0, "exec --ignore-paused -d: {out}");
    }

    // The host reaches the container's tmpfs through the init's root.
    sleep(Duration::from_millis(200));
    let scratch = PathBuf::from(format!("/proc/{}/root/scratch", container.init_pid));
    let written_while_paused: Vec<String> = names.iter().filter(|name| scratch.join(name).exists()).cloned().collect();
    assert!(
        written_while_paused.is_empty(),
        "exec processes ran while the container was paused, writing {written_while_paused:?}"
    );
    assert_eq!(rt.status(&container.id), "paused");

    rt.ok(&["resume", &container.id]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let listing = loop {
        let out = rt.output(&["exec", &container.id, "ls", "/scratch"]);
        assert_eq!(out.code, 0, "ls /scratch after resume: {out}");
        let all_written = names.iter().all(|name| out.stdout.lines().any(|line| line == name));
        if all_written || Instant::now() >= deadline {
            break out;
        }
        sleep(Duration::from_millis(50));
    };
    for name in &names {
        assert!(
            listing.stdout.lines().any(|line| line == name),
            "{name} is missing after resume: {listing}"
        );
    }
}

/// Four threads run `exec --ignore-paused -d` into one paused container at
/// the same time. Every exec must return, whatever state the freezer is in
/// while the others' processes join it.
#[test]
fn parallel_ignore_paused_execs_return() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-parallel-paused");
    rt.ok(&["pause", &container.id]);

    let hung: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|thread| {
                let rt = &rt;
                let id = container.id.as_str();
                scope.spawn(move || {
                    for i in 0..50 {
                        let path = format!("/scratch/thread{thread}-{i}");
                        let args = ["exec", "--ignore-paused", "-d", id, "touch", &path];
                        match Spawned::new(rt.command(&args)).wait_within(PAUSED_EXEC_TIMEOUT) {
                            Some(out) => assert_eq!(out.code, 0, "exec --ignore-paused -d touch {path}: {out}"),
                            None => return Some(path),
                        }
                    }
                    None
                })
            })
            .collect();
        handles.into_iter().filter_map(|handle| handle.join().expect("exec thread panicked")).collect()
    });

    assert!(
        hung.is_empty(),
        "exec --ignore-paused -d did not return within {PAUSED_EXEC_TIMEOUT:?} for touch {hung:?}"
    );
}

#[test]
fn exec_process_file() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-process");
    let process = json!({
        "args": ["sh", "-c", "echo \"$GREETING\"; pwd; id -u; id -g"],
        "env": ["PATH=/bin", "GREETING=from the process file"],
        "cwd": "/tmp",
        "user": { "uid": 1000, "gid": 1000 }
    });
    let path = rt.tempdir("process").join("process.json");
    fs::write(&path, process.to_string()).expect("write process.json");

    let out = rt.output(&["exec", "--process", path.to_str().unwrap(), &container.id]);

    assert_eq!(out.code, 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"from the process file"), "env: {out}");
    assert_eq!(lines.get(1), Some(&"/tmp"), "cwd: {out}");
    assert_eq!(lines.get(2), Some(&"1000"), "uid: {out}");
    assert_eq!(lines.get(3), Some(&"1000"), "gid: {out}");
}

/// A process file may leave out "user": the process then runs as root.
#[test]
fn exec_process_file_without_user() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-process-root");
    let process = json!({ "args": ["sh", "-c", "id -u; id -g"], "cwd": "/" });
    let path = rt.tempdir("process").join("process.json");
    fs::write(&path, process.to_string()).expect("write process.json");

    let out = rt.output(&["exec", "--process", path.to_str().unwrap(), &container.id]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), ["0", "0"], "{out}");
}

/// A process file given as a pipe, as with bash's `-p <(...)`, is read
/// once: the runtime's re-execution from a sealed copy comes first.
#[test]
fn exec_process_file_from_pipe() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-process-pipe");
    // Both ends close on exec, so no other test's child inherits the write
    // end; the child gets the read end as fd 10 through dup2.
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("create a pipe");
    let mut writer = fs::File::from(write_end);
    writer
        .write_all(br#"{"args": ["echo", "from-pipe"], "cwd": "/"}"#)
        .expect("write the process file into the pipe");
    drop(writer);
    let mut command = rt.command(&["exec", "--process", "/dev/fd/10", &container.id]);
    let raw = read_end.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(raw, 10) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }

    let out = rt.output_of(command);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "from-pipe", "{out}");
}

/// `--debug` logs the steps of exec at debug level, on stderr without
/// --log.
#[test]
fn exec_debug_logs_steps() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-debug");

    let out = rt.output(&["--debug", "exec", &container.id, "true"]);

    assert_eq!(out.code, 0, "{out}");
    assert!(out.stderr.contains("level=debug msg=\"cloned exec process"), "{out}");
}

#[test]
fn exec_tty_sends_pty() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-tty");
    let socket_path = rt.tempdir("console").join("console.sock");
    let listener = UnixListener::bind(&socket_path).expect("bind the console socket");

    let mut exec = Spawned::new(rt.command(&[
        "exec",
        "--tty",
        "--console-socket",
        socket_path.to_str().unwrap(),
        &container.id,
        "sh",
        "-c",
        "tty; echo ok",
    ]));
    let stream = accept_console(&listener, &mut exec);
    let master = receive_pty_master(&stream);
    let output = read_pty_until_closed(&master, COMMAND_TIMEOUT);
    let finished = exec.wait(COMMAND_TIMEOUT);

    assert_eq!(finished.code, 0, "exec --tty: {finished}");
    let tty = output.lines().next().unwrap_or_default().trim_end_matches('\r');
    let number = tty.strip_prefix("/dev/pts/").unwrap_or_default();
    assert!(
        !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()),
        "tty printed no /dev/pts/N: {output:?}"
    );
    assert!(output.contains("ok"), "{output:?}");
}

#[test]
fn exec_without_command_fails() {
    let rt = Runtime::new();
    let container = start_sleeper(&rt, "exec-no-command");

    let out = rt.output(&["exec", &container.id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("command"), "{out}");
    assert!(out.stderr.contains("--process"), "{out}");
    assert_eq!(out.stderr_line().lines().count(), 1, "stderr is not one line: {out}");
}
