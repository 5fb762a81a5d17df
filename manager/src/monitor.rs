//! The monitor: one process per running container, forked from the
//! `conman` command that starts it.
//!
//! The command forks twice. The middle process calls `setsid` and exits, so
//! the monitor is in a session of its own and has no terminal. The host's
//! init (or the nearest subreaper) adopts it. The monitor makes itself a
//! child subreaper, creates and starts the container through the runtime
//! library (so the container's init is its child), and reports "started" or
//! the runtime's error on a pipe to the command. It then:
//!
//! - reads the container's stdout and stderr from pipes, writes them to
//!   `ctr.log` in the CRI format and sends them, framed, to the attached
//!   client (the `conman run` in the foreground) if there is one;
//! - reaps the init and every orphan of the container;
//! - deletes the runtime's state, writes `exit.json`, and applies the
//!   restart policy, or removes an `--rm` container.
//!
//! The command that started it may exit or be killed: the monitor only
//! drops the attached client. Because it never execs, the monitor runs the
//! code of the `conman` binary that forked it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::error::{Error, Result};
use crate::log::{LogWriter, Stream};
use crate::store::{Entry, ExitRecord, MonitorRecord, MONITOR_FILE, MONITOR_LOG_FILE};
use crate::Manager;

/// Frame kinds on the attach socket, monitor to client. A frame is the
/// kind byte, the payload length as a big-endian u32, and the payload.
pub const FRAME_STDOUT: u8 = 1;
pub const FRAME_STDERR: u8 = 2;
/// Payload: the exit code as a big-endian i32.
pub const FRAME_EXIT: u8 = 3;
/// Client to monitor: data for the container's stdin (`run -i`).
pub const FRAME_STDIN: u8 = 4;
/// Client to monitor: the client's stdin reached end-of-file.
pub const FRAME_STDIN_CLOSE: u8 = 5;
/// Client to monitor: the client's terminal size, rows and columns as
/// big-endian u16s (`run -t`).
pub const FRAME_RESIZE: u8 = 6;
/// Monitor to client: the attach was refused; the payload is the reason.
pub const FRAME_ERROR: u8 = 7;

/// Returns the abstract socket address on which the monitor of container
/// `id` accepts `conman attach`. Abstract sockets leave no file behind and
/// vanish with the monitor.
pub fn attach_address(id: &str) -> io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(format!("conman-attach-{id}"))
}

/// Output queued for a slow client beyond which the monitor stops reading
/// the container's pipes, so the container waits instead of output being
/// dropped.
const CLIENT_BACKLOG_LIMIT: usize = 8 << 20;

/// How long the monitor keeps reading the pipes after the init exited,
/// for processes that still hold them (an exec'd process in the host's
/// pid namespace cannot exist, but a hung writer must not hang the
/// monitor).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Forks the monitor of `entry` and waits until it has started the
/// container or failed to. With `attach`, returns the client end of the
/// attach socket, on which the container's output and exit code arrive.
pub fn spawn(manager: &Manager, entry: &Entry, attach: bool) -> Result<Option<OwnedFd>> {
    let (status_read, status_write) = pipe()?;
    let (client, monitor_end) = if attach {
        let (client, monitor_end) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
            .map_err(|errno| Error::io("create the attach socket pair", errno.into()))?;
        (Some(client), Some(monitor_end))
    } else {
        (None, None)
    };

    // SAFETY: conman is single-threaded, so the child can run any code.
    let middle = unsafe { libc::fork() };
    if middle < 0 {
        return Err(Error::io("fork the monitor", io::Error::last_os_error()));
    }
    if middle == 0 {
        drop(status_read);
        drop(client);
        // SAFETY: setsid, signal and fork in the single-threaded child.
        unsafe {
            // A write to a client or command that has gone must fail with
            // EPIPE, not kill the monitor.
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            libc::setsid();
            let monitor = libc::fork();
            if monitor != 0 {
                libc::_exit(if monitor < 0 { 1 } else { 0 });
            }
        }
        let code = run(manager, entry, status_write, monitor_end);
        // SAFETY: _exit skips the destructors and stdio buffers of the
        // command this process was forked from.
        unsafe { libc::_exit(code) }
    }
    drop(status_write);
    drop(monitor_end);
    // SAFETY: reap the middle process, our own child.
    unsafe { libc::waitpid(middle, std::ptr::null_mut(), 0) };

    let mut report = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(status_read.as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => report.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(Error::io("read the monitor's report", errno.into())),
        }
    }
    let report = String::from_utf8_lossy(&report);
    match report.split_once('\n') {
        Some(("started", _)) => Ok(client),
        Some(("error", message)) => Err(Error::StartFailed(message.to_owned())),
        _ => Err(Error::StartFailed(format!(
            "the monitor of container {} exited before it started the container; see {}",
            entry.id(),
            entry.dir.join(MONITOR_LOG_FILE).display()
        ))),
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| Error::io("create a pipe", errno.into()))
}

