//! Defences against a hostile container: the runtime's own executable
//! (CVE-2019-5736), host descriptors (CVE-2024-21626), symlinks in mount
//! destinations (CVE-2021-30465), the read-only and masked parts of /proc and
//! /sys, and AppArmor and SELinux settings on a host without them.
//!
//! docs/security.md lists each threat with its defence and these tests.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use conman_integration::{
    assert_no_leftovers, read_pid_file, runtime_bin, Bundle, Output, Runtime, Spawned, COMMAND_TIMEOUT,
};
use serde_json::{json, Value};
use tempfile::TempDir;

/// A runtime that runs a copy of the release binary from a temporary
/// directory, so that a test which finds a hole damages only the copy.
struct CopiedRuntime {
    rt: Runtime,
    original: Vec<u8>,
    _dir: TempDir,
}

impl CopiedRuntime {
    fn new() -> CopiedRuntime {
        let dir = tempfile::Builder::new()
            .prefix("conman-it.bin.")
            .tempdir_in("/tmp")
            .expect("create a directory for the binary copy");
        let copy = dir.path().join("conman-runtime");
        fs::copy(runtime_bin(), &copy).expect("copy conman-runtime");
        let original = fs::read(&copy).expect("read the binary copy");
        CopiedRuntime {
            rt: Runtime::with_binary(copy),
            original,
            _dir: dir,
        }
    }

    /// Asserts that the binary copy still has its original content.
    fn assert_binary_unchanged(&self) {
        let now = fs::read(self.rt.binary()).expect("read the binary copy");
        assert_eq!(now.len(), self.original.len(), "the runtime binary changed its size");
        assert!(now == self.original, "the runtime binary was modified");
    }
}

/// Prints how each way of reaching `/proc/$1/exe` ends: the process's
/// comm, then `readlink`, an open for reading and an open for appending,
/// each as "ok" or the shell's error message.
const PROBE_EXE: &str = r#"p=$1
echo "comm: $(cat /proc/$p/comm)"
if readlink /proc/$p/exe >/dev/null 2>&1; then echo "readlink: ok"; else echo "readlink: failed"; fi
if r=$( (exec 3</proc/$p/exe) 2>&1 ); then echo "open-read: ok"; else echo "open-read: $r"; fi
if w=$( (exec 3>>/proc/$p/exe) 2>&1 ); then echo "open-write: ok"; else echo "open-write: $w"; fi
"#;

/// Returns the text after `key: ` on the line that starts with it.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}: ");
    text.lines().find_map(|line| line.strip_prefix(&prefix)).unwrap_or("(missing)")
}

/// Asserts that the probe found a runtime process and could not reach its
/// executable in any way.
fn assert_exe_unreachable(report: &str, probed: &str) {
    assert_eq!(field(report, "comm"), "conman-runtime", "{probed}: the probed process is not the runtime: {report}");
    assert_eq!(field(report, "readlink"), "failed", "{probed}: {report}");
    assert!(field(report, "open-read").contains("Permission denied"), "{probed}: {report}");
    assert!(field(report, "open-write").contains("Permission denied"), "{probed}: {report}");
}

/// Returns `exec <id> sh -c PROBE_EXE sh <pid>` arguments.
fn probe_args<'a>(id: &'a str, pid: &'a str) -> Vec<&'a str> {
    vec!["exec", id, "sh", "-c", PROBE_EXE, "sh", pid]
}

/// The init of a created container waits for `start` while it still runs
/// the runtime binary, and an exec into the container finds it as pid 1.
#[test]
fn init_exe_unreachable_before_start() {
    let copied = CopiedRuntime::new();
    let rt = &copied.rt;
    let bundle = Bundle::with_args(rt, &["sleep", "1000"]);
    let id = rt.id("exe-created");
    rt.create(&bundle, &id);

    let out = rt.output(&probe_args(&id, "1"));

    assert_eq!(out.code, 0, "{out}");
    assert_exe_unreachable(&out.stdout, "init of a created container");
    rt.ok(&["start", &id]);
    copied.assert_binary_unchanged();
}

