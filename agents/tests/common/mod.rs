//! Helpers shared by the supervisor's tests: waiting for events, unique
//! markers, and looking for processes in /proc.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::fs;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use cell0_agents::{Event, Spec, State, What};

/// The events of one supervisor. Each agent's events are taken in order;
/// another agent's wait for them leaves them for later. Everything seen
/// is kept for failure messages.
pub struct Watch {
    rx: Receiver<Event>,
    /// Received and not yet taken.
    pending: VecDeque<(Instant, Event)>,
    pub seen: Vec<(Instant, Event)>,
}

impl Watch {
    pub fn new(rx: Receiver<Event>) -> Watch {
        Watch {
            rx,
            pending: VecDeque::new(),
            seen: Vec::new(),
        }
    }

    /// Take the first pending event of `agent` that `pred` accepts, with
    /// the events of `agent` before it.
    fn take(&mut self, agent: &str, pred: &impl Fn(&What) -> bool) -> Option<(Instant, What)> {
        let at = self
            .pending
            .iter()
            .position(|(_, e)| e.agent == agent && pred(&e.what))?;
        let found = self.pending.remove(at)?;
        let mut i = 0;
        self.pending.retain(|(_, e)| {
            i += 1;
            i > at || e.agent != agent
        });
        Some((found.0, found.1.what))
    }

    /// The next event of `agent` that `pred` accepts, within `timeout`;
    /// fails the test with every event seen otherwise.
    pub fn until(
        &mut self,
        agent: &str,
        timeout: Duration,
        pred: impl Fn(&What) -> bool,
    ) -> (Instant, What) {
        let end = Instant::now() + timeout;
        loop {
            if let Some(found) = self.take(agent, &pred) {
                return found;
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) => {
                    let now = Instant::now();
                    self.seen.push((now, e.clone()));
                    self.pending.push_back((now, e));
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "agent {agent}: no awaited event within {timeout:?}; seen: {:#?}",
                        self.seen.iter().map(|(_, e)| e).collect::<Vec<_>>()
                    )
                }
            }
        }
    }

    /// Wait for `agent` to enter the state named `word`.
    pub fn state(&mut self, agent: &str, word: &str, timeout: Duration) -> (Instant, State) {
        match self.until(
            agent,
            timeout,
            |w| matches!(w, What::State(s) if s.word() == word),
        ) {
            (t, What::State(s)) => (t, s),
            _ => unreachable!(),
        }
    }

    /// Every event of `agent` not yet taken or arriving within `d`.
    pub fn for_a_while(&mut self, agent: &str, d: Duration) -> Vec<What> {
        let end = Instant::now() + d;
        while let Ok(e) = self
            .rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            self.seen.push((Instant::now(), e.clone()));
            self.pending.push_back((Instant::now(), e));
        }
        let mut got = Vec::new();
        self.pending.retain(|(_, e)| {
            if e.agent == agent {
                got.push(e.what.clone());
                false
            } else {
                true
            }
        });
        got
    }
}

/// A marker no other process has in its command line: a sleep duration
/// (`1000.PPPPPPNNNN`), so the `sleep` processes of a script carry it.
pub fn marker() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "1000.{:07}{:04}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The processes whose command line holds `marker`.
pub fn procs_with(marker: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmd) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(marker) {
            found.push((pid, cmd));
        }
    }
    found
}

/// Wait until `n` processes carry `marker` (the script's background
/// children have started).
pub fn wait_procs(marker: &str, n: usize, timeout: Duration) {
    let end = Instant::now() + timeout;
    while procs_with(marker).len() < n {
        assert!(
            Instant::now() < end,
            "only {:?} carry {marker} after {timeout:?}",
            procs_with(marker)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether every process carrying `marker` is gone within `timeout`.
pub fn gone(marker: &str, timeout: Duration) -> Result<(), Vec<(u32, String)>> {
    let end = Instant::now() + timeout;
    loop {
        let left = procs_with(marker);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(left);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kill, by pid, whatever carries `marker` (cleanup after a failed or
/// a fallback test; never by name).
pub fn kill_leftovers(marker: &str) {
    for (pid, _) in procs_with(marker) {
        // SAFETY: kill takes integers; these pids carry our marker.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

/// A spec running `script` with /bin/sh; `$1` is `arg`.
pub fn sh(script: &str, arg: &str) -> Spec {
    Spec::new("/bin/sh").args(["-c", script, "agent", arg])
}

pub const SHORT: Duration = Duration::from_secs(5);
