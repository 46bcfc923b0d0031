//! A log for tests that drive a `Server` directly: it commits every
//! proposal at once, keeps every command's bytes (to replay them, as a
//! restart would), and lets a test queue commits of its own; and a
//! forger of capability links, for the capability tests.

#![allow(dead_code)] // Each test file uses a different part.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use cellfs::cap::token::{Link, link_id, link_message};
use cellfs::cap::{Claims, Token};
use cellfs::{Clock, Commit, Entry, Index, Log, LogError, ProposalId, Term};
use ed25519_dalek::{Signer, SigningKey};

/// A clock the test moves (Unix seconds; monotonic time is the same).
#[derive(Clone)]
pub struct TestClock(pub Rc<Cell<u64>>);

impl Clock for TestClock {
    fn unix_nanos(&self) -> u64 {
        self.0.get() * 1_000_000_000
    }
    fn monotonic_nanos(&self) -> u64 {
        self.0.get() * 1_000_000_000
    }
}

#[derive(Default)]
struct Disk {
    term: Term,
    /// Every proposal's bytes, in order.
    entries: Vec<Vec<u8>>,
    /// Commits not yet taken by the server.
    ready: Vec<Commit>,
}

/// The log; clones share it, so a test keeps a handle on the server's.
#[derive(Clone)]
pub struct TestLog(Rc<RefCell<Disk>>);

impl Default for TestLog {
    fn default() -> TestLog {
        TestLog::with_term(1)
    }
}

impl TestLog {
    /// A log whose entries all carry `term`.
    pub fn with_term(term: Term) -> TestLog {
        TestLog(Rc::new(RefCell::new(Disk {
            term,
            ..Disk::default()
        })))
    }

    /// A log holding what this one holds, reported again as a restart
    /// replays it (nobody's proposals).
    pub fn reopened(&self) -> TestLog {
        let d = self.0.borrow();
        let ready = d
            .entries
            .iter()
            .enumerate()
            .map(|(i, data)| Commit::Entry {
                entry: Entry {
                    index: i as Index + 1,
                    term: d.term,
                    origin: 0,
                    data: data.clone(),
                },
                proposal: None,
            })
            .collect();
        TestLog(Rc::new(RefCell::new(Disk {
            term: d.term,
            entries: d.entries.clone(),
            ready,
        })))
    }

    /// Every proposal's bytes so far.
    pub fn entries(&self) -> Vec<Vec<u8>> {
        self.0.borrow().entries.clone()
    }

    /// Hand the server `commit` at its next poll.
    pub fn push(&self, commit: Commit) {
        self.0.borrow_mut().ready.push(commit);
    }
}

impl Log for TestLog {
    fn propose(&mut self, data: Vec<u8>) -> Result<ProposalId, LogError> {
        let mut d = self.0.borrow_mut();
        d.entries.push(data.clone());
        let index = d.entries.len() as Index;
        let term = d.term;
        d.ready.push(Commit::Entry {
            entry: Entry {
                index,
                term,
                origin: 0,
                data,
            },
            proposal: Some(index),
        });
        Ok(index)
    }

    fn take_committed(&mut self, out: &mut Vec<Commit>) {
        out.append(&mut self.0.borrow_mut().ready);
    }
}

/// A link signed with `parent`'s proof and carrying whatever `claims`
/// say, as a dishonest holder can make one offline (cap(3) TOKEN
/// FORMAT); with `honest_id`, its id is the one derived from it, so only
/// what else is wrong with it is refused.
pub fn forge(parent: &Token, claims: Claims, honest_id: bool) -> Token {
    let secret = [0x33; 32];
    let next_key = SigningKey::from_bytes(&secret).verifying_key().to_bytes();
    let sig = &parent.links.last().unwrap().signature;
    let chained_to: Vec<u8> = sig[0].iter().chain(&sig[1]).copied().collect();
    let mut claims = claims;
    if honest_id {
        claims.id = link_id(&chained_to, &claims, &next_key);
    }
    let s = SigningKey::from_bytes(&parent.proof)
        .sign(&link_message(&chained_to, &claims, &next_key))
        .to_bytes();
    let mut halves = [[0u8; 32]; 2];
    halves[0].copy_from_slice(&s[..32]);
    halves[1].copy_from_slice(&s[32..]);
    let mut links = parent.links.clone();
    links.push(Link {
        claims,
        next_key,
        signature: halves,
    });
    Token {
        issuer: parent.issuer,
        links,
        proof: secret,
    }
}