/// Runs the attack of CVE-2019-5736: keep a descriptor of the runtime's
/// executable from inside the container, wait until no process runs the
/// binary (so the kernel no longer refuses writers with ETXTBSY), then
/// reopen the descriptor for writing. `caps` are added to the container's
/// capability sets. Returns the attacker's report.
fn reopen_attack(caps: &[&str], name: &str) -> String {
    let copied = CopiedRuntime::new();
    let rt = &copied.rt;
    let out_dir = rt.tempdir("attack-out");
    let mut bundle = Bundle::with_args(rt, &["sleep", "1000"]);
    bundle.add_mount(json!({ "destination": "/out", "type": "bind", "source": out_dir, "options": ["rbind", "rw"] }));
    bundle.edit(|config| {
        for set in ["bounding", "effective", "permitted"] {
            let list = config["process"]["capabilities"][set].as_array_mut().expect("capability set");
            list.extend(caps.iter().map(|cap| Value::from(*cap)));
        }
    });
    let id = rt.id(name);
    rt.create(&bundle, &id);
    // The attacker runs detached, so that no `exec` runtime process keeps
    // the binary busy once the container starts.
    let attack = r#"
# A failed redirection of `exec` would end the shell, so try it in a subshell first.
if ! (exec 3</proc/1/exe) 2>/dev/null; then echo "open: failed" > /out/report; exit 0; fi
exec 3</proc/1/exe
echo "open: ok" > /out/opened
i=0
while [ "$(cat /proc/1/comm)" = conman-runtime ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
echo "open: ok" > /out/report
if w=$( (echo pwned >> /proc/self/fd/3) 2>&1 ); then echo "reopen-write: ok" >> /out/report; else echo "reopen-write: $w" >> /out/report; fi
"#;

    rt.ok(&["exec", "-d", &id, "sh", "-c", attack]);
    // Start only once the attacker has its descriptor, or failed to get it.
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while !out_dir.join("opened").exists() && !out_dir.join("report").exists() {
        assert!(Instant::now() < deadline, "the attacking exec never reported");
        sleep(Duration::from_millis(10));
    }
    rt.ok(&["start", &id]);
    let report_path = out_dir.join("report");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let report = loop {
        let text = fs::read_to_string(&report_path).unwrap_or_default();
        if text.contains("reopen-write") || text.contains("open: failed") {
            break text;
        }
        assert!(Instant::now() < deadline, "the attack never finished: {text:?}");
        sleep(Duration::from_millis(20));
    };

    copied.assert_binary_unchanged();
    assert_ne!(field(&report, "reopen-write"), "ok", "{report}");
    report
}

#[test]
fn exe_reopen_attack_fails() {
    let report = reopen_attack(&[], "exe-reopen");

    // Non-dumpable already stops the first step.
    assert_eq!(field(&report, "open"), "failed", "{report}");
}

/// CAP_SYS_PTRACE lets the container open /proc/PID/exe of a non-dumpable
/// process, so non-dumpable alone does not protect such containers.
#[test]
fn exe_reopen_attack_with_ptrace_fails() {
    let report = reopen_attack(&["CAP_SYS_PTRACE"], "exe-reopen-ptrace");

    // The descriptor leads to a read-only mount of the binary (or, without
    // CAP_SYS_ADMIN, to a sealed memfd copy), which takes no writes.
    assert_eq!(field(&report, "open"), "ok", "{report}");
    let write = field(&report, "reopen-write");
    assert!(
        write.contains("Read-only file system") || write.contains("Operation not permitted"),
        "{report}"
    );
}

/// A startContainer hook runs in the container while its parent, the init,
/// still runs the runtime binary.
#[test]
fn init_exe_unreachable_from_start_hook() {
    let copied = CopiedRuntime::new();
    let rt = &copied.rt;
    let out_dir = rt.tempdir("hook-out");
    let mut bundle = Bundle::with_args(rt, &["true"]);
    bundle.add_mount(json!({ "destination": "/out", "type": "bind", "source": out_dir, "options": ["rbind", "rw"] }));
    let script = format!("{{\n{PROBE_EXE}\n}} > /out/report");
    bundle.edit(|config| {
        config["hooks"] = json!({ "startContainer": [{ "path": "/bin/sh", "args": ["sh", "-c", script, "sh", "1"] }] });
    });
    let id = rt.id("exe-hook");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    let report = fs::read_to_string(out_dir.join("report")).expect("the hook wrote its report");
    assert_exe_unreachable(&report, "init seen from a startContainer hook");
    copied.assert_binary_unchanged();
}

/// Finds a process other than pid 1 whose comm is conman-runtime, waiting
/// up to 10 s for one, and runs `PROBE_EXE` on it.
fn find_and_probe_script() -> String {
    format!(
        r#"i=0
while [ $i -lt 1000 ]; do
  for d in /proc/[0-9]*; do
    p=${{d#/proc/}}
    if [ "$p" != 1 ] && [ "$(cat $d/comm 2>/dev/null)" = conman-runtime ]; then
      set -- "$p"
      {{
{PROBE_EXE}
      }}
      exit 0
    fi
  done
  sleep 0.01; i=$((i+1))
done
echo "no runtime process found"
"#
    )
}

/// An `exec` process is in the container's pid namespace from its fork to
/// its execve. Here it blocks there: the container made its /etc/passwd a
/// FIFO, which the process reads to find HOME.
#[test]
fn exec_process_exe_unreachable_before_execve() {
    let copied = CopiedRuntime::new();
    let rt = &copied.rt;
    let bundle = Bundle::with_args(rt, &["sleep", "1000"]);
    let id = rt.id("exe-exec");
    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), &id]);
    // Made after the init read /etc/passwd, through the rootfs directory on
    // the host, because the container's view of it is read-only.
    let passwd = bundle.rootfs().join("etc/passwd");
    fs::create_dir_all(bundle.rootfs().join("etc")).unwrap();
    nix::unistd::mkfifo(&passwd, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo rootfs/etc/passwd");

    let blocked = Spawned::new(rt.command(&["exec", &id, "true"]));
    let out = rt.output(&["exec", "-e", "HOME=/", &id, "sh", "-c", &find_and_probe_script()]);
    // Writing a passwd entry lets the blocked exec go on.
    fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\n").expect("write to the FIFO at /etc/passwd");
    let finished = blocked.wait(COMMAND_TIMEOUT);

    assert_eq!(out.code, 0, "{out}");
    assert_exe_unreachable(&out.stdout, "exec process before execve");
    assert_eq!(finished.code, 0, "the blocked exec: {finished}");
    copied.assert_binary_unchanged();
}

/// A container that joins another's pid namespace (as the containers of a
/// pod do) shows its init to that container during the whole set-up.
#[test]
fn init_exe_unreachable_in_shared_pid_namespace() {
    let copied = CopiedRuntime::new();
    let rt = &copied.rt;
    let first = Bundle::with_args(rt, &["sleep", "1000"]);
    let first_id = rt.id("exe-pod-first");
    let pid_file = rt.tempdir("pid").join("init.pid");
    rt.ok(&["run", "--detach", "--bundle", first.path_str(), "--pid-file", pid_file.to_str().unwrap(), &first_id]);
    let first_pid = read_pid_file(&pid_file);
    let mut second = Bundle::with_args(rt, &["sleep", "1000"]);
    second.edit(|config| {
        for ns in config["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "pid" {
                ns["path"] = format!("/proc/{first_pid}/ns/pid").into();
            }
        }
    });
    let second_id = rt.id("exe-pod-second");
    rt.create(&second, &second_id);

    let out = rt.output(&["exec", &first_id, "sh", "-c", &find_and_probe_script()]);

    assert_eq!(out.code, 0, "{out}");
    assert_exe_unreachable(&out.stdout, "init of a container that joined the pid namespace");
    copied.assert_binary_unchanged();
}

