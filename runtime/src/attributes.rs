//! Process attributes that each take one syscall: personality, scheduling
//! policy, I/O priority, NUMA memory policy, CPU affinity, and the time
//! namespace's clock offsets. They are inherited across execve, so the init
//! and the `exec` process set them on themselves before they exec.

use std::collections::HashMap;

use oci_spec::runtime::{
    IOPriorityClass, LinuxIOPriority, LinuxMemoryPolicy, LinuxPersonality, LinuxPersonalityDomain,
    LinuxSchedulerFlag, LinuxSchedulerPolicy, LinuxTimeOffset, MemoryPolicyFlagType, MemoryPolicyModeType,
    Scheduler,
};

use crate::error::{Error, Result};

/// Sets the execution domain (`linux.personality`).
pub fn set_personality(personality: &LinuxPersonality) -> Result<()> {
    if personality.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(Error::InvalidConfig(
            "\"linux.personality.flags\" is set, but the runtime spec defines no personality flags".into(),
        ));
    }
    let domain: libc::c_ulong = match personality.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: personality(2) takes a plain value.
    if unsafe { libc::personality(domain) } < 0 {
        return Err(Error::last_os(format!("set personality {}", personality.domain())));
    }
    Ok(())
}

/// struct sched_attr of sched_setattr(2), SCHED_ATTR_SIZE_VER1.
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// Sets the scheduling policy and its parameters (`process.scheduler`).
pub fn set_scheduler(scheduler: &Scheduler) -> Result<()> {
    let policy = match scheduler.policy() {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => {
            return Err(Error::InvalidConfig(
                "\"process.scheduler.policy\" SCHED_ISO is reserved and Linux does not implement it".into(),
            ))
        }
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for flag in scheduler.flags().iter().flatten() {
        flags |= match flag {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        };
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: scheduler.nice().unwrap_or(0),
        priority: scheduler.priority().unwrap_or(0).max(0) as u32,
        runtime: scheduler.runtime().unwrap_or(0),
        deadline: scheduler.deadline().unwrap_or(0),
        period: scheduler.period().unwrap_or(0),
        ..SchedAttr::default()
    };
    // SAFETY: `attr` is a valid sched_attr whose size field matches.
    if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) } < 0 {
        return Err(Error::last_os(format!(
            "set \"process.scheduler\" (policy {}, priority {}, nice {})",
            scheduler.policy(),
            attr.priority,
            attr.nice
        )));
    }
    Ok(())
}

/// Sets the I/O scheduling class and priority (`process.ioPriority`).
pub fn set_io_priority(priority: &LinuxIOPriority) -> Result<()> {
    let class: i64 = match priority.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let level = priority.priority();
    if !(0..=7).contains(&level) {
        return Err(Error::InvalidConfig(format!(
            "\"process.ioPriority.priority\" must be 0 to 7, got {level}"
        )));
    }
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_SHIFT: i64 = 13;
    let value = (class << IOPRIO_CLASS_SHIFT) | level;
    // SAFETY: ioprio_set(2) takes plain values.
    if unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) } < 0 {
        return Err(Error::last_os(format!(
            "set \"process.ioPriority\" (class {}, priority {level})",
            priority.class()
        )));
    }
    Ok(())
}

/// Parses a CPU or node list (`0-3,6`) into a bitmask of 64-bit words.
pub fn parse_list(list: &str, field: &str) -> Result<Vec<u64>> {
    let invalid = || Error::InvalidConfig(format!("\"{field}\" \"{list}\" is not a list such as 0-3,6"));
    let mut mask: Vec<u64> = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (low, high) = match part.split_once('-') {
            Some((low, high)) => (low.trim().parse::<usize>().map_err(|_| invalid())?, high.trim().parse::<usize>().map_err(|_| invalid())?),
            None => {
                let single = part.trim().parse::<usize>().map_err(|_| invalid())?;
                (single, single)
            }
        };
        if low > high || high >= 4096 {
            return Err(invalid());
        }
        for bit in low..=high {
            if mask.len() <= bit / 64 {
                mask.resize(bit / 64 + 1, 0);
            }
            mask[bit / 64] |= 1 << (bit % 64);
        }
    }
    if mask.is_empty() {
        return Err(invalid());
    }
    Ok(mask)
}

