//! `exec`: a new process in a running container.
//!
//! The runtime joins the container's pid namespace itself (setns of a pid
//! namespace only applies to children), then forks the process, places it
//! in the container's cgroups, and lets it join the other namespaces: the
//! user namespace first, the mount namespace last. The process then takes
//! the container's process attributes, as overridden by the caller, and
//! calls execve. Nothing in the running container is touched, so a failed
//! exec never harms it.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use oci_spec::runtime::Process;

use crate::cgroups::Cgroup;
use crate::container::{exit_code, Runtime};
use crate::error::{Context, Error, Result};
use crate::init::{self, MSG_ERROR, MSG_GO, MSG_READY};
use crate::state::Status;
use crate::sys;
use crate::terminal;

/// Options of `exec`.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub detach: bool,
    pub preserve_fds: u32,
    pub ignore_paused: bool,
}

/// Namespaces in the order the process joins them; the pid namespace is
/// joined by the runtime before the fork.
const JOIN_ORDER: &[(&str, libc::c_int)] = &[
    ("user", libc::CLONE_NEWUSER),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
    ("mnt", libc::CLONE_NEWNS),
];

/// Opens the namespaces of `pid` that differ from this process's own.
fn open_namespaces(pid: i32, name: &str) -> Result<Option<OwnedFd>> {
    let theirs = format!("/proc/{pid}/ns/{name}");
    let ours = format!("/proc/self/ns/{name}");
    let their_meta = match fs::metadata(&theirs) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Error::io(format!("stat {theirs}"), err)),
    };
    if fs::metadata(&ours).is_ok_and(|m| m.ino() == their_meta.ino() && m.dev() == their_meta.dev()) {
        return Ok(None);
    }
    let fd = sys::openat(libc::AT_FDCWD, std::path::Path::new(&theirs), libc::O_RDONLY, 0)
        .context(|| format!("open {theirs}"))?;
    Ok(Some(fd))
}

/// Builds the process of an exec from the container's own process and the
/// caller's overrides.
pub fn default_process(runtime: &Runtime, id: &str) -> Result<Process> {
    let (_locked, record) = runtime.store.open(id)?;
    let spec = crate::spec::load(&record.bundle.join("config.json"))?;
    spec.process()
        .clone()
        .ok_or_else(|| Error::InvalidConfig("\"process\" is missing".into()))
}

