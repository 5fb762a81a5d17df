//! The container process: pid, hostname, read-only root, masked and
//! read-only paths, capabilities, rlimits, user, cwd, env, preserved fds.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use conman_integration::{Bundle, Output, Runtime};
use serde_json::json;

/// Runs `bundle` to completion with `run` and returns the output.
fn run(rt: &Runtime, bundle: &Bundle, name: &str) -> Output {
    let id = rt.id(name);
    rt.output(&["run", "--bundle", bundle.path_str(), &id])
}

#[test]
fn shell_is_pid_1() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sh", "-c", "echo $$"]);

    let out = run(&rt, &bundle, "pid1");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "1");
}

#[test]
fn hostname_from_config() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["hostname"]);
    bundle.edit(|config| config["hostname"] = "it-host".into());

    let out = run(&rt, &bundle, "hostname");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "it-host");
}

#[test]
fn root_is_read_only() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["touch", "/x"]);
    assert_eq!(bundle.config()["root"]["readonly"], true, "spec's default must be a read-only root");

    let out = run(&rt, &bundle, "ro-root");

    assert_ne!(out.code, 0, "touch /x succeeded: {out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!bundle.rootfs().join("x").exists(), "/x was created in the rootfs");
}

/// Prints, for each path, "absent" or the device numbers (hex major:minor)
/// and the byte count that reading it gives.
const DESCRIBE_PATHS: &str = r#"for p in "$@"; do
  if [ -e "$p" ]; then echo "$p $(stat -c %t:%T "$p") $(wc -c < "$p")"; else echo "$p absent"; fi
done"#;

#[test]
fn masked_paths_read_empty() {
    let rt = Runtime::new();
    let paths = ["/proc/kcore", "/proc/keys"];
    let mut args = vec!["sh", "-c", DESCRIBE_PATHS, "sh"];
    args.extend(paths);
    let bundle = Bundle::with_args(&rt, &args);

    let out = run(&rt, &bundle, "masked");

    assert_eq!(out.code, 0, "{out}");
    for path in paths {
        let line = out.stdout.lines().find(|l| l.starts_with(&format!("{path} "))).unwrap_or_default();
        // /proc/kcore is missing on kernels built without it; the mask
        // then has nothing to hide.
        let expected = if Path::new(path).exists() {
            format!("{path} 1:3 0")
        } else {
            format!("{path} absent")
        };
        assert_eq!(line, expected, "{out}");
    }
}

#[test]
fn readonly_paths_reject_writes() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sh", "-c", "echo x > /proc/sys/kernel/domainname"]);

    let out = run(&rt, &bundle, "ro-paths");

    assert_ne!(out.code, 0, "the write succeeded: {out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
}

#[test]
fn default_capabilities() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["grep", "Cap", "/proc/self/status"]);

    let out = run(&rt, &bundle, "caps");

    assert_eq!(out.code, 0, "{out}");
    // CAP_AUDIT_WRITE (29), CAP_KILL (5), CAP_NET_BIND_SERVICE (10).
    let expected = "0000000020000420";
    for set in ["CapBnd", "CapEff", "CapPrm"] {
        let line = out.stdout.lines().find(|l| l.starts_with(&format!("{set}:"))).unwrap_or_default();
        assert_eq!(line.split_whitespace().nth(1), Some(expected), "{set}: {out}");
    }
}

#[test]
fn rlimit_nofile_applied() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "ulimit -n; ulimit -Hn"]);
    bundle.edit(|config| {
        config["process"]["rlimits"] = json!([{ "type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024 }]);
    });

    let out = run(&rt, &bundle, "rlimit");

    assert_eq!(out.code, 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"512"), "soft limit: {out}");
    assert_eq!(lines.get(1), Some(&"1024"), "hard limit: {out}");
}

#[test]
fn user_and_groups() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["id"]);
    bundle.edit(|config| {
        config["process"]["user"] = json!({ "uid": 1000, "gid": 1000, "additionalGids": [10] });
    });

    let out = run(&rt, &bundle, "user");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "uid=1000 gid=1000 groups=10");
}

#[test]
fn cwd_from_config() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["pwd"]);
    fs::create_dir_all(bundle.rootfs().join("work/app")).unwrap();
    bundle.edit(|config| config["process"]["cwd"] = "/work/app".into());

    let out = run(&rt, &bundle, "cwd");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "/work/app");
}

#[test]
fn env_from_config() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["sh", "-c", "echo \"$GREETING\""]);
    bundle.edit(|config| {
        config["process"]["env"].as_array_mut().unwrap().push("GREETING=hello from env".into());
    });

    let out = run(&rt, &bundle, "env");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "hello from env");
}

/// Lists the container's fds with a fresh `ls` (whose own directory fd is
/// the lowest free number), then prints what fd 3 reads.
const LIST_FDS: &str = "ls -1 /proc/self/fd; echo ---; cat /proc/self/fd/3 2>/dev/null; true";

