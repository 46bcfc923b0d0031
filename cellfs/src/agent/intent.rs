//! An agent's declared intent: what it means to touch, as `RIGHTS PATH`
//! entries, each rights (the letters of capabilities) over a subtree.
//!
//! An intent is never wider than what declared it: the capability of the
//! writer, and for a sub-agent its parent's intent. Both checks ask the
//! same question of each entry: do the wider side's entries whose subtree
//! holds this path grant all of its rights?

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use crate::cap::{Grant, Right, Rights, scope};

/// The most entries one intent may hold.
pub const MAX_ENTRIES: usize = 64;

/// One entry: `rights` over the subtree at `path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reach {
    /// What the agent means to do there.
    pub rights: Rights,
    /// A normalised absolute path in the tree.
    pub path: String,
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.rights, self.path)
    }
}

/// An intent: entries sorted by path, each path once. Empty: the agent
/// means to touch nothing.
pub type Intent = Vec<Reach>;

/// Every right, to ask of each whether some entry grants it.
const RIGHTS: [Right; 5] = [
    Right::Read,
    Right::Write,
    Right::Create,
    Right::Remove,
    Right::Admin,
];

/// Parse the words after `intent` (or after a child's name in `spawn`):
/// `none` alone, or one or more `RIGHTS PATH` pairs. The error says what
/// is wrong, for the caller to prefix with the object and verb.
pub fn parse(words: &[&str]) -> Result<Intent, String> {
    if words == ["none"] {
        return Ok(Intent::new());
    }
    if words.is_empty() || !words.len().is_multiple_of(2) {
        return Err(String::from(
            "expected RIGHTS PATH pairs (rw /chan/jobs r /cap) or none",
        ));
    }
    if words.len() / 2 > MAX_ENTRIES {
        return Err(format!("an intent holds at most {MAX_ENTRIES} entries"));
    }
    let mut intent = Intent::new();
    for pair in words.chunks(2) {
        let (letters, path) = (pair[0], pair[1]);
        let rights = Rights::parse(letters).map_err(|c| {
            format!(
                "\"{letters}\": '{c}' is not a right; rights are letters of r (read), w (write), c (create), d (remove), a (admin)"
            )
        })?;
        if rights == Rights::NONE {
            return Err(format!(
                "\"{letters} {path}\" grants nothing; name at least one of r, w, c, d, a"
            ));
        }
        let path = scope::normalize(path).map_err(|e| format!("\"{path}\": {e}"))?;
        if intent.iter().any(|r| r.path == path) {
            return Err(format!(
                "{path} is named twice; write all its rights once, as in \"rw {path}\""
            ));
        }
        intent.push(Reach { rights, path });
    }
    intent.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(intent)
}

/// The first entry of `inner` that `outer` does not cover, if any. An
/// entry is covered when, for each of its rights, some entry of `outer`
/// whose subtree holds its path grants that right.
pub fn first_outside<'a>(inner: &'a [Reach], outer: &[Reach]) -> Option<&'a Reach> {
    inner.iter().find(|r| {
        RIGHTS.iter().any(|&right| {
            r.rights.has(right)
                && !outer
                    .iter()
                    .any(|o| o.rights.has(right) && scope::contains(&o.path, &r.path))
        })
    })
}

/// Whether some entry of `intent` whose subtree holds `path` grants
/// `right`: the question asked of every operation an agent makes.
pub fn grants(intent: &[Reach], path: &str, right: Right) -> bool {
    intent
        .iter()
        .any(|r| r.rights.has(right) && scope::contains(&r.path, path))
}

/// Whether `path` is a proper ancestor of an entry's path: a directory
/// the agent passes through (and may list) on its way to its entries.
pub fn leads_to(intent: &[Reach], path: &str) -> bool {
    intent.iter().any(|r| scope::leads_to(path, &r.path))
}

/// Whether an agent may see `path` at all: inside an entry's subtree, or
/// on the way to one.
pub fn visible(intent: &[Reach], path: &str) -> bool {
    intent
        .iter()
        .any(|r| scope::contains(&r.path, path) || scope::leads_to(path, &r.path))
}

/// The first entry of `intent` that capability `grant` does not reach:
/// a path outside its scope, or a right it lacks.
pub fn beyond_grant<'a>(intent: &'a [Reach], grant: &Grant) -> Option<&'a Reach> {
    intent
        .iter()
        .find(|r| !scope::contains(&grant.scope, &r.path) || !r.rights.within(grant.rights))
}

/// The path an intent names to ask for the host's network. There is no
/// `/net` in the tree: for the guard it is a path like any other that
/// does not exist.
pub const NET: &str = "/net";