impl Runtime {
    /// Runs `process` in container `id`. Returns its exit status, or 0 once
    /// it runs with `detach`.
    pub fn exec(&self, id: &str, process: &Process, options: &ExecOptions) -> Result<i32> {
        crate::sealed_exe::ensure()?;
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::InvalidArgument("exec needs a command: the process args are empty".into()));
        }
        if !process.cwd().is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "the process cwd \"{}\" is not an absolute path",
                process.cwd().display()
            )));
        }
        crate::lsm::check_host(process, None)?;
        let terminal = process.terminal().unwrap_or(false);
        if terminal && options.console_socket.is_none() && options.detach {
            return Err(Error::InvalidArgument(
                "a detached exec with a terminal needs --console-socket".into(),
            ));
        }
        if !terminal && options.console_socket.is_some() {
            return Err(Error::InvalidArgument(
                "--console-socket was given, but the process has no terminal (use --tty)".into(),
            ));
        }

        let set = crate::wait::forwarded_set();
        let mut old = SigSet::empty();
        if !options.detach {
            pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old)).context(|| "block signals".to_owned())?;
        }
        let result = self.exec_inner(id, process, options, terminal, &set);
        if !options.detach {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        }
        result
    }

    fn exec_inner(&self, id: &str, process: &Process, options: &ExecOptions, terminal: bool, set: &SigSet) -> Result<i32> {
        let (locked, record) = self.store.open(id)?;
        let status = record.live_status();
        match status {
            Status::Running | Status::Created => {}
            Status::Paused if options.ignore_paused => {}
            Status::Paused => {
                return Err(Error::WrongState {
                    id: id.to_owned(),
                    status: status.to_string(),
                    message: "resume it first, or use --ignore-paused".into(),
                })
            }
            _ => {
                return Err(Error::WrongState {
                    id: id.to_owned(),
                    status: status.to_string(),
                    message: "cannot exec in a stopped container".into(),
                })
            }
        }
        let cgroup = Cgroup::from_paths(&record.cgroup_paths)?;
        // The process gets the container's seccomp filter, as runc does.
        let spec = crate::spec::load(&record.bundle.join("config.json"))?;
        let seccomp = spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            .map(crate::seccomp::compile)
            .transpose()?;
        let agent_state = record.oci_state();
        let pid_ns = open_namespaces(record.pid, "pid")?;
        let mut joins = Vec::new();
        for &(name, flag) in JOIN_ORDER {
            if let Some(fd) = open_namespaces(record.pid, name)? {
                joins.push((name, flag, fd));
            }
        }
        let in_user_ns = joins.iter().any(|(name, _, _)| *name == "user");
        crate::sealed_exe::check_exec_exposure(id, record.pid, record.unprotected_init_exe, process, in_user_ns)?;
        // A container without a mount namespace of its own shares the one
        // the runtime ran in, whose root is the host's, so a setns does not
        // switch the root: the process chroots into the init's root, as the
        // init did.
        let shares_mount_namespace = !spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|list| list.iter().any(|ns| ns.typ() == oci_spec::runtime::LinuxNamespaceType::Mount));
        let container_root = if !shares_mount_namespace {
            None
        } else {
            let path = format!("/proc/{}/root", record.pid);
            Some(sys::openat(libc::AT_FDCWD, Path::new(&path), libc::O_PATH | libc::O_DIRECTORY, 0).context(|| format!("open {path}"))?)
        };

        let (console, pty_receiver) = match (&options.console_socket, terminal) {
            (Some(path), _) => (Some(terminal::connect(path)?), None),
            (None, true) => {
                let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
                    .context(|| "create console socket pair".to_owned())?;
                (Some(theirs), Some(ours))
            }
            (None, false) => (None, None),
        };
        let (parent_sync, child_sync) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
            .context(|| "create sync socket pair".to_owned())?;

        if let Some(fd) = &pid_ns {
            // SAFETY: setns on a namespace descriptor; this process is
            // single-threaded, as setns(CLONE_NEWPID) requires.
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWPID) } < 0 {
                return Err(Error::last_os(format!("join the pid namespace of container \"{id}\"")));
            }
        }

        // SAFETY: fork in a single-threaded process.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(Error::last_os("fork the exec process"));
        }
        if pid == 0 {
            drop(locked);
            drop(parent_sync);
            drop(pty_receiver);
            child(
                child_sync,
                &joins,
                container_root.as_ref(),
                in_user_ns,
                process,
                console,
                options.preserve_fds,
                seccomp.as_ref(),
                spec.linux().as_ref(),
            );
        }
        drop(child_sync);
        drop(console);
        tracing::debug!(id, pid, "cloned exec process");

        // A process joining a frozen cgroup freezes at once, before it can
        // report back. In a paused container (with --ignore-paused) the
        // runtime therefore does not wait for the process to reach execve:
        // it stays frozen, inside the container's limits, until the
        // container resumes.
        let paused = status == Status::Paused;
        // The container's lock is not needed once the process is placed:
        // releasing it keeps a process that the freezer stops mid-set-up
        // from blocking every other command on the container.
        drop(locked);
        let setup = (|| {
            cgroup.join(pid)?;
            tracing::debug!(id, pid, "exec process joined the container's cgroups");
            nix::unistd::write(&parent_sync, &[MSG_GO]).context(|| "signal the exec process".to_owned())?;
            if !paused {
                wait_exec_ready(&parent_sync, |listener| match seccomp.as_ref().and_then(|f| f.listener.as_ref()) {
                    Some(agent) => crate::seccomp::notify::forward(agent, &listener, pid, &agent_state),
                    None => Err(Error::Exec("the exec process sent a seccomp listener, but the filter has no listenerPath".into())),
                })?;
            }
            let pty = match &pty_receiver {
                Some(receiver) => Some(terminal::recv_fd(receiver.as_raw_fd())?),
                None => None,
            };
            if let Some(path) = &options.pid_file {
                crate::container::write_pid_file(path, pid)?;
            }
            Ok(pty)
        })();
        let pty = match setup {
            Ok(pty) => pty,
            Err(err) => {
                // SAFETY: kill and reap our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
                return Err(err);
            }
        };
        tracing::info!(id, pid, "exec process started");
        if options.detach {
            return Ok(0);
        }
        let status = crate::wait::wait_loop(pid, pty, set)?;
        Ok(exit_code(status))
    }
}

