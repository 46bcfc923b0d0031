//! `cell0 cap mint|attenuate|inspect|revoke`: capabilities from the shell.
//! See cap(3).
//!
//! `mint` and `revoke` write verbs to the node's `/cap/ctl` with the
//! caller's token, attached at `/cap` (the aname word of cap(3) ATTACH),
//! so that a token with the admin right over a narrower scope than `/`
//! reaches it too; `attenuate` and `inspect` work offline on a token
//! file, which is the point of attenuation: a holder narrows what it
//! holds without asking anyone.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cellfs::cap::{Rights, Token};
use ninep::Dialect;

use crate::client::{Client, Options, mode};
use crate::cmd::verbs::{Node, connect};
use crate::identity::{now, parse_hex32, read_token, write_secret};

/// `cell0 cap …`.
#[derive(clap::Subcommand, Debug)]
pub enum CapCmd {
    /// Ask the node for a new capability (needs the admin right over SCOPE).
    Mint {
        /// The subtree it reaches.
        #[arg(long)]
        scope: String,
        /// Rights letters: r read, w write, c create, d remove, a admin.
        #[arg(long)]
        rights: String,
        /// How long it is valid: 300s, 5m, 2h, 7d.
        #[arg(long, default_value = "300s")]
        ttl: String,
        /// Who holds it: 1-64 bytes of printable ASCII, no spaces; not
        /// `owner`; `agent/NAME` needs the admin right over /agent/NAME.
        #[arg(long)]
        holder: String,
        /// Also write it to this file (mode 0600).
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        node: crate::args::ClientArgs,
    },
    /// Derive a narrower token from one you hold, offline.
    Attenuate {
        /// The subtree it reaches (inside the parent's) [default: the parent's]
        #[arg(long)]
        scope: Option<String>,
        /// Rights letters, a subset of the parent's [default: the parent's]
        #[arg(long)]
        rights: Option<String>,
        /// How long it is valid, no later than the parent [default: as the parent]
        #[arg(long)]
        ttl: Option<String>,
        /// Who holds it [default: the parent's holder]; another holder
        /// needs the admin right, or a sub-name PARENT/NAME, and an
        /// agent's token keeps its holder (see cap(3) HOLDERS)
        #[arg(long)]
        holder: Option<String>,
        /// Also write it to this file (mode 0600).
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
        /// The token to narrow, or `-` for standard input.
        #[arg(default_value = "-")]
        token: PathBuf,
    },
    /// Print every link of a token; with --node, check it against a node.
    Inspect {
        /// The token, or `-` for standard input.
        #[arg(default_value = "-")]
        token: PathBuf,
        /// Also ask this node whether it signed the token and would accept
        /// it now (uses --token/--data to read /cap/key and /cap/revoked).
        #[arg(long = "node", value_name = "ADDR")]
        node_addr: Option<String>,
        /// The capability to read the node's /cap with [default: DATA/owner.token]
        #[arg(long = "as", value_name = "FILE")]
        as_token: Option<PathBuf>,
        /// The data directory whose owner token is the default.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
    },
    /// Revoke a capability (and every token derived from it).
    Revoke {
        /// A token file, or a capability id.
        what: String,
        #[command(flatten)]
        node: crate::args::ClientArgs,
    },
}

/// Run one `cell0 cap` subcommand.
pub fn run(cmd: CapCmd) -> anyhow::Result<()> {
    match cmd {
        CapCmd::Mint {
            scope,
            rights,
            ttl,
            holder,
            out,
            node,
        } => {
            parse_rights(&rights)?;
            let secs = parse_ttl(&ttl)?;
            cellfs::cap::token::check_holder(&holder)
                .map_err(|e| anyhow::anyhow!("--holder {holder:?}: {e}"))?;
            let node = Node::from_args(&node)?;
            let token = mint(&node, &scope, &rights, secs, &holder)?;
            emit(&token, out.as_deref())
        }
        CapCmd::Attenuate {
            scope,
            rights,
            ttl,
            holder,
            out,
            token,
        } => {
            let parent = read_token(&token)?;
            let child = attenuate(
                &parent,
                scope.as_deref(),
                rights.as_deref(),
                ttl.as_deref(),
                holder.as_deref(),
                now(),
            )?;
            emit(&child.to_text(), out.as_deref())
        }
        CapCmd::Inspect {
            token,
            node_addr,
            as_token,
            data,
        } => {
            let t = read_token(&token)?;
            print!("{}", describe(&t));
            if let Some(addr) = node_addr {
                let node = Node {
                    addr,
                    token: crate::identity::ClientToken::resolve(
                        as_token.as_deref(),
                        data.as_deref(),
                    )?,
                };
                check_against(&t, &node)?;
            }
            Ok(())
        }
        CapCmd::Revoke { what, node } => {
            let id = match what.parse::<u64>() {
                Ok(id) => id,
                Err(_) => read_token(Path::new(&what))?.claims().id,
            };
            let node = Node::from_args(&node)?;
            let c = connect_cap(&node)?;
            write_ctl(&c, "ctl", &format!("revoke {id}"))?;
            println!("revoked {id}");
            Ok(())
        }
    }
}

