//! Linux namespaces: which ones the container gets new, which it joins by
//! path, and the user namespace's id mappings.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};

use crate::error::{Context, Error, Result};
use crate::sys::{openat, write_file};

/// The namespace set-up of one container.
#[derive(Debug, Default)]
pub struct NamespacePlan {
    /// CLONE_NEW* flags for clone(2). The cgroup namespace is not among them:
    /// it is unshared by the init after it has joined its cgroup, so that
    /// the namespace's root is the container's cgroup.
    pub clone_flags: libc::c_int,
    pub new_cgroup: bool,
    /// Like the cgroup namespace, the time namespace is not a clone flag:
    /// CLONE_NEWTIME shares its bit with CSIGNAL in clone(2). The init
    /// unshares it and writes the clock offsets before it execs.
    pub new_time: bool,
    /// Namespaces to join by path, in the order the init must setns them
    /// (the user namespace first, so the others are joined with its
    /// privileges).
    pub joins: Vec<(LinuxNamespaceType, OwnedFd)>,
    /// A pid namespace to join; setns(CLONE_NEWPID) only affects children,
    /// so the runtime joins it before it clones the init.
    pub pid_join: Option<OwnedFd>,
    pub new_user: bool,
    pub new_pid: bool,
    pub has_mount: bool,
    pub has_uts: bool,
    pub in_user_namespace: bool,
    /// The user namespaces of id-mapped mounts, one entry per entry of
    /// `mounts` (see [`idmap_namespaces`]).
    pub idmap_mounts: Vec<Option<OwnedFd>>,
}

