//! The ctl files of `/swarm`: `/swarm/ctl` (join, leave, voters, remove)
//! and each member's `/swarm/nodes/ID/ctl` (drain, undrain, remove,
//! leave). One change per write: each is a separate step of the log.

use alloc::format;
use alloc::string::String;

use crate::cap::Right;
use crate::ctl::{self, CtlLine, Verb};
use crate::error::Error;
use crate::file::MAX_OBJ;
use crate::swarm::state::{NodeRecord, SwarmCmd, check_voters};

/// Where errors about `/swarm/ctl` say they come from.
pub const OBJECT: &str = "/swarm/ctl";

/// The verbs of `/swarm/ctl`.
pub const CTL_VERBS: &[Verb] = &[
    Verb {
        name: "join",
        min_args: 0,
        max_args: 0,
        keys: &["id", "key", "addr", "gossip", "raft", "name"],
        usage: "join id=ID key=PUBKEYHEX addr=HOST:PORT gossip=HOST:PORT raft=HOST:PORT [name=NAME]",
    },
    Verb {
        name: "leave",
        min_args: 0,
        max_args: 0,
        keys: &[],
        usage: "leave",
    },
    Verb {
        name: "voters",
        min_args: 1,
        max_args: 1,
        keys: &[],
        usage: "voters N",
    },
    Verb {
        name: "remove",
        min_args: 1,
        max_args: 1,
        keys: &[],
        usage: "remove ID",
    },
];

/// The verbs of `/swarm/nodes/ID/ctl`.
pub const NODE_VERBS: &[Verb] = &[
    Verb {
        name: "drain",
        min_args: 0,
        max_args: 0,
        keys: &[],
        usage: "drain",
    },
    Verb {
        name: "undrain",
        min_args: 0,
        max_args: 0,
        keys: &[],
        usage: "undrain",
    },
    Verb {
        name: "remove",
        min_args: 0,
        max_args: 0,
        keys: &[],
        usage: "remove",
    },
    Verb {
        name: "leave",
        min_args: 0,
        max_args: 0,
        keys: &[],
        usage: "leave",
    },
    Verb {
        name: "label",
        min_args: 0,
        max_args: usize::MAX,
        keys: &[],
        usage: "label KEY=VALUE (KEY= removes it)",
    },
];

/// Most labels one node holds.
pub const MAX_LABELS: usize = 32;

/// Whether `key=value` is a label a node may hold: a key of 1 to 63 of
/// `a-z A-Z 0-9 . _ -` and a value of at most 63 of the same (empty
/// removes the label).
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    let ok = |s: &str| {
        s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if key.is_empty() || !ok(key) {
        return Err(format!("label key \"{key}\": 1 to 63 of A-Z a-z 0-9 . _ -"));
    }
    if !ok(value) {
        return Err(format!(
            "label {key}=\"{value}\": a value is at most 63 of A-Z a-z 0-9 . _ -"
        ));
    }
    Ok(())
}

/// What a write to a swarm ctl file asks for, before the caller fills in
/// what only the node knows (its own id for `leave`, the time, a fresh
/// swarm id).
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    /// A change that needs nothing more.
    Cmd(SwarmCmd),
    /// `join …`: a node to admit.
    Join(NodeRecord),
    /// `leave` on `/swarm/ctl`: this node leaves.
    LeaveMe,
}

impl Asked {
    /// The right the change needs over `/swarm`: admitting a node needs
    /// only `create` (what a join token grants), the rest `admin`.
    pub fn right(&self) -> Right {
        match self {
            Asked::Join(_) => Right::Create,
            _ => Right::Admin,
        }
    }
}

fn one<'a>(object: &str, table: &[Verb], data: &'a [u8]) -> Result<CtlLine<'a>, Error> {
    ctl::parse_one(object, table, data, "the swarm")
}

/// Parse a write to `/swarm/ctl`.
pub fn parse(data: &[u8]) -> Result<Asked, Error> {
    let line = one(OBJECT, CTL_VERBS, data)?;
    let usage = CTL_VERBS
        .iter()
        .find(|v| v.name == line.verb)
        .map_or("", |v| v.usage);
    Ok(match line.verb {
        "join" => Asked::Join(NodeRecord {
            id: id(&line, need(&line, "id", usage)?)?,
            key: key(&line, need(&line, "key", usage)?)?,
            addr: addr(&line, "addr", usage)?,
            gossip: addr(&line, "gossip", usage)?,
            raft: addr(&line, "raft", usage)?,
            name: match line.get("name") {
                Some(n) if !crate::name::is_object(n) => {
                    return Err(invalid(&line, crate::name::bad_object("name", n)));
                }
                Some(n) => String::from(n),
                None => String::new(),
            },
        }),
        "leave" => Asked::LeaveMe,
        "voters" => {
            let v = line.args[0];
            let n: u8 = v.parse().map_err(|_| {
                invalid(
                    &line,
                    format!("\"{v}\" is not a number of voters; usage: {usage}"),
                )
            })?;
            check_voters(n)?;
            Asked::Cmd(SwarmCmd::Voters { n })
        }
        _ => Asked::Cmd(SwarmCmd::Remove {
            id: id(&line, line.args[0])?,
        }),
    })
}

