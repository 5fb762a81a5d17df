//! The container's root filesystem: mounts, /dev, pivot_root, masked and
//! read-only paths. Everything here runs in the container's init, inside its
//! new mount namespace.
//!
//! Every path taken from the configuration is resolved inside the rootfs with
//! openat2(RESOLVE_IN_ROOT), so a symlink or `..` in the rootfs cannot lead a
//! mount or a device node outside it, and the mount itself is made on the
//! resolved file descriptor (`/proc/self/fd/N`), so the path cannot be swapped
//! between the check and the mount.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use crate::cgroups;
use crate::error::{Context, Error, Result};
use crate::mounts::{parse_options, rootfs_propagation, MountOptions};
use crate::sys::{cstring, fd_path, mount, openat, openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};

/// statvfs(2)'s flag for a relatime mount, which the libc crate defines
/// for glibc only.
const ST_RELATIME: libc::c_ulong = 0x1000;

/// Inputs of the rootfs set-up besides the spec.
pub struct RootfsContext<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub in_user_namespace: bool,
    pub cgroup_namespace: bool,
    /// The container's cgroup path relative to each hierarchy's root.
    pub cgroup_path: &'a Path,
    pub terminal: bool,
    /// The user namespaces of id-mapped mounts, by index in `mounts`.
    pub idmap_namespaces: &'a [Option<OwnedFd>],
    /// The container has no mount namespace of its own: its mounts are made
    /// in the runtime's mount namespace, under the rootfs.
    pub shared_mount_namespace: bool,
}

/// Returns `path` without its leading `/`, for lookups relative to the root.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect()
}

/// Opens `path` inside the root, following symlinks as if the root were `/`.
pub fn open_in_root(root: RawFd, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel };
    openat2(root, &rel, flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
}

/// Creates the directory `path` and its parents inside the root and returns
/// an O_PATH descriptor of it. A component that is a dangling symlink gets
/// its target created, resolved inside the root like any other path.
pub fn mkdir_all_in_root(root: RawFd, path: &Path) -> Result<OwnedFd> {
    mkdir_all_depth(root, path, 0)
}

/// Symlinks followed while creating one path, as the kernel's own limit.
const MAX_SYMLINKS: u32 = 40;

fn mkdir_all_depth(root: RawFd, path: &Path, depth: u32) -> Result<OwnedFd> {
    if depth > MAX_SYMLINKS {
        return Err(Error::io(
            format!("create directory {}", path.display()),
            io::Error::from_raw_os_error(libc::ELOOP),
        ));
    }
    // Most mount points exist already, so one lookup of the whole path
    // saves the lookup of each component.
    if let Ok(fd) = open_in_root(root, path, libc::O_PATH | libc::O_DIRECTORY) {
        return Ok(fd);
    }
    let rel = relative(path);
    let mut prefix = PathBuf::new();
    let mut current = open_in_root(root, Path::new("."), libc::O_PATH | libc::O_DIRECTORY)
        .context(|| "open the container's root".to_owned())?;
    for component in rel.components() {
        let parent_prefix = prefix.clone();
        prefix.push(component);
        let opened = open_in_root(root, &prefix, libc::O_PATH | libc::O_DIRECTORY);
        current = match opened {
            Ok(fd) => fd,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                let name = cstring(component.as_os_str())?;
                // SAFETY: `current` is an open directory descriptor and `name`
                // a valid C string.
                let rc = unsafe { libc::mkdirat(current.as_raw_fd(), name.as_ptr(), 0o755) };
                if rc < 0 {
                    let err = io::Error::last_os_error();
                    if err.raw_os_error() != Some(libc::EEXIST) {
                        return Err(Error::io(format!("create directory {}", path.display()), err));
                    }
                    // Something exists but does not resolve: a dangling
                    // symlink, whose target is created in its place.
                    if let Ok(target) = nix::fcntl::readlinkat(Some(current.as_raw_fd()), component.as_os_str()) {
                        let target = PathBuf::from(target);
                        let resolved = if target.is_absolute() {
                            target
                        } else {
                            Path::new("/").join(&parent_prefix).join(target)
                        };
                        mkdir_all_depth(root, &resolved, depth + 1)?;
                    }
                }
                open_in_root(root, &prefix, libc::O_PATH | libc::O_DIRECTORY)
                    .context(|| format!("open {} in the container", prefix.display()))?
            }
            Err(err) => {
                return Err(Error::io(
                    format!("open {} in the container", prefix.display()),
                    err,
                ))
            }
        };
    }
    Ok(current)
}

