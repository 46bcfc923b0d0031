//! An agent's ctl verbs and how their lines become [`AgentOp`]s.
//!
//! Parsing checks syntax and ranges only. What depends on the state (a
//! sub-agent's name being free, intents staying within parents') is
//! checked by [`super::Agents::check_ops`]; what depends on the writer
//! (its capability, the node's key for a new seed) by the device.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::cap::scope;
pub use crate::ctl::size_word;
use crate::ctl::{self, CtlLine, Verb};
use crate::error::Error;

use super::intent::{self, Intent};
use super::state::{
    AgentCmd, AgentOp, Exec, ExitHow, ExitReport, LimitChange, MAX_AGENTS, MAX_STDERR, Place,
    Report, Restart,
};

/// Most arguments of `exec`.
pub const MAX_ARGS: usize = 256;
/// Longest `exec` line after the verb, in bytes.
pub const MAX_EXEC: usize = 4096;
/// Longest environment variable name, in bytes.
pub const MAX_ENV_KEY: usize = 255;
/// Longest environment value, in bytes.
pub const MAX_ENV_VALUE: usize = 4096;
/// Highest `cpu=`: percent of one CPU, so 100 CPUs.
pub const MAX_CPU: u64 = 10_000;
/// Lowest `mem=`: 1 MiB (less cannot start a process).
pub const MIN_MEM: u64 = 1 << 20;
/// Highest `mem=`: 1 TiB.
pub const MAX_MEM: u64 = 1 << 40;
/// Highest `pids=`.
pub const MAX_PIDS: u64 = 65_536;
/// Highest restart `max=`.
pub const MAX_RESTARTS: u64 = 1000;
/// Longest restart `window=`: seven days, in seconds.
pub const MAX_WINDOW: u64 = 7 * 86_400;
/// Longest `log` line kept, in bytes (longer is cut, with `…`).
pub const MAX_LOG_LINE: usize = 4096;
/// Longest `stderr` line kept, in bytes (longer is cut, with `…`).
pub const MAX_STDERR_LINE: usize = 512;
/// Longest `report failed` reason, in bytes (longer is cut, with `…`).
pub const MAX_REASON: usize = 512;
/// Longest `node=` of `report running`.
pub const MAX_NODE: usize = 64;
/// Longest `signal=` name.
pub const MAX_SIGNAL: usize = 16;
/// Longest `sandbox=` of `report running`, in bytes.
pub const MAX_SANDBOX: usize = 256;

/// A verb that takes the rest of its line as words of its own syntax.
const fn words(name: &'static str, usage: &'static str) -> Verb {
    Verb {
        name,
        min_args: 1,
        max_args: usize::MAX,
        keys: &[],
        usage,
    }
}

/// A verb whose text, the rest of the line, may be empty.
const fn text(name: &'static str, usage: &'static str) -> Verb {
    Verb {
        name,
        min_args: 0,
        max_args: usize::MAX,
        keys: &[],
        usage,
    }
}

/// A verb of `key=value` arguments only.
const fn keyed(name: &'static str, keys: &'static [&'static str], usage: &'static str) -> Verb {
    Verb {
        name,
        min_args: 0,
        max_args: 0,
        keys,
        usage,
    }
}

/// The verbs of an agent's `ctl`.
pub const CTL_VERBS: &[Verb] = &[
    words("exec", "exec PATH [ARG…]"),
    words("env", "env KEY=VALUE (KEY= removes it)"),
    words("intent", "intent RIGHTS PATH [RIGHTS PATH…] | intent none"),
    keyed(
        "limit",
        &["cpu", "mem", "pids", "agents"],
        "limit [cpu=PERCENT] [mem=SIZE] [pids=N] [agents=N]",
    ),
    keyed(
        "restart",
        &["policy", "max", "window"],
        "restart [policy=always|on-failure|never] [max=N] [window=DURATION]",
    ),
    keyed("start", &[], "start"),
    keyed("stop", &[], "stop"),
    keyed("kill", &[], "kill"),
    words("spawn", "spawn CHILD [RIGHTS PATH…]"),
    words(
        "report",
        "report running pid=N node=ID [sandbox=WORDS] | report exit code=N|signal=NAME [restarting=yes|no] | report crashloop | report failed REASON… | report stopped | report claim runner=NAME | report release | report resumed",
    ),
    text("stderr", "stderr TEXT (after report exit)"),
    text("log", "log TEXT"),
    words("place", "place spread|pack|node=ID|label=KEY=VALUE"),
    Verb {
        name: "move",
        min_args: 0,
        max_args: 0,
        keys: &["node"],
        usage: "move node=ID",
    },
    Verb {
        name: "epoch",
        min_args: 1,
        max_args: 1,
        keys: &[],
        usage: "epoch E (a runner's, before its reports)",
    },
];

/// One parsed line: an op, or a spawn that the device completes with a
/// key seed and, when no intent was named, the parent's.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete op.
    Op(AgentOp),
    /// `spawn CHILD [RIGHTS PATH…]`.
    Spawn {
        /// The sub-agent's name.
        child: String,
        /// Its intent, if named.
        intent: Option<Intent>,
    },
}