/// Print `token` and, with `out`, keep it in a 0600 file too.
fn emit(token: &str, out: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = out {
        write_secret(path, token.as_bytes())?;
    }
    println!("{token}");
    Ok(())
}

/// Rights letters, or a clear error.
fn parse_rights(letters: &str) -> anyhow::Result<Rights> {
    Rights::parse(letters).map_err(|c| {
        anyhow::anyhow!(
            "rights {letters:?}: {c:?} is not a right (r read, w write, c create, d remove, a admin)"
        )
    })
}

/// `300s`, `5m`, `2h`, `7d` or a bare number of seconds, in seconds: the
/// node's own rule for `mint ttl=`, so the tool and the node agree.
pub fn parse_ttl(text: &str) -> anyhow::Result<u64> {
    cellfs::cap::device::parse_ttl(text.trim()).map_err(anyhow::Error::msg)
}

/// The narrower token `cell0 cap attenuate` makes; every field absent
/// keeps the parent's.
pub fn attenuate(
    parent: &Token,
    scope: Option<&str>,
    rights: Option<&str>,
    ttl: Option<&str>,
    holder: Option<&str>,
    now: u64,
) -> anyhow::Result<Token> {
    let p = parent.claims();
    let scope = scope.unwrap_or(&p.scope);
    let rights = match rights {
        Some(r) => parse_rights(r)?,
        None => p.rights,
    };
    let holder = holder.unwrap_or(&p.holder);
    cellfs::cap::token::check_holder(holder)
        .map_err(|e| anyhow::anyhow!("refused: --holder: {e}"))?;
    let expires = match ttl {
        Some(t) => {
            let e = now.saturating_add(parse_ttl(t)?);
            if e > p.expires {
                bail!(
                    "refused: --ttl {t} would outlive the token it narrows, which expires {} ({} s from now); a token can only narrow",
                    date(p.expires),
                    p.expires.saturating_sub(now)
                );
            }
            e
        }
        None => p.expires,
    };
    parent
        .attenuate(holder, scope, rights, p.not_before, expires)
        .map_err(|e| match e {
            cellfs::cap::CapError::Widens { what, .. } => anyhow::anyhow!(
                "refused: the new token would widen the {what} of the token it narrows \
                 (it has scope {} and rights {}; a token can only narrow)",
                p.scope,
                p.rights
            ),
            other => anyhow::anyhow!("refused: {other}"),
        })
}

/// Every link of `t`, one block each.
pub fn describe(t: &Token) -> String {
    let mut s = format!(
        "issuer {}\nlinks {}\n",
        cellfs::cap::hex(&t.issuer),
        t.links.len()
    );
    for (n, link) in t.links.iter().enumerate() {
        let c = &link.claims;
        s.push_str(&format!(
            "link {n}\n  id {}\n  holder {}\n  scope {}\n  rights {}\n  not_before {} ({})\n  expires {} ({})\n  signed_by {}\n  next_key {}\n",
            c.id,
            c.holder,
            c.scope,
            c.rights,
            date(c.not_before),
            c.not_before,
            date(c.expires),
            c.expires,
            if n == 0 {
                "issuer".to_string()
            } else {
                format!("link {}'s next_key", n - 1)
            },
            cellfs::cap::hex(&link.next_key),
        ));
    }
    s
}

