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
//! ended by `\n`. The node keeps only the latest links ([`KEEP_LINKS`],
//! [`KEEP_BYTES`]); once it has dropped older ones the file starts with
//! the last dropped link as `INDEX TERM HASH base`, which the first entry
//! chains from. The file alone is enough to recompute every link it
//! holds; [`verify`] checks it against a signed head ([`super::head`]).

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::head::{Head, HeadError};
use crate::cap::PublicKey;
use crate::log::{Index, Term};

/// How many of the latest links the chain keeps.
pub const KEEP_LINKS: usize = 65_536;

/// How many command bytes the kept links may hold together. The chain is
/// part of the committed state, so it is in every snapshot: bounding it
/// bounds the snapshots.
pub const KEEP_BYTES: usize = 8 << 20;

/// One committed entry's place in the chain.
///
/// It keeps the entry's command bytes, so that `/proof/chain` can be checked
/// offline even for entries a snapshot has since replaced.
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
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// The last link the chain no longer keeps: the latest ones chain from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// Its index.
    pub index: Index,
    /// Its term.
    pub term: Term,
    /// The chain hash through it.
    pub hash: [u8; 32],
}

/// The chain so far: its latest links (at most [`KEEP_LINKS`] of them,
/// holding at most [`KEEP_BYTES`] of commands, and always the last), and
/// the base they chain from once older links were dropped.
///
/// What is dropped depends only on the entries, so every node of a
/// cluster keeps the same links.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    base: Option<Base>,
    links: VecDeque<Link>,
    /// The command bytes of `links`.
    bytes: usize,
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
    /// Extend the chain by a committed entry, dropping the oldest links
    /// beyond the bounds.
    pub fn push(&mut self, index: Index, term: Term, origin: u64, data: &[u8]) {
        let prev = self.head().1;
        let hash = next_hash(&prev, index, term, data);
        self.links.push_back(Link {
            index,
            term,
            origin,
            hash,
            data: data.to_vec(),
        });
        self.bytes += data.len();
        while self.links.len() > 1
            && (self.links.len() > KEEP_LINKS || self.bytes > KEEP_BYTES)
            && let Some(old) = self.links.pop_front()
        {
            self.bytes -= old.data.len();
            self.base = Some(Base {
                index: old.index,
                term: old.term,
                hash: old.hash,
            });
        }
    }

    /// The last link's index and hash (the base's when no link is kept,
    /// 0 and zeros when the chain is empty).
    pub fn head(&self) -> (Index, [u8; 32]) {
        match (self.links.back(), &self.base) {
            (Some(l), _) => (l.index, l.hash),
            (None, Some(b)) => (b.index, b.hash),
            (None, None) => (0, [0; 32]),
        }
    }

    /// The link the kept ones chain from, once older ones were dropped.
    pub fn base(&self) -> Option<&Base> {
        self.base.as_ref()
    }

    /// The kept links, oldest first.
    pub fn links(&self) -> impl ExactSizeIterator<Item = &Link> + DoubleEndedIterator {
        self.links.iter()
    }

    /// The kept links after `index`, oldest first.
    pub fn links_after(&self, index: Index) -> impl DoubleEndedIterator<Item = &Link> {
        let from = self.links.partition_point(|l| l.index <= index);
        self.links.range(from..)
    }

    /// The text of `/proof/chain`: the [`base_line`] when older links were
    /// dropped, then one [`line`] per kept link, oldest first.
    pub fn render(&self) -> String {
        let size: usize = self.links.iter().map(|l| 64 + 2 * l.data.len() + 48).sum();
        let mut out = String::with_capacity(size + 128);
        if let Some(b) = &self.base {
            push_base_line(&mut out, b);
        }
        for l in &self.links {
            push_line(&mut out, l);
        }
        out
    }
}

/// The first line of `/proof/chain` once older links were dropped:
/// `INDEX TERM HASH base`.
pub fn base_line(base: &Base) -> String {
    let mut out = String::new();
    push_base_line(&mut out, base);
    out
}

fn push_base_line(out: &mut String, b: &Base) {
    use core::fmt::Write as _;
    let _ = write!(out, "{} {} ", b.index, b.term);
    crate::hex::push(out, &b.hash);
    out.push_str(" base\n");
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
    crate::hex::push(out, &l.hash);
    out.push(' ');
    if l.data.is_empty() {
        out.push('-');
    } else {
        crate::hex::push(out, &l.data);
    }
    out.push('\n');
}

pub use crate::hex::{decode as unhex, decode32 as unhex32, push as push_hex};

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
    /// How many entries the chain holds (its base line not counted).
    pub entries: usize,
    /// The base line the entries chain from, if the file has one.
    pub base: Option<Base>,
    /// The signed head.
    pub head: Head,
}

