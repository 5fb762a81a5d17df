//! Control groups on v1, v2 and hybrid hosts.
//!
//! The runtime creates one directory per container in every mounted
//! hierarchy, writes the resource limits it supports, and places the init in
//! all of them before the init runs any code of the container. The paths
//! created are recorded in the state so that `delete` removes exactly those.
//!
//! Device rules go to the v1 devices controller when the host has one, and
//! otherwise to an eBPF program on the v2 cgroup ([`crate::device_filter`]).
//!
//! [`resources`] writes the limits, field by field; [`stats`] reads the
//! usage back for `events`, through cgroups-rs's controller types.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use crate::error::{Context, Error, Result};

mod resources;
pub mod stats;
pub mod systemd;
use crate::sys::write_file;

/// Parent of relative and default cgroup paths.
pub const DEFAULT_PARENT: &str = "/conman";

/// A mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount_point: PathBuf,
    /// Controllers of a v1 hierarchy (`cpu`, `memory`, `name=systemd`…);
    /// empty for the v2 hierarchy.
    pub controllers: Vec<String>,
    /// Whether this is the cgroup v2 (unified) hierarchy.
    pub unified: bool,
}

impl Hierarchy {
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// Lists the cgroup hierarchies mounted on this host, from
/// /proc/self/mountinfo. The list is read once per process: one runtime
/// command needs it several times (the cgroup, then the cgroup mounts of
/// the rootfs), and the host's cgroup mounts do not change meanwhile.
pub fn hierarchies() -> Result<Vec<Hierarchy>> {
    static CACHE: std::sync::OnceLock<Vec<Hierarchy>> = std::sync::OnceLock::new();
    if let Some(cached) = CACHE.get() {
        return Ok(cached.clone());
    }
    let found = read_hierarchies()?;
    Ok(CACHE.get_or_init(|| found).clone())
}

fn read_hierarchies() -> Result<Vec<Hierarchy>> {
    let text = fs::read_to_string("/proc/self/mountinfo").context(|| "read /proc/self/mountinfo")?;
    Ok(parse_hierarchies(&text))
}

/// Lists the cgroup hierarchies of a mountinfo text. A mount that a later
/// mount covers (at its own mount point or at a parent directory) is left
/// out: mountinfo still lists it, but its path now leads to the later mount.
fn parse_hierarchies(text: &str) -> Vec<Hierarchy> {
    let mounts: Vec<(PathBuf, &str, &str)> = mountinfo_entries(text).collect();
    let mut found: Vec<Hierarchy> = Vec::new();
    for (index, (mount_point, fstype, super_options)) in mounts.iter().enumerate() {
        if !matches!(*fstype, "cgroup" | "cgroup2") {
            continue;
        }
        let covered = mounts[index + 1..].iter().any(|(later, _, _)| mount_point.starts_with(later));
        if covered {
            continue;
        }
        let mount_point = mount_point.clone();
        let hierarchy = match *fstype {
            "cgroup2" => Hierarchy {
                mount_point,
                controllers: Vec::new(),
                unified: true,
            },
            "cgroup" => Hierarchy {
                mount_point,
                controllers: super_options
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro" | "nosuid" | "nodev" | "noexec" | "relatime")
                            && !o.starts_with("release_agent")
                            && *o != "clone_children"
                            && *o != "noprefix"
                            && *o != "xattr"
                            && *o != "cpuset_v2_mode"
                    })
                    .map(str::to_owned)
                    .collect(),
                unified: false,
            },
            _ => continue,
        };
        // A hierarchy mounted twice is used at its first mount point only.
        let duplicate = found.iter().any(|h| {
            h.unified == hierarchy.unified && h.controllers == hierarchy.controllers
        });
        if !duplicate {
            found.push(hierarchy);
        }
    }
    found
}

