//! Writes `linux.resources` into the container's cgroup files.
//!
//! Each field goes to the hierarchy that contains its controller: a v1
//! hierarchy when one has the controller mounted, otherwise the v2
//! hierarchy when the controller is enabled for the container's cgroup
//! there. A hybrid host can have both kinds, one controller each (this
//! machine has hugetlb on v2 and the rest on v1). A field whose controller
//! the host lacks, or that has no file on the version in use, is an error
//! that names the field and the controller.

use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork, LinuxResources, LinuxThrottleDevice,
};

use super::Cgroup;
use crate::error::{Error, Result};

/// The directory of one controller's files for one container, and its
/// cgroup version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Site<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

impl<'a> Site<'a> {
    pub(crate) fn dir(self) -> &'a Path {
        match self {
            Site::V1(dir) | Site::V2(dir) => dir,
        }
    }

    pub(crate) fn is_v2(self) -> bool {
        matches!(self, Site::V2(_))
    }
}

/// Returns the cgroup v2 name of a v1 controller, if v2 has it.
fn v2_name(controller: &str) -> Option<&str> {
    match controller {
        "blkio" => Some("io"),
        "cpu" | "cpuset" | "memory" | "pids" | "hugetlb" | "rdma" | "misc" => Some(controller),
        _ => None,
    }
}

impl Cgroup {
    /// Finds the directory that contains `controller`'s files for this
    /// container.
    pub(crate) fn site(&self, controller: &str) -> Option<Site<'_>> {
        if let Some((_, dir)) = self.dirs.iter().find(|(h, _)| h.has(controller)) {
            return Some(Site::V1(dir));
        }
        let name = v2_name(controller)?;
        let (_, dir) = self.dirs.iter().find(|(h, _)| h.unified)?;
        let enabled = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        enabled.split_whitespace().any(|c| c == name).then_some(Site::V2(dir))
    }

    fn need(&self, field: &str, controller: &str) -> Result<Site<'_>> {
        self.site(controller).ok_or_else(|| {
            Error::InvalidConfig(format!(
                "\"linux.resources.{field}\" needs the {controller} cgroup controller, which this host does not provide"
            ))
        })
    }
}

/// Writes `value` to `file` in `dir` for the field `field`.
fn set(field: &str, dir: &Path, file: &str, value: impl Display) -> Result<()> {
    let path = dir.join(file);
    let value = value.to_string();
    fs::write(&path, value.as_bytes()).map_err(|err| {
        Error::io(
            format!("set \"linux.resources.{field}\": write \"{value}\" to {}", path.display()),
            err,
        )
    })
}

fn no_v2(field: &str, controller: &str) -> Error {
    Error::InvalidConfig(format!(
        "\"linux.resources.{field}\" has no cgroup v2 equivalent, and this host has the {controller} controller on cgroup v2"
    ))
}

fn no_v1(field: &str) -> Error {
    Error::InvalidConfig(format!(
        "\"linux.resources.{field}\" is for cgroup v2, and this host has no cgroup v2 hierarchy"
    ))
}

/// `-1` means "no limit": v1 takes it as written, v2 spells it `max`.
fn limit(value: i64, v2: bool) -> String {
    if value < 0 && v2 {
        "max".into()
    } else {
        value.to_string()
    }
}

/// The operation that writes the limits: an update also checks
/// `memory.checkBeforeUpdate` against the current usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Create,
    Update,
}