/// Reports whether the init of container `id` runs from a view of the
/// runtime's binary that takes no writes: a read-only mount or a sealed
/// memfd.
fn init_exe_protected(rt: &Runtime, id: &str) -> bool {
    let pid = rt.state(id)["pid"].as_i64().expect("state has a pid");
    let exe = File::open(format!("/proc/{pid}/exe")).expect("open the init's executable from the host");
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: fstatvfs fills the buffer when it returns 0, and fcntl acts
    // on a descriptor that we own.
    let (rc, seals) = unsafe { (libc::fstatvfs(exe.as_raw_fd(), stat.as_mut_ptr()), libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS)) };
    assert_eq!(rc, 0, "statvfs of the init's executable: {}", std::io::Error::last_os_error());
    // SAFETY: initialised by the successful call above.
    let read_only = unsafe { stat.assume_init() }.f_flag & libc::ST_RDONLY != 0;
    read_only || (seals >= 0 && seals & libc::F_SEAL_WRITE != 0)
}

/// Which containers get a protected init: those whose init some process
/// with CAP_SYS_PTRACE over the runtime's user namespace might see.
#[test]
fn init_protected_only_when_reachable() {
    let copied = CopiedRuntime::new();
    let rt = &copied.rt;
    let add_ptrace = |config: &mut Value| {
        let list = config["process"]["capabilities"]["bounding"].as_array_mut().expect("bounding set");
        list.push("CAP_SYS_PTRACE".into());
    };
    let first_id = rt.id("protect-plain");
    let first = Bundle::with_args(rt, &["sleep", "1000"]);
    rt.create(&first, &first_id);
    let first_pid = rt.state(&first_id)["pid"].as_i64().unwrap();

    let mut cases: Vec<(&str, bool, Bundle)> = Vec::new();
    let mut with_ptrace = Bundle::with_args(rt, &["sleep", "1000"]);
    with_ptrace.edit(add_ptrace);
    cases.push(("ptrace", true, with_ptrace));
    let mut no_caps = Bundle::with_args(rt, &["sleep", "1000"]);
    no_caps.edit(|config| {
        config["process"].as_object_mut().unwrap().remove("capabilities");
    });
    cases.push(("no-capabilities", true, no_caps));
    let mut pod = Bundle::with_args(rt, &["sleep", "1000"]);
    pod.edit(|config| {
        for ns in config["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "pid" {
                ns["path"] = format!("/proc/{first_pid}/ns/pid").into();
            }
        }
    });
    cases.push(("joined-pid", true, pod));
    let mut hook = Bundle::with_args(rt, &["sleep", "1000"]);
    hook.edit(|config| {
        config["hooks"] = json!({ "startContainer": [{ "path": "/bin/true" }] });
    });
    cases.push(("start-hook", true, hook));
    let mut userns = Bundle::with_args(rt, &["sleep", "1000"]);
    userns.edit(|config| {
        add_ptrace(config);
        config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({ "type": "user" }));
        // Identity maps keep the rootfs usable; the capabilities still
        // belong to the new user namespace, not to the runtime's.
        config["linux"]["uidMappings"] = json!([{ "containerID": 0, "hostID": 0, "size": 65536 }]);
        config["linux"]["gidMappings"] = json!([{ "containerID": 0, "hostID": 0, "size": 65536 }]);
    });
    cases.push(("userns-ptrace", false, userns));

    assert!(!init_exe_protected(rt, &first_id), "default capabilities, own pid namespace");
    for (name, expected, bundle) in &cases {
        let id = rt.id(&format!("protect-{name}"));
        rt.create(bundle, &id);
        assert_eq!(init_exe_protected(rt, &id), *expected, "case {name}");
        rt.ok(&["delete", "--force", &id]);
    }
    rt.ok(&["delete", "--force", &first_id]);
    copied.assert_binary_unchanged();
}

/// An exec process with CAP_SYS_PTRACE could open the link of an init that
/// runs the unprotected binary, so it waits until the init has started
/// its program.
#[test]
fn ptrace_exec_rejected_before_start() {
    let copied = CopiedRuntime::new();
    let rt = &copied.rt;
    let bundle = Bundle::with_args(rt, &["sleep", "1000"]);
    let id = rt.id("ptrace-exec");
    rt.create(&bundle, &id);

    let before = rt.output(&["exec", "--cap", "CAP_SYS_PTRACE", &id, "sh", "-c", "cat /proc/1/comm"]);
    let plain = rt.output(&["exec", &id, "true"]);
    rt.ok(&["start", &id]);
    // start returns once the init runs its program; poll all the same, so
    // that a slow execve does not fail the test.
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let after = loop {
        let out = rt.output(&["exec", "--cap", "CAP_SYS_PTRACE", &id, "sh", "-c", "cat /proc/1/comm"]);
        if out.code == 0 || Instant::now() > deadline {
            break out;
        }
        sleep(Duration::from_millis(20));
    };

    assert_ne!(before.code, 0, "{before}");
    assert!(before.stderr.contains("CAP_SYS_PTRACE"), "{before}");
    assert!(before.stderr.contains(&id), "{before}");
    assert_eq!(plain.code, 0, "an exec without CAP_SYS_PTRACE: {plain}");
    assert_eq!(after.code, 0, "{after}");
    assert_eq!(after.stdout.trim(), "sleep", "{after}");
    rt.ok(&["delete", "--force", &id]);
    copied.assert_binary_unchanged();
}

