//! A channel's ctl verbs and how their lines become [`ChanOp`]s.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::ctl::{self, CtlLine, Verb};
use crate::error::Error;

use super::check_name;
use super::qos::{MAX_RATE, Qos};
use super::state::{ChanCmd, ChanOp, Full, MAX_AGE, MAX_RETAIN};

const fn verb(
    name: &'static str,
    args: usize,
    keys: &'static [&'static str],
    usage: &'static str,
) -> Verb {
    Verb {
        name,
        min_args: args,
        max_args: args,
        keys,
        usage,
    }
}

/// The verbs of a channel's `ctl`.
pub const CTL_VERBS: &[Verb] = &[
    verb("clear", 0, &[], "clear"),
    verb("close", 0, &[], "close"),
    verb("open", 0, &[], "open"),
    verb(
        "retain",
        0,
        &["count", "age"],
        "retain [count=N] [age=DURATION]",
    ),
    Verb {
        name: "qos",
        min_args: 0,
        max_args: 1,
        keys: &["rate", "burst"],
        usage: "qos rate=R [burst=B] | qos off",
    },
    // `full=block` and `full block` alike (chan(3)).
    Verb {
        name: "full",
        min_args: 0,
        max_args: 1,
        keys: &["full"],
        usage: "full=block|refuse",
    },
    verb("group", 1, &[], "group NAME"),
    verb("ungroup", 1, &[], "ungroup NAME"),
    verb("connect", 1, &[], "connect CHANNEL"),
    verb("disconnect", 1, &[], "disconnect CHANNEL"),
];

/// The ops of a ctl write to channel `name`, every line checked.
pub fn parse(name: &str, data: &[u8]) -> Result<Vec<ChanOp>, Error> {
    let object = format!("chan {name}");
    ctl::parse(&object, CTL_VERBS, data)?
        .iter()
        .map(|l| op(&object, l))
        .collect()
}

fn op(object: &str, l: &CtlLine<'_>) -> Result<ChanOp, Error> {
    let inv = |what: String| Error::Invalid(format!("{object}: {}: {what}", l.verb));
    Ok(match l.verb {
        "clear" => ChanOp::Clear,
        "close" => ChanOp::Close,
        "open" => ChanOp::Open,
        "retain" => {
            let count = l.get_u64(object, "count")?;
            if count.is_some_and(|c| c == 0 || c > u64::from(MAX_RETAIN)) {
                return Err(inv(format!(
                    "count={} is out of range: 1 to {MAX_RETAIN}",
                    count.unwrap_or_default()
                )));
            }
            let age = match l.get("age") {
                None => None,
                Some(a) => Some(
                    ctl::parse_duration(a)
                        .filter(|&s| s <= MAX_AGE)
                        .ok_or_else(|| {
                            inv(format!(
                                "age=\"{a}\" is not a duration of at most ten years (0 for none, 90s, 10m, 2h, 7d)"
                            ))
                        })?,
                ),
            };
            if count.is_none() && age.is_none() {
                return Err(inv(String::from(
                    "say count=N, age=DURATION or both; usage: retain [count=N] [age=DURATION]",
                )));
            }
            ChanOp::Retain {
                count: count.map(|c| c as u32),
                age,
            }
        }
        "qos" => match (l.args.first(), l.kv.is_empty()) {
            (Some(&"off"), true) => ChanOp::Qos(None),
            (Some(w), _) => {
                return Err(inv(format!(
                    "unexpected argument \"{w}\"; usage: qos rate=R [burst=B] | qos off"
                )));
            }
            (None, _) => {
                let range = |key: &str, v: Option<u64>| match v {
                    Some(n) if (1..=u64::from(MAX_RATE)).contains(&n) => Ok(n as u32),
                    Some(n) => Err(inv(format!(
                        "{key}={n} is out of range: 1 to {MAX_RATE} messages"
                    ))),
                    None => Err(inv(format!(
                        "missing {key}=; usage: qos rate=R [burst=B] | qos off"
                    ))),
                };
                let rate = range("rate", l.get_u64(object, "rate")?)?;
                let burst = match l.get("burst") {
                    None => rate,
                    Some(_) => range("burst", l.get_u64(object, "burst")?)?,
                };
                ChanOp::Qos(Some(Qos { rate, burst }))
            }
        },
        "full" => match (l.get("full"), l.args.first()) {
            (Some(_), Some(_)) => {
                return Err(inv(String::from(
                    "full given twice; usage: full=block|refuse (or full block|refuse)",
                )));
            }
            (v, a) => match v.or(a.copied()) {
                Some("block") => ChanOp::Full(Full::Block),
                Some("refuse") => ChanOp::Full(Full::Refuse),
                Some(other) => {
                    return Err(inv(format!(
                        "full=\"{other}\": expected full=block or full=refuse"
                    )));
                }
                None => return Err(inv(String::from("usage: full=block|refuse"))),
            },
        },
        verb => {
            let arg = l.args.first().copied().unwrap_or_default();
            check_name(arg).map_err(|e| inv(alloc::string::ToString::to_string(&e)))?;
            let arg = String::from(arg);
            match verb {
                "group" => ChanOp::Group(arg),
                "ungroup" => ChanOp::Ungroup(arg),
                "connect" => ChanOp::Connect(arg),
                _ => ChanOp::Disconnect(arg),
            }
        }
    })
}