/// Writes every resource field of `resources` except the device rules.
pub(crate) fn apply(cgroup: &Cgroup, resources: &LinuxResources, phase: Phase) -> Result<()> {
    if let Some(memory) = resources.memory() {
        apply_memory(cgroup, memory, phase)?;
    }
    if let Some(cpu) = resources.cpu() {
        apply_cpu(cgroup, cpu)?;
    }
    if let Some(pids) = resources.pids() {
        let site = cgroup.need("pids.limit", "pids")?;
        let value = if pids.limit() > 0 { pids.limit().to_string() } else { "max".into() };
        set("pids.limit", site.dir(), "pids.max", value)?;
    }
    if let Some(block_io) = resources.block_io() {
        apply_block_io(cgroup, block_io)?;
    }
    for hugepage in resources.hugepage_limits().iter().flatten() {
        apply_hugepage(cgroup, hugepage)?;
    }
    if let Some(network) = resources.network() {
        apply_network(cgroup, network)?;
    }
    if let Some(rdma) = resources.rdma().as_ref().filter(|r| !r.is_empty()) {
        let site = cgroup.need("rdma", "rdma")?;
        let mut devices: Vec<_> = rdma.iter().collect();
        devices.sort_by(|a, b| a.0.cmp(b.0));
        for (device, limits) in devices {
            let mut line = device.clone();
            if let Some(handles) = limits.hca_handles() {
                line.push_str(&format!(" hca_handle={handles}"));
            }
            if let Some(objects) = limits.hca_objects() {
                line.push_str(&format!(" hca_object={objects}"));
            }
            set(&format!("rdma.{device}"), site.dir(), "rdma.max", line)?;
        }
    }
    if let Some(unified) = resources.unified().as_ref().filter(|u| !u.is_empty()) {
        apply_unified(cgroup, unified)?;
    }
    Ok(())
}

fn apply_memory(cgroup: &Cgroup, memory: &LinuxMemory, phase: Phase) -> Result<()> {
    let nonzero = |value: Option<i64>| value.filter(|&v| v != 0);
    let requested = [
        memory.limit(),
        memory.reservation(),
        memory.swap(),
        nonzero(memory.kernel()),
        nonzero(memory.kernel_tcp()),
        memory.swappiness().map(|s| s as i64),
    ];
    let anything = requested.iter().any(Option::is_some)
        || memory.disable_oom_killer() == Some(true)
        || memory.use_hierarchy() == Some(false);
    if !anything {
        return Ok(());
    }
    let site = cgroup.need("memory", "memory")?;
    let dir = site.dir();
    let v2 = site.is_v2();

    if phase == Phase::Update && memory.check_before_update() == Some(true) {
        if let Some(new_limit) = memory.limit().filter(|&l| l > 0) {
            let usage_file = if v2 { "memory.current" } else { "memory.usage_in_bytes" };
            let usage: i64 = fs::read_to_string(dir.join(usage_file))
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(0);
            if new_limit < usage {
                return Err(Error::InvalidArgument(format!(
                    "\"linux.resources.memory.limit\" {new_limit} is below the container's current memory use of {usage} bytes (memory.checkBeforeUpdate is set)"
                )));
            }
        }
    }

    if let Some(reservation) = memory.reservation() {
        let file = if v2 { "memory.low" } else { "memory.soft_limit_in_bytes" };
        set("memory.reservation", dir, file, limit(reservation, v2))?;
    }
    if v2 {
        if let Some(value) = memory.limit() {
            set("memory.limit", dir, "memory.max", limit(value, true))?;
        }
        if let Some(swap) = memory.swap() {
            // OCI's swap is memory plus swap, while v2's memory.swap.max is
            // swap alone.
            let value = match memory.limit() {
                _ if swap < 0 => "max".to_owned(),
                Some(memory_limit) if memory_limit > 0 => (swap - memory_limit).max(0).to_string(),
                _ => swap.to_string(),
            };
            if !dir.join("memory.swap.max").exists() {
                return Err(Error::InvalidConfig(
                    "\"linux.resources.memory.swap\" is set, but this kernel has no swap accounting (no memory.swap.max)".into(),
                ));
            }
            set("memory.swap", dir, "memory.swap.max", value)?;
        }
        if nonzero(memory.kernel()).is_some() {
            return Err(no_v2("memory.kernel", "memory"));
        }
        if nonzero(memory.kernel_tcp()).is_some() {
            return Err(no_v2("memory.kernelTCP", "memory"));
        }
        if memory.swappiness().is_some() {
            return Err(no_v2("memory.swappiness", "memory"));
        }
        if memory.disable_oom_killer() == Some(true) {
            return Err(no_v2("memory.disableOOMKiller", "memory"));
        }
        if memory.use_hierarchy() == Some(false) {
            return Err(Error::InvalidConfig(
                "\"linux.resources.memory.useHierarchy\" is false, but cgroup v2 memory accounting is always hierarchical".into(),
            ));
        }
        return Ok(());
    }

    if let Some(value) = memory.use_hierarchy() {
        set("memory.useHierarchy", dir, "memory.use_hierarchy", u8::from(value))?;
    }
    if let Some(value) = memory.limit() {
        let written = set("memory.limit", dir, "memory.limit_in_bytes", value);
        // v1 keeps the memory limit at or below memory+swap: when both
        // grow, memory+swap must be raised first. A limit lifted to -1
        // with no swap given lifts memory+swap too, as in runc, because a
        // lower memory+swap limit would keep memory limited anyway.
        let einval = |err: &Error| err.raw_os_error() == Some(libc::EINVAL);
        match (written, memory.swap()) {
            (Ok(()), _) => {}
            (Err(err), Some(swap)) if einval(&err) => {
                set_memsw(dir, swap)?;
                set("memory.limit", dir, "memory.limit_in_bytes", value)?;
            }
            (Err(err), None) if einval(&err) && value == -1 && dir.join("memory.memsw.limit_in_bytes").exists() => {
                set("memory.swap", dir, "memory.memsw.limit_in_bytes", -1)?;
                set("memory.limit", dir, "memory.limit_in_bytes", value)?;
            }
            (Err(err), _) => return Err(err),
        }
    }
    if let Some(swap) = memory.swap() {
        set_memsw(dir, swap)?;
    }
    if let Some(value) = nonzero(memory.kernel()) {
        set("memory.kernel", dir, "memory.kmem.limit_in_bytes", value)?;
    }
    if let Some(value) = nonzero(memory.kernel_tcp()) {
        set("memory.kernelTCP", dir, "memory.kmem.tcp.limit_in_bytes", value)?;
    }
    if let Some(swappiness) = memory.swappiness() {
        if swappiness > 100 {
            return Err(Error::InvalidConfig(format!(
                "\"linux.resources.memory.swappiness\" must be 0 to 100, got {swappiness}"
            )));
        }
        set("memory.swappiness", dir, "memory.swappiness", swappiness)?;
    }
    if let Some(disable) = memory.disable_oom_killer() {
        set("memory.disableOOMKiller", dir, "memory.oom_control", u8::from(disable))?;
    }
    Ok(())
}

