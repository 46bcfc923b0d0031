//! The supervisor: many agents by name, their processes started,
//! watched, stopped and restarted by one thread of its own.
//!
//! # The thread
//!
//! Every process is started by the supervisor's thread, never by a
//! caller's: `PR_SET_PDEATHSIG` fires when the *thread* that made a
//! process ends, so a process made from a short-lived caller thread
//! would be killed with it. The thread lives as long as the
//! [`Supervisor`]; if it ever died, every agent would die with it
//! rather than run unwatched.
//!
//! The thread waits in `poll(2)` on, for each process, a pidfd (readable
//! when the process ends; Linux 5.3 and later) and its stdout and stderr
//! pipes, plus a wake-up pipe that the API writes to. Its timeout is the
//! next timer: a restart after its backoff, a KILL after a grace period.
//! The state lock is never held while it polls or starts a process, so
//! callers are never blocked behind I/O; they hold it only to read or
//! change plain data. Where there is no pidfd, the thread checks with
//! `waitid(WNOHANG)` every 50 ms instead.
//!
//! When a process ends, it is not reaped at once: while it is a zombie
//! its pid (and so its process group id) cannot be reused, so the rest
//! of the group and of its cgroup are killed first, then it is reaped.
//!
//! # Stopping
//!
//! `stop` sends TERM to every process of the agent (its cgroup, or its
//! process group without one), then KILL after the spec's grace period;
//! `kill` sends KILL at once. With a cgroup, a process the agent starts
//! while it is being stopped gets its TERM too (each process once). KILL goes to the cgroup (`cgroup.kill`),
//! the process group and the agent itself; with a pid namespace, the
//! kernel also kills everything in the namespace when the agent, its pid
//! 1, ends.
//!
//! Being pid 1, an agent in a pid namespace receives TERM only if it
//! handles (or blocks) it, as any init; the processes it started do get
//! it. So that `stop` still means what TERM's default action would, an
//! agent deaf to TERM is killed as soon as it is the last of its
//! processes (its children have had their TERM and ended), or at the end
//! of the grace period. Its exit then reads `signal=KILL`.
//!
//! The host program must not reap children it did not start
//! (`waitpid(-1)`) nor ignore SIGCHLD, or exit statuses are lost
//! ([`crate::ExitStatus::Unknown`]).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::backoff::{Backoff, Budget};
use crate::cgroup::{self, Applied, Cgroup};
use crate::child::{self, Launch};
use crate::error::{Error, StartError};
use crate::event::{EXIT_STDERR_LINES, Event, Exit, State, Status, What};
use crate::logbuf::{LogBuf, LogChunk};
use crate::process::{self, ExitStatus};
use crate::run::Run;
use crate::sandbox::{Host, Isolation};
use crate::spec::{Restart, Spec};

/// How the supervisor isolates agents: by default with everything the
/// host allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Try user, pid, mount, UTS, IPC, cgroup and network namespaces.
    pub namespaces: bool,
    /// Try cgroups.
    pub cgroups: bool,
    /// The name of the cgroup under which every run's cgroup is made, in
    /// each hierarchy's root: a plain name (`cell0` by default).
    pub cgroup_parent: String,
    /// The host uid (and gid) of the first run's user namespace root;
    /// each live run has its own, counting up from here. Only a root
    /// runner can map ids other than its own (see [`crate::Isolation`]).
    pub uid_base: u32,
}

/// The default [`Options::uid_base`]: far above the ids of people and
/// services, and of the ranges `/etc/subuid` usually hands out.
pub const DEFAULT_UID_BASE: u32 = 2_000_000_000;

impl Default for Options {
    fn default() -> Options {
        Options {
            namespaces: true,
            cgroups: true,
            cgroup_parent: "cell0".to_string(),
            uid_base: DEFAULT_UID_BASE,
        }
    }
}

/// Bytes of one run's stderr kept for its exit record.
const RUN_STDERR_BYTES: usize = 8 * 1024;
/// Most bytes read from one pipe per turn of the loop, so a chatty agent
/// cannot starve the others.
const READ_TURN: usize = 256 * 1024;
/// How often the thread checks for ended processes without a pidfd, and
/// retries removing cgroups whose processes are still ending.
const TICK: Duration = Duration::from_millis(50);
/// How long a cgroup's removal is retried before it is left (to the
/// next runner's sweep).
const REMOVE_FOR: Duration = Duration::from_secs(10);

