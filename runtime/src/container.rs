//! Container lifecycle operations: create, start, state, kill, delete, and
//! run (create + start + wait).
//!
//! `create` runs in the runtime process: it checks the bundle, creates the
//! state directory and the cgroup, clones the init into its new namespaces,
//! writes the id mappings, places the init in the cgroup, and waits for the
//! init to report that the container is set up. The init then waits on the
//! exec FIFO in the state directory; `start` writes to it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::cgroups::{self, Cgroup};
use crate::error::{Context, Error, Result};
use crate::hooks;
use crate::init::{self, InitArgs, MSG_ERROR, MSG_GO, MSG_HOOKS, MSG_READY};
use crate::namespaces;
use crate::spec;
use crate::state::{self, Locked, OciState, Record, Status, Store};
use crate::sys::openat;

/// Options of `create` and `run`, as runc's flags name them.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// `linux.cgroupsPath` has runc's `SLICE:PREFIX:NAME` form
    /// (`--systemd-cgroup`); see [`cgroups::systemd`].
    pub systemd_cgroup: bool,
    /// Keep the container's init as pid 1, running a minimal init that
    /// forks the program, forwards signals to it, reaps orphans and exits
    /// with the program's status (see [`crate::reaper`]). runc has no such
    /// option, and `conman-runtime`'s command line does not offer it:
    /// `conman run --init` sets it.
    pub reaper_init: bool,
    /// The caller decided at the start of `main` whether to re-execute from
    /// a protected view of its binary ([`crate::sealed_exe::ensure`]), and
    /// `create` must not re-execute the process, which would restart the
    /// caller's `main` in the middle of its work. `create` fails instead
    /// when the container needs the protected view and the process lacks it.
    pub no_reexec: bool,
}

/// The runtime: a state root and the operations on containers in it.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub store: Store,
}

/// A container that `create` has set up.
#[derive(Debug)]
pub struct Created {
    pub pid: i32,
    /// The pty master, when the runtime itself took the console (`run` with
    /// a terminal and no console socket).
    pub pty: Option<OwnedFd>,
}

/// Destination of the init's pty master.
enum Console {
    None,
    Socket(PathBuf),
    /// `run` keeps the master itself: the init sends it over this pair.
    Internal,
}