/// The lines of a ctl write to agent `name`, every line checked; each
/// `stderr` line joins the `report exit` before it.
pub fn parse(name: &str, data: &[u8]) -> Result<Vec<Line>, Error> {
    let object = format!("agent {name}");
    let mut lines: Vec<Line> = Vec::new();
    for l in ctl::parse(&object, CTL_VERBS, data)? {
        if l.verb == "stderr" {
            let Some(Line::Op(AgentOp::Report(Report::Exit(e)))) = lines.last_mut() else {
                return Err(Error::Invalid(format!(
                    "{object}: stderr: a stderr line must follow a 'report exit' line (or another stderr line) in the same write"
                )));
            };
            // The last lines are the ones kept.
            if e.stderr.len() >= MAX_STDERR {
                e.stderr.remove(0);
            }
            e.stderr.push(clean(l.rest, MAX_STDERR_LINE));
            continue;
        }
        if l.verb == "limit" {
            // cpu, mem and pids are one op; agents= another, which
            // older logs do not have.
            let (change, quota) = limit(&object, &l)?;
            if change != LimitChange::default() {
                lines.push(Line::Op(AgentOp::Limit(change)));
            }
            if let Some(q) = quota {
                lines.push(Line::Op(AgentOp::Quota(q)));
            }
            continue;
        }
        lines.push(line(&object, &l)?);
    }
    Ok(lines)
}

/// `text` as it is kept: control characters (escape sequences, tabs)
/// as `?`, at most `max` bytes (cut on a character, with `…`).
pub fn clean(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut s: String = text[..end]
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if end < text.len() {
        s.push('…');
    }
    s
}

fn line(object: &str, l: &CtlLine<'_>) -> Result<Line, Error> {
    let inv = |what: String| Error::Invalid(format!("{object}: {}: {what}", l.verb));
    let words: Vec<&str> = l.rest.split_ascii_whitespace().collect();
    Ok(Line::Op(match l.verb {
        "exec" => AgentOp::Exec(exec(l.rest).map_err(inv)?),
        "env" => env(l.rest).map_err(inv)?,
        "intent" => AgentOp::Intent(intent::parse(&words).map_err(inv)?),
        "restart" => restart(object, l)?,
        "start" => AgentOp::Start,
        "stop" => AgentOp::Stop,
        "kill" => AgentOp::Kill,
        "report" => AgentOp::Report(report(&words, l.rest).map_err(inv)?),
        "log" => AgentOp::Log(clean(l.rest, MAX_LOG_LINE)),
        "place" => AgentOp::Place(place(&words).map_err(inv)?),
        "move" => AgentOp::Move(match l.get("node") {
            Some(v) => node_id(v).map_err(inv)?,
            None => return Err(inv(String::from("missing node=ID; usage: move node=ID"))),
        }),
        "epoch" => AgentOp::Epoch(
            l.rest
                .trim()
                .parse()
                .map_err(|_| inv(format!("\"{}\" is not a whole number", l.rest.trim())))?,
        ),
        _ => {
            let child = words.first().copied().unwrap_or_default();
            check_name(child).map_err(|e| inv(e.to_string()))?;
            let intent = match &words[1..] {
                [] => None,
                pairs => Some(intent::parse(pairs).map_err(inv)?),
            };
            return Ok(Line::Spawn {
                child: String::from(child),
                intent,
            });
        }
    }))
}

/// A swarm node's id as `place node=` and `move node=` take it.
fn node_id(v: &str) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "node=\"{v}\" is not a node id (a whole number, as in ls /swarm/nodes)"
        )),
    }
}

