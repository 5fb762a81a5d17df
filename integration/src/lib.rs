//! Helpers for the end-to-end tests of `conman-runtime`.
//!
//! The tests run the release binary as a user would: each test gets a
//! [`Runtime`] with a fresh `--root` directory, builds one or more busybox
//! [`Bundle`]s, and checks what the containers print and what is left on the
//! host. The binary must be built first with `cargo build --release`, or its
//! directory given in `CONMAN_BIN_DIR`.
//!
//! Tests of the `conman` manager use [`Conman`], which gives each test a
//! fresh store directory.
//!
//! Everything a test creates (containers, host mounts, temporary directories)
//! is registered with its [`Runtime`], whose `Drop` removes it, so cleanup also
//! runs when an assertion panics.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// Host binary copied into every rootfs (Debian package busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";

/// Maximum time one `conman-runtime` command may take before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Maximum time to wait for a container to reach a status.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// Prefix of every temporary directory, so that a leaked host mount shows up
/// in `grep conman /proc/self/mountinfo`.
const TEMP_PREFIX: &str = "conman-it.";

/// Returns the directory that contains the release binaries: `CONMAN_BIN_DIR`,
/// or `release/` beside the profile directory of the running test
/// executable. Cargo puts that executable in `<profile>/deps/`, and with the
/// workspace's `.cargo/config.toml` the profiles are in `target/<host tuple>/`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONMAN_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let test_executable = std::env::current_exe().unwrap_or_else(|err| panic!("find the test executable: {err}"));
    match test_executable.ancestors().nth(3) {
        Some(dir) => dir.join("release"),
        None => panic!("{} is not in <profile>/deps/ below a target directory", test_executable.display()),
    }
}

/// Returns the path of the `conman-runtime` binary. Panics when it is
/// missing, because every test needs it.
pub fn runtime_bin() -> PathBuf {
    let path = bin_dir().join("conman-runtime");
    if !path.is_file() {
        panic!(
            "{} not found: run cargo build --release first, or set CONMAN_BIN_DIR to the directory that contains conman-runtime",
            path.display()
        );
    }
    path
}

/// Creates a temporary directory under /tmp with the suite's prefix.
fn new_tempdir(label: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{label}."))
        .tempdir_in("/tmp")
        .unwrap_or_else(|err| panic!("create a temporary directory in /tmp: {err}"))
}

/// Exit code of a finished process, with a death by signal N reported as
/// 128+N, as shells report it.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    }
}