/// Re-executes the runtime from a protected view of its binary when the
/// container in `options` needs one, and returns the bundle's spec for the
/// caller to go on with. A config that cannot be read counts as needing
/// the view and returns no spec; `create` then reports the error from the
/// protected process. A reaper init never calls execve, so it always needs
/// the view.
fn protect_binary_for(options: &CreateOptions) -> Result<Option<oci_spec::runtime::Spec>> {
    let spec = spec::load(&options.bundle.join("config.json")).ok();
    let needed = options.reaper_init || spec.as_ref().is_none_or(crate::sealed_exe::init_needs_protection);
    if !needed {
        return Ok(spec);
    }
    if !options.no_reexec {
        crate::sealed_exe::ensure()?;
        return Ok(spec);
    }
    if crate::sealed_exe::runs_protected_binary() || crate::sealed_exe::fallback_taken() {
        return Ok(spec);
    }
    Err(Error::InvalidArgument(
        "the container needs the runtime to run from a protected view of its binary, which this process does not: \
         call sealed_exe::ensure() at the start of main for such containers"
            .into(),
    ))
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime {
            store: Store::new(root),
        }
    }

    /// Creates container `id` from the bundle in `options`, leaving its init
    /// waiting for `start`. Returns the init's pid as seen from the host.
    ///
    /// Like `run` and `exec`, it first re-executes the process from a
    /// protected view of its binary, unless it runs from one already or the
    /// spec does not need one ([`crate::sealed_exe`]). A program that embeds
    /// the runtime calls `sealed_exe::ensure` at the start of `main`, or sets
    /// `no_reexec`.
    pub fn create(&self, id: &str, options: &CreateOptions) -> Result<Created> {
        let spec = protect_binary_for(options)?;
        let console = match &options.console_socket {
            Some(path) => Console::Socket(path.clone()),
            None => Console::None,
        };
        self.create_with(id, options, console, spec)
    }

    /// Creates the container; `loaded` is the bundle's spec when the caller
    /// has read it already.
    fn create_with(&self, id: &str, options: &CreateOptions, console: Console, loaded: Option<oci_spec::runtime::Spec>) -> Result<Created> {
        state::validate_id(id)?;
        let bundle = std::fs::canonicalize(&options.bundle)
            .context(|| format!("bundle {}", options.bundle.display()))?;
        let mut spec = match loaded {
            Some(spec) => spec,
            None => spec::load(&bundle.join("config.json"))?,
        };
        spec::check_supported(&spec)?;
        let notify_proxy = crate::notify_socket::host_socket().is_some();
        if notify_proxy {
            crate::notify_socket::add_to_spec(&mut spec, &self.store.container_dir(id))?;
        }
        let rootfs = spec::rootfs_path(&spec, &bundle)?;
        let rootfs = std::fs::canonicalize(&rootfs).context(|| format!("rootfs {}", rootfs.display()))?;
        let linux = spec.linux().as_ref().expect("checked by spec::check_supported");
        let process = spec.process().as_ref().expect("checked by spec::check_supported");
        // Before anything exists, so that a missing security module leaves
        // nothing behind.
        crate::lsm::check_host(process, linux.mount_label().as_deref())?;
        let mut plan = namespaces::plan(linux)?;
        if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !plan.has_uts {
            return Err(Error::InvalidConfig(
                "\"hostname\" is set, but the container has no UTS namespace of its own".into(),
            ));
        }
        let terminal = process.terminal().unwrap_or(false);
        match (&console, terminal) {
            (Console::None, true) => {
                return Err(Error::InvalidArgument(
                    "\"process.terminal\" is true, which needs --console-socket".into(),
                ))
            }
            (Console::Socket(path), false) => {
                return Err(Error::InvalidArgument(format!(
                    "--console-socket {} was given, but \"process.terminal\" is false",
                    path.display()
                )))
            }
            _ => {}
        }
        let cgroup_path = if options.systemd_cgroup {
            let given = linux.cgroups_path().as_deref().map(|p| p.to_string_lossy().into_owned());
            cgroups::systemd::container_path(given.as_deref().unwrap_or(""), id)?
        } else {
            cgroups::container_path(linux.cgroups_path().as_deref(), id)?
        };
        // Compiled here, in the runtime, so that a bad profile fails before
        // anything is created and the init only has to load it.
        let seccomp = linux.seccomp().as_ref().map(crate::seccomp::compile).transpose()?;

        let listen_fds = socket_activation_fds();

        let locked = self.store.create(id)?;
        let mut cleanup = Cleanup {
            locked: Some(locked),
            cgroup: None,
            child: None,
        };
        let result = (|| {
            plan.idmap_mounts = namespaces::idmap_namespaces(&spec)?;
            let cgroup = Cgroup::create(&cgroup_path)?;
            cleanup.cgroup = Some(cgroup);
            let cgroup = cleanup.cgroup.as_ref().unwrap();
            cgroup.apply(linux.resources().as_ref())?;

            let locked = cleanup.locked.as_ref().unwrap();
            if notify_proxy {
                let dir = locked.dir.join(crate::notify_socket::DIR);
                std::fs::create_dir(&dir).context(|| format!("create {}", dir.display()))?;
            }
            let fifo_path = locked.fifo_path();
            nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .context(|| format!("create {}", fifo_path.display()))?;
            let fifo = openat(libc::AT_FDCWD, &fifo_path, libc::O_RDWR, 0)
                .context(|| format!("open {}", fifo_path.display()))?;

            let (console_fd, pty_receiver) = match &console {
                Console::None => (None, None),
                Console::Socket(path) => (Some(crate::terminal::connect(path)?), None),
                Console::Internal => {
                    let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
                        .context(|| "create console socket pair".to_owned())?;
                    (Some(theirs), Some(ours))
                }
            };
            let (parent_sync, child_sync) =
                socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
                    .context(|| "create sync socket pair".to_owned())?;

            if let Some(pid_ns) = &plan.pid_join {
                // SAFETY: setns on a namespace descriptor; this process is
                // single-threaded, as setns(CLONE_NEWPID) requires.
                if unsafe { libc::setns(pid_ns.as_raw_fd(), libc::CLONE_NEWPID) } < 0 {
                    return Err(Error::last_os("join pid namespace"));
                }
            }

            let pid = clone_process(plan.clone_flags).context(|| "clone the container init".to_owned())?;
            if pid == 0 {
                // The record lock belongs to the parent only; the child's
                // copy of the descriptor is of no use to it.
                drop(cleanup.locked.take());
                drop(parent_sync);
                drop(pty_receiver);
                init::run(InitArgs {
                    id,
                    spec: &spec,
                    bundle: &bundle,
                    rootfs: &rootfs,
                    namespaces: &plan,
                    cgroup_path: &cgroup_path,
                    sync: Some(child_sync),
                    fifo,
                    console: console_fd,
                    no_pivot: options.no_pivot,
                    no_new_keyring: options.no_new_keyring,
                    preserve_fds: options.preserve_fds.max(listen_fds.unwrap_or(0)),
                    listen_fds,
                    seccomp: seccomp.as_ref(),
                    reaper_init: options.reaper_init,
                });
            }
            cleanup.child = Some(pid);
            drop(child_sync);
            drop(fifo);
            drop(console_fd);
            tracing::debug!(id, pid, "cloned container init");

            if plan.new_user {
                namespaces::write_id_mappings(pid, linux)?;
            }
            cleanup.cgroup.as_ref().unwrap().join(pid)?;
            nix::unistd::write(&parent_sync, &[MSG_GO]).context(|| "signal the init".to_owned())?;
            let hook_state = OciState {
                oci_version: state::OCI_VERSION.into(),
                id: id.to_owned(),
                status: Status::Creating,
                pid,
                bundle: bundle.clone(),
                annotations: spec.annotations().clone().unwrap_or_default(),
                rootfs: rootfs.clone(),
                created: String::new(),
                owner: String::new(),
            };
            wait_ready(
                &parent_sync,
                pid,
                || {
                    hooks::run_all(&spec, hooks::Kind::Prestart, &hook_state)?;
                    hooks::run_all(&spec, hooks::Kind::CreateRuntime, &hook_state)?;
                    nix::unistd::write(&parent_sync, &[MSG_GO]).context(|| "signal the init".to_owned())?;
                    Ok(())
                },
                |listener| match seccomp.as_ref().and_then(|f| f.listener.as_ref()) {
                    Some(agent) => crate::seccomp::notify::forward(agent, &listener, pid, &hook_state),
                    None => Err(Error::Init("the init sent a seccomp listener, but the filter has no listenerPath".into())),
                },
            )?;

            let pty = match &pty_receiver {
                Some(receiver) if terminal => Some(crate::terminal::recv_fd(receiver.as_raw_fd())?),
                _ => None,
            };

            let (_, start_time) = state::process_stat(pid)
                .ok_or_else(|| Error::Init("the init exited right after set-up".into()))?;
            let record = Record {
                id: id.to_owned(),
                status: Status::Created,
                pid,
                pid_start_time: start_time,
                bundle: bundle.clone(),
                rootfs: rootfs.clone(),
                created: state::now_rfc3339(),
                annotations: spec.annotations().clone().unwrap_or_default(),
                cgroup_paths: cleanup.cgroup.as_ref().unwrap().paths(),
                own_pid_namespace: plan.new_pid || plan.pid_join.is_some(),
                unprotected_init_exe: if crate::sealed_exe::runs_protected_binary() {
                    None
                } else {
                    crate::sealed_exe::own_executable()
                },
                // SAFETY: getuid has no arguments and always succeeds (getuid(2)).
                owner: unsafe { libc::getuid() },
            };
            cleanup.locked.as_ref().unwrap().save(&record)?;
            if let Some(pid_file) = &options.pid_file {
                write_pid_file(pid_file, pid)?;
            }
            Ok(Created { pid, pty })
        })();
        match result {
            Ok(created) => {
                cleanup.disarm();
                tracing::info!(id, pid = created.pid, "container created");
                Ok(created)
            }
            Err(err) => {
                cleanup.run();
                Err(err)
            }
        }
    }

    /// Releases the init of a created container to exec the user process.
    pub fn start(&self, id: &str) -> Result<()> {
        let (locked, mut record) = self.store.open(id)?;
        let status = record.live_status();
        if status != Status::Created {
            return Err(Error::WrongState {
                id: id.to_owned(),
                status: status.to_string(),
                message: "only a created container can be started".into(),
            });
        }
        let fifo_path = locked.fifo_path();
        let notify_proxy = crate::notify_socket::bind(&locked.dir)?;
        let fifo = openat(libc::AT_FDCWD, &fifo_path, libc::O_WRONLY | libc::O_NONBLOCK, 0).map_err(|err| {
            if err.raw_os_error() == Some(libc::ENXIO) {
                Error::Init(format!("the init of container \"{id}\" is no longer waiting for start"))
            } else {
                Error::io(format!("open {}", fifo_path.display()), err)
            }
        })?;
        nix::unistd::write(&fifo, b"0").context(|| format!("write {}", fifo_path.display()))?;
        drop(fifo);
        let _ = std::fs::remove_file(&fifo_path);
        record.status = Status::Running;
        locked.save(&record)?;
        tracing::info!(id, pid = record.pid, "container started");
        self.run_late_hooks(&record, hooks::Kind::Poststart);
        // Other commands on the container must not wait for READY=1.
        drop(locked);
        if let Some(proxy) = notify_proxy {
            let (pid, start_time) = (record.pid, record.pid_start_time);
            proxy.forward_until_ready(pid, || {
                state::process_stat(pid).is_some_and(|(state, start)| start == start_time && state != 'Z')
            })?;
        }
        Ok(())
    }

    /// Returns the OCI state of a container.
    pub fn state(&self, id: &str) -> Result<OciState> {
        let (_locked, record) = self.store.open(id)?;
        Ok(record.oci_state())
    }

    /// Lists every container's state; unreadable records are returned as
    /// errors beside the readable ones.
    pub fn list(&self) -> Result<Vec<Result<OciState>>> {
        Ok(self
            .store
            .ids()?
            .into_iter()
            .filter_map(|id| match self.store.peek(&id) {
                Ok(record) => Some(Ok(record.oci_state())),
                // A directory without state is a create in progress or one
                // that failed: not a container yet.
                Err(Error::NotFound(_)) => None,
                Err(err) => Some(Err(err)),
            })
            .collect())
    }

    /// Sends `signal` to the container's init, or with `all` to every
    /// process in its cgroup.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let (_locked, record) = self.store.open(id)?;
        let status = record.live_status();
        // As runc: `kill --all` of a stopped container signals whatever is
        // left in its cgroup, which may be nothing, and succeeds. containerd
        // sends it after every task exit.
        if status == Status::Stopped && !all {
            return Err(Error::NotRunning(id.to_owned()));
        }
        if all {
            cgroups::signal_all(&record.cgroup_paths, signal)?;
            if status == Status::Paused {
                thaw(&record.cgroup_paths);
            }
            return Ok(());
        }
        // SAFETY: kill has no memory effects.
        if unsafe { libc::kill(record.pid, signal) } < 0 {
            return Err(Error::last_os(format!("send signal {signal} to pid {}", record.pid)));
        }
        Ok(())
    }

    /// Freezes every process of a running container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let (_locked, record) = self.store.open(id)?;
        let status = record.live_status();
        if status != Status::Running {
            return Err(Error::WrongState {
                id: id.to_owned(),
                status: status.to_string(),
                message: "only a running container can be paused".into(),
            });
        }
        Cgroup::from_paths(&record.cgroup_paths)?.set_frozen(true)?;
        tracing::info!(id, "container paused");
        Ok(())
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let (_locked, record) = self.store.open(id)?;
        let status = record.live_status();
        if status != Status::Paused {
            return Err(Error::WrongState {
                id: id.to_owned(),
                status: status.to_string(),
                message: "only a paused container can be resumed".into(),
            });
        }
        Cgroup::from_paths(&record.cgroup_paths)?.set_frozen(false)?;
        tracing::info!(id, "container resumed");
        Ok(())
    }

    /// Changes the cgroup limits of a created, running or paused container.
    pub fn update(&self, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let (_locked, record) = self.store.open(id)?;
        let status = record.live_status();
        if status == Status::Stopped {
            return Err(Error::WrongState {
                id: id.to_owned(),
                status: status.to_string(),
                message: "a stopped container cannot be updated".into(),
            });
        }
        Cgroup::from_paths(&record.cgroup_paths)?.update(resources)?;
        tracing::info!(id, "container resources updated");
        Ok(())
    }

    /// Returns the cgroups of a container that has not stopped, for
    /// `events` to read statistics and OOM kills from.
    pub fn cgroup(&self, id: &str) -> Result<Cgroup> {
        let (_locked, record) = self.store.open(id)?;
        if record.live_status() == Status::Stopped {
            return Err(Error::NotRunning(id.to_owned()));
        }
        Cgroup::from_paths(&record.cgroup_paths)
    }

    /// Lists the host pids of every process in the container's cgroup.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let (_locked, record) = self.store.open(id)?;
        let mut pids = cgroups::container_procs(&record.cgroup_paths);
        pids.sort_unstable();
        Ok(pids)
    }

    /// Deletes a container: refuses a running one unless `force`, kills
    /// what is left, removes its cgroups and its state.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let (locked, record) = match self.store.open(id) {
            Ok(opened) => opened,
            Err(Error::NotFound(_)) if force => {
                // As runc: deleting a missing container with --force is
                // not an error, so engines can clean up idempotently. A
                // directory left by a failed create is removed.
                let dir = self.store.container_dir(id);
                if state::validate_id(id).is_ok() && dir.is_dir() && !dir.join(state::STATE_FILE).exists() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        let status = record.live_status();
        match status {
            Status::Running | Status::Paused if !force => {
                return Err(Error::WrongState {
                    id: id.to_owned(),
                    status: status.to_string(),
                    message: "stop it first, or use --force".into(),
                })
            }
            Status::Stopped => {}
            _ => {
                // SAFETY: kill has no memory effects.
                unsafe { libc::kill(record.pid, libc::SIGKILL) };
                if status == Status::Paused {
                    thaw(&record.cgroup_paths);
                }
                wait_gone(record.pid, record.pid_start_time, Duration::from_secs(10))?;
            }
        }
        cgroups::remove_paths(&record.cgroup_paths)?;
        self.run_late_hooks(&record, hooks::Kind::Poststop);
        locked.remove()?;
        tracing::info!(id, "container deleted");
        Ok(())
    }

    /// Runs poststart or poststop hooks; their failure is logged only.
    fn run_late_hooks(&self, record: &Record, kind: hooks::Kind) {
        let config = record.bundle.join("config.json");
        let spec = match spec::load(&config) {
            Ok(spec) => spec,
            Err(err) => {
                tracing::warn!(id = %record.id, error = %err, "cannot read the bundle's config to run {} hooks", kind.name());
                return;
            }
        };
        // The state costs a few reads (/proc, the freezer, /etc/passwd),
        // so it is built only for hooks that will read it.
        if hooks::of(&spec, kind).is_empty() {
            return;
        }
        let mut state = record.oci_state();
        if kind == hooks::Kind::Poststop {
            state.status = Status::Stopped;
        }
        hooks::run_all_logged(&spec, kind, &state);
    }

    /// Creates and starts a container, waits for its init to exit while
    /// forwarding signals to it, deletes it (unless `keep`), and returns
    /// the exit status (128+N for a death by signal N). With `detach`,
    /// returns 0 once the container runs.
    pub fn run(&self, id: &str, options: &CreateOptions, detach: bool, keep: bool) -> Result<i32> {
        let spec = match protect_binary_for(options)? {
            Some(spec) => spec,
            None => spec::load(&options.bundle.join("config.json"))?,
        };
        let terminal = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
        let console = match (&options.console_socket, terminal) {
            (Some(path), _) => Console::Socket(path.clone()),
            (None, true) if detach => {
                return Err(Error::InvalidArgument(
                    "\"process.terminal\" is true: a detached run needs --console-socket".into(),
                ))
            }
            (None, true) => Console::Internal,
            (None, false) => Console::None,
        };
        crate::wait::run_and_wait(self, id, options, detach, keep, |runtime, id, options| {
            runtime.create_with(id, options, console, Some(spec))
        })
    }
}