/// Creates an empty file at `path` inside the root unless something is
/// already there, and returns an O_PATH descriptor of what is there.
pub fn create_file_in_root(root: RawFd, path: &Path, mode: u32) -> Result<OwnedFd> {
    if let Ok(fd) = open_in_root(root, path, libc::O_PATH) {
        return Ok(fd);
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidConfig(format!("\"{}\" has no file name", path.display())))?;
    let parent_fd = mkdir_all_in_root(root, parent)?;
    let created = openat(
        parent_fd.as_raw_fd(),
        Path::new(name),
        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
        mode,
    );
    match created {
        Ok(_) => {}
        Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {}
        Err(err) => return Err(Error::io(format!("create {}", path.display()), err)),
    }
    open_in_root(root, path, libc::O_PATH).context(|| format!("open {} in the container", path.display()))
}

/// Applies `rootfsPropagation` to the whole mount tree and makes the rootfs a
/// mount point of its own, as pivot_root requires.
///
/// In a shared mount namespace the tree is the host's, so its propagation is
/// left alone, and the rootfs becomes a mount point only when `root.readonly`
/// needs one to remount.
pub fn prepare_root(ctx: &RootfsContext) -> Result<OwnedFd> {
    if ctx.shared_mount_namespace {
        if ctx.spec.root().as_ref().is_some_and(|r| r.readonly().unwrap_or(false)) {
            let rootfs = cstring(ctx.rootfs)?;
            mount(Some(&rootfs), &ctx.rootfs.to_string_lossy(), None, libc::MS_BIND | libc::MS_REC, None)
                .context(|| format!("bind mount rootfs {}", ctx.rootfs.display()))?;
        }
        return openat(libc::AT_FDCWD, ctx.rootfs, libc::O_PATH | libc::O_DIRECTORY, 0)
            .context(|| format!("open rootfs {}", ctx.rootfs.display()));
    }
    let propagation = rootfs_propagation(
        ctx.spec.linux().as_ref().and_then(|l| l.rootfs_propagation().as_deref()),
    )?;
    mount(None, "/", None, propagation, None).context(|| "set propagation of /".to_owned())?;

    let rootfs = cstring(ctx.rootfs)?;
    mount(Some(&rootfs), &ctx.rootfs.to_string_lossy(), None, libc::MS_BIND | libc::MS_REC, None)
        .context(|| format!("bind mount rootfs {}", ctx.rootfs.display()))?;
    let root = openat(libc::AT_FDCWD, ctx.rootfs, libc::O_PATH | libc::O_DIRECTORY, 0)
        .context(|| format!("open rootfs {}", ctx.rootfs.display()))?;
    Ok(root)
}

/// Mounts every entry of `mounts`, in order.
pub fn mount_all(ctx: &RootfsContext, root: RawFd) -> Result<()> {
    for (index, entry) in ctx.spec.mounts().iter().flatten().enumerate() {
        let idmap = ctx.idmap_namespaces.get(index).and_then(Option::as_ref);
        mount_entry(ctx, root, entry, idmap).map_err(|err| match err {
            Error::Io { context, source } => Error::Io {
                context: format!("mount {}: {context}", entry.destination().display()),
                source,
            },
            other => other,
        })?;
    }
    Ok(())
}

fn mount_entry(ctx: &RootfsContext, root: RawFd, entry: &Mount, idmap: Option<&OwnedFd>) -> Result<()> {
    let options = parse_options(entry)?;
    let typ = entry.typ().as_deref().unwrap_or("none");
    let destination = entry.destination();
    for option in &options.ignored_data {
        tracing::warn!(destination = %destination.display(), option = %option, "ignoring filesystem option on a bind mount");
    }

    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(ctx, root, entry, &options);
    }

    if options.bind {
        let source = entry.source().as_ref().ok_or_else(|| {
            Error::InvalidConfig(format!("bind mount \"{}\" has no source", destination.display()))
        })?;
        let source = if source.is_absolute() { source.clone() } else { ctx.bundle.join(source) };
        let meta = fs::metadata(&source).context(|| format!("bind source {}", source.display()))?;
        let target = if meta.is_dir() {
            mkdir_all_in_root(root, destination)?
        } else {
            create_file_in_root(root, destination, 0o644)?
        };
        match (options.idmap, idmap) {
            (Some(recursive_idmap), Some(userns)) => {
                idmapped_bind(&source, &target, userns, options.recursive, recursive_idmap)?;
            }
            _ => {
                let mut flags = libc::MS_BIND;
                if options.recursive {
                    flags |= libc::MS_REC;
                }
                let source_c = cstring(&source)?;
                mount(Some(&source_c), &fd_path(&target), None, flags, None)
                    .context(|| format!("bind {}", source.display()))?;
            }
        }
        let remount_flags = options.flags & !libc::MS_REMOUNT;
        if remount_flags != 0 {
            remount_bind(root, destination, remount_flags, options.recursive, ctx.in_user_namespace)?;
        }
    } else {
        let target = mkdir_all_in_root(root, destination)?;
        // The directory under the tmpfs, still reachable through this
        // descriptor once the tmpfs covers it.
        let underneath = if options.tmpcopyup {
            Some(open_in_root(root, destination, libc::O_RDONLY | libc::O_DIRECTORY)
                .context(|| format!("open {} in the container", destination.display()))?)
        } else {
            None
        };
        let source = cstring(entry.source().as_deref().unwrap_or(Path::new(typ)))?;
        let fstype = cstring(typ)?;
        let mount_label = ctx.spec.linux().as_ref().and_then(|l| l.mount_label().as_deref());
        let data = crate::lsm::mount_data(typ, &options.data, mount_label);
        let data = if data.is_empty() { None } else { Some(cstring(data.join(","))?) };
        let mut flags = options.flags;
        if flags & libc::MS_REMOUNT != 0 {
            flags |= libc::MS_BIND;
        }
        if typ == "tmpfs" {
            // Mounted writable: the runtime may still have to create
            // device nodes, mount points or the console in it.
            // `readonly_tmpfs_mounts` makes it read-only at the end.
            flags &= !libc::MS_RDONLY;
        }
        mount(Some(&source), &fd_path(&target), Some(&fstype), flags, data.as_deref())
            .context(|| format!("mount {typ} (options \"{}\")", options.data.join(",")))?;
        if let Some(underneath) = underneath {
            let mounted = open_in_root(root, destination, libc::O_RDONLY | libc::O_DIRECTORY)
                .context(|| format!("open the tmpfs at {}", destination.display()))?;
            copy_tree(&underneath, &mounted).context(|| format!("tmpcopyup into {}", destination.display()))?;
        }
    }

    if !options.recursive_attrs.is_empty() {
        let target = open_in_root(root, destination, libc::O_PATH)
            .context(|| format!("open {} in the container", destination.display()))?;
        set_mount_attributes(&target, &options.recursive_attrs, true)?;
    }

    for &propagation in &options.propagation {
        let target = open_in_root(root, destination, libc::O_PATH)
            .context(|| format!("open {} in the container", destination.display()))?;
        mount(None, &fd_path(&target), None, propagation, None)
            .context(|| "set propagation".to_owned())?;
    }
    Ok(())
}