/// `place WORD`: where an agent may be placed.
fn place(words: &[&str]) -> Result<Place, String> {
    let [word] = words else {
        return Err(String::from(
            "one word: spread, pack, node=ID or label=KEY=VALUE",
        ));
    };
    let word = *word;
    if word == "spread" {
        return Ok(Place::Spread);
    }
    if word == "pack" {
        return Ok(Place::Pack);
    }
    if let Some(v) = word.strip_prefix("node=") {
        return node_id(v).map(Place::Node);
    }
    if let Some(kv) = word.strip_prefix("label=") {
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        crate::swarm::ctl::check_label(key, value)?;
        return Ok(Place::Label {
            key: String::from(key),
            value: String::from(value),
        });
    }
    Err(format!(
        "\"{word}\": expected spread, pack, node=ID or label=KEY=VALUE"
    ))
}

/// The words of `text` as `exec` reads them: split at white space
/// (ASCII), with the quoting of a shell's simplest form: `'…'` keeps
/// everything up to the next `'` as it is; `"…"` too, except that `\"`
/// and `\\` in it stand for `"` and `\`; outside quotes `\` keeps the
/// character after it. Pieces that touch make one word, so `''` is an
/// empty word and `'it'\''s'` is `it's`. [`quote`] writes a word back.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = text.chars();
    // The word being read, if one has started (an empty quoted one has).
    let mut word: Option<String> = None;
    while let Some(c) = chars.next() {
        match c {
            c if c.is_ascii_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(String::from("a ' is not closed")),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err(String::from("a \" is not closed")),
                        },
                        Some(c) => w.push(c),
                        None => return Err(String::from("a \" is not closed")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err(String::from("a \\ ends the line")),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = word {
        words.push(w);
    }
    Ok(words)
}

/// `word` as [`split_words`] reads it back as one word: as it is when
/// nothing in it needs quoting, else in `'…'` (a `'` in it as `'\''`).
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && !word
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\' | '#'));
    if plain {
        return String::from(word);
    }
    let mut s = String::with_capacity(word.len() + 2);
    s.push('\'');
    for c in word.chars() {
        if c == '\'' {
            s.push_str("'\\''");
        } else {
            s.push(c);
        }
    }
    s.push('\'');
    s
}

/// `exec PATH [ARG…]`: a clean absolute path (whether it exists is for
/// the runner, on the host that runs it), then arguments, the words
/// split and unquoted by [`split_words`], without control characters.
pub(crate) fn exec(rest: &str) -> Result<Exec, String> {
    if rest.len() > MAX_EXEC {
        return Err(format!("the line is longer than {MAX_EXEC} bytes"));
    }
    let words = split_words(rest)?;
    let path = words.first().map(String::as_str).unwrap_or_default();
    if words.len().saturating_sub(1) > MAX_ARGS {
        return Err(format!("at most {MAX_ARGS} arguments"));
    }
    let clean =
        path.len() > 1 && path.starts_with('/') && path[1..].split('/').all(scope::check_name);
    if !clean {
        return Err(format!(
            "\"{}\" is not a program's absolute path (such as /usr/bin/worker; no '.', '..' or empty names)",
            path.escape_debug()
        ));
    }
    if let Some(a) = words.iter().find(|w| w.chars().any(char::is_control)) {
        return Err(format!(
            "\"{}\" holds a control character",
            a.escape_debug()
        ));
    }
    let mut words = words.into_iter();
    let path = words.next().unwrap_or_default();
    Ok(Exec {
        path,
        args: words.collect(),
    })
}

/// The `key=value` words of a report, each key at most once and only
/// those in `keys`.
fn report_keys<'a>(
    what: &str,
    words: &[&'a str],
    keys: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, String> {
    let mut kv: Vec<(&str, &str)> = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!("{what}: unexpected argument \"{w}\""));
        };
        if !keys.contains(&k) {
            let expected = if keys.is_empty() {
                String::from("no keys")
            } else {
                keys.join(", ")
            };
            return Err(format!("{what}: unknown key \"{k}\"; expected {expected}"));
        }
        if kv.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("{what}: {k}= is given twice"));
        }
        kv.push((k, v));
    }
    Ok(kv)
}

