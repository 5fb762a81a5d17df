//! The container's init process, from clone(2) to execve(2).
//!
//! The runtime clones the init directly (no re-exec of the runtime binary)
//! and the init runs the code in this module in the container's new
//! namespaces. It waits for the parent to write id mappings and place it in
//! its cgroup, builds the root filesystem, applies the process attributes,
//! reports "ready" on the sync socket, then blocks reading the exec FIFO until
//! `start` writes to it, and finally calls execve. Every step that can fail
//! runs before "ready", so `create` reports it; after "ready" only execve
//! remains.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::Spec;

use crate::error::{Context, Error, Result};
use crate::hooks;
use crate::namespaces::{self, NamespacePlan};
use crate::process;
use crate::rootfs::{self, RootfsContext};
use crate::sys;
use crate::terminal;

/// Message bytes on the sync socket between the runtime and the init.
pub const MSG_GO: u8 = b'G';
pub const MSG_READY: u8 = b'R';
pub const MSG_ERROR: u8 = b'E';
/// The init requests that the runtime run the prestart and createRuntime hooks.
pub const MSG_HOOKS: u8 = b'H';

/// Everything the init needs, prepared by the parent before clone.
pub struct InitArgs<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub namespaces: &'a NamespacePlan,
    pub cgroup_path: &'a Path,
    pub sync: Option<OwnedFd>,
    /// The exec FIFO, opened read-write so that opening never blocks; the
    /// init blocks in read(2) on it until `start` writes one byte.
    pub fifo: OwnedFd,
    /// Connected console socket, when `process.terminal` is set.
    pub console: Option<OwnedFd>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// Sockets passed by systemd socket activation (LISTEN_FDS), already
    /// counted in `preserve_fds`.
    pub listen_fds: Option<u32>,
    /// The compiled `linux.seccomp` filter.
    pub seccomp: Option<&'a crate::seccomp::Filter>,
    /// Fork the program after `start` and stay as its reaper
    /// ([`crate::reaper`]).
    pub reaper_init: bool,
}

/// Runs the init and never returns: the process either becomes the
/// container's program or exits.
pub fn run(mut args: InitArgs) -> ! {
    // Keep the runtime's own descriptors clear of the range that
    // --preserve-fds hands to the container. The sync socket is owned here,
    // so that an error from `setup` can still be reported on it.
    let reserved = 3 + args.preserve_fds as i32;
    let Some(sync) = args.sync.take().and_then(|fd| sys::move_fd_above(fd, reserved).ok()) else {
        // SAFETY: without the socket nothing can be reported.
        unsafe { libc::_exit(1) }
    };
    match setup(args, &sync) {
        Ok(never) => match never {},
        Err(err) => {
            let mut message = vec![MSG_ERROR];
            message.extend_from_slice(err.to_string().as_bytes());
            let _ = send(&sync, &message);
            // SAFETY: _exit skips destructors and buffered stdio copied from
            // the parent, which must not be flushed twice.
            unsafe { libc::_exit(1) }
        }
    }
}

pub enum Never {}