/// Numbers runs within this process, for their cgroups' names.
static RUN_SEQ: AtomicU64 = AtomicU64::new(0);

/// What an agent is wanted to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Running,
    Stopped,
    Killed,
}

/// One agent.
#[derive(Debug)]
struct Agent {
    spec: Spec,
    want: Want,
    state: State,
    run: Option<Run>,
    /// The thread is making its process.
    spawning: bool,
    /// When to start it (now, or after a backoff).
    start_at: Option<Instant>,
    backoff: Backoff,
    budget: Budget,
    restarts: u32,
    log: LogBuf,
    last_exit: Option<Exit>,
    isolation: Option<Isolation>,
    cgroups: Vec<PathBuf>,
    since: Option<SystemTime>,
}

impl Agent {
    fn new(spec: Spec) -> Agent {
        Agent {
            log: LogBuf::new(spec.log_bytes),
            spec,
            want: Want::Stopped,
            state: State::Stopped,
            run: None,
            spawning: false,
            start_at: None,
            backoff: Backoff::new(),
            budget: Budget::default(),
            restarts: 0,
            last_exit: None,
            isolation: None,
            cgroups: Vec::new(),
            since: None,
        }
    }

    /// Whether a process exists or is being made.
    fn busy(&self) -> bool {
        self.run.is_some() || self.spawning
    }
}

/// The state the thread and the callers share.
struct Inner {
    agents: BTreeMap<String, Agent>,
    events: Sender<Event>,
    shutdown: bool,
}

impl Inner {
    /// Put `agent` in `state` and say so, if it was not there already.
    fn set_state(&mut self, name: &str, state: State) {
        let Some(a) = self.agents.get_mut(name) else {
            return;
        };
        if a.state == state {
            return;
        }
        a.state = state.clone();
        let _ = self.events.send(Event {
            agent: name.to_string(),
            what: What::State(state),
        });
    }
}

struct Shared {
    inner: Mutex<Inner>,
    /// The write end of the thread's wake-up pipe (non-blocking).
    wake: OwnedFd,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data that is still
        // consistent enough to read and to shut down with.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        // SAFETY: a one-byte write from a static buffer to our pipe; when
        // the pipe is full (EAGAIN) the thread is woken already.
        unsafe { libc::write(self.wake.as_raw_fd(), b"w".as_ptr().cast(), 1) };
    }
}

/// Kills every agent of a [`Supervisor`] from any thread: what a runner
/// that loses its right to run agents (its node's lease) does at once,
/// whatever its own loop is waiting for.
#[derive(Clone)]
pub struct Killer {
    shared: Arc<Shared>,
}

impl Killer {
    /// Want every agent killed (KILL to its processes) and none started
    /// until its next [`Supervisor::start`]; the names it had.
    pub fn kill_all(&self) -> Vec<String> {
        let mut inner = self.shared.lock();
        let names: Vec<String> = inner.agents.keys().cloned().collect();
        for name in &names {
            if let Some(a) = inner.agents.get_mut(name) {
                a.want = Want::Killed;
                a.start_at = None;
                if !a.busy() {
                    inner.set_state(name, State::Stopped);
                }
            }
        }
        drop(inner);
        self.shared.wake();
        names
    }
}

/// Runs agents: starts, watches, stops and restarts their processes.
/// See the module documentation for how.
///
/// Dropping it kills every agent's processes (KILL), waits for them to
/// end and removes their cgroups.
pub struct Supervisor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    isolation: Isolation,
}

impl Supervisor {
    /// A supervisor with every isolation the host allows, and the
    /// receiving end of its events (drain it, or drop it: events are
    /// kept until read).
    pub fn new() -> io::Result<(Supervisor, Receiver<Event>)> {
        Supervisor::with_options(Options::default())
    }