/// The monitor's main function; returns its exit status.
fn run(manager: &Manager, entry: &Entry, status: OwnedFd, client: Option<OwnedFd>) -> i32 {
    if let Err(err) = detach_stdio(entry) {
        report(&status, &format!("error\n{err}"));
        return 1;
    }
    let mut monitor = match Monitor::new(manager, entry, client) {
        Ok(monitor) => monitor,
        Err(err) => {
            report(&status, &format!("error\n{err}"));
            return 1;
        }
    };
    monitor.main(status)
}

/// Writes the report to the starting command; it may have gone, which
/// the ignored SIGPIPE turns into an error that is of no use here.
fn report(status: &OwnedFd, message: &str) {
    let _ = nix::unistd::write(status, message.as_bytes());
}

/// Points stdin at /dev/null and stdout and stderr at `monitor.log`, and
/// moves the monitor out of any directory it could keep busy.
fn detach_stdio(entry: &Entry) -> Result<()> {
    let null = std::fs::File::open("/dev/null").map_err(|err| Error::io("open /dev/null", err))?;
    let log_path = entry.dir.join(MONITOR_LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|err| Error::io(format!("open {}", log_path.display()), err))?;
    for (fd, target) in [(null.as_raw_fd(), 0), (log.as_raw_fd(), 1), (log.as_raw_fd(), 2)] {
        // SAFETY: dup2 onto the standard descriptors.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(Error::io(format!("redirect fd {target}"), io::Error::last_os_error()));
        }
    }
    std::env::set_current_dir("/").map_err(|err| Error::io("change directory to /", err))?;
    Ok(())
}

/// A client attached to the monitor, the frames not yet sent to it, and
/// the start of a frame not yet received from it.
struct Client {
    socket: OwnedFd,
    backlog: Vec<u8>,
    inbox: Vec<u8>,
    /// The client has sent input, so its leaving ends the container's input.
    sent_input: bool,
}

/// The write end of an interactive container's stdin, and the data not
/// yet written to it.
struct StdinPipe {
    fd: OwnedFd,
    backlog: Vec<u8>,
    /// The client's stdin ended: close the pipe once the backlog is written.
    close_pending: bool,
    /// The pipe is the pty master, which stays open for the container's
    /// terminal when the client's input ends.
    is_pty: bool,
}

/// One run of the container: its init and the read ends of its stdio.
struct Run {
    pid: i32,
    pipes: [Option<OwnedFd>; 2],
    started_at: String,
}

struct Monitor<'a> {
    manager: &'a Manager,
    entry: &'a Entry,
    signals: SignalFd,
    log: LogWriter,
    client: Option<Client>,
    stdin: Option<StdinPipe>,
    /// The pty master of the current run, with `-t`.
    pty: Option<OwnedFd>,
    /// The socket on which `conman attach` connects.
    attach: Option<std::os::unix::net::UnixListener>,
    record: MonitorRecord,
}

