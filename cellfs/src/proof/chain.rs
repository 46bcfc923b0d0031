//! The hash chain over every committed entry (`/proof/chain`, `/proof/head`).
//!
//! Link `i` is sha256(link `i-1` ‖ index ‖ term ‖ command bytes), the
//! index and term as 8 little-endian bytes each, starting from 32 zero
//! bytes. Every node computes it as it applies, so every node of a cluster
//! holds the same chain, and changing any byte of any entry changes every
//! later link. See proof(3).
//!
//! `/proof/chain` is the chain as text, one line per entry:
//!
//! ```text
//! INDEX TERM HASH DATA
//! ```
//!
//! INDEX and TERM in decimal (no sign, no leading zeros), HASH the link as
//! 64 lower-case hex digits, DATA the entry's command bytes in lower-case
//! hex (`-` when there are none), fields separated by one space, every line
//! ended by `\n`. The file alone is enough to recompute every link;
//! [`verify`] checks it against a signed head ([`super::head`]).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::head::{Head, HeadError};
use crate::cap::PublicKey;
use crate::log::{Index, Term};

/// One committed entry's place in the chain.
///
/// It keeps the entry's command bytes, so that `/proof/chain` can be checked
/// offline even for entries a snapshot has since replaced: the chain holds
/// the whole log in memory (until compaction learns to drop a prefix).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The entry's index.
    pub index: Index,
    /// Its term.
    pub term: Term,
    /// The node it was proposed on (not hashed, not exported).
    pub origin: u64,
    /// The chain hash through it.
    pub hash: [u8; 32],
    /// The entry's command bytes.
    pub data: Vec<u8>,
}

/// The chain so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    links: Vec<Link>,
}

/// The hash that follows `prev` for an entry.
pub fn next_hash(prev: &[u8; 32], index: Index, term: Term, data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(index.to_le_bytes());
    h.update(term.to_le_bytes());
    h.update(data);
    h.finalize().into()
}

impl Chain {
    /// Extend the chain by a committed entry.
    pub fn push(&mut self, index: Index, term: Term, origin: u64, data: &[u8]) {
        let prev = self.links.last().map_or([0; 32], |l| l.hash);
        let hash = next_hash(&prev, index, term, data);
        self.links.push(Link {
            index,
            term,
            origin,
            hash,
            data: data.to_vec(),
        });
    }

    /// The last link's index and hash (0 and zeros when empty).
    pub fn head(&self) -> (Index, [u8; 32]) {
        self.links
            .last()
            .map_or((0, [0; 32]), |l| (l.index, l.hash))
    }

    /// Every link, oldest first.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The text of `/proof/chain`: one [`line`] per link, oldest first.
    /// Rendering is linear in the size of the whole log.
    pub fn render(&self) -> String {
        let size: usize = self.links.iter().map(|l| 64 + 2 * l.data.len() + 48).sum();
        let mut out = String::with_capacity(size);
        for l in &self.links {
            push_line(&mut out, l);
        }
        out
    }
}

/// One line of `/proof/chain`: `INDEX TERM HASH DATA\n`.
pub fn line(link: &Link) -> String {
    let mut out = String::new();
    push_line(&mut out, link);
    out
}

fn push_line(out: &mut String, l: &Link) {
    use core::fmt::Write as _;
    let _ = write!(out, "{} {} ", l.index, l.term);
    push_hex(out, &l.hash);
    out.push(' ');
    if l.data.is_empty() {
        out.push('-');
    } else {
        push_hex(out, &l.data);
    }
    out.push('\n');
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Append the lower-case hex of `bytes`.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
}

/// The bytes of lower-case hex text (an even number of `0-9a-f`), or
/// `None` for anything else (upper case included: one spelling per value).
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// 32 bytes from 64 lower-case hex digits.
pub fn unhex32(text: &str) -> Option<[u8; 32]> {
    unhex(text)?.try_into().ok()
}

/// A decimal number in its one canonical spelling (no sign, no leading
/// zeros, at most `u64::MAX`).
pub fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|c| c.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

/// What [`verify`] found in a good chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// How many entries the chain holds.
    pub entries: usize,
    /// The signed head.
    pub head: Head,
}

