//! Mount options and mount entries of `config.json`.

use std::ffi::CString;

use oci_spec::runtime::Mount;

use crate::error::{Error, Result};

/// A mount entry's options, split into mount(2) flags, propagation flags and
/// the data string passed to the filesystem.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: libc::c_ulong,
    /// Flags that the options clear (`rw`, `suid`…), for remounts.
    pub cleared: libc::c_ulong,
    pub propagation: Vec<libc::c_ulong>,
    pub data: Vec<String>,
    /// Filesystem data options of a bind mount, which mount(2) ignores for
    /// MS_BIND; kept to be logged as ignored.
    pub ignored_data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
    /// Attributes set and cleared on the mount and every mount below it
    /// (the `r`-prefixed options), with mount_setattr(2).
    pub recursive_attrs: MountAttr,
    /// `idmap` or `ridmap`: an id-mapped bind mount; true for `ridmap`,
    /// which maps the submounts too.
    pub idmap: Option<bool>,
    /// `tmpcopyup`: the tmpfs starts with a copy of what the rootfs has at
    /// its destination.
    pub tmpcopyup: bool,
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
/// The mask of the three exclusive atime modes below.
pub const MOUNT_ATTR_ATIME: u64 = 0x0000_0070;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
pub const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// mount(2)'s MS_NOSYMFOLLOW (Linux 5.10), which the libc crate lacks.
pub const MS_NOSYMFOLLOW: libc::c_ulong = 256;

impl MountAttr {
    fn set(&mut self, flag: u64) {
        self.attr_set |= flag;
        self.attr_clr &= !flag;
    }

    fn clear(&mut self, flag: u64) {
        self.attr_clr |= flag;
        self.attr_set &= !flag;
    }

    /// Selects one of the atime modes, which the kernel sets as a group.
    fn atime(&mut self, mode: u64) {
        self.attr_clr |= MOUNT_ATTR_ATIME;
        self.attr_set = (self.attr_set & !MOUNT_ATTR_ATIME) | mode;
    }

    pub fn is_empty(&self) -> bool {
        self.attr_set == 0 && self.attr_clr == 0
    }
}

impl MountOptions {
    pub fn data_cstring(&self) -> Option<CString> {
        if self.data.is_empty() {
            None
        } else {
            CString::new(self.data.join(",")).ok()
        }
    }
}