/// Sets the NUMA memory policy (`linux.memoryPolicy`).
pub fn set_memory_policy(policy: &LinuxMemoryPolicy) -> Result<()> {
    let mode: libc::c_int = match policy.mode() {
        MemoryPolicyModeType::MpolDefault => 0,
        MemoryPolicyModeType::MpolPreferred => 1,
        MemoryPolicyModeType::MpolBind => 2,
        MemoryPolicyModeType::MpolInterleave => 3,
        MemoryPolicyModeType::MpolLocal => 4,
        MemoryPolicyModeType::MpolPreferredMany => 5,
        MemoryPolicyModeType::MpolWeightedInterleave => 6,
    };
    let mut flags: libc::c_int = 0;
    for flag in policy.flags().iter().flatten() {
        flags |= match flag {
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
        };
    }
    let nodes = match policy.nodes().as_deref().filter(|n| !n.is_empty()) {
        Some(list) => parse_list(list, "linux.memoryPolicy.nodes")?,
        None => Vec::new(),
    };
    // maxnode counts bits, and the kernel reads one bit less than given.
    let max_node = if nodes.is_empty() { 0 } else { nodes.len() as libc::c_ulong * 64 + 1 };
    let mask = if nodes.is_empty() { std::ptr::null() } else { nodes.as_ptr() };
    // SAFETY: `mask` points to `max_node - 1` readable bits, or is null
    // with max_node 0.
    if unsafe { libc::syscall(libc::SYS_set_mempolicy, mode | flags, mask, max_node) } < 0 {
        return Err(Error::last_os(format!(
            "set \"linux.memoryPolicy\" (mode {}, nodes {})",
            policy.mode(),
            policy.nodes().as_deref().unwrap_or("")
        )));
    }
    Ok(())
}

/// Pins the calling process to the CPUs in `list`.
pub fn set_cpu_affinity(list: &str, field: &str) -> Result<()> {
    let mask = parse_list(list, field)?;
    let size = mask.len() * std::mem::size_of::<u64>();
    // SAFETY: `mask` contains `size` bytes.
    if unsafe { libc::syscall(libc::SYS_sched_setaffinity, 0, size, mask.as_ptr()) } < 0 {
        return Err(Error::last_os(format!("set the CPU affinity from \"{field}\" \"{list}\"")));
    }
    Ok(())
}

/// Creates the container's time namespace with `linux.timeOffsets`. The
/// namespace applies to the caller's children and, after execve, to the
/// caller itself; the offsets must be written before either happens.
pub fn create_time_namespace(offsets: Option<&HashMap<String, LinuxTimeOffset>>) -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
        .map_err(|errno| Error::errno("create the time namespace", errno))?;
    let mut lines = String::new();
    let mut clocks: Vec<_> = offsets.into_iter().flatten().collect();
    clocks.sort_by(|a, b| a.0.cmp(b.0));
    for (clock, offset) in clocks {
        if !matches!(clock.as_str(), "monotonic" | "boottime") {
            return Err(Error::InvalidConfig(format!(
                "\"linux.timeOffsets\" clock \"{clock}\" is not a clock that a time namespace can offset (use monotonic or boottime)"
            )));
        }
        lines.push_str(&format!("{clock} {} {}\n", offset.secs().unwrap_or(0), offset.nanosecs().unwrap_or(0)));
    }
    if !lines.is_empty() {
        std::fs::write("/proc/self/timens_offsets", lines.as_bytes())
            .map_err(|err| Error::io(format!("write \"linux.timeOffsets\" to /proc/self/timens_offsets ({})", lines.trim().replace('\n', ", ")), err))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_to_masks() {
        assert_eq!(parse_list("0", "f").unwrap(), vec![1]);
        assert_eq!(parse_list("0-2,5", "f").unwrap(), vec![0b100111]);
        assert_eq!(parse_list("64", "f").unwrap(), vec![0, 1]);
        assert!(parse_list("", "f").is_err());
        assert!(parse_list("3-1", "f").is_err());
        assert!(parse_list("a", "f").is_err());
    }
}
