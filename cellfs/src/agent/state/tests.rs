//! Tests of the agent state: commands applied, checked and bounded.

use super::*;
use crate::agent::intent::{self, parse};
use crate::command::Applied;
use crate::events::Kind;
use alloc::string::ToString;
use alloc::vec;

fn s(x: &str) -> String {
    String::from(x)
}

fn intent(words: &str) -> Intent {
    let w: Vec<&str> = words.split_whitespace().collect();
    parse(&w).unwrap()
}

fn agents(names: &[&str]) -> Agents {
    let mut a = Agents::default();
    for (i, n) in names.iter().enumerate() {
        a.apply(&AgentCmd::Create {
            name: s(n),
            seed: Seed([i as u8; 32]),
            at: 10,
        })
        .unwrap();
    }
    a
}

fn ctl(a: &mut Agents, name: &str, ops: Vec<AgentOp>) -> Result<Applied, Error> {
    a.apply(&AgentCmd::Ctl {
        name: s(name),
        ops,
        at: 20,
    })
}

fn spawn(child: &str, i: &str) -> AgentOp {
    AgentOp::Spawn {
        child: s(child),
        seed: Seed([9; 32]),
        intent: intent(i),
    }
}

fn exec() -> AgentOp {
    AgentOp::Exec(Exec {
        path: s("/bin/true"),
        args: vec![],
    })
}

#[test]
fn two_replicas_applying_the_same_commands_hold_the_same_keys() {
    let cmds = [
        AgentCmd::Create {
            name: s("a"),
            seed: Seed([3; 32]),
            at: 1,
        },
        AgentCmd::Ctl {
            name: s("a"),
            ops: vec![spawn("b", "none")],
            at: 2,
        },
    ];
    let (mut x, mut y) = (Agents::default(), Agents::default());
    for c in &cmds {
        x.apply(c).unwrap();
        y.apply(c).unwrap();
    }
    for n in ["a", "b"] {
        let (ka, kb) = (x.by_name(n).unwrap().key, y.by_name(n).unwrap().key);
        assert_eq!(ka, kb);
    }
    assert_eq!(x.by_name("a").unwrap().key, Seed([3; 32]).public());
    assert_ne!(x.by_name("a").unwrap().key, x.by_name("b").unwrap().key);
    let dbg = alloc::format!("{:?} {:?}", cmds[0], x.by_name("a").unwrap());
    assert!(!dbg.contains("3, 3"), "the seed is never printed: {dbg}");
}

#[test]
fn start_stop_kill_set_want_and_phase_with_since() {
    let mut a = agents(&["a"]);
    let e = ctl(&mut a, "a", vec![AgentOp::Start]).unwrap_err();
    assert!(e.to_string().contains("no program to run"), "{e}");
    ctl(&mut a, "a", vec![exec(), AgentOp::Start]).unwrap();
    let x = a.by_name("a").unwrap();
    assert_eq!(
        (x.want, x.phase, x.since),
        (Want::Running, Phase::Pending, 20)
    );
    a.apply(&AgentCmd::Ctl {
        name: s("a"),
        ops: vec![AgentOp::Kill],
        at: 30,
    })
    .unwrap();
    let x = a.by_name("a").unwrap();
    assert_eq!(
        (x.want, x.phase, x.since),
        (Want::Killed, Phase::Stopped, 30)
    );
    let mut b = agents(&["b"]);
    ctl(&mut b, "b", vec![AgentOp::Stop]).unwrap();
    let x = b.by_name("b").unwrap();
    assert_eq!((x.phase, x.since), (Phase::Created, 10), "never started");
}

#[test]
fn a_bad_op_anywhere_changes_nothing() {
    let mut a = agents(&["a"]);
    let ops = vec![
        AgentOp::Env {
            key: s("K"),
            value: Some(s("v")),
        },
        exec(),
        spawn("b", "none"),
        spawn("b", "none"),
    ];
    assert!(matches!(ctl(&mut a, "a", ops), Err(Error::Exists(_))));
    let x = a.by_name("a").unwrap();
    assert!(x.env.is_empty() && x.exec.is_none() && x.children.is_empty());
    assert_eq!((a.len(), x.version), (1, 0));
}

