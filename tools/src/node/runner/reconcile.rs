//! The runner's loop: make the processes on this host match what the
//! tree wants of the agents placed here, and write back what happens.
//! An agent's output is written back within a budget ([`Budget`]), so
//! one that writes as fast as it can costs the node a few kilobytes a
//! second (see agent(3) OUTPUT).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use cell0_agents::{Event, ExitStatus, State, Supervisor, What};
use cellfs::agent::{Phase, RunSpec, Want};

use super::Notice;
use super::launch::{Confinement, Launcher, sandbox_words};
use super::lease::Gate;
use super::tree::{Found, Tree};

/// Most notices about agents taken in one burst.
const BURST: usize = 256;
/// Threads that read the specs of a burst side by side.
const READERS: usize = 8;
/// How often agents' output is copied to their `log`.
const LOG_EVERY: Duration = Duration::from_millis(200);
/// How often every agent is looked at again, in case an event was
/// missed (events are a bounded ring).
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// Writes queued for the reporter thread before the loop waits for it.
const REPORT_QUEUE: usize = 4096;
/// Longest line of output sent as one `log` line (the node cuts at 4096).
const MAX_LINE: usize = 4096;
/// Bytes of output (a newline each) committed per agent per second, on
/// average: half what the node takes (`cellfs::agent::LOG_RATE`), so
/// the runner's notes always fit.
const LOG_RATE: u64 = 4 * 1024;
/// Bytes of output committed at once after a quiet spell.
const LOG_BURST: u64 = 32 * 1024;
/// At most one note of dropped output per this long.
const NOTE_EVERY: Duration = Duration::from_secs(1);

/// What this runner holds of one agent.
struct Held {
    /// The agent's `starts` when this runner last started it: a new
    /// `start` in the tree starts it again; anything else leaves it to
    /// the supervisor.
    starts: u64,
    /// Its output up to here is in the tree.
    log_at: u64,
    /// Output after the last newline, waiting for the rest of its line.
    partial: Vec<u8>,
    /// What of its output may be committed.
    budget: Budget,
    /// The placement epoch it runs under (in a swarm), which every
    /// report names.
    epoch: Option<u64>,
}

/// A token bucket of bytes of an agent's output to commit: `rate` a
/// second on average, `burst` at most at once. What does not fit is
/// dropped (whole lines) and counted, and the count is said in the
/// log at most once per [`NOTE_EVERY`].
#[derive(Debug)]
struct Budget {
    rate: u64,
    burst: u64,
    /// Bytes that may be committed as of `at`.
    tokens: f64,
    at: Instant,
    /// Bytes dropped since the last note.
    dropped: u64,
    /// When the last note was made.
    noted: Option<Instant>,
}

impl Budget {
    /// A full bucket at `now`.
    fn new(rate: u64, burst: u64, now: Instant) -> Budget {
        Budget {
            rate,
            burst,
            tokens: burst as f64,
            at: now,
            dropped: 0,
            noted: None,
        }
    }

    /// Take `bytes` at `now` if they fit; else count them as dropped.
    fn take(&mut self, bytes: u64, now: Instant) -> bool {
        let quiet = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + quiet * self.rate as f64).min(self.burst as f64);
        self.at = self.at.max(now);
        if bytes as f64 <= self.tokens {
            self.tokens -= bytes as f64;
            true
        } else {
            self.drop_bytes(bytes);
            false
        }
    }

    /// Count `bytes` as dropped (lost before they could be taken).
    fn drop_bytes(&mut self, bytes: u64) {
        self.dropped = self.dropped.saturating_add(bytes);
    }

    /// The bytes dropped since the last note, if any and a note is due
    /// at `now` (or `now` is the last chance: `force`); the count starts
    /// again.
    fn note(&mut self, now: Instant, force: bool) -> Option<u64> {
        let due = self
            .noted
            .is_none_or(|t| now.saturating_duration_since(t) >= NOTE_EVERY);
        if self.dropped == 0 || !(due || force) {
            return None;
        }
        self.noted = Some(now);
        Some(std::mem::take(&mut self.dropped))
    }
}

