//! The cost of capabilities: the read case with the owner token and with a
//! narrow one, and how fast tokens verify.

use std::time::{Duration, Instant};

use anyhow::Context;
use cellfs::cap::{Rights, Token};
use ninep::Body;

use super::conn::Conn;
use super::servers::Target;
use super::workload::{self, Workload};

/// The channel the narrow token reaches.
const CHANNEL: &str = "benchcap";

/// Print the read case against `node` with its owner token (reading
/// `/chan/benchcap/status`) and with a three-link token scoped to that
/// channel with rights `r` (reading `status` under its root), side by
/// side, then tokens verified per second.
pub fn run(node: &Target, owner: &Token, conns: &[usize], span: Duration) -> anyhow::Result<()> {
    let mut c = Conn::open(&node.addr, &node.aname)?;
    c.walk(1, &["chan"])?;
    // Left over from an earlier run on the same node is fine.
    let _ = c.rpc(Body::Tmkdir {
        dfid: 1,
        name: CHANNEL,
        mode: 0o755,
        gid: 0,
    });
    c.clunk(1)?;
    let narrow = narrow_token(owner)?;
    let wide = Target {
        name: "owner",
        addr: node.addr.clone(),
        aname: node.aname.clone(),
        small: format!("chan/{CHANNEL}/status"),
        channels: true,
        process: None,
    };
    let scoped = Target {
        name: "narrow",
        aname: format!("token={}", narrow.to_text()),
        small: "status".into(),
        ..wide.clone_without_process()
    };
    println!();
    println!(
        "cost of enforcement: owner token (/, rwcda, 1 link) vs a token for /chan/{CHANNEL}, rights r, 3 links"
    );
    let mut ratios = Vec::new();
    for &n in conns {
        let mut rates = Vec::new();
        for t in [&wide, &scoped] {
            let f = workload::measure(t, Workload::ReadSmall, n, span)
                .with_context(|| format!("the read case with the {} token", t.name))?;
            super::print_row(Workload::ReadSmall, t.name, n, &f);
            rates.push(f.ops_per_sec());
        }
        ratios.push((n, rates[1] / rates[0]));
    }
    for (n, r) in ratios {
        println!(
            "narrow/owner ops/s, read case, {n} conn{}: {r:.3} ({:+.1} %)",
            if n == 1 { "" } else { "s" },
            (r - 1.0) * 100.0
        );
    }
    let (count, elapsed) = verify_rate(&narrow, owner);
    println!(
        "Token::verify of the 3-link token: {:.0} verified/s ({count} in {:.2} s)",
        count as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// owner → /chan (rw) → /chan/benchcap (r): three links.
fn narrow_token(owner: &Token) -> anyhow::Result<Token> {
    let c = owner.claims();
    let mid = owner
        .attenuate(
            "bench-mid",
            "/chan",
            Rights::parse("rw").unwrap_or(Rights::NONE),
            c.not_before,
            c.expires,
        )
        .map_err(|e| anyhow::anyhow!("attenuating the owner token: {e}"))?;
    // A link without the admin right may rename its holder only to a
    // sub-name of its parent's (cap(3), HOLDERS).
    mid.attenuate(
        "bench-mid/bench",
        &format!("/chan/{CHANNEL}"),
        Rights::parse("r").unwrap_or(Rights::NONE),
        c.not_before,
        c.expires,
    )
    .map_err(|e| anyhow::anyhow!("attenuating the owner token: {e}"))
}

/// Verify `t` (issued by `owner`'s issuer) in a loop for about a second.
fn verify_rate(t: &Token, owner: &Token) -> (u64, Duration) {
    let issuer = owner.issuer;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..16 {
            let g = t.verify(|k| *k == issuer);
            std::hint::black_box(&g);
            n += 1;
        }
    }
    (n, start.elapsed())
}