/// Parses the lines of a mountinfo text into (mount point, filesystem
/// type, super options), skipping lines it cannot read.
pub fn mountinfo_entries(text: &str) -> impl Iterator<Item = (PathBuf, &str, &str)> {
    text.lines().filter_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right_fields = right.split(' ');
        let fstype = right_fields.next().unwrap_or("");
        let super_options = right_fields.nth(1).unwrap_or("");
        let mount_point = PathBuf::from(unescape_mountinfo(left.split(' ').nth(4)?));
        Some((mount_point, fstype, super_options))
    })
}

/// Decodes the octal escapes (`\040` for a space) of mountinfo fields.
pub fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Turns `linux.cgroupsPath` into a path relative to each hierarchy's root.
pub fn container_path(cgroups_path: Option<&Path>, id: &str) -> Result<PathBuf> {
    let path = match cgroups_path {
        None => Path::new(DEFAULT_PARENT).join(id),
        Some(p) if p.as_os_str().is_empty() => Path::new(DEFAULT_PARENT).join(id),
        Some(p) if p.is_absolute() => p.to_owned(),
        Some(p) => Path::new(DEFAULT_PARENT).join(p),
    };
    for component in path.components() {
        if matches!(component, std::path::Component::ParentDir) {
            return Err(Error::InvalidConfig(format!(
                "\"linux.cgroupsPath\" \"{}\" must not contain \"..\"",
                path.display()
            )));
        }
    }
    Ok(path.strip_prefix("/").unwrap_or(&path).to_owned())
}

/// Checks what can be checked of `linux.resources` without a cgroup:
/// ranges and names. Whether the host has the controllers is found out when
/// the limits are written.
pub fn check_resources(resources: &LinuxResources) -> Result<()> {
    if let Some(swappiness) = resources.memory().as_ref().and_then(|m| m.swappiness()) {
        if swappiness > 100 {
            return Err(Error::InvalidConfig(format!(
                "\"linux.resources.memory.swappiness\" must be 0 to 100, got {swappiness}"
            )));
        }
    }
    for key in resources.unified().iter().flat_map(|u| u.keys()) {
        if key.is_empty() || key.contains('/') || key.starts_with('.') {
            return Err(Error::InvalidConfig(format!(
                "\"linux.resources.unified\" key \"{key}\" is not the name of a cgroup file"
            )));
        }
    }
    for hugepage in resources.hugepage_limits().iter().flatten() {
        let size = hugepage.page_size();
        let valid = size.len() > 2
            && size.ends_with('B')
            && size[..size.len() - 2].bytes().all(|b| b.is_ascii_digit())
            && matches!(&size[size.len() - 2..], "KB" | "MB" | "GB");
        if !valid {
            return Err(Error::InvalidConfig(format!(
                "\"linux.resources.hugepageLimits\" page size \"{size}\" is not of the form 2MB, 1GB or 64KB"
            )));
        }
    }
    Ok(())
}

/// The cgroup directories of one container.
#[derive(Debug, Default)]
pub struct Cgroup {
    pub dirs: Vec<(Hierarchy, PathBuf)>,
    /// Hierarchies were left out because the (non-root) runtime may not
    /// write them.
    pub rootless_skipped: bool,
}

/// Reports whether the calling user may create `relative` under
/// `mount_point`: the deepest existing directory on the way must be
/// writable to it.
fn may_create(mount_point: &Path, relative: &Path) -> bool {
    let mut existing = mount_point.join(relative);
    while !existing.exists() {
        if !existing.pop() {
            return false;
        }
    }
    let Ok(path) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(existing.as_os_str())) else {
        return false;
    };
    // SAFETY: a valid C string.
    unsafe { libc::access(path.as_ptr(), libc::W_OK) == 0 }
}

