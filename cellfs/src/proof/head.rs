//! `/proof/head`: the chain's last link, signed by the node's key.
//!
//! ```text
//! index N
//! hash HEX
//! key HEX
//! sig HEX
//! ```
//!
//! `index` and `hash` are the last entry's (0 and 64 zeros for an empty
//! chain), `key` the node's ed25519 public key, `sig` its signature over
//! [`message`]: `"cell0 proof head v1\0"` ‖ index (8 bytes, little-endian)
//! ‖ hash. Every node of a cluster holds the same chain, and each signs
//! the head with its own key. See proof(3).

use alloc::format;
use alloc::string::String;
use core::fmt;

use super::chain::{Chain, parse_decimal};
use crate::cap::{NodeKey, PublicKey, token::verify_signature};
use crate::hex;
use crate::log::Index;

/// What a head's signature starts with, so it cannot be taken for a
/// signature over anything else the node signs.
pub const DOMAIN: &[u8; 20] = b"cell0 proof head v1\0";

/// The bytes a head's signature covers.
pub fn message(index: Index, hash: &[u8; 32]) -> [u8; 60] {
    let mut m = [0u8; 60];
    m[..20].copy_from_slice(DOMAIN);
    m[20..28].copy_from_slice(&index.to_le_bytes());
    m[28..].copy_from_slice(hash);
    m
}

/// A signed head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The last entry's index (0 for an empty chain).
    pub index: Index,
    /// The chain hash through it (zeros for an empty chain).
    pub hash: [u8; 32],
    /// The signing node's public key.
    pub key: PublicKey,
    /// The signature over [`message`].
    pub sig: [u8; 64],
}

/// What is wrong with a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// It is not the four lines `index`, `hash`, `key`, `sig`.
    Malformed(&'static str),
    /// Its index and hash are not those of the chain's last entry.
    NotLast,
    /// It is signed by another key than the one asked for.
    OtherKey,
    /// The signature does not verify under its key.
    Signature,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Malformed(why) => write!(f, "malformed: {why}"),
            HeadError::NotLast => f.write_str(
                "its index and hash are not the last entry's (the chain or the head was changed, or the chain grew between the two reads)",
            ),
            HeadError::OtherKey => f.write_str("signed by another key than the one given"),
            HeadError::Signature => f.write_str("the signature does not verify under its key"),
        }
    }
}

impl Head {
    /// The head of `chain`, signed with `key`.
    pub fn sign(chain: &Chain, key: &NodeKey) -> Head {
        let (index, hash) = chain.head();
        Head {
            index,
            hash,
            key: key.public(),
            sig: key.sign(&message(index, &hash)),
        }
    }

    /// Whether the signature verifies under the head's own key.
    pub fn verify(&self) -> bool {
        verify_signature(&self.key, &message(self.index, &self.hash), &self.sig)
    }

    /// The text of `/proof/head`.
    pub fn render(&self) -> String {
        format!(
            "index {}\nhash {}\nkey {}\nsig {}\n",
            self.index,
            hex::encode(&self.hash),
            hex::encode(&self.key),
            hex::encode(&self.sig)
        )
    }

    /// Read a head's text: exactly what [`Head::render`] writes (it does
    /// not check the signature).
    pub fn parse(text: &str) -> Result<Head, HeadError> {
        let mut lines = text.split('\n');
        let mut field = |name: &'static str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(' '))
                .ok_or(HeadError::Malformed(
                    "not the lines index, hash, key, sig, in that order",
                ))
        };
        let index = parse_decimal(field("index")?)
            .ok_or(HeadError::Malformed("the index is not a decimal number"))?;
        let hash = hex::decode32(field("hash")?).ok_or(HeadError::Malformed(
            "the hash is not 64 lower-case hex digits",
        ))?;
        let key = hex::decode32(field("key")?).ok_or(HeadError::Malformed(
            "the key is not 64 lower-case hex digits",
        ))?;
        let sig: [u8; 64] = hex::decode(field("sig")?)
            .and_then(|s| s.try_into().ok())
            .ok_or(HeadError::Malformed(
                "the sig is not 128 lower-case hex digits",
            ))?;
        let head = Head {
            index,
            hash,
            key,
            sig,
        };
        if head.render() != text {
            return Err(HeadError::Malformed(
                "extra text, or the last line does not end with a newline",
            ));
        }
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_signed_over_the_domain_index_and_hash() {
        let key = NodeKey::from_seed(&[3; 32]);
        let mut c = Chain::default();
        c.push(1, 1, 0, b"x");
        let h = Head::sign(&c, &key);
        assert_eq!((h.index, h.hash), c.head());
        assert!(h.verify());
        assert!(verify_signature(
            &key.public(),
            &message(1, &c.head().1),
            &h.sig
        ));
        let m = message(1, &h.hash);
        assert!(m.starts_with(b"cell0 proof head v1\0"));
        assert_eq!(&m[20..28], &1u64.to_le_bytes());
        // Deterministic (ed25519 is), and other keys sign differently.
        assert_eq!(Head::sign(&c, &key), h);
        assert_ne!(Head::sign(&c, &NodeKey::from_seed(&[4; 32])).sig, h.sig);
        let moved = Head {
            index: 2,
            ..h.clone()
        };
        assert!(!moved.verify());
    }

    #[test]
    fn a_head_renders_and_parses_back() {
        let key = NodeKey::from_seed(&[3; 32]);
        let h = Head::sign(&Chain::default(), &key);
        let text = h.render();
        assert!(text.starts_with(&format!(
            "index 0\nhash {}\nkey {}\nsig ",
            "0".repeat(64),
            hex::encode(&key.public())
        )));
        assert_eq!(text.lines().count(), 4);
        assert_eq!(Head::parse(&text), Ok(h));
        for bad in [
            text.trim_end(),
            &format!("{text}\n"),
            &text.replace("index 0", "index 00"),
            &text.replace("index", "Index"),
            &text.to_uppercase(),
        ] {
            assert!(
                matches!(Head::parse(bad), Err(HeadError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
