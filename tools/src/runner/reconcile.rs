//! The runner's loop: make the processes on this host match what the
//! tree wants of the agents placed here, and write back what happens.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use cell0_agents::{Event, ExitStatus, State, Supervisor, What};
use cellfs::agent::{Phase, RunSpec, Want};

use super::Msg;
use super::launch::Launcher;
use super::tree::{Found, Tree};

/// How often agents' output is copied to their `log`.
const LOG_EVERY: Duration = Duration::from_millis(200);
/// How often every agent is looked at again, in case an event was
/// missed (events are a bounded ring).
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// Writes queued for the reporter thread before the loop waits for it.
const REPORT_QUEUE: usize = 4096;
/// Longest line of output sent as one `log` line (the node cuts at 4096).
const MAX_LINE: usize = 4096;

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
        })
    }

    /// Act on messages until the channel closes or says stop.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut next_log = Instant::now() + LOG_EVERY;
        let mut next_sync = Instant::now() + RESYNC_EVERY;
        loop {
            let now = Instant::now();
            let wait = next_log.min(next_sync).saturating_duration_since(now);
            match rx.recv_timeout(wait) {
                Ok(Msg::Changed(name)) => self.visit(&name),
                Ok(Msg::Resync) => {
                    self.resync();
                    next_sync = Instant::now() + RESYNC_EVERY;
                }
                Ok(Msg::Sup(ev)) => self.on_event(ev),
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now >= next_log {
                self.copy_logs();
                next_log = now + LOG_EVERY;
            }
            if now >= next_sync {
                self.resync();
                next_sync = now + RESYNC_EVERY;
            }
        }
    }

    /// Look at every agent.
    fn resync(&mut self) {
        let names = match self.tree.agents() {
            Ok(n) => n,
            Err(e) => {
                eprintln!("cell0 runner {}: listing /agent: {e:#}", self.name);
                return;
            }
        };
        for name in &names {
            self.visit(name);
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

    /// Agent `name` may have changed: read what the tree wants of it and
    /// act.
    fn visit(&mut self, name: &str) {
        match self.tree.spec(name) {
            Ok(Found::Spec(text)) => match RunSpec::parse(&text) {
                Ok(spec) => self.reconcile(name, &spec),
                Err(e) => eprintln!("cell0 runner {}: /agent/{name}/spec: {e}", self.name),
            },
            Ok(Found::Gone) => self.forget(name),
            Err(e) => eprintln!("cell0 runner {}: {e:#}", self.name),
        }
    }

    /// Agent `name` is gone from the tree: end its processes.
    fn forget(&mut self, name: &str) {
        if self.held.remove(name).is_some() {
            let _ = self.sup.kill(name);
        }
    }

    /// Queue `lines` for agent `name`'s ctl: the reporter thread writes
    /// them in order, so this loop never waits for a commit (a claim,
    /// which decides what happens next, is written here and waited for).
    fn report(&self, name: &str, lines: &str) {
        // Blocks only while the queue is full: the node is that far
        // behind, and the runner waits for it.
        let _ = self.reports.send((name.to_string(), lines.to_string()));
    }

    fn reconcile(&mut self, name: &str, spec: &RunSpec) {
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
                self.report(name, "report stopped\n");
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
            if self.tree.ctl(name, &claim).is_err() {
                // Another runner claimed it first.
                return;
            }
        }
        if lost {
            self.report(name, "report resumed\n");
        }
        match self.launcher.spec(name, spec) {
            Ok(s) => {
                if let Err(e) = self.sup.start(name, s) {
                    self.report(
                        name,
                        &format!("report failed {}\n", one_line(&e.to_string())),
                    );
                    return;
                }
            }
            Err(why) => {
                self.report(name, &format!("report failed {}\n", one_line(&why)));
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
            },
        );
    }

    /// Write what the supervisor says happened to an agent to its ctl.
    fn on_event(&mut self, ev: Event) {
        let name = ev.agent.as_str();
        if !self.held.contains_key(name) {
            return;
        }
        if matches!(ev.what, What::Exit(_)) {
            // Output first, so the log holds what led to the exit.
            self.copy_log(name);
        }
        let line = match ev.what {
            What::State(State::Running { pid }) => {
                format!("report running pid={pid} node={}\n", self.name)
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
            self.copy_log(&name);
        }
    }

    fn copy_log(&mut self, name: &str) {
        let Some(h) = self.held.get_mut(name) else {
            return;
        };
        let Some(chunk) = self.sup.read_log(name, h.log_at) else {
            return;
        };
        if chunk.data.is_empty() {
            return;
        }
        h.log_at = chunk.next;
        h.partial.extend_from_slice(&chunk.data);
        let mut lines = String::new();
        let mut start = 0;
        while let Some(nl) = h.partial[start..].iter().position(|&b| b == b'\n') {
            push_log(&mut lines, &h.partial[start..start + nl]);
            start += nl + 1;
        }
        h.partial.drain(..start);
        if h.partial.len() > MAX_LINE {
            push_log(&mut lines, &h.partial);
            h.partial.clear();
        }
        if !lines.is_empty() {
            self.report(name, &lines);
        }
    }
}

/// Append `log TEXT` for one line of output.
fn push_log(lines: &mut String, line: &[u8]) {
    let text = String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]);
    lines.push_str("log ");
    lines.push_str(&one_line(text.trim_end_matches('\r')));
    lines.push('\n');
}

/// `text` on one line (a newline would start another ctl line).
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}
