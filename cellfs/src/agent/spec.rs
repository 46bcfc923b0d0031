//! An agent's `spec`: everything a runner needs to run it, as text, and
//! the parser a runner reads it back with (see agent(3) SPEC).
//!
//! One `key value` line each, in a fixed order:
//!
//! ```text
//! name NAME
//! want running|stopped|killed
//! starts N
//! phase WORD
//! runner RUNNER|-
//! exec PATH ARG…            (exec - when there is none)
//! env KEY=VALUE             (one line per variable; none when there are none)
//! limits cpu=… mem=… pids=… (what it runs under: its own, clamped)
//! policy always|on-failure|never max=N window=Ns
//! intent RIGHTS PATH…|none
//! network yes|no
//! ```
//!
//! The words of `exec` and each `env` value are quoted with
//! [`quote`](super::quote), so that [`split_words`](super::split_words),
//! the tokenizer of `exec` in ctl, reads them back exactly (spaces,
//! quotes, empty arguments). Parsing is strict: a line out of order,
//! unknown or malformed is refused, so a runner never runs an agent
//! with less than the tree said.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::ctl::parse_duration;
use crate::error::Error;

use super::ctl::{self, parse_size, quote, size_word, split_words};
use super::intent::{self, Intent};
use super::state::{Agent, Agents, Exec, Limits, Phase, Policy, Restart, Want};
use crate::swarm::Swarm;

/// What a runner needs to run an agent: the text of `/agent/NAME/spec`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// The agent's name.
    pub name: String,
    /// What it was last asked to be.
    pub want: Want,
    /// How many times `start` was written (a run is one start).
    pub starts: u64,
    /// What is known of it.
    pub phase: Phase,
    /// The runner that claimed it, if one did.
    pub runner: Option<String>,
    /// The program and its arguments, once set.
    pub exec: Option<Exec>,
    /// Its environment, names and values.
    pub env: BTreeMap<String, String>,
    /// The resource limits it runs under: its own, clamped by its
    /// ancestors' (see [`Agents::effective`]).
    pub limits: Limits,
    /// Its restart policy.
    pub policy: Policy,
    /// Its declared intent.
    pub intent: Intent,
    /// Whether it may use the host's network
    /// ([`intent::wants_network`]).
    pub network: bool,
    /// The swarm node it is placed on, if a swarm placed it: only that
    /// node's runner runs it.
    pub placed: Option<u64>,
    /// Its placement's epoch, which the runner's reports name.
    pub epoch: u64,
    /// The runner that holds it should stop it and let it go (its node
    /// is drained or left, or it is asked to move): it runs elsewhere
    /// next.
    pub leave: bool,
}

impl RunSpec {
    /// The spec of `agent`, one of `agents`, as committed: with the
    /// limits it runs under (its own, clamped by its ancestors').
    pub fn of(agents: &Agents, swarm: &Swarm, agent: &Agent) -> RunSpec {
        RunSpec {
            name: agent.name.clone(),
            want: agent.want,
            starts: agent.starts,
            phase: agent.phase,
            runner: agent.runner.clone(),
            exec: agent.exec.clone(),
            env: agent.env.clone(),
            limits: agents.effective(agent),
            policy: agent.policy,
            intent: agent.intent.clone(),
            network: intent::wants_network(&agent.intent),
            placed: agent.placed.map(|p| p.node),
            epoch: agent.epoch,
            leave: super::must_leave(agent, swarm),
        }
    }

    /// The text of the `spec` file of `agent`, one of `agents`.
    pub fn render(agents: &Agents, swarm: &Swarm, agent: &Agent) -> String {
        format!("{}", RunSpec::of(agents, swarm, agent))
    }

    /// A spec back from its text (what [`RunSpec::render`] wrote).
    pub fn parse(text: &str) -> Result<RunSpec, Error> {
        Parser::new(text).spec().map_err(Error::Invalid)
    }
}

impl fmt::Display for RunSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "name {}", self.name)?;
        writeln!(f, "want {}", self.want.word())?;
        writeln!(f, "starts {}", self.starts)?;
        writeln!(f, "phase {}", self.phase.word())?;
        writeln!(f, "runner {}", self.runner.as_deref().unwrap_or("-"))?;
        match &self.exec {
            None => f.write_str("exec -\n")?,
            // Each word quoted when it must be.
            Some(e) => writeln!(f, "exec {e}")?,
        }
        for (k, v) in &self.env {
            writeln!(f, "env {k}={}", quote(v))?;
        }
        writeln!(f, "limits {}", self.limits.words())?;
        let p = &self.policy;
        writeln!(
            f,
            "policy {} max={} window={}s",
            p.restart.word(),
            p.max,
            p.window
        )?;
        writeln!(f, "intent {}", intent::words(&self.intent))?;
        writeln!(f, "network {}", if self.network { "yes" } else { "no" })?;
        match self.placed {
            Some(n) => writeln!(f, "placed {n}")?,
            None => f.write_str("placed -\n")?,
        }
        writeln!(f, "epoch {}", self.epoch)?;
        writeln!(f, "leave {}", if self.leave { "yes" } else { "no" })
    }
}

