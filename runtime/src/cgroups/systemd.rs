//! runc's `--systemd-cgroup` form of `linux.cgroupsPath`, mapped onto the
//! cgroupfs.
//!
//! With `--systemd-cgroup`, engines write `linux.cgroupsPath` as
//! `SLICE:PREFIX:NAME` and expect the container in the scope unit
//! `PREFIX-NAME.scope` under `SLICE`. This runtime does not talk to systemd:
//! it creates the directories itself at the path systemd would give that
//! scope (`system.slice:docker:abc` becomes `/system.slice/docker-abc.scope`,
//! and the slice `a-b.slice` nests as `/a.slice/a-b.slice`). On a host where
//! systemd runs, systemd does not know such a scope and may move or remove
//! it. On a host without systemd, the layout is all that matters.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The slice used when the first part of the path is empty.
const DEFAULT_SLICE: &str = "system.slice";
/// The unit prefix used when `linux.cgroupsPath` is empty.
const DEFAULT_PREFIX: &str = "conman";

/// Turns a `SLICE:PREFIX:NAME` cgroups path into a path relative to the
/// hierarchy's root.
pub fn container_path(cgroups_path: &str, id: &str) -> Result<PathBuf> {
    let (slice, prefix, name) = if cgroups_path.is_empty() {
        (DEFAULT_SLICE, DEFAULT_PREFIX, id)
    } else {
        let parts: Vec<&str> = cgroups_path.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(Error::InvalidConfig(format!(
                "\"linux.cgroupsPath\" \"{cgroups_path}\" must have the form SLICE:PREFIX:NAME with --systemd-cgroup"
            )));
        };
        (if slice.is_empty() { DEFAULT_SLICE } else { slice }, prefix, name)
    };
    if name.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "\"linux.cgroupsPath\" \"{cgroups_path}\" has an empty unit name"
        )));
    }
    for part in [prefix, name] {
        if part.contains('/') {
            return Err(Error::InvalidConfig(format!(
                "\"linux.cgroupsPath\" \"{cgroups_path}\": \"{part}\" must not contain '/'"
            )));
        }
    }
    if name.ends_with(".slice") {
        // The container is a slice of its own, at the place its name gives.
        return expand_slice(name, cgroups_path);
    }
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Ok(expand_slice(slice, cgroups_path)?.join(unit))
}

/// Expands a slice name into its directory path: `a-b-c.slice` is
/// `a.slice/a-b.slice/a-b-c.slice`, and `-.slice` is the root.
fn expand_slice(slice: &str, whole: &str) -> Result<PathBuf> {
    let invalid = || {
        Error::InvalidConfig(format!(
            "\"linux.cgroupsPath\" \"{whole}\": \"{slice}\" is not a valid slice name"
        ))
    };
    let base = slice.strip_suffix(".slice").ok_or_else(invalid)?;
    if base == "-" {
        return Ok(PathBuf::new());
    }
    if base.is_empty() || base.contains('/') || base.starts_with('-') || base.ends_with('-') || base.contains("--") {
        return Err(invalid());
    }
    let mut path = PathBuf::new();
    let mut prefix = String::new();
    for part in base.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_under_slice() {
        assert_eq!(
            container_path("system.slice:docker:abc", "x").unwrap(),
            PathBuf::from("system.slice/docker-abc.scope")
        );
        assert_eq!(
            container_path("machine-vm.slice:libpod:c1", "x").unwrap(),
            PathBuf::from("machine.slice/machine-vm.slice/libpod-c1.scope")
        );
        assert_eq!(container_path(":crio:c2", "x").unwrap(), PathBuf::from("system.slice/crio-c2.scope"));
        assert_eq!(container_path("-.slice::c3", "x").unwrap(), PathBuf::from("c3.scope"));
    }

    #[test]
    fn empty_path_uses_the_id() {
        assert_eq!(container_path("", "c9").unwrap(), PathBuf::from("system.slice/conman-c9.scope"));
    }

    #[test]
    fn slice_as_unit() {
        assert_eq!(
            container_path("system.slice:x:user-pod.slice", "x").unwrap(),
            PathBuf::from("user.slice/user-pod.slice")
        );
    }

    #[test]
    fn bad_forms() {
        assert!(container_path("/plain/path", "x").is_err());
        assert!(container_path("a:b", "x").is_err());
        assert!(container_path("system:docker:abc", "x").is_err());
        assert!(container_path("a--b.slice:p:n", "x").is_err());
        assert!(container_path("system.slice:p:", "x").is_err());
        assert!(container_path("system.slice:p:a/b", "x").is_err());
    }
}
