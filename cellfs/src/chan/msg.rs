//! Signed messages: the stamp a node puts on every message written to a
//! channel, and the `msgs` line that shows it.
//!
//! The node that accepts a write stamps it (who sent it, under which
//! capability and intent, when, into which channel) and signs stamp and
//! payload with its ed25519 key before proposing it, so every replica
//! stores the same bytes and any reader anywhere can check them later.
//! The stamp carries the sender's own sequence number in the channel
//! through the node that accepted it (`nth`: 1 for the first, then one
//! more each time; see [`super::nth`]), so a reader can tell that none of
//! a sender's messages was dropped, repeated or reordered on the way. The channel's position (`seq`) is given when the
//! log orders the message, after signing; it is shown beside the stamp,
//! and the proof chain over the log vouches for it.
//!
//! A signature costs far more than the rest of a write, so the node signs
//! the messages it accepted in one turn together: each message's hash is
//! a leaf of a Merkle tree, the node signs the root, and each message
//! keeps its leaf's position and the sibling hashes up to the root (none
//! for a batch of one). Checking one message needs only itself.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

use crate::cap::token::verify_signature;
use crate::cap::{NodeKey, PublicKey};
use crate::hex;
use crate::proof::chain::parse_decimal;

/// What the signature covers besides the payload: the sender, as the node
/// that accepted the message saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The channel it was first written to (kept when a connection
    /// forwards it elsewhere).
    pub chan: String,
    /// When the node accepted it, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The holder named by the writer's capability.
    pub sender: String,
    /// The sender's sequence number in `chan` through `node`: greater
    /// than that of any message of the sender the channel took before
    /// through the same node.
    pub nth: u64,
    /// The id of that capability (its last link).
    pub cap: u64,
    /// The intent it was sent under: the capability's rights and scope,
    /// `RIGHTS@SCOPE`.
    pub intent: String,
    /// The public key of the node that accepted and signed it.
    pub node: PublicKey,
    /// The ed25519 signature over the root of its batch (see
    /// [`root_message`]), in two halves (serde has no 64-byte arrays).
    pub sig: [[u8; 32]; 2],
    /// Its leaf's position in the batch.
    pub leaf: u32,
    /// How many messages the batch signed.
    pub batch: u32,
    /// The sibling hashes from its leaf up to the root.
    pub path: Vec<[u8; 32]>,
}

/// One message as a channel holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Its position in this channel, from 1.
    pub seq: u64,
    /// Who, when, under what; signed.
    pub stamp: Stamp,
    /// The payload, exactly as written.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// The leaf hash of a message: sha256 over a domain word, every stamp
/// field but the signature and its batch position and path, and the
/// payload (postcard, length-prefixed).
pub fn leaf_hash(stamp: &Stamp, data: &[u8]) -> [u8; 32] {
    let fields = (
        "cell0-msg-2",
        stamp.chan.as_str(),
        stamp.time_ms,
        stamp.sender.as_str(),
        stamp.nth,
        stamp.cap,
        stamp.intent.as_str(),
        &stamp.node,
        data,
    );
    let mut h = Sha256::new();
    // Serialising strings, integers and bytes into a Vec cannot fail.
    h.update(postcard::to_allocvec(&fields).unwrap_or_default());
    h.finalize().into()
}

