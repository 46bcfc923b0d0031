//! Control groups: one per agent run, under a `cell0` parent, holding its
//! limits (memory, pids, cpu) and every process it makes, so that all of
//! them can be found and killed together.
//!
//! Hosts differ, so the hierarchies are found from `/proc/self/mountinfo`:
//!
//! - cgroup v2 (the unified hierarchy, `/sys/fs/cgroup` on current
//!   systems, `/sys/fs/cgroup/unified` on hybrid ones). A run's cgroup
//!   there tracks its processes and kills them all with `cgroup.kill`,
//!   and holds the limits of the controllers that v2 has.
//! - cgroup v1 hierarchies, for the controllers that v2 lacks (on a
//!   hybrid host, v2 usually has none). The run gets a cgroup in the one
//!   of each controller whose limit it sets, only; without v2 (or if its
//!   v2 cgroup cannot be made) it also gets one in the first hierarchy,
//!   which then tracks its processes.
//!
//! A process is made in its v2 cgroup (see [`crate::child`]), which costs
//! next to nothing; it joins its v1 cgroups itself, as one thread moving
//! itself, which the kernel does without the lock whose taking waits for
//! an RCU grace period (some 20 ms) when another process is moved. A run
//! without limits on a host with v2 is in no v1 cgroup at all.
//!
//! Nothing here is fatal: what cannot be had is said in [`Cgroups::notes`]
//! and in the run's isolation notes, and the agent runs without it.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::spec::Limits;

/// The controllers whose limits the runner sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Controller {
    Memory,
    Pids,
    Cpu,
}

const CONTROLLERS: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

/// The CFS period the CPU limit is a share of (100 ms, the kernel's
/// default): a limit of P percent is P ms of CPU time per period.
const CPU_PERIOD_US: u64 = 100_000;

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

/// One cgroup file system mounted on this host, as mountinfo says.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mount {
    path: PathBuf,
    v2: bool,
    writable: bool,
    /// For v1, the controllers it was mounted with.
    controllers: Vec<String>,
}

/// The cgroup mounts listed in a mountinfo text (see proc(5)).
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        // Fields: id parent major:minor root mount-point options
        // [optional…] - fstype source super-options.
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 6 || right.len() < 3 {
            continue;
        }
        let v2 = match right[0] {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let writable = left[5].split(',').any(|o| o == "rw");
        let controllers = if v2 {
            Vec::new()
        } else {
            right[2].split(',').map(String::from).collect()
        };
        mounts.push(Mount {
            path: PathBuf::from(unescape(left[4])),
            v2,
            writable,
            controllers,
        });
    }
    mounts
}

