//! How much work the engine can hold in flight at once, worked out at start.
//!
//! A job at work on a router spends nearly all its time waiting for replies, so what
//! bounds how many run at once is not CPU but what each one holds while it waits: a
//! plugin instance (a slot of the pooling allocator: address space reserved up front,
//! and the pages the call touches) and a socket. [`Resources::detect`] reads what the
//! machine gives the process (available memory, the cgroup's limit, the open-file
//! limit, which it first raises to the hard limit, and the address space);
//! [`Budget::plan`] turns that and the [`CallCost`] of one plugin call into the limits
//! the runner and the plugin host use, keeping headroom for the API's sockets, the store
//! and the plugin files. Limits the operator set are kept even when the budget cannot
//! hold them, with a warning that says which resource runs out first.

use std::fmt;

/// Jobs at work on their sites at once, across every launch, when `[runner] max_jobs`
/// is not set and the budget holds it.
pub const DEFAULT_JOBS: usize = 4096;
/// Jobs at once within one launch, when `[runner] max_jobs_per_launch` is not set: half
/// of [`DEFAULT_JOBS`], which is what one organization may hold with the default
/// `organization_share` of 0.5.
pub const DEFAULT_JOBS_PER_LAUNCH: usize = 2048;
/// Plugin calls at once, when `max_concurrent_plugin_calls` is not set: one for each job
/// that may be at work.
pub const DEFAULT_PLUGIN_CALLS: u32 = 4096;

/// Open files kept out of the budget for everything but calls to sites: the API's
/// client connections, the store, plugin files and the cache (at most a quarter of a
/// small limit).
const FILE_HEADROOM: u64 = 1024;
/// The part of the available memory calls in flight may take; the rest is the store's
/// cache, the API and whatever else shares the machine.
const MEMORY_SHARE: u64 = 2;
/// The part of the address space the pool may reserve (the rest for the heap, thread
/// stacks and mapped files).
const ADDRESS_SPACE_SHARE: u64 = 2;
/// A 64-bit Linux process's user address space with 4-level page tables (47 bits), the
/// common case on x86-64 and arm64.
const USER_ADDRESS_SPACE: u64 = 1 << 47;

/// What one plugin call in flight costs, from the pooling allocator's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallCost {
    /// Address space reserved for it whether it runs or not: its memory slots with their
    /// guard regions, and its fiber stack.
    pub reserved: u64,
    /// Memory it makes resident while it waits: the pages of its linear memory and stack
    /// it touches, the host's state for it and its socket's buffers.
    pub resident: u64,
    /// Open files it holds: its connection to the site.
    pub files: u64,
}

/// The open-file limit, as found and as raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit in force (after raising it).
    pub limit: u64,
    /// The soft limit before the engine raised it to the hard one, when it did.
    pub raised_from: Option<u64>,
    /// Files open when the budget was worked out.
    pub in_use: u64,
}

/// What the machine gives the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// Memory the process may still take: the kernel's estimate of available memory, or
    /// the room left under the cgroup's limit when that is less. None when unknown.
    pub memory: Option<u64>,
    pub open_files: OpenFiles,
    /// Address space the process may map.
    pub address_space: u64,
}

impl Resources {
    /// Reads the machine's resources, first raising the soft open-file limit to the hard
    /// one. The soft limit stays low (often 1024) by default only for programs that
    /// still use `select`; a server of many sockets is expected to raise it itself, as
    /// the Go runtime, nginx (`worker_rlimit_nofile`) and systemd's guidance do.
    pub fn detect() -> Resources {
        Resources {
            memory: available_memory(),
            open_files: raise_open_file_limit(),
            address_space: address_space(),
        }
    }
}

/// Limits the operator set; `None` leaves the engine to choose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requested {
    /// `[runner] max_jobs`.
    pub jobs: Option<usize>,
    /// `[runner] max_jobs_per_launch`.
    pub jobs_per_launch: Option<usize>,
    /// `max_concurrent_plugin_calls`.
    pub plugin_calls: Option<u32>,
}

/// Which resource the budget ran out of first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Half the available memory over each call's resident cost.
    Memory { available: u64 },
    /// The open-file limit, less the files open and the headroom, over each call's files.
    OpenFiles { limit: u64, in_use: u64 },
    /// Half the address space over each call's reservation.
    AddressSpace { available: u64 },
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Bound::Memory { available } => {
                write!(f, "half of the {} of memory available", bytes(available))
            }
            Bound::OpenFiles { limit, in_use } => write!(
                f,
                "the open-file limit of {limit} ({in_use} open, {} kept for the API and the store)",
                file_headroom(limit)
            ),
            Bound::AddressSpace { available } => {
                write!(f, "half of the {} of address space", bytes(available))
            }
        }
    }
}