fn parent(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// What the node signs for a batch of `n` messages whose Merkle root is
/// `root` (the count is signed too, so a path cannot claim another shape).
pub fn root_message(root: &[u8; 32], n: u32) -> [u8; 48] {
    let mut m = [0; 48];
    m[..12].copy_from_slice(b"cell0-msgs-1");
    m[12..16].copy_from_slice(&n.to_le_bytes());
    m[16..].copy_from_slice(root);
    m
}

/// The root that leaf `index` of a batch of `n` reaches through `path`;
/// `None` if the path does not fit that shape. The last node of a level
/// of odd length is carried up unpaired.
fn root_of(leaf: [u8; 32], mut index: u32, n: u32, path: &[[u8; 32]]) -> Option<[u8; 32]> {
    if index >= n {
        return None;
    }
    let mut h = leaf;
    let mut len = n;
    let mut sibs = path.iter();
    while len > 1 {
        if index ^ 1 < len {
            let sib = sibs.next()?;
            h = if index & 1 == 0 {
                parent(&h, sib)
            } else {
                parent(sib, &h)
            };
        }
        index >>= 1;
        len = len.div_ceil(2);
    }
    sibs.next().is_none().then_some(h)
}

/// The fields of a stamp before signing.
pub struct Unsigned<'a> {
    /// See [`Stamp::chan`].
    pub chan: &'a str,
    /// See [`Stamp::time_ms`].
    pub time_ms: u64,
    /// See [`Stamp::sender`].
    pub sender: &'a str,
    /// See [`Stamp::cap`].
    pub cap: u64,
    /// See [`Stamp::intent`].
    pub intent: String,
}

impl Unsigned<'_> {
    /// The stamp these fields make for a message accepted by `node`, to
    /// be numbered (`nth`, 1 until then) and signed with [`sign_batch`].
    pub fn stamp(self, node: PublicKey) -> Stamp {
        Stamp {
            chan: String::from(self.chan),
            time_ms: self.time_ms,
            sender: String::from(self.sender),
            nth: 1,
            cap: self.cap,
            intent: self.intent,
            node,
            sig: [[0; 32]; 2],
            leaf: 0,
            batch: 1,
            path: Vec::new(),
        }
    }

    /// Stamp `data` with these fields and sign it alone with `key`.
    pub fn sign(self, key: &NodeKey, data: &[u8]) -> Stamp {
        let mut stamp = self.stamp(key.public());
        sign_batch(key, &mut [(&mut stamp, data)]);
        stamp
    }
}

/// Sign a batch of stamped messages with one signature: fill in each
/// stamp's signature, leaf position and path.
pub fn sign_batch(key: &NodeKey, batch: &mut [(&mut Stamp, &[u8])]) {
    if batch.is_empty() {
        return;
    }
    let mut level: Vec<[u8; 32]> = batch.iter().map(|(s, d)| leaf_hash(s, d)).collect();
    let mut paths: Vec<Vec<[u8; 32]>> = alloc::vec![Vec::new(); batch.len()];
    // Which node of the current level each leaf is under.
    let mut at: Vec<usize> = (0..batch.len()).collect();
    while level.len() > 1 {
        for (path, i) in paths.iter_mut().zip(at.iter_mut()) {
            let sib = *i ^ 1;
            if sib < level.len() {
                path.push(level[sib]);
            }
            *i /= 2;
        }
        level = level
            .chunks(2)
            .map(|p| {
                if p.len() == 2 {
                    parent(&p[0], &p[1])
                } else {
                    p[0]
                }
            })
            .collect();
    }
    let n = batch.len() as u32;
    let sig = split(&key.sign(&root_message(&level[0], n)));
    for (i, ((stamp, _), path)) in batch.iter_mut().zip(paths).enumerate() {
        stamp.sig = sig;
        stamp.leaf = i as u32;
        stamp.batch = n;
        stamp.path = path;
    }
}

fn split(sig: &[u8; 64]) -> [[u8; 32]; 2] {
    let mut halves = [[0; 32]; 2];
    halves[0].copy_from_slice(&sig[..32]);
    halves[1].copy_from_slice(&sig[32..]);
    halves
}

fn joined(halves: &[[u8; 32]; 2]) -> [u8; 64] {
    let mut sig = [0; 64];
    sig[..32].copy_from_slice(&halves[0]);
    sig[32..].copy_from_slice(&halves[1]);
    sig
}

/// How a message's signature checks out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by a trusted node, and nothing changed since.
    Yes,
    /// The signature does not match the stamp and payload: altered.
    BadSignature,
    /// A valid signature, by a node this one does not trust.
    UnknownSigner,
}

impl Verdict {
    /// The word shown after `verified=`.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Yes => "yes",
            Verdict::BadSignature => "no-bad-signature",
            Verdict::UnknownSigner => "no-unknown-signer",
        }
    }
}