/// What is wrong with an entry of an exported chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The line is not `INDEX TERM HASH DATA` in the one spelling allowed.
    Malformed(&'static str),
    /// The index does not increase, or the term decreases.
    Order,
    /// The recomputed hash differs, and the next link (or the head) still
    /// chains from the line's hash: the index, term or data was changed.
    Data,
    /// The recomputed hash differs, and the line's hash is not what the
    /// next link (or the head) was made from: the hash was changed.
    Hash,
    /// The head does not name this entry (the last one), or is malformed,
    /// or its key or signature does not verify.
    Head(HeadError),
}

/// Why an exported chain and head do not verify: the first entry that does
/// not match, by line number (from 1) and index (0 for the genesis, when
/// the chain is empty or a line's index cannot be read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainError {
    /// The line of the chain file (0 when the chain file is empty).
    pub line: usize,
    /// The entry's index as the line gives it (0 if unreadable).
    pub index: Index,
    /// What is wrong.
    pub fault: Fault,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.line == 0 {
            String::from("the empty chain (genesis)")
        } else {
            format!("line {} (entry {})", self.line, self.index)
        };
        match self.fault {
            Fault::Malformed(why) => write!(f, "{at}: malformed line: {why}"),
            Fault::Order => write!(
                f,
                "{at}: out of order: the index must increase and the term must not decrease"
            ),
            Fault::Data => write!(
                f,
                "{at}: data does not match the hash: its index, term or data was changed"
            ),
            Fault::Hash => write!(
                f,
                "{at}: hash does not match: the hash was changed (the next link does not chain from it)"
            ),
            Fault::Head(e) => write!(f, "{at}: head: {e}"),
        }
    }
}

struct Parsed {
    index: Index,
    term: Term,
    hash: [u8; 32],
    data: Vec<u8>,
}

fn parse_line(text: &str) -> Result<Parsed, &'static str> {
    let mut fields = text.split(' ');
    let (Some(i), Some(t), Some(h), Some(d), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err("not four fields separated by single spaces");
    };
    let index = parse_decimal(i).ok_or("the index is not a decimal number")?;
    if index == 0 {
        return Err("index 0 is the genesis, not an entry");
    }
    let term = parse_decimal(t).ok_or("the term is not a decimal number")?;
    let hash = unhex32(h).ok_or("the hash is not 64 lower-case hex digits")?;
    let data = match d {
        "-" => Vec::new(),
        _ => match unhex(d) {
            Some(b) if !b.is_empty() => b,
            _ => return Err("the data is not lower-case hex bytes (or - for none)"),
        },
    };
    Ok(Parsed {
        index,
        term,
        hash,
        data,
    })
}

/// The index a line claims, if its first field reads as one.
fn claimed_index(text: &str) -> Index {
    text.split(' ').next().and_then(parse_decimal).unwrap_or(0)
}