/// Reads the lines of a spec in their order.
struct Parser<'a> {
    lines: core::iter::Peekable<core::iter::Enumerate<core::str::Split<'a, char>>>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        // The text ends with a newline: no line after it.
        let body = text.strip_suffix('\n').unwrap_or(text);
        Parser {
            lines: body.split('\n').enumerate().peekable(),
        }
    }

    /// The value of the next line, which must be `key`'s.
    fn next(&mut self, key: &str) -> Result<(usize, &'a str), String> {
        match self.lines.next() {
            None => Err(format!("spec: no '{key}' line (the text ends before it)")),
            Some((n, line)) => match line.split_once(' ') {
                Some((k, v)) if k == key => Ok((n + 1, v)),
                _ => Err(format!(
                    "spec line {}: expected '{key} …', found \"{}\"",
                    n + 1,
                    line.escape_debug()
                )),
            },
        }
    }

    /// Whether the next line is `key`'s.
    fn at(&mut self, key: &str) -> bool {
        self.lines
            .peek()
            .is_some_and(|(_, l)| l.split_once(' ').is_some_and(|(k, _)| k == key))
    }

    fn spec(mut self) -> Result<RunSpec, String> {
        let bad = |n: usize, key: &str, v: &str, what: &str| {
            format!("spec line {n}: {key} \"{}\": {what}", v.escape_debug())
        };
        let (n, name) = self.next("name")?;
        super::ctl::check_name(name).map_err(|e| format!("spec line {n}: {e}"))?;
        let (n, v) = self.next("want")?;
        let want = Want::parse(v)
            .ok_or_else(|| bad(n, "want", v, "expected running, stopped or killed"))?;
        let (n, v) = self.next("starts")?;
        let starts = v
            .parse::<u64>()
            .map_err(|_| bad(n, "starts", v, "not a whole number"))?;
        let (n, v) = self.next("phase")?;
        let phase = Phase::parse(v).ok_or_else(|| bad(n, "phase", v, "not a state of an agent"))?;
        let (n, v) = self.next("runner")?;
        let runner = match v {
            "-" => None,
            r => {
                ctl::check_runner(r).map_err(|e| format!("spec line {n}: {e}"))?;
                Some(String::from(r))
            }
        };
        let (n, v) = self.next("exec")?;
        let exec = match v {
            "-" => None,
            e => Some(ctl::exec(e).map_err(|e| format!("spec line {n}: exec: {e}"))?),
        };
        let mut env = BTreeMap::new();
        while self.at("env") {
            let (n, v) = self.next("env")?;
            let Some((key, quoted)) = v.split_once('=') else {
                return Err(bad(n, "env", v, "expected KEY=VALUE"));
            };
            let value = match split_words(quoted).map_err(|e| bad(n, "env", v, &e))?[..] {
                [ref one] if !one.is_empty() => one.clone(),
                _ => return Err(bad(n, "env", v, "expected one quoted, non-empty value")),
            };
            ctl::check_env(key, &value).map_err(|e| format!("spec line {n}: env: {e}"))?;
            if env.insert(String::from(key), value).is_some() {
                return Err(bad(n, "env", v, "the variable is given twice"));
            }
        }
        let (n, v) = self.next("limits")?;
        let limits = limits(v)
            .ok_or_else(|| bad(n, "limits", v, "expected cpu=N|max mem=SIZE|max pids=N|max"))?;
        let (n, v) = self.next("policy")?;
        let policy = policy(v).ok_or_else(|| {
            bad(
                n,
                "policy",
                v,
                "expected always|on-failure|never max=N window=Ns",
            )
        })?;
        let (n, v) = self.next("intent")?;
        let words: Vec<&str> = v.split(' ').collect();
        let intent = intent::parse(&words).map_err(|e| format!("spec line {n}: intent: {e}"))?;
        let (n, v) = self.next("network")?;
        let network = match v {
            "yes" => true,
            "no" => false,
            _ => return Err(bad(n, "network", v, "expected yes or no")),
        };
        let (n, v) = self.next("placed")?;
        let placed = match v {
            "-" => None,
            id => Some(
                id.parse::<u64>()
                    .map_err(|_| bad(n, "placed", v, "expected a node id or -"))?,
            ),
        };
        let (n, v) = self.next("epoch")?;
        let epoch = v
            .parse::<u64>()
            .map_err(|_| bad(n, "epoch", v, "not a whole number"))?;
        let (n, v) = self.next("leave")?;
        let leave = match v {
            "yes" => true,
            "no" => false,
            _ => return Err(bad(n, "leave", v, "expected yes or no")),
        };
        if let Some((n, line)) = self.lines.next() {
            return Err(format!(
                "spec line {}: \"{}\" after the last line (leave)",
                n + 1,
                line.escape_debug()
            ));
        }
        Ok(RunSpec {
            name: String::from(name),
            want,
            starts,
            phase,
            runner,
            exec,
            env,
            limits,
            policy,
            intent,
            network,
            placed,
            epoch,
            leave,
        })
    }
}

