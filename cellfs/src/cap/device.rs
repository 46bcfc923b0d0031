//! `/cap`: the node's key, revoked ids, and the capabilities it minted.
//! See cap(3).
//!
//! `/cap/ctl` takes `mint scope=PATH rights=LETTERS ttl=DURATION
//! holder=NAME` and `revoke ID`; each minted capability is `/cap/N/` with
//! `token`, `status` and `ctl` (`revoke`).
//!
//! A capability with the admin right over a scope that does not contain
//! `/cap` administers that scope all the same: attached at `/cap` (the
//! aname word `/cap`, see cap(3) ATTACH) it finds `/cap/ctl` and the
//! `/cap/N` minted within its scope there, and nothing else.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::state::{CapCmd, CapOp};
use super::token::{Claims, Grant, OWNER_HOLDER, check_holder, holder_rule};
use super::{Right, Rights, scope};
use crate::command::Command;
use crate::ctl::{self, Verb};
use crate::dev::{self, Aux, Ctx, Device, Entry, Info, ReadOutcome, Step, Table};
use crate::error::Error;
use crate::file::{File, MAX_OBJ};
use crate::root;

/// The cap device's number in [`crate::devices::DEVICES`].
pub const DEV: u8 = 3;
const K_TOP: u8 = 0;
const K_KEY: u8 = 1;
const K_REVOKED: u8 = 2;
const K_CTL: u8 = 3;
const K_DIR: u8 = 4;
const K_TOKEN: u8 = 5;
const K_STATUS: u8 = 6;
const K_NCTL: u8 = 7;

/// `/cap` itself.
pub const TOP: File = File::new(DEV, K_TOP, 0);

/// The files of `/cap`, before the capabilities' directories.
const TOP_FILES: Table = Table(&[
    Entry::file("ctl", K_CTL, 0o220),
    Entry::file("key", K_KEY, 0o444),
    Entry::file("revoked", K_REVOKED, 0o444),
]);

/// The files of each capability's directory.
const CAP_FILES: Table = Table(&[
    Entry::file("ctl", K_NCTL, 0o220),
    Entry::file("status", K_STATUS, 0o444),
    Entry::file("token", K_TOKEN, 0o400),
]);

/// The verbs of `/cap/ctl`.
pub const CTL_VERBS: &[Verb] = &[
    Verb {
        name: "mint",
        min_args: 0,
        max_args: 0,
        keys: &["scope", "rights", "ttl", "holder"],
        usage: "mint scope=PATH rights=LETTERS ttl=DURATION holder=NAME",
    },
    Verb {
        name: "revoke",
        min_args: 1,
        max_args: 1,
        keys: &[],
        usage: "revoke ID",
    },
];

/// The verbs of `/cap/N/ctl`.
pub const CAP_CTL_VERBS: &[Verb] = &[Verb {
    name: "revoke",
    min_args: 0,
    max_args: 0,
    keys: &[],
    usage: "revoke",
}];

/// The longest ttl a mint accepts: ten years, in seconds.
pub const MAX_TTL: u64 = 10 * 365 * 86_400;

/// The id of the owner capability, which the node mints for itself.
pub const OWNER_ID: u64 = 0;

/// Parse a ttl: a whole number with `s`, `m`, `h` or `d` (bare digits are
/// seconds), more than 0 and at most [`MAX_TTL`].
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "ttl=\"{text}\" is not a duration: a whole number and s, m, h or d (300s, 5m, 2h, 7d)"
        )
    };
    let secs = crate::ctl::parse_duration(text).ok_or_else(bad)?;
    if secs == 0 {
        return Err(format!(
            "ttl=\"{text}\": a capability must last more than 0s"
        ));
    }
    if secs > MAX_TTL {
        return Err(format!(
            "ttl=\"{text}\" is longer than ten years ({MAX_TTL}s)"
        ));
    }
    Ok(secs)
}

fn dir_node(n: u64) -> File {
    File::new(DEV, K_DIR, n)
}

