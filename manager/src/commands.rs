//! The commands on existing containers: stop, kill, rm, wait, restart,
//! pause, unpause, logs, exec, inspect, stats and prune, and the relay of a
//! foreground `run`.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::log::{PrintOptions, Stream};
use crate::monitor::{take_frames, Frame};
use crate::status::{Info, Status};
use crate::store::{self, Entry};
use crate::Manager;

/// Stdin data that a foreground `run -i` queues for the monitor before it
/// stops reading its stdin.
const STDIN_BACKLOG_LIMIT: usize = 1 << 20;

/// Interval at which commands poll a container's status.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long `stop` and `rm -f` wait for the monitor to record the exit
/// after the container was killed.
const MONITOR_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Signals that a foreground `run` forwards to the container, as podman's
/// `--sig-proxy` does: the termination and user signals. Job control
/// signals act on conman itself.
const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGTERM,
];

/// Blocks the forwarded signals and SIGWINCH, so that they queue for the
/// signalfd of [`Manager::relay`]; returns the previous mask.
pub(crate) fn block_forwarded_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(*signal);
    }
    set.add(Signal::SIGWINCH);
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
        .map_err(|errno| Error::io("block signals", errno.into()))?;
    Ok(old)
}

pub(crate) fn restore_signals(old: &SigSet) {
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(old), None);
}

/// The process that `conman exec` runs, and how.
#[derive(Clone, Debug, Default)]
pub struct ExecRequest {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// Keep stdin open (`-i`); without it, stdin is /dev/null.
    pub interactive: bool,
    pub tty: bool,
    pub detach: bool,
}

/// Resource usage of a container, from its cgroup files.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub id: String,
    pub name: String,
    /// CPU time used, in nanoseconds.
    pub cpu_nanos: u64,
    /// CPU use over the sampling interval, in percent of one CPU.
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    /// Memory limit in bytes; `None` when unlimited.
    pub memory_limit: Option<u64>,
    pub pids: u64,
}

impl Manager {
    /// Relays the output frames of the monitor on `client` to stdout and
    /// stderr, forwarding signals to the container, until the exit frame.
    /// With `interactive`, also sends this process's stdin to the monitor.
    /// With `tty`, puts a terminal on stdin in raw mode for the duration,
    /// and sends its size at the start and on every SIGWINCH.
    pub(crate) fn relay(&self, entry: &Entry, client: OwnedFd, interactive: bool, tty: bool) -> Result<i32> {
        let mut set = SigSet::empty();
        for signal in FORWARDED {
            set.add(*signal);
        }
        if tty {
            set.add(Signal::SIGWINCH);
        }
        let signals = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|errno| Error::io("create a signalfd", errno.into()))?;
        set_nonblocking(client.as_raw_fd())?;

        let mut inbox = Vec::new();
        // Stdin frames not yet sent. Reading stdin pauses while this is
        // full, but output keeps flowing, so neither side can block the other.
        let mut outbox = Vec::new();
        let mut stdin_open = interactive;
        let _raw_mode = if tty && interactive { runtime::terminal::RawMode::enable(0) } else { None };
        if tty {
            push_window_size(&mut outbox);
        }
        let mut chunk = vec![0u8; 64 * 1024];
        let mut exit_code = None;
        let mut deadline = None;

        loop {
            // SAFETY: every borrowed descriptor outlives the poll.
            let borrow = |fd: i32| unsafe { BorrowedFd::borrow_raw(fd) };
            let mut client_flags = PollFlags::POLLIN;
            if !outbox.is_empty() {
                client_flags |= PollFlags::POLLOUT;
            }
            let mut fds = vec![
                PollFd::new(borrow(client.as_raw_fd()), client_flags),
                PollFd::new(borrow(signals.as_raw_fd()), PollFlags::POLLIN),
            ];
            let read_stdin = stdin_open && outbox.len() < STDIN_BACKLOG_LIMIT;
            if read_stdin {
                fds.push(PollFd::new(borrow(0), PollFlags::POLLIN));
            }
            let timeout = if deadline.is_some() { PollTimeout::from(100u16) } else { PollTimeout::NONE };
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(errno) => return Err(Error::io("poll", errno.into())),
            }
            let ready: Vec<PollFlags> = fds.iter().map(|fd| fd.revents().unwrap_or(PollFlags::empty())).collect();
            drop(fds);