impl Cgroup {
    /// Creates the container's directory in every hierarchy. On failure the
    /// directories made so far are removed.
    ///
    /// Run by a user other than root, the runtime has no cgroup unless one
    /// was delegated to it: a hierarchy it may not write is left out, and
    /// `rootless_skipped` records that. Limits then fail in [`Cgroup::apply`].
    pub fn create(relative: &Path) -> Result<Cgroup> {
        let hierarchies = hierarchies()?;
        check_not_frozen(&hierarchies, relative)?;
        let mut cgroup = Cgroup::default();
        // SAFETY: geteuid has no arguments and cannot fail.
        let rootless = unsafe { libc::geteuid() } != 0;
        let result = (|| {
            for hierarchy in hierarchies {
                let path = hierarchy.mount_point.join(relative);
                if rootless && !may_create(&hierarchy.mount_point, relative) {
                    tracing::debug!(cgroup = %path.display(), "no delegated cgroup for this user: left out");
                    cgroup.rootless_skipped = true;
                    continue;
                }
                if hierarchy.unified {
                    enable_controllers(&hierarchy.mount_point, relative)?;
                }
                if hierarchy.has("cpuset") {
                    create_cpuset_dirs(&hierarchy.mount_point, relative)?;
                } else {
                    fs::create_dir_all(&path)
                        .context(|| format!("create cgroup {}", path.display()))?;
                }
                cgroup.dirs.push((hierarchy, path));
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                cgroup.warn_if_occupied();
                Ok(cgroup)
            }
            Err(err) => {
                let _ = cgroup.remove();
                Err(err)
            }
        }
    }

    /// Warns when processes are already in the cgroup: another container or
    /// program given the same `linux.cgroupsPath` shares its limits, and
    /// `delete` of this container kills them too.
    fn warn_if_occupied(&self) {
        let occupied = self.dirs.iter().map(|(_, dir)| (dir, procs(dir).len())).find(|(_, count)| *count > 0);
        if let Some((dir, count)) = occupied {
            tracing::warn!(
                "container's cgroup is not empty: {} already contains {count} processes, which will share the container's limits and be killed by its delete",
                dir.display()
            );
        }
    }

    /// Writes the supported resource limits and the device rules.
    pub fn apply(&self, resources: Option<&LinuxResources>) -> Result<()> {
        if self.rootless_skipped {
            // Without a cgroup of its own, a rootless container can have no
            // limits. Device rules need none: in a user namespace the
            // device nodes are bind mounts of the host's, and the kernel
            // checks access on them as for the user.
            let limited = resources.is_some_and(|r| {
                let mut without_devices = r.clone();
                without_devices.set_devices(None);
                serde_json::to_value(&without_devices).is_ok_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
            });
            if limited {
                // SAFETY: geteuid has no arguments and cannot fail.
                let uid = unsafe { libc::geteuid() };
                return Err(Error::InvalidConfig(format!(
                    "\"linux.resources\" sets limits, but this runtime runs as uid {uid} and may not create cgroups: delegate a cgroup to the user, or remove the limits"
                )));
            }
            return Ok(());
        }
        let v1_devices = self.find("devices").is_some();
        if let Some(resources) = resources {
            resources::apply(self, resources, resources::Phase::Create)?;
        }
        let rules = resources.and_then(|r| r.devices().as_ref());
        if v1_devices {
            self.apply_device_rules(rules)?;
        } else if let Some(rules) = rules.filter(|r| !r.is_empty()) {
            self.attach_device_filter(rules)?;
        }
        Ok(())
    }

    /// Rebuilds the handle from the directories recorded in a container's
    /// state, matching each to the hierarchy mounted above it.
    pub fn from_paths(paths: &[PathBuf]) -> Result<Cgroup> {
        let hierarchies = hierarchies()?;
        let mut dirs = Vec::new();
        for path in paths {
            let hierarchy = hierarchies
                .iter()
                .filter(|h| path.starts_with(&h.mount_point))
                .max_by_key(|h| h.mount_point.as_os_str().len())
                .ok_or_else(|| Error::InvalidArgument(format!("cgroup {} is on no mounted hierarchy", path.display())))?;
            dirs.push((hierarchy.clone(), path.clone()));
        }
        Ok(Cgroup { dirs, rootless_skipped: false })
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, path)| path.clone()).collect()
    }

    fn find(&self, controller: &str) -> Option<PathBuf> {
        self.dirs.iter().find(|(h, _)| h.has(controller)).map(|(_, p)| p.clone())
    }

    fn unified(&self) -> Option<PathBuf> {
        self.dirs.iter().find(|(h, _)| h.unified).map(|(_, p)| p.clone())
    }

    /// Changes the limits of a live container.
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        check_resources(resources)?;
        resources::apply(self, resources, resources::Phase::Update)
    }

    /// Freezes (`true`) or thaws every process of the container, and waits
    /// until the kernel reports the new state.
    pub fn set_frozen(&self, frozen: bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        if let Some(dir) = self.find("freezer") {
            let wanted = if frozen { "FROZEN" } else { "THAWED" };
            loop {
                write_file(dir.join("freezer.state"), wanted.as_bytes())?;
                let state = fs::read_to_string(dir.join("freezer.state")).unwrap_or_default();
                if state.trim() == wanted {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(Error::io(
                        format!("set {} to {wanted}", dir.join("freezer.state").display()),
                        io::Error::from_raw_os_error(libc::ETIMEDOUT),
                    ));
                }
                sleep(Duration::from_millis(1));
            }
        }
        if let Some(dir) = self.unified().filter(|d| d.join("cgroup.freeze").exists()) {
            let value = if frozen { "1" } else { "0" };
            write_file(dir.join("cgroup.freeze"), value.as_bytes())?;
            loop {
                let events = fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default();
                if events.lines().any(|l| l == format!("frozen {value}")) {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(Error::io(
                        format!("wait for {} to report frozen {value}", dir.join("cgroup.events").display()),
                        io::Error::from_raw_os_error(libc::ETIMEDOUT),
                    ));
                }
                sleep(Duration::from_millis(1));
            }
        }
        Err(Error::InvalidArgument(
            "no freezer: this host has neither the v1 freezer controller nor cgroup v2".into(),
        ))
    }

    /// Writes the device rules of the spec to the v1 devices controller,
    /// followed by the devices every container needs (as runc and crun
    /// allow them).
    fn apply_device_rules(&self, rules: Option<&Vec<LinuxDeviceCgroup>>) -> Result<()> {
        let Some(dir) = self.find("devices") else {
            return Ok(());
        };
        for rule in rules.into_iter().flatten() {
            let file = if rule.allow() { "devices.allow" } else { "devices.deny" };
            write_file(dir.join(file), device_rule(rule).as_bytes())?;
        }
        for rule in DEFAULT_ALLOWED_DEVICES {
            write_file(dir.join("devices.allow"), rule.as_bytes())?;
        }
        Ok(())
    }

    /// Enforces the device rules on cgroup v2, where there is no devices
    /// controller, with an eBPF program attached to the container's cgroup.
    fn attach_device_filter(&self, rules: &[LinuxDeviceCgroup]) -> Result<()> {
        let dir = self.unified().ok_or_else(|| {
            Error::InvalidConfig(
                "\"linux.resources.devices\" cannot be enforced: this host has neither the v1 devices controller nor cgroup v2".into(),
            )
        })?;
        let mut filter_rules = Vec::new();
        for rule in rules {
            filter_rules.push(crate::device_filter::Rule::from_spec(rule)?);
        }
        for rule in DEFAULT_ALLOWED_DEVICES {
            filter_rules.push(crate::device_filter::Rule::parse_v1(rule, true).expect("default rules are valid"));
        }
        let program = crate::device_filter::load(&filter_rules)?;
        crate::device_filter::attach(&program, &dir)
    }

    /// Places `pid` in the container's cgroup in every hierarchy.
    pub fn join(&self, pid: i32) -> Result<()> {
        for (_, path) in &self.dirs {
            write_file(path.join("cgroup.procs"), pid.to_string().as_bytes())?;
        }
        Ok(())
    }

    /// Removes the container's cgroup directories, first killing whatever
    /// still runs in them. Directories already gone are fine.
    pub fn remove(&self) -> Result<()> {
        remove_paths(&self.paths())
    }
}