/// Remounts the bind mount at `destination` with `flags`, keeping the flags
/// that the kernel locks on mounts inherited into a user namespace.
/// Applies mount attributes with mount_setattr(2) to the mount at
/// `target`, and with `recursive` to every mount below it.
fn set_mount_attributes(target: &OwnedFd, attrs: &crate::mounts::MountAttr, recursive: bool) -> Result<()> {
    crate::sys::mount_setattr(target, attrs, recursive).map_err(|err| {
        Error::io(
            format!("set mount attributes (set {:#x}, clear {:#x})", attrs.attr_set, attrs.attr_clr),
            err,
        )
    })
}

/// Bind-mounts `source` on `target` as an id-mapped mount: a detached copy
/// of the source tree (open_tree), mapped through the user namespace
/// `userns` (mount_setattr with MOUNT_ATTR_IDMAP), then attached
/// (move_mount). `recursive_idmap` maps the submounts too (`ridmap`).
fn idmapped_bind(source: &Path, target: &OwnedFd, userns: &OwnedFd, recursive: bool, recursive_idmap: bool) -> Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    let tree = crate::sys::open_tree_clone(source, recursive || recursive_idmap)
        .map_err(|err| Error::io(format!("open_tree {}", source.display()), err))?;
    let attrs = crate::mounts::MountAttr {
        attr_set: crate::mounts::MOUNT_ATTR_IDMAP,
        userns_fd: userns.as_raw_fd() as u64,
        ..Default::default()
    };
    set_mount_attributes(&tree, &attrs, recursive_idmap).map_err(|err| match err {
        Error::Io { context, source: io } => Error::Io {
            context: format!("id-map {} ({context}; the filesystem must support id-mapped mounts)", source.display()),
            source: io,
        },
        other => other,
    })?;
    // SAFETY: descriptors and empty paths, with the matching flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(Error::last_os(format!("attach the id-mapped mount of {}", source.display())));
    }
    Ok(())
}