/// Parses the `options` of a mount entry. Options that mount(2) has flags for
/// become flags; other options are handed to the filesystem as data, except
/// on bind mounts, which have no filesystem to take them: there they go to
/// `ignored_data`, as runc and the kernel ignore them too.
pub fn parse_options(mount: &Mount) -> Result<MountOptions> {
    let mut parsed = MountOptions::default();
    let bind_type = mount.typ().as_deref() == Some("bind");
    for option in mount.options().iter().flatten() {
        let option = option.as_str();
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match option {
            "defaults" => (0, 0),
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "atime" => (0, libc::MS_NOATIME),
            "noatime" => (libc::MS_NOATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "silent" => (libc::MS_SILENT, 0),
            "loud" => (0, libc::MS_SILENT),
            "bind" => {
                parsed.bind = true;
                (0, 0)
            }
            "rbind" => {
                parsed.bind = true;
                parsed.recursive = true;
                (0, 0)
            }
            "private" => push(&mut parsed, libc::MS_PRIVATE),
            "rprivate" => push(&mut parsed, libc::MS_PRIVATE | libc::MS_REC),
            "shared" => push(&mut parsed, libc::MS_SHARED),
            "rshared" => push(&mut parsed, libc::MS_SHARED | libc::MS_REC),
            "slave" => push(&mut parsed, libc::MS_SLAVE),
            "rslave" => push(&mut parsed, libc::MS_SLAVE | libc::MS_REC),
            "unbindable" => push(&mut parsed, libc::MS_UNBINDABLE),
            "runbindable" => push(&mut parsed, libc::MS_UNBINDABLE | libc::MS_REC),
            "nosymfollow" => (MS_NOSYMFOLLOW, 0),
            "symfollow" => (0, MS_NOSYMFOLLOW),
            "rro" => recursive(&mut parsed, |a| a.set(MOUNT_ATTR_RDONLY)),
            "rrw" => recursive(&mut parsed, |a| a.clear(MOUNT_ATTR_RDONLY)),
            "rnosuid" => recursive(&mut parsed, |a| a.set(MOUNT_ATTR_NOSUID)),
            "rsuid" => recursive(&mut parsed, |a| a.clear(MOUNT_ATTR_NOSUID)),
            "rnodev" => recursive(&mut parsed, |a| a.set(MOUNT_ATTR_NODEV)),
            "rdev" => recursive(&mut parsed, |a| a.clear(MOUNT_ATTR_NODEV)),
            "rnoexec" => recursive(&mut parsed, |a| a.set(MOUNT_ATTR_NOEXEC)),
            "rexec" => recursive(&mut parsed, |a| a.clear(MOUNT_ATTR_NOEXEC)),
            "rnodiratime" => recursive(&mut parsed, |a| a.set(MOUNT_ATTR_NODIRATIME)),
            "rdiratime" => recursive(&mut parsed, |a| a.clear(MOUNT_ATTR_NODIRATIME)),
            "rnosymfollow" => recursive(&mut parsed, |a| a.set(MOUNT_ATTR_NOSYMFOLLOW)),
            "rsymfollow" => recursive(&mut parsed, |a| a.clear(MOUNT_ATTR_NOSYMFOLLOW)),
            "rnoatime" => recursive(&mut parsed, |a| a.atime(MOUNT_ATTR_NOATIME)),
            "rstrictatime" => recursive(&mut parsed, |a| a.atime(MOUNT_ATTR_STRICTATIME)),
            "rrelatime" => recursive(&mut parsed, |a| a.atime(MOUNT_ATTR_RELATIME)),
            // The kernel has no "no atime mode": these restore relatime,
            // its default.
            "ratime" | "rnorelatime" | "rnostrictatime" => recursive(&mut parsed, |a| a.atime(MOUNT_ATTR_RELATIME)),
            "idmap" => {
                parsed.idmap = Some(parsed.idmap.unwrap_or(false));
                (0, 0)
            }
            "ridmap" => {
                parsed.idmap = Some(true);
                (0, 0)
            }
            "tmpcopyup" => {
                parsed.tmpcopyup = true;
                (0, 0)
            }
            "copy-symlink" => {
                return Err(Error::InvalidConfig(format!(
                    "mount option \"copy-symlink\" on \"{}\" is not supported yet",
                    mount.destination().display()
                )))
            }
            other => {
                parsed.data.push(other.to_owned());
                (0, 0)
            }
        };
        parsed.flags = (parsed.flags | set) & !clear;
        parsed.cleared |= clear;
    }
    if bind_type {
        parsed.bind = true;
    }
    let has_mappings = mount.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || mount.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if has_mappings && parsed.idmap.is_none() {
        // Mappings on a mount ask for an id-mapped mount, as the option does.
        parsed.idmap = Some(parsed.recursive);
    }
    if parsed.idmap.is_some() && !parsed.bind {
        return Err(Error::InvalidConfig(format!(
            "mount \"{}\" is id-mapped (idmap, ridmap or uidMappings), which needs a bind mount",
            mount.destination().display()
        )));
    }
    if parsed.tmpcopyup && mount.typ().as_deref() != Some("tmpfs") {
        return Err(Error::InvalidConfig(format!(
            "mount option \"tmpcopyup\" on \"{}\" needs a tmpfs mount",
            mount.destination().display()
        )));
    }
    if parsed.bind {
        parsed.ignored_data = std::mem::take(&mut parsed.data);
    }
    Ok(parsed)
}

fn recursive(parsed: &mut MountOptions, change: impl FnOnce(&mut MountAttr)) -> (libc::c_ulong, libc::c_ulong) {
    change(&mut parsed.recursive_attrs);
    (0, 0)
}

fn push(parsed: &mut MountOptions, flag: libc::c_ulong) -> (libc::c_ulong, libc::c_ulong) {
    parsed.propagation.push(flag);
    (0, 0)
}

/// Parses `rootfsPropagation` into mount flags; runc's default is `rslave`
/// when the field is absent, so host mounts appear in the container but the
/// container's mounts never propagate to the host.
pub fn rootfs_propagation(value: Option<&str>) -> Result<libc::c_ulong> {
    Ok(match value.unwrap_or("") {
        "" => libc::MS_SLAVE | libc::MS_REC,
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        other => {
            return Err(Error::InvalidConfig(format!(
                "invalid \"linux.rootfsPropagation\" \"{other}\""
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    fn mount(typ: &str, options: &[&str]) -> Mount {
        MountBuilder::default()
            .destination("/x")
            .typ(typ)
            .source("src")
            .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    #[test]
    fn flags_and_data() {
        let parsed = parse_options(&mount("tmpfs", &["nosuid", "ro", "mode=755", "size=1k"])).unwrap();
        assert_eq!(parsed.flags, libc::MS_NOSUID | libc::MS_RDONLY);
        assert_eq!(parsed.data, vec!["mode=755", "size=1k"]);
        assert!(!parsed.bind);
    }

    #[test]
    fn later_option_wins() {
        let parsed = parse_options(&mount("tmpfs", &["ro", "rw"])).unwrap();
        assert_eq!(parsed.flags & libc::MS_RDONLY, 0);
    }

    #[test]
    fn bind_with_propagation() {
        let parsed = parse_options(&mount("none", &["rbind", "rprivate", "ro"])).unwrap();
        assert!(parsed.bind);
        assert!(parsed.recursive);
        assert_eq!(parsed.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
    }

    #[test]
    fn recursive_attributes() {
        let parsed = parse_options(&mount("bind", &["rbind", "rro", "rnosuid", "rnoatime", "rrw"])).unwrap();
        let attrs = parsed.recursive_attrs;
        assert_eq!(attrs.attr_set, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOATIME);
        assert_eq!(attrs.attr_clr, MOUNT_ATTR_RDONLY | MOUNT_ATTR_ATIME);
    }

    #[test]
    fn idmap_needs_bind() {
        assert_eq!(parse_options(&mount("bind", &["rbind", "ridmap"])).unwrap().idmap, Some(true));
        assert!(parse_options(&mount("tmpfs", &["idmap"])).is_err());
        assert!(parse_options(&mount("bind", &["tmpcopyup"])).is_err());
    }

    #[test]
    fn bind_ignores_filesystem_data() {
        let parsed = parse_options(&mount("bind", &["rbind", "nosuid", "mode=755", "size=1k"])).unwrap();
        assert!(parsed.bind);
        assert_eq!(parsed.flags & libc::MS_NOSUID, libc::MS_NOSUID);
        assert!(parsed.data.is_empty(), "{:?}", parsed.data);
        assert_eq!(parsed.ignored_data, ["mode=755", "size=1k"]);
    }
}