/// Whether the caller may administer `target_scope`: the admin right over
/// a scope containing it (and, for an agent, an intent granting it there:
/// see agent(3)).
fn need_admin(cx: &Ctx<'_>, op: &str, target_scope: &str) -> Result<(), Error> {
    cx.vet(&Step::Op {
        op,
        path: target_scope,
        right: Right::Admin,
        dir: false,
    })?;
    let Some(g) = cx.grant else {
        return Err(Error::Unauthorized(format!(
            "{op}: no capability to check the admin right against"
        )));
    };
    if !g.rights.has(Right::Admin) {
        return Err(denied(g, op, Right::Admin));
    }
    if !scope::contains(&g.scope, target_scope) {
        return Err(Error::Unauthorized(format!(
            "{op}: capability '{}' (scope {}) does not reach scope {target_scope}",
            g.holder, g.scope
        )));
    }
    Ok(())
}

/// The capability of a request that reaches `/cap` only to administer a
/// scope that does not contain it: it sees `/cap/ctl` and the
/// capabilities it administers, nothing else.
fn admin_view<'a>(cx: &Ctx<'a>) -> Option<&'a Grant> {
    cx.grant.filter(|g| !scope::contains(&g.scope, "/cap"))
}

/// Whether `g` administers capability `n`: the admin right over a scope
/// containing `n`'s.
fn administers(cx: &Ctx<'_>, g: &Grant, n: u64) -> bool {
    g.rights.has(Right::Admin)
        && cx
            .state
            .caps
            .minted(n)
            .is_some_and(|t| scope::contains(&g.scope, &t.claims().scope))
}

/// Whether the request in `cx` may see capability `n`'s directory.
fn visible(cx: &Ctx<'_>, n: u64) -> bool {
    admin_view(cx).is_none_or(|g| administers(cx, g, n))
}

/// Whether the request in `cx` may see the top-level file of kind `kind`.
fn top_visible(cx: &Ctx<'_>, kind: u8) -> bool {
    admin_view(cx).is_none_or(|g| kind == K_CTL && g.rights.has(Right::Admin))
}

fn denied(g: &Grant, op: &str, right: Right) -> Error {
    Error::Denied {
        op: "admin",
        path: String::from(op),
        holder: g.holder.clone(),
        scope: g.scope.clone(),
        rights: g.rights,
        right,
    }
}

fn render_status(cx: &Ctx<'_>, n: u64) -> Option<String> {
    let t = cx.state.caps.minted(n)?;
    let c = t.claims();
    let now = cx.unix_ms / 1000;
    let state = if t
        .links
        .iter()
        .any(|l| cx.state.caps.is_revoked(l.claims.id))
    {
        "revoked"
    } else if now >= c.expires {
        "expired"
    } else if now < c.not_before {
        "pending"
    } else {
        "valid"
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "id {}\nholder {}\nscope {}\nrights {}\nnot_before {}\nexpires {}\nstate {state}\n",
        c.id, c.holder, c.scope, c.rights, c.not_before, c.expires
    );
    Some(s)
}

/// The `/cap` device.
pub struct CapDev;

impl CapDev {
    fn mint(cx: &Ctx<'_>, line: &ctl::CtlLine<'_>, id: u64) -> Result<CapOp, Error> {
        let inv = |why: String| Error::Invalid(format!("/cap/ctl: mint: {why}"));
        let need = |key: &str| {
            line.get(key)
                .ok_or_else(|| inv(format!("{key}= is missing; usage: {}", CTL_VERBS[0].usage)))
        };
        let scope = scope::normalize(need("scope")?).map_err(|e| inv(format!("{e}")))?;
        let rights = Rights::parse(need("rights")?).map_err(|c| {
            inv(format!(
                "'{c}' is not a right; rights are letters of r (read), w (write), c (create), d (remove), a (admin)"
            ))
        })?;
        let ttl = parse_ttl(need("ttl")?).map_err(inv)?;
        let holder = need("holder")?;
        check_holder(holder).map_err(|e| inv(format!("{e}")))?;
        if holder == OWNER_HOLDER {
            return Err(inv(format!(
                "holder={OWNER_HOLDER} is reserved for the node's own owner token; name who will hold this one"
            )));
        }
        if id > MAX_OBJ {
            return Err(inv(format!(
                "this node has minted its last capability number ({MAX_OBJ})"
            )));
        }
        need_admin(cx, "mint", &scope)?;
        // What a capability mints derives from it: the holder rules of an
        // attenuation hold (an agent's mints stay the agent's; naming an
        // agent needs the admin right over its /agent/NAME).
        if let Some(g) = cx.grant {
            holder_rule(&g.holder, &g.scope, g.rights, holder)
                .map_err(|why| Error::Unauthorized(format!("/cap/ctl: mint: holder {why}")))?;
        }
        if let Some(g) = cx.grant
            && !rights.within(g.rights)
        {
            return Err(Error::Unauthorized(format!(
                "mint: rights {rights} are not within capability '{}' rights {}",
                g.holder, g.rights
            )));
        }
        let now = cx.unix_ms / 1000;
        let mut expires = now.saturating_add(ttl);
        if let Some(g) = cx.grant {
            expires = expires.min(g.expires);
        }
        let claims = Claims {
            id,
            holder: String::from(holder),
            scope,
            rights,
            not_before: now,
            expires,
        };
        let token = cx.key.mint(claims).map_err(|e| inv(format!("{e}")))?;
        Ok(CapOp::Mint(token))
    }

