//! Signed messages: the stamp a node puts on every message written to a
//! channel, and the `msgs` line that shows it.
//!
//! The node that accepts a write stamps it (who sent it, under which
//! capability and intent, when, into which channel) and signs stamp and
//! payload with its ed25519 key before proposing it, so every replica
//! stores the same bytes and any reader anywhere can check them later.
//! The channel's sequence number is given when the log orders the
//! message, after signing; it is shown beside the stamp, not inside it.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use serde::{Deserialize, Serialize};

use crate::cap::token::verify_signature;
use crate::cap::{NodeKey, PublicKey};
use crate::proof::chain::{parse_decimal, push_hex, unhex, unhex32};

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
    /// The id of that capability (its last link).
    pub cap: u64,
    /// The intent it was sent under: the capability's rights and scope,
    /// `RIGHTS@SCOPE`.
    pub intent: String,
    /// The public key of the node that accepted and signed it.
    pub node: PublicKey,
    /// The ed25519 signature over [`signed_bytes`], in two halves (serde
    /// has no 64-byte arrays).
    pub sig: [[u8; 32]; 2],
}

/// One message as a channel holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Its position in this channel, from 1.
    pub seq: u64,
    /// Who, when, under what; signed.
    pub stamp: Stamp,
    /// The payload, exactly as written.
    pub data: Vec<u8>,
}

/// What the signature of a message covers: a domain word, every stamp
/// field but the signature, and the payload, length-prefixed (postcard).
pub fn signed_bytes(stamp: &Stamp, data: &[u8]) -> Vec<u8> {
    let fields = (
        "cell0-msg-1",
        stamp.chan.as_str(),
        stamp.time_ms,
        stamp.sender.as_str(),
        stamp.cap,
        stamp.intent.as_str(),
        &stamp.node,
        data,
    );
    // Serialising strings, integers and bytes into a Vec cannot fail.
    postcard::to_allocvec(&fields).unwrap_or_default()
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
    /// Stamp `data` with these fields and sign it with `key`.
    pub fn sign(self, key: &NodeKey, data: &[u8]) -> Stamp {
        let mut stamp = Stamp {
            chan: String::from(self.chan),
            time_ms: self.time_ms,
            sender: String::from(self.sender),
            cap: self.cap,
            intent: self.intent,
            node: key.public(),
            sig: [[0; 32]; 2],
        };
        let sig = key.sign(&signed_bytes(&stamp, data));
        stamp.sig = split(&sig);
        stamp
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
    if !verify_signature(&stamp.node, &signed_bytes(stamp, data), &joined(&stamp.sig)) {
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
        "seq={} time={} chan={} sender={} cap={} intent={} node=",
        msg.seq, s.time_ms, s.chan, s.sender, s.cap, s.intent
    );
    push_hex(out, &s.node);
    out.push_str(" sig=");
    push_hex(out, &joined(&s.sig));
    let _ = write!(
        out,
        " verified={} len={} data=",
        verdict.word(),
        msg.data.len()
    );
    push_hex(out, &msg.data);
    out.push('\n');
}

/// Why a `msgs` line could not be read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine(pub String);

/// A message back from its `msgs` line (the `verified=` word is ignored:
/// whoever reads the line checks for themselves).
pub fn parse_line(line: &str) -> Result<Message, BadLine> {
    let mut fields: [Option<&str>; 11] = [None; 11];
    const KEYS: [&str; 11] = [
        "seq", "time", "chan", "sender", "cap", "intent", "node", "sig", "verified", "len", "data",
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
    let data = unhex(get(10)?).ok_or_else(|| BadLine(String::from("data is not hex")))?;
    if num(9)? != data.len() as u64 {
        return Err(BadLine(String::from("len does not match data")));
    }
    let sig: [u8; 64] = unhex(get(7)?)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| BadLine(String::from("sig is not 128 hex digits")))?;
    Ok(Message {
        seq: num(0)?,
        stamp: Stamp {
            chan: String::from(get(2)?),
            time_ms: num(1)?,
            sender: String::from(get(3)?),
            cap: num(4)?,
            intent: String::from(get(5)?),
            node: unhex32(get(6)?)
                .ok_or_else(|| BadLine(String::from("node is not 64 hex digits")))?,
            sig: split(&sig),
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
        let mut later = back;
        later.stamp.time_ms += 1;
        assert_eq!(
            verify(&later.stamp, &later.data, |k| *k == me),
            Verdict::BadSignature
        );
    }

    #[test]
    fn broken_lines_are_refused_with_a_reason() {
        for bad in ["seq=1", "nonsense", "seq=1 seq=2", "zzz=1"] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }
}