#[test]
fn a_sub_agent_is_never_wider_than_its_parent() {
    let mut a = agents(&["p"]);
    ctl(&mut a, "p", vec![AgentOp::Intent(intent("rw /chan"))]).unwrap();
    let e = ctl(&mut a, "p", vec![spawn("c", "rwc /chan/x")]).unwrap_err();
    assert!(e.to_string().contains("wider than p's intent"), "{e}");
    assert!(a.by_name("c").is_none());
    ctl(&mut a, "p", vec![spawn("c", "r /chan/x")]).unwrap();
    let c = a.by_name("c").unwrap();
    assert_eq!(c.parent.as_deref(), Some("p"));
    assert_eq!(intent::words(&c.intent), "r /chan/x");
    assert!(a.by_name("p").unwrap().children.contains("c"));
    // The child may not widen itself, nor the parent narrow below it.
    let e = ctl(&mut a, "c", vec![AgentOp::Intent(intent("r /cap"))]).unwrap_err();
    assert!(e.to_string().contains("parent p"), "{e}");
    let e = ctl(&mut a, "p", vec![AgentOp::Intent(intent("r /cap"))]).unwrap_err();
    assert!(e.to_string().contains("sub-agent c"), "{e}");
    // Nor spawn and narrow in one write.
    let e = ctl(
        &mut a,
        "p",
        vec![spawn("d", "w /chan/y"), AgentOp::Intent(intent("r /chan"))],
    )
    .unwrap_err();
    assert!(e.to_string().contains("sub-agent d"), "{e}");
    assert!(a.by_name("d").is_none());
    ctl(&mut a, "c", vec![AgentOp::Intent(intent("r /chan/x/y"))]).unwrap();
}

#[test]
fn stopping_or_killing_a_parent_stops_its_whole_tree() {
    let mut a = agents(&["p", "other"]);
    ctl(&mut a, "p", vec![spawn("c", "none")]).unwrap();
    ctl(&mut a, "c", vec![spawn("g", "none")]).unwrap();
    for n in ["p", "c", "g", "other"] {
        ctl(&mut a, n, vec![exec(), AgentOp::Start]).unwrap();
    }
    let done = ctl(&mut a, "p", vec![AgentOp::Kill]).unwrap();
    for n in ["p", "c", "g"] {
        assert_eq!(a.by_name(n).unwrap().want, Want::Killed, "{n}");
    }
    assert_eq!(a.by_name("other").unwrap().want, Want::Running);
    let said: Vec<&str> = done.events.iter().map(|(_, t)| t.as_str()).collect();
    assert!(
        said.contains(&"agent g: kill (with its parent p)"),
        "{said:?}"
    );
    // A child stopped alone leaves its parent be.
    ctl(&mut a, "other", vec![spawn("o2", "none")]).unwrap();
    ctl(&mut a, "o2", vec![exec(), AgentOp::Start]).unwrap();
    ctl(&mut a, "o2", vec![AgentOp::Stop]).unwrap();
    assert_eq!(a.by_name("other").unwrap().want, Want::Running);
    assert_eq!(a.by_name("o2").unwrap().want, Want::Stopped);
}

#[test]
fn removal_refuses_parents_and_wanted_agents_and_unlinks_children() {
    let mut a = agents(&["p"]);
    ctl(&mut a, "p", vec![spawn("c", "none")]).unwrap();
    let e = a.apply(&AgentCmd::Remove { name: s("p") }).unwrap_err();
    assert!(e.to_string().contains("sub-agents (c)"), "{e}");
    ctl(&mut a, "c", vec![exec(), AgentOp::Start]).unwrap();
    let e = a.apply(&AgentCmd::Remove { name: s("c") }).unwrap_err();
    assert!(e.to_string().contains("wanted running"), "{e}");
    ctl(&mut a, "c", vec![AgentOp::Stop]).unwrap();
    a.apply(&AgentCmd::Remove { name: s("c") }).unwrap();
    assert!(a.by_name("p").unwrap().children.is_empty());
    a.apply(&AgentCmd::Remove { name: s("p") }).unwrap();
    assert!(a.is_empty());
    let e = a.apply(&AgentCmd::Remove { name: s("p") }).unwrap_err();
    assert!(matches!(e, Error::NotFound(_)));
}