fn get<'a>(kv: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    kv.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// `report STATE …`: what the runner saw of the agent's process.
fn report(words: &[&str], rest: &str) -> Result<Report, String> {
    let what = words.first().copied().unwrap_or_default();
    let args = words.get(1..).unwrap_or_default();
    match what {
        "running" => {
            let kv = report_keys(what, args, &["pid", "node", "sandbox"])?;
            let pid = match get(&kv, "pid") {
                None => return Err(String::from("running: say pid=N node=ID")),
                Some(p) => p.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(|| {
                    format!("running: pid=\"{p}\" is not a process id (1 to 4294967295)")
                })?,
            };
            let node = match get(&kv, "node") {
                None => return Err(String::from("running: say pid=N node=ID")),
                Some(n) if n.is_empty() || n.len() > MAX_NODE => {
                    return Err(format!(
                        "running: node=\"{n}\" is not a node name (1 to {MAX_NODE} bytes)"
                    ));
                }
                Some(n) => clean(n, MAX_NODE),
            };
            Ok(match get(&kv, "sandbox") {
                None => Report::Running { pid, node },
                Some(words) => Report::RunningSandboxed {
                    pid,
                    node,
                    sandbox: sandbox(words)?,
                },
            })
        }
        "exit" => {
            let kv = report_keys(what, args, &["code", "signal", "restarting"])?;
            let how = match (get(&kv, "code"), get(&kv, "signal")) {
                (Some(c), None) => {
                    ExitHow::Code(c.parse::<u8>().map_err(|_| {
                        format!("exit: code=\"{c}\" is not an exit status (0 to 255)")
                    })?)
                }
                (None, Some(sig)) => {
                    let good = !sig.is_empty()
                        && sig.len() <= MAX_SIGNAL
                        && sig
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-');
                    if !good {
                        return Err(format!(
                            "exit: signal=\"{sig}\" is not a signal name (such as KILL, SEGV or 9)"
                        ));
                    }
                    ExitHow::Signal(String::from(sig))
                }
                _ => {
                    return Err(String::from(
                        "exit: say code=N or signal=NAME (one of them), and restarting=yes|no",
                    ));
                }
            };
            let restarting = match get(&kv, "restarting") {
                None | Some("no") => false,
                Some("yes") => true,
                Some(r) => {
                    return Err(format!("exit: restarting=\"{r}\": expected yes or no"));
                }
            };
            Ok(Report::Exit(ExitReport {
                how,
                restarting,
                stderr: Vec::new(),
                ops: Vec::new(),
                before: None,
            }))
        }
        "crashloop" | "stopped" | "release" => {
            report_keys(what, args, &[])?;
            Ok(match what {
                "stopped" => Report::Stopped,
                "release" => Report::Release,
                _ => Report::Crashloop,
            })
        }
        "resumed" => {
            report_keys(what, args, &[])?;
            Ok(Report::Resumed {
                ops: Vec::new(),
                before: None,
            })
        }
        "claim" => {
            let kv = report_keys(what, args, &["runner"])?;
            let Some(runner) = get(&kv, "runner") else {
                return Err(String::from("claim: say runner=NAME"));
            };
            check_runner(runner).map_err(|e| format!("claim: {e}"))?;
            Ok(Report::Claim {
                runner: String::from(runner),
            })
        }
        "failed" => {
            let why = rest[what.len()..].trim();
            if why.is_empty() {
                return Err(String::from(
                    "failed: say why, as in: report failed no such program",
                ));
            }
            Ok(Report::Failed(clean(why, MAX_REASON)))
        }
        other => Err(format!(
            "unknown state \"{other}\"; expected running, exit, crashloop, failed, stopped, claim, release, resumed"
        )),
    }
}

/// The `sandbox=` of `report running`: what protections the process
/// runs under, as comma-separated words of `a-z`, `0-9` and `-`
/// (`userns,pid,mount,seccomp`, or `unconfined`).
fn sandbox(words: &str) -> Result<String, String> {
    let good = words.len() <= MAX_SANDBOX
        && words.split(',').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !good {
        return Err(format!(
            "running: sandbox=\"{}\" is not a list of protections: comma-separated words of a-z, 0-9 and - (such as userns,pid,mount,seccomp, or unconfined), at most {MAX_SANDBOX} bytes",
            words.escape_debug()
        ));
    }
    Ok(String::from(words))
}

/// Check a runner's name (`report claim runner=`): the rule of channel
/// and agent names.
pub fn check_runner(name: &str) -> Result<(), String> {
    if crate::name::is_object(name) {
        Ok(())
    } else {
        Err(crate::name::bad_object("runner", name))
    }
}

/// `env KEY=VALUE`: the value is the rest of the line, trimmed; an empty
/// one removes the variable.
fn env(rest: &str) -> Result<AgentOp, String> {
    let Some((key, value)) = rest.split_once('=') else {
        return Err(format!(
            "\"{}\": expected KEY=VALUE (KEY= removes KEY)",
            rest.escape_debug()
        ));
    };
    check_env(key, value)?;
    Ok(AgentOp::Env {
        key: String::from(key),
        value: (!value.is_empty()).then(|| String::from(value)),
    })
}

