//! The node the server and ctl targets drive: a clock the harness moves,
//! a log that commits at once, late, or not at all, the configuration,
//! and capability tokens for nodes that check them.

use std::cell::Cell;
use std::rc::Rc;

use cellfs::cap::NodeKey;
use cellfs::state::State;
use cellfs::{Clock, Commit, Config, Entry, Index, Log, LogError, ProposalId, ReadGate, Snapshot};
use ninep::{Body, Msg};

use super::engine::Rng;

/// A clock the harness moves; clones share it.
#[derive(Clone, Default)]
pub struct FuzzClock(pub Rc<Cell<u64>>);

impl Clock for FuzzClock {
    fn unix_nanos(&self) -> u64 {
        EPOCH * 1_000_000_000 + self.0.get()
    }
    fn monotonic_nanos(&self) -> u64 {
        self.0.get()
    }
}

/// A log that commits at once or when released, sometimes fails a
/// proposal, gates some reads, asks for snapshots, and keeps what it
/// committed (from the last snapshot on) for a replay.
pub struct FuzzLog {
    rng: Rng,
    /// Proposals are held until released.
    pub hold: bool,
    /// Some proposals fail and some reads wait for the log.
    pub chaos: bool,
    next_index: Index,
    next_id: ProposalId,
    pending: Vec<Commit>,
    /// Entries reported since the last snapshot.
    entries: Vec<Entry>,
    /// The last snapshot the server gave.
    snapshot: Option<Snapshot>,
    /// Replay mode: report these once, then behave as usual.
    replay: Vec<Commit>,
}

impl FuzzLog {
    /// A log whose chance events draw from `rng`.
    pub fn new(rng: Rng) -> FuzzLog {
        FuzzLog {
            rng,
            hold: false,
            chaos: true,
            next_index: 0,
            next_id: 0,
            pending: Vec::new(),
            entries: Vec::new(),
            snapshot: None,
            replay: Vec::new(),
        }
    }

    /// What a restart would report: the last snapshot, then each entry.
    pub fn replayed(&self) -> FuzzLog {
        let mut log = FuzzLog::new(Rng::new(0, 0));
        log.replay
            .extend(self.snapshot.clone().map(Commit::Snapshot));
        log.replay
            .extend(self.entries.iter().map(|e| Commit::Entry {
                entry: e.clone(),
                proposal: None,
            }));
        log
    }
}

impl Log for FuzzLog {
    fn propose(&mut self, data: Vec<u8>) -> Result<ProposalId, LogError> {
        self.next_id += 1;
        let proposal = self.next_id;
        match if self.chaos { self.rng.below(64) } else { 64 } {
            0 => return Err(LogError::Full),
            1 => {
                self.pending.push(Commit::Done {
                    proposal,
                    result: Err(LogError::NoLeader),
                });
                return Ok(proposal);
            }
            _ => {}
        }
        self.next_index += 1;
        self.pending.push(Commit::Entry {
            entry: Entry {
                index: self.next_index,
                term: 1,
                origin: 0,
                data,
            },
            proposal: Some(proposal),
        });
        Ok(proposal)
    }

    fn change(&mut self, _: cellfs::Change) -> Result<ProposalId, LogError> {
        self.next_id += 1;
        let result = if self.chaos && self.rng.one_in(4) {
            Err(LogError::Refused(String::from("not now")))
        } else {
            Ok(())
        };
        self.pending.push(Commit::Done {
            proposal: self.next_id,
            result,
        });
        Ok(self.next_id)
    }

    fn read(&mut self) -> Result<ReadGate, LogError> {
        if self.chaos && self.rng.one_in(8) {
            self.next_id += 1;
            self.pending.push(Commit::Done {
                proposal: self.next_id,
                result: Ok(()),
            });
            return Ok(ReadGate::Wait(self.next_id));
        }
        Ok(ReadGate::Now)
    }

    fn take_committed(&mut self, out: &mut Vec<Commit>) {
        out.append(&mut self.replay);
        if self.hold {
            return;
        }
        for c in &self.pending {
            if let Commit::Entry { entry, .. } = c {
                self.entries.push(entry.clone());
            }
        }
        out.append(&mut self.pending);
    }

    fn wants_snapshot(&self) -> bool {
        // Once in a while, when something happened since the last.
        self.entries.len() > 5 && self.entries.len() % 7 == 3
    }

    fn save_snapshot(&mut self, snapshot: Snapshot) {
        let state = State::decode(&snapshot.data).expect("a snapshot the server took decodes");
        assert_eq!(
            state.encode(),
            snapshot.data,
            "a snapshot re-encodes the same"
        );
        self.entries.retain(|e| e.index > snapshot.index);
        self.snapshot = Some(snapshot);
    }
}

/// A node that lets hostile input reach every request handler.
pub fn config() -> Config {
    Config {
        insecure: true,
        max_msize: 64 * 1024,
        ..Config::new("fuzz", NodeKey::from_seed(&[7; 32]))
    }
}

/// The node's clock at 0, in Unix seconds (see [`FuzzClock`]).
pub const EPOCH: u64 = 1_800_000_000;

/// Attach names for a node that checks capabilities: the owner's token,
/// a narrower one minted by the node, one attenuated offline, one that
/// expires within the hour, and one long expired.
pub fn token_anames() -> &'static [String] {
    static ANAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ANAMES.get_or_init(|| {
        let key = config().key;
        let claims = |id, scope: &str, rights: &str, expires| cellfs::cap::Claims {
            id,
            holder: String::from("fuzz"),
            scope: String::from(scope),
            rights: cellfs::cap::Rights::parse(rights).unwrap(),
            not_before: EPOCH - 10,
            expires,
        };
        let owner = key
            .mint(claims(0, "/", "rwcda", EPOCH + 10 * 365 * 86_400))
            .unwrap();
        let chan = key.mint(claims(7, "/chan", "rwc", EPOCH + 3600)).unwrap();
        let narrow = owner
            .attenuate(
                "fuzz",
                "/chan/x",
                cellfs::cap::Rights::parse("r").unwrap(),
                EPOCH,
                EPOCH + 7200,
            )
            .unwrap();
        let old = key.mint(claims(9, "/", "r", EPOCH - 5)).unwrap();
        let mut v = Vec::new();
        for t in [owner, chan, narrow, old] {
            v.push(format!("token={}", t.to_text()));
            v.push(format!("/cap token={}", t.to_text()));
        }
        v
    })
}

/// Encode one message.
pub fn frame(tag: u16, body: Body<'_>) -> Vec<u8> {
    let mut f = Vec::new();
    ninep::encode(&Msg { tag, body }, &mut f).expect("the harness builds valid messages");
    f
}