/// The runner's state.
pub struct Runner {
    /// This runner's name (what `report claim runner=` and `node=` say).
    pub name: String,
    pub(super) tree: Tree,
    pub(super) launcher: Launcher,
    pub(super) sup: Supervisor,
    held: HashMap<String, Held>,
    /// Lines for the reporter thread (see [`Runner::report`]).
    reports: SyncSender<(String, String)>,
    /// The node's lease: placed agents start only under it.
    pub(super) gate: Gate,
    /// Where each agent is placed, as far as this runner has seen (from
    /// `place` events and specs): an event about an agent placed on
    /// another node and not held here needs no read of its spec.
    placed: HashMap<String, Option<u64>>,
}

impl Runner {
    /// A runner named `name` over `tree`, starting processes with
    /// `launcher` under `sup`.
    pub fn new(
        name: String,
        tree: Tree,
        launcher: Launcher,
        sup: Supervisor,
    ) -> std::io::Result<Runner> {
        let (reports, queue) = sync_channel::<(String, String)>(REPORT_QUEUE);
        let writer = tree.clone();
        let label = name.clone();
        std::thread::Builder::new()
            .name("cell0-runner-reports".into())
            .spawn(move || {
                for (agent, lines) in queue {
                    if let Err(e) = writer.ctl(&agent, &lines) {
                        eprintln!("cell0 runner {label}: {e:#}");
                    }
                }
            })?;
        Ok(Runner {
            name,
            tree,
            launcher,
            sup,
            held: HashMap::new(),
            reports,
            gate: Gate::default(),
            placed: HashMap::new(),
        })
    }