/// Check `data` against `stamp`; `trusted` says which signing nodes count.
pub fn verify(stamp: &Stamp, data: &[u8], trusted: impl Fn(&PublicKey) -> bool) -> Verdict {
    let root = root_of(leaf_hash(stamp, data), stamp.leaf, stamp.batch, &stamp.path);
    let good = root.is_some_and(|root| {
        let signed = root_message(&root, stamp.batch);
        verify_signature(&stamp.node, &signed, &joined(&stamp.sig))
    });
    if !good {
        Verdict::BadSignature
    } else if !trusted(&stamp.node) {
        Verdict::UnknownSigner
    } else {
        Verdict::Yes
    }
}

/// Append the `msgs` line of `msg` (see chan(3)): `key=value` fields, the
/// payload last, in hex.
pub fn push_line(out: &mut String, msg: &Message, verdict: Verdict) {
    let s = &msg.stamp;
    let _ = write!(
        out,
        "seq={} time={} chan={} sender={} nth={} cap={} intent={} node=",
        msg.seq, s.time_ms, s.chan, s.sender, s.nth, s.cap, s.intent
    );
    hex::push(out, &s.node);
    out.push_str(" sig=");
    hex::push(out, &joined(&s.sig));
    let _ = write!(out, " batch={}/{} path=", s.leaf, s.batch);
    if s.path.is_empty() {
        out.push('-');
    }
    for h in &s.path {
        hex::push(out, h);
    }
    let _ = write!(
        out,
        " verified={} len={} data=",
        verdict.word(),
        msg.data.len()
    );
    hex::push(out, &msg.data);
    out.push('\n');
}

/// Why a `msgs` line could not be read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine(pub String);