/// Host descriptors that a test places in the runtime command before it
/// starts, without close-on-exec: a directory and a file of the host, each
/// at several numbers.
struct LeakedFds {
    dir: File,
    file: File,
    host_dir: PathBuf,
}

/// Descriptor numbers at which `LeakedFds` places the host directory; the
/// host file goes to the numbers in `LEAKED_FILE_FDS`.
const LEAKED_DIR_FDS: &[i32] = &[3, 5, 7, 42];
const LEAKED_FILE_FDS: &[i32] = &[4, 6];

/// Content of the host file that no container may read.
const SECRET: &str = "host secret\n";

impl LeakedFds {
    fn new(rt: &Runtime) -> LeakedFds {
        let host_dir = rt.tempdir("leaked-dir");
        fs::write(host_dir.join("secret"), SECRET).unwrap();
        LeakedFds {
            dir: File::open(&host_dir).expect("open the host directory"),
            file: File::open(host_dir.join("secret")).expect("open the host file"),
            host_dir,
        }
    }

    /// Makes `command` start with the host descriptors at their numbers.
    fn apply(&self, command: &mut std::process::Command) {
        let mut plan: Vec<(i32, i32)> = LEAKED_DIR_FDS.iter().map(|&to| (self.dir.as_raw_fd(), to)).collect();
        plan.extend(LEAKED_FILE_FDS.iter().map(|&to| (self.file.as_raw_fd(), to)));
        // Duplicate first to numbers above every target, so that no target
        // overwrites a source that is still needed.
        // SAFETY: the closure only calls async-signal-safe fcntl and dup2.
        unsafe {
            command.pre_exec(move || {
                for &(from, to) in &plan {
                    let high = libc::fcntl(from, libc::F_DUPFD, 100 + to);
                    if high < 0 || libc::dup2(high, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

/// Lists the container process's descriptors with their targets, as
/// "N -> TARGET" lines.
const LIST_FDS: &str = "ls -l /proc/self/fd | sed -n 's/.* \\([0-9]*\\) -> \\(.*\\)/\\1 -> \\2/p'";

/// Returns the descriptor numbers in a `LIST_FDS` listing, without the one
/// that `ls` opened on the fd directory itself.
fn listed_fds(listing: &str) -> Vec<i32> {
    listing
        .lines()
        .filter_map(|line| line.split_once(" -> "))
        .filter(|(_, target)| !(target.starts_with("/proc/") && target.ends_with("/fd")))
        .filter_map(|(fd, _)| fd.parse().ok())
        .collect()
}

/// Starts `command` with the host descriptors of `leaked` and returns its
/// output.
fn output_with_leaks(rt: &Runtime, leaked: &LeakedFds, args: &[&str]) -> Output {
    let mut command = rt.command(args);
    leaked.apply(&mut command);
    rt.output_of(command)
}

#[test]
fn run_passes_only_stdio() {
    let rt = Runtime::new();
    let leaked = LeakedFds::new(&rt);
    let bundle = Bundle::with_args(&rt, &["sh", "-c", LIST_FDS]);
    let id = rt.id("fds-run");

    let out = output_with_leaks(&rt, &leaked, &["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(listed_fds(&out.stdout), [0, 1, 2], "{out}");
}

#[test]
fn run_preserve_fds_passes_only_those() {
    let rt = Runtime::new();
    let leaked = LeakedFds::new(&rt);
    let bundle = Bundle::with_args(&rt, &["sh", "-c", LIST_FDS]);
    let id = rt.id("fds-preserve");

    let out = output_with_leaks(&rt, &leaked, &["run", "--preserve-fds", "2", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(listed_fds(&out.stdout), [0, 1, 2, 3, 4], "{out}");
}

/// The init is cloned by `create`, which has the leaked descriptors; the
/// program runs after `start`, which has none.
#[test]
fn create_start_passes_only_stdio() {
    let rt = Runtime::new();
    let leaked = LeakedFds::new(&rt);
    let out_dir = rt.tempdir("fds-out");
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", &format!("{LIST_FDS} > /out/fds")]);
    bundle.add_mount(json!({ "destination": "/out", "type": "bind", "source": out_dir, "options": ["rbind", "rw"] }));
    let id = rt.id("fds-create");

    let created = output_with_leaks(&rt, &leaked, &["create", "--bundle", bundle.path_str(), &id]);
    assert_eq!(created.code, 0, "{created}");
    rt.ok(&["start", &id]);
    assert_eq!(rt.wait_for_status(&id, "stopped"), "stopped");

    let listing = fs::read_to_string(out_dir.join("fds")).expect("the container wrote its fd list");
    assert_eq!(listed_fds(&listing), [0, 1, 2], "{listing}");
}

#[test]
fn exec_passes_only_stdio() {
    let rt = Runtime::new();
    let leaked = LeakedFds::new(&rt);
    let bundle = Bundle::with_args(&rt, &["sleep", "1000"]);
    let id = rt.id("fds-exec");
    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), &id]);

    let plain = output_with_leaks(&rt, &leaked, &["exec", &id, "sh", "-c", LIST_FDS]);
    let preserved = output_with_leaks(&rt, &leaked, &["exec", "--preserve-fds", "1", &id, "sh", "-c", LIST_FDS]);

    assert_eq!(plain.code, 0, "{plain}");
    assert_eq!(listed_fds(&plain.stdout), [0, 1, 2], "{plain}");
    assert_eq!(preserved.code, 0, "{preserved}");
    assert_eq!(listed_fds(&preserved.stdout), [0, 1, 2, 3], "{preserved}");
}

/// Highest descriptor number that the cwd tests try: above every leaked
/// one below 42 and every descriptor that the runtime opens itself.
const MAX_CWD_FD: i32 = 20;

/// Asserts that a process whose cwd was `/proc/self/fd/N` either failed
/// to start or runs inside the container, and never read the host file.
fn assert_cwd_contained(out: &Output, leaked: &LeakedFds, cwd: &str) {
    assert!(!out.stdout.contains(SECRET.trim()), "cwd {cwd} reached the host directory: {out}");
    if out.code == 0 {
        let pwd = out.stdout.lines().next().unwrap_or_default();
        assert!(pwd.starts_with('/'), "cwd {cwd}: pwd printed {pwd:?}: {out}");
        assert!(!pwd.starts_with(leaked.host_dir.to_str().unwrap()), "cwd {cwd} is the host directory: {out}");
    } else {
        assert!(out.stderr.contains(cwd), "cwd {cwd}: the error does not name the cwd: {out}");
    }
}

/// CVE-2024-21626: a descriptor of a host directory that is still open in
/// the init when it changes to `process.cwd` would put the container outside
/// its root.
#[test]
fn cwd_through_proc_fd_stays_inside() {
    let rt = Runtime::new();
    let leaked = LeakedFds::new(&rt);
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "pwd; cat secret"]);

    for fd in [3, 5, 7, 42].into_iter().chain(8..=MAX_CWD_FD) {
        let cwd = format!("/proc/self/fd/{fd}");
        bundle.edit(|config| config["process"]["cwd"] = cwd.clone().into());
        let id = rt.id("cwd-fd");

        let out = output_with_leaks(&rt, &leaked, &["run", "--bundle", bundle.path_str(), &id]);

        assert_cwd_contained(&out, &leaked, &cwd);
    }
}

#[test]
fn exec_cwd_through_proc_fd_stays_inside() {
    let rt = Runtime::new();
    let leaked = LeakedFds::new(&rt);
    let bundle = Bundle::with_args(&rt, &["sleep", "1000"]);
    let id = rt.id("exec-cwd-fd");
    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), &id]);

    for fd in [3, 5, 7, 42].into_iter().chain(8..=MAX_CWD_FD) {
        let cwd = format!("/proc/self/fd/{fd}");

        let out = output_with_leaks(&rt, &leaked, &["exec", "--cwd", &cwd, &id, "sh", "-c", "pwd; cat secret"]);

        assert_cwd_contained(&out, &leaked, &cwd);
    }
}

/// Lists the names in a host directory.
fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Returns the mount points in a /proc/mounts text.
fn mount_points(mounts: &str) -> Vec<&str> {
    mounts.lines().filter_map(|line| line.split_whitespace().nth(1)).collect()
}

/// Makes rootfs/mnt/evil a symlink to `link_target` and mounts a tmpfs at
/// /mnt/evil/<host dir>/x, which a resolution on the host would put into
/// that host directory.
fn assert_mount_through_link_stays_inside(link_target: &str, name: &str) {
    let rt = Runtime::new();
    let host_dir = rt.tempdir("escape-target");
    let mut bundle = Bundle::with_args(&rt, &["cat", "/proc/mounts"]);
    fs::create_dir_all(bundle.rootfs().join("mnt")).unwrap();
    symlink(link_target, bundle.rootfs().join("mnt/evil")).unwrap();
    let destination = format!("/mnt/evil{}/x", host_dir.display());
    bundle.add_mount(json!({ "destination": destination, "type": "tmpfs", "source": "tmpfs" }));
    let id = rt.id(name);

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(entries(&host_dir), Vec::<String>::new(), "the mount point was made in the host directory");
    let inside = bundle.rootfs().join(host_dir.strip_prefix("/").unwrap()).join("x");
    assert!(inside.is_dir(), "the mount point is not in the rootfs at {}", inside.display());
    let expected = format!("{}/x", host_dir.display());
    assert!(mount_points(&out.stdout).contains(&expected.as_str()), "no mount at {expected}: {out}");
}

#[test]
fn mount_through_link_to_root() {
    assert_mount_through_link_stays_inside("/", "link-root");
}

#[test]
fn mount_through_link_to_dotdot() {
    assert_mount_through_link_stays_inside("../../..", "link-dotdot");
}

/// A destination that is itself a symlink to `/` names the rootfs's own
/// root, so the mount is stacked on the container's root, never on the
/// host's. A runtime that followed the link on the host would cover the
/// rootfs path and fail at pivot_root.
#[test]
fn mount_on_link_to_root() {
    let rt = Runtime::new();
    let host_dir = rt.tempdir("bind-source");
    fs::write(host_dir.join("marker"), "bound\n").unwrap();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    fs::create_dir_all(bundle.rootfs().join("mnt")).unwrap();
    symlink("/", bundle.rootfs().join("mnt/evil")).unwrap();
    bundle.add_mount(json!({ "destination": "/mnt/evil", "type": "bind", "source": host_dir, "options": ["rbind"] }));
    let host_root_mounts = mount_lines_at("/");
    let id = rt.id("link-is-root");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(mount_lines_at("/"), host_root_mounts, "the host's / changed: {out}");
    assert!(!Path::new("/marker").exists(), "the bind source appeared at the host's /");
    assert!(!bundle.rootfs().join("marker").exists(), "the bind reached the rootfs directory on the host");
    assert_no_leftovers(&rt, &id);
}

/// Returns the host's mountinfo lines whose mount point is `target`.
fn mount_lines_at(target: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("read /proc/self/mountinfo")
        .lines()
        .filter(|line| line.split_whitespace().nth(4) == Some(target))
        .map(str::to_owned)
        .collect()
}

/// Prints "PATH MAJOR:MINOR BYTES" (hex device numbers) for a file, or
/// "PATH absent".
const DESCRIBE_FILE: &str = r#"for p in "$@"; do
  if [ -e "$p" ]; then echo "$p $(stat -L -c %t:%T "$p") $(cat "$p" | wc -c)"; else echo "$p absent"; fi
done"#;

/// Runs a container without the /dev tmpfs, so that the runtime makes its
/// devices in the rootfs's own /dev, after `prepare` changed that rootfs.
/// Returns the output of `DESCRIBE_FILE` on /dev/null and two masked paths.
fn masked_with_rootfs_dev(prepare: impl FnOnce(&Path), name: &str) -> Output {
    let rt = Runtime::new();
    let mut args = vec!["sh", "-c", DESCRIBE_FILE, "sh", "/dev/null", "/proc/keys", "/proc/timer_list"];
    args.push("/etc/alias");
    let mut bundle = Bundle::with_args(&rt, &args);
    bundle.edit(|config| {
        config["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/dev");
        config["linux"]["maskedPaths"].as_array_mut().unwrap().push("/etc/alias".into());
    });
    fs::create_dir_all(bundle.rootfs().join("dev")).unwrap();
    fs::create_dir_all(bundle.rootfs().join("etc")).unwrap();
    fs::write(bundle.rootfs().join("etc/real"), SECRET).unwrap();
    symlink("real", bundle.rootfs().join("etc/alias")).unwrap();
    prepare(&bundle.rootfs());
    let id = rt.id(name);
    rt.output(&["run", "--bundle", bundle.path_str(), &id])
}

/// Asserts that /dev/null is the null device and that every masked path
/// reads empty, a masked symlink included.
fn assert_masks_hold(out: &Output) {
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.lines().any(|l| l == "/dev/null 1:3 0"), "/dev/null is not the null device: {out}");
    for path in ["/proc/keys", "/proc/timer_list", "/etc/alias"] {
        let line = out.stdout.lines().find(|l| l.starts_with(&format!("{path} "))).unwrap_or_default();
        assert!(
            line == format!("{path} 1:3 0") || (line == format!("{path} absent") && path.starts_with("/proc")),
            "{path} is not masked: {out}"
        );
    }
    assert!(!out.stdout.contains(SECRET.trim()), "a masked file was read: {out}");
}

#[test]
fn masks_hold_with_dev_null_symlink() {
    let rt = Runtime::new();
    let host_file = rt.tempdir("host-file").join("target");
    fs::write(&host_file, SECRET).unwrap();
    let out = masked_with_rootfs_dev(|rootfs| symlink(&host_file, rootfs.join("dev/null")).unwrap(), "null-link");

    assert_masks_hold(&out);
    assert_eq!(fs::read_to_string(&host_file).unwrap(), SECRET, "the host file changed");
}

#[test]
fn masks_hold_with_dev_null_file() {
    let out = masked_with_rootfs_dev(|rootfs| fs::write(rootfs.join("dev/null"), SECRET).unwrap(), "null-file");

    assert_masks_hold(&out);
}

/// With /dev bind-mounted from a directory, the runtime makes no devices
/// and must not mask with a /dev/null that is not the null device.
#[test]
fn masking_refuses_fake_dev_null() {
    let rt = Runtime::new();
    let fake_dev = rt.tempdir("fake-dev");
    fs::write(fake_dev.join("null"), SECRET).unwrap();
    let mut bundle = Bundle::with_args(&rt, &["cat", "/proc/keys"]);
    bundle.edit(|config| {
        let mounts = config["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| !m["destination"].as_str().unwrap_or_default().starts_with("/dev"));
        mounts.push(json!({ "destination": "/dev", "type": "bind", "source": fake_dev, "options": ["rbind"] }));
    });
    let id = rt.id("fake-null");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("/dev/null"), "{out}");
    assert!(out.stderr.contains("not the null device"), "{out}");
    assert_eq!(fs::read_to_string(fake_dev.join("null")).unwrap(), SECRET);
    assert_no_leftovers(&rt, &id);
}

/// The pty is bind-mounted at /dev/console; a symlink there in the rootfs
/// must not lead that mount to a host file.
#[test]
fn console_symlink_stays_inside() {
    use std::os::unix::net::UnixListener;

    let rt = Runtime::new();
    let host_file = rt.tempdir("console-target").join("target");
    fs::write(&host_file, SECRET).unwrap();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "echo ok > /dev/console"]);
    bundle.edit(|config| {
        config["process"]["terminal"] = true.into();
        config["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/dev");
    });
    fs::create_dir_all(bundle.rootfs().join("dev")).unwrap();
    symlink(&host_file, bundle.rootfs().join("dev/console")).unwrap();
    let socket_path = rt.tempdir("console").join("console.sock");
    let listener = UnixListener::bind(&socket_path).expect("bind the console socket");
    let id = rt.id("console-link");