fn setup(mut args: InitArgs, sync: &OwnedFd) -> Result<Never> {
    reset_signals();
    // If `create` dies during set-up, the half-built container dies too.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).context(|| "set parent death signal".to_owned())?;

    let reserved = 3 + args.preserve_fds as i32;
    args.fifo = sys::move_fd_above(args.fifo, reserved).context(|| "move exec fifo".to_owned())?;
    if let Some(console) = args.console.take() {
        args.console = Some(sys::move_fd_above(console, reserved).context(|| "move console socket".to_owned())?);
    }

    wait_for_go(sync)?;
    // Until execve, the init runs the runtime's own binary: keep other
    // processes (including the container's) from ptracing it or opening its
    // /proc/PID/exe or memory. Not earlier: a runtime without root writes
    // the id maps into /proc/PID, which a non-dumpable process keeps owned
    // by root. Nothing of the container runs before "go".
    nix::sys::prctl::set_dumpable(false).context(|| "set non-dumpable".to_owned())?;

    namespaces::join_all(args.namespaces)?;
    if args.namespaces.new_user {
        // The mappings are written: become root of the new user namespace.
        // SAFETY: plain syscalls.
        if unsafe { libc::setresgid(0, 0, 0) } < 0 || unsafe { libc::setresuid(0, 0, 0) } < 0 {
            return Err(Error::last_os("become root in the user namespace"));
        }
    }
    if args.namespaces.new_cgroup {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).context(|| "create cgroup namespace".to_owned())?;
    }
    if args.namespaces.new_time {
        let linux = args.spec.linux().as_ref().expect("checked by spec::check_supported");
        crate::attributes::create_time_namespace(linux.time_offsets().as_ref())?;
    }
    set_hostname(args.spec)?;

    // SAFETY: plain syscall; device nodes get exactly the modes requested.
    unsafe { libc::umask(0) };
    let process = args.spec.process().as_ref().expect("checked by spec::check_supported");
    let terminal = process.terminal().unwrap_or(false);
    let ctx = RootfsContext {
        spec: args.spec,
        bundle: args.bundle,
        rootfs: args.rootfs,
        in_user_namespace: args.namespaces.in_user_namespace,
        cgroup_namespace: args.namespaces.new_cgroup,
        cgroup_path: args.cgroup_path,
        terminal,
        idmap_namespaces: &args.namespaces.idmap_mounts,
        shared_mount_namespace: !args.namespaces.has_mount,
    };
    let root = rootfs::prepare_root(&ctx)?;
    rootfs::mount_all(&ctx, root.as_raw_fd())?;
    rootfs::create_devices(&ctx, root.as_raw_fd())?;
    // As runc: a cwd missing from the rootfs is created. A cwd through a
    // magic link such as /proc/self/fd/N fails here (ELOOP).
    if rootfs::open_in_root(root.as_raw_fd(), process.cwd(), libc::O_PATH).is_err() {
        rootfs::mkdir_all_in_root(root.as_raw_fd(), process.cwd()).map_err(|err| match err {
            Error::Io { context, source } => {
                Error::io(format!("process cwd \"{}\": {context}", process.cwd().display()), source)
            }
            other => other,
        })?;
    }

    // The host's /proc is still mounted: /proc/self names the host pid.
    let host_pid: i32 = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    let hook_state = |status| crate::state::OciState {
        oci_version: crate::state::OCI_VERSION.into(),
        id: args.id.to_owned(),
        status,
        pid: host_pid,
        bundle: args.bundle.to_owned(),
        annotations: args.spec.annotations().clone().unwrap_or_default(),
        rootfs: args.rootfs.to_owned(),
        created: String::new(),
        owner: String::new(),
    };
    let runtime_hooks = !hooks::of(args.spec, hooks::Kind::Prestart).is_empty()
        || !hooks::of(args.spec, hooks::Kind::CreateRuntime).is_empty();
    if runtime_hooks {
        send(sync, &[MSG_HOOKS])?;
        wait_for_go(sync)?;
    }
    if !hooks::of(args.spec, hooks::Kind::CreateContainer).is_empty() {
        // As in runc, createContainer hooks start in the root filesystem
        // (mounted, not yet the root), so relative paths land in it.
        std::env::set_current_dir(args.rootfs)
            .context(|| format!("chdir to the rootfs {} for the createContainer hooks", args.rootfs.display()))?;
    }
    hooks::run_all(args.spec, hooks::Kind::CreateContainer, &hook_state(crate::state::Status::Creating))?;

    rootfs::enter_root(args.spec, &root, args.rootfs, args.no_pivot, !args.namespaces.has_mount)?;
    drop(root);

    if terminal {
        let console = args.console.take().ok_or_else(|| Error::Init("terminal requested without a console socket".into()))?;
        setup_terminal(process, &console)?;
    }
    rootfs::readonly_tmpfs_mounts(args.spec, args.namespaces.in_user_namespace)?;
    rootfs::apply_sysctl(args.spec)?;
    rootfs::mask_paths(args.spec)?;
    rootfs::readonly_paths(args.spec, args.namespaces.in_user_namespace)?;
    if args.spec.root().as_ref().is_some_and(|r| r.readonly().unwrap_or(false)) {
        rootfs::readonly_root(args.namespaces.in_user_namespace)?;
    }

    if let Some(score) = process.oom_score_adj() {
        crate::procfs::write("/proc/self/oom_score_adj", score.to_string().as_bytes())?;
    }
    if !args.no_new_keyring {
        join_session_keyring(args.id)?;
    }
    let activated;
    let process = match args.listen_fds {
        Some(count) => {
            // The program gets the sockets as systemd would pass them: at
            // fd 3 onwards, for its own pid in its pid namespace.
            // NOTE: with `reaper_init` the program is a child of this
            // process, so LISTEN_PID names the init and not the program.
            let mut copy = process.clone();
            let mut env = copy.env().clone().unwrap_or_default();
            env.retain(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="));
            env.push(format!("LISTEN_FDS={count}"));
            env.push(format!("LISTEN_PID={}", std::process::id()));
            copy.set_env(Some(env));
            activated = copy;
            &activated
        }
        None => process,
    };
    let exec = process::prepare(process, args.spec.linux().as_ref(), false, args.seccomp, &mut |listener| {
        crate::seccomp::notify::send_listener(sync, &listener)
    })?;

    prepare_descriptors(args.preserve_fds)?;
    nix::sys::prctl::set_pdeathsig(None).context(|| "clear parent death signal".to_owned())?;

    send(sync, &[MSG_READY])?;

    wait_for_start(&args.fifo)?;
    drop(args.fifo);

    // startContainer hooks run in the container, after `start`: `create`
    // has returned, so a failure can only be reported on stderr, and the
    // container stops.
    if let Err(err) = hooks::run_all(args.spec, hooks::Kind::StartContainer, &hook_state(crate::state::Status::Created)) {
        let message = format!("conman-runtime: {err}\n");
        // SAFETY: write to stderr and exit without running destructors.
        unsafe {
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::_exit(1)
        }
    }

    if args.reaper_init {
        crate::reaper::fork_program(exec, terminal)
    }
    exec.exec()
}