/// Undoes a partial `create`: kills the init, removes the cgroup and the
/// state directory.
struct Cleanup {
    locked: Option<Locked>,
    cgroup: Option<Cgroup>,
    child: Option<i32>,
}

impl Cleanup {
    fn disarm(&mut self) {
        self.locked = None;
        self.cgroup = None;
        self.child = None;
    }

    fn run(&mut self) {
        if let Some(pid) = self.child.take() {
            // SAFETY: kill and waitpid on our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        if let Some(cgroup) = self.cgroup.take() {
            if let Err(err) = cgroup.remove() {
                tracing::warn!(error = %err, "remove cgroup of failed create");
            }
        }
        if let Some(locked) = self.locked.take() {
            if let Err(err) = locked.remove() {
                tracing::warn!(error = %err, "remove state of failed create");
            }
        }
    }
}

/// Clones a child into the namespaces in `flags`, like fork(2): the child
/// continues here on a copy of the stack and returns 0.
fn clone_process(flags: libc::c_int) -> io::Result<i32> {
    // SAFETY: clone without CLONE_VM and with a null stack behaves like
    // fork: the child gets a copy of the address space. The runtime is
    // single-threaded here, so no lock can be held by a missing thread.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINVAL) || err.raw_os_error() == Some(libc::EPERM) {
            return Err(io::Error::new(
                err.kind(),
                format!("{err} (namespaces requested: {:#x})", flags),
            ));
        }
        return Err(err);
    }
    Ok(ret as i32)
}