    let socket = socket_path.to_str().unwrap();
    let mut create = Spawned::new(rt.command(&["create", "--bundle", bundle.path_str(), "--console-socket", socket, &id]));
    let stream = conman_integration::accept_console(&listener, &mut create);
    let master = conman_integration::receive_pty_master(&stream);
    let created = create.wait(COMMAND_TIMEOUT);
    assert_eq!(created.code, 0, "create: {created}");
    let host_mounts = conman_integration::host_mounts_mentioning(host_file.to_str().unwrap());
    rt.ok(&["start", &id]);
    let output = conman_integration::read_pty_until_closed(&master, COMMAND_TIMEOUT);

    assert!(output.contains("ok"), "the container's console is not the pty: {output:?}");
    assert_eq!(host_mounts, Vec::<String>::new(), "the pty was mounted on the host file");
    assert_eq!(fs::read_to_string(&host_file).unwrap(), SECRET, "the host file changed");
}

/// Prints "PATH ok" when PATH opens for appending, "PATH absent" when it
/// does not exist, or "PATH <error>" with the shell's message. Nothing is
/// written: opening is enough to show whether the mount allows writes.
const PROBE_WRITES: &str = r#"for p in "$@"; do
  if [ ! -e "$p" ] && [ "${p##*/}" != new-file ]; then echo "$p absent"; continue; fi
  if r=$( (exec 3>>"$p") 2>&1 ); then echo "$p ok"; else echo "$p $r"; fi