/// Runs `LIST_FDS` in a container whose runtime gets `file` as fd 3, and
/// returns (fd list, text read from fd 3).
fn run_with_fd3(rt: &Runtime, name: &str, file: &File, extra: &[&str]) -> (Vec<String>, String) {
    let bundle = Bundle::with_args(rt, &["sh", "-c", LIST_FDS]);
    let id = rt.id(name);
    let mut args = vec!["run", "--bundle", bundle.path_str()];
    args.extend_from_slice(extra);
    args.push(&id);
    let mut command = rt.command(&args);
    let fd = file.as_raw_fd();
    // SAFETY: the closure only calls async-signal-safe fcntl and dup2.
    unsafe {
        command.pre_exec(move || {
            // dup2 onto itself keeps FD_CLOEXEC, so clear it by hand then.
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }

    let out = rt.output_of(command);

    assert_eq!(out.code, 0, "{out}");
    let (fds, content) = out.stdout.split_once("---\n").unwrap_or_else(|| panic!("unexpected output: {out}"));
    (fds.lines().map(str::to_owned).collect(), content.to_owned())
}

fn preserved_file(rt: &Runtime) -> File {
    let path = rt.tempdir("fds").join("preserved.txt");
    fs::write(&path, "preserved content\n").unwrap();
    File::open(&path).unwrap()
}

#[test]
fn preserve_fds_passes_fd3() {
    let rt = Runtime::new();
    let file = preserved_file(&rt);

    let (fds, content) = run_with_fd3(&rt, "preserve", &file, &["--preserve-fds", "1"]);

    // 0-2 stdio, 3 the preserved file, 4 the directory ls is reading.
    assert_eq!(fds, ["0", "1", "2", "3", "4"]);
    assert_eq!(content, "preserved content\n");
}

#[test]
fn fd3_not_leaked_by_default() {
    let rt = Runtime::new();
    let file = preserved_file(&rt);

    let (fds, content) = run_with_fd3(&rt, "no-preserve", &file, &[]);

    // 0-2 stdio, 3 the directory ls is reading.
    assert_eq!(fds, ["0", "1", "2", "3"]);
    assert_eq!(content, "", "the host file reached the container");
}

#[test]
fn home_set_when_missing() {
    let rt = Runtime::new();
    let bundle = Bundle::with_args(&rt, &["sh", "-c", "echo home=$HOME"]);

    let out = run(&rt, &bundle, "home");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "home=/", "{out}");
}

/// A cwd the process's user may not search: the init and exec enter it
/// before they switch user and drop CAP_DAC_OVERRIDE, so the process
/// starts there all the same.
#[test]
fn cwd_without_user_access() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["pwd"]);
    let private = bundle.rootfs().join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&private, Some(42), Some(42)).unwrap();
    bundle.edit(|config| {
        config["process"]["cwd"] = "/private".into();
        config["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
    });

    let out = run(&rt, &bundle, "cwd-denied");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "/private");

    // Root without CAP_DAC_OVERRIDE (not in the default set) may not search
    // a 0700 directory of uid 42 either.
    bundle.set_args(&["sleep", "60"]);
    let id = rt.id("cwd-denied-exec");
    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), &id]);

    let exec = rt.output(&["exec", "--user", "0", &id, "pwd"]);

    assert_eq!(exec.code, 0, "{exec}");
    assert_eq!(exec.stdout.trim(), "/private");
}

#[test]
fn missing_cwd_is_created() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["pwd"]);
    bundle.edit(|config| config["process"]["cwd"] = "/work/dir".into());

    let out = run(&rt, &bundle, "new-cwd");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "/work/dir");
}

#[test]
fn ambient_without_inheritable_runs() {
    let rt = Runtime::new();
    let mut bundle = Bundle::with_args(&rt, &["echo", "ran"]);
    // runc's default config lists ambient capabilities but no inheritable
    // set; they cannot be raised, and runc runs the container anyway.
    bundle.edit(|config| config["process"]["capabilities"]["ambient"] = serde_json::json!(["CAP_KILL"]));

    let out = run(&rt, &bundle, "ambient");

    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "ran");
}

/// A runtime started by systemd socket activation (LISTEN_FDS=1 and
/// LISTEN_PID set to its own pid, the socket at fd 3) passes the socket on,
/// and the container's program finds the variables set for itself.
#[test]
fn socket_activation_passes_listen_fds() {
    let rt = Runtime::new();
    let file = preserved_file(&rt);
    let bundle = Bundle::with_args(&rt, &["sh", "-c", "echo fds=$LISTEN_FDS pid=$LISTEN_PID; cat <&3"]);
    let id = rt.id("listen-fds");
    // The shell sets LISTEN_PID to its own pid, which exec hands on to the
    // runtime.
    let mut command = std::process::Command::new("/bin/sh");
    command.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\""]);
    command.arg(conman_integration::runtime_bin());
    command.args(["--root", rt.root().to_str().unwrap(), "run", "--bundle", bundle.path_str(), &id]);
    let fd = file.as_raw_fd();
    // SAFETY: the closure only calls async-signal-safe fcntl and dup2.
    unsafe {
        command.pre_exec(move || {
            // dup2 onto itself keeps FD_CLOEXEC, so clear it by hand then.
            let rc = if fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(fd, 3) };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }

    let out = rt.output_of(command);

    assert_eq!(out.code, 0, "{out}");
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("fds=1 pid=1"), "{out}");
    assert_eq!(lines.next(), Some("preserved content"), "{out}");
}