/// A limit the operator set that the budget cannot hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excess {
    pub key: &'static str,
    pub value: usize,
}

/// The limits the engine runs with, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Plugin calls the machine holds at once.
    pub capacity: usize,
    /// What set `capacity`.
    pub bound: Bound,
    pub cost: CallCost,
    pub open_files: OpenFiles,
    /// Plugin calls at once (`max_concurrent_plugin_calls`).
    pub plugin_calls: u32,
    /// Jobs at work at once across all launches (`[runner] max_jobs`).
    pub jobs: usize,
    /// Jobs at work at once within one launch (`[runner] max_jobs_per_launch`).
    pub jobs_per_launch: usize,
    /// Limits the operator set above `capacity`, kept as set.
    pub excess: Vec<Excess>,
}

impl Budget {
    /// Works out the limits: each one the operator set is kept; each one left unset is
    /// its default, lowered to what the resources hold. A job at work holds at most one
    /// plugin call at a time, so jobs are not given more room than calls, nor one launch
    /// more than all jobs.
    pub fn plan(requested: Requested, resources: &Resources, cost: CallCost) -> Budget {
        let (capacity, bound) = capacity(resources, cost);
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        let plugin_calls = match requested.plugin_calls {
            Some(n) => n,
            None => DEFAULT_PLUGIN_CALLS.min(u32::try_from(capacity).unwrap_or(u32::MAX)),
        };
        let calls = plugin_calls as usize;
        let jobs = requested
            .jobs
            .unwrap_or_else(|| DEFAULT_JOBS.min(capacity).min(calls));
        let jobs_per_launch = requested
            .jobs_per_launch
            .unwrap_or_else(|| DEFAULT_JOBS_PER_LAUNCH.min(jobs));
        let excess = [
            (
                "max_concurrent_plugin_calls",
                requested.plugin_calls.map(|n| n as usize),
            ),
            ("runner.max_jobs", requested.jobs),
            ("runner.max_jobs_per_launch", requested.jobs_per_launch),
        ]
        .into_iter()
        .filter_map(|(key, value)| {
            value
                .filter(|&v| v > capacity)
                .map(|value| Excess { key, value })
        })
        .collect();
        Budget {
            capacity,
            bound,
            cost,
            open_files: resources.open_files,
            plugin_calls,
            jobs,
            jobs_per_launch,
            excess,
        }
    }

    /// One line for the start-up log: the limits and what they come from.
    pub fn summary(&self) -> String {
        let raised = match self.open_files.raised_from {
            Some(from) => format!(
                "; the open-file limit was raised from {from} to {}",
                self.open_files.limit
            ),
            None => String::new(),
        };
        format!(
            "concurrency: {} jobs at once, {} per launch, {} plugin calls; the machine holds {} \
             calls at once, bound by {}; a call reserves {} of address space and keeps about {} \
             resident and {} open file{}{raised}",
            self.jobs,
            self.jobs_per_launch,
            self.plugin_calls,
            self.capacity,
            self.bound,
            bytes(self.cost.reserved),
            bytes(self.cost.resident),
            self.cost.files,
            if self.cost.files == 1 { "" } else { "s" },
        )
    }

    /// One warning for each limit the operator set above what the budget holds.
    pub fn warnings(&self) -> Vec<String> {
        self.excess
            .iter()
            .map(|e| {
                format!(
                    "{} = {} is more than this machine holds at once ({}, bound by {}): kept as \
                     set, but work beyond {} in flight may fail for want of memory or open files",
                    e.key, e.value, self.capacity, self.bound, self.capacity
                )
            })
            .collect()
    }
}

/// Plugin calls the resources hold, and the resource that bounds them.
fn capacity(resources: &Resources, cost: CallCost) -> (u64, Bound) {
    let files = &resources.open_files;
    let spare_files = files
        .limit
        .saturating_sub(files.in_use)
        .saturating_sub(file_headroom(files.limit));
    let mut best = (
        spare_files / cost.files.max(1),
        Bound::OpenFiles {
            limit: files.limit,
            in_use: files.in_use,
        },
    );
    let by_address = (
        resources.address_space / ADDRESS_SPACE_SHARE / cost.reserved.max(1),
        Bound::AddressSpace {
            available: resources.address_space,
        },
    );
    if by_address.0 < best.0 {
        best = by_address;
    }
    if let Some(available) = resources.memory {
        let by_memory = (
            available / MEMORY_SHARE / cost.resident.max(1),
            Bound::Memory { available },
        );
        if by_memory.0 < best.0 {
            best = by_memory;
        }
    }
    best
}

/// Open files kept for the API, the store and the plugins: [`FILE_HEADROOM`], or a
/// quarter of a smaller limit.
fn file_headroom(limit: u64) -> u64 {
    FILE_HEADROOM.min(limit / 4)
}