    fn revoke(cx: &Ctx<'_>, id: u64) -> Result<CapOp, Error> {
        // The owner token is minted afresh (id 0) at every start: revoking
        // it would lock every owner out for good.
        if id == OWNER_ID {
            return Err(Error::Invalid(String::from(
                "revoke 0: the owner capability cannot be revoked; to retire it, stop the node and replace its node.key",
            )));
        }
        match cx.state.caps.minted(id) {
            Some(t) => need_admin(cx, "revoke", &t.claims().scope)?,
            None => need_admin(cx, "revoke", "/")?,
        }
        Ok(CapOp::Revoke(id))
    }
}

impl Device for CapDev {
    fn top(&self) -> Option<(&'static str, File)> {
        Some(("cap", TOP))
    }

    fn info<'a>(&self, cx: &Ctx<'a>, node: File) -> Option<Info<'a>> {
        let mtime = cx.unix_ms / 1000;
        let file = |name: &'static str, perm: u32| Info {
            name,
            dir: false,
            perm,
            length: 0,
            version: cx.state.applied as u32,
            mtime,
        };
        match node.kind {
            K_TOP if node.obj == 0 => Some(Info {
                name: "cap",
                dir: true,
                perm: 0o555,
                length: 0,
                version: 0,
                mtime,
            }),
            K_KEY | K_REVOKED | K_CTL if node.obj == 0 => {
                let f = TOP_FILES.kind(node.kind)?;
                Some(file(f.name, f.perm))
            }
            K_DIR => Some(Info {
                name: cx.state.caps.name(node.obj)?,
                dir: true,
                perm: 0o555,
                length: 0,
                version: 0,
                mtime,
            }),
            K_TOKEN | K_STATUS | K_NCTL => {
                cx.state.caps.minted(node.obj)?;
                let f = CAP_FILES.kind(node.kind)?;
                Some(file(f.name, f.perm))
            }
            _ => None,
        }
    }

    fn parent(&self, node: File) -> File {
        match node.kind {
            K_TOP => root::ROOT,
            K_TOKEN | K_STATUS | K_NCTL => dir_node(node.obj),
            _ => TOP,
        }
    }

    fn lookup(&self, cx: &Ctx<'_>, dir: File, name: &str) -> Option<File> {
        match dir.kind {
            K_TOP => {
                if let Some(f) = TOP_FILES.named(name) {
                    return top_visible(cx, f.kind).then_some(File::new(DEV, f.kind, 0));
                }
                let n: u64 = name.parse().ok()?;
                // Only the canonical spelling names it ("01" does not).
                if n > MAX_OBJ || cx.state.caps.name(n)? != name || !visible(cx, n) {
                    return None;
                }
                Some(dir_node(n))
            }
            K_DIR => {
                cx.state.caps.minted(dir.obj)?;
                if !visible(cx, dir.obj) {
                    return None;
                }
                CAP_FILES.lookup(DEV, dir.obj, name)
            }
            _ => None,
        }
    }

    fn list(&self, cx: &Ctx<'_>, dir: File, out: &mut Vec<File>) {
        match dir.kind {
            K_TOP => {
                out.extend(
                    TOP_FILES
                        .entries()
                        .iter()
                        .filter(|f| top_visible(cx, f.kind))
                        .map(|f| File::new(DEV, f.kind, 0)),
                );
                out.extend(
                    cx.state
                        .caps
                        .ids()
                        .filter(|&n| visible(cx, n))
                        .map(dir_node),
                );
            }
            K_DIR if cx.state.caps.minted(dir.obj).is_some() && visible(cx, dir.obj) => {
                CAP_FILES.list(DEV, dir.obj, out);
            }
            _ => {}
        }
    }

    fn open(&self, cx: &Ctx<'_>, node: File, _read: bool, write: bool) -> Result<Aux, Error> {
        match node.kind {
            K_TOP | K_DIR if write => Err(Error::IsDir),
            // Reading a ctl file is refused by the server (its mode is 0220).
            K_KEY | K_REVOKED | K_STATUS | K_TOKEN if write => Err(Error::Perm(String::from(
                "this /cap file is read-only; write verbs to /cap/ctl or /cap/N/ctl",
            ))),
            K_TOKEN => {
                let scope = cx
                    .state
                    .caps
                    .minted(node.obj)
                    .map_or_else(|| String::from("/"), |t| t.claims().scope.clone());
                need_admin(cx, &format!("read /cap/{}/token", node.obj), &scope)?;
                Ok(Aux::None)
            }
            _ => Ok(Aux::None),
        }
    }

    fn read(
        &self,
        cx: &Ctx<'_>,
        node: File,
        aux: &mut Aux,
        offset: u64,
        count: u32,
        out: &mut Vec<u8>,
    ) -> Result<ReadOutcome, Error> {
        // Checks first; the text itself is rendered only when read_text
        // takes a new snapshot (at offset 0), not on every later read.
        let mut text =
            |render: &dyn Fn() -> String| Ok(dev::read_text(aux, offset, count, out, render));
        match node.kind {
            K_KEY => text(&|| format!("{}\n", crate::hex::encode(&cx.key.public()))),
            K_REVOKED => text(&|| {
                let mut s = String::new();
                for id in cx.state.caps.revoked() {
                    let _ = writeln!(s, "{id}");
                }
                s
            }),
            K_STATUS => {
                cx.state
                    .caps
                    .minted(node.obj)
                    .ok_or(Error::Removed("capability"))?;
                text(&|| render_status(cx, node.obj).unwrap_or_default())
            }
            K_TOKEN => {
                let t = cx
                    .state
                    .caps
                    .minted(node.obj)
                    .ok_or(Error::Removed("capability"))?;
                need_admin(
                    cx,
                    &format!("read /cap/{}/token", node.obj),
                    &t.claims().scope,
                )?;
                text(&|| format!("{}\n", t.to_text()))
            }
            K_CTL | K_NCTL => Err(Error::Perm(String::from("cap ctl is write-only"))),
            _ => Err(Error::IsDir),
        }
    }

    fn write(&self, cx: &Ctx<'_>, node: File, data: &[u8]) -> Result<Command, Error> {
        let mut ops = Vec::new();
        match node.kind {
            K_CTL => {
                let lines = ctl::parse("/cap/ctl", CTL_VERBS, data)?;
                let mut next = cx.state.caps.next_id();
                for line in &lines {
                    match line.verb {
                        "mint" => {
                            ops.push(Self::mint(cx, line, next)?);
                            next += 1;
                        }
                        _ => {
                            let arg = line.args[0];
                            let id = arg.parse().map_err(|_| {
                                Error::Invalid(format!(
                                    "/cap/ctl: revoke: \"{arg}\" is not a capability id (a whole number)"
                                ))
                            })?;
                            ops.push(Self::revoke(cx, id)?);
                        }
                    }
                }
            }
            K_NCTL => {
                let object = format!("/cap/{}/ctl", node.obj);
                ctl::parse(&object, CAP_CTL_VERBS, data)?;
                cx.state
                    .caps
                    .minted(node.obj)
                    .ok_or(Error::Removed("capability"))?;
                ops.push(Self::revoke(cx, node.obj)?);
            }
            _ => {
                return Err(Error::Perm(String::from(
                    "only /cap/ctl and /cap/N/ctl can be written",
                )));
            }
        }
        Ok(Command::Cap(CapCmd(ops)))
    }

    fn create(
        &self,
        _cx: &Ctx<'_>,
        _dir: File,
        name: &str,
        _is_dir: bool,
    ) -> Result<Command, Error> {
        Err(dev::cannot_create(
            name,
            "/cap",
            "mint capabilities by writing to /cap/ctl",
        ))
    }

    fn remove(&self, _cx: &Ctx<'_>, node: File) -> Result<Option<Command>, Error> {
        match node.kind {
            // An object's own files: accepted, nothing changes (rm -r).
            K_TOKEN | K_STATUS | K_NCTL => Ok(None),
            _ => Err(Error::Perm(String::from(
                "capabilities are not removed: revoke them with 'revoke' on their ctl",
            ))),
        }
    }
}