/// Parse a write to `/swarm/nodes/ID/ctl` for member `node`.
pub fn parse_node(node: u64, data: &[u8]) -> Result<Asked, Error> {
    let object = format!("/swarm/nodes/{node}/ctl");
    let line = one(&object, NODE_VERBS, data)?;
    Ok(Asked::Cmd(match line.verb {
        "drain" => SwarmCmd::Drain { id: node, on: true },
        "undrain" => SwarmCmd::Drain {
            id: node,
            on: false,
        },
        "remove" => SwarmCmd::Remove { id: node },
        "label" => {
            let bad = |why: String| Error::Invalid(format!("{object}: label: {why}"));
            let (key, value) = match line.rest.split_once('=') {
                Some((k, v)) if !line.rest.contains(char::is_whitespace) => (k, v),
                _ => {
                    return Err(bad(format!(
                        "\"{}\": usage: label KEY=VALUE (KEY= removes it)",
                        line.rest
                    )));
                }
            };
            check_label(key, value).map_err(bad)?;
            SwarmCmd::Label {
                id: node,
                key: String::from(key),
                value: (!value.is_empty()).then(|| String::from(value)),
            }
        }
        _ => SwarmCmd::Leave { id: node },
    }))
}

fn invalid(line: &CtlLine<'_>, why: String) -> Error {
    Error::Invalid(format!("{OBJECT}: {}: {why}", line.verb))
}

fn need<'a>(line: &CtlLine<'a>, key: &str, usage: &str) -> Result<&'a str, Error> {
    line.kv
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .ok_or_else(|| invalid(line, format!("{key}= is missing; usage: {usage}")))
}

fn addr(line: &CtlLine<'_>, key: &str, usage: &str) -> Result<String, Error> {
    let v = need(line, key, usage)?;
    if !ctl::is_host_port(v) {
        return Err(invalid(
            line,
            format!(
                "{key}=\"{v}\" is not HOST:PORT (a host name or address, a colon, a port from 1 to 65535)"
            ),
        ));
    }
    Ok(String::from(v))
}

fn key(line: &CtlLine<'_>, v: &str) -> Result<[u8; 32], Error> {
    ctl::parse_key(v).ok_or_else(|| {
        invalid(
            line,
            format!(
                "key=\"{v}\" is not an ed25519 public key: 64 hex digits (the node's /cap/key)"
            ),
        )
    })
}

fn id(line: &CtlLine<'_>, v: &str) -> Result<u64, Error> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 && n <= MAX_OBJ => Ok(n),
        _ => Err(invalid(
            line,
            format!("\"{v}\" is not a node id: a whole number from 1 to {MAX_OBJ}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn err(text: &str) -> String {
        match parse(text.as_bytes()) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("parsed {c:?}"),
        }
    }

    #[test]
    fn verbs_parse() {
        let k = "ab".repeat(32);
        let j = parse(format!("join id=4 key={k} addr=h:1 gossip=h:2 raft=h:3 name=n4").as_bytes())
            .unwrap();
        let Asked::Join(r) = j else { panic!() };
        assert_eq!((r.id, r.key, r.name.as_str()), (4, [0xab; 32], "n4"));
        assert_eq!(
            parse(b"voters 5"),
            Ok(Asked::Cmd(SwarmCmd::Voters { n: 5 }))
        );
        assert_eq!(
            parse(b"remove 3"),
            Ok(Asked::Cmd(SwarmCmd::Remove { id: 3 }))
        );
        assert_eq!(parse(b"leave"), Ok(Asked::LeaveMe));
        assert_eq!(
            parse_node(3, b"drain"),
            Ok(Asked::Cmd(SwarmCmd::Drain { id: 3, on: true }))
        );
    }

    #[test]
    fn bad_input_is_named() {
        assert!(err("votrs 3").contains("\"votrs\""), "{}", err("votrs 3"));
        assert!(err("voters 4").contains("odd"));
        assert!(err("voters x").contains("\"x\""));
        assert!(err("remove 0").contains("node id"));
        assert!(err("join id=4").contains("key= is missing"));
        assert!(err("voters 3\nvoters 5").contains("one change at a time"));
        let e = parse_node(2, b"explode").unwrap_err().to_string();
        assert!(
            e.contains("/swarm/nodes/2/ctl") && e.contains("explode"),
            "{e}"
        );
    }
}