fn bytes(n: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    const KIB: u64 = 1 << 10;
    if n >= 1 << 40 {
        format!("{:.1} TiB", n as f64 / (1u64 << 40) as f64)
    } else if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else {
        format!("{} KiB", n / KIB)
    }
}

/// The soft open-file limit raised to the hard one, and the files open now.
fn raise_open_file_limit() -> OpenFiles {
    let in_use = std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count() as u64)
        .unwrap_or(0);
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let found = getrlimit(Resource::Nofile);
        // `None` is unlimited; a process still cannot open more than the kernel's
        // per-process maximum, so treat it as a generous number.
        let soft = found.current.unwrap_or(u64::from(u32::MAX));
        match found.maximum {
            Some(hard) if hard > soft => {
                let raised = Rlimit {
                    current: Some(hard),
                    maximum: Some(hard),
                };
                match setrlimit(Resource::Nofile, raised) {
                    Ok(()) => OpenFiles {
                        limit: hard,
                        raised_from: Some(soft),
                        in_use,
                    },
                    Err(e) => {
                        tracing::warn!(
                            "cannot raise the open-file limit from {soft} to {hard}: {e}"
                        );
                        OpenFiles {
                            limit: soft,
                            raised_from: None,
                            in_use,
                        }
                    }
                }
            }
            _ => OpenFiles {
                limit: soft,
                raised_from: None,
                in_use,
            },
        }
    }
    #[cfg(not(unix))]
    {
        OpenFiles {
            limit: 8192,
            raised_from: None,
            in_use,
        }
    }
}

/// `MemAvailable`, or what is left under the cgroup (v2) limit when that is less.
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let available = meminfo.as_deref().and_then(mem_available);
    let cgroup = cgroup_room();
    match (available, cgroup) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    }
}

/// The `MemAvailable` line of `/proc/meminfo`, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The memory left under this process's cgroup limit (`memory.max` less
/// `memory.current`), when it has one.
fn cgroup_room() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = membership.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let max: u64 = std::fs::read_to_string(dir.join("memory.max"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let current: u64 = std::fs::read_to_string(dir.join("memory.current"))
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0);
    Some(max.saturating_sub(current))
}

