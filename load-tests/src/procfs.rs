//! Reading `/proc` (Linux): a process's resident memory, CPU time (its
//! own, or with its descendants'), CPU affinity and open-file limit, and
//! how busy given cores are.

use anyhow::Context;

/// `VmRSS` of process `pid`, in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path} (is the pid right?)"))?;
    parse_vm_rss(&text).with_context(|| format!("no VmRSS line in {path}"))
}

/// This process's `VmRSS`, in KiB.
pub fn own_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status").ok().as_deref().and_then(parse_vm_rss)
}

/// The `VmRSS:   12345 kB` value of a `/proc/<pid>/status` text.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value),
        Some("mB") => Some(value * 1024),
        Some(_) => None,
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on
/// every Linux architecture Parley runs on).
const USER_HZ: f64 = 100.0;

/// CPU time (user + system, every thread) process `pid` has used, seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    parse_stat_cpu_secs(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// This process's CPU time, seconds.
pub fn own_cpu_secs() -> Option<f64> {
    parse_stat_cpu_secs(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line, seconds.
pub fn parse_stat_cpu_secs(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces; fields resume after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// CPU time (user + system) process `pid` and every process descended from
/// it have used, seconds: a database server's main process with its
/// backends (PostgreSQL's postmaster and the process it forks for each
/// connection). `None` if `pid` is not running. A descendant that exited
/// since an earlier reading takes its time with it, so compare two
/// readings over a phase in which its processes stay (a connection pool's).
pub fn tree_cpu_secs(pid: u32) -> Option<f64> {
    let mut procs = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(p) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // A process may exit between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        if let (Some(ppid), Some(cpu)) = (parse_stat_ppid(&stat), parse_stat_cpu_secs(&stat)) {
            procs.push((p, ppid, cpu));
        }
    }
    sum_tree(&procs, pid)
}

/// The parent pid (field 4) of a `/proc/<pid>/stat` line.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// The CPU seconds of `root` and its descendants among `procs` (pid, parent
/// pid, CPU seconds); `None` if `root` is not among them.
pub fn sum_tree(procs: &[(u32, u32, f64)], root: u32) -> Option<f64> {
    let mut total = procs.iter().find(|(p, _, _)| *p == root)?.2;
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for (p, _, cpu) in procs.iter().filter(|(p, ppid, _)| *ppid == parent && *p != root) {
            total += cpu;
            parents.push(*p);
        }
    }
    Some(total)
}

/// The CPUs process `pid` may run on (`Cpus_allowed_list` of
/// `/proc/<pid>/status`, e.g. `1` under `taskset -c 1`).
pub fn allowed_cpus(pid: u32) -> Option<Vec<usize>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Cpus_allowed_list:"))?;
    parse_cpu_list(&line["Cpus_allowed_list:".len()..])
}

/// A kernel CPU list (`0-3,6,8-9`) as CPU numbers; `None` if malformed.
pub fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a || b - a > 4096 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    Some(cpus)
}

/// Busy and total clock ticks of `cpus` together since boot, from
/// `/proc/stat` (every process on them, not one): two readings give how busy
/// those cores were in between.
pub fn cores_ticks(cpus: &[usize]) -> Option<CoreTicks> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?, cpus)
}

/// Busy and total ticks of some cores (see [`cores_ticks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CoreTicks {
    /// Ticks not idle (user, nice, system, irq, softirq, steal).
    pub busy: u64,
    /// Every tick (busy + idle + iowait).
    pub total: u64,
}

impl CoreTicks {
    /// % of the time the cores were busy between `earlier` and `self`
    /// (100 = every core of the set busy all the time); `None` if no time passed.
    pub fn busy_percent_since(&self, earlier: &CoreTicks) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| busy as f64 * 100.0 / total as f64)
    }
}