/// Copies the directory tree of `from` into `to`, keeping modes, owners
/// and symlinks (`tmpcopyup`). Device nodes and other special files are
/// recreated with mknod.
fn copy_tree(from: &OwnedFd, to: &OwnedFd) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let dir = nix::dir::Dir::from_fd(nix::unistd::dup(from.as_raw_fd())?)?;
    for entry in dir.into_iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let stat = nix::sys::stat::fstatat(Some(from.as_raw_fd()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let mode = stat.st_mode & 0o7777;
        match stat.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                nix::sys::stat::mkdirat(Some(to.as_raw_fd()), name, nix::sys::stat::Mode::from_bits_truncate(0o700))?;
                let open = |fd: &OwnedFd| -> std::io::Result<OwnedFd> {
                    let raw = nix::fcntl::openat(Some(fd.as_raw_fd()), name, nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())?;
                    // SAFETY: openat returned a new descriptor.
                    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
                };
                copy_tree(&open(from)?, &open(to)?)?;
            }
            libc::S_IFLNK => {
                let link = nix::fcntl::readlinkat(Some(from.as_raw_fd()), name)?;
                nix::unistd::symlinkat(link.as_bytes(), Some(to.as_raw_fd()), name)?;
            }
            libc::S_IFREG => {
                let flags = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC;
                let input = nix::fcntl::openat(Some(from.as_raw_fd()), name, flags, nix::sys::stat::Mode::empty())?;
                // SAFETY: openat returned a new descriptor.
                let mut input = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(input) };
                let out_flags = nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_EXCL | nix::fcntl::OFlag::O_CLOEXEC;
                let output = nix::fcntl::openat(Some(to.as_raw_fd()), name, out_flags, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
                // SAFETY: as above.
                let mut output = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(output) };
                std::io::copy(&mut input, &mut output)?;
            }
            _ => {
                let kind = nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode & libc::S_IFMT);
                nix::sys::stat::mknodat(Some(to.as_raw_fd()), name, kind, nix::sys::stat::Mode::from_bits_truncate(0o600), stat.st_rdev)?;
            }
        }
        nix::unistd::fchownat(Some(to.as_raw_fd()), name, Some(stat.st_uid.into()), Some(stat.st_gid.into()), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if stat.st_mode & libc::S_IFMT != libc::S_IFLNK {
            nix::sys::stat::fchmodat(Some(to.as_raw_fd()), name, nix::sys::stat::Mode::from_bits_truncate(mode), nix::sys::stat::FchmodatFlags::FollowSymlink)?;
        }
    }
    Ok(())
}

fn remount_bind(root: RawFd, destination: &Path, flags: libc::c_ulong, recursive: bool, user_ns: bool) -> Result<()> {
    let target = open_in_root(root, destination, libc::O_PATH)
        .context(|| format!("open {} in the container", destination.display()))?;
    remount_fd(&target, flags, recursive, user_ns)
}

fn remount_fd(target: &OwnedFd, flags: libc::c_ulong, recursive: bool, user_ns: bool) -> Result<()> {
    let mut flags = flags | libc::MS_BIND | libc::MS_REMOUNT;
    if recursive {
        flags |= libc::MS_REC;
    }
    if user_ns {
        flags |= locked_flags(target);
    }
    mount(None, &fd_path(target), None, flags, None).context(|| "remount".to_owned())
}

/// Returns the flags of the mount that `fd` is on which an unprivileged
/// remount may not clear.
fn locked_flags(fd: &OwnedFd) -> libc::c_ulong {
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is a valid out-parameter for fstatvfs.
    if unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut stat) } < 0 {
        return 0;
    }
    let mut flags = 0;
    for (st, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (ST_RELATIME, libc::MS_RELATIME),
    ] {
        if stat.f_flag & st != 0 {
            flags |= ms;
        }
    }
    flags
}

/// Mounts the cgroup filesystem. On a v2-only host that is one cgroup2
/// mount; on v1 and hybrid hosts, a tmpfs holding one mount per hierarchy.
/// With a cgroup namespace each hierarchy is mounted fresh, so the container
/// gets its own subtree as the root. Without one, the container's own cgroup
/// directory is bind-mounted.
fn mount_cgroup(ctx: &RootfsContext, root: RawFd, entry: &Mount, options: &MountOptions) -> Result<()> {
    let destination = entry.destination();
    let hierarchies = cgroups::hierarchies()?;
    let flags = options.flags | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let pure_v2 = !hierarchies.is_empty() && hierarchies.iter().all(|h| h.unified);

    let mount_hierarchy = |hierarchy: &cgroups::Hierarchy, target: &OwnedFd| -> Result<()> {
        if ctx.cgroup_namespace {
            let (fstype, data) = if hierarchy.unified {
                ("cgroup2", None)
            } else {
                ("cgroup", Some(cstring(hierarchy.controllers.join(","))?))
            };
            let fstype = cstring(fstype)?;
            mount(Some(&fstype), &fd_path(target), Some(&fstype), flags, data.as_deref())
                .context(|| format!("mount cgroup hierarchy {}", hierarchy.mount_point.display()))
        } else {
            let source = cstring(hierarchy.mount_point.join(ctx.cgroup_path))?;
            mount(Some(&source), &fd_path(target), None, libc::MS_BIND | libc::MS_REC, None)
                .context(|| format!("bind cgroup {}", hierarchy.mount_point.display()))?;
            remount_fd(
                &open_in_root_again(target)?,
                flags,
                false,
                ctx.in_user_namespace,
            )
        }
    };

    if pure_v2 {
        let target = mkdir_all_in_root(root, destination)?;
        return mount_hierarchy(&hierarchies[0], &target);
    }

    let target = mkdir_all_in_root(root, destination)?;
    let tmpfs = cstring("tmpfs")?;
    let mode = cstring("mode=755")?;
    mount(Some(&tmpfs), &fd_path(&target), Some(&tmpfs), libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, Some(&mode))
        .context(|| "mount tmpfs for cgroup hierarchies".to_owned())?;
    for hierarchy in &hierarchies {
        let name = if hierarchy.unified {
            "unified".to_owned()
        } else {
            hierarchy
                .controllers
                .iter()
                .map(|c| c.strip_prefix("name=").unwrap_or(c))
                .collect::<Vec<_>>()
                .join(",")
        };
        let sub = mkdir_all_in_root(root, &destination.join(&name))?;
        mount_hierarchy(hierarchy, &sub)?;
    }
    if options.flags & libc::MS_RDONLY != 0 {
        let target = open_in_root(root, destination, libc::O_PATH).context(|| "reopen cgroup tmpfs".to_owned())?;
        mount(None, &fd_path(&target), None, libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, None)
            .context(|| "remount cgroup tmpfs read-only".to_owned())?;
    }
    Ok(())
}

