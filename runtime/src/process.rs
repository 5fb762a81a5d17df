//! The process attributes of `config.json` applied by the init before
//! execve: rlimits, user and groups, capabilities, no_new_privs, the
//! executable's path.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimit, PosixRlimitType, Process};

use crate::error::{Context, Error, Result};

/// Type of setrlimit(2)'s resource argument, which differs between glibc
/// and musl.
#[cfg(target_env = "gnu")]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RlimitResource = libc::c_int;

/// Maps an OCI rlimit type to its resource number.
pub fn rlimit_resource(typ: PosixRlimitType) -> RlimitResource {
    match typ {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Sets each rlimit of the process. Raising a hard limit needs
/// CAP_SYS_RESOURCE; the error then names the rlimit and the values.
pub fn apply_rlimits(rlimits: &[PosixRlimit]) -> Result<()> {
    for rlimit in rlimits {
        if rlimit.soft() > rlimit.hard() {
            return Err(Error::InvalidConfig(format!(
                "{}: soft limit {} is above hard limit {}",
                rlimit.typ(),
                rlimit.soft(),
                rlimit.hard()
            )));
        }
        let limit = libc::rlimit {
            rlim_cur: rlimit.soft(),
            rlim_max: rlimit.hard(),
        };
        // SAFETY: `limit` is a valid rlimit structure.
        if unsafe { libc::setrlimit(rlimit_resource(rlimit.typ()), &limit) } < 0 {
            let err = std::io::Error::last_os_error();
            let hint = if err.raw_os_error() == Some(libc::EPERM) {
                " (raising a hard limit needs CAP_SYS_RESOURCE)"
            } else {
                ""
            };
            return Err(Error::io(
                format!(
                    "set {} to soft {} hard {}{hint}",
                    rlimit.typ(),
                    rlimit.soft(),
                    rlimit.hard()
                ),
                err,
            ));
        }
    }
    Ok(())
}

fn to_caps(set: &Option<Capabilities>) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for cap in set.iter().flatten() {
        let name = format!("CAP_{cap}");
        let parsed: caps::Capability = name
            .parse()
            .map_err(|_| Error::InvalidConfig(format!("unknown capability \"{name}\"")))?;
        out.insert(parsed);
    }
    Ok(out)
}

/// Capability sets resolved from the spec, ready to apply.
pub struct CapabilitySets {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

impl CapabilitySets {
    pub fn from_spec(caps: &LinuxCapabilities) -> Result<Self> {
        Ok(CapabilitySets {
            bounding: to_caps(caps.bounding())?,
            effective: to_caps(caps.effective())?,
            permitted: to_caps(caps.permitted())?,
            inheritable: to_caps(caps.inheritable())?,
            ambient: to_caps(caps.ambient())?,
        })
    }

    /// Drops from the bounding set every capability not listed; needs
    /// CAP_SETPCAP, so it runs before the user switch. Capabilities that
    /// this kernel does not know are skipped.
    pub fn apply_bounding(&self) -> Result<()> {
        for cap in caps::all() {
            if self.bounding.contains(&cap) {
                continue;
            }
            match caps::drop(None, CapSet::Bounding, cap) {
                Ok(()) => {}
                Err(_) if !kernel_has(cap) => {}
                Err(err) => {
                    return Err(Error::InvalidArgument(format!(
                        "drop {cap} from the bounding set: {err}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Sets the effective, permitted, inheritable and ambient sets; runs
    /// after the user switch, with PR_SET_KEEPCAPS keeping the permitted set.
    pub fn apply_rest(&self) -> Result<()> {
        let known = |set: &CapsHashSet| -> CapsHashSet { set.iter().copied().filter(|c| kernel_has(*c)).collect() };
        let apply = |which: CapSet, set: &CapsHashSet, name: &str| -> Result<()> {
            caps::set(None, which, &known(set))
                .map_err(|err| Error::InvalidArgument(format!("set {name} capabilities: {err}")))
        };
        // Each capset call must leave effective within permitted, and a new
        // inheritable set is checked against the permitted set: so
        // inheritable first, while permitted is still full, then effective,
        // then permitted.
        apply(CapSet::Inheritable, &self.inheritable, "inheritable")?;
        apply(CapSet::Effective, &self.effective, "effective")?;
        apply(CapSet::Permitted, &self.permitted, "permitted")?;
        caps::clear(None, CapSet::Ambient).ok();
        for cap in known(&self.ambient) {
            // As runc: an ambient capability that is not both permitted and
            // inheritable cannot be raised, and is skipped (runc's own
            // default config lists ambient capabilities without an
            // inheritable set).
            if let Err(err) = caps::raise(None, CapSet::Ambient, cap) {
                tracing::debug!(capability = %cap, error = %err, "ambient capability not raised");
            }
        }
        Ok(())
    }
}

fn kernel_has(cap: caps::Capability) -> bool {
    u32::from(cap.index()) <= last_cap()
}

/// Returns the highest capability number of the running kernel. The file is
/// read once per process, because each capability set is checked against it.
fn last_cap() -> u32 {
    static LAST_CAP: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *LAST_CAP.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
    })
}

/// Switches to the process's user: supplementary groups, gid, uid, umask.
pub fn switch_user(process: &Process) -> Result<()> {
    let user = process.user();
    let groups: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    // SAFETY: `groups` is a valid array of the length passed.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } < 0 {
        let err = std::io::Error::last_os_error();
        // In a user namespace with setgroups denied, an empty list is the
        // only possible outcome and EPERM is expected.
        if !(groups.is_empty() && err.raw_os_error() == Some(libc::EPERM)) {
            return Err(Error::io(format!("setgroups {groups:?}"), err));
        }
    }
    let gid = user.gid();
    // SAFETY: plain syscall.
    if unsafe { libc::setresgid(gid, gid, gid) } < 0 {
        return Err(Error::last_os(format!("setgid {gid}")));
    }
    let uid = user.uid();
    // SAFETY: plain syscall.
    if unsafe { libc::setresuid(uid, uid, uid) } < 0 {
        return Err(Error::last_os(format!("setuid {uid}")));
    }
    if let Some(umask) = user.umask() {
        // SAFETY: plain syscall.
        unsafe { libc::umask(umask as libc::mode_t) };
    } else {
        // SAFETY: plain syscall.
        unsafe { libc::umask(0o022) };
    }
    Ok(())
}

/// Returns the value of `name` in an environment list of `KEY=VALUE`.
pub fn env_value<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter().rev().find_map(|entry| {
        let (key, value) = entry.split_once('=')?;
        (key == name).then_some(value)
    })
}

/// Looks up the home directory of `uid` in the container's /etc/passwd.
/// NOTE: an image that makes /etc/passwd a FIFO blocks the process here
/// until something writes to it. The process is non-dumpable meanwhile.
fn home_directory(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[2].parse() == Ok(uid) && !fields[5].is_empty()).then(|| fields[5].to_owned())
    })
}

/// Finds the executable for `arg0` the way execvp does, in the container's
/// filesystem and with the container's `PATH`. The error wording matches
/// runc's, because engines map "executable file not found" to exit code
/// 127 and "permission denied" to 126.
pub fn find_executable(arg0: &str, env: &[String], cwd: &Path) -> Result<PathBuf> {
    let exec_error = |message: &str| Error::InvalidArgument(format!("exec: \"{arg0}\": {message}"));
    let check = |path: &Path| -> std::result::Result<(), i32> {
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
        let meta = std::fs::metadata(path).map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
        if meta.is_dir() {
            return Err(libc::EACCES);
        }
        // SAFETY: valid C string.
        if unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EACCES));
        }
        Ok(())
    };
    if arg0.contains('/') {
        let path = if Path::new(arg0).is_absolute() { PathBuf::from(arg0) } else { cwd.join(arg0) };
        return match check(&path) {
            Ok(()) => Ok(PathBuf::from(arg0)),
            Err(libc::ENOENT) | Err(libc::ENOTDIR) => Err(exec_error("no such file or directory")),
            Err(libc::EACCES) => Err(exec_error("permission denied")),
            Err(errno) => Err(exec_error(&std::io::Error::from_raw_os_error(errno).to_string())),
        };
    }
    let search = env_value(env, "PATH").unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut denied = false;
    for dir in search.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(arg0);
        match check(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(libc::EACCES) => denied = true,
            Err(_) => {}
        }
    }
    if denied {
        Err(exec_error("permission denied"))
    } else {
        Err(exec_error("executable file not found in $PATH"))
    }
}

