//! The signed envelope around every gossip datagram, and the replay window
//! that refuses one seen before.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! magic "C0g" | version (1) | kind (1) | swarm (16) | sender (u64) | boot (u64)
//!   | sequence (u64) | payload | ed25519 signature (64) over all before it
//! ```
//!
//! The kind is [`Kind::Swim`] (the payload is foca's) or [`Kind::Goodbye`]
//! (empty payload: the sender leaves the swarm).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::cap::NodeKey;

const MAGIC: &[u8; 3] = b"C0g";
const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER: usize = 3 + 1 + 1 + 16 + 8 + 8 + 8;
/// Bytes after the payload.
pub const SIGNATURE: usize = 64;
/// What the envelope adds to a payload.
pub const OVERHEAD: usize = HEADER + SIGNATURE;

/// What a datagram carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A SWIM message (foca's encoding).
    Swim,
    /// The sender leaves the swarm: mark it `left`, not dead.
    Goodbye,
}

/// Why a received datagram was dropped (each has its counter in
/// [`super::Counters`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Too short, wrong magic, version or kind, or a payload foca refused.
    Malformed,
    /// It names another swarm.
    Foreign,
    /// Its sender is not an admitted member.
    Unknown,
    /// Its signature does not verify against the sender's admitted key.
    BadSignature,
    /// Seen before, or older than the replay window, or from an earlier boot.
    Replay,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dropped::Malformed => {
                "malformed gossip datagram (not a Cell0 gossip packet of this version)"
            }
            Dropped::Foreign => {
                "gossip datagram of another swarm (check the swarm id in the config)"
            }
            Dropped::Unknown => {
                "gossip datagram from a member not admitted (is the member list committed?)"
            }
            Dropped::BadSignature => {
                "gossip datagram whose signature fails against the admitted key"
            }
            Dropped::Replay => "gossip datagram already seen, too old, or from an earlier boot",
        })
    }
}

/// How this node signs and checks envelopes.
#[derive(Clone, Debug)]
pub enum Signing {
    /// Ed25519 with the node's key (the only mode outside simulations).
    Ed25519(Box<NodeKey>),
    /// No signatures made or checked: for the deterministic simulation only,
    /// where signing every packet would dominate the run time.
    #[cfg(feature = "simulation")]
    SimulationOnlyUnsigned,
}

/// The fields of a received envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// What it carries.
    pub kind: Kind,
    /// The swarm it names.
    pub swarm: [u8; 16],
    /// The sending member.
    pub sender: u64,
    /// The sending process's boot.
    pub boot: u64,
    /// The sender's number for this datagram (per boot, from 1).
    pub seq: u64,
    /// The payload.
    pub payload: &'a [u8],
    /// The bytes the signature covers.
    pub signed: &'a [u8],
    /// The signature.
    pub signature: [u8; 64],
}

/// The fields to seal into a datagram.
pub struct Seal<'a> {
    /// What it carries.
    pub kind: Kind,
    /// This swarm.
    pub swarm: [u8; 16],
    /// This member.
    pub sender: u64,
    /// This process's boot.
    pub boot: u64,
    /// This datagram's number.
    pub seq: u64,
    /// The payload.
    pub payload: &'a [u8],
}