/// Reopens the object that `fd` names, so that a mount just made on its path
/// is what the new descriptor refers to.
fn open_in_root_again(fd: &OwnedFd) -> Result<OwnedFd> {
    let link = fs::read_link(fd_path(fd)).context(|| "read back a mount target".to_owned())?;
    openat(libc::AT_FDCWD, &link, libc::O_PATH, 0).context(|| format!("reopen {}", link.display()))
}

/// The device nodes every container gets, as (path, major, minor).
const DEFAULT_DEVICES: &[(&str, i64, i64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Reports whether the runtime must fill /dev: unless /dev is a bind mount
/// from the host, it gets the default devices and symlinks.
pub fn needs_dev_setup(spec: &Spec) -> bool {
    !spec.mounts().iter().flatten().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options().iter().flatten().any(|o| o == "bind" || o == "rbind"))
    })
}

/// Creates the default devices, the devices of `linux.devices` and the
/// standard /dev symlinks.
pub fn create_devices(ctx: &RootfsContext, root: RawFd) -> Result<()> {
    let setup_dev = needs_dev_setup(ctx.spec);
    if setup_dev {
        for &(path, major, minor) in DEFAULT_DEVICES {
            make_device(ctx, root, Path::new(path), libc::S_IFCHR, major, minor, 0o666, 0, 0)?;
        }
    }
    for device in ctx.spec.linux().as_ref().and_then(|l| l.devices().as_ref()).into_iter().flatten() {
        make_spec_device(ctx, root, device)?;
    }
    if setup_dev {
        for (link, target) in [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
            ("/dev/ptmx", "pts/ptmx"),
        ] {
            make_symlink(root, Path::new(link), target)?;
        }
        if ctx.terminal {
            // The pty's slave is bind-mounted here once the pty exists.
            // Whatever the rootfs has here is replaced first, so that a
            // symlink cannot send that mount to another file.
            let dev = mkdir_all_in_root(root, Path::new("/dev"))?;
            let name = cstring("console")?;
            // SAFETY: valid descriptor and C string.
            unsafe { libc::unlinkat(dev.as_raw_fd(), name.as_ptr(), 0) };
            create_file_in_root(root, Path::new("/dev/console"), 0o600)?;
        }
    }
    Ok(())
}

fn make_spec_device(ctx: &RootfsContext, root: RawFd, device: &LinuxDevice) -> Result<()> {
    let kind = match device.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::InvalidConfig(format!(
                "device \"{}\" has type \"a\", which is only valid in cgroup rules",
                device.path().display()
            )))
        }
    };
    if !device.path().starts_with("/dev") {
        return Err(Error::InvalidConfig(format!(
            "device path \"{}\" is not under /dev",
            device.path().display()
        )));
    }
    make_device(
        ctx,
        root,
        device.path(),
        kind,
        device.major(),
        device.minor(),
        device.file_mode().unwrap_or(0o666),
        device.uid().unwrap_or(0),
        device.gid().unwrap_or(0),
    )
}

#[allow(clippy::too_many_arguments)]
fn make_device(
    ctx: &RootfsContext,
    root: RawFd,
    path: &Path,
    kind: libc::mode_t,
    major: i64,
    minor: i64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let parent = mkdir_all_in_root(root, path.parent().unwrap_or(Path::new("/dev")))?;
    let name = cstring(path.file_name().unwrap_or(OsStr::new("")))?;
    // Whatever the rootfs has at this path (a file, or a symlink that points
    // elsewhere) is replaced by the node.
    // SAFETY: valid descriptor and C string.
    unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), 0) };

    if ctx.in_user_namespace {
        // mknod is not permitted in a user namespace: bind the host's node.
        let host = cstring(path)?;
        let target = create_file_in_root(root, path, 0o600)?;
        return mount(Some(&host), &fd_path(&target), None, libc::MS_BIND, None)
            .context(|| format!("bind host device {}", path.display()));
    }

    let dev = libc::makedev(major as u32, minor as u32);
    // SAFETY: valid descriptor and C string.
    if unsafe { libc::mknodat(parent.as_raw_fd(), name.as_ptr(), kind | (mode & 0o7777), dev) } < 0 {
        return Err(Error::last_os(format!("create device {}", path.display())));
    }
    // SAFETY: valid descriptor and C string.
    if unsafe { libc::fchownat(parent.as_raw_fd(), name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) } < 0 {
        return Err(Error::last_os(format!("chown device {}", path.display())));
    }
    Ok(())
}