/// Check `t` against `node`'s key and revocation list, and say so.
fn check_against(t: &Token, node: &Node) -> anyhow::Result<()> {
    let c = connect(node)?;
    let key_text = read_file(&c, "/cap/key")?;
    let word = key_text.split_whitespace().last().unwrap_or("");
    let key = parse_hex32(word)
        .with_context(|| format!("{}: /cap/key is not a key: {key_text:?}", node.addr))?;
    println!("node {} key {}", node.addr, cellfs::cap::hex(&key));
    if t.issuer == key {
        println!("issuer: this node's key signed the first link");
    } else {
        println!("issuer: NOT this node's key: the node will refuse the token");
    }
    let grant = match t.verify(|k| *k == key) {
        Ok(g) => {
            println!("chain: every signature verifies and every link only narrows");
            g
        }
        Err(e) => {
            println!("verdict: refused: {e}");
            bail!("the node would refuse this token: {e}");
        }
    };
    let revoked: Vec<u64> = read_file(&c, "/cap/revoked")?
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match grant.check(now(), |id| revoked.contains(&id)) {
        Ok(()) => {
            println!("verdict: accepted now");
            Ok(())
        }
        Err(e) => {
            println!("verdict: refused: {e}");
            bail!("the node would refuse this token: {e}")
        }
    }
}

/// A session with `node` attached at `/cap`: paths are relative to it.
fn connect_cap(node: &Node) -> anyhow::Result<Client> {
    let opts = Options {
        aname: cellfs::server::CAP_ROOT.to_string(),
        ..Options::new(Dialect::U).with_token(&node.token)
    };
    Ok(Client::connect_with(&node.addr, &opts)?)
}

/// Ask the node to mint; returns the new token's text.
fn mint(node: &Node, scope: &str, rights: &str, ttl: u64, holder: &str) -> anyhow::Result<String> {
    let c = connect_cap(node)?;
    let before = cap_dirs(&c)?;
    let verb = format!("mint scope={scope} rights={rights} ttl={ttl}s holder={holder}");
    let fid = c.walk_path("ctl").context("/cap/ctl")?;
    let answer = (|| -> anyhow::Result<Option<String>> {
        // /cap/ctl is write-only: the new capability is found in /cap.
        c.open(fid, mode::OWRITE)?;
        c.write(fid, 0, verb.as_bytes())?;
        Ok(None)
    })()
    .with_context(|| format!("/cap/ctl: {verb}"));
    let _ = c.clunk(fid);
    let answer = answer?;
    if let Some(a) = &answer {
        if a.starts_with(cellfs::cap::token::TEXT_PREFIX) {
            return Ok(a.clone());
        }
        if let Ok(n) = a.parse::<u64>() {
            return read_minted(&c, n);
        }
    }
    let mut new: Vec<u64> = cap_dirs(&c)?
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    new.sort_unstable();
    match new.as_slice() {
        [n] => read_minted(&c, *n),
        [] => bail!("the node took the mint but no new /cap/N appeared"),
        many => {
            // Several mints at once: ours is the one with our holder.
            for n in many.iter().rev() {
                let status = read_file(&c, &format!("{n}/status")).unwrap_or_default();
                if status
                    .lines()
                    .any(|l| l.trim() == format!("holder {holder}"))
                {
                    return read_minted(&c, *n);
                }
            }
            bail!("the node minted, but which of /cap/{many:?} is ours is unclear")
        }
    }
}

fn read_minted(c: &Client, n: u64) -> anyhow::Result<String> {
    let text = read_file(c, &format!("{n}/token")).with_context(|| format!("/cap/{n}/token"))?;
    Ok(text.trim().to_string())
}

/// The numbered capabilities under /cap (a session attached there).
fn cap_dirs(c: &Client) -> anyhow::Result<Vec<u64>> {
    let fid = c.walk_path("").context("/cap")?;
    let r = (|| -> anyhow::Result<Vec<u64>> {
        let opened = c.open(fid, mode::OREAD)?;
        Ok(c.read_dir(fid, opened.iounit)?
            .into_iter()
            .filter_map(|e| e.name.parse().ok())
            .collect())
    })();
    let _ = c.clunk(fid);
    r.context("listing /cap")
}