fn set_memsw(dir: &Path, swap: i64) -> Result<()> {
    if !dir.join("memory.memsw.limit_in_bytes").exists() {
        return Err(Error::InvalidConfig(
            "\"linux.resources.memory.swap\" is set, but this kernel has no swap accounting (no memory.memsw.limit_in_bytes; boot with swapaccount=1)".into(),
        ));
    }
    set("memory.swap", dir, "memory.memsw.limit_in_bytes", swap)
}

/// cgroup v2's cpu.weight from v1's cpu.shares: the kernel documentation's
/// mapping of [2, 262144] onto [1, 10000].
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// cgroup v2's io.weight from a v1 blkio weight: [10, 1000] onto
/// [1, 10000].
fn blkio_weight_to_io_weight(weight: u16) -> u32 {
    1 + (u32::from(weight.clamp(10, 1000)) - 10) * 9999 / 990
}

fn apply_cpu(cgroup: &Cgroup, cpu: &LinuxCpu) -> Result<()> {
    let wants_cpu = cpu.shares().is_some_and(|s| s > 0)
        || cpu.quota().is_some()
        || cpu.period().is_some_and(|p| p > 0)
        || cpu.burst().is_some()
        || cpu.realtime_runtime().is_some_and(|r| r != 0)
        || cpu.realtime_period().is_some_and(|p| p != 0)
        || cpu.idle().is_some();
    if wants_cpu {
        let site = cgroup.need("cpu", "cpu")?;
        let dir = site.dir();
        if site.is_v2() {
            if let Some(shares) = cpu.shares().filter(|&s| s > 0) {
                set("cpu.shares", dir, "cpu.weight", shares_to_weight(shares))?;
            }
            if cpu.quota().is_some() || cpu.period().is_some_and(|p| p > 0) {
                let quota = match cpu.quota() {
                    Some(q) if q > 0 => q.to_string(),
                    _ => "max".into(),
                };
                let period = cpu.period().filter(|&p| p > 0).unwrap_or(100_000);
                set("cpu.quota", dir, "cpu.max", format!("{quota} {period}"))?;
            }
            if let Some(burst) = cpu.burst() {
                set("cpu.burst", dir, "cpu.max.burst", burst)?;
            }
            if cpu.realtime_runtime().is_some_and(|r| r != 0) {
                return Err(no_v2("cpu.realtimeRuntime", "cpu"));
            }
            if cpu.realtime_period().is_some_and(|p| p != 0) {
                return Err(no_v2("cpu.realtimePeriod", "cpu"));
            }
        } else {
            if let Some(shares) = cpu.shares().filter(|&s| s > 0) {
                set("cpu.shares", dir, "cpu.shares", shares)?;
            }
            let quota = cpu.quota().filter(|&q| q != 0);
            let mut period_pending = None;
            if let Some(period) = cpu.period().filter(|&p| p > 0) {
                // A shorter period raises the share of the old quota, which
                // the kernel rejects (EINVAL) when a parent's limit is lower.
                // With a new quota coming, write that first and the period
                // after it.
                match set("cpu.period", dir, "cpu.cfs_period_us", period) {
                    Ok(()) => {}
                    Err(err) if err.raw_os_error() == Some(libc::EINVAL) && quota.is_some() => period_pending = Some(period),
                    Err(err) => return Err(err),
                }
            }
            if let Some(quota) = quota {
                set("cpu.quota", dir, "cpu.cfs_quota_us", quota)?;
            }
            if let Some(period) = period_pending {
                set("cpu.period", dir, "cpu.cfs_period_us", period)?;
            }
            if let Some(burst) = cpu.burst() {
                set("cpu.burst", dir, "cpu.cfs_burst_us", burst)?;
            }
            // The period first: the kernel checks the runtime against it.
            if let Some(period) = cpu.realtime_period().filter(|&p| p != 0) {
                set("cpu.realtimePeriod", dir, "cpu.rt_period_us", period)?;
            }
            if let Some(runtime) = cpu.realtime_runtime().filter(|&r| r != 0) {
                set("cpu.realtimeRuntime", dir, "cpu.rt_runtime_us", runtime).map_err(|err| {
                    if err.raw_os_error() == Some(libc::EINVAL) {
                        Error::InvalidConfig(format!(
                            "{err}: the parent cgroup's cpu.rt_runtime_us must leave room for this budget"
                        ))
                    } else {
                        err
                    }
                })?;
            }
        }
        if let Some(idle) = cpu.idle() {
            set("cpu.idle", dir, "cpu.idle", idle)?;
        }
    }
    if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        let site = cgroup.need("cpu.cpus", "cpuset")?;
        set("cpu.cpus", site.dir(), "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        let site = cgroup.need("cpu.mems", "cpuset")?;
        set("cpu.mems", site.dir(), "cpuset.mems", mems)?;
    }
    Ok(())
}