fn make_symlink(root: RawFd, link: &Path, target: &str) -> Result<()> {
    let parent = mkdir_all_in_root(root, link.parent().unwrap_or(Path::new("/")))?;
    let name = cstring(link.file_name().unwrap_or(OsStr::new("")))?;
    let target_c = CString::new(target).expect("static target");
    // SAFETY: valid descriptor and C strings.
    unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), 0) };
    // SAFETY: valid descriptor and C strings.
    if unsafe { libc::symlinkat(target_c.as_ptr(), parent.as_raw_fd(), name.as_ptr()) } < 0 {
        return Err(Error::last_os(format!("create symlink {} -> {target}", link.display())));
    }
    Ok(())
}

/// Makes the rootfs the root of the mount namespace. With `no_pivot`, the
/// rootfs is moved over `/` and chrooted into instead, for hosts whose root
/// is a ramfs on which pivot_root fails. With `shared_mount_namespace`, the
/// namespace is the host's, so the init only chroots into the rootfs, as
/// runc does.
pub fn enter_root(spec: &Spec, root: &OwnedFd, rootfs: &Path, no_pivot: bool, shared_mount_namespace: bool) -> Result<()> {
    if shared_mount_namespace {
        // NOTE: a chroot is not a mount namespace. A process in the
        // container with CAP_SYS_CHROOT can leave it, and the mounts under
        // the rootfs stay in the host's namespace after the container ends.
        nix::unistd::fchdir(root.as_raw_fd()).context(|| format!("chdir {}", rootfs.display()))?;
        nix::unistd::chroot(".").context(|| "chroot into rootfs".to_owned())?;
        nix::unistd::chdir("/").context(|| "chdir /".to_owned())?;
        return Ok(());
    }
    if no_pivot {
        hide_outside_proc_and_sys(rootfs)?;
        let path = cstring(rootfs)?;
        nix::unistd::fchdir(root.as_raw_fd()).context(|| format!("chdir {}", rootfs.display()))?;
        mount(Some(&path), "/", None, libc::MS_MOVE, None).context(|| "move rootfs to /".to_owned())?;
        nix::unistd::chroot(".").context(|| "chroot into rootfs".to_owned())?;
        nix::unistd::chdir("/").context(|| "chdir /".to_owned())?;
        return Ok(());
    }
    // pivot_root(2) refuses a new root, or a parent mount of it, with
    // shared propagation, which `rootfsPropagation: shared` gives them:
    // both are made private for the pivot, and the propagation is set
    // again below.
    let propagation = rootfs_propagation(spec.linux().as_ref().and_then(|l| l.rootfs_propagation().as_deref()))?;
    if propagation & libc::MS_SHARED != 0 {
        mount(None, &fd_path(root), None, libc::MS_PRIVATE, None).context(|| "make the rootfs mount private".to_owned())?;
        if let Some(parent) = rootfs.parent().and_then(mount_point_of) {
            mount(None, &parent.to_string_lossy(), None, libc::MS_PRIVATE, None)
                .context(|| format!("make the mount {} above the rootfs private", parent.display()))?;
        }
    }

    // pivot_root(".", ".") stacks the old root on top of the new one. The
    // whole tree is then made a slave, so that unmounting the old root does
    // not reach the host's mounts, and the old root is detached.
    nix::unistd::fchdir(root.as_raw_fd()).context(|| format!("chdir {}", rootfs.display()))?;
    nix::unistd::pivot_root(".", ".").context(|| format!("pivot_root into {}", rootfs.display()))?;
    mount(None, ".", None, libc::MS_SLAVE | libc::MS_REC, None).context(|| "make old root a slave".to_owned())?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).context(|| "unmount old root".to_owned())?;
    nix::unistd::chdir("/").context(|| "chdir /".to_owned())?;
    restore_propagation(spec)
}

/// Unmounts every procfs and sysfs mount outside `rootfs`, or covers it with
/// an empty read-only tmpfs where it cannot be unmounted. Without
/// pivot_root, the mounts of the old root stay in the container's mount
/// namespace beneath its chroot. The kernel lets a process with
/// CAP_SYS_ADMIN in a new user namespace mount a procfs or sysfs only when
/// a fully visible one exists in its mount namespace. The container's own,
/// with its masked paths, is not fully visible, but the old root's would be.
fn hide_outside_proc_and_sys(rootfs: &Path) -> Result<()> {
    let text = fs::read_to_string("/proc/self/mountinfo").context(|| "read /proc/self/mountinfo".to_owned())?;
    let mut targets: Vec<PathBuf> = crate::cgroups::mountinfo_entries(&text)
        .filter(|(point, fstype, _)| matches!(*fstype, "proc" | "sysfs") && !point.starts_with(rootfs))
        .map(|(point, _, _)| point)
        .collect();
    // Deepest first, so that a mount below another is handled before it.
    targets.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    targets.dedup();
    for target in &targets {
        if nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).is_ok() {
            continue;
        }
        let target_str = target.to_string_lossy();
        mount(Some(c"tmpfs"), &target_str, Some(c"tmpfs"), libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, Some(c"size=0"))
            .context(|| format!("cover {} with an empty tmpfs before the chroot", target.display()))?;
    }
    Ok(())
}

