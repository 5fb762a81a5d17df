//! Runs the runtime from a sealed in-memory copy of its own binary.
//!
//! The container's init is cloned from the runtime process, and an `exec`
//! process is forked from it, so until they call execve their
//! `/proc/PID/exe` is the runtime's binary, and processes in the
//! container's pid namespace can see them. Both are non-dumpable, which
//! keeps a container without CAP_SYS_PTRACE (in the host's user namespace)
//! from opening that link. A container with CAP_SYS_PTRACE can still open it,
//! keep the descriptor, and reopen it for writing once no process runs the
//! binary: the attack of CVE-2019-5736. When the runtime runs from a sealed
//! memfd copy, that link leads to the copy, which cannot be written, and
//! never to the file on the host.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use crate::error::{Error, Result};

/// Seals that make the copy immutable: no write, no resize, no change of
/// the seals themselves.
const SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// memfd_create flag (Linux 6.3) that requests an executable memfd, which
/// the `vm.memfd_noexec` sysctl may otherwise refuse.
const MFD_EXEC: libc::c_uint = 0x0010;

/// Name of the memfd, as `/proc/PID/exe` shows it (`/memfd:NAME (deleted)`).
const MEMFD_NAME: &str = "conman-runtime";

/// Re-executes this process from a sealed memfd copy of its binary, with
/// the same arguments and environment, unless it already runs from one.
/// On success it does not return in the original program: the new program
/// starts again from `main`, so a caller must not have done anything
/// before that may not happen twice.
///
/// When the kernel refuses an executable memfd (`vm.memfd_noexec=2`), the
/// runtime goes on from its binary with a warning.
pub fn ensure() -> Result<()> {
    if runs_sealed_copy() {
        set_process_name();
        return Ok(());
    }
    let copy = match sealed_copy() {
        Ok(copy) => copy,
        Err(err) => {
            // NOTE: without the copy, only non-dumpable protects the binary,
            // which is enough for containers without CAP_SYS_PTRACE.
            tracing::warn!(error = %err, "cannot run from a sealed copy of the runtime binary");
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
            copy.as_raw_fd(),
            empty.as_ptr(),
            argv_ptrs.as_ptr(),
            envp_ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    Err(Error::last_os("re-execute the runtime from its sealed copy"))
}

/// Reports whether `/proc/self/exe` is a memfd with the write seal.
fn runs_sealed_copy() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    // SAFETY: fcntl on a descriptor that we own; F_GET_SEALS fails with
    // EINVAL on files that are not memfds.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_WRITE != 0
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