/// Check an environment variable's name and value.
pub(crate) fn check_env(key: &str, value: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let good_key = key.len() <= MAX_ENV_KEY
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !good_key {
        return Err(format!(
            "\"{}\" is not a variable name: a letter or _, then letters, digits or _ (at most {MAX_ENV_KEY})",
            key.escape_debug()
        ));
    }
    if value.len() > MAX_ENV_VALUE {
        return Err(format!(
            "{key}: the value is longer than {MAX_ENV_VALUE} bytes"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{key}: the value holds a control character"));
    }
    Ok(())
}

/// A size in bytes from digits and an optional `K`, `M`, `G` or `T`
/// (powers of 1024, either case); `None` for anything else or past
/// `u64::MAX`.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return None,
            };
            (&text[..i], shift)
        }
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The value of limit `key`: not given, `max` (no limit), or a number
/// `read` makes of it within `lo..=hi`.
fn bound(
    object: &str,
    l: &CtlLine<'_>,
    key: &str,
    (lo, hi): (u64, u64),
    read: fn(&str) -> Option<u64>,
    range: &str,
) -> Result<Option<Option<u64>>, Error> {
    match l.get(key) {
        None => Ok(None),
        Some("max") => Ok(Some(None)),
        Some(v) => match read(v) {
            Some(n) if (lo..=hi).contains(&n) => Ok(Some(Some(n))),
            _ => Err(Error::Invalid(format!(
                "{object}: {}: {key}=\"{v}\" is out of range: {range}, or max for no limit",
                l.verb
            ))),
        },
    }
}

/// `limit …`: the change to cpu, mem and pids, and the new quota of
/// agents if `agents=` is given (`Some(None)`: `max`).
fn limit(object: &str, l: &CtlLine<'_>) -> Result<(LimitChange, Option<Option<u32>>), Error> {
    if l.kv.is_empty() {
        return Err(Error::Invalid(format!(
            "{object}: limit: say cpu=, mem=, pids=, agents= or several; usage: limit [cpu=PERCENT] [mem=SIZE] [pids=N] [agents=N]"
        )));
    }
    let number = |v: &str| v.parse().ok();
    let cpu = bound(
        object,
        l,
        "cpu",
        (1, MAX_CPU),
        number,
        "1 to 10000 percent of one CPU",
    )?;
    let mem = bound(
        object,
        l,
        "mem",
        (MIN_MEM, MAX_MEM),
        parse_size,
        "1M to 1T (a size in bytes, or with K, M, G or T)",
    )?;
    let pids = bound(object, l, "pids", (1, MAX_PIDS), number, "1 to 65536")?;
    let agents = bound(
        object,
        l,
        "agents",
        (1, MAX_AGENTS as u64),
        number,
        "1 to 16384 agents in its tree",
    )?;
    // Each fits: the bounds are far below u32::MAX.
    let small = |v: Option<Option<u64>>| v.map(|o| o.map(|n| n as u32));
    Ok((
        LimitChange {
            cpu: small(cpu),
            mem,
            pids: small(pids),
        },
        small(agents),
    ))
}

fn restart(object: &str, l: &CtlLine<'_>) -> Result<AgentOp, Error> {
    let inv = |what: String| Error::Invalid(format!("{object}: restart: {what}"));
    if l.kv.is_empty() {
        return Err(inv(String::from(
            "say policy=, max=, window= or several; usage: restart [policy=always|on-failure|never] [max=N] [window=DURATION]",
        )));
    }
    let restart = match l.get("policy") {
        None => None,
        Some(w) => Some(Restart::parse(w).ok_or_else(|| {
            inv(format!(
                "policy=\"{w}\": expected always, on-failure or never"
            ))
        })?),
    };
    let max = match l.get_u64(object, "max")? {
        Some(n) if !(1..=MAX_RESTARTS).contains(&n) => {
            return Err(inv(format!(
                "max={n} is out of range: 1 to {MAX_RESTARTS} restarts"
            )));
        }
        m => m.map(|n| n as u32),
    };
    let window = match l.get("window") {
        None => None,
        Some(w) => Some(
            ctl::parse_duration(w)
                .filter(|s| (1..=MAX_WINDOW).contains(s))
                .ok_or_else(|| {
                    inv(format!(
                        "window=\"{w}\" is not a duration from 1s to 7d (90s, 10m, 2h, 1d)"
                    ))
                })?,
        ),
    };
    Ok(AgentOp::Restart {
        restart,
        max,
        window,
    })
}

