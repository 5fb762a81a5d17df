//! The overlay that keeps a `--rootfs DIR` unchanged: DIR is the lower
//! layer, and the container writes into `upper/` of its own directory.
//! The monitor mounts it on `merged/` before each run and unmounts it
//! after; `rm` and `start` unmount one that a killed monitor left.

use std::fs;
use std::io;
use std::path::Path;

use crate::error::{Error, Result};

pub const MERGED_DIR: &str = "merged";
const UPPER_DIR: &str = "upper";
const WORK_DIR: &str = "work";

/// Checks that `lower` can be named in overlay mount options, which use
/// `,` and `:` as separators.
pub fn check_lower(lower: &Path) -> Result<()> {
    let text = lower.to_string_lossy();
    if text.contains(',') || text.contains(':') {
        return Err(Error::InvalidArgument(format!(
            "--rootfs {text}: a path with ',' or ':' cannot be an overlay layer; use --rootfs-rw to use it directly"
        )));
    }
    Ok(())
}

/// Creates the upper, work and mount-point directories in `dir`.
pub fn prepare(dir: &Path) -> Result<()> {
    for name in [UPPER_DIR, WORK_DIR, MERGED_DIR] {
        let path = dir.join(name);
        fs::create_dir_all(&path).map_err(|err| Error::io(format!("create {}", path.display()), err))?;
    }
    Ok(())
}

/// Mounts the overlay of `lower` on `dir/merged`.
pub fn mount(dir: &Path, lower: &Path) -> Result<()> {
    let merged = dir.join(MERGED_DIR);
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        dir.join(UPPER_DIR).display(),
        dir.join(WORK_DIR).display()
    );
    nix::mount::mount(Some("overlay"), &merged, Some("overlay"), nix::mount::MsFlags::empty(), Some(options.as_str()))
        .map_err(|errno| Error::io(format!("mount an overlay of {} on {}", lower.display(), merged.display()), errno.into()))
}

/// Unmounts `dir/merged` if something is mounted there.
pub fn unmount(dir: &Path) -> Result<()> {
    let merged = dir.join(MERGED_DIR);
    loop {
        match nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            // EINVAL: not a mount point (any more); ENOENT: no directory.
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(errno) => {
                return Err(Error::io(format!("unmount {}", merged.display()), io::Error::from(errno)));
            }
        }
    }
}