/// Check an exported `/proof/chain` and `/proof/head`: every line
/// well-formed, indexes increasing and terms not decreasing, every hash
/// recomputed from the one before (32 zero bytes before the first), the
/// head naming the last entry, its signature valid under the key it names
/// (and that key `key`, when given). The error names the first entry that
/// fails.
pub fn verify(chain: &str, head: &str, key: Option<&PublicKey>) -> Result<Verified, ChainError> {
    let body = if chain.is_empty() {
        ""
    } else {
        match chain.strip_suffix('\n') {
            Some(b) => b,
            None => {
                let line = chain.split('\n').count();
                let last = chain.rsplit('\n').next().unwrap_or("");
                return Err(ChainError {
                    line,
                    index: claimed_index(last),
                    fault: Fault::Malformed("the last line does not end with a newline"),
                });
            }
        }
    };
    let lines: Vec<&str> = if chain.is_empty() {
        Vec::new()
    } else {
        body.split('\n').collect()
    };
    let head_at = |line: usize, index: Index, e: HeadError| ChainError {
        line,
        index,
        fault: Fault::Head(e),
    };
    let mut prev_hash = [0u8; 32];
    let mut prev: Option<(Index, Term)> = None;
    let mut parsed: Vec<Parsed> = Vec::with_capacity(lines.len());
    // Parse and order-check everything first, so a hash fault can look at
    // the line after it.
    for (n, text) in lines.iter().enumerate() {
        let p = parse_line(text).map_err(|why| ChainError {
            line: n + 1,
            index: claimed_index(text),
            fault: Fault::Malformed(why),
        })?;
        parsed.push(p);
    }
    for (n, p) in parsed.iter().enumerate() {
        let err = |fault| ChainError {
            line: n + 1,
            index: p.index,
            fault,
        };
        if let Some((pi, pt)) = prev
            && (p.index <= pi || p.term < pt)
        {
            return Err(err(Fault::Order));
        }
        let computed = next_hash(&prev_hash, p.index, p.term, &p.data);
        if computed != p.hash {
            // Does what follows still chain from the line's hash? Then the
            // hash is as made, and the entry's content was changed.
            let follows = match parsed.get(n + 1) {
                Some(q) => next_hash(&p.hash, q.index, q.term, &q.data) == q.hash,
                None => Head::parse(head).is_ok_and(|h| h.hash == p.hash),
            };
            return Err(err(if follows { Fault::Data } else { Fault::Hash }));
        }
        prev_hash = p.hash;
        prev = Some((p.index, p.term));
    }
    let (line, index) = (lines.len(), prev.map_or(0, |(i, _)| i));
    let h = Head::parse(head).map_err(|e| head_at(line, index, e))?;
    if h.index != index || h.hash != prev_hash {
        return Err(head_at(line, index, HeadError::NotLast));
    }
    if let Some(k) = key
        && *k != h.key
    {
        return Err(head_at(line, index, HeadError::OtherKey));
    }
    if !h.verify() {
        return Err(head_at(line, index, HeadError::Signature));
    }
    Ok(Verified {
        entries: lines.len(),
        head: h,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cap::NodeKey;
    use alloc::string::ToString;

    fn sample() -> Chain {
        let mut c = Chain::default();
        c.push(1, 1, 0, b"mkdir x");
        c.push(2, 1, 0, b"");
        c.push(5, 2, 3, b"write \x00\xff");
        c
    }

    #[test]
    fn the_chain_is_deterministic_and_starts_from_zeros() {
        assert_eq!(Chain::default().head(), (0, [0; 32]));
        let (a, b) = (sample(), sample());
        assert_eq!(a, b);
        let first = next_hash(&[0; 32], 1, 1, b"mkdir x");
        assert_eq!(a.links()[0].hash, first);
        assert_eq!(a.head().0, 5);
        let mut c = Chain::default();
        c.push(1, 1, 0, b"mkdir y");
        assert_ne!(c.links()[0].hash, first);
    }

    #[test]
    fn lines_are_index_term_hash_data() {
        let c = sample();
        let text = c.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            format!("1 1 {} 6d6b6469722078", crate::cap::hex(&c.links()[0].hash))
        );
        assert!(lines[1].ends_with(" -"), "{}", lines[1]);
        assert!(lines[2].starts_with("5 2 "));
        assert!(lines[2].ends_with(" 77726974652000ff"));
        assert!(text.ends_with('\n'));
        assert_eq!(line(&c.links()[2]), format!("{}\n", lines[2]));
        assert_eq!(Chain::default().render(), "");
    }

    #[test]
    fn the_chain_survives_a_snapshot_round_trip() {
        let c = sample();
        let bytes = postcard::to_allocvec(&c).unwrap();
        let back: Chain = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.render(), c.render());
    }

    #[test]
    fn hex_and_decimal_have_one_spelling() {
        assert_eq!(unhex("00ff10"), Some(alloc::vec![0, 255, 16]));
        assert_eq!(unhex("0F"), None);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex(""), Some(Vec::new()));
        assert_eq!(parse_decimal("10"), Some(10));
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("010"), None);
        assert_eq!(parse_decimal("+1"), None);
        assert_eq!(parse_decimal(""), None);
        assert_eq!(parse_decimal("18446744073709551616"), None);
    }

    #[test]
    fn a_rendered_chain_verifies_and_every_flipped_byte_fails() {
        let key = NodeKey::from_seed(&[7; 32]);
        let c = sample();
        let chain = c.render();
        let head = Head::sign(&c, &key).render();
        let v = verify(&chain, &head, Some(&key.public())).unwrap();
        assert_eq!(v.entries, 3);
        assert_eq!(v.head.index, 5);
        for pos in 0..chain.len() {
            for flip in [1u8, 0x20, 0x41] {
                let mut bad = chain.clone().into_bytes();
                bad[pos] ^= flip;
                let Ok(bad) = String::from_utf8(bad) else {
                    continue;
                };
                let e = verify(&bad, &head, None).unwrap_err();
                assert!(e.line >= 1, "{pos}: {e}");
            }
        }
        for pos in 0..head.len() {
            let mut bad = head.clone().into_bytes();
            bad[pos] ^= 1;
            let bad = String::from_utf8(bad).unwrap();
            let e = verify(&chain, &bad, None).unwrap_err();
            assert_eq!((e.line, e.index), (3, 5), "{pos}: {e}");
            assert!(matches!(e.fault, Fault::Head(_)), "{pos}: {e}");
        }
    }

    #[test]
    fn faults_say_what_was_changed() {
        let key = NodeKey::from_seed(&[7; 32]);
        let c = sample();
        let chain = c.render();
        let head = Head::sign(&c, &key).render();
        let lines: Vec<String> = chain.lines().map(String::from).collect();
        let join = |ls: &[String]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();

        // The data of entry 2 changed.
        let mut ls = lines.clone();
        ls[1] = ls[1].replace(" -", " 00");
        let e = verify(&join(&ls), &head, None).unwrap_err();
        assert_eq!((e.line, e.index, e.fault), (2, 2, Fault::Data), "{e}");

        // The hash of entry 1 changed.
        let mut ls = lines.clone();
        let h = &c.links()[0].hash;
        ls[0] = ls[0].replace(&crate::cap::hex(h), &crate::cap::hex(&[9; 32]));
        let e = verify(&join(&ls), &head, None).unwrap_err();
        assert_eq!((e.line, e.index, e.fault), (1, 1, Fault::Hash), "{e}");

        // The last hash changed: the head no longer chains from it.
        let mut ls = lines.clone();
        let h = &c.links()[2].hash;
        ls[2] = ls[2].replace(&crate::cap::hex(h), &crate::cap::hex(&[9; 32]));
        let e = verify(&join(&ls), &head, None).unwrap_err();
        assert_eq!((e.line, e.index, e.fault), (3, 5, Fault::Hash), "{e}");

        // Entries swapped.
        let mut ls = lines.clone();
        ls.swap(0, 1);
        let e = verify(&join(&ls), &head, None).unwrap_err();
        assert_eq!((e.line, e.index), (1, 2), "{e}");

        // The last entry dropped.
        let e = verify(&join(&lines[..2]), &head, None).unwrap_err();
        assert_eq!(
            (e.line, e.index, e.fault),
            (2, 2, Fault::Head(HeadError::NotLast))
        );

        // Another node's key.
        let other = NodeKey::from_seed(&[8; 32]).public();
        let e = verify(&chain, &head, Some(&other)).unwrap_err();
        assert_eq!(e.fault, Fault::Head(HeadError::OtherKey));

        // Signed by another key than the one it names.
        let forged = Head {
            key: other,
            ..Head::sign(&c, &key)
        };
        let e = verify(&chain, &forged.render(), None).unwrap_err();
        assert_eq!(e.fault, Fault::Head(HeadError::Signature));
        assert!(e.to_string().contains("line 3 (entry 5)"), "{e}");
    }

    #[test]
    fn an_empty_chain_has_a_signed_genesis_head() {
        let key = NodeKey::from_seed(&[7; 32]);
        let head = Head::sign(&Chain::default(), &key).render();
        let v = verify("", &head, None).unwrap();
        assert_eq!((v.entries, v.head.index, v.head.hash), (0, 0, [0; 32]));
        let e = verify("\n", &head, None).unwrap_err();
        assert_eq!(e.line, 1);
        let other = Head::sign(&sample(), &key).render();
        let e = verify("", &other, None).unwrap_err();
        assert_eq!((e.line, e.index), (0, 0));
        assert!(e.to_string().contains("genesis"), "{e}");
    }
}