/// A mountinfo path with its octal escapes (`\040` for a space) undone.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = (b[i] == b'\\' && i + 3 < b.len())
            .then(|| &b[i + 1..i + 4])
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')))
            .and_then(|n| u8::try_from(n).ok());
        if let Some(byte) = octal {
            out.push(byte);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Write `value` to an existing cgroup file (never creating one: a typo
/// must fail, not make a plain file).
fn write_file(path: &Path, value: &str) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

/// `mkdir`, where one that exists already will do.
fn make_dir(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Make the parent directory `path` (or find it made) and check that
/// this process may make cgroups in it: one made by root earlier is
/// there for an unprivileged runner too, but not its to use.
fn make_parent(path: &Path) -> io::Result<()> {
    make_dir(path)?;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: access reads a NUL-terminated path we own.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The pids listed in a `cgroup.procs` file (none if it cannot be read).
fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Whether process `pid` exists.
fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 sends nothing; it only checks that the
    // process exists (EPERM: it exists but is not ours).
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Where this host lets the runner make cgroups, found once.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cgroups {
    /// The parent in the v2 hierarchy (`…/cell0`), if usable.
    v2: Option<PathBuf>,
    /// The controllers enabled for the parent's children in v2.
    v2_controllers: Vec<Controller>,
    /// For controllers v2 lacks: the parent in the v1 hierarchy that has
    /// each (co-mounted controllers share one).
    v1: Vec<(Controller, PathBuf)>,
    /// What is missing and why, for a user.
    pub(crate) notes: Vec<String>,
}

/// Which limits a run's cgroup holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) memory: bool,
    pub(crate) pids: bool,
    pub(crate) cpu: bool,
}

impl Cgroups {
    /// No cgroups, for this reason.
    pub(crate) fn none(reason: &str) -> Cgroups {
        Cgroups {
            notes: vec![format!("cgroups not used: {reason}")],
            ..Cgroups::default()
        }
    }

    /// Find this host's cgroup hierarchies and make `parent` in each one
    /// the runner uses.
    pub(crate) fn discover(parent: &str) -> Cgroups {
        let text = match fs::read_to_string("/proc/self/mountinfo") {
            Ok(t) => t,
            Err(e) => return Cgroups::none(&format!("cannot read /proc/self/mountinfo: {e}")),
        };
        let mounts = parse_mountinfo(&text);
        let mut cg = Cgroups::default();
        match mounts.iter().find(|m| m.v2) {
            Some(m) if m.writable => cg.use_v2(m, parent),
            Some(m) => cg.notes.push(format!(
                "cgroup v2 at {} is mounted read-only",
                m.path.display()
            )),
            None => cg.notes.push("no cgroup v2 mount".to_string()),
        }
        for c in CONTROLLERS {
            if cg.v2_controllers.contains(&c) {
                continue;
            }
            let Some(m) = mounts
                .iter()
                .find(|m| !m.v2 && m.writable && m.controllers.iter().any(|n| n == c.name()))
            else {
                cg.notes.push(format!(
                    "no {} controller: {} limits are not enforced",
                    c.name(),
                    c.name()
                ));
                continue;
            };
            let dir = m.path.join(parent);
            match make_parent(&dir) {
                Ok(()) => cg.v1.push((c, dir)),
                Err(e) => cg.notes.push(format!(
                    "cannot make {}: {e}; {} limits are not enforced",
                    dir.display(),
                    c.name()
                )),
            }
        }
        if cg.v2.is_none() && cg.v1.is_empty() {
            cg.notes.push("no writable cgroup hierarchy".to_string());
        }
        cg
    }

    /// Use the v2 hierarchy at `m`: make the parent, and enable there the
    /// controllers the hierarchy has (a cgroup's children get only those
    /// its parent enables, from the root down).
    fn use_v2(&mut self, m: &Mount, parent: &str) {
        let dir = m.path.join(parent);
        if let Err(e) = make_parent(&dir) {
            self.notes
                .push(format!("cannot make {}: {e}", dir.display()));
            return;
        }
        let available = fs::read_to_string(m.path.join("cgroup.controllers")).unwrap_or_default();
        for c in CONTROLLERS {
            if available.split_whitespace().any(|n| n == c.name()) {
                // Either may fail (the root may already enable it, or
                // have processes of its own under a cgroup namespace);
                // what the parent ends up enabling is read back below.
                let on = format!("+{}", c.name());
                let _ = write_file(&m.path.join("cgroup.subtree_control"), &on);
                let _ = write_file(&dir.join("cgroup.subtree_control"), &on);
            }
        }
        let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        self.v2_controllers = CONTROLLERS
            .into_iter()
            .filter(|c| enabled.split_whitespace().any(|n| n == c.name()))
            .collect();
        self.v2 = Some(dir);
    }

    /// Whether runs get a cgroup at all.
    pub(crate) fn available(&self) -> bool {
        self.v2.is_some() || !self.v1.is_empty()
    }

    /// Which limits this host can enforce.
    pub(crate) fn enforceable(&self) -> Applied {
        let has = |c| self.v2_controllers.contains(&c) || self.v1.iter().any(|(x, _)| *x == c);
        Applied {
            memory: has(Controller::Memory),
            pids: has(Controller::Pids),
            cpu: has(Controller::Cpu),
        }
    }

    /// The parents, each once (for the sweep: a run's cgroup is in some).
    fn parents(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = self.v2.iter().map(PathBuf::as_path).collect();
        for (_, d) in &self.v1 {
            if !dirs.contains(&d.as_path()) {
                dirs.push(d);
            }
        }
        dirs
    }

    /// Make the cgroup `name` for one run and set `limits` in it. Returns
    /// the cgroup (`None` when none could be made), which limits it holds,
    /// and what went wrong.
    ///
    /// It has a directory in v2 (which tracks its processes), and one in
    /// the v1 hierarchy of each controller v2 lacks whose limit is set.
    /// Without a v2 directory, the first v1 hierarchy tracks them, so it
    /// gets one there whatever the limits.
    pub(crate) fn create(
        &self,
        name: &str,
        limits: &Limits,
    ) -> (Option<Cgroup>, Applied, Vec<String>) {
        let mut notes = Vec::new();
        let mut dirs = Vec::new();
        let mut v2 = None;
        if let Some(parent) = &self.v2 {
            let dir = parent.join(name);
            match make_dir(&dir) {
                Ok(()) => {
                    v2 = Some(dir.clone());
                    dirs.push(dir);
                }
                Err(e) => notes.push(format!("cannot make cgroup {}: {e}", dir.display())),
            }
        }
        let set = |c: Controller| match c {
            Controller::Memory => limits.memory_bytes.is_some(),
            Controller::Pids => limits.pids.is_some(),
            Controller::Cpu => limits.cpu_percent.is_some(),
        };
        let mut v1_parents: Vec<&Path> = Vec::new();
        for (i, (c, parent)) in self.v1.iter().enumerate() {
            let tracks = i == 0 && v2.is_none();
            if (tracks || set(*c)) && !v1_parents.contains(&parent.as_path()) {
                v1_parents.push(parent);
            }
        }
        for parent in v1_parents {
            let dir = parent.join(name);
            match make_dir(&dir) {
                Ok(()) => dirs.push(dir),
                Err(e) => notes.push(format!("cannot make cgroup {}: {e}", dir.display())),
            }
        }
        if dirs.is_empty() {
            return (None, Applied::default(), notes);
        }
        let cg = Cgroup { dirs, v2 };
        let mut applied = Applied::default();
        // The files each limit is written to, by hierarchy version.
        let settings: [(Controller, Option<u64>, &mut bool); 3] = [
            (Controller::Memory, limits.memory_bytes, &mut applied.memory),
            (
                Controller::Pids,
                limits.pids.map(u64::from),
                &mut applied.pids,
            ),
            (
                Controller::Cpu,
                limits.cpu_percent.map(u64::from),
                &mut applied.cpu,
            ),
        ];
        for (c, value, done) in settings {
            let Some(value) = value else { continue };
            let in_v2 = self.v2_controllers.contains(&c);
            let dir = if in_v2 {
                cg.v2.clone()
            } else {
                self.v1
                    .iter()
                    .find(|(x, _)| *x == c)
                    .map(|(_, parent)| parent.join(name))
                    .filter(|d| cg.dirs.contains(d))
            };
            let Some(dir) = dir else {
                notes.push(format!(
                    "{} limit not enforced: no {} controller",
                    c.name(),
                    c.name()
                ));
                continue;
            };
            let writes: Vec<(&str, String)> = match (c, in_v2) {
                (Controller::Memory, true) => vec![("memory.max", value.to_string())],
                (Controller::Memory, false) => vec![("memory.limit_in_bytes", value.to_string())],
                (Controller::Pids, _) => vec![("pids.max", value.to_string())],
                (Controller::Cpu, true) => {
                    vec![(
                        "cpu.max",
                        format!("{} {CPU_PERIOD_US}", value * CPU_PERIOD_US / 100),
                    )]
                }
                (Controller::Cpu, false) => vec![
                    ("cpu.cfs_period_us", CPU_PERIOD_US.to_string()),
                    (
                        "cpu.cfs_quota_us",
                        (value * CPU_PERIOD_US / 100).to_string(),
                    ),
                ],
            };
            let mut ok = true;
            for (file, v) in writes {
                if let Err(e) = write_file(&dir.join(file), &v) {
                    notes.push(format!(
                        "{} limit not enforced: writing {v} to {}: {e}",
                        c.name(),
                        dir.join(file).display()
                    ));
                    ok = false;
                    break;
                }
            }
            *done = ok;
        }
        (Some(cg), applied, notes)
    }

    /// Remove the cgroups left by runners that died (their names carry
    /// their process id; see [`run_name`]), killing what is left in them.
    /// The cgroups of live runners, this process's included, are left.
    pub(crate) fn sweep(&self) {
        let me = std::process::id() as i32;
        for parent in self.parents() {
            let Ok(entries) = fs::read_dir(parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(owner) = name.to_str().and_then(owner_of) else {
                    continue;
                };
                if owner == me || alive(owner) {
                    continue;
                }
                let dir = entry.path();
                let stale = Cgroup {
                    v2: (Some(parent) == self.v2.as_deref()).then(|| dir.clone()),
                    dirs: vec![dir],
                };
                stale.kill();
                let _ = stale.remove();
            }
        }
    }
}

/// The name of a run's cgroup: the agent, the runner's process id and a
/// number unique in the runner, so runners and runs never collide and a
/// later runner can tell which are left from a dead one.
pub(crate) fn run_name(agent: &str, seq: u64) -> String {
    format!("{agent}.{}.{seq}", std::process::id())
}

/// The runner process id in a name made by [`run_name`].
fn owner_of(name: &str) -> Option<i32> {
    let mut parts = name.rsplitn(3, '.');
    let seq = parts.next()?;
    let pid = parts.next()?;
    let agent = parts.next()?;
    if agent.is_empty() || seq.parse::<u64>().is_err() {
        return None;
    }
    pid.parse().ok().filter(|&p: &i32| p > 0)
}

/// One run's cgroup: a directory in each hierarchy used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cgroup {
    /// Every directory, the one that tracks its processes first (the v2
    /// one, if any).
    dirs: Vec<PathBuf>,
    /// The v2 directory, which has `cgroup.kill`.
    v2: Option<PathBuf>,
}

impl Cgroup {
    /// Its directories.
    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Its v2 directory, which a process is made in (or joins by
    /// writing its `cgroup.procs`).
    pub(crate) fn v2_dir(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    /// Its v1 directories, which a process joins by writing itself into
    /// their `tasks` (see [`crate::child`]).
    pub(crate) fn v1_dirs(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .filter(|d| Some(d.as_path()) != self.v2.as_deref())
            .cloned()
            .collect()
    }

    /// The processes in it (in the runner's pid namespace).
    pub(crate) fn pids(&self) -> Vec<i32> {
        procs(&self.dirs[0])
    }

    /// Kill every process in it, with v2's `cgroup.kill` when there is
    /// one (which also gets processes forked meanwhile), else by walking
    /// its process list until it is empty.
    pub(crate) fn kill(&self) {
        if let Some(v2) = &self.v2
            && write_file(&v2.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        // A process forking as fast as it is killed could outrun this;
        // the rounds are bounded so the runner never spins, and a pids
        // limit bounds such a process anyway.
        for _ in 0..100 {
            let pids = procs(&self.dirs[0]);
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                // SAFETY: as in `signal`.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }

    /// Remove its directories. Fails (EBUSY) while a process in it has
    /// not quite ended yet; the caller tries again later.
    pub(crate) fn remove(&self) -> io::Result<()> {
        let mut result = Ok(());
        for d in &self.dirs {
            match fs::remove_dir(d) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => result = Err(e),
                _ => {}
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids ro,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:40 / /mnt/with\\040space rw - cgroup2 cgroup2 rw
";

    #[test]
    fn mountinfo_names_the_cgroup_mounts_and_their_controllers() {
        let m = parse_mountinfo(HYBRID);
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].path, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m[0].controllers, ["rw", "cpu", "cpuacct"]);
        assert!(!m[0].v2 && m[0].writable);
        assert!(!m[2].writable);
        assert!(m[3].v2);
        assert_eq!(m[4].path, Path::new("/mnt/with space"));
    }

    #[test]
    fn run_names_carry_their_runner() {
        let name = run_name("a.b-c", 7);
        assert_eq!(owner_of(&name), Some(std::process::id() as i32));
        assert_eq!(owner_of("agent"), None);
        assert_eq!(owner_of("x.y"), None);
        assert_eq!(owner_of(".12.3"), None);
        assert_eq!(owner_of("w.12.3"), Some(12));
    }
}
