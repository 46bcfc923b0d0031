//! How many agents this host can run at once: open files (each node's
//! runner holds a few per agent), processes, and memory; the count asked
//! for is lowered, with a note saying why, rather than failing midway.

/// Open files a runner holds per agent, with room to spare (pidfd, log
/// pipes, the agent's 9P connection to its node).
const FDS_PER_AGENT: u64 = 8;
/// Open files a node needs besides its agents'.
const FDS_BASE: u64 = 512;
/// Processes (and threads) per agent: the shim, the program, a thread or
/// two of the node's.
const PIDS_PER_AGENT: u64 = 4;
/// Resident memory per agent, node side and sandbox side, with room.
const KIB_PER_AGENT: u64 = 8 * 1024;

/// Raise this process's open-file limit to its hard limit (the nodes it
/// starts inherit it); the soft limit after.
pub fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the rlimit passed,
    // which lives on this stack for the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r = want;
            }
        }
    }
    r.rlim_cur
}

/// Of `wanted` agents on `nodes` nodes (each holding up to
/// `wanted / (nodes - 1)` after a failover), how many this host can run;
/// with a note for each limit that lowered it.
pub fn admit(wanted: usize, nodes: usize, nofile: u64) -> (usize, Vec<String>) {
    let mut n = wanted as u64;
    let mut notes = Vec::new();
    let spread = nodes.saturating_sub(1).max(1) as u64;
    let fd_room = nofile.saturating_sub(FDS_BASE) / FDS_PER_AGENT * spread;
    if fd_room < n {
        notes.push(format!(
            "open files: each node may open {nofile} files, room for about {fd_room} agents over {nodes} nodes; running {fd_room} of {wanted}"
        ));
        n = fd_room;
    }
    if let Some(free) = free_pids() {
        let room = free / PIDS_PER_AGENT;
        if room < n {
            notes.push(format!(
                "processes: {free} more may start here, room for about {room} agents; running {room} of {wanted}"
            ));
            n = room;
        }
    }
    if let Some(kib) = available_kib() {
        // Leave half the memory to the nodes and the rest of the host.
        let room = kib / 2 / KIB_PER_AGENT;
        if room < n {
            notes.push(format!(
                "memory: {} MiB available, room for about {room} agents; running {room} of {wanted}",
                kib / 1024
            ));
            n = room;
        }
    }
    (n as usize, notes)
}

/// MemAvailable, KiB.
fn available_kib() -> Option<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    m.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// How many more processes may start: the kernel's threads-max and this
/// cgroup's pids.max (v2), less what runs.
fn free_pids() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let running = std::fs::read_dir("/proc")
        .ok()?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        })
        .count() as u64;
    let mut free = read("/proc/sys/kernel/threads-max")?
        .trim()
        .parse::<u64>()
        .ok()?
        .saturating_sub(running);
    if let Some(max) = read("/sys/fs/cgroup/pids.max").and_then(|s| s.trim().parse::<u64>().ok()) {
        let current = read("/sys/fs/cgroup/pids.current")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(running);
        free = free.min(max.saturating_sub(current));
    }
    Some(free)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_open_files_lower_the_count_with_a_note() {
        let (n, notes) = admit(1000, 7, 1024);
        assert!(n < 1000, "{n}");
        assert!(notes[0].starts_with("open files"), "{notes:?}");
        assert!(raise_nofile() >= 1);
    }
}