/// Restores default signal handling: the runtime may have blocked signals to
/// forward them, and Rust ignores SIGPIPE, which would survive execve.
pub(crate) fn reset_signals() {
    // SAFETY: resetting dispositions and the mask of this single-threaded
    // process.
    unsafe {
        for signal in 1..libc::SIGRTMAX() {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Sends a message to the runtime. MSG_NOSIGNAL: a runtime that has
/// already gone (a detached exec into a paused container) must not kill
/// the sender with SIGPIPE.
pub(crate) fn send(sync: &OwnedFd, message: &[u8]) -> Result<()> {
    nix::sys::socket::send(sync.as_raw_fd(), message, nix::sys::socket::MsgFlags::MSG_NOSIGNAL)
        .context(|| "write to sync socket".to_owned())?;
    Ok(())
}

pub(crate) fn wait_for_go(sync: &OwnedFd) -> Result<()> {
    let mut buf = [0u8; 1];
    let n = nix::unistd::read(sync.as_raw_fd(), &mut buf).context(|| "read from sync socket".to_owned())?;
    if n != 1 || buf[0] != MSG_GO {
        return Err(Error::Init("the runtime aborted the set-up".into()));
    }
    Ok(())
}

fn set_hostname(spec: &Spec) -> Result<()> {
    if let Some(hostname) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(hostname).context(|| format!("set hostname \"{hostname}\""))?;
    }
    if let Some(domain) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        // SAFETY: valid pointer and length.
        if unsafe { libc::setdomainname(domain.as_ptr().cast(), domain.len()) } < 0 {
            return Err(Error::last_os(format!("set domainname \"{domain}\"")));
        }
    }
    Ok(())
}

pub(crate) fn setup_terminal(process: &oci_spec::runtime::Process, console: &OwnedFd) -> Result<()> {
    let (master, slave) = terminal::open_pty()?;
    rootfs::mount_console(&slave)?;
    if let Some(size) = process.console_size() {
        terminal::resize(master.as_raw_fd(), size.height() as u16, size.width() as u16)?;
    }
    terminal::send_fd(console.as_raw_fd(), master.as_raw_fd())?;
    drop(master);
    terminal::give_to_user(&slave, process.user().uid())?;
    terminal::become_session_leader(&slave)?;
    Ok(())
}

/// Joins a new session keyring named after the container, so that the
/// container does not share the host's session keyring.
fn join_session_keyring(id: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = CString::new(format!("_ses.{}", &id[..id.len().min(64)])).expect("ids contain no NUL");
    // SAFETY: keyctl with a valid C string.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        // Kernels without keyrings, or seccomp profiles of a parent
        // container, refuse keyctl; the container then shares the keyring
        // it was given, as with runc.
        if matches!(err.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EACCES)) {
            return Ok(());
        }
        return Err(Error::io("join a new session keyring", err));
    }
    Ok(())
}

/// Marks every descriptor above stdio and the preserved ones close-on-exec,
/// and clears the flag on the preserved ones.
pub(crate) fn prepare_descriptors(preserve_fds: u32) -> Result<()> {
    sys::cloexec_from(3 + preserve_fds).context(|| "mark descriptors close-on-exec".to_owned())?;
    for fd in 3..3 + preserve_fds as i32 {
        sys::set_cloexec(fd, false).context(|| format!("preserve fd {fd}"))?;
    }
    Ok(())
}

fn wait_for_start(fifo: &OwnedFd) -> Result<()> {
    let mut buf = [0u8; 1];
    loop {
        match nix::unistd::read(fifo.as_raw_fd(), &mut buf) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(Error::Init("exec fifo closed before start".into())),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(Error::errno("read exec fifo", errno)),
        }
    }
}