/// Sets no_new_privs for the process and its descendants.
pub fn set_no_new_privs() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().context(|| "set no_new_privs".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_search() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_owned()];
        let found = find_executable("sh", &env, Path::new("/")).unwrap();
        assert!(found.ends_with("sh"));
        let err = find_executable("no-such-program-x", &env, Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("executable file not found in $PATH"), "{err}");
        let err = find_executable("/no/such/file", &env, Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("no such file or directory"), "{err}");
    }

    #[test]
    fn env_lookup_takes_last() {
        let env = vec!["A=1".to_owned(), "B=2".to_owned(), "A=3".to_owned()];
        assert_eq!(env_value(&env, "A"), Some("3"));
        assert_eq!(env_value(&env, "C"), None);
    }
}

/// Applies the process attributes that need privileges (AppArmor profile
/// and SELinux label, rlimits, capabilities, user, no_new_privs), changes
/// to the working directory and resolves the executable. Returns the execve
/// arguments, ready to use.
///
/// The seccomp filter is loaded last when no_new_privs is set, so that it
/// governs as little of the set-up as possible. Without no_new_privs, only a
/// process with CAP_SYS_ADMIN may load a filter, so it is loaded first,
/// before capabilities are dropped. A filter with SCMP_ACT_NOTIFY rules
/// yields a listener fd, which goes to `on_listener` at once, before any
/// other syscall that the filter could hold up. `exec_process` is true for
/// `exec`, which alone takes `process.execCPUAffinity`.
pub fn prepare(
    process: &Process,
    linux: Option<&oci_spec::runtime::Linux>,
    exec_process: bool,
    seccomp: Option<&crate::seccomp::Filter>,
    on_listener: &mut dyn FnMut(OwnedFd) -> Result<()>,
) -> Result<ExecArgs> {
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    // Real-time scheduling and I/O classes need CAP_SYS_NICE or
    // CAP_SYS_ADMIN: set them while the process still has every capability,
    // and before a filter could deny the syscalls.
    if let Some(personality) = linux.and_then(|l| l.personality().as_ref()) {
        crate::attributes::set_personality(personality)?;
    }
    if let Some(policy) = linux.and_then(|l| l.memory_policy().as_ref()) {
        crate::attributes::set_memory_policy(policy)?;
    }
    if let Some(scheduler) = process.scheduler() {
        crate::attributes::set_scheduler(scheduler)?;
    }
    if let Some(priority) = process.io_priority() {
        crate::attributes::set_io_priority(priority)?;
    }
    crate::lsm::apply(process)?;
    if let Some(filter) = seccomp.filter(|_| !no_new_privs) {
        if let Some(listener) = crate::seccomp::load(filter)? {
            on_listener(listener)?;
        }
    }
    if let Some(rlimits) = process.rlimits() {
        apply_rlimits(rlimits)?;
    }

    // The cwd is entered while the process still has every capability, so
    // that a user who may not search it still starts there, as with runc.
    // When even that is denied (the runtime itself may lack access, as in
    // a user namespace), the user may have access: try again after the
    // switch.
    let cwd = process.cwd();
    let entered_cwd = match nix::unistd::chdir(cwd) {
        Ok(()) => true,
        Err(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM) => false,
        Err(errno) => {
            return Err(Error::io(
                format!("chdir to the process's cwd \"{}\"", cwd.display()),
                errno.into(),
            ))
        }
    };

    let capabilities = process.capabilities().as_ref().map(CapabilitySets::from_spec).transpose()?;
    if let Some(caps) = &capabilities {
        caps.apply_bounding()?;
        nix::sys::prctl::set_keepcaps(true).context(|| "set keepcaps".to_owned())?;
    }
    switch_user(process)?;
    if let Some(caps) = &capabilities {
        caps.apply_rest()?;
        nix::sys::prctl::set_keepcaps(false).context(|| "clear keepcaps".to_owned())?;
    }
    if no_new_privs {
        set_no_new_privs()?;
    }

    if entered_cwd {
        check_cwd_inside(cwd)?;
    } else {
        change_directory(cwd)?;
    }
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if env_value(&env, "HOME").is_none() {
        // As runc: the user's home from the container's /etc/passwd, or /.
        let home = home_directory(process.user().uid()).unwrap_or_else(|| "/".to_owned());
        env.push(format!("HOME={home}"));
    }
    let argv: Vec<String> = process.args().clone().unwrap_or_default();
    let arg0 = argv
        .first()
        .ok_or_else(|| Error::InvalidConfig("\"process.args\" is empty".into()))?;
    let executable = find_executable(arg0, &env, cwd)?;
    let exec = ExecArgs::new(&executable, &argv, &env)?;
    let final_affinity = process.exec_cpu_affinity().as_ref().and_then(|a| a.cpu_affinity_final().as_deref());
    if let Some(list) = final_affinity.filter(|_| exec_process) {
        crate::attributes::set_cpu_affinity(list, "process.execCPUAffinity.final")?;
    }
    if let Some(filter) = seccomp.filter(|_| no_new_privs) {
        if let Some(listener) = crate::seccomp::load(filter)? {
            on_listener(listener)?;
        }
    }
    Ok(exec)
}