            if !ready[1].is_empty() {
                self.forward_signals(entry, &signals, &mut outbox);
            }
            if read_stdin && !ready[2].is_empty() {
                match nix::unistd::read(0, &mut chunk) {
                    Ok(0) | Err(_) => {
                        crate::monitor::push_frame(&mut outbox, crate::monitor::FRAME_STDIN_CLOSE, &[]);
                        stdin_open = false;
                    }
                    Ok(n) => crate::monitor::push_frame(&mut outbox, crate::monitor::FRAME_STDIN, &chunk[..n]),
                }
            }
            if !outbox.is_empty() {
                match nix::sys::socket::send(client.as_raw_fd(), &outbox, nix::sys::socket::MsgFlags::MSG_NOSIGNAL) {
                    Ok(n) => {
                        outbox.drain(..n);
                    }
                    Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
                    // The monitor has gone; its end is reported below.
                    Err(_) => outbox.clear(),
                }
            }
            if ready[0].intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                match nix::unistd::read(client.as_raw_fd(), &mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        inbox.extend_from_slice(&chunk[..n]);
                        for frame in take_frames(&mut inbox) {
                            match frame {
                                Frame::Output(Stream::Stdout, data) => write_fd(1, &data),
                                Frame::Output(Stream::Stderr, data) => write_fd(2, &data),
                                Frame::Exit(code) => {
                                    exit_code.get_or_insert(code);
                                    // Wait for the monitor to close the
                                    // socket, but not for long.
                                    deadline = Some(Instant::now() + Duration::from_secs(5));
                                }
                                Frame::Error(message) => return Err(Error::InvalidArgument(message)),
                                Frame::Stdin(_) | Frame::StdinClose | Frame::Resize(..) => {}
                            }
                        }
                    }
                    Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                    Err(_) => break,
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        exit_code.ok_or_else(|| {
            Error::StartFailed(format!(
                "the monitor of container {} exited without reporting the container's exit; `conman ps -a` shows its status",
                entry.record.name
            ))
        })
    }

    /// Attaches to a running container's output (and stdin, when it was
    /// started with `-i` and `stdin` is set) until it exits; returns its
    /// exit code.
    pub fn attach(&self, query: &str, stdin: bool) -> Result<i32> {
        let entry = self.store.resolve(query)?;
        let info = self.info(entry.clone())?;
        if !matches!(info.status, Status::Running | Status::Paused) {
            return Err(self.not_running(&info));
        }
        let address = crate::monitor::attach_address(entry.id()).map_err(|err| Error::io("make the attach address", err))?;
        let stream = std::os::unix::net::UnixStream::connect_addr(&address)
            .map_err(|err| Error::io(format!("connect to the monitor of container {}", entry.record.name), err))?;
        let forwarded = block_forwarded_signals()?;
        let interactive = stdin && entry.record.interactive;
        let result = self.relay(&entry, OwnedFd::from(stream), interactive, entry.record.tty);
        restore_signals(&forwarded);
        result
    }

    /// Sends the signals queued on `signals` to the container's init, and
    /// turns SIGWINCH into a resize frame.
    fn forward_signals(&self, entry: &Entry, signals: &SignalFd, outbox: &mut Vec<u8>) {
        while let Ok(Some(info)) = signals.read_signal() {
            let signal = info.ssi_signo as i32;
            if signal == libc::SIGWINCH {
                push_window_size(outbox);
                continue;
            }
            match self.runtime.kill(entry.id(), signal, false) {
                Ok(()) => tracing::info!(id = entry.id(), signal, "forwarded signal"),
                Err(err) => tracing::info!(id = entry.id(), signal, error = %err, "signal not forwarded"),
            }
        }
    }

    /// Stops a container: SIGTERM, then SIGKILL to every process in it
    /// after `timeout`. Returns once the monitor has recorded the exit.
    pub fn stop(&self, query: &str, timeout: Duration) -> Result<Entry> {
        let entry = self.store.resolve(query)?;
        let _lock = entry.lock()?;
        let info = self.info(entry.clone())?;
        if !info.status.is_active() {
            return Ok(entry);
        }
        entry.set_stop_requested(true)?;
        if info.status != Status::Paused {
            let _ = self.runtime.kill(entry.id(), libc::SIGTERM, false);
        }
        let deadline = Instant::now() + timeout;
        while self.container_alive(entry.id()) && Instant::now() < deadline {
            std::thread::sleep(POLL_INTERVAL);
        }
        if self.container_alive(entry.id()) {
            tracing::info!(id = entry.id(), "the container did not stop within the grace period; sending SIGKILL");
            let _ = self.runtime.kill(entry.id(), libc::SIGKILL, true);
        }
        self.wait_for_monitor(&entry)?;
        tracing::info!(id = entry.id(), "container stopped");
        Ok(entry)
    }

    /// Reports whether the container's init runs.
    fn container_alive(&self, id: &str) -> bool {
        match self.runtime.store.peek(id) {
            Ok(record) => record.live_status() != runtime::state::Status::Stopped,
            Err(_) => false,
        }
    }

    /// Waits until the monitor of `entry` has exited or is about to
    /// restart the container. A monitor that does not finish within
    /// [`MONITOR_EXIT_TIMEOUT`] is an error.
    fn wait_for_monitor(&self, entry: &Entry) -> Result<()> {
        let deadline = Instant::now() + MONITOR_EXIT_TIMEOUT;
        loop {
            let monitor = entry.monitor()?;
            if !monitor.as_ref().is_some_and(store::MonitorRecord::alive) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::io(
                    format!("wait for the monitor of container {} (pid {}) to exit", entry.record.name, monitor.unwrap().pid),
                    io::Error::from_raw_os_error(libc::ETIMEDOUT),
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sends `signal` to the container's init.
    pub fn kill(&self, query: &str, signal: i32) -> Result<Entry> {
        let entry = self.store.resolve(query)?;
        let _lock = entry.lock()?;
        let info = self.info(entry.clone())?;
        if !matches!(info.status, Status::Running | Status::Paused | Status::Unmonitored) {
            return Err(self.not_running(&info));
        }
        // As podman: a container that the user signalled is not restarted.
        entry.set_stop_requested(true)?;
        self.runtime.kill(entry.id(), signal, false)?;
        Ok(entry)
    }

    fn not_running(&self, info: &Info) -> Error {
        Error::WrongState {
            name: info.entry.record.name.clone(),
            status: info.status.to_string(),
            message: match info.status {
                Status::Created => "the container is not running; start it with `conman start`".into(),
                _ => "the container is not running".into(),
            },
        }
    }

    /// Removes a container. A running one is refused unless `force`, which
    /// kills it first. A container whose record is damaged is removed too.
    pub fn remove(&self, query: &str, force: bool) -> Result<String> {
        let entry = match self.store.resolve(query) {
            Ok(entry) => entry,
            Err(Error::CorruptRecord { id, message }) => return self.remove_damaged(&id, &message, force),
            Err(err) => return Err(err),
        };
        let _lock = entry.lock()?;
        let info = self.info(entry.clone())?;
        if info.status.is_active() {
            if !force {
                return Err(Error::WrongState {
                    name: entry.record.name.clone(),
                    status: info.status.to_string(),
                    message: "stop it first, or use rm -f".into(),
                });
            }
            entry.set_stop_requested(true)?;
            let _ = self.runtime.kill(entry.id(), libc::SIGKILL, true);
            if let Err(err) = self.wait_for_monitor(&entry) {
                tracing::warn!(id = entry.id(), error = %err, "killing the monitor");
                if let Some(monitor) = entry.monitor()?.filter(store::MonitorRecord::alive) {
                    // SAFETY: kill has no memory effects; the start time
                    // check above makes sure the pid is the monitor.
                    unsafe { libc::kill(monitor.pid, libc::SIGKILL) };
                }
            }
        }
        // Whatever a dead monitor left: the init, its cgroups, the state,
        // the overlay mount.
        self.runtime.delete(entry.id(), true)?;
        crate::overlay::unmount(&entry.dir)?;
        self.store.remove(entry.id())?;
        tracing::info!(id = entry.id(), "container removed");
        Ok(entry.record.id)
    }

    /// Removes a container whose `container.json` cannot be read.
    fn remove_damaged(&self, id: &str, message: &str, force: bool) -> Result<String> {
        if !force {
            return Err(Error::CorruptRecord {
                id: id.to_owned(),
                message: format!("{message}; use rm -f to remove it"),
            });
        }
        self.runtime.delete(id, true)?;
        crate::overlay::unmount(&self.store.container_dir(id))?;
        self.store.remove(id)?;
        tracing::warn!(id, "removed a container with a damaged record");
        Ok(id.to_owned())
    }

    /// Waits for the container's next exit, or returns the recorded one if
    /// it is not running; returns the exit code.
    pub fn wait(&self, query: &str) -> Result<i32> {
        let entry = self.store.resolve(query)?;
        let first = self.info(entry.clone())?;
        let seen = first.exit.as_ref().map(|exit| exit.finished_at.clone());
        loop {
            let info = match self.info(entry.clone()) {
                Ok(info) => info,
                Err(Error::NotFound(_)) => return Err(removed_before_wait(&entry)),
                Err(err) => return Err(err),
            };
            if !entry.dir.join(store::RECORD_FILE).exists() {
                return Err(removed_before_wait(&entry));
            }
            match (&info.exit, info.status) {
                (_, Status::Lost) => {
                    return Err(Error::WrongState {
                        name: entry.record.name.clone(),
                        status: info.status.to_string(),
                        message: "its monitor was killed, so its exit code is unknown".into(),
                    })
                }
                (Some(exit), Status::Exited) => return Ok(exit.exit_code),
                (Some(exit), _) if Some(&exit.finished_at) != seen.as_ref() => return Ok(exit.exit_code),
                _ => {}
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Stops the container if it runs, then starts it again.
    pub fn restart(&self, query: &str, timeout: Duration) -> Result<Entry> {
        let entry = self.stop(query, timeout)?;
        self.start(entry.id())
    }

    /// Freezes every process of a running container.
    pub fn pause(&self, query: &str) -> Result<Entry> {
        let entry = self.store.resolve(query)?;
        let _lock = entry.lock()?;
        let info = self.info(entry.clone())?;
        if info.status != Status::Running {
            return Err(Error::WrongState {
                name: entry.record.name.clone(),
                status: info.status.to_string(),
                message: "only a running container can be paused".into(),
            });
        }
        self.runtime.pause(entry.id())?;
        Ok(entry)
    }

    /// Thaws a paused container.
    pub fn unpause(&self, query: &str) -> Result<Entry> {
        let entry = self.store.resolve(query)?;
        let _lock = entry.lock()?;
        let info = self.info(entry.clone())?;
        if info.status != Status::Paused {
            return Err(Error::WrongState {
                name: entry.record.name.clone(),
                status: info.status.to_string(),
                message: "only a paused container can be unpaused".into(),
            });
        }
        self.runtime.resume(entry.id())?;
        Ok(entry)
    }

    /// Prints the container's log; with `follow`, until the container has
    /// exited and its monitor is done.
    pub fn logs(&self, query: &str, options: PrintOptions, follow: bool) -> Result<()> {
        let entry = self.store.resolve(query)?;
        let path = entry.log_path();
        if !path.exists() {
            // A container that never started has no log yet.
            if !follow {
                return Ok(());
            }
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|err| Error::io(format!("create {}", path.display()), err))?;
        }
        let running = || {
            entry.dir.join(store::RECORD_FILE).exists()
                && entry.monitor().ok().flatten().is_some_and(|m| m.alive())
        };
        let stdout = io::BufWriter::with_capacity(256 * 1024, io::stdout().lock());
        let stderr = io::stderr().lock();
        let result = crate::log::print(&path, options, stdout, stderr, if follow { Some(&running) } else { None });
        match result {
            Ok(()) => Ok(()),
            // A closed pipe (`conman logs | head`) ends the output normally.
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Err(err) => Err(Error::io(format!("print {}", path.display()), err)),
        }
    }

    /// Runs a process in a running container through the runtime library;
    /// returns its exit code, or 0 once it runs with `detach`.
    pub fn exec(&self, query: &str, request: &ExecRequest) -> Result<i32> {
        let entry = self.store.resolve(query)?;
        let info = self.info(entry.clone())?;
        if !matches!(info.status, Status::Running | Status::Unmonitored) {
            return Err(self.not_running(&info));
        }
        if request.args.is_empty() {
            return Err(Error::InvalidArgument("exec needs a command: conman exec CONTAINER CMD [ARGS...]".into()));
        }
        let process = self.exec_process(&entry, request)?;

        redirect_exec_stdio(request)?;
        let options = runtime::exec::ExecOptions {
            detach: request.detach,
            ..Default::default()
        };
        Ok(self.runtime.exec(entry.id(), &process, &options)?)
    }

    /// Builds the exec'd process from the container's own process and the
    /// request's overrides.
    fn exec_process(&self, entry: &Entry, request: &ExecRequest) -> Result<runtime::oci_spec::runtime::Process> {
        let mut process = runtime::exec::default_process(&self.runtime, entry.id())?;
        process.set_args(Some(request.args.clone()));
        process.set_terminal(Some(request.tty));

        if !request.env.is_empty() {
            let mut env = process.env().clone().unwrap_or_default();
            for variable in &request.env {
                let Some((key, _)) = variable.split_once('=').filter(|(key, _)| !key.is_empty()) else {
                    return Err(Error::InvalidArgument(format!("invalid environment entry \"{variable}\": use KEY=VALUE")));
                };
                env.retain(|existing| existing.split('=').next() != Some(key));
                env.push(variable.clone());
            }
            process.set_env(Some(env));
        }

        if let Some(workdir) = &request.workdir {
            if !workdir.starts_with('/') {
                return Err(Error::InvalidArgument(format!("--workdir \"{workdir}\" must be an absolute path")));
            }
            process.set_cwd(PathBuf::from(workdir));
        }

        if let Some(user) = &request.user {
            let (uid, gid) = crate::spec::parse_user(user)?;
            let mut spec_user = process.user().clone();
            spec_user.set_uid(uid);
            spec_user.set_gid(gid);
            spec_user.set_additional_gids(None);
            process.set_user(spec_user);
        }
        Ok(process)
    }

    /// Returns the container's details as JSON.
    pub fn inspect(&self, query: &str) -> Result<Value> {
        let entry = self.store.resolve(query)?;
        let info = self.info(entry)?;
        let record = &info.entry.record;
        Ok(json!({
            "id": record.id,
            "name": record.name,
            "created": record.created,
            "command": record.command,
            "state": {
                "status": info.status,
                "running": info.status == Status::Running,
                "pid": info.pid,
                "startedAt": info.monitor.as_ref().and_then(|m| m.started_at.clone()),
                "exitCode": info.exit.as_ref().map(|e| e.exit_code),
                "finishedAt": info.exit.as_ref().map(|e| e.finished_at.clone()),
                "restartCount": info.monitor.as_ref().map_or(0, |m| m.restart_count),
            },
            "monitor": {
                "pid": info.monitor.as_ref().map_or(0, |m| m.pid),
                "alive": info.monitor_alive,
            },
            "hostConfig": {
                "autoRemove": record.auto_remove,
                "restartPolicy": record.restart.to_string(),
                "init": record.init,
            },
            "sourceBundle": record.source_bundle,
            "bundle": info.entry.dir,
            "logPath": info.entry.log_path(),
        }))
    }

    /// Removes every container that is not running; returns their ids.
    pub fn prune(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for listed in self.list()? {
            let Ok(info) = listed else {
                continue;
            };
            if matches!(info.status, Status::Created | Status::Exited | Status::Lost) {
                match self.remove(info.entry.id(), false) {
                    Ok(id) => removed.push(id),
                    // Started or removed by another command meanwhile.
                    Err(Error::WrongState { .. }) | Err(Error::NotFound(_)) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(removed)
    }

    /// Samples the container's cgroup counters twice, `interval` apart.
    pub fn stats(&self, query: &str, interval: Duration) -> Result<Stats> {
        let entry = self.store.resolve(query)?;
        let info = self.info(entry.clone())?;
        if !matches!(info.status, Status::Running | Status::Paused | Status::Unmonitored) {
            return Err(self.not_running(&info));
        }
        let record = self.runtime.store.peek(entry.id())?;
        let paths = &record.cgroup_paths;
        let first = cpu_nanos(paths);
        let started = Instant::now();
        std::thread::sleep(interval);
        let cpu = cpu_nanos(paths);
        let elapsed = started.elapsed().as_nanos() as f64;
        let memory_limit = read_counter(paths, &["memory.limit_in_bytes", "memory.max"])
            // cgroup v1 reports "no limit" as a huge page-aligned number.
            .filter(|&limit| limit < (1u64 << 62));
        Ok(Stats {
            id: entry.record.id.clone(),
            name: entry.record.name.clone(),
            cpu_nanos: cpu,
            cpu_percent: if elapsed > 0.0 { cpu.saturating_sub(first) as f64 * 100.0 / elapsed } else { 0.0 },
            memory_bytes: read_counter(paths, &["memory.usage_in_bytes", "memory.current"]).unwrap_or(0),
            memory_limit,
            pids: read_counter(paths, &["pids.current"]).unwrap_or(0),
        })
    }
}

/// Points this process's stdin at /dev/null without `-i`, and stdout and
/// stderr too with `-d`: the exec'd process inherits them.
fn redirect_exec_stdio(request: &ExecRequest) -> Result<()> {
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|err| Error::io("open /dev/null", err))?;
    let mut redirects = Vec::new();
    if !request.interactive {
        redirects.push(0);
    }
    if request.detach {
        redirects.extend([1, 2]);
    }
    for fd in redirects {
        // SAFETY: dup2 onto a standard descriptor of this process.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(Error::io(format!("redirect fd {fd} to /dev/null"), io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn removed_before_wait(entry: &Entry) -> Error {
    Error::StartFailed(format!(
        "container {} was removed before its exit code could be read",
        entry.record.name
    ))
}

/// Reads the first of `files` that exists in one of the cgroup
/// directories, as a number.
fn read_counter(paths: &[PathBuf], files: &[&str]) -> Option<u64> {
    for file in files {
        for dir in paths {
            if let Ok(text) = fs::read_to_string(dir.join(file)) {
                return text.trim().parse().ok();
            }
        }
    }
    None
}

/// CPU time of the cgroup in nanoseconds: `cpuacct.usage` on cgroup v1,
/// `usage_usec` of `cpu.stat` on v2.
fn cpu_nanos(paths: &[PathBuf]) -> u64 {
    if let Some(nanos) = read_counter(paths, &["cpuacct.usage"]) {
        return nanos;
    }
    for dir in paths {
        if let Ok(text) = fs::read_to_string(Path::new(dir).join("cpu.stat")) {
            if let Some(usec) = text.lines().find_map(|l| l.strip_prefix("usage_usec ")) {
                return usec.trim().parse::<u64>().unwrap_or(0) * 1000;
            }
        }
    }
    0
}

/// Returns the size (rows, columns) of the terminal on stdin, if stdin is
/// a terminal.
pub fn terminal_size() -> Option<(u16, u16)> {
    // SAFETY: winsize is plain data, valid when zeroed.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills a valid winsize.
    let ok = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_row > 0).then_some((size.ws_row, size.ws_col))
}

fn push_window_size(outbox: &mut Vec<u8>) {
    if let Some((rows, columns)) = terminal_size() {
        let mut payload = rows.to_be_bytes().to_vec();
        payload.extend_from_slice(&columns.to_be_bytes());
        crate::monitor::push_frame(outbox, crate::monitor::FRAME_RESIZE, &payload);
    }
}

fn set_nonblocking(fd: i32) -> Result<()> {
    // SAFETY: fcntl on a descriptor of this process.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(Error::io(format!("make fd {fd} non-blocking"), io::Error::last_os_error()));
    }
    Ok(())
}

/// Writes all of `data` to `fd`, giving up on error (a closed stdout).
fn write_fd(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writing from a valid buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            return;
        }
        data = &data[n as usize..];
    }
    let _ = io::stdout().flush();
}