fn apply_block_io(cgroup: &Cgroup, block_io: &LinuxBlockIo) -> Result<()> {
    let weight = block_io.weight().filter(|&w| w != 0);
    let leaf_weight = block_io.leaf_weight().filter(|&w| w != 0);
    let weight_devices = block_io.weight_device().as_deref().unwrap_or_default();
    let throttles: [(&str, &str, &str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        ("blockIO.throttleReadBpsDevice", "blkio.throttle.read_bps_device", "rbps", block_io.throttle_read_bps_device()),
        ("blockIO.throttleWriteBpsDevice", "blkio.throttle.write_bps_device", "wbps", block_io.throttle_write_bps_device()),
        ("blockIO.throttleReadIOPSDevice", "blkio.throttle.read_iops_device", "riops", block_io.throttle_read_iops_device()),
        ("blockIO.throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", "wiops", block_io.throttle_write_iops_device()),
    ];
    let any_throttle = throttles.iter().any(|(_, _, _, list)| list.as_ref().is_some_and(|l| !l.is_empty()));
    if weight.is_none() && leaf_weight.is_none() && weight_devices.is_empty() && !any_throttle {
        return Ok(());
    }
    let site = cgroup.need("blockIO", "blkio")?;
    let dir = site.dir();

    if site.is_v2() {
        // BFQ's io.bfq.weight takes the v1 range as it is, but the generic
        // io.weight has a range of its own.
        let bfq = dir.join("io.bfq.weight").exists();
        let weight_file = |field: &str| -> Result<&'static str> {
            if bfq {
                Ok("io.bfq.weight")
            } else if dir.join("io.weight").exists() {
                Ok("io.weight")
            } else {
                Err(Error::InvalidConfig(format!(
                    "\"linux.resources.{field}\" needs io.bfq.weight or io.weight, and {} has neither (no BFQ scheduler and no io.cost)",
                    dir.display()
                )))
            }
        };
        let convert = |w: u16| if bfq { u32::from(w) } else { blkio_weight_to_io_weight(w) };
        if let Some(weight) = weight {
            set("blockIO.weight", dir, weight_file("blockIO.weight")?, convert(weight))?;
        }
        if leaf_weight.is_some() {
            return Err(no_v2("blockIO.leafWeight", "io"));
        }
        for device in weight_devices {
            let field = format!("blockIO.weightDevice[{}:{}]", device.major(), device.minor());
            if device.leaf_weight().is_some_and(|w| w != 0) {
                return Err(no_v2(&format!("{field}.leafWeight"), "io"));
            }
            if let Some(w) = device.weight() {
                let line = format!("{}:{} {}", device.major(), device.minor(), convert(w));
                set(&field, dir, weight_file(&field)?, line)?;
            }
        }
        for (field, _, key, list) in throttles {
            for device in list.iter().flatten() {
                let line = format!("{}:{} {key}={}", device.major(), device.minor(), device.rate());
                set(field, dir, "io.max", line)?;
            }
        }
        return Ok(());
    }

    // v1: the proportional weights exist only with the CFQ or BFQ I/O
    // scheduler, as blkio.weight or blkio.bfq.weight.
    let weight_file = |field: &str, plain: &'static str, bfq: &'static str| -> Result<&'static str> {
        if dir.join(plain).exists() {
            Ok(plain)
        } else if dir.join(bfq).exists() {
            Ok(bfq)
        } else {
            Err(Error::InvalidConfig(format!(
                "\"linux.resources.{field}\" needs {plain} or {bfq}, and {} has neither (the block devices use no CFQ or BFQ scheduler)",
                dir.display()
            )))
        }
    };
    if let Some(weight) = weight {
        set("blockIO.weight", dir, weight_file("blockIO.weight", "blkio.weight", "blkio.bfq.weight")?, weight)?;
    }
    if let Some(leaf) = leaf_weight {
        let file = weight_file("blockIO.leafWeight", "blkio.leaf_weight", "blkio.leaf_weight")?;
        set("blockIO.leafWeight", dir, file, leaf)?;
    }
    for device in weight_devices {
        let field = format!("blockIO.weightDevice[{}:{}]", device.major(), device.minor());
        if let Some(w) = device.weight() {
            let file = weight_file(&field, "blkio.weight_device", "blkio.bfq.weight_device")?;
            set(&field, dir, file, format!("{}:{} {w}", device.major(), device.minor()))?;
        }
        if let Some(w) = device.leaf_weight() {
            let file = weight_file(&field, "blkio.leaf_weight_device", "blkio.leaf_weight_device")?;
            set(&field, dir, file, format!("{}:{} {w}", device.major(), device.minor()))?;
        }
    }
    for (field, file, _, list) in throttles {
        for device in list.iter().flatten() {
            set(field, dir, file, format!("{}:{} {}", device.major(), device.minor(), device.rate()))?;
        }
    }
    Ok(())
}