/// Exit code and captured output of one command.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Returns stderr without its trailing newline, for one-line checks.
    pub fn stderr_line(&self) -> &str {
        self.stderr.trim_end()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

/// A spawned command whose stdout and stderr go to anonymous temporary files.
///
/// Files rather than pipes, because the init of a container made by `create`
/// inherits the command's stdio: a pipe would not reach EOF until the
/// container exits. Dropping a `Spawned` that is still running kills it.
pub struct Spawned {
    child: Option<Child>,
    stdout: File,
    stderr: File,
    description: String,
}

impl Spawned {
    /// Spawns `command` with stdin from /dev/null.
    pub fn new(mut command: Command) -> Spawned {
        let stdout = tempfile::tempfile().expect("create a temporary file for stdout");
        let stderr = tempfile::tempfile().expect("create a temporary file for stderr");
        command
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().expect("duplicate the stdout file"))
            .stderr(stderr.try_clone().expect("duplicate the stderr file"));
        let description = format!("{command:?}");
        let child = command.spawn().unwrap_or_else(|err| panic!("spawn {description}: {err}"));
        Spawned {
            child: Some(child),
            stdout,
            stderr,
            description,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("child still owned").id() as i32
    }

    /// Returns the exit code if the command has finished.
    pub fn try_wait(&mut self) -> Option<i32> {
        let child = self.child.as_mut().expect("child still owned");
        child
            .try_wait()
            .unwrap_or_else(|err| panic!("wait for {}: {err}", self.description))
            .map(exit_code)
    }

    /// Waits up to `timeout` for the command to exit and returns its output.
    /// Panics on timeout, after killing the command.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let code = loop {
            if let Some(code) = self.try_wait() {
                break code;
            }
            if Instant::now() >= deadline {
                let partial = self.read_output(-1);
                self.kill();
                panic!("{} did not exit within {timeout:?}; output so far:\n{partial}", self.description);
            }
            sleep(Duration::from_millis(5));
        };
        self.child = None;
        self.read_output(code)
    }

    /// Returns what the command has written so far.
    pub fn read_output(&mut self, code: i32) -> Output {
        Output {
            code,
            stdout: read_from_start(&mut self.stdout),
            stderr: read_from_start(&mut self.stderr),
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_from_start(file: &mut File) -> String {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).expect("rewind an output file");
    file.read_to_string(&mut text).expect("read an output file");
    text
}

/// A test's view of `conman-runtime`: a fresh state root, the ids of the
/// containers it created and the host resources to clean up.
///
/// `Drop` runs `delete --force` on every id from [`Runtime::id`], unmounts
/// the host mounts from [`Runtime::mount_tmpfs`], then removes every
/// temporary directory, the state root last.
pub struct Runtime {
    binary: PathBuf,
    ids: Mutex<Vec<String>>,
    host_mounts: Mutex<Vec<PathBuf>>,
    tempdirs: Mutex<Vec<TempDir>>,
    root: TempDir,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    pub fn new() -> Runtime {
        Self::with_binary(runtime_bin())
    }

    /// Returns a runtime that runs `binary` instead of the release build,
    /// for tests that check what a container can do to the runtime's own
    /// executable.
    pub fn with_binary(binary: PathBuf) -> Runtime {
        Runtime {
            binary,
            ids: Mutex::new(Vec::new()),
            host_mounts: Mutex::new(Vec::new()),
            tempdirs: Mutex::new(Vec::new()),
            root: new_tempdir("root"),
        }
    }

    /// Returns the `--root` directory of this test.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Returns the `conman-runtime` binary that this runtime runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Returns a container id unique on this host (`name`, the test
    /// process's pid and a counter) and registers it for cleanup.
    pub fn id(&self, name: &str) -> String {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{name}-{}-{n}", std::process::id());
        self.ids.lock().unwrap().push(id.clone());
        id
    }

    /// Creates a temporary directory under /tmp that lives as long as this
    /// runtime.
    pub fn tempdir(&self, label: &str) -> PathBuf {
        let dir = new_tempdir(label);
        let path = dir.path().to_owned();
        self.tempdirs.lock().unwrap().push(dir);
        path
    }

    /// Mounts a tmpfs on the host at `target` and registers it for unmount.
    pub fn mount_tmpfs(&self, target: &Path) {
        nix::mount::mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap_or_else(|err| panic!("mount tmpfs on {}: {err}", target.display()));
        self.host_mounts.lock().unwrap().push(target.to_owned());
    }

    /// Returns `conman-runtime --root <root> <args>`, ready to run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(self.root()).args(args);
        command
    }

    /// Runs `conman-runtime` with `args` and returns its output.
    pub fn output(&self, args: &[&str]) -> Output {
        self.output_of(self.command(args))
    }

    /// Runs a command made by [`Runtime::command`] and returns its output.
    pub fn output_of(&self, command: Command) -> Output {
        Spawned::new(command).wait(COMMAND_TIMEOUT)
    }

    /// Runs `args`, panicking with the output unless it exits 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.output(args);
        assert!(out.success(), "conman-runtime {} failed: {out}", args.join(" "));
        out
    }

    /// Creates container `id` from `bundle`, panicking on failure.
    pub fn create(&self, bundle: &Bundle, id: &str) -> Output {
        self.ok(&["create", "--bundle", bundle.path_str(), id])
    }

    /// Runs `state` and returns the parsed JSON.
    pub fn state(&self, id: &str) -> Value {
        let out = self.ok(&["state", id]);
        serde_json::from_str(&out.stdout).unwrap_or_else(|err| panic!("state of {id} is not JSON ({err}): {out}"))
    }

    /// Returns the status that `state` reports.
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap_or_default().to_owned()
    }

    /// Polls `state` until the container reaches `status` or
    /// [`STATUS_TIMEOUT`] passes, and returns the last status seen.
    pub fn wait_for_status(&self, id: &str, status: &str) -> String {
        let deadline = Instant::now() + STATUS_TIMEOUT;
        loop {
            let current = self.status(id);
            if current == status || Instant::now() >= deadline {
                return current;
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Returns the directory that contains the state of container `id`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root().join(id)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap_or_else(|e| e.into_inner()));
        for id in &ids {
            let mut command = Command::new(&self.binary);
            command.arg("--root").arg(self.root.path()).args(["delete", "--force", id]);
            let _ = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        let mounts = std::mem::take(&mut *self.host_mounts.lock().unwrap_or_else(|e| e.into_inner()));
        for target in mounts.iter().rev() {
            let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
        }
        // TempDir's own Drop removes each directory.
        self.tempdirs.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Returns the applets of the host's busybox, without `busybox` itself (a
/// symlink of that name would replace the binary).
pub fn busybox_applets() -> &'static [String] {
    static APPLETS: OnceLock<Vec<String>> = OnceLock::new();
    APPLETS.get_or_init(|| {
        let out = Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .unwrap_or_else(|err| panic!("run {BUSYBOX} --list (install busybox-static): {err}"));
        assert!(out.status.success(), "{BUSYBOX} --list failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|name| !name.is_empty() && *name != "busybox")
            .map(str::to_owned)
            .collect()
    })
}

/// An OCI bundle in a temporary directory: a busybox rootfs and the
/// config.json that `conman-runtime spec` writes, with `process.terminal`
/// set to false.
pub struct Bundle {
    dir: PathBuf,
    config: Value,
}

impl Bundle {
    /// Builds a bundle whose directory lives as long as `rt`.
    pub fn new(rt: &Runtime) -> Bundle {
        let dir = rt.tempdir("bundle");
        let bin = dir.join("rootfs").join("bin");
        fs::create_dir_all(&bin).expect("create rootfs/bin");
        fs::copy(BUSYBOX, bin.join("busybox")).unwrap_or_else(|err| panic!("copy {BUSYBOX}: {err}"));
        for applet in busybox_applets() {
            symlink("busybox", bin.join(applet)).unwrap_or_else(|err| panic!("symlink applet {applet}: {err}"));
        }

        let out = rt.output(&["spec", "--bundle", dir.to_str().expect("UTF-8 path")]);
        assert!(out.success(), "conman-runtime spec failed: {out}");
        let text = fs::read_to_string(dir.join("config.json")).expect("read config.json written by spec");
        let config: Value = serde_json::from_str(&text).expect("config.json from spec is JSON");

        let mut bundle = Bundle { dir, config };
        bundle.edit(|config| config["process"]["terminal"] = Value::Bool(false));
        bundle
    }

    /// Builds a bundle that runs `args`.
    pub fn with_args(rt: &Runtime, args: &[&str]) -> Bundle {
        let mut bundle = Bundle::new(rt);
        bundle.set_args(args);
        bundle
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn path_str(&self) -> &str {
        self.dir.to_str().expect("bundle path is UTF-8")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn config(&self) -> &Value {
        &self.config
    }

    /// Applies `change` to the configuration and writes config.json.
    pub fn edit(&mut self, change: impl FnOnce(&mut Value)) {
        change(&mut self.config);
        let text = serde_json::to_string_pretty(&self.config).expect("config serialises");
        fs::write(self.dir.join("config.json"), text).expect("write config.json");
    }

    /// Sets `process.args` and writes config.json.
    pub fn set_args(&mut self, args: &[&str]) {
        self.edit(|config| config["process"]["args"] = serde_json::json!(args));
    }

    /// Appends an entry to `mounts` and writes config.json.
    pub fn add_mount(&mut self, mount: Value) {
        self.edit(|config| config["mounts"].as_array_mut().expect("mounts is an array").push(mount));
    }
}

/// Reports whether this host has cgroup v2 alone, mounted at
/// /sys/fs/cgroup.
pub fn cgroup_v2_only() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The directory of a controller on this host, as the runtime picks it: a v1
/// hierarchy of its own, else the v2 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControllerSite {
    V1(PathBuf),
    V2(PathBuf),
}

impl ControllerSite {
    pub fn dir(&self) -> &Path {
        match self {
            ControllerSite::V1(dir) | ControllerSite::V2(dir) => dir,
        }
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, ControllerSite::V2(_))
    }

    /// Reads `v1_file` or `v2_file` in this directory, whichever applies,
    /// without the trailing newline.
    pub fn read(&self, v1_file: &str, v2_file: &str) -> String {
        let path = self.dir().join(if self.is_v2() { v2_file } else { v1_file });
        fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
            .trim_end()
            .to_owned()
    }
}

/// Returns the directory of `controller` for the cgroup at `relative`
/// (`conman/ID` by default).
pub fn controller_site_at(controller: &str, relative: &Path) -> ControllerSite {
    if cgroup_v2_only() {
        return ControllerSite::V2(Path::new("/sys/fs/cgroup").join(relative));
    }
    // A v1 hierarchy of its own, not just a directory of that name: tools
    // that find no such hierarchy sometimes make one on the tmpfs.
    let own = Path::new("/sys/fs/cgroup").join(controller);
    let v1_mount = nix::sys::statfs::statfs(&own).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP_SUPER_MAGIC);
    if v1_mount {
        ControllerSite::V1(own.join(relative))
    } else {
        ControllerSite::V2(Path::new("/sys/fs/cgroup/unified").join(relative))
    }
}

/// Returns the directory of `controller` that the runtime makes for
/// container `id` when config.json has no `linux.cgroupsPath`.
pub fn controller_site(controller: &str, id: &str) -> ControllerSite {
    controller_site_at(controller, &Path::new("conman").join(id))
}

/// Returns the cgroup directory that the runtime makes for container `id`
/// when config.json has no `linux.cgroupsPath`: the controller's v1
/// hierarchy, or the v2 one.
pub fn cgroup_dir(controller: &str, id: &str) -> PathBuf {
    controller_site(controller, id).dir().to_owned()
}

/// Lists the host's v2 controllers that a container's cgroup can use:
/// the unified root's `cgroup.controllers`.
pub fn v2_controllers() -> Vec<String> {
    let root = if cgroup_v2_only() { "/sys/fs/cgroup" } else { "/sys/fs/cgroup/unified" };
    fs::read_to_string(Path::new(root).join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Reports whether `pid` is a live process. A zombie counts as gone: it runs
/// nothing, and an exited container init is an orphan that stays a zombie
/// until the host's pid 1 reaps it, which can be after the test checks.
pub fn process_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rfind(')').and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// Lists the live processes of container `id`: those in one of its cgroups,
/// and those whose command line has `id` as an argument (a runtime command
/// or an init that has not reached execve yet).
pub fn processes_of(id: &str) -> Vec<i32> {
    let own = std::process::id() as i32;
    let cgroup_suffix = format!("/conman/{id}");
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == own || !process_alive(pid) {
            continue;
        }
        let cgroups = fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        let in_cgroup = cgroups.lines().any(|line| line.ends_with(&cgroup_suffix));
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let names_id = cmdline.split(|&b| b == 0).any(|arg| arg == id.as_bytes());
        if in_cgroup || names_id {
            found.push(pid);
        }
    }
    found
}

/// Returns the lines of the host's /proc/self/mountinfo that contain
/// `needle`.
pub fn host_mounts_mentioning(needle: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("read /proc/self/mountinfo")
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Asserts that nothing of container `id` is left: no state directory, no
/// pids or memory cgroup, no live process.
pub fn assert_no_leftovers(rt: &Runtime, id: &str) {
    let dir = rt.container_dir(id);
    assert!(!dir.exists(), "state directory {} is left behind", dir.display());
    for controller in ["pids", "memory"] {
        let cgroup = cgroup_dir(controller, id);
        assert!(!cgroup.exists(), "cgroup {} is left behind", cgroup.display());
    }
    let pids = processes_of(id);
    assert!(pids.is_empty(), "processes of container {id} are left behind: {pids:?}");
}

/// Reads a pid file that the runtime wrote (`--pid-file`).
pub fn read_pid_file(path: &Path) -> i32 {
    let text = fs::read_to_string(path).unwrap_or_else(|err| panic!("read pid file {}: {err}", path.display()));
    text.trim().parse().unwrap_or_else(|err| panic!("pid file {} contains {text:?}, not a pid: {err}", path.display()))
}

impl Spawned {
    /// Spawns `command` with `input` on its stdin, through a pipe that is
    /// closed once `input` is written.
    pub fn with_stdin(mut command: Command, input: &[u8]) -> Spawned {
        use std::io::Write;
        let stdout = tempfile::tempfile().expect("create a temporary file for stdout");
        let stderr = tempfile::tempfile().expect("create a temporary file for stderr");
        command
            .stdin(Stdio::piped())
            .stdout(stdout.try_clone().expect("duplicate the stdout file"))
            .stderr(stderr.try_clone().expect("duplicate the stderr file"));
        let description = format!("{command:?}");
        let mut child = command.spawn().unwrap_or_else(|err| panic!("spawn {description}: {err}"));
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input).unwrap_or_else(|err| panic!("write stdin of {description}: {err}"));
        drop(pipe);
        Spawned {
            child: Some(child),
            stdout,
            stderr,
            description,
        }
    }
}

impl Spawned {
    /// Waits up to `timeout` for the command to exit and returns its output,
    /// or `None` after killing the command when it is still running.
    pub fn wait_within(mut self, timeout: Duration) -> Option<Output> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.try_wait() {
                self.child = None;
                return Some(self.read_output(code));
            }
            if Instant::now() >= deadline {
                self.kill();
                return None;
            }
            sleep(Duration::from_millis(5));
        }
    }
}

/// Accepts one connection on a console socket, failing early if `command`
/// (the `create` or `exec` that should connect) exits without connecting.
pub fn accept_console(
    listener: &std::os::unix::net::UnixListener,
    command: &mut Spawned,
) -> std::os::unix::net::UnixStream {
    listener.set_nonblocking(true).expect("make the console socket non-blocking");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("make the console connection blocking");
                return stream;
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("accept on the console socket: {err}"),
        }
        if let Some(code) = command.try_wait() {
            panic!("the command exited without connecting to the console socket: {}", command.read_output(code));
        }
        assert!(Instant::now() < deadline, "the command never connected to the console socket");
        sleep(Duration::from_millis(10));
    }
}