/// Waits for the init's "ready" or error message, running `run_hooks` when
/// the init requests the runtime's hooks.
fn wait_ready(
    sync: &OwnedFd,
    pid: i32,
    mut run_hooks: impl FnMut() -> Result<()>,
    mut on_listener: impl FnMut(OwnedFd) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; 65536];
    let n = loop {
        match crate::seccomp::notify::recv_message(sync, &mut buf)? {
            (1, None) if buf[0] == MSG_HOOKS => run_hooks()?,
            (1, Some(listener)) if buf[0] == crate::seccomp::notify::MSG_SECCOMP => on_listener(listener)?,
            (n, _) => break n,
        }
    };
    match buf.first() {
        Some(&MSG_READY) if n == 1 => Ok(()),
        Some(&MSG_ERROR) if n > 0 => Err(Error::Init(String::from_utf8_lossy(&buf[1..n]).into_owned())),
        _ => {
            let mut status = 0;
            // SAFETY: waitpid on our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            Err(Error::Init(format!(
                "the init exited during set-up ({})",
                describe_status(status)
            )))
        }
    }
}

/// Returns the number of sockets that systemd passed to this process, from
/// LISTEN_FDS, when LISTEN_PID names this process: those fds (3 onwards)
/// go on to the container, with LISTEN_FDS and LISTEN_PID set for it.
fn socket_activation_fds() -> Option<u32> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    if pid != std::process::id() {
        return None;
    }
    std::env::var("LISTEN_FDS").ok()?.parse().ok().filter(|&n: &u32| n > 0)
}