done"#;

/// Files that the default configuration makes read-only: under the
/// readonlyPaths /proc/sys, /proc/sysrq-trigger, /proc/irq and /proc/bus,
/// and under the read-only /sys and /sys/fs/cgroup. A `new-file` tests the
/// creation of a file; procfs cannot take that test, because it reports
/// ENOENT for any new name. /proc/bus has no file that root may write
/// without CAP_DAC_OVERRIDE, so `READ_ONLY_MOUNTS` covers it.
const READ_ONLY_FILES: &[&str] = &[
    "/proc/sys/kernel/hostname",
    "/proc/sys/vm/drop_caches",
    "/proc/sysrq-trigger",
    "/proc/irq/default_smp_affinity",
    "/sys/kernel/profiling",
    "/sys/kernel/new-file",
    "/sys/fs/cgroup/new-file",
];

/// Mount points that the default configuration makes read-only mounts.
const READ_ONLY_MOUNTS: &[&str] = &["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/sys", "/sys/fs/cgroup"];

#[test]
fn default_read_only_paths_reject_writes() {
    let rt = Runtime::new();
    let script = format!("{PROBE_WRITES}\necho ---\ncat /proc/self/mountinfo");
    let mut args = vec!["sh", "-c", &script, "sh"];
    args.extend(READ_ONLY_FILES);
    let bundle = Bundle::with_args(&rt, &args);
    let id = rt.id("ro-defaults");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    let (_, mountinfo) = out.stdout.split_once("---\n").unwrap_or_else(|| panic!("no mountinfo: {out}"));
    for mount_point in READ_ONLY_MOUNTS {
        // Field 5 is the mount point and field 6 the per-mount options.
        let options: Vec<&str> = mountinfo
            .lines()
            .filter(|line| line.split_whitespace().nth(4) == Some(*mount_point))
            .filter_map(|line| line.split_whitespace().nth(5))
            .collect();
        if options.is_empty() {
            assert!(!Path::new(mount_point).exists(), "{mount_point} is not a mount in the container: {mountinfo}");
            continue;
        }
        let last = options.last().unwrap();
        assert!(last.split(',').any(|o| o == "ro"), "{mount_point} is mounted {last}: {mountinfo}");
    }
    for path in READ_ONLY_FILES {
        let line = out.stdout.lines().find(|l| l.starts_with(&format!("{path} "))).unwrap_or_default();
        if !Path::new(path).exists() && !path.ends_with("/new-file") {
            // The kernel has no such file (no CONFIG_MAGIC_SYSRQ, say).
            assert_eq!(line, format!("{path} absent"), "{out}");
            continue;
        }
        assert!(line.ends_with("Read-only file system"), "{path} is writable in the container: {out}");
    }
}