/// Receives the pty master that the runtime sends with SCM_RIGHTS.
pub fn receive_pty_master(stream: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

    stream.set_read_timeout(Some(COMMAND_TIMEOUT)).expect("set a read timeout on the console connection");
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .expect("recvmsg on the console socket");
    for cmsg in msg.cmsgs().expect("read control messages") {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel installed this descriptor for us.
                return unsafe { OwnedFd::from_raw_fd(fd) };
            }
        }
    }
    panic!("no descriptor arrived on the console socket");
}

/// Reads a pty master until the container closes its side (EIO) or
/// `timeout` passes.
pub fn read_pty_until_closed(master: &std::os::fd::OwnedFd, timeout: Duration) -> String {
    use std::os::fd::AsRawFd;

    let deadline = Instant::now() + timeout;
    let mut output = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let mut fds = [libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, 100) };
        if ready <= 0 {
            continue;
        }
        match nix::unistd::read(master.as_raw_fd(), &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => output.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&output).into_owned()
}

/// Lists the cgroup v1 and v2 directories that exist for container `id`,
/// one per mounted hierarchy under /sys/fs/cgroup (`memory`, `pids`,
/// `unified`…).
pub fn existing_cgroup_dirs(id: &str) -> Vec<PathBuf> {
    if cgroup_v2_only() {
        let dir = Path::new("/sys/fs/cgroup/conman").join(id);
        return if dir.is_dir() { vec![dir] } else { Vec::new() };
    }
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.path().join("conman").join(id))
        .filter(|dir| dir.is_dir())
        .collect()
}