pub(crate) fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status}")
    }
}

/// Converts a wait status into a shell-style exit code.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// Writes `pid` to the --pid-file `path` (relative to the working
/// directory), atomically.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().context(|| "read the working directory".to_owned())?.join(path)
    };
    state::write_atomic(&path, pid.to_string().as_bytes(), 0o644)
}

/// Thaws a frozen cgroup so that the SIGKILL just sent can be delivered.
fn thaw(paths: &[PathBuf]) {
    for path in paths {
        let _ = std::fs::write(path.join("freezer.state"), "THAWED");
        let _ = std::fs::write(path.join("cgroup.freeze"), "0");
    }
}

/// Waits until the process `pid` (started at `start_time`) has exited.
fn wait_gone(pid: i32, start_time: u64, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(100);
    while state::process_alive(pid, start_time) {
        // Reap it if it is our own child.
        // SAFETY: waitpid with WNOHANG on a pid.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        if Instant::now() >= deadline {
            return Err(Error::io(
                format!("wait for pid {pid} to exit"),
                io::Error::from_raw_os_error(libc::ETIMEDOUT),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a bundle whose init has CAP_SYS_PTRACE, so it needs the
    /// protected view, and returns its directory.
    fn ptrace_bundle() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("create a bundle directory");
        let mut config = crate::spec::default_config(false, 0, 0);
        config["process"]["capabilities"]["bounding"]
            .as_array_mut()
            .expect("bounding set")
            .push("CAP_SYS_PTRACE".into());
        std::fs::write(dir.path().join("config.json"), config.to_string()).expect("write config.json");
        dir
    }

    #[test]
    fn no_reexec_rejects_unprotected_binary() {
        let bundle = ptrace_bundle();
        let options = CreateOptions {
            bundle: bundle.path().to_owned(),
            no_reexec: true,
            ..CreateOptions::default()
        };

        // The test binary runs from a writable file, and nothing called
        // sealed_exe::ensure in this process.
        let err = protect_binary_for(&options).expect_err("an unprotected process must not create this container");

        assert!(err.to_string().contains("protected view"), "{err}");
    }

    #[test]
    fn no_reexec_accepts_unexposed_init() {
        let dir = tempfile::tempdir().expect("create a bundle directory");
        let config = crate::spec::default_config(false, 0, 0);
        std::fs::write(dir.path().join("config.json"), config.to_string()).expect("write config.json");
        let options = CreateOptions {
            bundle: dir.path().to_owned(),
            no_reexec: true,
            ..CreateOptions::default()
        };

        assert!(protect_binary_for(&options).is_ok());
    }
}