/// `max`, or what `read` makes of the text.
fn limit<T>(v: &str, read: impl Fn(&str) -> Option<T>) -> Option<Option<T>> {
    if v == "max" {
        Some(None)
    } else {
        read(v).map(Some)
    }
}

/// `cpu=… mem=… pids=…`, as [`Limits::words`] writes them.
fn limits(v: &str) -> Option<Limits> {
    let mut words = v.split(' ');
    let cpu = words.next()?.strip_prefix("cpu=")?;
    let mem = words.next()?.strip_prefix("mem=")?;
    let pids = words.next()?.strip_prefix("pids=")?;
    if words.next().is_some() {
        return None;
    }
    let l = Limits {
        cpu: limit(cpu, |s| s.parse().ok())?,
        mem: limit(mem, parse_size)?,
        pids: limit(pids, |s| s.parse().ok())?,
    };
    // Only what `words` writes: one text for each value.
    (l.mem.map_or(mem == "max", |m| size_word(m) == mem)).then_some(l)
}

/// `POLICY max=N window=Ns`.
fn policy(v: &str) -> Option<Policy> {
    let mut words = v.split(' ');
    let restart = Restart::parse(words.next()?)?;
    let max = words.next()?.strip_prefix("max=")?.parse().ok()?;
    let window = words.next()?.strip_prefix("window=")?;
    if words.next().is_some() || !window.ends_with('s') {
        return None;
    }
    Some(Policy {
        restart,
        max,
        window: parse_duration(window)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::state::{AgentCmd, AgentOp, LimitChange, Seed};
    use alloc::string::ToString;
    use alloc::vec;

    fn s(x: &str) -> String {
        String::from(x)
    }

    fn spec() -> RunSpec {
        RunSpec {
            name: s("w"),
            want: Want::Running,
            starts: 3,
            phase: Phase::Running,
            runner: Some(s("host-a")),
            exec: Some(Exec {
                path: s("/usr/bin/worker"),
                args: vec![s("--queue"), s("jobs")],
            }),
            env: BTreeMap::from([(s("HOME"), s("/tmp")), (s("QUEUE"), s("jobs"))]),
            limits: Limits {
                cpu: Some(50),
                mem: Some(256 << 20),
                pids: None,
            },
            policy: Policy {
                restart: Restart::OnFailure,
                max: 3,
                window: 120,
            },
            intent: intent::parse(&["rw", "/chan/jobs", "rw", "/net"]).unwrap(),
            network: true,
            placed: Some(4),
            epoch: 2,
            leave: false,
        }
    }

    #[test]
    fn a_spec_reads_as_documented_and_parses_back() {
        let text = spec().to_string();
        assert_eq!(
            text,
            "name w\nwant running\nstarts 3\nphase running\nrunner host-a\nexec /usr/bin/worker --queue jobs\nenv HOME=/tmp\nenv QUEUE=jobs\nlimits cpu=50 mem=256M pids=max\npolicy on-failure max=3 window=120s\nintent rw /chan/jobs rw /net\nnetwork yes\nplaced 4\nepoch 2\nleave no\n"
        );
        assert_eq!(RunSpec::parse(&text).unwrap(), spec());
        let bare = RunSpec {
            runner: None,
            exec: None,
            env: BTreeMap::new(),
            limits: Limits::default(),
            policy: Policy::default(),
            intent: Intent::new(),
            network: false,
            placed: None,
            ..spec()
        };
        let text = bare.to_string();
        assert!(text.contains("runner -\nexec -\nlimits cpu=max mem=max pids=max\npolicy never max=5 window=60s\nintent none\nnetwork no\nplaced -\nepoch 2\nleave no\n"), "{text}");
        assert_eq!(RunSpec::parse(&text).unwrap(), bare);
    }

    /// Words no plain split would keep.
    const TRICKY: &[&str] = &[
        "",
        " ",
        "two  spaces",
        " lead and trail ",
        "it's",
        "''",
        "\"quoted\"",
        "back\\slash",
        "\\",
        "a=b=c",
        "=",
        "#not-a-comment",
        "-",
        "héllo wörld ✓",
        "\u{a0}nbsp\u{a0}",
        "'\"\\ mixed \\\"'",
    ];

    #[test]
    fn tricky_exec_args_and_env_values_round_trip() {
        let mut x = spec();
        x.exec = Some(Exec {
            path: s("/opt/my tools/run'it"),
            args: TRICKY.iter().map(|w| s(w)).collect(),
        });
        x.env = TRICKY
            .iter()
            .filter(|v| !v.is_empty())
            .enumerate()
            .map(|(i, v)| (format!("V{i}"), s(v)))
            .collect();
        let text = x.to_string();
        assert_eq!(RunSpec::parse(&text).unwrap(), x, "{text}");
        // The exec line is one ctl's exec reads back the same.
        let line = text.lines().find(|l| l.starts_with("exec ")).unwrap();
        assert_eq!(ctl::exec(&line[5..]).unwrap(), x.exec.clone().unwrap());
        for w in TRICKY {
            assert_eq!(split_words(&quote(w)).unwrap(), [*w], "{w:?}");
        }
        assert_eq!(quote("plain/word=1"), "plain/word=1");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn the_tokenizer_reads_shell_quoting() {
        let w = |t: &str| split_words(t).unwrap();
        assert_eq!(w("  a  b "), ["a", "b"]);
        assert_eq!(
            w("'a b' \"c \\\"d\\\" \\n\" e\\ f ''"),
            ["a b", "c \"d\" \\n", "e f", ""]
        );
        assert_eq!(w("x'y'\"z\""), ["xyz"]);
        assert!(w("").is_empty());
        assert_eq!(split_words("'open").unwrap_err(), "a ' is not closed");
        assert_eq!(split_words("\"open").unwrap_err(), "a \" is not closed");
        assert!(split_words("end\\").is_err());
    }

    #[test]
    fn a_bad_spec_is_refused_with_its_line() {
        let good = spec().to_string();
        let err = |text: &str| RunSpec::parse(text).unwrap_err().to_string();
        assert!(err("").contains("expected 'name …'"));
        assert!(
            err(&good.replace("want running", "want maybe")).contains("line 2: want \"maybe\"")
        );
        assert!(err(&good.replace("phase running\n", "")).contains("line 4: expected 'phase …'"));
        assert!(err(&good.replace("runner host-a", "runner ../x")).contains("line 5: runner"));
        assert!(err(&good.replace("exec /usr/bin/worker", "exec 'open")).contains("is not closed"));
        assert!(err(&good.replace("env HOME=/tmp", "env HOME=a b")).contains("one quoted"));
        assert!(err(&good.replace("env HOME=/tmp", "env HOME=''")).contains("one quoted"));
        assert!(err(&good.replace("env HOME=/tmp", "env QUEUE=x")).contains("given twice"));
        assert!(err(&good.replace("mem=256M", "mem=268435456")).contains("limits"));
        assert!(err(&good.replace("window=120s", "window=2m")).contains("policy"));
        assert!(err(&good.replace("network yes", "network maybe")).contains("network"));
        assert!(err(&format!("{good}seccomp strict\n")).contains("after the last line"));
        assert!(err(&good.replace("intent rw", "intent rx")).contains("not a right"));
    }

    #[test]
    fn render_takes_the_committed_agent() {
        let mut a = Agents::default();
        a.apply(&AgentCmd::Create {
            name: s("w"),
            seed: Seed([1; 32]),
            at: 5,
        })
        .unwrap();
        a.apply(&AgentCmd::Ctl {
            name: s("w"),
            ops: vec![
                AgentOp::Exec(ctl::exec("/bin/sh -c 'echo \"hi there\"' ''").unwrap()),
                AgentOp::Env {
                    key: s("TOKEN"),
                    value: Some(s("s3cr3t = 'x'")),
                },
                AgentOp::Limit(LimitChange {
                    mem: Some(Some(1 << 30)),
                    ..LimitChange::default()
                }),
                AgentOp::Intent(intent::parse(&["rwcda", "/"]).unwrap()),
                AgentOp::Start,
            ],
            at: 6,
        })
        .unwrap();
        let text = RunSpec::render(&a, &Swarm::default(), a.by_name("w").unwrap());
        assert_eq!(
            text,
            "name w\nwant running\nstarts 1\nphase pending\nrunner -\nexec /bin/sh -c 'echo \"hi there\"' ''\nenv TOKEN='s3cr3t = '\\''x'\\'''\nlimits cpu=100 mem=1G pids=256\npolicy never max=5 window=60s\nintent rwcda /\nnetwork yes\nplaced -\nepoch 0\nleave no\n"
        );
        let back = RunSpec::parse(&text).unwrap();
        assert_eq!(back.exec.unwrap().args, ["-c", "echo \"hi there\"", ""]);
        assert_eq!(back.env["TOKEN"], "s3cr3t = 'x'");
    }
}