#[test]
fn env_limits_and_policy_change_only_what_is_named() {
    let mut a = agents(&["a"]);
    ctl(
        &mut a,
        "a",
        vec![
            AgentOp::Env {
                key: s("K"),
                value: Some(s("v")),
            },
            AgentOp::Limit(LimitChange {
                cpu: Some(Some(50)),
                ..LimitChange::default()
            }),
            AgentOp::Restart {
                restart: Some(Restart::Always),
                max: None,
                window: None,
            },
        ],
    )
    .unwrap();
    ctl(
        &mut a,
        "a",
        vec![
            AgentOp::Env {
                key: s("K"),
                value: None,
            },
            AgentOp::Limit(LimitChange {
                mem: Some(Some(1 << 30)),
                ..LimitChange::default()
            }),
        ],
    )
    .unwrap();
    let x = a.by_name("a").unwrap();
    assert!(x.env.is_empty());
    assert_eq!(
        x.limits.words(),
        "cpu=50 mem=1G pids=256",
        "pids: the default"
    );
    assert_eq!(
        (x.policy.restart, x.policy.max, x.policy.window),
        (Restart::Always, 5, 60)
    );
}

fn exit(code: u8, restarting: bool) -> AgentOp {
    AgentOp::Report(Report::Exit(ExitReport {
        how: ExitHow::Code(code),
        restarting,
        stderr: vec![s("boom")],
        ops: vec![Recent {
            at: 19,
            text: s("read /chan/in/data"),
            times: 2,
        }],
        before: None,
    }))
}

fn running() -> AgentOp {
    AgentOp::Report(Report::Running {
        pid: 42,
        node: s("n1"),
    })
}

fn drift(a: &mut Agents, starts: u64) -> Applied {
    a.apply(&AgentCmd::Drift {
        name: s("a"),
        op: s("write"),
        path: s("/chan/out/data"),
        at: 30,
        starts,
        ops: vec![],
        before: None,
    })
    .unwrap()
}

#[test]
fn reports_move_the_phase_and_exits_are_traced_and_counted() {
    let mut a = agents(&["a"]);
    ctl(&mut a, "a", vec![exec(), AgentOp::Start, running()]).unwrap();
    let x = a.by_name("a").unwrap();
    assert_eq!(
        (x.phase, x.pid, x.node.as_deref()),
        (Phase::Running, Some(42), Some("n1"))
    );
    ctl(&mut a, "a", vec![exit(1, true)]).unwrap();
    ctl(&mut a, "a", vec![running(), exit(2, false)]).unwrap();
    let x = a.by_name("a").unwrap();
    assert_eq!((x.phase, x.pid, x.restarts), (Phase::Exited, None, 1));
    assert_eq!(x.last_exit, Some(ExitHow::Code(2)));
    assert_eq!(x.trace.len(), 2);
    assert_eq!(x.trace[0].stderr, ["boom"]);
    assert!(matches!(
        &x.trace[1].what,
        Happened::Exit {
            pid: Some(42),
            restarting: false,
            ..
        }
    ));
    ctl(&mut a, "a", vec![AgentOp::Report(Report::Crashloop)]).unwrap();
    assert_eq!(a.by_name("a").unwrap().phase, Phase::Crashloop);
    ctl(
        &mut a,
        "a",
        vec![AgentOp::Report(Report::Failed(s("no such program")))],
    )
    .unwrap();
    let x = a.by_name("a").unwrap();
    assert_eq!(
        (x.phase, x.reason.as_deref()),
        (Phase::Failed, Some("no such program"))
    );
    ctl(&mut a, "a", vec![AgentOp::Start]).unwrap();
    let x = a.by_name("a").unwrap();
    assert_eq!((x.phase, x.reason.as_deref()), (Phase::Pending, None));
    // Stopping a running agent waits for its runner; an exit then is
    // a stop.
    ctl(&mut a, "a", vec![running(), AgentOp::Stop]).unwrap();
    assert_eq!(a.by_name("a").unwrap().phase, Phase::Running);
    ctl(&mut a, "a", vec![exit(0, false)]).unwrap();
    assert_eq!(a.by_name("a").unwrap().phase, Phase::Stopped);
}