impl Seal<'_> {
    /// The datagram, signed as `signing` says.
    pub fn seal(&self, signing: &Signing) -> Vec<u8> {
        let mut out = Vec::with_capacity(OVERHEAD + self.payload.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(match self.kind {
            Kind::Swim => 0,
            Kind::Goodbye => 1,
        });
        out.extend_from_slice(&self.swarm);
        out.extend_from_slice(&self.sender.to_le_bytes());
        out.extend_from_slice(&self.boot.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(self.payload);
        let signature = match signing {
            Signing::Ed25519(key) => key.sign(&out),
            #[cfg(feature = "simulation")]
            Signing::SimulationOnlyUnsigned => [0; 64],
        };
        out.extend_from_slice(&signature);
        out
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Split a datagram into its fields (no signature check: see
/// [`Envelope::verify`]).
pub fn open(packet: &[u8]) -> Result<Envelope<'_>, Dropped> {
    if packet.len() < OVERHEAD || &packet[..3] != MAGIC || packet[3] != VERSION {
        return Err(Dropped::Malformed);
    }
    let kind = match packet[4] {
        0 => Kind::Swim,
        1 => Kind::Goodbye,
        _ => return Err(Dropped::Malformed),
    };
    let mut swarm = [0; 16];
    swarm.copy_from_slice(&packet[5..21]);
    let end = packet.len() - SIGNATURE;
    let mut signature = [0; 64];
    signature.copy_from_slice(&packet[end..]);
    Ok(Envelope {
        kind,
        swarm,
        sender: u64_at(packet, 21),
        boot: u64_at(packet, 29),
        seq: u64_at(packet, 37),
        payload: &packet[HEADER..end],
        signed: &packet[..end],
        signature,
    })
}

impl Envelope<'_> {
    /// Whether the signature holds for `key` (always, unsigned).
    pub fn verify(&self, key: &[u8; 32], signing: &Signing) -> bool {
        match signing {
            Signing::Ed25519(_) => {
                crate::cap::token::verify_signature(key, self.signed, &self.signature)
            }
            #[cfg(feature = "simulation")]
            Signing::SimulationOnlyUnsigned => true,
        }
    }
}

/// One sender's replay window: the highest (boot, seq) seen and which of
/// the 64 sequence numbers below it were seen too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    boot: u64,
    top: u64,
    /// Bit i: `top - i` was seen.
    seen: u64,
}

impl Window {
    /// Accept (and remember) `(boot, seq)`, or refuse it as a replay.
    pub fn accept(&mut self, boot: u64, seq: u64) -> Result<(), Dropped> {
        if boot < self.boot {
            return Err(Dropped::Replay);
        }
        if boot > self.boot {
            // A restart: its numbers begin again.
            *self = Window {
                boot,
                top: seq,
                seen: 1,
            };
            return Ok(());
        }
        if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = seq;
            return Ok(());
        }
        let back = self.top - seq;
        if back >= 64 || self.seen & (1 << back) != 0 {
            return Err(Dropped::Replay);
        }
        self.seen |= 1 << back;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> NodeKey {
        NodeKey::from_seed(&[7; 32])
    }

    fn sealed(payload: &[u8]) -> Vec<u8> {
        Seal {
            kind: Kind::Swim,
            swarm: [1; 16],
            sender: 9,
            boot: 100,
            seq: 3,
            payload,
        }
        .seal(&Signing::Ed25519(Box::new(key())))
    }

    #[test]
    fn round_trip() {
        let packet = sealed(b"hello");
        let e = open(&packet).unwrap();
        assert_eq!(
            (e.kind, e.swarm, e.sender, e.boot, e.seq),
            (Kind::Swim, [1; 16], 9, 100, 3)
        );
        assert_eq!(e.payload, b"hello");
        let signing = Signing::Ed25519(Box::new(key()));
        assert!(e.verify(&key().public(), &signing));
        assert!(!e.verify(&NodeKey::from_seed(&[8; 32]).public(), &signing));
    }

    #[test]
    fn malformed() {
        let packet = sealed(b"");
        assert_eq!(open(&packet[..OVERHEAD - 1]), Err(Dropped::Malformed));
        let mut bad = packet.clone();
        bad[0] = b'X';
        assert_eq!(open(&bad), Err(Dropped::Malformed));
        let mut bad = packet.clone();
        bad[4] = 9;
        assert_eq!(open(&bad), Err(Dropped::Malformed));
    }

    #[test]
    fn tampered_payload_fails_signature() {
        let mut packet = sealed(b"hello");
        packet[HEADER] ^= 1;
        let e = open(&packet).unwrap();
        assert!(!e.verify(&key().public(), &Signing::Ed25519(Box::new(key()))));
    }

    #[test]
    fn replay_window() {
        let mut w = Window::default();
        assert_eq!(w.accept(5, 10), Ok(()));
        assert_eq!(w.accept(5, 10), Err(Dropped::Replay));
        assert_eq!(w.accept(5, 8), Ok(()));
        assert_eq!(w.accept(5, 8), Err(Dropped::Replay));
        assert_eq!(w.accept(5, 100), Ok(()));
        assert_eq!(w.accept(5, 37), Ok(()), "inside the window, unseen");
        assert_eq!(w.accept(5, 36), Err(Dropped::Replay), "below the window");
        assert_eq!(w.accept(4, 1000), Err(Dropped::Replay), "earlier boot");
        assert_eq!(w.accept(6, 1), Ok(()), "a restart resets the window");
        assert_eq!(w.accept(6, 1), Err(Dropped::Replay));
    }
}