/// The user address space, or `RLIMIT_AS` when that is less.
fn address_space() -> u64 {
    let space = if cfg!(target_pointer_width = "64") {
        USER_ADDRESS_SPACE
    } else {
        3 << 30
    };
    #[cfg(unix)]
    {
        let limit = rustix::process::getrlimit(rustix::process::Resource::As);
        limit.current.map_or(space, |l| l.min(space))
    }
    #[cfg(not(unix))]
    {
        space
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    fn cost() -> CallCost {
        CallCost {
            reserved: 8 * GIB,
            resident: 512 * 1024,
            files: 1,
        }
    }

    fn machine(memory: u64, files: u64, in_use: u64) -> Resources {
        Resources {
            memory: Some(memory),
            open_files: OpenFiles {
                limit: files,
                raised_from: None,
                in_use,
            },
            address_space: USER_ADDRESS_SPACE,
        }
    }

    #[test]
    fn a_roomy_machine_gets_the_defaults() {
        let budget = Budget::plan(Requested::default(), &machine(16 * GIB, 65_536, 20), cost());
        assert_eq!(budget.plugin_calls, DEFAULT_PLUGIN_CALLS);
        assert_eq!(budget.jobs, DEFAULT_JOBS);
        assert_eq!(budget.jobs_per_launch, DEFAULT_JOBS_PER_LAUNCH);
        assert!(budget.excess.is_empty());
        // 128 TiB / 2 / 8 GiB: the address space binds before memory or files.
        assert_eq!(budget.capacity, 8192);
        assert_eq!(
            budget.bound,
            Bound::AddressSpace {
                available: USER_ADDRESS_SPACE
            }
        );
    }

    #[test]
    fn the_open_file_limit_keeps_headroom_for_the_api_and_the_store() {
        // 4096 - 96 open - 1024 kept = 2976 sockets for calls.
        let budget = Budget::plan(Requested::default(), &machine(16 * GIB, 4096, 96), cost());
        assert_eq!(budget.capacity, 2976);
        assert_eq!(budget.plugin_calls, 2976);
        assert_eq!(budget.jobs, 2976);
        assert_eq!(budget.jobs_per_launch, DEFAULT_JOBS_PER_LAUNCH);
        assert_eq!(
            budget.bound,
            Bound::OpenFiles {
                limit: 4096,
                in_use: 96
            }
        );
        // A small limit keeps a quarter of itself: 1024 - 24 - 256.
        let small = Budget::plan(Requested::default(), &machine(16 * GIB, 1024, 24), cost());
        assert_eq!(small.capacity, 744);
        assert_eq!(small.jobs_per_launch, 744);
        // Two files a call (the benchmarks' routers live in the same process) halve it.
        let two = CallCost { files: 2, ..cost() };
        let shared = Budget::plan(Requested::default(), &machine(16 * GIB, 4096, 96), two);
        assert_eq!(shared.capacity, 1488);
    }

    #[test]
    fn memory_binds_on_a_small_machine() {
        // Half of 1 GiB at 512 KiB a call.
        let budget = Budget::plan(Requested::default(), &machine(GIB, 65_536, 20), cost());
        assert_eq!(budget.capacity, 1024);
        assert_eq!(budget.bound, Bound::Memory { available: GIB });
        assert_eq!((budget.plugin_calls, budget.jobs), (1024, 1024));
        assert_eq!(budget.jobs_per_launch, 1024);
        // Unknown memory leaves the other bounds.
        let mut unknown = machine(GIB, 65_536, 20);
        unknown.memory = None;
        assert_eq!(
            Budget::plan(Requested::default(), &unknown, cost()).capacity,
            8192
        );
    }

    #[test]
    fn the_address_space_limit_counts_each_reservation() {
        let mut limited = machine(16 * GIB, 65_536, 20);
        limited.address_space = 64 * GIB;
        let budget = Budget::plan(Requested::default(), &limited, cost());
        assert_eq!(budget.capacity, 4);
        assert_eq!(
            (budget.plugin_calls, budget.jobs, budget.jobs_per_launch),
            (4, 4, 4)
        );
    }

    #[test]
    fn explicit_limits_win_and_those_beyond_the_budget_are_named() {
        let requested = Requested {
            jobs: Some(5000),
            jobs_per_launch: Some(100),
            plugin_calls: Some(3000),
        };
        let budget = Budget::plan(requested, &machine(GIB, 65_536, 20), cost());
        assert_eq!(budget.capacity, 1024);
        assert_eq!(
            (budget.plugin_calls, budget.jobs, budget.jobs_per_launch),
            (3000, 5000, 100)
        );
        assert_eq!(
            budget.excess,
            vec![
                Excess {
                    key: "max_concurrent_plugin_calls",
                    value: 3000
                },
                Excess {
                    key: "runner.max_jobs",
                    value: 5000
                },
            ]
        );
        let warnings = budget.warnings();
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].starts_with("max_concurrent_plugin_calls = 3000 is more than"));
        assert!(warnings[0].contains("half of the 1.0 GiB of memory available"));
    }

    #[test]
    fn unset_limits_follow_the_ones_set() {
        // Fewer plugin calls than the default: jobs do not outnumber them.
        let requested = Requested {
            plugin_calls: Some(300),
            ..Requested::default()
        };
        let budget = Budget::plan(requested, &machine(16 * GIB, 65_536, 20), cost());
        assert_eq!((budget.jobs, budget.jobs_per_launch), (300, 300));
        // Fewer jobs: one launch gets no more than all of them.
        let requested = Requested {
            jobs: Some(1000),
            ..Requested::default()
        };
        let budget = Budget::plan(requested, &machine(16 * GIB, 65_536, 20), cost());
        assert_eq!(budget.plugin_calls, DEFAULT_PLUGIN_CALLS);
        assert_eq!(budget.jobs_per_launch, 1000);
    }

    #[test]
    fn a_machine_with_nothing_to_spare_still_runs_one() {
        let budget = Budget::plan(Requested::default(), &machine(0, 16, 16), cost());
        assert_eq!(budget.capacity, 1);
        assert_eq!(
            (budget.plugin_calls, budget.jobs, budget.jobs_per_launch),
            (1, 1, 1)
        );
    }

    #[test]
    fn meminfo_and_the_summary_read_well() {
        let meminfo = "MemTotal:       24683784 kB\nMemFree:        21816836 kB\nMemAvailable:   23563772 kB\n";
        assert_eq!(mem_available(meminfo), Some(23_563_772 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        let mut resources = machine(16 * GIB, 4096, 96);
        resources.open_files.raised_from = Some(1024);
        let cost = CallCost {
            reserved: 8 * GIB + 66 * MIB,
            resident: 384 * 1024,
            files: 1,
        };
        let summary = Budget::plan(Requested::default(), &resources, cost).summary();
        assert_eq!(
            summary,
            "concurrency: 2976 jobs at once, 2048 per launch, 2976 plugin calls; the machine \
             holds 2976 calls at once, bound by the open-file limit of 4096 (96 open, 1024 kept \
             for the API and the store); a call reserves 8.1 GiB of address space and keeps \
             about 384 KiB resident and 1 open file; the open-file limit was raised from 1024 \
             to 4096"
        );
    }
}
