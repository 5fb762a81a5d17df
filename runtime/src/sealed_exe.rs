//! Runs the runtime from a copy of its own binary that no one can write.
//!
//! The container's init is cloned from the runtime process, and an `exec`
//! process is forked from it, so until they call execve their
//! `/proc/PID/exe` is the runtime's binary, and processes in the
//! container's pid namespace can see them. Both are non-dumpable, which
//! keeps a container without CAP_SYS_PTRACE (in the host's user namespace)
//! from opening that link. A container with CAP_SYS_PTRACE can still open it,
//! keep the descriptor, and reopen it for writing once no process runs the
//! binary: the attack of CVE-2019-5736.
//!
//! So before it does anything else, the runtime re-executes itself from a
//! view of its binary that takes no writes, and that link leads there:
//!
//! 1. a read-only bind mount of the binary that is attached nowhere
//!    (open_tree with OPEN_TREE_CLONE, then mount_setattr), which costs
//!    three syscalls and shares the page cache with the installed file. No
//!    mount namespace ever contains it, so no mount event reaches the host's
//!    mount watchers. A write through it fails with EROFS. It needs
//!    CAP_SYS_ADMIN over the current mount namespace and Linux 5.12.
//! 2. otherwise (rootless, older kernels), a sealed memfd copy of the
//!    binary, which costs a copy of the whole file and its memory for as
//!    long as the process runs. A write through it fails with EPERM.
//!
//! A binary that already lies on a read-only mount is protected as it is,
//! and is not re-executed.
//!
//! `create` and `run` skip the re-execution when no process that may hold
//! CAP_SYS_PTRACE over the runtime's user namespace can see the init before
//! its execve ([`init_needs_protection`]). `exec` then refuses a process
//! that could, for as long as that init still runs the runtime's binary
//! ([`check_exec_exposure`]). Exec processes always run from a protected
//! view, because other processes of the container may see them.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use oci_spec::runtime::{Capability, LinuxNamespaceType, Process, Spec};

use crate::error::{Error, Result};

/// Seals that make the copy immutable: no write, no resize, no change of
/// the seals themselves.
const SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// memfd_create flag (Linux 6.3) that requests an executable memfd, which
/// the `vm.memfd_noexec` sysctl may otherwise refuse.
const MFD_EXEC: libc::c_uint = 0x0010;

/// Name of the memfd, as `/proc/PID/exe` shows it (`/memfd:NAME (deleted)`).
const MEMFD_NAME: &str = "conman-runtime";

/// Re-executes this process from a view of its binary that takes no
/// writes (see the module documentation), with the same arguments and
/// environment, unless it already runs from one. On success it does not
/// return in the original program: the new program starts again from
/// `main`, so a caller must not have done anything before that may not
/// happen twice.
///
/// When neither view can be made (no CAP_SYS_ADMIN, and the kernel refuses
/// an executable memfd with `vm.memfd_noexec=2`), the runtime goes on from
/// its binary with a warning.
pub fn ensure() -> Result<()> {
    if runs_protected_binary() {
        set_process_name();
        return Ok(());
    }
    let executable = match read_only_mount().or_else(|mount_err| {
        tracing::debug!(error = %mount_err, "no read-only mount of the runtime binary; copying it into a sealed memfd");
        sealed_copy()
    }) {
        Ok(executable) => executable,
        Err(err) => {
            // NOTE: without a protected view, only non-dumpable protects the
            // binary, which is enough for containers without CAP_SYS_PTRACE.
            tracing::warn!(error = %err, "cannot run from a sealed copy of the runtime binary");
            FALLBACK_TAKEN.store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
    };

    let argv = to_cstrings(std::env::args_os())?;
    let envp = to_cstrings(std::env::vars_os().map(|(key, value)| {
        let mut entry = key;
        entry.push("=");
        entry.push(value);
        entry
    }))?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|arg| arg.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|entry| entry.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());

    let empty = CString::default();
    // SAFETY: every pointer array is null-terminated and its strings outlive
    // the call; execveat only returns on failure.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            executable.as_raw_fd(),
            empty.as_ptr(),
            argv_ptrs.as_ptr(),
            envp_ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    Err(Error::last_os("re-execute the runtime from its protected binary"))
}

/// Reports whether the init of a container with `spec` must run from a
/// protected view of the runtime's binary. It need not when all of these
/// hold, because then the only processes that can see it before its execve
/// are the container's own, and none of them can open the link of a
/// non-dumpable process of the runtime:
///
/// - the container gets a new pid namespace, so no other container's
///   process or host process in a shared namespace sees the init;
/// - it has no createContainer or startContainer hook, whose programs run in
///   the container while the init still runs the runtime;
/// - its processes cannot hold CAP_SYS_PTRACE in the runtime's user
///   namespace: the container gets a new user namespace, or CAP_SYS_PTRACE
///   is not in the init's bounding set.
///
/// A process added later by `exec` may have CAP_SYS_PTRACE; see
/// [`check_exec_exposure`].
pub fn init_needs_protection(spec: &Spec) -> bool {
    let Some(linux) = spec.linux() else {
        return true;
    };
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    let creates = |kind: LinuxNamespaceType| namespaces.iter().any(|ns| ns.typ() == kind && ns.path().is_none());
    if !creates(LinuxNamespaceType::Pid) {
        return true;
    }
    let in_container_hooks = spec.hooks().as_ref().is_some_and(|hooks| {
        let present = |list: &Option<Vec<oci_spec::runtime::Hook>>| list.as_ref().is_some_and(|l| !l.is_empty());
        present(hooks.create_container()) || present(hooks.start_container())
    });
    if in_container_hooks {
        return true;
    }
    !creates(LinuxNamespaceType::User) && may_hold_ptrace(spec.process().as_ref())
}