#[test]
fn a_drift_halts_until_start_and_a_stale_one_changes_nothing() {
    let mut a = agents(&["a"]);
    ctl(&mut a, "a", vec![exec(), AgentOp::Start, running()]).unwrap();
    let starts = a.by_name("a").unwrap().starts;
    let done = drift(&mut a, starts);
    assert_eq!(done.events[0].0, Kind::Drift);
    assert!(
        done.events[0]
            .1
            .contains("write /chan/out/data is outside its intent (none)")
    );
    let x = a.by_name("a").unwrap();
    assert_eq!(
        (x.phase, x.want, x.since),
        (Phase::HaltedDrift, Want::Stopped, 30)
    );
    assert_eq!(x.drift.as_ref().map(|d| d.at), Some(30));
    assert_eq!(x.trace.len(), 1);
    // Reports and stop keep it halted; a second drift adds nothing.
    ctl(
        &mut a,
        "a",
        vec![
            AgentOp::Stop,
            exit(9, false),
            AgentOp::Report(Report::Stopped),
        ],
    )
    .unwrap();
    assert!(drift(&mut a, starts).events.is_empty());
    let x = a.by_name("a").unwrap();
    assert_eq!(
        (x.phase, x.trace.len(), x.pid),
        (Phase::HaltedDrift, 2, None)
    );
    ctl(&mut a, "a", vec![AgentOp::Start]).unwrap();
    let x = a.by_name("a").unwrap();
    assert_eq!(
        (x.phase, x.want, x.drift.is_none()),
        (Phase::Pending, Want::Running, true)
    );
    // Caught in the run before this start: stale.
    assert!(drift(&mut a, starts).events.is_empty());
    assert_eq!(a.by_name("a").unwrap().phase, Phase::Pending);
}

fn claim(runner: &str) -> AgentOp {
    AgentOp::Report(Report::Claim { runner: s(runner) })
}

fn resumed() -> AgentOp {
    AgentOp::Report(Report::Resumed {
        ops: vec![],
        before: None,
    })
}

#[test]
fn one_runner_holds_a_claim_until_it_lets_the_agent_go() {
    let mut a = agents(&["a"]);
    ctl(&mut a, "a", vec![exec(), AgentOp::Start, claim("h1")]).unwrap();
    // Again by the same runner: fine.
    ctl(&mut a, "a", vec![claim("h1"), running()]).unwrap();
    let version = a.by_name("a").unwrap().version;
    let e = ctl(&mut a, "a", vec![AgentOp::Stop, claim("h2")]).unwrap_err();
    assert!(
        e.to_string().starts_with("agent a is run by runner h1; "),
        "{e}"
    );
    let x = a.by_name("a").unwrap();
    assert_eq!(
        (x.runner.as_deref(), x.want, x.version),
        (Some("h1"), Want::Running, version),
        "nothing changed"
    );
    // Released in the same write, then taken.
    ctl(
        &mut a,
        "a",
        vec![AgentOp::Report(Report::Release), claim("h2")],
    )
    .unwrap();
    assert_eq!(a.by_name("a").unwrap().runner.as_deref(), Some("h2"));
    // Reports that the runner let it go release it too.
    for gone in [Report::Stopped, Report::Crashloop, Report::Failed(s("x"))] {
        ctl(&mut a, "a", vec![claim("h3")]).unwrap_err();
        ctl(&mut a, "a", vec![AgentOp::Report(gone)]).unwrap();
        assert_eq!(a.by_name("a").unwrap().runner, None);
        ctl(&mut a, "a", vec![claim("h2")]).unwrap();
    }
    ctl(&mut a, "a", vec![exit(1, true)]).unwrap();
    assert_eq!(a.by_name("a").unwrap().runner.as_deref(), Some("h2"));
}

#[test]
fn a_resume_needs_a_claim_and_is_traced_and_counted() {
    let mut a = agents(&["a"]);
    ctl(&mut a, "a", vec![exec(), AgentOp::Start, running()]).unwrap();
    let e = ctl(&mut a, "a", vec![resumed()]).unwrap_err();
    assert!(e.to_string().contains("no runner has claimed it"), "{e}");
    ctl(&mut a, "a", vec![claim("h1"), resumed()]).unwrap();
    let x = a.by_name("a").unwrap();
    assert_eq!(
        (x.phase, x.pid, x.resumes, x.runner.as_deref()),
        (Phase::Pending, None, 1, Some("h1"))
    );
    assert_eq!(
        x.trace[0].what,
        Happened::Resume {
            runner: s("h1"),
            pid: Some(42),
            node: Some(s("n1")),
        }
    );
    // Claims and resumes are committed state: a snapshot keeps them.
    let bytes = postcard::to_allocvec(&a).unwrap();
    let back: Agents = postcard::from_bytes(&bytes).unwrap();
    let y = back.by_name("a").unwrap();
    assert_eq!(
        (y.runner.as_deref(), y.resumes, &y.trace),
        (Some("h1"), 1, &x.trace)
    );
}