    /// A supervisor isolating agents as `options` allow. It first finds
    /// what the host offers (which makes one short-lived process), and
    /// removes cgroups left by runners that died.
    pub fn with_options(options: Options) -> io::Result<(Supervisor, Receiver<Event>)> {
        let host = Host::discover(
            options.namespaces,
            options.cgroups,
            &options.cgroup_parent,
            options.uid_base,
        );
        host.cgroups.sweep();
        let isolation = host.isolation();
        let (wake_r, wake_w) = wake_pipe()?;
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                agents: BTreeMap::new(),
                events: tx,
                shutdown: false,
            }),
            wake: wake_w,
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("cell0-agents".to_string())
            .spawn(move || Looper::new(thread_shared, host, wake_r).run())?;
        Ok((
            Supervisor {
                shared,
                thread: Some(thread),
                isolation,
            },
            rx,
        ))
    }

    /// What isolation this host gives agents (with every limit set and
    /// no network); each run's own is in its [`Status`].
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    fn alive(&self) -> Result<(), Error> {
        match &self.thread {
            Some(t) if !t.is_finished() => Ok(()),
            _ => Err(Error::Gone),
        }
    }

    /// Want agent `name` running `spec`, making the agent if it is new.
    /// Its restart count, budget and backoff start afresh. A process that
    /// runs already goes on running (the spec is used at its next start);
    /// one being stopped is started again once it has ended; otherwise
    /// one is started now. A spec that cannot run (see [`Spec::check`])
    /// or a program that cannot be run puts the agent in
    /// [`State::Failed`], with the reason, and it is not retried until
    /// `start` is called again.
    pub fn start(&self, name: &str, spec: Spec) -> Result<(), Error> {
        check_name(name)?;
        self.alive()?;
        let mut inner = self.shared.lock();
        if inner.shutdown {
            return Err(Error::Gone);
        }
        let a = inner
            .agents
            .entry(name.to_string())
            .or_insert_with(|| Agent::new(spec.clone()));
        a.log.set_max(spec.log_bytes);
        a.spec = spec;
        a.want = Want::Running;
        a.backoff = Backoff::new();
        a.budget = Budget::default();
        a.restarts = 0;
        let check = a.spec.check();
        let idle = !a.busy();
        match check {
            Err(e) => {
                a.start_at = None;
                if idle {
                    inner.set_state(name, State::Failed(StartError::Spec(e)));
                }
            }
            Ok(()) if idle => {
                a.start_at = Some(Instant::now());
                inner.set_state(name, State::Starting);
            }
            // A process that is stopping is started again once it has
            // ended (see `Looper::ended`).
            Ok(()) => {}
        }
        drop(inner);
        self.shared.wake();
        Ok(())
    }

    /// A handle that kills every agent from another thread, even while
    /// the one that owns the supervisor is busy (see [`Killer`]).
    pub fn killer(&self) -> Killer {
        Killer {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Want agent `name` stopped: TERM to its processes, KILL after its
    /// grace period.
    pub fn stop(&self, name: &str) -> Result<(), Error> {
        self.halt(name, Want::Stopped)
    }

    /// Want agent `name` stopped at once: KILL to its processes.
    pub fn kill(&self, name: &str) -> Result<(), Error> {
        self.halt(name, Want::Killed)
    }

    fn halt(&self, name: &str, want: Want) -> Result<(), Error> {
        self.alive()?;
        let mut inner = self.shared.lock();
        let a = inner
            .agents
            .get_mut(name)
            .ok_or_else(|| Error::NoSuchAgent(name.to_string()))?;
        // A kill asked during a stop stands; a stop does not soften it.
        if a.want != Want::Killed || want == Want::Killed {
            a.want = want;
        }
        a.start_at = None;
        if !a.busy() {
            inner.set_state(name, State::Stopped);
        }
        drop(inner);
        self.shared.wake();
        Ok(())
    }

    /// Forget agent `name` and its log. Refused while it has a process:
    /// stop it and wait for [`State::Stopped`] first.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        let mut inner = self.shared.lock();
        let a = inner
            .agents
            .get(name)
            .ok_or_else(|| Error::NoSuchAgent(name.to_string()))?;
        if a.busy() {
            return Err(Error::Busy {
                name: name.to_string(),
                state: a.state.word(),
            });
        }
        inner.agents.remove(name);
        Ok(())
    }

    /// The names of the agents, sorted.
    pub fn names(&self) -> Vec<String> {
        self.shared.lock().agents.keys().cloned().collect()
    }

    /// A snapshot of agent `name`.
    pub fn status(&self, name: &str) -> Option<Status> {
        let inner = self.shared.lock();
        let a = inner.agents.get(name)?;
        Some(Status {
            state: a.state.clone(),
            restarts: a.restarts,
            last_exit: a.last_exit.clone(),
            isolation: a.isolation.clone(),
            cgroups: a.cgroups.clone(),
            since: a.since,
        })
    }

    /// Everything agent `name`'s log keeps: the last bytes its processes
    /// wrote to stdout and stderr, over all its runs.
    pub fn log(&self, name: &str) -> Option<Vec<u8>> {
        Some(self.shared.lock().agents.get(name)?.log.contents())
    }

    /// What agent `name` wrote from stream offset `from` on (0 for all
    /// that is kept); pass the chunk's `next` to read on from there.
    pub fn read_log(&self, name: &str, from: u64) -> Option<LogChunk> {
        Some(self.shared.lock().agents.get(name)?.log.since(from))
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        {
            let mut inner = self.shared.lock();
            inner.shutdown = true;
            for a in inner.agents.values_mut() {
                a.want = Want::Killed;
                a.start_at = None;
            }
        }
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether `name` can name an agent: what the tree allows (1 to 64 of
/// `A-Z a-z 0-9 . _ -`, not starting with a dot), which is also a safe
/// cgroup directory name.
fn check_name(name: &str) -> Result<(), Error> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadName(name.to_string()))
    }
}