fn read_file(c: &Client, path: &str) -> anyhow::Result<String> {
    let bytes = c.read_file(path).with_context(|| path.to_string())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn write_ctl(c: &Client, path: &str, verb: &str) -> anyhow::Result<()> {
    c.write_file(path, verb.as_bytes())
        .with_context(|| format!("{path}: {verb}"))
}

/// A Unix time as a UTC date, `2025-01-31T12:00:00Z`.
pub fn date(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellfs::cap::{Claims, NodeKey};

    fn owner(key: &NodeKey) -> Token {
        key.mint(Claims {
            id: 0,
            holder: "owner".into(),
            scope: "/".into(),
            rights: Rights::ALL,
            not_before: 0,
            expires: 2_000_000_000,
        })
        .unwrap()
    }

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
        assert_eq!(date(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(date(2_000_000_000), "2033-05-18T03:33:20Z");
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("300s").unwrap(), 300);
        assert_eq!(parse_ttl("5m").unwrap(), 300);
        assert_eq!(parse_ttl("2h").unwrap(), 7200);
        assert_eq!(parse_ttl("1d").unwrap(), 86400);
        assert_eq!(parse_ttl("42").unwrap(), 42);
        for bad in ["", "s", "5x", "-3s", "0s", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn attenuation_narrows_and_refuses_widening() {
        let key = NodeKey::from_seed(&[7; 32]);
        let t = owner(&key);
        let now = 1_700_000_000;
        let a = attenuate(
            &t,
            Some("/chan/alerts"),
            Some("r"),
            Some("1h"),
            Some("agent"),
            now,
        )
        .unwrap();
        let g = a.verify(|k| *k == key.public()).unwrap();
        assert_eq!(g.scope, "/chan/alerts");
        assert_eq!(g.rights, Rights::parse("r").unwrap());
        assert_eq!(g.expires, now + 3600);
        assert_eq!(g.holder, "agent");
        // Narrowing further keeps working, widening is refused.
        attenuate(&a, Some("/chan/alerts/data"), None, None, None, now).unwrap();
        let e = attenuate(&a, Some("/chan"), None, None, None, now).unwrap_err();
        assert!(e.to_string().contains("widen the scope"), "{e}");
        let e = attenuate(&a, None, Some("rw"), None, None, now).unwrap_err();
        assert!(e.to_string().contains("widen the rights"), "{e}");
        let e = attenuate(&a, None, None, Some("2h"), None, now).unwrap_err();
        assert!(e.to_string().contains("outlive"), "{e}");
        let e = attenuate(&a, None, Some("rz"), None, None, now).unwrap_err();
        assert!(e.to_string().contains("not a right"), "{e}");
    }

    #[test]
    fn describe_names_every_link() {
        let key = NodeKey::from_seed(&[7; 32]);
        let t = owner(&key);
        let a = attenuate(&t, Some("/chan"), Some("rw"), None, Some("a1"), 0).unwrap();
        let b = attenuate(&a, Some("/chan/x"), Some("r"), None, Some("a1/a2"), 0).unwrap();
        let text = describe(&b);
        assert!(text.contains("links 3"), "{text}");
        assert!(text.contains("scope /chan/x"), "{text}");
        assert!(text.contains("holder a1\n"), "{text}");
        assert!(text.contains("holder a1/a2\n"), "{text}");
        assert!(text.contains(&cellfs::cap::hex(&key.public())), "{text}");
        assert!(text.contains("2033-05-18T03:33:20Z"), "{text}");
    }

    #[test]
    fn holders_are_checked_before_anything_is_signed() {
        let key = NodeKey::from_seed(&[7; 32]);
        let t = owner(&key);
        let agent = attenuate(&t, None, Some("rw"), None, Some("agent/foo"), 0).unwrap();
        // An agent's token stays the agent's.
        let e = attenuate(&agent, Some("/chan"), None, None, Some("x"), 0).unwrap_err();
        let e = e.to_string();
        assert!(e.starts_with("refused") && e.contains("'agent/foo'"), "{e}");
        let kept = attenuate(&agent, Some("/chan"), None, None, None, 0).unwrap();
        assert_eq!(kept.claims().holder, "agent/foo");
        // Without admin, only a sub-name; never owner or an agent.
        let plain = attenuate(&t, None, Some("rw"), None, Some("ci"), 0).unwrap();
        for bad in ["bob", "owner", "agent/foo"] {
            let e = attenuate(&plain, None, None, None, Some(bad), 0).unwrap_err();
            assert!(e.to_string().contains(&format!("'{bad}' refused")), "{e}");
        }
        attenuate(&plain, None, None, None, Some("ci/job1"), 0).unwrap();
        // A name that would scramble sender= lines.
        let e = attenuate(&t, None, None, None, Some("a\u{202e}b"), 0).unwrap_err();
        assert!(e.to_string().contains("U+202E"), "{e}");
    }
}
