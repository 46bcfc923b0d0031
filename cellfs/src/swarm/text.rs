//! The text of `/swarm/status` and `/swarm/nodes/ID/status`: one
//! `key value` pair per line (swarm(3) FILES lists them in order).

use alloc::string::String;
use core::fmt::Write;

use crate::dev::Ctx;
use crate::gossip::Liveness;
use crate::swarm::liveness;
use crate::swarm::state::{Fenced, SwarmNode, id_list};

/// The role the committed configuration gives `id`, as the swarm names
/// it (a non-voter is a learner).
fn role(cx: &Ctx<'_>, id: u64) -> &'static str {
    match crate::raft::device::committed_role(cx, id) {
        Some("non-voter") => "learner",
        Some(r) => r,
        None => "none",
    }
}

fn word(l: Option<Liveness>) -> String {
    l.map_or_else(|| String::from("unknown"), |l| alloc::format!("{l}"))
}

/// The text of `/swarm/status`.
pub fn status(cx: &Ctx<'_>) -> String {
    let s = &cx.state.swarm;
    let v = cx.vantage;
    let mut t = String::with_capacity(512);
    match &s.id {
        Some(id) => {
            let _ = writeln!(t, "swarm {}", crate::hex::encode(id));
        }
        None => t.push_str("swarm none\n"),
    }
    match &v.me {
        Some(me) => {
            let _ = writeln!(t, "node {}", me.id);
        }
        None => t.push_str("node none\n"),
    }
    let m = &cx.state.membership;
    let _ = writeln!(t, "incarnation {}", v.view.incarnation);
    // What this node's runner needs to know it may run its agents.
    let _ = writeln!(
        t,
        "lease {}",
        or_dash(cx.lease_ms.map(|ms| alloc::format!("{ms}ms")))
    );
    let _ = writeln!(t, "voters {}", id_list(m.voters.iter()));
    let _ = writeln!(t, "voters-wanted {}", s.voters);
    let _ = writeln!(t, "learners {}", id_list(m.non_voters.iter()));
    let _ = writeln!(t, "members {}", s.nodes.len());
    let mut counts = [0usize; 5];
    for id in s.nodes.keys() {
        let i = match liveness(cx, *id) {
            Some(Liveness::Alive) => 0,
            Some(Liveness::Suspect) => 1,
            Some(Liveness::Dead) => 2,
            Some(Liveness::Left) => 3,
            None => 4,
        };
        counts[i] += 1;
    }
    for (name, n) in ["alive", "suspect", "dead", "left", "unknown"]
        .iter()
        .zip(counts)
    {
        let _ = writeln!(t, "{name} {n}");
    }
    let c = &v.view.counters;
    let _ = write!(
        t,
        "health {}\nsent {}\nreceived {}\nsent-bytes {}\nreceived-bytes {}\n\
         dropped-bad-signature {}\ndropped-foreign {}\ndropped-replay {}\n\
         dropped-unknown {}\ndropped-malformed {}\n",
        v.view.health,
        c.sent,
        c.received,
        c.sent_bytes,
        c.received_bytes,
        c.dropped_bad_signature,
        c.dropped_foreign,
        c.dropped_replay,
        c.dropped_unknown,
        c.dropped_malformed
    );
    t
}

/// The text of `/swarm/nodes/ID/status`.
pub fn node(cx: &Ctx<'_>, n: &SwarmNode) -> String {
    let r = &n.record;
    let v = cx.vantage;
    let me = v.me.as_ref().is_some_and(|m| m.id == r.id);
    let seen = v.view.members.get(&r.id);
    let mut t = String::with_capacity(320);
    let _ = writeln!(t, "id {}", r.id);
    let _ = writeln!(t, "state {}", word(liveness(cx, r.id)));
    let _ = writeln!(t, "role {}", role(cx, r.id));
    let _ = writeln!(t, "name {}", if r.name.is_empty() { "-" } else { &r.name });
    let _ = writeln!(t, "addr {}\ngossip {}\nraft {}", r.addr, r.gossip, r.raft);
    let incarnation = if me {
        Some(v.view.incarnation)
    } else {
        seen.map(|o| o.incarnation)
    };
    let _ = writeln!(t, "incarnation {}", or_dash(incarnation));
    let last_seen = if me {
        Some(0)
    } else {
        seen.and_then(|o| o.last_seen_ms)
            .map(|at| v.now_ms.saturating_sub(at))
    };
    match last_seen {
        Some(ms) => {
            let _ = writeln!(t, "last-seen {ms}ms");
        }
        None => t.push_str("last-seen never\n"),
    }
    let _ = writeln!(
        t,
        "rtt {}",
        seen.and_then(|o| o.rtt_us)
            .map_or_else(|| String::from("-"), |us| alloc::format!("{us}us"))
    );
    let _ = writeln!(
        t,
        "health {}",
        if me {
            alloc::format!("{}", v.view.health)
        } else {
            String::from("-")
        }
    );
    let agents = cx.state.agents.running_on(&r.name);
    let _ = writeln!(t, "agents {agents}");
    // Others' uptime is not gossiped: what this node knows is how long it
    // has seen it alive.
    let uptime = if me {
        Some(cx.uptime_secs)
    } else {
        seen.filter(|o| o.state == Liveness::Alive)
            .map(|o| v.now_ms.saturating_sub(o.since_ms) / 1000)
    };
    let _ = writeln!(
        t,
        "uptime {}",
        or_dash(uptime.map(|s| alloc::format!("{s}s")))
    );
    let _ = writeln!(t, "drained {}", if n.drained { "yes" } else { "no" });
    let _ = writeln!(t, "joined {}", n.joined_ms);
    let _ = writeln!(t, "key {}", crate::hex::encode(&r.key));
    let load = cx
        .state
        .agents
        .loads()
        .get(&r.id)
        .copied()
        .unwrap_or_default();
    let _ = writeln!(t, "placed {}", load.agents);
    match n.capacity {
        Some(c) => {
            let _ = writeln!(
                t,
                "capacity cpus={} mem={} placed-mem={}",
                c.cpus,
                crate::ctl::size_word(c.mem),
                crate::ctl::size_word(load.mem)
            );
        }
        None => t.push_str("capacity -\n"),
    }
    let labels: alloc::vec::Vec<String> = n
        .labels
        .iter()
        .map(|(k, v)| alloc::format!("{k}={v}"))
        .collect();
    let _ = writeln!(
        t,
        "labels {}",
        if labels.is_empty() {
            String::from("-")
        } else {
            labels.join(",")
        }
    );
    let _ = writeln!(
        t,
        "fenced {}",
        match n.fenced {
            None => "no",
            Some(Fenced::Dead) => "node-dead",
            Some(Fenced::LeaseLost) => "lease-lost",
        }
    );
    t
}

fn or_dash<T: core::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| String::from("-"), |x| alloc::format!("{x}"))
}