/// Returns the path of the `conman` binary. Panics when it is missing.
pub fn manager_bin() -> PathBuf {
    let path = bin_dir().join("conman");
    if !path.is_file() {
        panic!(
            "{} not found: run cargo build --release first, or set CONMAN_BIN_DIR to the directory that contains conman",
            path.display()
        );
    }
    path
}

/// A test's view of the `conman` manager: a fresh `--root` store.
///
/// `Drop` runs `conman-runtime --root <store>/runtime delete --force` on
/// every container still in the manager's runtime state (left by a `conman
/// run` that a failed test killed), then removes the store.
pub struct Conman {
    binary: PathBuf,
    runtime_binary: PathBuf,
    root: TempDir,
}

impl Default for Conman {
    fn default() -> Self {
        Self::new()
    }
}

impl Conman {
    pub fn new() -> Conman {
        Conman {
            binary: manager_bin(),
            runtime_binary: runtime_bin(),
            root: new_tempdir("store"),
        }
    }

    /// Returns the `--root` store directory of this test.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Returns the directory of container records (`<store>/containers`).
    pub fn containers_dir(&self) -> PathBuf {
        self.root().join("containers")
    }

    /// Returns the runtime state root that the manager uses
    /// (`<store>/runtime`).
    pub fn runtime_dir(&self) -> PathBuf {
        self.root().join("runtime")
    }