/// As `/raft/log` shows it, in the syntax of the write that made it:
/// `mkdir /chan/NAME`, `write /chan/NAME/data N bytes sender=…`,
/// `/chan/NAME/ctl VERB…`. Payloads are never shown, only their length.
impl core::fmt::Display for ChanCmd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ChanCmd::Create { name, .. } => write!(f, "mkdir /chan/{name}"),
            ChanCmd::Remove { name } => write!(f, "rm /chan/{name}"),
            ChanCmd::Send { name, stamp, data } => write!(
                f,
                "write /chan/{name}/data {} bytes sender={}",
                data.len(),
                stamp.sender
            ),
            ChanCmd::Take { name, group, .. } => write!(f, "read /chan/{name}/groups/{group}"),
            ChanCmd::Unread { name, group, seq } => {
                write!(f, "unread /chan/{name}/groups/{group} seq={seq}")
            }
            ChanCmd::Ctl { name, ops } => {
                write!(f, "/chan/{name}/ctl ")?;
                ctl::join_lines(f, ops.iter().map(ChanOp::describe))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn err(text: &str) -> String {
        parse("a", text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn good_lines_become_ops() {
        assert_eq!(
            parse(
                "a",
                b"qos rate=10 burst=5\nfull=block\nretain count=9 age=2m\ngroup w"
            )
            .unwrap(),
            alloc::vec![
                ChanOp::Qos(Some(Qos { rate: 10, burst: 5 })),
                ChanOp::Full(Full::Block),
                ChanOp::Retain {
                    count: Some(9),
                    age: Some(120)
                },
                ChanOp::Group(String::from("w")),
            ]
        );
        assert_eq!(
            parse("a", b"qos off").unwrap(),
            alloc::vec![ChanOp::Qos(None)]
        );
        assert_eq!(
            parse("a", b"qos rate=7").unwrap(),
            alloc::vec![ChanOp::Qos(Some(Qos { rate: 7, burst: 7 }))]
        );
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        assert!(err("qos rate=-5").contains("not a whole number"));
        assert!(err("qos rate=0").contains("out of range"));
        assert!(err("qos rate=99999999999").contains("out of range"));
        assert!(err("qos burst=3").contains("missing rate="));
        assert!(err("qos fast").contains("unexpected argument"));
        assert!(err("full=maybe").contains("expected full=block or full=refuse"));
        // chan(3): `full block` is the same as `full=block`.
        assert_eq!(
            parse("c", b"full block\nfull refuse").unwrap(),
            alloc::vec![ChanOp::Full(Full::Block), ChanOp::Full(Full::Refuse)]
        );
        assert!(err("full maybe").contains("expected full=block or full=refuse"));
        assert!(err("full block full=refuse").contains("full given twice"));
        assert!(err("full block refuse").contains("full"));
        assert!(err("retain").contains("say count=N"));
        assert!(err("retain count=0").contains("out of range"));
        assert!(err("retain age=forever").contains("not a duration"));
        assert!(err("connect").contains("missing argument"));
        assert!(err("connect ../x").contains("bad name"));
        assert!(err("qoss").contains("expected clear, close, open, retain, qos, full"));
    }
}