#[test]
fn log_and_trace_are_bounded() {
    let mut a = agents(&["a"]);
    let lines: Vec<AgentOp> = (0..MAX_LOG_LINES + 10)
        .map(|i| AgentOp::Log(alloc::format!("line {i}")))
        .collect();
    let done = ctl(&mut a, "a", lines).unwrap();
    assert!(done.events.is_empty(), "output is not an event");
    let x = a.by_name("a").unwrap();
    assert_eq!(x.log.len(), MAX_LOG_LINES);
    assert_eq!(x.log[0], "line 10");
    let big = s(&"x".repeat(4000));
    // One line a second: within the rate.
    for t in 0..40 {
        a.apply(&AgentCmd::Ctl {
            name: s("a"),
            ops: vec![AgentOp::Log(big.clone())],
            at: 100 + t,
        })
        .unwrap();
    }
    let x = a.by_name("a").unwrap();
    assert!(x.log_bytes <= MAX_LOG_BYTES);
    assert_eq!(
        x.log_bytes,
        x.log.iter().map(|l| l.len() + 1).sum::<usize>()
    );
    for _ in 0..MAX_TRACE + 5 {
        ctl(&mut a, "a", vec![exit(1, true)]).unwrap();
    }
    let x = a.by_name("a").unwrap();
    assert_eq!(
        (x.trace.len(), x.restarts),
        (MAX_TRACE, MAX_TRACE as u32 + 5)
    );
}

#[test]
fn bounds_hold_when_applied_not_only_when_proposed() {
    // Each command below passed the proposer's check against the
    // same state; applied in order, the later ones are refused.
    let mut a = agents(&["p"]);
    let logs = |n: usize| vec![AgentOp::Log(s(&"x".repeat(999))); n];
    ctl(&mut a, "p", logs(40)).unwrap();
    let e = ctl(&mut a, "p", logs(40)).unwrap_err();
    assert!(e.to_string().contains("over its rate"), "{e}");
    assert_eq!(a.by_name("p").unwrap().log.len(), 40);
    // A tree's quota.
    ctl(&mut a, "p", vec![AgentOp::Quota(Some(2))]).unwrap();
    ctl(&mut a, "p", vec![spawn("c", "none")]).unwrap();
    let e = ctl(&mut a, "p", vec![spawn("d", "none")]).unwrap_err();
    assert!(
        e.to_string()
            .contains("the agent tree of p holds 2 agents, its quota (2)"),
        "{e}"
    );
    // Limits, against ancestors and against the agent that wrote them.
    let lim = |pids| {
        AgentOp::Limit(LimitChange {
            pids: Some(pids),
            ..LimitChange::default()
        })
    };
    ctl(&mut a, "p", vec![lim(Some(10))]).unwrap();
    let e = ctl(&mut a, "c", vec![lim(None)]).unwrap_err();
    assert!(
        e.to_string()
            .contains("pids=max is above the limit of its ancestor p (pids=10)"),
        "{e}"
    );
    let e = ctl(&mut a, "p", vec![AgentOp::By(s("c")), lim(Some(11))]).unwrap_err();
    assert!(
        e.to_string()
            .contains("above the limit of agent c (pids=10)"),
        "{e}"
    );
    let e = ctl(&mut a, "p", vec![AgentOp::By(s("gone")), lim(Some(1))]).unwrap_err();
    assert!(e.to_string().contains("there is no agent gone"), "{e}");
    let e = ctl(&mut a, "p", vec![AgentOp::By(s("p")), AgentOp::Quota(None)]).unwrap_err();
    assert!(
        e.to_string().contains("agents may not set the quota"),
        "{e}"
    );
    let e = ctl(&mut a, "c", vec![AgentOp::Quota(None)]).unwrap_err();
    assert!(e.to_string().contains("the root of its agent tree"), "{e}");
    // A spawn an agent writes records it as the maker.
    ctl(&mut a, "p", vec![AgentOp::Quota(None)]).unwrap();
    ctl(&mut a, "p", vec![AgentOp::By(s("c")), spawn("d", "none")]).unwrap();
    let d = a.by_name("d").unwrap();
    assert_eq!(
        (d.parent.as_deref(), d.made_by.as_deref()),
        (Some("p"), Some("c"))
    );
    assert_eq!(a.effective(d).words(), "cpu=100 mem=512M pids=10");
    assert_eq!(a.tree_size("p"), 3);
}