/// A message back from its `msgs` line (the `verified=` word is ignored:
/// whoever reads the line checks for themselves).
pub fn parse_line(line: &str) -> Result<Message, BadLine> {
    let mut fields: [Option<&str>; 14] = [None; 14];
    const KEYS: [&str; 14] = [
        "seq", "time", "chan", "sender", "cap", "intent", "node", "sig", "verified", "len", "data",
        "batch", "path", "nth",
    ];
    for word in line.split_ascii_whitespace() {
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| BadLine(alloc::format!("\"{word}\" is not key=value")))?;
        let i = KEYS
            .iter()
            .position(|&key| key == k)
            .ok_or_else(|| BadLine(alloc::format!("unknown field \"{k}\"")))?;
        if fields[i].replace(v).is_some() {
            return Err(BadLine(alloc::format!("field \"{k}\" given twice")));
        }
    }
    let get = |i: usize| fields[i].ok_or_else(|| BadLine(alloc::format!("no {} field", KEYS[i])));
    let num = |i: usize| {
        parse_decimal(get(i)?).ok_or_else(|| BadLine(alloc::format!("{} is not a number", KEYS[i])))
    };
    let data = hex::decode(get(10)?).ok_or_else(|| BadLine(String::from("data is not hex")))?;
    if num(9)? != data.len() as u64 {
        return Err(BadLine(String::from("len does not match data")));
    }
    let (leaf, batch) = get(11)?
        .split_once('/')
        .and_then(|(l, n)| Some((parse_decimal(l)?, parse_decimal(n)?)))
        .and_then(|(l, n)| Some((u32::try_from(l).ok()?, u32::try_from(n).ok()?)))
        .ok_or_else(|| BadLine(String::from("batch is not LEAF/COUNT")))?;
    let path = match get(12)? {
        "-" => Vec::new(),
        hex => hex::decode(hex)
            .filter(|b| b.len() % 32 == 0)
            .ok_or_else(|| BadLine(String::from("path is not hex hashes")))?
            .chunks(32)
            .map(|c| {
                let mut h = [0; 32];
                h.copy_from_slice(c);
                h
            })
            .collect(),
    };
    let sig: [u8; 64] = hex::decode(get(7)?)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| BadLine(String::from("sig is not 128 hex digits")))?;
    Ok(Message {
        seq: num(0)?,
        stamp: Stamp {
            chan: String::from(get(2)?),
            time_ms: num(1)?,
            sender: String::from(get(3)?),
            nth: num(13)?,
            cap: num(4)?,
            intent: String::from(get(5)?),
            node: hex::decode32(get(6)?)
                .ok_or_else(|| BadLine(String::from("node is not 64 hex digits")))?,
            sig: split(&sig),
            leaf,
            batch,
            path,
        },
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: &NodeKey) -> Message {
        let data = b"disk full on db1\n";
        let stamp = Unsigned {
            chan: "alerts",
            time_ms: 1_764_039_212_345,
            sender: "alice",
            cap: 7,
            intent: String::from("rw@/chan/alerts"),
        }
        .sign(key, data);
        Message {
            seq: 3,
            stamp,
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_line_reads_back_and_verifies_and_any_change_shows() {
        let key = NodeKey::from_seed(&[5; 32]);
        let me = key.public();
        let msg = message(&key);
        let mut line = String::new();
        push_line(&mut line, &msg, Verdict::Yes);
        let back = parse_line(line.trim_end()).unwrap();
        assert_eq!(back, msg);
        assert_eq!(verify(&back.stamp, &back.data, |k| *k == me), Verdict::Yes);
        assert_eq!(
            verify(&back.stamp, &back.data, |_| false),
            Verdict::UnknownSigner
        );
        let mut changed = back.clone();
        changed.data[0] ^= 1;
        assert_eq!(
            verify(&changed.stamp, &changed.data, |k| *k == me),
            Verdict::BadSignature
        );
        let mut other = back.clone();
        other.stamp.sender = String::from("mallory");
        assert_eq!(
            verify(&other.stamp, &other.data, |k| *k == me),
            Verdict::BadSignature
        );
        let mut later = back.clone();
        later.stamp.time_ms += 1;
        assert_eq!(
            verify(&later.stamp, &later.data, |k| *k == me),
            Verdict::BadSignature
        );
        let mut renumbered = back;
        renumbered.stamp.nth += 1;
        assert_eq!(
            verify(&renumbered.stamp, &renumbered.data, |k| *k == me),
            Verdict::BadSignature
        );
    }

    #[test]
    fn every_message_of_a_batch_verifies_alone_and_a_wrong_path_does_not() {
        let key = NodeKey::from_seed(&[6; 32]);
        let me = key.public();
        for n in 1..=9u32 {
            let datas: Vec<Vec<u8>> = (0..n).map(|i| alloc::vec![i as u8; 3]).collect();
            let mut stamps: Vec<Stamp> = (0..n)
                .map(|i| {
                    Unsigned {
                        chan: "a",
                        time_ms: u64::from(i),
                        sender: "s",
                        cap: 0,
                        intent: String::from("w@/"),
                    }
                    .stamp(me)
                })
                .collect();
            let mut batch: Vec<(&mut Stamp, &[u8])> = stamps
                .iter_mut()
                .zip(datas.iter())
                .map(|(s, d)| (s, d.as_slice()))
                .collect();
            sign_batch(&key, &mut batch);
            for (s, d) in stamps.iter().zip(&datas) {
                assert_eq!(
                    verify(s, d, |k| *k == me),
                    Verdict::Yes,
                    "n={n} leaf={}",
                    s.leaf
                );
                let msg = Message {
                    seq: 1,
                    stamp: s.clone(),
                    data: d.clone(),
                };
                let mut line = String::new();
                push_line(&mut line, &msg, Verdict::Yes);
                assert_eq!(parse_line(line.trim_end()).unwrap(), msg);
                let mut moved = s.clone();
                moved.leaf = (moved.leaf + 1) % n;
                if n > 1 {
                    assert_ne!(verify(&moved, d, |k| *k == me), Verdict::Yes, "n={n}");
                }
                let mut resized = s.clone();
                resized.batch += 1;
                assert_ne!(verify(&resized, d, |k| *k == me), Verdict::Yes, "n={n}");
            }
        }
    }

    #[test]
    fn broken_lines_are_refused_with_a_reason() {
        for bad in ["seq=1", "nonsense", "seq=1 seq=2", "zzz=1"] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }
}