    /// Returns `conman --root <store> <args>`, ready to run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(self.root()).args(args);
        command
    }

    /// Runs `conman` with `args` and returns its output.
    pub fn output(&self, args: &[&str]) -> Output {
        Spawned::new(self.command(args)).wait(COMMAND_TIMEOUT)
    }

    /// Runs `args`, panicking with the output unless it exits 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.output(args);
        assert!(out.success(), "conman {} failed: {out}", args.join(" "));
        out
    }

    /// Starts `conman` with `args` without waiting for it.
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        Spawned::new(self.command(args))
    }

    /// Runs `inspect` on one container and returns its JSON object.
    pub fn inspect(&self, container: &str) -> Value {
        let out = self.ok(&["inspect", container]);
        let list: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|err| panic!("inspect output is not JSON ({err}): {out}"));
        list[0].clone()
    }

    /// Returns the status that `inspect` reports.
    pub fn status(&self, container: &str) -> String {
        self.inspect(container)["state"]["status"].as_str().unwrap_or_default().to_owned()
    }

    /// Polls `inspect` until the container reaches `status` or
    /// [`STATUS_TIMEOUT`] passes, and returns the last status seen.
    pub fn wait_for_status(&self, container: &str, status: &str) -> String {
        let deadline = Instant::now() + STATUS_TIMEOUT;
        loop {
            let current = self.status(container);
            if current == status || Instant::now() >= deadline {
                return current;
            }
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Conman {
    /// Removes every container with `conman rm -f`, which also stops its
    /// monitor, then deletes what is left in the runtime state (a container
    /// whose record was damaged on purpose).
    fn drop(&mut self) {
        let quiet = |mut command: Command| {
            let _ = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        if let Ok(entries) = fs::read_dir(self.containers_dir()) {
            for entry in entries.flatten() {
                let mut command = Command::new(&self.binary);
                command.arg("--root").arg(self.root()).args(["rm", "-f"]).arg(entry.file_name());
                quiet(command);
            }
        }
        let runtime_dir = self.runtime_dir();
        let Ok(entries) = fs::read_dir(&runtime_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let mut command = Command::new(&self.runtime_binary);
            command.arg("--root").arg(&runtime_dir).arg("delete").arg("--force").arg(entry.file_name());
            quiet(command);
        }
    }
}

/// Builds `tests/fixtures/NAME.c` with `gcc -static` into `dir` and returns
/// the binary: a helper program that runs in a busybox root filesystem.
pub fn build_static_fixture(name: &str, dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("{name}.c"));
    let binary = dir.join(name);
    let status = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .unwrap_or_else(|err| panic!("run gcc (install gcc and libc6-dev): {err}"));
    assert!(status.success(), "gcc -static {} failed", source.display());
    binary
}