/// Returns the mount point of the mount that contains `path`: the longest
/// mount point in /proc/self/mountinfo that is a prefix of it.
fn mount_point_of(path: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(crate::cgroups::unescape_mountinfo(field)))
        .filter(|point| path.starts_with(point))
        .max_by_key(|point| point.as_os_str().len())
}

/// Sets again the propagation that the slave step of [`enter_root`]
/// replaced: `rootfsPropagation` on `/`, then each mount's own propagation
/// options, in the order of `mounts`.
fn restore_propagation(spec: &Spec) -> Result<()> {
    let propagation = rootfs_propagation(spec.linux().as_ref().and_then(|l| l.rootfs_propagation().as_deref()))?;
    mount(None, "/", None, propagation, None).context(|| "set propagation of the container's /".to_owned())?;
    let root = openat(libc::AT_FDCWD, Path::new("/"), libc::O_PATH | libc::O_DIRECTORY, 0)
        .context(|| "open the container's /".to_owned())?;
    for entry in spec.mounts().iter().flatten() {
        let options = parse_options(entry)?;
        for &flag in &options.propagation {
            let target = open_in_root(root.as_raw_fd(), entry.destination(), libc::O_PATH)
                .context(|| format!("open {} in the container", entry.destination().display()))?;
            mount(None, &fd_path(&target), None, flag, None)
                .context(|| format!("set propagation of {}", entry.destination().display()))?;
        }
    }
    Ok(())
}

/// Writes `linux.sysctl`. Runs after pivot_root, with the container's /proc,
/// so network sysctls reach the container's network namespace.
pub fn apply_sysctl(spec: &Spec) -> Result<()> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    let mut keys: Vec<&String> = sysctl.keys().collect();
    keys.sort();
    for key in keys {
        if key.contains("..") || key.contains('\0') {
            return Err(Error::InvalidConfig(format!("invalid sysctl name \"{key}\"")));
        }
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = &sysctl[key];
        crate::procfs::write(&path, value.as_bytes()).map_err(|err| match err {
            Error::InvalidConfig(message) => Error::InvalidConfig(format!("sysctl \"{key}\": {message}")),
            Error::Io { context, source } => Error::io(format!("set sysctl \"{key}\" to \"{value}\": {context}"), source),
            other => other,
        })?;
    }
    Ok(())
}

/// Opens the container's /dev/null and checks that it is the real null
/// device: a rootfs that made /dev/null a symlink or a regular file would
/// otherwise turn every mask into a bind mount of a file of its choosing.
pub fn open_verified_null() -> Result<OwnedFd> {
    let null = openat(libc::AT_FDCWD, Path::new("/dev/null"), libc::O_PATH | libc::O_NOFOLLOW, 0)
        .context(|| "open /dev/null in the container".to_owned())?;
    let stat = nix::sys::stat::fstat(null.as_raw_fd()).context(|| "stat /dev/null".to_owned())?;
    let is_char = stat.st_mode & libc::S_IFMT == libc::S_IFCHR;
    if !is_char || stat.st_rdev != libc::makedev(1, 3) {
        return Err(Error::InvalidConfig(
            "/dev/null in the container is not the null device (1:3); refusing to mask paths with it".into(),
        ));
    }
    Ok(null)
}

/// Hides each of `maskedPaths`: directories under an empty read-only tmpfs,
/// everything else under a bind mount of the verified /dev/null.
pub fn mask_paths(spec: &Spec) -> Result<()> {
    let paths = spec.linux().as_ref().and_then(|l| l.masked_paths().as_ref());
    let mut null: Option<OwnedFd> = None;
    for path in paths.into_iter().flatten() {
        let target = match open_in_root(libc::AT_FDCWD, Path::new(path), libc::O_PATH) {
            Ok(fd) => fd,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(err) => return Err(Error::io(format!("open masked path {path}"), err)),
        };
        let meta = fs::metadata(fd_path(&target)).context(|| format!("stat masked path {path}"))?;
        if meta.is_dir() {
            let tmpfs = cstring("tmpfs")?;
            let data = cstring("size=0,mode=755")?;
            mount(Some(&tmpfs), &fd_path(&target), Some(&tmpfs), libc::MS_RDONLY, Some(&data))
                .context(|| format!("mask directory {path}"))?;
        } else {
            if null.is_none() {
                null = Some(open_verified_null()?);
            }
            let source = cstring(fd_path(null.as_ref().unwrap()))?;
            mount(Some(&source), &fd_path(&target), None, libc::MS_BIND, None)
                .context(|| format!("mask {path}"))?;
        }
    }
    Ok(())
}

