//! AppArmor profiles and SELinux labels: `process.apparmorProfile`,
//! `process.selinuxLabel` and `linux.mountLabel`.
//!
//! `create` and `exec` check first that the host has the security module
//! that a field needs, and fail naming the field when it does not, so a
//! profile is never dropped silently. The init and the exec process then
//! write the profile or label to their own `/proc/self/attr` file, which
//! the kernel applies at their next execve: the container's program.
//!
//! NOTE: the hosts that this runtime is tested on have neither AppArmor nor
//! SELinux, so only the checks that reject these fields run in the tests.
//! The code that applies them (`apply`, `mount_data`) has not run.

use std::path::Path;

use oci_spec::runtime::Process;

use crate::error::{Error, Result};

/// The file whose `Y` means that AppArmor is enabled.
const APPARMOR_ENABLED: &str = "/sys/module/apparmor/parameters/enabled";

/// A file of selinuxfs, which SELinux hosts mount at /sys/fs/selinux.
const SELINUX_ENFORCE: &str = "/sys/fs/selinux/enforce";

/// Filesystems that take a `context=` option for `linux.mountLabel`. Bind
/// mounts keep the label of their source.
const LABELLED_FILESYSTEMS: &[&str] = &["tmpfs", "devpts", "mqueue"];

/// Reports whether the host has AppArmor enabled.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string(APPARMOR_ENABLED).is_ok_and(|text| text.starts_with('Y'))
}

/// Reports whether the host has SELinux enabled (selinuxfs is mounted).
pub fn selinux_enabled() -> bool {
    Path::new(SELINUX_ENFORCE).exists()
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// Fails when `process` or `mount_label` requires a security module that
/// this host lacks.
pub fn check_host(process: &Process, mount_label: Option<&str>) -> Result<()> {
    if let Some(profile) = non_empty(process.apparmor_profile()) {
        if !apparmor_enabled() {
            return Err(Error::InvalidConfig(format!(
                "\"process.apparmorProfile\" is \"{profile}\", but this host has no AppArmor \
                 ({APPARMOR_ENABLED} is missing or not Y); remove the field to run without a profile"
            )));
        }
    }
    if let Some(label) = non_empty(process.selinux_label()) {
        if !selinux_enabled() {
            return Err(Error::InvalidConfig(format!(
                "\"process.selinuxLabel\" is \"{label}\", but this host has no SELinux \
                 (selinuxfs is not mounted at /sys/fs/selinux); remove the field to run without a label"
            )));
        }
    }
    if let Some(label) = mount_label.filter(|l| !l.is_empty()) {
        if !selinux_enabled() {
            return Err(Error::InvalidConfig(format!(
                "\"linux.mountLabel\" is \"{label}\", but this host has no SELinux \
                 (selinuxfs is not mounted at /sys/fs/selinux); remove the field to mount without a label"
            )));
        }
    }
    Ok(())
}

/// Sets the AppArmor profile and the SELinux label that the process's next
/// execve takes. Runs as root in the container, before no_new_privs and
/// seccomp, which could otherwise forbid the transition or the write.
pub fn apply(process: &Process) -> Result<()> {
    if let Some(profile) = non_empty(process.apparmor_profile()) {
        // Newer kernels have a directory per security module, older ones
        // only the shared file.
        let command = format!("exec {profile}");
        match crate::procfs::open("/proc/self/attr/apparmor/exec", libc::O_WRONLY) {
            Ok(file) => write_attr(&file, "/proc/self/attr/apparmor/exec", &command)?,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                let file = crate::procfs::open("/proc/self/attr/exec", libc::O_WRONLY)?;
                write_attr(&file, "/proc/self/attr/exec", &command)?;
            }
            Err(err) => return Err(err),
        }
    }
    if let Some(label) = non_empty(process.selinux_label()) {
        let file = crate::procfs::open("/proc/self/attr/exec", libc::O_WRONLY)?;
        write_attr(&file, "/proc/self/attr/exec", label)?;
    }
    Ok(())
}

fn write_attr(file: &std::os::fd::OwnedFd, path: &str, value: &str) -> Result<()> {
    nix::unistd::write(file, value.as_bytes())
        .map_err(|errno| Error::errno(format!("write \"{value}\" to {path}"), errno))?;
    Ok(())
}

/// Returns the mount data for a filesystem of type `fstype`, with the
/// `context=` option of `mount_label` added when the filesystem takes one.
pub fn mount_data(fstype: &str, data: &[String], mount_label: Option<&str>) -> Vec<String> {
    let mut data = data.to_vec();
    if let Some(label) = mount_label.filter(|l| !l.is_empty()) {
        if LABELLED_FILESYSTEMS.contains(&fstype) && !data.iter().any(|d| d.starts_with("context=")) {
            data.push(format!("context=\"{label}\""));
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_label_only_on_labelled_filesystems() {
        let data = vec!["size=1m".to_owned()];

        let tmpfs = mount_data("tmpfs", &data, Some("system_u:object_r:container_file_t:s0"));
        let proc = mount_data("proc", &data, Some("system_u:object_r:container_file_t:s0"));
        let unlabelled = mount_data("tmpfs", &data, None);

        assert_eq!(tmpfs, ["size=1m", "context=\"system_u:object_r:container_file_t:s0\""]);
        assert_eq!(proc, ["size=1m"]);
        assert_eq!(unlabelled, ["size=1m"]);
    }
}