/// The thread's wake-up pipe: (read end, write end), both non-blocking.
fn wake_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded; both descriptors are new and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Why the program of `spec` cannot be run, if it plainly cannot: the
/// kernel's own refusal (at exec) is less clear about which it is.
fn check_program(spec: &Spec) -> Result<(), StartError> {
    let program = spec.program.display().to_string();
    match fs::metadata(&spec.program) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StartError::NotFound { program }),
        Err(e) => Err(StartError::Inaccessible {
            program,
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        }),
        Ok(m) if !m.is_file() => Err(StartError::NotAFile { program }),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(StartError::NotExecutable {
            program,
            mode: m.permissions().mode() & 0o7777,
        }),
        Ok(_) => Ok(()),
    }
}

/// What a started process comes with.
struct Started {
    run: Run,
    isolation: Isolation,
}

/// What each polled descriptor is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fd {
    Wake,
    Ended,
    Stdout,
    Stderr,
}

/// The supervisor's thread.
struct Looper {
    shared: Arc<Shared>,
    host: Host,
    wake: OwnedFd,
    /// Cgroups of ended runs whose last processes were still ending, and
    /// since when their removal is tried.
    removals: Vec<(Cgroup, Instant)>,
}

impl Looper {
    fn new(shared: Arc<Shared>, host: Host, wake: OwnedFd) -> Looper {
        Looper {
            shared,
            host,
            wake,
            removals: Vec::new(),
        }
    }

    fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let mut shutdown_at = None;
        loop {
            let now = Instant::now();
            let mut inner = shared.lock();
            if inner.shutdown {
                let since = *shutdown_at.get_or_insert(now);
                let idle = inner.agents.values().all(|a| !a.busy());
                // Wait for the cgroups too, but not forever.
                if idle && (self.removals.is_empty() || now.duration_since(since) > REMOVE_FOR) {
                    return;
                }
            }
            let to_start = self.timers(&mut inner, now);
            if !to_start.is_empty() {
                drop(inner);
                self.start_all(to_start);
                // The new processes join the poll set on the next turn.
                continue;
            }
            let (mut fds, tags, mut deadline, tick) = self.poll_set(&inner);
            drop(inner);

            if tick || !self.removals.is_empty() {
                deadline = Some(deadline.map_or(now + TICK, |d| d.min(now + TICK)));
            }
            let timeout = deadline.map_or(-1, |d| {
                let wait = d.saturating_duration_since(now);
                // Round up, so the timer has passed on waking.
                let ms = wait.as_millis().min(i32::MAX as u128 - 1) as i32;
                ms + i32::from(wait.subsec_nanos() % 1_000_000 != 0)
            });
            // SAFETY: `fds` is a valid array of pollfd of the given length.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };

            let mut inner = shared.lock();
            self.handle(&mut inner, &fds, &tags);
            self.retry_removals();
        }
    }

    /// Carry out what is due: TERM and KILL for agents wanted stopped,
    /// KILL at the end of grace periods. Returns the agents to start.
    fn timers(&mut self, inner: &mut Inner, now: Instant) -> Vec<(String, Spec)> {
        let mut to_start = Vec::new();
        let mut stopping = Vec::new();
        for (name, a) in inner.agents.iter_mut() {
            if let Some(run) = &mut a.run {
                match a.want {
                    Want::Killed if !run.killed => {
                        run.kill();
                        stopping.push((name.clone(), run.pid()));
                    }
                    Want::Stopped if run.kill_at.is_none() && !run.killed => {
                        run.terminate();
                        run.kill_at = Some(now + a.spec.grace);
                        stopping.push((name.clone(), run.pid()));
                    }
                    // A stop under way goes on even if the agent is
                    // wanted running again: it is started anew once
                    // this process has ended.
                    _ if run.kill_at.is_some() && !run.killed => {
                        run.terminate_newcomers();
                        if run.kill_at.is_some_and(|t| t <= now) || run.deaf_and_alone() {
                            run.kill();
                        }
                    }
                    _ => {}
                }
            } else if a.want == Want::Running && !a.spawning && a.start_at.is_some_and(|t| t <= now)
            {
                a.start_at = None;
                a.spawning = true;
                to_start.push((name.clone(), a.spec.clone()));
            }
        }
        for (name, pid) in stopping {
            inner.set_state(&name, State::Stopping { pid });
        }
        for (name, _) in &to_start {
            inner.set_state(name, State::Starting);
        }
        to_start
    }

    /// Start each agent's process, without the lock, then record it.
    fn start_all(&mut self, to_start: Vec<(String, Spec)>) {
        for (name, spec) in to_start {
            let result = self.launch(&name, &spec);
            let mut inner = self.shared.lock();
            let Some(a) = inner.agents.get_mut(&name) else {
                // Cannot happen (`remove` refuses while spawning), but a
                // process must never be left unwatched.
                if let Ok(mut s) = result {
                    s.run.kill();
                    process::reap(s.run.child.pid);
                    if let Some(slot) = s.run.id_slot {
                        self.host.ids.free(slot);
                    }
                    if let Some(cg) = s.run.cgroup {
                        self.removals.push((cg, Instant::now()));
                    }
                }
                continue;
            };
            a.spawning = false;
            match result {
                Ok(s) => {
                    let pid = s.run.pid();
                    a.cgroups = s
                        .run
                        .cgroup
                        .as_ref()
                        .map(|c| c.dirs().to_vec())
                        .unwrap_or_default();
                    a.isolation = Some(s.isolation);
                    a.since = Some(SystemTime::now());
                    a.run = Some(s.run);
                    // If it was asked to stop meanwhile, the next turn's
                    // timers do that.
                    inner.set_state(&name, State::Running { pid });
                }
                Err(e) => {
                    let state = if a.want == Want::Running {
                        State::Failed(e)
                    } else {
                        State::Stopped
                    };
                    inner.set_state(&name, state);
                }
            }
        }
    }

    /// Make one run of `spec`: check the program, make its cgroup, start
    /// the process.
    fn launch(&mut self, name: &str, spec: &Spec) -> Result<Started, StartError> {
        spec.check()?;
        check_program(spec)?;
        let seq = RUN_SEQ.fetch_add(1, Ordering::Relaxed);
        let (cgroup, applied, mut notes) = if self.host.cgroups.available() {
            self.host
                .cgroups
                .create(&cgroup::run_name(name, seq), &spec.limits)
        } else {
            (None, Applied::default(), Vec::new())
        };
        if !self.host.cgroups.available() && spec.limits.any() {
            notes.push("limits not enforced: no cgroups here".to_string());
        }
        let env = spec.environment();
        let ids = if self.host.namespaces {
            match self.host.ids.take() {
                Some(ids) => Some(ids),
                None => {
                    if let Some(cg) = cgroup {
                        self.removals.push((cg, Instant::now()));
                    }
                    return Err(StartError::Os {
                        what: "find a free host id for its user namespace",
                        errno: libc::EAGAIN,
                    });
                }
            }
        } else {
            None
        };
        let namespaces = self.host.namespaces_for(spec, ids.map(|(map, _)| map));
        let give_back = |looper: &mut Looper, cgroup: Option<Cgroup>| {
            if let Some((_, slot)) = ids {
                looper.host.ids.free(slot);
            }
            if let Some(cg) = cgroup {
                looper.removals.push((cg, Instant::now()));
            }
        };
        // Made afresh for each run, and let go of once its process has
        // its copies.
        let passed = match spec.fds.as_ref().map(|f| f.make(name)) {
            None => Vec::new(),
            Some(Ok(fds)) => fds,
            Some(Err(e)) => {
                give_back(self, cgroup);
                return Err(StartError::Os {
                    what: "prepare the descriptors it is given",
                    errno: e.raw_os_error().unwrap_or(libc::EIO),
                });
            }
        };
        let raw: Vec<i32> = passed.iter().map(AsRawFd::as_raw_fd).collect();
        let devices: Vec<std::ffi::CString> = spec
            .devices
            .iter()
            .filter_map(|d| std::ffi::CString::new(d.as_os_str().as_encoded_bytes()).ok())
            .collect();
        let launch = Launch {
            program: &spec.program,
            args: &spec.args,
            env: &env,
            namespaces,
            cgroup_v2: cgroup
                .as_ref()
                .and_then(Cgroup::v2_dir)
                .map(Path::to_path_buf),
            cgroup_v1: cgroup.as_ref().map(Cgroup::v1_dirs).unwrap_or_default(),
            fds: &raw,
            devices: &devices,
        };
        let spawned = child::spawn(&launch);
        drop(passed);
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                give_back(self, cgroup);
                return Err(e);
            }
        };
        let isolation = self
            .host
            .run_isolation(spec, namespaces, cgroup.is_some(), applied, notes);
        Ok(Started {
            run: Run {
                child,
                started: Instant::now(),
                cgroup,
                stderr: LogBuf::new(RUN_STDERR_BYTES),
                kill_at: None,
                killed: false,
                pid_ns: isolation.pid_namespace,
                termed: Vec::new(),
                id_slot: ids.map(|(_, slot)| slot),
                deaf: false,
            },
            isolation,
        })
    }

    /// The descriptors to poll and what each is, the next timer, and
    /// whether some process has no pidfd (so must be checked on a tick).
    #[allow(clippy::type_complexity)]
    fn poll_set(
        &self,
        inner: &Inner,
    ) -> (Vec<libc::pollfd>, Vec<(String, Fd)>, Option<Instant>, bool) {
        let pollfd = |fd: &OwnedFd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = vec![pollfd(&self.wake)];
        let mut tags = vec![(String::new(), Fd::Wake)];
        let mut deadline: Option<Instant> = None;
        let mut tick = false;
        let mut at = |t: Instant| deadline = Some(deadline.map_or(t, |d| d.min(t)));
        for (name, a) in &inner.agents {
            if let Some(t) = a.start_at
                && a.want == Want::Running
            {
                at(t);
            }
            let Some(run) = &a.run else { continue };
            if let Some(t) = run.kill_at
                && !run.killed
            {
                at(t);
                // While stopping, a cgroup is watched for newcomers and
                // a deaf agent for being alone, on every tick.
                tick |= run.deaf || run.cgroup.is_some();
            }
            match &run.child.pidfd {
                Some(fd) => {
                    fds.push(pollfd(fd));
                    tags.push((name.clone(), Fd::Ended));
                }
                None => tick = true,
            }
            for (fd, tag) in [
                (&run.child.stdout, Fd::Stdout),
                (&run.child.stderr, Fd::Stderr),
            ] {
                if let Some(fd) = fd {
                    fds.push(pollfd(fd));
                    tags.push((name.clone(), tag));
                }
            }
        }
        (fds, tags, deadline, tick)
    }

    /// Act on what `poll` found: read output, notice ends.
    fn handle(&mut self, inner: &mut Inner, fds: &[libc::pollfd], tags: &[(String, Fd)]) {
        let mut ended = Vec::new();
        for (pfd, (name, tag)) in fds.iter().zip(tags) {
            if pfd.revents == 0 {
                continue;
            }
            if *tag == Fd::Wake {
                let mut sink = |_: &[u8]| {};
                process::read_available(&self.wake, usize::MAX, &mut sink);
                continue;
            }
            let Some(a) = inner.agents.get_mut(name) else {
                continue;
            };
            match tag {
                Fd::Stdout | Fd::Stderr => {
                    if let Some(run) = &mut a.run {
                        read_output(&mut a.log, run, *tag == Fd::Stderr);
                    }
                }
                _ => ended.push(name.clone()),
            }
        }
        // Processes without a pidfd are checked on every turn.
        for (name, a) in &inner.agents {
            if let Some(run) = &a.run
                && run.child.pidfd.is_none()
                && process::has_ended(run.child.pid)
            {
                ended.push(name.clone());
            }
        }
        for name in ended {
            self.ended(inner, &name);
        }
    }

    /// Agent `name`'s process ended: take its last output, kill what is
    /// left of it, reap it, record the exit, and decide what next.
    fn ended(&mut self, inner: &mut Inner, name: &str) {
        let Some(a) = inner.agents.get_mut(name) else {
            return;
        };
        let Some(mut run) = a.run.take() else {
            return;
        };
        // What it wrote before it ended is in the pipes already.
        read_output(&mut a.log, &mut run, false);
        read_output(&mut a.log, &mut run, true);
        let asked = a.want != Want::Running || run.kill_at.is_some() || run.killed;

        // Its pid is not reaped yet, so its group id is still its own.
        run.kill();
        let status = process::reap(run.child.pid);
        let now = Instant::now();
        let ran = now.duration_since(run.started);
        let pid = run.pid();
        let stderr = run.stderr.tail_lines(EXIT_STDERR_LINES);
        if let Some(cg) = run.cgroup.take() {
            self.removals.push((cg, now));
        }
        // Its namespace's processes died with it (pid 1), so its host id
        // is free for another run.
        if let Some(slot) = run.id_slot.take() {
            self.host.ids.free(slot);
        }
        // Closes its pidfd and pipes.
        drop(run);
        a.cgroups.clear();
        a.since = None;

        let policy = a.spec.restart;
        let wanted = a.want == Want::Running;
        let next = if !wanted {
            State::Stopped
        } else if asked {
            // Stopped, then started again before it had ended.
            a.start_at = Some(now);
            State::Starting
        } else if restarts_after(policy.restart, status) {
            if a.budget.take(now, &policy) {
                let delay = a.backoff.delay(ran);
                a.restarts += 1;
                a.start_at = Some(now + delay);
                State::Backoff { delay }
            } else {
                State::Crashloop
            }
        } else {
            State::Exited
        };
        let exit = Exit {
            pid,
            status,
            at: SystemTime::now(),
            ran,
            stderr,
            asked,
            restarting: matches!(next, State::Backoff { .. } | State::Starting),
        };
        a.last_exit = Some(exit.clone());
        let _ = inner.events.send(Event {
            agent: name.to_string(),
            what: What::Exit(exit),
        });
        inner.set_state(name, next);
    }

    /// Try again to remove the cgroups of ended runs.
    fn retry_removals(&mut self) {
        let now = Instant::now();
        self.removals
            .retain(|(cg, since)| cg.remove().is_err() && now.duration_since(*since) < REMOVE_FOR);
    }
}