/// Makes read-only the tmpfs mounts that `mounts` marks `ro`, which
/// `mount_all` mounted writable. Runs in the container's root, after
/// everything that may create files in them (a read-only /dev still gets
/// its device nodes, /dev/pts and /dev/console). Only the mount itself
/// becomes read-only, not the mounts below it.
pub fn readonly_tmpfs_mounts(spec: &Spec, user_ns: bool) -> Result<()> {
    for entry in spec.mounts().iter().flatten() {
        if entry.typ().as_deref() != Some("tmpfs") {
            continue;
        }
        let options = parse_options(entry)?;
        if options.bind || options.flags & libc::MS_RDONLY == 0 {
            continue;
        }
        let destination = entry.destination();
        let target = open_in_root(libc::AT_FDCWD, destination, libc::O_PATH)
            .context(|| format!("open {} in the container", destination.display()))?;
        remount_fd(&target, options.flags & !libc::MS_REMOUNT, false, user_ns).map_err(|err| match err {
            Error::Io { source, .. } => Error::io(format!("make the tmpfs at {} read-only", destination.display()), source),
            other => other,
        })?;
    }
    Ok(())
}

/// Makes each of `readonlyPaths` a read-only bind mount of itself.
pub fn readonly_paths(spec: &Spec, user_ns: bool) -> Result<()> {
    let paths = spec.linux().as_ref().and_then(|l| l.readonly_paths().as_ref());
    for path in paths.into_iter().flatten() {
        let target = match open_in_root(libc::AT_FDCWD, Path::new(path), libc::O_PATH) {
            Ok(fd) => fd,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(err) => return Err(Error::io(format!("open read-only path {path}"), err)),
        };
        let source = cstring(fd_path(&target))?;
        mount(Some(&source), &fd_path(&target), None, libc::MS_BIND | libc::MS_REC, None)
            .context(|| format!("bind read-only path {path}"))?;
        let target = open_in_root(libc::AT_FDCWD, Path::new(path), libc::O_PATH)
            .context(|| format!("reopen read-only path {path}"))?;
        remount_fd(&target, libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, true, user_ns)
            .map_err(|err| match err {
                Error::Io { source, .. } => Error::io(format!("make {path} read-only"), source),
                other => other,
            })?;
    }
    Ok(())
}

/// Remounts the container's root read-only.
pub fn readonly_root(user_ns: bool) -> Result<()> {
    let root = openat(libc::AT_FDCWD, Path::new("/"), libc::O_PATH | libc::O_DIRECTORY, 0)
        .context(|| "open /".to_owned())?;
    remount_fd(&root, libc::MS_RDONLY, false, user_ns).map_err(|err| match err {
        Error::Io { source, .. } => Error::io("remount the root read-only", source),
        other => other,
    })
}

/// Bind-mounts the pty slave `slave` over /dev/console.
pub fn mount_console(slave: &OwnedFd) -> Result<()> {
    let target = match open_in_root(libc::AT_FDCWD, Path::new("/dev/console"), libc::O_PATH) {
        Ok(fd) => fd,
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(err) => return Err(Error::io("open /dev/console", err)),
    };
    let source = cstring(fd_path(slave))?;
    mount(Some(&source), &fd_path(&target), None, libc::MS_BIND, None)
        .context(|| "bind the pty over /dev/console".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_escape_stays_in_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        let root_fd = openat(libc::AT_FDCWD, &root, libc::O_PATH | libc::O_DIRECTORY, 0).unwrap();

        mkdir_all_in_root(root_fd.as_raw_fd(), Path::new("/link/made")).unwrap();
        std::os::unix::fs::symlink("/nowhere/deeper", root.join("dangling")).unwrap();
        mkdir_all_in_root(root_fd.as_raw_fd(), Path::new("/dangling/x")).unwrap();
        assert!(root.join("nowhere/deeper/x").is_dir());
        mkdir_all_in_root(root_fd.as_raw_fd(), Path::new("/abs/../../made2")).unwrap();
        create_file_in_root(root_fd.as_raw_fd(), Path::new("/abs/file"), 0o644).unwrap();

        assert!(!outside.join("made").exists());
        assert!(!outside.join("file").exists());
        assert!(!dir.path().join("made2").exists());
        // `outside` resolves to `<root>/outside` when the root is `/`.
        assert!(root.join("outside/made").is_dir());
        // `..` after a symlink goes to the parent of the link's target, as
        // the kernel resolves it, but that target is inside the root too.
        let grandparent = outside.parent().unwrap().parent().unwrap();
        assert!(root.join(grandparent.strip_prefix("/").unwrap()).join("made2").is_dir());
        assert!(root.join(outside.strip_prefix("/").unwrap()).join("file").exists());
    }
}