/// Prints, for each path, "PATH dir N" with its number of entries, "PATH
/// file N" with its size in bytes as read, or "PATH absent".
const DESCRIBE_MASKED: &str = r#"for p in "$@"; do
  if [ -d "$p" ]; then echo "$p dir $(ls -A "$p" | wc -l)"
  elif [ -e "$p" ]; then echo "$p file $(cat "$p" | wc -c)"
  else echo "$p absent"; fi
done"#;

#[test]
fn default_masked_paths_read_empty() {
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&rt);
    let masked: Vec<String> = bundle.config()["linux"]["maskedPaths"]
        .as_array()
        .expect("the default config has maskedPaths")
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    let mut args = vec!["sh", "-c", DESCRIBE_MASKED, "sh"];
    args.extend(masked.iter().map(String::as_str));
    bundle.set_args(&args);
    let id = rt.id("masked-defaults");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    let mut checked = 0;
    for path in &masked {
        let line = out.stdout.lines().find(|l| l.starts_with(&format!("{path} "))).unwrap_or_default();
        let host = Path::new(path);
        let expected = if host.is_dir() {
            format!("{path} dir 0")
        } else if host.exists() {
            format!("{path} file 0")
        } else {
            format!("{path} absent")
        };
        checked += usize::from(host.exists());
        assert_eq!(line, expected, "{out}");
    }
    assert!(checked > 0, "none of the masked paths exists on this host: {masked:?}");
}

