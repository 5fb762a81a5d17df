//! Writes to /proc that neither a mount of the container nor a symlink in
//! its rootfs can redirect.
//!
//! The init writes sysctls, `oom_score_adj` and LSM labels through /proc
//! after pivot_root, where the configuration's mounts and the rootfs decide
//! what a path leads to. A bind mount over /proc/sys would take a sysctl
//! value to a host file, and a file in place of /proc/self/attr would
//! swallow an AppArmor profile (CVE-2019-16884 is of this kind). So each
//! write opens /proc, checks that it is the root of a procfs, and resolves
//! the rest beneath it without crossing a mount point or following a magic
//! link.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::error::{Context, Error, Result};
use crate::sys::{openat, openat2, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_XDEV};

/// `f_type` of procfs in statfs(2).
const PROC_SUPER_MAGIC: u64 = 0x9fa0;

/// Inode number of the root directory of every procfs instance.
const PROC_ROOT_INO: u64 = 1;

/// Opens `path`, which must start with `/proc/`, on the procfs mounted at
/// /proc.
pub fn open(path: &str, flags: i32) -> Result<OwnedFd> {
    let relative = path
        .strip_prefix("/proc/")
        .ok_or_else(|| Error::InvalidArgument(format!("{path} is not under /proc")))?;
    let proc = openat(libc::AT_FDCWD, Path::new("/proc"), libc::O_PATH | libc::O_DIRECTORY, 0)
        .context(|| format!("open /proc to reach {path}"))?;
    let stat = nix::sys::stat::fstat(proc.as_raw_fd()).context(|| "stat /proc".to_owned())?;
    if !is_procfs(&proc)? || stat.st_ino != PROC_ROOT_INO {
        return Err(Error::InvalidConfig(format!(
            "/proc in the container is not the root of a procfs, so {path} cannot be written safely"
        )));
    }
    let file = openat2(
        proc.as_raw_fd(),
        Path::new(relative),
        flags,
        0,
        RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|err| {
        if err.raw_os_error() == Some(libc::EXDEV) {
            Error::InvalidConfig(format!("{path} is covered by a mount, so it is not on the container's procfs"))
        } else {
            Error::io(format!("open {path}"), err)
        }
    })?;
    if !is_procfs(&file)? {
        return Err(Error::InvalidConfig(format!("{path} is not on the container's procfs")));
    }
    Ok(file)
}

/// Writes `data` to `path` on procfs with one write(2), as procfs files
/// take each write as one value.
pub fn write(path: &str, data: &[u8]) -> Result<()> {
    let file = open(path, libc::O_WRONLY)?;
    nix::unistd::write(&file, data)
        .context(|| format!("write \"{}\" to {path}", String::from_utf8_lossy(data).trim_end()))?;
    Ok(())
}

fn is_procfs(fd: &OwnedFd) -> Result<bool> {
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is a valid out-parameter for fstatfs.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut stat) } < 0 {
        return Err(Error::last_os("statfs a file on /proc"));
    }
    // f_type is signed in glibc and unsigned in musl.
    #[allow(clippy::unnecessary_cast)]
    let fs_type = stat.f_type as u64;
    Ok(fs_type == PROC_SUPER_MAGIC)
}