/// Whether `restart` starts a process again after it ended with `status`.
fn restarts_after(restart: Restart, status: ExitStatus) -> bool {
    match restart {
        Restart::Always => true,
        Restart::OnFailure => !status.success(),
        Restart::Never => false,
    }
}

/// Read what a run's process wrote to stdout (or stderr) into its
/// log (and the run's stderr record); close the pipe at its end.
fn read_output(log: &mut LogBuf, run: &mut Run, stderr: bool) {
    let pipe = if stderr {
        &mut run.child.stderr
    } else {
        &mut run.child.stdout
    };
    let Some(fd) = pipe else { return };
    let tail = &mut run.stderr;
    let open = process::read_available(fd, READ_TURN, &mut |bytes| {
        log.push(bytes);
        if stderr {
            tail.push(bytes);
        }
    });
    if !open {
        *pipe = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_words() {
        for good in ["a", "worker-1", "a.b_c", &"x".repeat(64)] {
            check_name(good).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "a b", "..", &"x".repeat(65), "é"] {
            assert_eq!(check_name(bad), Err(Error::BadName(bad.to_string())));
        }
    }

    #[test]
    fn policies_restart_as_named() {
        let fail = ExitStatus::Code(1);
        let ok = ExitStatus::Code(0);
        let sig = ExitStatus::Signal(9);
        assert!(restarts_after(Restart::Always, ok));
        assert!(restarts_after(Restart::OnFailure, fail));
        assert!(restarts_after(Restart::OnFailure, sig));
        assert!(!restarts_after(Restart::OnFailure, ok));
        assert!(!restarts_after(Restart::Never, fail));
    }
}