pub fn clone_flag(typ: LinuxNamespaceType) -> libc::c_int {
    match typ {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

/// Returns the kernel's name of a namespace type, as in /proc/PID/ns.
pub fn proc_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Builds the plan from `linux.namespaces`, opening every namespace path so
/// that a wrong path fails here, with its name, before anything is created.
pub fn plan(linux: &Linux) -> Result<NamespacePlan> {
    let mut plan = NamespacePlan::default();
    let mut joins = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        let typ = ns.typ();
        match ns.path() {
            Some(path) if !path.as_os_str().is_empty() => {
                let fd = open_namespace(path, typ)?;
                if typ == LinuxNamespaceType::Pid {
                    plan.pid_join = Some(fd);
                } else {
                    joins.push((typ, fd));
                }
                if typ == LinuxNamespaceType::User {
                    plan.in_user_namespace = true;
                }
            }
            _ => match typ {
                LinuxNamespaceType::Cgroup => plan.new_cgroup = true,
                LinuxNamespaceType::Time => plan.new_time = true,
                other => {
                    plan.clone_flags |= clone_flag(other);
                    if other == LinuxNamespaceType::User {
                        plan.new_user = true;
                        plan.in_user_namespace = true;
                    }
                    if other == LinuxNamespaceType::Pid {
                        plan.new_pid = true;
                    }
                }
            },
        }
        match typ {
            LinuxNamespaceType::Mount => plan.has_mount = true,
            LinuxNamespaceType::Uts => plan.has_uts = true,
            _ => {}
        }
    }
    // User namespace first; mount namespace last, because joining it changes
    // how the remaining paths would resolve (they are already open, but the
    // order also matches what the kernel expects for privileges).
    joins.sort_by_key(|(typ, _)| match typ {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 2,
        _ => 1,
    });
    plan.joins = joins;
    Ok(plan)
}

fn open_namespace(path: &Path, typ: LinuxNamespaceType) -> Result<OwnedFd> {
    let fd = openat(libc::AT_FDCWD, path, libc::O_RDONLY, 0)
        .context(|| format!("open {} namespace path {}", proc_name(typ), path.display()))?;
    // SAFETY: NS_GET_NSTYPE takes no argument and returns the type.
    let actual = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if actual >= 0 && actual != clone_flag(typ) {
        return Err(Error::InvalidConfig(format!(
            "namespace path {} is not a {} namespace",
            path.display(),
            proc_name(typ)
        )));
    }
    if actual < 0 {
        return Err(Error::InvalidConfig(format!(
            "namespace path {} is not a namespace file",
            path.display()
        )));
    }
    Ok(fd)
}

/// Joins the namespaces of the plan, in order.
pub fn join_all(plan: &NamespacePlan) -> Result<()> {
    for (typ, fd) in &plan.joins {
        // SAFETY: setns on a namespace descriptor.
        if unsafe { libc::setns(fd.as_raw_fd(), clone_flag(*typ)) } < 0 {
            return Err(Error::last_os(format!("join {} namespace", proc_name(*typ))));
        }
    }
    Ok(())
}

fn format_mappings(mappings: &[LinuxIdMapping]) -> String {
    mappings
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Writes the uid and gid maps of the init's new user namespace.
pub fn write_id_mappings(pid: i32, linux: &Linux) -> Result<()> {
    let uid = linux.uid_mappings().clone().unwrap_or_default();
    let gid = linux.gid_mappings().clone().unwrap_or_default();
    if uid.is_empty() || gid.is_empty() {
        return Err(Error::InvalidConfig(
            "a new user namespace needs \"linux.uidMappings\" and \"linux.gidMappings\"".into(),
        ));
    }
    // SAFETY: geteuid and getegid have no arguments and cannot fail.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if euid == 0 {
        write_file(format!("/proc/{pid}/uid_map"), format_mappings(&uid).as_bytes())?;
        write_file(format!("/proc/{pid}/gid_map"), format_mappings(&gid).as_bytes())?;
        return Ok(());
    }
    // Without privileges, the kernel lets a process map only its own ids,
    // one each, and a gid map only once setgroups is denied. Anything more
    // goes through the setuid helpers newuidmap and newgidmap, which check
    // /etc/subuid and /etc/subgid.
    let own = |mappings: &[LinuxIdMapping], id: u32| {
        mappings.len() == 1 && mappings[0].host_id() == id && mappings[0].size() == 1
    };
    if own(&uid, euid) {
        write_file(format!("/proc/{pid}/uid_map"), format_mappings(&uid).as_bytes())?;
    } else {
        run_id_map_helper("newuidmap", pid, &uid)?;
    }
    if own(&gid, egid) {
        write_file(format!("/proc/{pid}/setgroups"), b"deny")?;
        write_file(format!("/proc/{pid}/gid_map"), format_mappings(&gid).as_bytes())?;
    } else {
        run_id_map_helper("newgidmap", pid, &gid)?;
    }
    Ok(())
}

/// Runs newuidmap or newgidmap for `pid` with `mappings`.
fn run_id_map_helper(helper: &str, pid: i32, mappings: &[LinuxIdMapping]) -> Result<()> {
    let mut command = std::process::Command::new(helper);
    command.arg(pid.to_string());
    for mapping in mappings {
        command.args([mapping.container_id().to_string(), mapping.host_id().to_string(), mapping.size().to_string()]);
    }
    let output = command.output().map_err(|err| {
        Error::io(
            format!("run {helper} for id mappings other than the user's own id (install the uidmap package)"),
            err,
        )
    })?;
    if !output.status.success() {
        return Err(Error::InvalidConfig(format!(
            "{helper} {pid} rejected the mappings {}: {} (check /etc/subuid and /etc/subgid for this user)",
            format_mappings(mappings).trim().replace('\n', ", "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// Creates the user namespaces of the id-mapped mounts, one per mount entry
/// that is id-mapped (`None` for the others). A mount without mappings of
/// its own takes the container's (`linux.uidMappings`).
pub fn idmap_namespaces(spec: &oci_spec::runtime::Spec) -> Result<Vec<Option<OwnedFd>>> {
    let mut namespaces = Vec::new();
    for mount in spec.mounts().iter().flatten() {
        let options = crate::mounts::parse_options(mount)?;
        if options.idmap.is_none() {
            namespaces.push(None);
            continue;
        }
        let linux = spec.linux().as_ref();
        let pick = |own: &Option<Vec<LinuxIdMapping>>, container: Option<&Vec<LinuxIdMapping>>| {
            own.clone().filter(|m| !m.is_empty()).or_else(|| container.cloned()).unwrap_or_default()
        };
        let uid = pick(mount.uid_mappings(), linux.and_then(|l| l.uid_mappings().as_ref()));
        let gid = pick(mount.gid_mappings(), linux.and_then(|l| l.gid_mappings().as_ref()));
        if uid.is_empty() || gid.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "id-mapped mount \"{}\" needs uidMappings and gidMappings, on the mount or in \"linux\"",
                mount.destination().display()
            )));
        }
        namespaces.push(Some(user_namespace_with(&uid, &gid)?));
    }
    Ok(namespaces)
}

/// Creates a user namespace with the given id mappings and returns a
/// descriptor of it, for id-mapped mounts. A short-lived child unshares the
/// namespace, this process writes its maps (it has the privileges in the
/// parent namespace that writing arbitrary maps needs), opens
/// /proc/CHILD/ns/user and lets the child exit; the descriptor keeps the
/// namespace alive.
pub fn user_namespace_with(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<OwnedFd> {
    let (ready_read, ready_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context(|| "create a pipe".to_owned())?;
    let (hold_read, hold_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context(|| "create a pipe".to_owned())?;
    // SAFETY: the runtime is single-threaded here; the child only makes
    // async-signal-safe calls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::last_os("fork for an id-mapping user namespace"));
    }
    if pid == 0 {
        drop(ready_read);
        drop(hold_write);
        // SAFETY: plain syscalls on descriptors this child owns.
        unsafe {
            let status: u8 = if libc::unshare(libc::CLONE_NEWUSER) == 0 { 1 } else { 0 };
            libc::write(ready_write.as_raw_fd(), (&status as *const u8).cast(), 1);
            let mut byte = 0u8;
            libc::read(hold_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    drop(ready_write);
    drop(hold_read);
    let result = (|| {
        let mut status = [0u8; 1];
        let n = nix::unistd::read(ready_read.as_raw_fd(), &mut status).context(|| "wait for the id-mapping child".to_owned())?;
        if n != 1 || status[0] != 1 {
            return Err(Error::Init("the id-mapping child could not create a user namespace".into()));
        }
        write_file(format!("/proc/{pid}/uid_map"), format_mappings(uid).as_bytes())?;
        write_file(format!("/proc/{pid}/gid_map"), format_mappings(gid).as_bytes())?;
        openat(libc::AT_FDCWD, Path::new(&format!("/proc/{pid}/ns/user")), libc::O_RDONLY | libc::O_CLOEXEC, 0)
            .context(|| "open the id-mapping user namespace".to_owned())
    })();
    drop(hold_write);
    let mut wait_status = 0;
    // SAFETY: reap our own child.
    unsafe { libc::waitpid(pid, &mut wait_status, 0) };
    result
}