impl<'a> Monitor<'a> {
    fn new(manager: &'a Manager, entry: &'a Entry, client: Option<OwnedFd>) -> Result<Self> {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
            return Err(Error::io("become a child subreaper", io::Error::last_os_error()));
        }
        // The command may have blocked signals to forward them: start from a
        // clean mask, with only SIGCHLD blocked, for the signalfd.
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        chld.thread_set_mask().map_err(|errno| Error::io("set the signal mask", errno.into()))?;
        let signals =
            SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(|errno| Error::io("create a signalfd", errno.into()))?;

        let log_path = entry.log_path();
        let log = LogWriter::open(&log_path, entry.record.log_max_size)
            .map_err(|err| Error::io(format!("open {}", log_path.display()), err))?;
        let client = match client {
            Some(socket) => {
                set_nonblocking(socket.as_raw_fd())?;
                Some(Client { socket, backlog: Vec::new(), inbox: Vec::new(), sent_input: false })
            }
            None => None,
        };
        let pid = std::process::id() as i32;
        let (_, pid_start_time) = runtime::state::process_stat(pid)
            .ok_or_else(|| Error::io("read the monitor's /proc/self/stat", io::Error::last_os_error()))?;
        let record = MonitorRecord {
            pid,
            pid_start_time,
            container_pid: 0,
            started_at: None,
            restart_count: 0,
        };
        entry.save_monitor(&record)?;
        Ok(Monitor {
            manager,
            entry,
            signals,
            log,
            client,
            stdin: None,
            pty: None,
            attach: listen_for_attach(entry.id()),
            record,
        })
    }

    fn id(&self) -> &str {
        self.entry.id()
    }

    fn main(&mut self, status: OwnedFd) -> i32 {
        let mut status = Some(status);
        loop {
            let run = match self.start_run() {
                Ok(run) => run,
                Err(err) => {
                    tracing::error!(id = self.id(), error = %err, "start the container");
                    if let Some(status) = status.take() {
                        // The container never ran: it stays "created".
                        let _ = std::fs::remove_file(self.entry.dir.join(MONITOR_FILE));
                        report(&status, &format!("error\n{err}"));
                        return 1;
                    }
                    // A restart failed: record it as exit 125, conman's own
                    // failure code, and stop restarting.
                    self.record_exit(125, None);
                    self.finish(125);
                    return 1;
                }
            };
            self.record.container_pid = run.pid;
            self.record.started_at = Some(run.started_at.clone());
            if let Err(err) = self.entry.save_monitor(&self.record) {
                tracing::error!(id = self.id(), error = %err, "write the monitor record");
            }
            if let Some(status) = status.take() {
                report(&status, "started\n");
            }
            tracing::info!(id = self.id(), pid = run.pid, restarts = self.record.restart_count, "container started");

            let code = self.pump(run);
            tracing::info!(id = self.id(), exit_code = code, "container exited");
            if let Err(err) = self.manager.runtime.delete(self.id(), true) {
                tracing::error!(id = self.id(), error = %err, "delete the container's runtime state");
            }
            if let Err(err) = crate::overlay::unmount(&self.entry.dir) {
                tracing::error!(id = self.id(), error = %err, "unmount the root filesystem overlay");
            }
            let started_at = self.record.started_at.clone();
            self.record_exit(code, started_at);

            let policy = self.entry.record.restart;
            if !self.entry.stop_requested() && policy.should_restart(code, self.record.restart_count) {
                self.send_exit(code);
                std::thread::sleep(restart_delay(self.record.restart_count));
                if self.entry.stop_requested() {
                    self.finish(code);
                    return 0;
                }
                self.record.restart_count += 1;
                continue;
            }
            self.finish(code);
            return 0;
        }
    }

    fn record_exit(&mut self, exit_code: i32, started_at: Option<String>) {
        let exit = ExitRecord {
            exit_code,
            started_at,
            finished_at: runtime::state::now_rfc3339(),
            restart_count: self.record.restart_count,
        };
        if let Err(err) = self.entry.save_exit(&exit) {
            tracing::error!(id = self.id(), error = %err, "write the exit record");
        }
    }

    /// Removes an `--rm` container, then sends the exit code to the client,
    /// so that nothing of the container is left when the foreground `run`
    /// returns.
    fn finish(&mut self, code: i32) {
        if self.entry.record.auto_remove {
            match self.entry.lock() {
                Ok(_lock) => {
                    if let Err(err) = self.manager.store.remove(self.id()) {
                        tracing::error!(id = self.id(), error = %err, "remove the container");
                    }
                }
                // `rm` removed it while the monitor finished.
                Err(Error::NotFound(_)) => {}
                Err(err) => tracing::error!(id = self.id(), error = %err, "lock the container to remove it"),
            }
        }
        self.send_exit(code);
    }

    /// Creates and starts the container with stdout and stderr on pipes to
    /// the monitor, and stdin on /dev/null (a pipe from the monitor with
    /// `-i`). The init inherits descriptors 0 to 2 from the process that
    /// clones it, so they point at the pipes while the runtime creates the
    /// container.
    fn start_run(&mut self) -> Result<Run> {
        let (stdout_read, stdout_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        let stdin_pipe = if self.entry.record.interactive { Some(pipe()?) } else { None };
        let saved = [dup_cloexec(0)?, dup_cloexec(1)?, dup_cloexec(2)?];
        let null = std::fs::File::open("/dev/null").map_err(|err| Error::io("open /dev/null", err))?;
        let stdin_source = stdin_pipe.as_ref().map_or(null.as_raw_fd(), |(read, _)| read.as_raw_fd());
        redirect(&[(stdin_source, 0), (stdout_write.as_raw_fd(), 1), (stderr_write.as_raw_fd(), 2)])?;

        let console = if self.entry.record.tty { Some(ConsoleSocket::bind(self.record.restart_count)?) } else { None };
        let options = runtime::CreateOptions {
            bundle: self.entry.dir.clone(),
            console_socket: console.as_ref().map(|c| c.path.clone()),
            reaper_init: self.entry.record.init,
            // conman's main re-executed from the protected view when the
            // container needs it.
            no_reexec: true,
            ..runtime::CreateOptions::default()
        };
        let overlay = self.entry.record.rootfs_overlay.as_deref();
        let mounted = match overlay {
            Some(lower) => crate::overlay::mount(&self.entry.dir, lower),
            None => Ok(()),
        };
        let result = mounted.and_then(|()| Ok(self.manager.runtime.create(self.id(), &options)?)).and_then(|created| {
            if let Err(err) = self.manager.runtime.start(self.id()) {
                let _ = self.manager.runtime.delete(self.id(), true);
                return Err(err.into());
            }
            Ok(created)
        });
        redirect(&[(saved[0].as_raw_fd(), 0), (saved[1].as_raw_fd(), 1), (saved[2].as_raw_fd(), 2)])?;
        if result.is_err() && overlay.is_some() {
            let _ = crate::overlay::unmount(&self.entry.dir);
        }
        let created = result?;
        let pty = match console.map(|console| console.receive()).transpose() {
            Ok(pty) => pty,
            Err(err) => {
                let _ = self.manager.runtime.delete(self.id(), true);
                let _ = crate::overlay::unmount(&self.entry.dir);
                return Err(err);
            }
        };

        set_nonblocking(stdout_read.as_raw_fd())?;
        set_nonblocking(stderr_read.as_raw_fd())?;
        let mut output = Some(stdout_read);
        self.stdin = None;
        self.pty = None;
        if let Some(master) = pty {
            set_nonblocking(master.as_raw_fd())?;
            // The init's stdio is the pty's slave: its output arrives on
            // the master, as stdout, and the stdio pipes close at once.
            output = Some(dup_cloexec(master.as_raw_fd())?);
            if self.entry.record.interactive {
                let fd = dup_cloexec(master.as_raw_fd())?;
                self.stdin = Some(StdinPipe { fd, backlog: Vec::new(), close_pending: false, is_pty: true });
            }
            self.pty = Some(master);
        } else if let Some((_, write)) = stdin_pipe {
            set_nonblocking(write.as_raw_fd())?;
            // Without a client (`run -d -i`, or a restart after the
            // client left) nothing feeds the pipe, but it stays open,
            // as podman keeps stdin open.
            self.stdin = Some(StdinPipe { fd: write, backlog: Vec::new(), close_pending: false, is_pty: false });
        }
        Ok(Run {
            pid: created.pid,
            pipes: [output, Some(stderr_read)],
            started_at: runtime::state::now_rfc3339(),
        })
    }

    /// Relays output until the init has exited and its pipes are closed;
    /// returns the init's exit code.
    fn pump(&mut self, mut run: Run) -> i32 {
        let mut exit_code = None;
        let mut drain_deadline = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if exit_code.is_some() && run.pipes.iter().all(Option::is_none) {
                break;
            }
            if let Some(deadline) = drain_deadline {
                if Instant::now() >= deadline {
                    tracing::warn!(id = self.id(), "the container's output pipes are still open after its exit; closing them");
                    run.pipes = [None, None];
                    break;
                }
            }
            let backlog = self.client.as_ref().map_or(0, |c| c.backlog.len());
            let read_pipes = backlog < CLIENT_BACKLOG_LIMIT;

            // SAFETY: every descriptor borrowed below outlives the poll.
            let borrow = |fd: RawFd| unsafe { BorrowedFd::borrow_raw(fd) };
            let mut fds = vec![PollFd::new(borrow(self.signals.as_raw_fd()), PollFlags::POLLIN)];
            let mut pipe_slots = Vec::new();
            if read_pipes {
                for (index, pipe) in run.pipes.iter().enumerate() {
                    if let Some(pipe) = pipe {
                        pipe_slots.push((fds.len(), index));
                        fds.push(PollFd::new(borrow(pipe.as_raw_fd()), PollFlags::POLLIN));
                    }
                }
            }
            let stdin_slot = self.stdin.as_ref().filter(|stdin| !stdin.backlog.is_empty()).map(|stdin| {
                fds.push(PollFd::new(borrow(stdin.fd.as_raw_fd()), PollFlags::POLLOUT));
                fds.len() - 1
            });
            let stdin_backlog = self.stdin.as_ref().map_or(0, |stdin| stdin.backlog.len());
            let client_slot = self.client.as_ref().map(|client| {
                // A container that reads its stdin slowly makes the monitor
                // stop reading the client, which then stops reading its own
                // stdin.
                let mut flags = if stdin_backlog < CLIENT_BACKLOG_LIMIT { PollFlags::POLLIN } else { PollFlags::empty() };
                if !client.backlog.is_empty() {
                    flags |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(borrow(client.socket.as_raw_fd()), flags));
                fds.len() - 1
            });
            let attach_slot = self.attach.as_ref().map(|listener| {
                fds.push(PollFd::new(borrow(listener.as_raw_fd()), PollFlags::POLLIN));
                fds.len() - 1
            });
            let timeout = if drain_deadline.is_some() { PollTimeout::from(100u16) } else { PollTimeout::NONE };
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(errno) => {
                    tracing::error!(id = self.id(), error = %errno, "poll");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
            let revents: Vec<PollFlags> = fds.iter().map(|fd| fd.revents().unwrap_or(PollFlags::empty())).collect();
            drop(fds);

            if !revents[0].is_empty() {
                while let Ok(Some(_)) = self.signals.read_signal() {}
                // The monitor is the subreaper: the other children it reaps are the
                // container's orphans.
                if let Some(code) = runtime::reaper::reap_children(run.pid) {
                    exit_code = Some(code);
                    drain_deadline = Some(Instant::now() + DRAIN_TIMEOUT);
                }
            }
            for (slot, index) in pipe_slots {
                if revents[slot].is_empty() {
                    continue;
                }
                let stream = if index == 0 { Stream::Stdout } else { Stream::Stderr };
                let fd = run.pipes[index].as_ref().expect("polled pipes are open").as_raw_fd();
                match nix::unistd::read(fd, &mut buf) {
                    Ok(0) => {
                        run.pipes[index] = None;
                        if let Err(err) = self.log.finish(stream) {
                            tracing::error!(id = self.id(), error = %err, "write the container log");
                        }
                    }
                    Ok(n) => self.output(stream, &buf[..n]),
                    Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
                    // A pty master reads EIO once every slave is closed:
                    // its end-of-file.
                    Err(nix::errno::Errno::EIO) if self.pty.is_some() => {
                        run.pipes[index] = None;
                        if let Err(err) = self.log.finish(stream) {
                            tracing::error!(id = self.id(), error = %err, "write the container log");
                        }
                    }
                    Err(errno) => {
                        tracing::error!(id = self.id(), error = %errno, "read the container's {}", stream.name());
                        run.pipes[index] = None;
                    }
                }
            }
            if let Some(slot) = stdin_slot {
                if !revents[slot].is_empty() {
                    self.flush_stdin();
                }
            }
            if let Some(slot) = client_slot {
                self.service_client(revents[slot]);
            }
            if let Some(slot) = attach_slot {
                if !revents[slot].is_empty() {
                    self.accept_attach();
                }
            }
        }
        self.stdin = None;
        self.pty = None;
        exit_code.unwrap_or(255)
    }

    fn output(&mut self, stream: Stream, data: &[u8]) {
        if let Err(err) = self.log.write(stream, data) {
            tracing::error!(id = self.id(), error = %err, "write the container log");
        }
        if let Some(client) = &mut self.client {
            let kind = if stream == Stream::Stdout { FRAME_STDOUT } else { FRAME_STDERR };
            push_frame(&mut client.backlog, kind, data);
        }
        self.flush_client();
    }

    fn service_client(&mut self, revents: PollFlags) {
        let Some(client) = &mut self.client else {
            return;
        };
        if revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            let mut chunk = [0u8; 64 * 1024];
            match nix::unistd::read(client.socket.as_raw_fd(), &mut chunk) {
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
                Ok(n) if n > 0 => {
                    client.inbox.extend_from_slice(&chunk[..n]);
                    let frames = take_frames(&mut client.inbox);
                    client.sent_input |= frames.iter().any(|f| matches!(f, Frame::Stdin(_) | Frame::StdinClose));
                    for frame in frames {
                        match frame {
                            Frame::Stdin(data) => {
                                if let Some(stdin) = &mut self.stdin {
                                    stdin.backlog.extend_from_slice(&data);
                                }
                            }
                            Frame::StdinClose => {
                                if let Some(stdin) = &mut self.stdin {
                                    stdin.close_pending = !stdin.is_pty;
                                }
                            }
                            Frame::Resize(rows, columns) => {
                                if let Some(pty) = &self.pty {
                                    if let Err(err) = runtime::terminal::resize(pty.as_raw_fd(), rows, columns) {
                                        tracing::warn!(id = self.entry.id(), error = %err, "resize the container's terminal");
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    self.flush_stdin();
                }
                _ => {
                    // A client that fed stdin left, so its input has ended.
                    let sent_input = client.sent_input;
                    self.client = None;
                    tracing::info!(id = self.id(), "attached client left");
                    if let Some(stdin) = self.stdin.as_mut().filter(|_| sent_input) {
                        stdin.close_pending = !stdin.is_pty;
                    }
                    self.flush_stdin();
                    return;
                }
            }
        }
        self.flush_client();
    }

    /// Accepts a `conman attach`, from the monitor's own user only, when no
    /// client is attached; rejects it with an error frame otherwise.
    fn accept_attach(&mut self) {
        let Some(listener) = &self.attach else {
            return;
        };
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let socket = OwnedFd::from(stream);
        let peer = nix::sys::socket::getsockopt(&socket, nix::sys::socket::sockopt::PeerCredentials);
        // SAFETY: geteuid has no arguments and always succeeds.
        let own_uid = unsafe { libc::geteuid() };
        let refusal = match peer {
            Ok(credentials) if credentials.uid() != own_uid => Some(format!("user {} may not attach to this container", credentials.uid())),
            Err(errno) => Some(format!("read the peer credentials: {errno}")),
            Ok(_) if self.client.is_some() => Some(format!(
                "container {} already has a client attached (its foreground run or another attach)",
                self.entry.record.name
            )),
            Ok(_) => None,
        };
        if let Some(message) = refusal {
            tracing::info!(id = self.id(), reason = %message, "attach rejected");
            let mut frame = Vec::new();
            push_frame(&mut frame, FRAME_ERROR, message.as_bytes());
            let _ = nix::sys::socket::send(socket.as_raw_fd(), &frame, nix::sys::socket::MsgFlags::MSG_NOSIGNAL);
            return;
        }
        if let Err(err) = set_nonblocking(socket.as_raw_fd()) {
            tracing::error!(id = self.id(), error = %err, "accept an attach");
            return;
        }
        tracing::info!(id = self.id(), "client attached");
        self.client = Some(Client { socket, backlog: Vec::new(), inbox: Vec::new(), sent_input: false });
    }

    /// Writes as much of the stdin backlog as the pipe takes now, and
    /// closes the pipe once a pending close is reached.
    fn flush_stdin(&mut self) {
        let Some(stdin) = &mut self.stdin else {
            return;
        };
        let mut written = 0;
        while written < stdin.backlog.len() {
            match nix::unistd::write(&stdin.fd, &stdin.backlog[written..]) {
                Ok(n) => written += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(errno) => {
                    // EPIPE: the container closed its stdin.
                    tracing::info!(id = self.id(), error = %errno, "the container's stdin is closed");
                    self.stdin = None;
                    return;
                }
            }
        }
        stdin.backlog.drain(..written);
        if stdin.backlog.is_empty() && stdin.close_pending {
            self.stdin = None;
        }
    }

    /// Sends as much of the client's backlog as the socket takes now.
    fn flush_client(&mut self) {
        let Some(client) = &mut self.client else {
            return;
        };
        let mut sent = 0;
        while sent < client.backlog.len() {
            match nix::sys::socket::send(
                client.socket.as_raw_fd(),
                &client.backlog[sent..],
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(n) => sent += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(_) => {
                    tracing::info!(id = self.id(), "attached client left");
                    self.client = None;
                    return;
                }
            }
        }
        client.backlog.drain(..sent);
    }

    /// Sends the exit frame and everything before it to the client, waiting
    /// up to 10 seconds for a slow one, then lets the client go.
    fn send_exit(&mut self, code: i32) {
        let Some(client) = &mut self.client else {
            return;
        };
        push_frame(&mut client.backlog, FRAME_EXIT, &code.to_be_bytes());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.client.as_ref().is_some_and(|c| !c.backlog.is_empty()) && Instant::now() < deadline {
            let fd = self.client.as_ref().unwrap().socket.as_raw_fd();
            // SAFETY: the client socket outlives the poll.
            let mut fds = [PollFd::new(unsafe { BorrowedFd::borrow_raw(fd) }, PollFlags::POLLOUT)];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
            self.flush_client();
        }
        self.client = None;
    }
}

/// The listening socket on which the runtime sends the pty master of a
/// container with a terminal. Its path is short and outside the store,
/// because a socket path has at most 107 bytes.
struct ConsoleSocket {
    path: std::path::PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    fn bind(run: u32) -> Result<ConsoleSocket> {
        let path = std::env::temp_dir().join(format!("conman-console-{}-{run}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .map_err(|err| Error::io(format!("listen on {}", path.display()), err))?;
        Ok(ConsoleSocket { path, listener })
    }

    /// Receives the pty master that the init sent while `create` ran: the
    /// connection is already queued, so accepting does not wait.
    fn receive(self) -> Result<OwnedFd> {
        let received = (|| {
            self.listener.set_nonblocking(true)?;
            let (stream, _) = self.listener.accept()?;
            stream.set_nonblocking(false)?;
            runtime::terminal::recv_fd(stream.as_raw_fd()).map_err(|err| io::Error::other(err.to_string()))
        })();
        received.map_err(|err| Error::io(format!("receive the pty master on {}", self.path.display()), err))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens on the attach address of container `id`; without it the
/// container runs, but cannot be attached to.
fn listen_for_attach(id: &str) -> Option<std::os::unix::net::UnixListener> {
    let listener = attach_address(id).and_then(|address| std::os::unix::net::UnixListener::bind_addr(&address));
    match listener.and_then(|listener| listener.set_nonblocking(true).map(|()| listener)) {
        Ok(listener) => Some(listener),
        Err(err) => {
            tracing::warn!(id, error = %err, "listen for attach");
            None
        }
    }
}

/// Delay before restart N+1: 100 ms, doubling per restart up to 6.4 s, so
/// a command that fails at once does not spin.
fn restart_delay(restarts: u32) -> Duration {
    Duration::from_millis(100 << restarts.min(6))
}

pub(crate) fn push_frame(backlog: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    backlog.push(kind);
    backlog.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    backlog.extend_from_slice(payload);
}

fn dup_cloexec(fd: RawFd) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that we own.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(Error::io(format!("duplicate fd {fd}"), io::Error::last_os_error()));
    }
    // SAFETY: `new` is a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn redirect(pairs: &[(RawFd, RawFd)]) -> Result<()> {
    for &(from, to) in pairs {
        // SAFETY: dup2 onto a standard descriptor.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(Error::io(format!("redirect fd {to}"), io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn set_nonblocking(fd: RawFd) -> Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(Error::io(format!("make fd {fd} non-blocking"), io::Error::last_os_error()));
    }
    Ok(())
}

/// A frame on the attach socket.
pub enum Frame {
    Output(Stream, Vec<u8>),
    Exit(i32),
    Stdin(Vec<u8>),
    StdinClose,
    /// Rows and columns.
    Resize(u16, u16),
    Error(String),
}

/// Splits complete frames off the front of `buffer`.
pub fn take_frames(buffer: &mut Vec<u8>) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut offset = 0;
    while buffer.len() - offset >= 5 {
        let kind = buffer[offset];
        let len = u32::from_be_bytes(buffer[offset + 1..offset + 5].try_into().unwrap()) as usize;
        if buffer.len() - offset - 5 < len {
            break;
        }
        let payload = &buffer[offset + 5..offset + 5 + len];
        match kind {
            FRAME_STDOUT => frames.push(Frame::Output(Stream::Stdout, payload.to_vec())),
            FRAME_STDERR => frames.push(Frame::Output(Stream::Stderr, payload.to_vec())),
            FRAME_EXIT if len == 4 => frames.push(Frame::Exit(i32::from_be_bytes(payload.try_into().unwrap()))),
            FRAME_STDIN => frames.push(Frame::Stdin(payload.to_vec())),
            FRAME_STDIN_CLOSE => frames.push(Frame::StdinClose),
            FRAME_ERROR => frames.push(Frame::Error(String::from_utf8_lossy(payload).into_owned())),
            FRAME_RESIZE if len == 4 => frames.push(Frame::Resize(
                u16::from_be_bytes([payload[0], payload[1]]),
                u16::from_be_bytes([payload[2], payload[3]]),
            )),
            _ => {}
        }
        offset += 5 + len;
    }
    buffer.drain(..offset);
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut wire = Vec::new();
        push_frame(&mut wire, FRAME_STDOUT, b"out");
        push_frame(&mut wire, FRAME_STDERR, b"");
        push_frame(&mut wire, FRAME_EXIT, &(-3i32).to_be_bytes());
        let mut buffer = wire[..7].to_vec();

        let first = take_frames(&mut buffer);
        assert_eq!(first.len(), 0);
        buffer.extend_from_slice(&wire[7..]);
        let frames = take_frames(&mut buffer);

        assert!(buffer.is_empty());
        assert_eq!(frames.len(), 3);
        assert!(matches!(&frames[0], Frame::Output(Stream::Stdout, data) if data == b"out"));
        assert!(matches!(&frames[1], Frame::Output(Stream::Stderr, data) if data.is_empty()));
        assert!(matches!(frames[2], Frame::Exit(-3)));
    }

    #[test]
    fn restart_delay_is_capped() {
        assert_eq!(restart_delay(0), Duration::from_millis(100));
        assert_eq!(restart_delay(3), Duration::from_millis(800));
        assert_eq!(restart_delay(50), Duration::from_millis(6400));
    }
}