/// Reports whether `process` may hold CAP_SYS_PTRACE: it keeps the
/// runtime's capabilities when the spec lists none, and otherwise cannot
/// gain one outside its bounding set.
pub fn may_hold_ptrace(process: Option<&Process>) -> bool {
    match process.and_then(|p| p.capabilities().as_ref()) {
        None => true,
        Some(caps) => caps.bounding().as_ref().is_some_and(|set| set.contains(&Capability::SysPtrace)),
    }
}

/// Returns the device and inode numbers of the file this process runs,
/// which `create` records when the init runs from the unprotected binary.
pub fn own_executable() -> Option<ExecutableId> {
    executable_of("self")
}

/// Device and inode numbers of an executable file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecutableId {
    pub dev: u64,
    pub ino: u64,
}

fn executable_of(pid: &str) -> Option<ExecutableId> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    Some(ExecutableId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Rejects an exec process that may hold CAP_SYS_PTRACE in the runtime's
/// user namespace (`in_user_ns` false) while the container's init still
/// runs `unprotected_init`, the runtime's binary that `create` did not
/// protect: that process could open the init's `/proc/PID/exe` and write to
/// the binary. Once the init has called execve it never runs the runtime
/// again, so one check before the exec suffices.
pub fn check_exec_exposure(
    id: &str,
    init_pid: i32,
    unprotected_init: Option<ExecutableId>,
    process: &Process,
    in_user_ns: bool,
) -> Result<()> {
    let Some(runtime_binary) = unprotected_init else {
        return Ok(());
    };
    if in_user_ns || !may_hold_ptrace(Some(process)) {
        return Ok(());
    }
    let init_exe = executable_of(&init_pid.to_string());
    let init_exited = !std::path::Path::new(&format!("/proc/{init_pid}")).exists();
    // A link that cannot be read (the init is non-dumpable until its
    // execve) counts as the runtime's binary.
    if init_exited || init_exe.is_some_and(|exe| exe != runtime_binary) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "the exec process may hold CAP_SYS_PTRACE, and the init of container \"{id}\" has not started its \
         program yet: start the container first, or exec without CAP_SYS_PTRACE"
    )))
}

/// Reports whether `/proc/self/exe` takes no writes: a memfd with the
/// write seal, or a file on a read-only mount.
pub fn runs_protected_binary() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    // SAFETY: fcntl on a descriptor that we own; F_GET_SEALS fails with
    // EINVAL on files that are not memfds.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & libc::F_SEAL_WRITE != 0 {
        return true;
    }
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: fstatvfs fills the buffer it is given when it returns 0.
    if unsafe { libc::fstatvfs(exe.as_raw_fd(), stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: initialised by the successful call above.
    let stat = unsafe { stat.assume_init() };
    stat.f_flag & libc::ST_RDONLY != 0
}

/// Set when [`ensure`] could make no protected view and went on from the
/// binary; processes forked afterwards inherit it.
static FALLBACK_TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reports whether [`ensure`] went on from the unprotected binary, with a
/// warning, because it could make no protected view.
pub fn fallback_taken() -> bool {
    FALLBACK_TAKEN.load(std::sync::atomic::Ordering::Relaxed)
}

/// Returns an O_PATH descriptor of a read-only bind mount of the running
/// binary that is attached to no mount namespace.
fn read_only_mount() -> io::Result<OwnedFd> {
    let tree = crate::sys::open_tree_clone(std::path::Path::new("/proc/self/exe"), false)?;
    let attrs = crate::mounts::MountAttr {
        attr_set: crate::mounts::MOUNT_ATTR_RDONLY | crate::mounts::MOUNT_ATTR_NODEV | crate::mounts::MOUNT_ATTR_NOSUID,
        ..Default::default()
    };
    crate::sys::mount_setattr(&tree, &attrs, false)?;
    Ok(tree)
}

/// Copies the running binary into a new memfd, seals it and returns a
/// read-only descriptor of it: execve refuses a file that is open for
/// writing (ETXTBSY), so the writable descriptor is closed.
fn sealed_copy() -> io::Result<OwnedFd> {
    let name = CString::new(MEMFD_NAME).expect("no NUL in the memfd name");
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create with a valid C string.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags | MFD_EXEC) };
    if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // Kernels before 6.3 do not know MFD_EXEC; their memfds are
        // executable anyway.
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    }
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    let mut memfd = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut binary = File::open("/proc/self/exe")?;
    io::copy(&mut binary, &mut memfd)?;
    // SAFETY: fcntl on a descriptor that we own.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let read_only = crate::sys::openat(
        libc::AT_FDCWD,
        std::path::Path::new(&crate::sys::fd_path(&memfd)),
        libc::O_RDONLY,
        0,
    )?;
    drop(memfd);
    Ok(read_only)
}

/// Restores the process name that execveat set to the descriptor's number,
/// so that `ps` and /proc/PID/comm show the program's name again.
fn set_process_name() {
    let Some(arg0) = std::env::args_os().next() else {
        return;
    };
    let path = std::path::PathBuf::from(arg0);
    let Some(base) = path.file_name() else {
        return;
    };
    let Ok(name) = CString::new(base.to_os_string().into_vec()) else {
        return;
    };
    // SAFETY: PR_SET_NAME copies at most 16 bytes from a valid C string.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

fn to_cstrings(items: impl Iterator<Item = OsString>) -> Result<Vec<CString>> {
    items
        .map(|item| {
            CString::new(item.into_vec())
                .map_err(|_| Error::InvalidArgument("an argument or environment entry contains a NUL byte".into()))
        })
        .collect()
}