/// The `cpuN` lines of a `/proc/stat` text for `cpus`, summed; `None` if one
/// is missing.
pub fn parse_proc_stat(stat: &str, cpus: &[usize]) -> Option<CoreTicks> {
    let mut sum = CoreTicks::default();
    for cpu in cpus {
        let name = format!("cpu{cpu}");
        let line = stat.lines().find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let v: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|x| x.parse().ok()).collect::<Option<_>>()?;
        if v.len() < 5 {
            return None;
        }
        let idle = v[3] + v[4];
        let total: u64 = v.iter().sum();
        sum.busy += total - idle;
        sum.total += total;
    }
    Some(sum)
}

/// The soft open-files limit of process `pid`, from `/proc/<pid>/limits`
/// (`None` if unreadable; `u64::MAX` for unlimited).
pub fn max_open_files(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    parse_max_open_files(&text)
}

/// The soft limit on the `Max open files` line of a `/proc/<pid>/limits` text.
pub fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" { Some(u64::MAX) } else { soft.parse().ok() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tparley\nVmPeak:\t  900000 kB\nVmRSS:\t   48812 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(48812));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert!(own_rss_kib().is_some_and(|kib| kib > 0));
    }

    #[test]
    fn cpu_time_is_read_from_stat() {
        let stat = "4242 (parley load) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_cpu_secs(stat), Some(2.25));
        assert_eq!(parse_stat_cpu_secs("garbage"), None);
        assert!(own_cpu_secs().is_some());
    }

    #[test]
    fn a_process_tree_counts_its_descendants_cpu() {
        let stat = "4242 (postgres: x (y)) S 17 4242 4242 0 -1 4194560 2000 0 0 0 150 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_ppid(stat), Some(17));
        assert_eq!(parse_stat_ppid("garbage"), None);
        // 10 forks 11 and 12; 12 forks 13; 20 is another tree.
        let procs = [(10, 1, 1.0), (11, 10, 0.5), (12, 10, 2.0), (13, 12, 0.25), (20, 1, 8.0), (21, 20, 4.0)];
        assert_eq!(sum_tree(&procs, 10), Some(3.75));
        assert_eq!(sum_tree(&procs, 12), Some(2.25));
        assert_eq!(sum_tree(&procs, 13), Some(0.25));
        assert_eq!(sum_tree(&procs, 99), None);
        let own = own_cpu_secs().unwrap();
        let tree = tree_cpu_secs(std::process::id()).unwrap();
        assert!(tree >= own, "a tree holds at least its root's time ({tree} < {own})");
    }

    #[test]
    fn cpu_lists_and_core_ticks_are_read() {
        assert_eq!(parse_cpu_list("1\n"), Some(vec![1]));
        assert_eq!(parse_cpu_list(" 0-2,5,7-8"), Some(vec![0, 1, 2, 5, 7, 8]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert!(allowed_cpus(std::process::id()).is_some_and(|c| !c.is_empty()));

        let stat = "cpu  300 0 100 1000 0 0 0 0 0 0\n\
                    cpu0 100 0 50 500 0 0 0 0 0 0\n\
                    cpu1 200 0 50 480 20 0 0 0 0 0\n\
                    intr 12345\n";
        let one = parse_proc_stat(stat, &[1]).unwrap();
        assert_eq!(one, CoreTicks { busy: 250, total: 750 });
        assert_eq!(parse_proc_stat(stat, &[0, 1]).unwrap(), CoreTicks { busy: 400, total: 1400 });
        assert_eq!(parse_proc_stat(stat, &[2]), None);
        let later = CoreTicks { busy: 250 + 90, total: 750 + 100 };
        assert_eq!(later.busy_percent_since(&one), Some(90.0));
        assert_eq!(one.busy_percent_since(&one), None);
        assert!(cores_ticks(&[0]).is_some());
    }

    #[test]
    fn open_file_limits_are_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             95000                95000                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        assert_eq!(parse_max_open_files("Max open files unlimited unlimited files\n"), Some(u64::MAX));
        assert!(max_open_files(std::process::id()).is_some());
    }
}
