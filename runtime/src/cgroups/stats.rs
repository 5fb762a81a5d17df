//! Usage statistics of a container's cgroups, in the JSON shape that
//! `runc events` prints, and the OOM kill counter that `events` watches.
//!
//! The controller files are read and parsed by cgroups-rs's controller
//! types, each built on our own recorded directory. Writing limits stays in
//! [`super::resources`]: cgroups-rs picks one hierarchy kind for the whole
//! host, while a hybrid host spreads the controllers over v1 and v2, and its
//! errors do not say which `linux.resources` field failed. Some of its v2
//! readers unwrap a file that only exists when the controller is enabled,
//! so each one is called only after [`Cgroup::site`] has found the
//! controller there.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use cgroups_rs::blkio::{BlkIoController, IoService};
use cgroups_rs::cpu::CpuController;
use cgroups_rs::cpuacct::CpuAcctController;
use cgroups_rs::hugetlb::HugeTlbController;
use cgroups_rs::memory::MemController;
use cgroups_rs::pid::PidController;
use cgroups_rs::MaxValue;
use serde::Serialize;

use super::resources::Site;
use super::Cgroup;

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
    pub intel_rdt: IntelRdt,
    pub network_interfaces: Option<Vec<()>>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[derive(Debug, Default, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// CPU time in nanoseconds.
#[derive(Debug, Default, Serialize)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct CpuSet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Debug, Default, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

impl MemoryEntry {
    /// Builds an entry from a v1 controller's counters; a negative limit
    /// is "no limit".
    fn from_counters(limit: i64, usage: u64, max: u64, failcnt: u64) -> MemoryEntry {
        MemoryEntry { limit: to_u64(limit), usage, max, failcnt }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Serialize)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct IntelRdt {}

/// An unlimited value, as v1 files print it (`PAGE_COUNTER_MAX` pages)
/// and as runc reports `max` from v2.
const UNLIMITED: u64 = i64::MAX as u64;

fn to_u64(value: i64) -> u64 {
    if value < 0 {
        UNLIMITED
    } else {
        value as u64
    }
}

fn numbers(text: &str) -> Vec<u64> {
    text.split_whitespace().filter_map(|n| n.parse().ok()).collect()
}

/// Reads a flat keyed file (`key value` per line) into a map.
fn keyed(path: &Path) -> BTreeMap<String, u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn read_u64(path: &Path) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    match text.trim() {
        "max" => Some(UNLIMITED),
        value => value.parse().ok(),
    }
}

/// Expands a cpuset list (`0-2,5`) into its members.
fn cpu_list(text: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((low, high)) => {
                if let (Ok(low), Ok(high)) = (low.parse::<u16>(), high.parse::<u16>()) {
                    out.extend(low..=high);
                }
            }
            None => out.extend(part.parse::<u16>().ok()),
        }
    }
    out
}