/// As `/raft/log` shows it. An agent's public key is shown where it is
/// made (never its seed); an `exec` line and a report are cut like a
/// note, since arguments and reasons can be long; `log` lines are only
/// counted, and a report's stderr lines too. A drift the server caught
/// reads `/agent/NAME drift OP PATH`.
impl core::fmt::Display for AgentCmd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AgentCmd::Create { name, seed, .. } => write!(
                f,
                "mkdir /agent/{name} key={}",
                crate::hex::encode(&seed.public())
            ),
            AgentCmd::Remove { name } => write!(f, "rm /agent/{name}"),
            AgentCmd::Ctl { name, ops, .. } => {
                let mut lines: Vec<String> = ops
                    .iter()
                    .filter(|op| !matches!(op, AgentOp::Log(_)))
                    .map(|op| match op {
                        AgentOp::Exec(_) | AgentOp::Report(_) => {
                            ctl::cut(&op.describe(), ctl::MAX_NOTE)
                        }
                        AgentOp::Spawn { seed, .. } => {
                            format!(
                                "{} key={}",
                                op.describe(),
                                crate::hex::encode(&seed.public())
                            )
                        }
                        _ => op.describe(),
                    })
                    .collect();
                // Output is counted, never copied.
                let logged = ops
                    .iter()
                    .filter(|op| matches!(op, AgentOp::Log(_)))
                    .count();
                if logged > 0 {
                    lines.push(format!("log {logged} lines"));
                }
                write!(f, "/agent/{name}/ctl ")?;
                ctl::join_lines(f, lines)
            }
            AgentCmd::Drift { name, op, path, .. } => {
                write!(f, "/agent/{name} drift {op} {path}")
            }
        }
    }
}