const DEFAULT_ALLOWED_DEVICES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

fn device_rule(rule: &LinuxDeviceCgroup) -> String {
    let kind = match rule.typ() {
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => "c",
        Some(LinuxDeviceType::B) => "b",
        Some(LinuxDeviceType::P) => "p",
        Some(LinuxDeviceType::A) | None => "a",
    };
    let number = |n: Option<i64>| n.filter(|&n| n >= 0).map_or("*".to_owned(), |n| n.to_string());
    let access = rule.access().as_deref().filter(|a| !a.is_empty()).unwrap_or("rwm");
    if kind == "a" && rule.major().is_none() && rule.minor().is_none() {
        return format!("a *:* {access}");
    }
    format!("{kind} {}:{} {access}", number(rule.major()), number(rule.minor()))
}

/// Creates the v2 cgroups above `relative` and enables in each of them
/// every controller it has, so that the container's own cgroup gets all the
/// controllers the host offers. A controller that cannot be enabled (one
/// bound to a v1 hierarchy, or one refused because a cgroup on the way has
/// processes of its own) is left out here; a limit that needs it fails
/// later with the field's name.
fn enable_controllers(mount_point: &Path, relative: &Path) -> Result<()> {
    let mut current = mount_point.to_owned();
    let mut ancestors = vec![current.clone()];
    let depth = relative.components().count();
    for component in relative.components().take(depth.saturating_sub(1)) {
        current.push(component);
        ancestors.push(current.clone());
    }
    for dir in ancestors {
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(Error::io(format!("create cgroup {}", dir.display()), err)),
        }
        let available = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        for controller in available.split_whitespace() {
            if enabled.split_whitespace().any(|c| c == controller) {
                continue;
            }
            if let Err(err) = fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}")) {
                tracing::debug!(cgroup = %dir.display(), controller, error = %err, "cannot enable controller");
            }
        }
    }
    Ok(())
}