/// What is wrong with an entry of an exported chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The line is not `INDEX TERM HASH DATA` (or, first, `INDEX TERM
    /// HASH base`) in the one spelling allowed.
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
    let hash = crate::hex::decode32(h).ok_or("the hash is not 64 lower-case hex digits")?;
    let data = match d {
        "-" => Vec::new(),
        _ => match crate::hex::decode(d) {
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

/// A base line, `INDEX TERM HASH base`; `None` when `text` is not one
/// (it may still be an entry line).
fn parse_base(text: &str) -> Option<Result<Base, &'static str>> {
    let rest = text.strip_suffix(" base")?;
    let mut fields = rest.split(' ');
    let (Some(i), Some(t), Some(h), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Some(Err("a base line is INDEX TERM HASH base"));
    };
    let parsed = (|| {
        let index = parse_decimal(i).ok_or("the index is not a decimal number")?;
        if index == 0 {
            return Err("index 0 is the genesis, not a base");
        }
        let term = parse_decimal(t).ok_or("the term is not a decimal number")?;
        let hash = crate::hex::decode32(h).ok_or("the hash is not 64 lower-case hex digits")?;
        Ok(Base { index, term, hash })
    })();
    Some(parsed)
}

/// The index a line claims, if its first field reads as one.
fn claimed_index(text: &str) -> Index {
    text.split(' ').next().and_then(parse_decimal).unwrap_or(0)
}

/// Check an exported `/proof/chain` and `/proof/head`: every line
/// well-formed, indexes increasing and terms not decreasing, every hash
/// recomputed from the one before (the base line's, or 32 zero bytes
/// before the first when the file has none), the
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
    let malformed = |n: usize, text: &str, why| ChainError {
        line: n + 1,
        index: claimed_index(text),
        fault: Fault::Malformed(why),
    };
    // A base line may open the file; entry lines are numbered after it.
    let mut base = None;
    let mut first = 0;
    if let Some(text) = lines.first()
        && let Some(b) = parse_base(text)
    {
        let b = b.map_err(|why| malformed(0, text, why))?;
        prev_hash = b.hash;
        prev = Some((b.index, b.term));
        base = Some(b);
        first = 1;
    }
    let mut parsed: Vec<Parsed> = Vec::with_capacity(lines.len());
    // Parse and order-check everything first, so a hash fault can look at
    // the line after it.
    for (n, text) in lines.iter().enumerate().skip(first) {
        if parse_base(text).is_some() {
            return Err(malformed(n, text, "a base line can only be the first"));
        }
        let p = parse_line(text).map_err(|why| malformed(n, text, why))?;
        parsed.push(p);
    }
    for (n, p) in parsed.iter().enumerate() {
        let err = |fault| ChainError {
            line: first + n + 1,
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
        entries: parsed.len(),
        base,
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
        assert_eq!(a.links().next().unwrap().hash, first);
        assert_eq!(a.head().0, 5);
        let mut c = Chain::default();
        c.push(1, 1, 0, b"mkdir y");
        assert_ne!(c.links().next().unwrap().hash, first);
    }

    #[test]
    fn lines_are_index_term_hash_data() {
        let c = sample();
        let text = c.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            format!(
                "1 1 {} 6d6b6469722078",
                crate::hex::encode(&c.links().next().unwrap().hash)
            )
        );
        assert!(lines[1].ends_with(" -"), "{}", lines[1]);
        assert!(lines[2].starts_with("5 2 "));
        assert!(lines[2].ends_with(" 77726974652000ff"));
        assert!(text.ends_with('\n'));
        assert_eq!(line(c.links().nth(2).unwrap()), format!("{}\n", lines[2]));
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
        let h = &c.links().next().unwrap().hash;
        ls[0] = ls[0].replace(&crate::hex::encode(h), &crate::hex::encode(&[9; 32]));
        let e = verify(&join(&ls), &head, None).unwrap_err();
        assert_eq!((e.line, e.index, e.fault), (1, 1, Fault::Hash), "{e}");

        // The last hash changed: the head no longer chains from it.
        let mut ls = lines.clone();
        let h = &c.links().nth(2).unwrap().hash;
        ls[2] = ls[2].replace(&crate::hex::encode(h), &crate::hex::encode(&[9; 32]));
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
    fn old_links_are_dropped_and_the_rest_still_verifies_from_the_base() {
        let key = NodeKey::from_seed(&[7; 32]);
        let mut full = Vec::new();
        let mut c = Chain::default();
        let big = alloc::vec![7u8; KEEP_BYTES / 4];
        for i in 1..=10u64 {
            c.push(i, 1, 0, &big);
            full.push(c.head());
        }
        // Four links fill KEEP_BYTES exactly: they are kept, and the base
        // is the sixth link.
        assert_eq!(c.links().len(), 4);
        assert!(c.bytes <= KEEP_BYTES);
        let base = *c.base().unwrap();
        assert_eq!((base.index, base.hash), full[5]);
        assert_eq!(c.head(), full[9]);
        let chain = c.render();
        assert!(chain.starts_with(&base_line(&base)));
        assert!(base_line(&base).ends_with(" base\n"));
        let head = Head::sign(&c, &key).render();
        let v = verify(&chain, &head, Some(&key.public())).unwrap();
        assert_eq!((v.entries, v.base), (4, Some(base)));

        // The copy decoded from a snapshot drops the same way.
        let mut back: Chain = postcard::from_bytes(&postcard::to_allocvec(&c).unwrap()).unwrap();
        back.push(11, 1, 0, b"x");
        c.push(11, 1, 0, b"x");
        assert_eq!(back, c);

        // A changed base hash breaks the first entry after it; a base line
        // anywhere but first is refused.
        let mut bad = chain.clone();
        let h = crate::hex::encode(&base.hash);
        bad = bad.replacen(&h, &crate::hex::encode(&[1; 32]), 1);
        let e = verify(&bad, &head, None).unwrap_err();
        assert_eq!((e.line, e.index), (2, 7), "{e}");
        let mut lines: Vec<&str> = chain.lines().collect();
        lines.swap(0, 1);
        let moved: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let e = verify(&moved, &head, None).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(matches!(e.fault, Fault::Malformed(_)), "{e}");
    }

    #[test]
    fn a_count_of_links_bounds_the_chain_too() {
        let mut c = Chain::default();
        for i in 1..=(KEEP_LINKS as u64 + 5) {
            c.push(i, 1, 0, b"");
        }
        assert_eq!(c.links().len(), KEEP_LINKS);
        assert_eq!(c.base().unwrap().index, 5);
        assert_eq!(c.links().next().unwrap().index, 6);
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
