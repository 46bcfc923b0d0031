//! `/events`: this node's recent happenings, one line each.
//!
//! Events are node-local (each node records what it applied and what
//! failed), kept in a bounded ring so a slow reader costs memory only up to
//! the ring's size; a reader that falls behind is told how many it lost.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use core::fmt::Write;

/// How many events are kept for readers that lag.
pub const RING: usize = 1024;

/// Longest text of one event, in bytes: longer is cut (with `…`), so the
/// ring holds at most about [`RING`] × this, whatever names clients send.
pub const MAX_TEXT: usize = 1024;

/// What kind of thing happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An object was created.
    Create,
    /// An object was removed.
    Remove,
    /// A ctl command was applied.
    Ctl,
    /// A `note` written to `/ctl`.
    Note,
    /// A request failed; the text is the error the client got.
    Error,
    /// The node started (or replayed its log).
    Start,
    /// An agent was halted for an operation outside its intent.
    Drift,
    /// The swarm: a join, leave, suspicion, refutation, death, promotion.
    Swarm,
    /// The replicated log: this node sees a new leader.
    Raft,
    /// An agent placed on a node, moved, or waiting for one.
    Place,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Remove => "remove",
            Kind::Ctl => "ctl",
            Kind::Note => "note",
            Kind::Error => "error",
            Kind::Start => "start",
            Kind::Drift => "drift",
            Kind::Swarm => "swarm",
            Kind::Raft => "raft",
            Kind::Place => "place",
        }
    }
}

/// The ring of recent events.
#[derive(Debug, Default)]
pub struct Events {
    /// Sequence number of the oldest line in `ring`.
    first: u64,
    ring: VecDeque<String>,
}

impl Events {
    /// Sequence number the next event will get (readers start here).
    pub fn end(&self) -> u64 {
        self.first + self.ring.len() as u64
    }

    /// Record an event at `unix_ms`.
    pub fn push(&mut self, unix_ms: u64, kind: Kind, text: &str) {
        if self.ring.len() == RING {
            self.ring.pop_front();
            self.first += 1;
        }
        let seq = self.end();
        // Newlines inside the text would split one event into two lines.
        let text = crate::ctl::cut(text, MAX_TEXT).replace('\n', " ");
        self.ring
            .push_back(format!("{seq} {unix_ms} {} {text}\n", kind.word()));
    }

    /// Copy whole lines from `cursor` on into `out`, at most `count` bytes
    /// (but always at least one line, so a small read cannot stall), and
    /// advance the cursor. A reader that fell out of the ring first gets a
    /// `lost` line. Returns false when there is nothing new.
    pub fn read(
        &self,
        cursor: &mut u64,
        count: usize,
        unix_ms: u64,
        out: &mut alloc::vec::Vec<u8>,
    ) -> bool {
        let start = out.len();
        if *cursor < self.first {
            let mut line = String::new();
            let _ = writeln!(line, "{} {unix_ms} lost {}", *cursor, self.first - *cursor);
            out.extend_from_slice(line.as_bytes());
            *cursor = self.first;
        }
        while *cursor < self.end() {
            let line = &self.ring[(*cursor - self.first) as usize];
            if out.len() > start && out.len() - start + line.len() > count {
                break;
            }
            let room = count.saturating_sub(out.len() - start).max(1);
            out.extend_from_slice(&line.as_bytes()[..line.len().min(room)]);
            *cursor += 1;
        }
        out.len() > start
    }

    /// How many events this node has recorded since it started.
    pub fn total(&self) -> u64 {
        self.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn a_long_text_is_cut_so_the_ring_stays_small() {
        let mut ev = Events::default();
        let long = "x".repeat(65_000);
        for _ in 0..RING {
            ev.push(1, Kind::Error, &long);
        }
        let held: usize = ev.ring.iter().map(String::len).sum();
        assert!(held <= RING * (MAX_TEXT + 64), "{held} bytes held");
        let mut cur = 0;
        let mut out = Vec::new();
        ev.read(&mut cur, 1 << 20, 0, &mut out);
        let first = core::str::from_utf8(&out).unwrap().lines().next().unwrap();
        assert!(first.ends_with("x…"), "{}", &first[first.len() - 10..]);
    }

    #[test]
    fn readers_get_whole_lines_in_order_and_block_at_end() {
        let mut ev = Events::default();
        let mut cur = ev.end();
        let mut out = Vec::new();
        assert!(!ev.read(&mut cur, 100, 0, &mut out));
        ev.push(5, Kind::Note, "hello\nworld");
        ev.push(6, Kind::Error, "bad");
        assert!(ev.read(&mut cur, 1000, 0, &mut out));
        assert_eq!(
            core::str::from_utf8(&out).unwrap(),
            "0 5 note hello world\n1 6 error bad\n"
        );
        assert!(!ev.read(&mut cur, 1000, 0, &mut out));
    }

    #[test]
    fn slow_reader_is_told_what_it_lost() {
        let mut ev = Events::default();
        let mut cur = 0;
        for i in 0..(RING as u64 + 10) {
            ev.push(i, Kind::Note, "x");
        }
        let mut out = Vec::new();
        ev.read(&mut cur, 64, 99, &mut out);
        assert!(
            core::str::from_utf8(&out)
                .unwrap()
                .starts_with("0 99 lost 10\n")
        );
    }
}