/// Waits for "ready", then for the sync socket to close: it is
/// close-on-exec, so end-of-file means that execve succeeded, and a message
/// means that it failed.
fn wait_exec_ready(sync: &OwnedFd, mut on_listener: impl FnMut(OwnedFd) -> Result<()>) -> Result<()> {
    let mut buf = vec![0u8; 65536];
    let mut ready = false;
    loop {
        let (n, fd) = crate::seccomp::notify::recv_message(sync, &mut buf)?;
        match (buf.first(), fd) {
            _ if n == 0 && ready => return Ok(()),
            _ if n == 0 => return Err(Error::Exec("the exec process exited during set-up".into())),
            (Some(&crate::seccomp::notify::MSG_SECCOMP), Some(listener)) if n == 1 => on_listener(listener)?,
            (Some(&MSG_READY), _) => ready = true,
            (Some(&MSG_ERROR), _) => return Err(Error::Exec(String::from_utf8_lossy(&buf[1..n]).into_owned())),
            _ => return Err(Error::Exec("unexpected message from the exec process".into())),
        }
    }
}

/// Runs in the forked exec process: joins the container and becomes its program.
fn child(
    sync: OwnedFd,
    joins: &[(&str, libc::c_int, OwnedFd)],
    container_root: Option<&OwnedFd>,
    in_user_ns: bool,
    process: &Process,
    console: Option<OwnedFd>,
    preserve_fds: u32,
    seccomp: Option<&crate::seccomp::Filter>,
    linux: Option<&oci_spec::runtime::Linux>,
) -> ! {
    let reserved = 3 + preserve_fds as i32;
    let Ok(sync) = sys::move_fd_above(sync, reserved) else {
        // SAFETY: without the socket nothing can be reported.
        unsafe { libc::_exit(1) }
    };
    let result = (|| -> Result<crate::process::ExecArgs> {
        init::reset_signals();
        nix::sys::prctl::set_dumpable(false).context(|| "set non-dumpable".to_owned())?;
        let console = console.map(|c| sys::move_fd_above(c, reserved)).transpose().context(|| "move console socket".to_owned())?;
        // execCPUAffinity is for exec processes only, not the init: the
        // initial CPUs hold until the runtime moves the process into the
        // container's cgroup, whose cpuset may then replace them.
        if let Some(list) = process.exec_cpu_affinity().as_ref().and_then(|a| a.initial().as_deref()) {
            crate::attributes::set_cpu_affinity(list, "process.execCPUAffinity.initial")?;
        }
        init::wait_for_go(&sync)?;
        for (name, flag, fd) in joins {
            // SAFETY: setns on a namespace descriptor.
            if unsafe { libc::setns(fd.as_raw_fd(), *flag) } < 0 {
                return Err(Error::last_os(format!("join {name} namespace")));
            }
        }
        if in_user_ns {
            // SAFETY: plain syscalls.
            if unsafe { libc::setresgid(0, 0, 0) } < 0 || unsafe { libc::setresuid(0, 0, 0) } < 0 {
                return Err(Error::last_os("become root in the user namespace"));
            }
        }
        if let Some(root) = container_root {
            nix::unistd::fchdir(root.as_raw_fd()).context(|| "chdir to the container's root".to_owned())?;
            nix::unistd::chroot(".").context(|| "chroot into the container's root".to_owned())?;
        }
        nix::unistd::chdir("/").context(|| "chdir /".to_owned())?;
        if let Some(console) = &console {
            let (master, slave) = terminal::open_pty()?;
            if let Some(size) = process.console_size() {
                terminal::resize(master.as_raw_fd(), size.height() as u16, size.width() as u16)?;
            }
            terminal::send_fd(console.as_raw_fd(), master.as_raw_fd())?;
            drop(master);
            terminal::give_to_user(&slave, process.user().uid())?;
            terminal::become_session_leader(&slave)?;
        }
        if let Some(score) = process.oom_score_adj() {
            crate::procfs::write("/proc/self/oom_score_adj", score.to_string().as_bytes())?;
        }
        let exec = crate::process::prepare(process, linux, true, seccomp, &mut |listener| {
            crate::seccomp::notify::send_listener(&sync, &listener)
        })?;
        init::prepare_descriptors(preserve_fds)?;
        Ok(exec)
    })();
    match result {
        Ok(exec) => {
            let _ = init::send(&sync, &[MSG_READY]);
            exec.exec()
        }
        Err(err) => {
            let mut message = vec![MSG_ERROR];
            message.extend_from_slice(err.to_string().as_bytes());
            let _ = init::send(&sync, &message);
            // SAFETY: exit without running destructors of the parent's state.
            unsafe { libc::_exit(1) }
        }
    }
}