/// Whether an agent with `intent` may use the host's network: its intent
/// covers `rw /net` (as it would cover a sub-agent's entry: read and
/// write each granted by an entry whose subtree holds `/net`), as
/// `rw /net` and `rwcda /` do. Without it the runner gives the agent's
/// process no network.
pub fn wants_network(intent: &[Reach]) -> bool {
    grants(intent, NET, Right::Read) && grants(intent, NET, Right::Write)
}

/// The intent as `RIGHTS PATH` words on one line (`none` when empty).
pub fn words(intent: &[Reach]) -> String {
    if intent.is_empty() {
        return String::from("none");
    }
    let parts: Vec<String> = intent.iter().map(|r| format!("{r}")).collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(words: &str) -> Intent {
        let w: Vec<&str> = words.split_whitespace().collect();
        parse(&w).unwrap()
    }

    fn err(words: &str) -> String {
        let w: Vec<&str> = words.split_whitespace().collect();
        parse(&w).unwrap_err()
    }

    #[test]
    fn pairs_parse_sorted_and_print_back() {
        let x = i("r /chan/b rw /chan/a/");
        assert_eq!(words(&x), "rw /chan/a r /chan/b");
        assert!(i("none").is_empty());
        assert_eq!(words(&[]), "none");
    }

    #[test]
    fn bad_pairs_say_what_is_wrong() {
        assert!(err("").contains("expected RIGHTS PATH pairs"));
        assert!(err("rw").contains("expected RIGHTS PATH pairs"));
        assert!(err("rx /chan").contains("'x' is not a right"));
        assert!(err("- /chan").contains("grants nothing"));
        assert!(err("r chan").contains("absolute path"));
        assert!(err("r /chan/../cap").contains("'..'"));
        assert!(err("r /a w /a").contains("named twice"));
        let many = "r /a ".repeat(MAX_ENTRIES + 1);
        assert!(err(&many).contains("at most 64"));
    }

    #[test]
    fn covering_is_by_subtree_and_by_each_right() {
        let parent = i("r /chan w /chan/jobs");
        assert_eq!(first_outside(&i("rw /chan/jobs"), &parent), None);
        assert_eq!(first_outside(&i("r /chan/x/y"), &parent), None);
        assert_eq!(first_outside(&[], &parent), None);
        let wide = i("w /chan/other");
        assert_eq!(first_outside(&wide, &parent), Some(&wide[0]));
        let up = i("r /");
        assert_eq!(first_outside(&up, &parent), Some(&up[0]));
        let sibling = i("r /chanx");
        assert_eq!(first_outside(&sibling, &parent), Some(&sibling[0]));
    }

    #[test]
    fn an_agent_sees_its_subtrees_and_the_way_to_them() {
        let x = i("r /chan/in w /chan/out/data");
        assert!(grants(&x, "/chan/in", Right::Read));
        assert!(grants(&x, "/chan/in/data", Right::Read));
        assert!(!grants(&x, "/chan/in/data", Right::Write));
        assert!(grants(&x, "/chan/out/data", Right::Write));
        assert!(!grants(&x, "/chan/out", Right::Write));
        assert!(!grants(&x, "/chan/inx", Right::Read));
        for way in ["/", "/chan", "/chan/out"] {
            assert!(leads_to(&x, way), "{way}");
            assert!(visible(&x, way), "{way}");
        }
        assert!(!leads_to(&x, "/chan/in"));
        assert!(visible(&x, "/chan/in/data/x"));
        for hidden in ["/cap", "/chan/other", "/chan/out/ctl", "/chan/inx"] {
            assert!(!visible(&x, hidden), "{hidden}");
        }
        assert!(!visible(&[], "/"), "an empty intent sees nothing");
    }

    #[test]
    fn the_network_is_rw_over_net() {
        assert!(wants_network(&i("rw /net r /chan/in")));
        assert!(wants_network(&i("rwcda /")));
        assert!(wants_network(&i("r / w /net")), "rights add up");
        for no in [
            "none",
            "r /net",
            "w /net",
            "rw /net/x",
            "rw /netx",
            "rw /chan",
        ] {
            assert!(!wants_network(&i(no)), "{no}");
        }
    }

    #[test]
    fn a_grant_bounds_scope_and_rights() {
        let g = Grant {
            issuer: [0; 32],
            ids: alloc::vec![1],
            holder: String::from("alice"),
            scope: String::from("/chan"),
            rights: Rights::parse("rw").unwrap(),
            not_before: 0,
            expires: u64::MAX,
        };
        assert_eq!(beyond_grant(&i("rw /chan/a"), &g), None);
        assert!(beyond_grant(&i("rwc /chan/a"), &g).is_some());
        assert!(beyond_grant(&i("r /cap"), &g).is_some());
    }
}