/// Check a new agent's name: the rule of channel names (1–64 of
/// `[A-Za-z0-9._-]`, not starting with a dot), so a name is safe in a
/// path, a shell word and a cgroup.
pub fn check_name(name: &str) -> Result<(), Error> {
    if crate::name::is_object(name) {
        Ok(())
    } else {
        Err(Error::BadName(crate::name::bad_object("agent", name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn ok(text: &str) -> Vec<Line> {
        parse("a", text.as_bytes()).unwrap()
    }

    fn op(text: &str) -> AgentOp {
        match ok(text).pop() {
            Some(Line::Op(op)) => op,
            other => panic!("{other:?}"),
        }
    }

    fn err(text: &str) -> String {
        parse("a", text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn good_lines_become_ops() {
        assert_eq!(
            op("exec /usr/bin/worker --queue jobs"),
            AgentOp::Exec(Exec {
                path: String::from("/usr/bin/worker"),
                args: vec![String::from("--queue"), String::from("jobs")],
            })
        );
        assert_eq!(
            op("env GREETING=hello  world"),
            AgentOp::Env {
                key: String::from("GREETING"),
                value: Some(String::from("hello  world")),
            }
        );
        assert_eq!(
            op("env GREETING="),
            AgentOp::Env {
                key: String::from("GREETING"),
                value: None,
            }
        );
        assert_eq!(
            op("limit cpu=50 mem=256M pids=max"),
            AgentOp::Limit(LimitChange {
                cpu: Some(Some(50)),
                mem: Some(Some(256 << 20)),
                pids: Some(None),
            })
        );
        assert_eq!(op("limit agents=10"), AgentOp::Quota(Some(10)));
        assert_eq!(
            ok("limit cpu=5 agents=max"),
            vec![
                Line::Op(AgentOp::Limit(LimitChange {
                    cpu: Some(Some(5)),
                    ..LimitChange::default()
                })),
                Line::Op(AgentOp::Quota(None)),
            ],
            "one line, two ops"
        );
        assert_eq!(
            op("restart policy=on-failure window=2m"),
            AgentOp::Restart {
                restart: Some(Restart::OnFailure),
                max: None,
                window: Some(120),
            }
        );
        assert_eq!(op("intent none"), AgentOp::Intent(Intent::new()));
        assert_eq!(
            ok("spawn w1\nspawn w2 r /chan/jobs"),
            vec![
                Line::Spawn {
                    child: String::from("w1"),
                    intent: None
                },
                Line::Spawn {
                    child: String::from("w2"),
                    intent: Some(intent::parse(&["r", "/chan/jobs"]).unwrap()),
                },
            ]
        );
        assert_eq!(ok("start\nstop\nkill").len(), 3);
        assert_eq!(
            op("exec '/opt/my app/run' -c 'echo \"a  b\"' '' it\\'s"),
            AgentOp::Exec(Exec {
                path: String::from("/opt/my app/run"),
                args: vec![
                    String::from("-c"),
                    String::from("echo \"a  b\""),
                    String::new(),
                    String::from("it's"),
                ],
            })
        );
        assert!(err("exec /bin/sh -c 'echo").contains("exec: a ' is not closed"));
        assert_eq!(
            op("report claim runner=h1"),
            AgentOp::Report(Report::Claim {
                runner: String::from("h1")
            })
        );
        assert_eq!(op("report release"), AgentOp::Report(Report::Release));
        assert!(matches!(
            op("report resumed"),
            AgentOp::Report(Report::Resumed { .. })
        ));
        assert!(err("report claim runner=.x").contains("runner \".x\": names are"));
        assert_eq!(op("place pack"), AgentOp::Place(Place::Pack));
        assert_eq!(op("place node=3"), AgentOp::Place(Place::Node(3)));
        assert_eq!(
            op("place label=zone=eu-1"),
            AgentOp::Place(Place::Label {
                key: "zone".to_string(),
                value: "eu-1".to_string()
            })
        );
        assert_eq!(op("move node=4"), AgentOp::Move(4));
        assert_eq!(op("epoch 7"), AgentOp::Epoch(7));
        assert!(err("report resumed now").contains("unexpected argument"));
    }

    #[test]
    fn bad_lines_name_the_agent_the_word_and_what_was_expected() {
        assert_eq!(
            err("exex /bin/x"),
            "agent a: unknown verb \"exex\"; expected exec, env, intent, limit, restart, start, stop, kill, spawn, report, stderr, log, place, move, epoch"
        );
        assert!(err("place").contains("missing text"));
        assert!(err("place everywhere").contains("\"everywhere\": expected spread, pack"));
        assert!(err("place node=0").contains("is not a node id"));
        assert!(err("place spread pack").contains("one word"));
        assert!(err("place label=bad/key=1").contains("label key"));
        assert!(err("move").contains("missing node=ID"));
        assert!(err("move node=x").contains("is not a node id"));
        assert!(err("move to=3").contains("unknown key"));
        assert!(err("epoch two").contains("not a whole number"));
        assert!(err("exec bin/x").contains("\"bin/x\" is not a program's absolute path"));
        assert!(err("exec /bin/../x").contains("absolute path"));
        assert!(err("exec /").contains("absolute path"));
        assert!(err("exec").contains("missing text; usage: exec PATH"));
        assert!(err(&format!("exec /x {}", "a ".repeat(300))).contains("at most 256"));
        assert!(err("env NOEQUALS").contains("expected KEY=VALUE"));
        assert!(err("env 1X=y").contains("\"1X\" is not a variable name"));
        assert!(err("env A-B=y").contains("not a variable name"));
        assert!(err("intent rw").contains("expected RIGHTS PATH pairs"));
        assert!(err("intent rq /chan").contains("'q' is not a right"));
        assert!(err("limit").contains("say cpu=, mem=, pids="));
        assert!(err("limit cpu=0").contains("cpu=\"0\" is out of range: 1 to 10000"));
        assert!(err("limit cpu=10001").contains("out of range"));
        assert!(err("limit mem=12").contains("mem=\"12\" is out of range: 1M to 1T"));
        assert!(err("limit mem=2P").contains("out of range"));
        assert!(err("limit pids=lots").contains("pids=\"lots\" is out of range"));
        assert!(
            err("limit disk=1").contains("unknown key \"disk\"; expected cpu, mem, pids, agents")
        );
        assert!(err("limit agents=16385").contains("agents=\"16385\" is out of range: 1 to 16384"));
        assert!(err("restart").contains("say policy="));
        assert!(err("restart policy=sometimes").contains("expected always, on-failure or never"));
        assert!(err("restart max=0").contains("max=0 is out of range"));
        assert!(err("restart max=x").contains("not a whole number"));
        assert!(err("restart window=0").contains("not a duration from 1s to 7d"));
        assert!(err("restart window=8d").contains("not a duration"));
        assert!(err("start now").contains("unexpected argument \"now\""));
        assert!(err("spawn ../x").contains("bad name"));
        assert!(err("spawn w rw").contains("expected RIGHTS PATH pairs"));
        assert!(
            err("start\nbogus").contains("\"bogus\""),
            "one bad line fails all"
        );
    }

    #[test]
    fn reports_parse_and_stderr_joins_its_exit() {
        assert_eq!(
            op("report running pid=42 node=n1"),
            AgentOp::Report(Report::Running {
                pid: 42,
                node: String::from("n1"),
            })
        );
        assert_eq!(
            op("report running pid=42 node=n1 sandbox=userns,pid,no-net2"),
            AgentOp::Report(Report::RunningSandboxed {
                pid: 42,
                node: String::from("n1"),
                sandbox: String::from("userns,pid,no-net2"),
            })
        );
        let most = "a,".repeat(MAX_SANDBOX / 2 - 1) + "ab";
        assert_eq!(most.len(), MAX_SANDBOX);
        assert!(matches!(
            op(&format!("report running pid=1 node=n sandbox={most}")),
            AgentOp::Report(Report::RunningSandboxed { .. })
        ));
        for bad in ["", ",", "pid,", "PID", "pid;net", "pid,,net", "ü"] {
            assert!(
                err(&format!("report running pid=1 node=n sandbox={bad}"))
                    .contains("is not a list of protections"),
                "{bad:?}"
            );
        }
        assert!(
            err(&format!("report running pid=1 node=n sandbox={most}x"))
                .contains("at most 256 bytes")
        );
        let lines = ok(
            "report exit code=3 restarting=yes\nstderr panic: boom\nstderr   at main.rs:3\nlog hello\x1b[0m",
        );
        assert_eq!(lines.len(), 2);
        let Line::Op(AgentOp::Report(Report::Exit(e))) = &lines[0] else {
            panic!("{lines:?}")
        };
        assert_eq!((e.how.clone(), e.restarting), (ExitHow::Code(3), true));
        assert_eq!(e.stderr, ["panic: boom", "at main.rs:3"]);
        assert_eq!(lines[1], Line::Op(AgentOp::Log(String::from("hello?[0m"))));
        let Line::Op(AgentOp::Report(Report::Exit(e))) = &ok("report exit signal=KILL")[0] else {
            panic!()
        };
        assert_eq!(
            (e.how.clone(), e.restarting),
            (ExitHow::Signal(String::from("KILL")), false)
        );
        assert_eq!(op("report crashloop"), AgentOp::Report(Report::Crashloop));
        assert_eq!(op("report stopped"), AgentOp::Report(Report::Stopped));
        assert_eq!(
            op("report failed no such   program"),
            AgentOp::Report(Report::Failed(String::from("no such   program")))
        );
        assert_eq!(op("log"), AgentOp::Log(String::new()), "an empty line");
        // Only the last stderr lines are kept, each cut.
        let many: String = (0..40).map(|i| format!("stderr {i}\n")).collect();
        let Line::Op(AgentOp::Report(Report::Exit(e))) =
            &ok(&format!("report exit code=1\n{many}"))[0]
        else {
            panic!()
        };
        assert_eq!(e.stderr.len(), MAX_STDERR);
        assert_eq!(e.stderr[MAX_STDERR - 1], "39");
        let long = ok(&format!("log {}", "é".repeat(5000)));
        let Line::Op(AgentOp::Log(l)) = &long[0] else {
            panic!()
        };
        assert!(l.len() <= MAX_LOG_LINE + 3 && l.ends_with('…'));
    }

    #[test]
    fn bad_reports_say_what_is_expected() {
        assert!(err("report").contains("missing text; usage: report running pid=N"));
        assert!(err("report runing").contains(
            "report: unknown state \"runing\"; expected running, exit, crashloop, failed, stopped"
        ));
        assert!(err("report running pid=42").contains("say pid=N node=ID"));
        assert!(err("report running pid=0 node=n").contains("pid=\"0\" is not a process id"));
        assert!(
            err("report running pid=1 node=n cpu=3")
                .contains("unknown key \"cpu\"; expected pid, node")
        );
        assert!(err("report exit").contains("say code=N or signal=NAME"));
        assert!(err("report exit code=1 signal=KILL").contains("say code=N or signal=NAME"));
        assert!(
            err("report exit code=256").contains("code=\"256\" is not an exit status (0 to 255)")
        );
        assert!(err("report exit signal=K/LL").contains("not a signal name"));
        assert!(err("report exit code=1 restarting=maybe").contains("expected yes or no"));
        assert!(err("report exit code=1 code=2").contains("code= is given twice"));
        assert!(err("report crashloop now").contains("unexpected argument \"now\""));
        assert!(err("report failed").contains("failed: say why"));
        assert!(err("stderr boom").contains("must follow a 'report exit' line"));
        assert!(err("report running pid=1 node=n\nstderr boom").contains("must follow"));
    }

    #[test]
    fn sizes_read_and_print_back() {
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("77"), Some(77));
        assert_eq!(parse_size("1X"), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("99999999999T"), None);
        for n in [1 << 20, 256 << 20, 1 << 40, 1536 << 10, 1000] {
            assert_eq!(parse_size(&size_word(n)), Some(n));
        }
        assert_eq!(size_word(256 << 20), "256M");
    }
}