/// Changes to the process's working directory, and checks that it is inside
/// the container: a cwd reached through a leaked descriptor would be
/// outside the root, and getcwd(2) then reports it as "(unreachable)".
fn change_directory(cwd: &Path) -> Result<()> {
    nix::unistd::chdir(cwd).context(|| format!("chdir to the process's cwd \"{}\"", cwd.display()))?;
    check_cwd_inside(cwd)
}

/// Checks that the working directory, entered as `cwd`, is inside the
/// container.
fn check_cwd_inside(cwd: &Path) -> Result<()> {
    let outside = || Error::Init(format!("working directory \"{}\" is outside the container", cwd.display()));
    // glibc's getcwd fails with ENOENT where the kernel's reports
    // "(unreachable)".
    let actual = match std::env::current_dir() {
        Ok(actual) => actual,
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Err(outside()),
        Err(err) => return Err(Error::io("read the working directory", err)),
    };
    if !actual.is_absolute() || actual.as_os_str().as_bytes().starts_with(b"(unreachable)") {
        return Err(outside());
    }
    Ok(())
}

/// The arguments of execve, built in advance so that nothing allocates or
/// fails between the start signal and the exec.
pub struct ExecArgs {
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
}

impl ExecArgs {
    fn new(path: &Path, argv: &[String], env: &[String]) -> Result<Self> {
        let to_c = |s: &str| CString::new(s).map_err(|_| Error::InvalidConfig(format!("\"{s}\" contains a NUL byte")));
        Ok(ExecArgs {
            path: CString::new(path.as_os_str().as_bytes())
                .map_err(|_| Error::InvalidConfig("executable path contains a NUL byte".into()))?,
            argv: argv.iter().map(|a| to_c(a)).collect::<Result<_>>()?,
            env: env.iter().map(|e| to_c(e)).collect::<Result<_>>()?,
        })
    }

    /// Calls execve. It returns only on failure: it then prints the reason on
    /// stderr, the only channel left once the runtime has returned, and exits
    /// with 127 for a missing program and 126 for one that cannot run, as
    /// shells do.
    pub fn exec(self) -> ! {
        let errno = match nix::unistd::execve(&self.path, &self.argv, &self.env) {
            Ok(never) => match never {},
            Err(errno) => errno,
        };
        let message = format!(
            "conman-runtime: exec \"{}\": {}\n",
            self.path.to_string_lossy(),
            std::io::Error::from_raw_os_error(errno as i32)
        );
        // SAFETY: write to stderr and exit without running destructors.
        unsafe {
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::_exit(if errno == nix::errno::Errno::ENOENT { 127 } else { 126 })
        }
    }
}