/// Lists the huge page sizes that the controller in `dir` has files for
/// (`2MB`, `1GB`).
pub(crate) fn hugepage_sizes(dir: &Path) -> Vec<String> {
    let mut sizes: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix("hugetlb.")?;
            let (size, file) = rest.split_once('.')?;
            matches!(file, "limit_in_bytes" | "max").then(|| size.to_owned())
        })
        .collect();
    sizes.sort();
    sizes.dedup();
    sizes
}

fn apply_hugepage(cgroup: &Cgroup, hugepage: &LinuxHugepageLimit) -> Result<()> {
    let size = hugepage.page_size();
    let field = format!("hugepageLimits[{size}]");
    let site = cgroup.need(&field, "hugetlb")?;
    let dir = site.dir();
    let (file, reserved) = if site.is_v2() {
        (format!("hugetlb.{size}.max"), format!("hugetlb.{size}.rsvd.max"))
    } else {
        (format!("hugetlb.{size}.limit_in_bytes"), format!("hugetlb.{size}.rsvd.limit_in_bytes"))
    };
    if size.contains('/') || !dir.join(&file).exists() {
        return Err(Error::InvalidConfig(format!(
            "\"linux.resources.hugepageLimits\" page size \"{size}\" is not one this host has (it has: {})",
            hugepage_sizes(dir).join(", ")
        )));
    }
    set(&field, dir, &file, hugepage.limit())?;
    // The reservation limit, where the kernel has it, bounds pages that
    // are reserved by mmap but not yet faulted in.
    if dir.join(&reserved).exists() {
        set(&field, dir, &reserved, hugepage.limit())?;
    }
    Ok(())
}

