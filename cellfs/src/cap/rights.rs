//! What a capability lets its holder do: a set of rights.

use core::fmt;
use serde::{Deserialize, Serialize};

/// A set of rights, written as letters: `r` read, `w` write, `c` create,
/// `d` remove (delete), `a` admin (mint and revoke within the scope).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rights(u8);

/// One right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Right {
    /// Read files and list directories (`r`).
    Read,
    /// Write files, including ctl files (`w`).
    Write,
    /// Create files and directories (`c`).
    Create,
    /// Remove files and directories (`d`).
    Remove,
    /// Mint and revoke capabilities within the scope (`a`).
    Admin,
}

const LETTERS: [(char, Right); 5] = [
    ('r', Right::Read),
    ('w', Right::Write),
    ('c', Right::Create),
    ('d', Right::Remove),
    ('a', Right::Admin),
];

impl Right {
    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The right's letter.
    pub fn letter(self) -> char {
        LETTERS
            .iter()
            .find(|(_, r)| *r == self)
            .map_or('?', |(c, _)| *c)
    }

    /// The right's name, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Write => "write",
            Right::Create => "create",
            Right::Remove => "remove",
            Right::Admin => "admin",
        }
    }
}

impl Rights {
    /// No rights.
    pub const NONE: Rights = Rights(0);
    /// Every right (`rwcda`): what the owner holds.
    pub const ALL: Rights = Rights(0b1_1111);

    /// Parse letters such as `rw` or `rwcda`; `-` alone means none.
    pub fn parse(text: &str) -> Result<Rights, char> {
        if text == "-" {
            return Ok(Rights::NONE);
        }
        let mut r = Rights::NONE;
        for c in text.chars() {
            let Some((_, right)) = LETTERS.iter().find(|(l, _)| *l == c) else {
                return Err(c);
            };
            r.0 |= right.bit();
        }
        Ok(r)
    }

    /// Whether `right` is in the set.
    pub fn has(self, right: Right) -> bool {
        self.0 & right.bit() != 0
    }

    /// Whether every right of `self` is also in `other`.
    pub fn within(self, other: Rights) -> bool {
        self.0 & !other.0 == 0
    }

    /// The rights in either set.
    pub fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }

    /// The raw bits (for encodings).
    pub fn bits(self) -> u8 {
        self.0
    }
}

impl From<Right> for Rights {
    fn from(right: Right) -> Rights {
        Rights(right.bit())
    }
}

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("-");
        }
        for (c, r) in LETTERS {
            if self.has(r) {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn letters_round_trip_and_order() {
        assert_eq!(Rights::parse("wr").unwrap().to_string(), "rw");
        assert_eq!(Rights::ALL.to_string(), "rwcda");
        assert_eq!(Rights::parse("-").unwrap(), Rights::NONE);
        assert_eq!(Rights::parse("rx"), Err('x'));
        assert!(
            Rights::parse("r")
                .unwrap()
                .within(Rights::parse("rw").unwrap())
        );
        assert!(
            !Rights::parse("ra")
                .unwrap()
                .within(Rights::parse("rw").unwrap())
        );
    }
}