/// Creates the cpuset directories down to `relative`, copying `cpuset.cpus`
/// and `cpuset.mems` from the parent into each new one: a v1 cpuset cgroup
/// starts empty and admits no task until both are set.
fn create_cpuset_dirs(mount_point: &Path, relative: &Path) -> Result<()> {
    let mut current = mount_point.to_owned();
    for component in relative.components() {
        let parent = current.clone();
        current.push(component);
        match fs::create_dir(&current) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(Error::io(format!("create cgroup {}", current.display()), err)),
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let own = fs::read_to_string(current.join(file)).unwrap_or_default();
            if own.trim().is_empty() {
                let inherited = fs::read_to_string(parent.join(file))
                    .context(|| format!("read {}", parent.join(file).display()))?;
                write_file(current.join(file), inherited.trim().as_bytes())?;
            }
        }
    }
    Ok(())
}

/// Lists the pids in a cgroup directory.
pub fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Lists the pids of a container from its recorded cgroup paths.
pub fn container_procs(paths: &[PathBuf]) -> Vec<i32> {
    let mut pids: Vec<i32> = Vec::new();
    for path in paths {
        for pid in procs(path) {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Sends `signal` to every process in the container's cgroups.
pub fn signal_all(paths: &[PathBuf], signal: i32) -> Result<()> {
    for pid in container_procs(paths) {
        // SAFETY: kill has no memory effects.
        if unsafe { libc::kill(pid, signal) } < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                return Err(Error::io(format!("send signal {signal} to pid {pid}"), err));
            }
        }
    }
    Ok(())
}

/// Fails when the cgroup at `relative`, or the closest ancestor that
/// exists, is frozen. A process placed there would stop before it runs
/// anything, and `create` would wait for it forever. Nothing is created or
/// changed, so the cgroup stays as its owner left it.
fn check_not_frozen(hierarchies: &[Hierarchy], relative: &Path) -> Result<()> {
    for hierarchy in hierarchies.iter().filter(|h| h.unified || h.has("freezer")) {
        let mut dir = hierarchy.mount_point.join(relative);
        while !dir.is_dir() {
            if !dir.pop() {
                break;
            }
        }
        // The v1 freezer.state of a cgroup below a frozen one reads FROZEN
        // too. On v2, cgroup.events reports "frozen 1" for the same case.
        let frozen = if hierarchy.unified {
            fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|events| events.lines().any(|l| l == "frozen 1"))
        } else {
            fs::read_to_string(dir.join("freezer.state")).is_ok_and(|state| state.trim() != "THAWED")
        };
        if frozen {
            let thaw = if hierarchy.unified { "write 0 to its cgroup.freeze" } else { "write THAWED to its freezer.state" };
            return Err(Error::InvalidArgument(format!(
                "container's cgroup unexpectedly frozen: {} would stop the init before it runs; {thaw}, or choose another \"linux.cgroupsPath\"",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Reports whether the container's v1 freezer or v2 `cgroup.freeze` is set.
pub fn is_frozen(paths: &[PathBuf]) -> bool {
    // The v1 freezer hierarchy first, then the v2 one: a v1 controller
    // directory has neither file.
    let freezer = paths.iter().filter(|p| p.components().any(|c| c.as_os_str() == "freezer"));
    let unified = paths.iter().filter(|p| p.join("cgroup.freeze").exists());
    for path in freezer.chain(unified) {
        if let Ok(state) = fs::read_to_string(path.join("freezer.state")) {
            // FREEZING: a pause in progress, or a task that just joined a
            // frozen cgroup; either way the container is not running freely.
            return matches!(state.trim(), "FROZEN" | "FREEZING");
        }
        if let Ok(value) = fs::read_to_string(path.join("cgroup.freeze")) {
            return value.trim() == "1";
        }
    }
    false
}

/// Kills what is left in `paths` and removes the directories.
pub fn remove_paths(paths: &[PathBuf]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let live = container_procs(paths);
        if !live.is_empty() {
            signal_all(paths, libc::SIGKILL)?;
        }
        let mut busy = None;
        for path in paths {
            match fs::remove_dir(path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => busy = Some((path.clone(), err)),
            }
        }
        match busy {
            None => return Ok(()),
            Some((path, err)) if Instant::now() >= deadline => {
                return Err(Error::io(format!("remove cgroup {}", path.display()), err))
            }
            Some(_) => sleep(Duration::from_millis(5)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn covered_hierarchies_skipped() {
        let text = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
40 25 0:40 / /sys/fs/cgroup rw - tmpfs view rw,mode=755
41 40 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
42 40 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";
        let found = super::parse_hierarchies(text);

        let names: Vec<(String, bool)> = found
            .iter()
            .map(|h| (h.mount_point.display().to_string(), h.unified))
            .collect();
        assert_eq!(
            names,
            [("/sys/fs/cgroup/cpu".to_owned(), false), ("/sys/fs/cgroup/pids".to_owned(), false)],
            "only the mounts on top are used; the v2 mount under the new tmpfs is hidden"
        );
    }

    use super::*;

    #[test]
    fn path_forms() {
        assert_eq!(container_path(None, "c1").unwrap(), PathBuf::from("conman/c1"));
        assert_eq!(container_path(Some(Path::new("/a/b")), "c1").unwrap(), PathBuf::from("a/b"));
        assert_eq!(container_path(Some(Path::new("x")), "c1").unwrap(), PathBuf::from("conman/x"));
        assert!(container_path(Some(Path::new("/a/../b")), "c1").is_err());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