/// A bind mount over /proc/sys must not receive the runtime's sysctl
/// writes: they would land in the host directory behind it.
#[test]
fn sysctl_not_written_through_mount() {
    let rt = Runtime::new();
    let fake_sys = rt.tempdir("fake-proc-sys");
    fs::create_dir_all(fake_sys.join("kernel")).unwrap();
    fs::write(fake_sys.join("kernel/domainname"), SECRET).unwrap();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.add_mount(json!({ "destination": "/proc/sys", "type": "bind", "source": fake_sys, "options": ["rbind"] }));
    bundle.edit(|config| config["linux"]["sysctl"] = json!({ "kernel.domainname": "redirected" }));
    let id = rt.id("sysctl-mount");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(fs::read_to_string(fake_sys.join("kernel/domainname")).unwrap(), SECRET, "the sysctl reached the host file");
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("kernel.domainname"), "{out}");
    assert!(out.stderr.contains("procfs"), "{out}");
    assert_no_leftovers(&rt, &id);
}

/// The container's /proc is its own procfs even when the rootfs made /proc
/// a symlink: the runtime's writes (oomScoreAdj) reach that procfs, and
/// the rootfs's fake files stay as they were.
#[test]
fn proc_symlink_in_rootfs_is_contained() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["cat", "/proc/self/oom_score_adj", "/fakeproc/self/oom_score_adj"]);
    let rootfs = bundle.rootfs();
    fs::create_dir_all(rootfs.join("fakeproc/self")).unwrap();
    fs::write(rootfs.join("fakeproc/self/oom_score_adj"), "0\n").unwrap();
    symlink("fakeproc", rootfs.join("proc")).unwrap();
    bundle.edit(|config| config["process"]["oomScoreAdj"] = 123.into());
    let id = rt.id("proc-link");

    let out = rt.output(&["run", "--bundle", bundle.path_str(), &id]);

    assert_eq!(out.code, 0, "{out}");
    // The procfs is mounted where the link points, inside the rootfs.
    assert_eq!(out.stdout, "123\n123\n", "{out}");
    assert_eq!(fs::read_to_string(rootfs.join("fakeproc/self/oom_score_adj")).unwrap(), "0\n");
}

/// Reports whether this host has AppArmor enabled, as the runtime decides it.
fn host_has_apparmor() -> bool {
    fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|text| text.starts_with('Y'))
}

/// Reports whether this host has SELinux enabled (selinuxfs is mounted).
fn host_has_selinux() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// Runs `create` on a bundle changed by `change`. On a host without the
/// security module, asserts that it failed with one line that names
/// `field` and `missing`, and left nothing behind. On a host with it,
/// asserts that this error did not occur.
fn assert_needs_module(change: impl FnOnce(&mut Value), field: &str, missing: &str, host_has_it: bool, name: &str) {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["true"]);
    bundle.edit(change);
    let id = rt.id(name);

    let out = rt.output(&["create", "--bundle", bundle.path_str(), &id]);

    if host_has_it {
        assert!(!out.stderr.contains(missing), "{out}");
        return;
    }
    assert_ne!(out.code, 0, "{out}");
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "stderr is not one line: {out}");
    assert!(out.stderr.contains(field), "{out}");
    assert!(out.stderr.contains(missing), "{out}");
    assert_no_leftovers(&rt, &id);
}

#[test]
fn apparmor_profile_needs_apparmor() {
    assert_needs_module(
        |config| config["process"]["apparmorProfile"] = "unconfined".into(),
        "process.apparmorProfile",
        "this host has no AppArmor",
        host_has_apparmor(),
        "apparmor",
    );
}

#[test]
fn selinux_label_needs_selinux() {
    assert_needs_module(
        |config| config["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0".into(),
        "process.selinuxLabel",
        "this host has no SELinux",
        host_has_selinux(),
        "selinux-label",
    );
}

#[test]
fn mount_label_needs_selinux() {
    assert_needs_module(
        |config| config["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0".into(),
        "linux.mountLabel",
        "this host has no SELinux",
        host_has_selinux(),
        "mount-label",
    );
}

/// `exec --process` with a profile or label fails the same way, and the
/// container keeps running.
#[test]
fn exec_security_fields_need_modules() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sleep", "1000"]);
    let id = rt.id("exec-lsm");
    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), &id]);
    let cases = [
        ("apparmorProfile", "unconfined", "this host has no AppArmor", host_has_apparmor()),
        ("selinuxLabel", "system_u:system_r:container_t:s0", "this host has no SELinux", host_has_selinux()),
    ];

    for (field, value, missing, host_has_it) in cases {
        let mut process = json!({ "args": ["true"], "cwd": "/", "user": { "uid": 0, "gid": 0 } });
        process[field] = value.into();
        let path = rt.tempdir("process").join("process.json");
        fs::write(&path, process.to_string()).unwrap();

        let out = rt.output(&["exec", "--process", path.to_str().unwrap(), &id]);

        if host_has_it {
            assert!(!out.stderr.contains(missing), "{field}: {out}");
            continue;
        }
        assert_ne!(out.code, 0, "{field}: {out}");
        assert!(out.stderr.contains(&format!("process.{field}")), "{out}");
        assert!(out.stderr.contains(missing), "{out}");
        assert_eq!(rt.status(&id), "running", "a failed exec must leave the container running");
    }
}

#[test]
fn features_report_host_modules() {
    let rt = Runtime::new();

    let out = rt.ok(&["features"]);

    let features: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|err| panic!("features is not JSON ({err}): {out}"));
    assert_eq!(features["linux"]["apparmor"]["enabled"], host_has_apparmor(), "{out}");
    assert_eq!(features["linux"]["selinux"]["enabled"], host_has_selinux(), "{out}");
}