fn apply_network(cgroup: &Cgroup, network: &LinuxNetwork) -> Result<()> {
    if let Some(class_id) = network.class_id() {
        let site = cgroup.need("network.classID", "net_cls")?;
        set("network.classID", site.dir(), "net_cls.classid", class_id)?;
    }
    for priority in network.priorities().iter().flatten() {
        let site = cgroup.need("network.priorities", "net_prio")?;
        let line = format!("{} {}", priority.name(), priority.priority());
        set("network.priorities", site.dir(), "net_prio.ifpriomap", line)?;
    }
    Ok(())
}

fn apply_unified(cgroup: &Cgroup, unified: &std::collections::HashMap<String, String>) -> Result<()> {
    let dir: &PathBuf = match cgroup.dirs.iter().find(|(h, _)| h.unified) {
        Some((_, dir)) => dir,
        None => return Err(no_v1("unified")),
    };
    let mut keys: Vec<_> = unified.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for (key, value) in keys {
        if key.is_empty() || key.contains('/') || key.starts_with('.') {
            return Err(Error::InvalidConfig(format!(
                "\"linux.resources.unified\" key \"{key}\" is not the name of a cgroup file"
            )));
        }
        if !dir.join(key).exists() {
            let controller = key.split('.').next().unwrap_or(key);
            return Err(Error::InvalidConfig(format!(
                "\"linux.resources.unified\" key \"{key}\": {} has no such file (is the {controller} controller enabled for this cgroup?)",
                dir.display()
            )));
        }
        set(&format!("unified.{key}"), dir, key, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_conversions() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    #[test]
    fn limits_spell_unlimited_per_version() {
        assert_eq!(limit(-1, true), "max");
        assert_eq!(limit(-1, false), "-1");
        assert_eq!(limit(4096, true), "4096");
    }
}