fn blkio_entries(services: &[IoService]) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for service in services {
        let (major, minor) = (service.major as u16 as u64, service.minor as u16 as u64);
        for (op, value) in [
            ("Read", service.read),
            ("Write", service.write),
            ("Sync", service.sync),
            ("Async", service.r#async),
            ("Discard", service.discard),
            ("Total", service.total),
        ] {
            out.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    out
}

impl Cgroup {
    /// Reads the usage statistics of every controller the container has.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        self.cpu_stats(&mut stats);
        self.memory_stats(&mut stats.memory);
        if let Some(site) = self.site("pids") {
            let pids = PidController::new(site.dir().to_owned(), site.is_v2());
            stats.pids.current = pids.get_pid_current().unwrap_or(0);
            stats.pids.limit = match pids.get_pid_max() {
                Ok(MaxValue::Value(limit)) => to_u64(limit),
                _ => 0,
            };
        }
        if let Some(site) = self.site("cpuset") {
            stats.cpuset.cpus = cpu_list(&fs::read_to_string(site.dir().join("cpuset.cpus.effective"))
                .or_else(|_| fs::read_to_string(site.dir().join("cpuset.effective_cpus")))
                .unwrap_or_default());
            stats.cpuset.mems = cpu_list(&fs::read_to_string(site.dir().join("cpuset.mems.effective"))
                .or_else(|_| fs::read_to_string(site.dir().join("cpuset.effective_mems")))
                .unwrap_or_default());
            if !site.is_v2() {
                let flag = |name: &str| read_u64(&site.dir().join(format!("cpuset.{name}"))).unwrap_or(0);
                let cpuset = &mut stats.cpuset;
                cpuset.cpu_exclusive = flag("cpu_exclusive");
                cpuset.mem_hardwall = flag("mem_hardwall");
                cpuset.mem_exclusive = flag("mem_exclusive");
                cpuset.memory_migrate = flag("memory_migrate");
                cpuset.memory_spread_page = flag("memory_spread_page");
                cpuset.memory_spread_slab = flag("memory_spread_slab");
                cpuset.memory_pressure = flag("memory_pressure");
                cpuset.sched_load_balance = flag("sched_load_balance");
                cpuset.sched_relax_domain_level = fs::read_to_string(site.dir().join("cpuset.sched_relax_domain_level"))
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0);
            }
        }
        if let Some(site) = self.site("blkio") {
            let blkio = BlkIoController::new(site.dir().to_owned(), site.is_v2()).blkio();
            if site.is_v2() {
                for stat in &blkio.io_stat {
                    let (major, minor) = (stat.major as u16 as u64, stat.minor as u16 as u64);
                    let entry = |op: &str, value| BlkioEntry {
                        major,
                        minor,
                        op: op.into(),
                        value,
                    };
                    stats.blkio.io_service_bytes_recursive.push(entry("Read", stat.rbytes));
                    stats.blkio.io_service_bytes_recursive.push(entry("Write", stat.wbytes));
                    stats.blkio.io_serviced_recursive.push(entry("Read", stat.rios));
                    stats.blkio.io_serviced_recursive.push(entry("Write", stat.wios));
                }
            } else {
                // Without the CFQ or BFQ scheduler only the throttle
                // policy counts I/O.
                let (bytes, ios) = if blkio.io_service_bytes_recursive.is_empty() {
                    (&blkio.throttle.io_service_bytes_recursive, &blkio.throttle.io_serviced_recursive)
                } else {
                    (&blkio.io_service_bytes_recursive, &blkio.io_serviced_recursive)
                };
                stats.blkio.io_service_bytes_recursive = blkio_entries(bytes);
                stats.blkio.io_serviced_recursive = blkio_entries(ios);
            }
        }
        if let Some(site) = self.site("hugetlb") {
            let hugetlb = HugeTlbController::new(site.dir().to_owned(), site.is_v2());
            for size in super::resources::hugepage_sizes(site.dir()) {
                let entry = if site.is_v2() {
                    Hugetlb {
                        usage: read_u64(&site.dir().join(format!("hugetlb.{size}.current"))).unwrap_or(0),
                        max: 0,
                        failcnt: keyed(&site.dir().join(format!("hugetlb.{size}.events")))
                            .get("max")
                            .copied()
                            .unwrap_or(0),
                    }
                } else {
                    Hugetlb {
                        usage: hugetlb.usage_in_bytes(&size).unwrap_or(0),
                        max: hugetlb.max_usage_in_bytes(&size).unwrap_or(0),
                        failcnt: hugetlb.failcnt(&size).unwrap_or(0),
                    }
                };
                stats.hugetlb.insert(size, entry);
            }
        }
        stats
    }

    fn cpu_stats(&self, stats: &mut Stats) {
        let usage = &mut stats.cpu.usage;
        match self.site("cpuacct") {
            Some(Site::V1(dir)) => {
                let acct = CpuAcctController::new(dir.to_owned()).cpuacct();
                usage.total = acct.usage;
                usage.percpu = numbers(&acct.usage_percpu);
                usage.percpu_kernel = numbers(&acct.usage_percpu_sys);
                usage.percpu_user = numbers(&acct.usage_percpu_user);
                usage.kernel = acct.usage_sys;
                usage.user = acct.usage_user;
            }
            _ => {
                if let Some(Site::V2(dir)) = self.site("cpu").or_else(|| self.unified_site()) {
                    let stat = keyed(&dir.join("cpu.stat"));
                    let micros = |key: &str| stat.get(key).copied().unwrap_or(0) * 1000;
                    usage.total = micros("usage_usec");
                    usage.user = micros("user_usec");
                    usage.kernel = micros("system_usec");
                }
            }
        }
        if let Some(site) = self.site("cpu") {
            let text = CpuController::new(site.dir().to_owned(), site.is_v2()).cpu().stat;
            let stat: BTreeMap<&str, u64> = text
                .lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    Some((k, v.trim().parse().ok()?))
                })
                .collect();
            let throttling = &mut stats.cpu.throttling;
            throttling.periods = stat.get("nr_periods").copied().unwrap_or(0);
            throttling.throttled_periods = stat.get("nr_throttled").copied().unwrap_or(0);
            throttling.throttled_time = match stat.get("throttled_time") {
                Some(&nanos) => nanos,
                None => stat.get("throttled_usec").copied().unwrap_or(0) * 1000,
            };
        }
    }

    fn unified_site(&self) -> Option<Site<'_>> {
        self.dirs.iter().find(|(h, _)| h.unified).map(|(_, dir)| Site::V2(dir))
    }

    fn memory_stats(&self, memory: &mut Memory) {
        let Some(site) = self.site("memory") else {
            return;
        };
        let dir = site.dir();
        let controller = MemController::new(dir.to_owned(), site.is_v2());
        let stat = controller.memory_stat();
        memory.raw = stat.stat.raw.into_iter().collect();
        memory.usage = MemoryEntry::from_counters(stat.limit_in_bytes, stat.usage_in_bytes, stat.max_usage_in_bytes, stat.fail_cnt);
        if site.is_v2() {
            memory.cache = memory.raw.get("file").copied().unwrap_or(0);
            memory.usage.failcnt = keyed(&dir.join("memory.events")).get("max").copied().unwrap_or(0);
            // v2 counts swap alone; runc reports memory plus swap, as v1 does.
            if dir.join("memory.swap.current").exists() {
                let swap = read_u64(&dir.join("memory.swap.current")).unwrap_or(0);
                let swap_limit = read_u64(&dir.join("memory.swap.max")).unwrap_or(UNLIMITED);
                memory.swap = MemoryEntry {
                    limit: if swap_limit == UNLIMITED || memory.usage.limit == UNLIMITED {
                        UNLIMITED
                    } else {
                        swap_limit + memory.usage.limit
                    },
                    usage: swap + memory.usage.usage,
                    max: 0,
                    failcnt: keyed(&dir.join("memory.swap.events")).get("fail").copied().unwrap_or(0),
                };
            }
        } else {
            memory.cache = memory.raw.get("cache").copied().unwrap_or(0);
            let swap = controller.memswap();
            memory.swap = MemoryEntry::from_counters(swap.limit_in_bytes, swap.usage_in_bytes, swap.max_usage_in_bytes, swap.fail_cnt);
            let kernel = controller.kmem_stat();
            memory.kernel =
                MemoryEntry::from_counters(kernel.limit_in_bytes, kernel.usage_in_bytes, kernel.max_usage_in_bytes, kernel.fail_cnt);
            let tcp = controller.kmem_tcp_stat();
            memory.kernel_tcp = MemoryEntry::from_counters(tcp.limit_in_bytes, tcp.usage_in_bytes, tcp.max_usage_in_bytes, tcp.fail_cnt);
        }
    }

    /// Counts the OOM kills in the container's memory cgroup so far: the
    /// `oom_kill` line of memory.oom_control on v1, of memory.events on v2.
    pub fn oom_kills(&self) -> u64 {
        match self.site("memory") {
            Some(Site::V1(dir)) => keyed(&dir.join("memory.oom_control")).get("oom_kill").copied().unwrap_or(0),
            Some(Site::V2(dir)) => keyed(&dir.join("memory.events")).get("oom_kill").copied().unwrap_or(0),
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list("0-2,5\n"), vec![0, 1, 2, 5]);
        assert_eq!(cpu_list(""), Vec::<u16>::new());
    }

    #[test]
    fn stats_json_shape() {
        let json = serde_json::to_value(Stats::default()).unwrap();
        assert_eq!(json["cpu"]["usage"]["kernel"], 0);
        assert!(json["memory"]["usage"].get("limit").is_some());
        assert!(json["network_interfaces"].is_null());
        assert!(json["pids"].as_object().unwrap().is_empty());
    }
}