    /// Act on messages until the channel closes or says stop.
    pub fn run(mut self, rx: Receiver<Notice>) {
        let mut next_log = Instant::now() + LOG_EVERY;
        let mut next_sync = Instant::now() + RESYNC_EVERY;
        // A notice taken while draining a burst, to act on next.
        let mut held_over: Option<Notice> = None;
        loop {
            let now = Instant::now();
            let wait = next_log.min(next_sync).saturating_duration_since(now);
            let next = match held_over.take() {
                Some(n) => Ok(n),
                None => rx.recv_timeout(wait),
            };
            match next {
                Ok(n @ (Notice::Changed(_) | Notice::Placed(..))) => {
                    // The agents of a burst (a node's agents failing over
                    // here, a batch of starts) are read side by side.
                    let mut names: Vec<String> = Vec::new();
                    self.take_notice(n, &mut names);
                    while names.len() < BURST {
                        match rx.try_recv() {
                            Ok(n @ (Notice::Changed(_) | Notice::Placed(..))) => {
                                self.take_notice(n, &mut names)
                            }
                            Ok(other) => {
                                held_over = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.visit_all(&names);
                }
                Ok(Notice::Resync) => {
                    self.resync(true);
                    next_sync = Instant::now() + RESYNC_EVERY;
                }
                Ok(Notice::Sup(ev)) => self.on_event(ev),
                Ok(Notice::Lease(st)) => {
                    if st.held {
                        // Held again: the agents still placed here run
                        // again (resumed), the others stay elsewhere.
                        self.resync(true);
                    } else {
                        // The watchdog killed them all: they are this
                        // node's no more until the lease is back.
                        self.held.clear();
                    }
                }
                Ok(Notice::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now >= next_log {
                self.copy_logs();
                next_log = now + LOG_EVERY;
            }
            if now >= next_sync {
                self.resync(false);
                next_sync = now + RESYNC_EVERY;
            }
        }
    }

    /// Look at every agent (`all`), or at those that may concern this
    /// runner (the periodic look, in case an event was missed: one about
    /// an agent placed elsewhere was seen, or it would not be known so).
    fn resync(&mut self, all: bool) {
        let names = match self.tree.agents() {
            Ok(n) => n,
            Err(e) => {
                eprintln!("cell0 runner {}: listing /agent: {e:#}", self.name);
                return;
            }
        };
        for name in &names {
            if all || self.concerns(name) {
                self.visit(name);
            }
        }
        let gone: Vec<String> = self
            .held
            .keys()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect();
        for name in gone {
            self.forget(&name);
        }
    }

    /// Whether an event about agent `name` may concern this runner: not
    /// when, in a swarm, it is known to be placed on another node (or on
    /// none) and this runner does not hold it.
    fn concerns(&self, name: &str) -> bool {
        let Some(me) = self.gate.lock().me else {
            return true;
        };
        match self.placed.get(name) {
            Some(&node) => node == Some(me) || self.held.contains_key(name),
            None => true,
        }
    }

    /// Note what a `Changed` or `Placed` notice says, and add its agent
    /// to `names` if it may concern this runner.
    fn take_notice(&mut self, n: Notice, names: &mut Vec<String>) {
        let name = match n {
            Notice::Changed(name) => name,
            Notice::Placed(name, node) => {
                self.placed.insert(name.clone(), node);
                name
            }
            _ => return,
        };
        if self.concerns(&name) && !names.contains(&name) {
            names.push(name);
        }
    }

    /// [`Runner::visit`] each of `names`, their specs read by a few
    /// threads at once (each read is a round trip to the log's leader
    /// on a node that does not lead).
    fn visit_all(&mut self, names: &[String]) {
        if names.len() <= 1 {
            for n in names {
                self.visit(n);
            }
            return;
        }
        let tree = &self.tree;
        let found: Vec<(String, anyhow::Result<Found>)> = std::thread::scope(|s| {
            let readers: Vec<_> = names
                .chunks(names.len().div_ceil(READERS))
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|n| (n.clone(), tree.spec(n)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            readers
                .into_iter()
                .flat_map(|r| r.join().unwrap_or_default())
                .collect()
        });
        for (name, f) in found {
            self.act(&name, f);
        }
    }

    /// Agent `name` may have changed: read what the tree wants of it and
    /// act.
    fn visit(&mut self, name: &str) {
        let found = self.tree.spec(name);
        self.act(name, found);
    }

    /// Act on what reading agent `name`'s spec found.
    fn act(&mut self, name: &str, found: anyhow::Result<Found>) {
        match found {
            Ok(Found::Spec(text)) => match RunSpec::parse(&text) {
                Ok(spec) => {
                    self.placed.insert(name.to_string(), spec.placed);
                    self.reconcile(name, &spec)
                }
                Err(e) => eprintln!("cell0 runner {}: /agent/{name}/spec: {e}", self.name),
            },
            Ok(Found::Gone) => self.forget(name),
            Err(e) => eprintln!("cell0 runner {}: {e:#}", self.name),
        }
    }

    /// Agent `name` is gone from the tree, or from this node: end its
    /// processes.
    fn forget(&mut self, name: &str) {
        if self.held.remove(name).is_some() {
            let _ = self.sup.kill(name);
        }
    }

    /// Queue `lines` for agent `name`'s ctl: the reporter thread writes
    /// them in order, so this loop never waits for a commit (a claim,
    /// which decides what happens next, is written here and waited for).
    fn report(&self, name: &str, lines: &str) {
        // In a swarm, every report names the placement it is for: the
        // node refuses it if the agent was placed again since.
        let lines = match self.held.get(name).and_then(|h| h.epoch) {
            Some(e) => format!("epoch {e}\n{lines}"),
            None => lines.to_string(),
        };
        // Blocks only while the queue is full: the node is that far
        // behind, and the runner waits for it.
        let _ = self.reports.send((name.to_string(), lines));
    }

    /// The same as [`Runner::report`], for an agent this runner does not
    /// hold, under `epoch` when it is placed.
    fn report_as(&self, name: &str, epoch: Option<u64>, lines: &str) {
        let lines = match epoch {
            Some(e) => format!("epoch {e}\n{lines}"),
            None => lines.to_string(),
        };
        let _ = self.reports.send((name.to_string(), lines));
    }

    fn reconcile(&mut self, name: &str, spec: &RunSpec) {
        let standing = *self.gate.lock();
        if !standing.known {
            // The first reading of the lease resyncs.
            return;
        }
        let epoch = spec.placed.map(|_| spec.epoch);
        if let Some(me) = standing.me {
            // In a swarm: only what is placed on this node is its.
            if spec.placed != Some(me) {
                self.forget(name);
                return;
            }
            if spec.leave && spec.want == Want::Running {
                // Drained or asked to move: stop it, and say so (which
                // lets it be placed elsewhere).
                match self.held.get(name) {
                    Some(_) => {
                        if let Err(e) = self.sup.stop(name) {
                            eprintln!("cell0 runner {}: stopping {name}: {e}", self.name);
                        }
                    }
                    None if spec.runner.is_some() || spec.phase == Phase::Running => {
                        self.report_as(name, epoch, "report stopped\n");
                    }
                    None => {}
                }
                return;
            }
            if !standing.held && spec.want == Want::Running {
                // No lease: nothing starts until it is back.
                return;
            }
        } else if spec.placed.is_some() {
            // Placed by a swarm this runner's node is not in (yet).
            return;
        }
        let mine = spec.runner.as_deref() == Some(self.name.as_str());
        let other = spec.runner.is_some() && !mine;
        if other {
            // Another runner took it (after this one let it go).
            self.forget(name);
            return;
        }
        let held = self.held.get(name);
        let wanted = spec.want == Want::Running;
        if !wanted {
            if held.is_some() {
                // Drift halts at once; stop gives the grace period.
                let r = if spec.want == Want::Killed || spec.phase == Phase::HaltedDrift {
                    self.sup.kill(name)
                } else {
                    self.sup.stop(name)
                };
                if let Err(e) = r {
                    eprintln!("cell0 runner {}: stopping {name}: {e}", self.name);
                }
            } else if mine && spec.phase != Phase::Stopped {
                // Asked to stop while this runner was away: its process
                // went with it; say so, which lets the claim go.
                self.report_as(name, epoch, "report stopped\n");
            }
            return;
        }
        if held.is_some_and(|h| h.starts == spec.starts) {
            // Started for this `start` already: restarts, crash loops and
            // exits are the supervisor's.
            return;
        }
        // Running, or exited and to be restarted (a final exit lets the
        // claim go), under this runner's name but not held: lost with a
        // previous run of this runner, or of its node.
        let resumable = mine && matches!(spec.phase, Phase::Running | Phase::Exited);
        if !(spec.phase == Phase::Pending || resumable) {
            return;
        }
        let lost = held.is_none() && resumable;
        if !mine {
            let claim = format!("report claim runner={}\n", self.name);
            if epoch.is_some() {
                // In a swarm the placement decides whose it is, and the
                // lease keeps two from running it: the claim goes with
                // the reports that follow, not before the start. (If the
                // agent was placed again meanwhile, it is refused, and
                // the place event ends this run.)
                self.report_as(name, epoch, &claim);
            } else if self.tree.ctl(name, &claim).is_err() {
                // Another runner claimed it first.
                return;
            }
        }
        if lost {
            self.report_as(name, epoch, "report resumed\n");
        }
        match self.launcher.spec(name, spec) {
            Ok(s) => {
                // Under the gate: a lease lost since the check above
                // stops this start, or the kill that follows it ends it.
                let gate = self.gate.clone();
                let standing = gate.lock();
                if epoch.is_some() && !standing.held {
                    return;
                }
                if let Err(e) = self.sup.start(name, s) {
                    drop(standing);
                    self.report_as(
                        name,
                        epoch,
                        &format!("report failed {}\n", one_line(&e.to_string())),
                    );
                    return;
                }
            }
            Err(why) => {
                self.report_as(name, epoch, &format!("report failed {}\n", one_line(&why)));
                return;
            }
        }
        let log_at = self
            .sup
            .read_log(name, u64::MAX)
            .map_or(0, |chunk| chunk.next);
        self.held.insert(
            name.to_string(),
            Held {
                starts: spec.starts,
                log_at,
                partial: Vec::new(),
                budget: Budget::new(LOG_RATE, LOG_BURST, Instant::now()),
                epoch,
            },
        );
    }

    /// What protects agent `name`'s run, as `report running sandbox=`
    /// words (see agent(3)).
    fn sandbox_words(&self, name: &str) -> String {
        match &self.launcher.confinement {
            Confinement::Sandboxed => self
                .sup
                .status(name)
                .and_then(|s| s.isolation)
                .map_or_else(|| "unknown".to_string(), |iso| sandbox_words(&iso)),
            Confinement::Unconfined(_) | Confinement::Refused(_) => "unconfined".to_string(),
        }
    }

    /// Write what the supervisor says happened to an agent to its ctl.
    fn on_event(&mut self, ev: Event) {
        let name = ev.agent.as_str();
        if !self.held.contains_key(name) {
            return;
        }
        let standing = *self.gate.lock();
        if standing.me.is_some() && !standing.held {
            // Killed for a lost lease: nothing to say (the agent runs
            // again here when the lease is back, or elsewhere).
            return;
        }
        if matches!(ev.what, What::Exit(_)) {
            // Output first, so the log holds what led to the exit.
            self.copy_log(name, true);
        }
        let line = match ev.what {
            What::State(State::Running { pid }) => {
                let sandbox = self.sandbox_words(name);
                format!(
                    "report running pid={pid} node={} sandbox={sandbox}\n",
                    self.name
                )
            }
            What::State(State::Crashloop) => "report crashloop\n".to_string(),
            What::State(State::Failed(e)) => {
                format!("report failed {}\n", one_line(&e.to_string()))
            }
            What::State(State::Stopped) => "report stopped\n".to_string(),
            What::Exit(exit) if !exit.asked => {
                let how = match exit.status {
                    ExitStatus::Code(c) => format!("code={c}"),
                    ExitStatus::Signal(s) => {
                        format!("signal={}", cell0_agents::signal_name(s))
                    }
                    // Reaped by someone else: how it ended is not known.
                    ExitStatus::Unknown => "signal=unknown".to_string(),
                };
                let mut lines = format!(
                    "report exit {how} restarting={}\n",
                    if exit.restarting { "yes" } else { "no" }
                );
                for l in &exit.stderr {
                    let _ = writeln!(lines, "stderr {}", one_line(l));
                }
                if !exit.restarting {
                    // Done until the next start, which any runner may take.
                    lines.push_str("report release\n");
                }
                lines
            }
            _ => return,
        };
        self.report(name, &line);
    }

    /// Copy every held agent's new output to its `log`.
    fn copy_logs(&mut self) {
        let names: Vec<String> = self.held.keys().cloned().collect();
        for name in names {
            self.copy_log(&name, false);
        }
    }

    /// Copy agent `name`'s new output to its `log`, within its budget;
    /// with `last` (its process ended), say now what was dropped.
    fn copy_log(&mut self, name: &str, last: bool) {
        let Some(h) = self.held.get_mut(name) else {
            return;
        };
        let Some(chunk) = self.sup.read_log(name, h.log_at) else {
            return;
        };
        let now = Instant::now();
        h.log_at = chunk.next;
        if chunk.skipped > 0 {
            // Lost from the supervisor's buffer before it was read: the
            // line it was in is cut, so its start goes too.
            h.budget.drop_bytes(chunk.skipped + h.partial.len() as u64);
            h.partial.clear();
        }
        h.partial.extend_from_slice(&chunk.data);
        let mut lines = String::new();
        let mut start = 0;
        while let Some(nl) = h.partial[start..].iter().position(|&b| b == b'\n') {
            push_log(
                &mut lines,
                &mut h.budget,
                &h.partial[start..start + nl],
                now,
            );
            start += nl + 1;
        }
        h.partial.drain(..start);
        if h.partial.len() > MAX_LINE {
            push_log(&mut lines, &mut h.budget, &h.partial, now);
            h.partial.clear();
        }
        if let Some(n) = h.budget.note(now, last) {
            let _ = writeln!(
                lines,
                "log [cell0: {n} bytes of output dropped: over {} KiB/s]",
                LOG_RATE / 1024
            );
        }
        if !lines.is_empty() {
            self.report(name, &lines);
        }
    }
}

/// Append `log TEXT` for one line of output (cut to [`MAX_LINE`]) if
/// `budget` has room for it at `now`; else it is counted as dropped.
fn push_log(lines: &mut String, budget: &mut Budget, line: &[u8], now: Instant) {
    let text = String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]);
    let text = one_line(text.trim_end_matches('\r'));
    // What the node commits: the text (a byte that is not UTF-8 is
    // three as U+FFFD) and its newline.
    if budget.take(text.len() as u64 + 1, now) {
        lines.push_str("log ");
        lines.push_str(&text);
        lines.push('\n');
    }
}

/// `text` on one line (a newline would start another ctl line).
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_budget_takes_its_burst_then_its_rate_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut b = Budget::new(1000, 4000, t0);
        assert!(b.take(4000, t0));
        assert!(!b.take(1, t0));
        assert!(!b.take(499, t0));
        // Half a second: 500 bytes more, no more.
        let t1 = t0 + ms(500);
        assert!(!b.take(501, t1));
        assert!(b.take(500, t1));
        assert_eq!(b.note(t1, false), Some(1001));
        // Counted afresh; the next note waits a second, unless forced.
        assert!(!b.take(10, t1));
        assert_eq!(b.note(t1 + ms(500), false), None);
        assert_eq!(b.note(t1 + ms(999), true), Some(10));
        assert_eq!(b.note(t1 + ms(5000), true), None, "nothing dropped");
        // A long quiet spell fills no more than the burst.
        let t2 = t1 + Duration::from_secs(3600);
        assert!(b.take(4000, t2));
        assert!(!b.take(1, t2));
        // A clock that goes back gives nothing.
        assert!(!b.take(1, t0));
    }

    #[test]
    fn a_flood_commits_its_rate_and_one_note_a_second() {
        let t0 = Instant::now();
        let mut b = Budget::new(LOG_RATE, LOG_BURST, t0);
        let line = vec![b'x'; 999];
        let (mut committed, mut notes, mut noted) = (0u64, 0, 0u64);
        // A minute of 100 lines of 1000 bytes every 200 ms (500 kB/s).
        for tick in 1..=300u64 {
            let now = t0 + ms(200 * tick);
            let mut lines = String::new();
            for _ in 0..100 {
                push_log(&mut lines, &mut b, &line, now);
            }
            committed += lines.len() as u64;
            if let Some(n) = b.note(now, false) {
                notes += 1;
                noted += n;
            }
        }
        let texts = committed / 1004;
        assert!(
            texts * 1000 <= LOG_BURST + 60 * LOG_RATE,
            "{texts} lines committed"
        );
        assert!(texts * 1000 + 1000 > LOG_BURST + 59 * LOG_RATE, "{texts}");
        assert!((59..=60).contains(&notes), "{notes} notes");
        // Every byte offered was committed or said to be dropped.
        let pending = b.note(t0 + ms(60_200), true).unwrap_or(0);
        assert_eq!(texts * 1000 + noted + pending, 300 * 100 * 1000);
    }

    #[test]
    fn lines_are_cut_at_4096_and_kept_whole_or_not_at_all() {
        let now = Instant::now();
        let mut b = Budget::new(1, 4097 + 10, now);
        let mut lines = String::new();
        push_log(&mut lines, &mut b, &[b'y'; 5000], now);
        assert_eq!(lines.len(), 4 + 4096 + 1);
        assert!(lines.starts_with("log yyy") && lines.ends_with("y\n"));
        // 10 bytes left: a line of 10 (11 with its newline) is dropped.
        push_log(&mut lines, &mut b, b"0123456789", now);
        // A carriage return goes: 9 bytes and a newline fit.
        push_log(&mut lines, &mut b, b"012345678\r", now);
        assert!(
            lines.ends_with("y\nlog 012345678\n"),
            "{:?}",
            &lines[4090..]
        );
        assert_eq!(b.note(now, true), Some(11));
        // What is not UTF-8 costs what it is sent as.
        let mut b = Budget::new(1, 6, now);
        push_log(&mut lines, &mut b, &[0xff, 0xfe], now);
        assert_eq!(b.note(now, true), Some(7), "two U+FFFD and a newline");
    }
}
