//! Who may do what: attach (the capability an attach presents and where
//! it roots), and the one check of every request, a function of the
//! operation, the file and the capability (with its device guards).

use crate::cap::{Grant, Right, scope};
use crate::clock::Clock;
use crate::dev::{Did, Step};
use crate::error::Error;
use crate::fid::Access;
use crate::file::File;
use crate::log::Log;
use crate::outbox::{ConnId, Outbox};
use crate::walk;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use ninep::{Body, NOFID};

use super::*;

impl<L: Log, C: Clock> Server<L, C> {
    /// The capability an attach presents: the grant verified when the
    /// token was written to `afid`, or the `token=…` word of `aname`; on an
    /// insecure node, none is needed. With it, whether the aname asks to
    /// attach at `/cap` ([`CAP_ROOT`]).
    pub(super) fn attach_grant(
        &mut self,
        conn: ConnId,
        afid: u32,
        aname: &str,
    ) -> Result<(Arc<Grant>, bool), Error> {
        let Aname {
            token,
            at_cap,
            batch,
        } = Aname::parse(aname)?;
        let grant = self.attach_token(conn, afid, token)?;
        if batch && let Some(c) = self.conns.get_mut(&conn) {
            c.batch_reads = true;
        }
        Ok((grant, at_cap))
    }

    /// The root of an attach at `/cap`: allowed to a capability whose
    /// scope contains it, or that holds the admin right (which then sees
    /// there only what it administers: see [`crate::cap::device`]).
    pub(super) fn cap_root(&self, grant: &Grant) -> Result<File, Error> {
        if !grant.rights.has(Right::Admin) && !scope::contains(&grant.scope, CAP_ROOT) {
            return Err(Error::Unauthorized(format!(
                "aname {CAP_ROOT}: capability '{}' (scope {}, rights {}) neither reaches {CAP_ROOT} nor holds the admin right",
                grant.holder, grant.scope, grant.rights
            )));
        }
        let ctx = self.world.ctx_as(grant);
        if ctx.guarded() {
            ctx.vet(&Step::Walk(CAP_ROOT))?;
        }
        walk::resolve(&self.world.ctx(), CAP_ROOT).ok_or_else(|| {
            Error::Unauthorized(format!("aname {CAP_ROOT}: this node has no {CAP_ROOT}"))
        })
    }

    /// [`Self::attach_grant`]'s capability, from `afid` or `token`.
    pub(super) fn attach_token(
        &mut self,
        conn: ConnId,
        afid: u32,
        token: Option<&str>,
    ) -> Result<Arc<Grant>, Error> {
        if afid != NOFID {
            let f = self.conn(conn)?.fids.get(afid)?;
            let Access::Auth(slot) = &f.access else {
                return Err(Error::Protocol(format!("fid {afid} is not an auth fid")));
            };
            let slot = slot.clone();
            if let Some(grant) = slot {
                if token.is_some() {
                    return Err(Error::Invalid(format!(
                        "attach with auth fid {afid} and a token= in the aname: two capabilities; present one"
                    )));
                }
                self.world.check(&grant)?;
                return Ok(grant);
            }
            if token.is_none() {
                return Err(Error::Unauthorized(format!(
                    "auth fid {afid} holds no valid capability: write a token (c0.…) to it first"
                )));
            }
        }
        if let Some(text) = token {
            return Ok(Arc::new(self.world.verify(text)?));
        }
        if self.world.config.insecure {
            return Ok(Arc::new(insecure_grant()));
        }
        Err(Error::Unauthorized(String::from(NEED_CAP)))
    }

    /// A token written to auth fid `fid`: verified now, kept for the attach.
    pub(super) fn auth_write(
        &mut self,
        conn: ConnId,
        tag: u16,
        fid: u32,
        offset: u64,
        data: &[u8],
        out: &mut Outbox,
    ) -> Result<(), Error> {
        if offset != 0 {
            return Err(Error::Invalid(String::from(
                "write the whole token to the auth fid at offset 0",
            )));
        }
        let text = core::str::from_utf8(data)
            .map_err(|_| Error::Cap(crate::cap::CapError::Encoding("it is not UTF-8")))?;
        let grant = Arc::new(self.world.verify(text)?);
        let f = self.conn(conn)?.fids.get_mut(fid)?;
        f.access = Access::Auth(Some(grant));
        let count = data.len() as u32;
        self.reply(conn, tag, Body::Rwrite { count }, out);
        Ok(())
    }

    /// Whether `fid` is an auth fid.
    pub(super) fn is_auth(&mut self, conn: ConnId, fid: u32) -> Result<bool, Error> {
        Ok(matches!(
            self.conn(conn)?.fids.get(fid)?.access,
            Access::Auth(_)
        ))
    }

    /// An attached fid's node, capability and scope root, once the
    /// capability is checked to be still valid (not revoked or expired).
    pub(super) fn access(&self, conn: ConnId, fid: u32) -> Result<(File, Arc<Grant>, File), Error> {
        let f = self
            .conns
            .get(&conn)
            .ok_or(Error::UnknownFid(fid))?
            .fids
            .get(fid)?;
        match &f.access {
            Access::Attached { grant, root } => {
                self.world.check(grant)?;
                if self.world.guarded(grant) {
                    self.world.ctx_as(grant).vet(&Step::Act)?;
                }
                Ok((f.node, grant.clone(), *root))
            }
            Access::Auth(_) => Err(Error::Protocol(format!(
                "fid {fid} is an auth fid: attach with it, then use the attached fid"
            ))),
        }
    }

    /// The one access check: refuse `op` on `on` unless `grant` holds
    /// the right it needs (and, for a guarded capability, unless its
    /// guard lets it: an agent's intent, see agent(3)).
    pub(super) fn allow(&self, grant: &Grant, op: Op, on: On<'_>) -> Result<(), Error> {
        // Paths are named as the request sees them for its guards (a
        // capability may see `/cap` its own way) and as the tree names
        // them for the refusal.
        let path_as = |ctx: &Ctx<'_>| match on {
            On::File(node) => walk::path_of(ctx, node),
            On::New { dir, name } => {
                let mut path = walk::path_of(ctx, dir);
                if !path.ends_with('/') {
                    path.push('/');
                }
                path.push_str(name);
                path
            }
        };
        let path = || path_as(&self.world.ctx());
        let right = op.right();
        if self.world.guarded(grant) {
            let ctx = self.world.ctx_as(grant);
            let (dir, path) = match on {
                On::File(node) => (
                    ctx.device(node).info(&ctx, node).is_some_and(|i| i.dir),
                    path_as(&ctx),
                ),
                On::New { .. } => (false, path()),
            };
            ctx.vet(&Step::Op {
                op: op.word(),
                path: &path,
                right,
                dir,
            })?;
        }
        if grant.rights.has(right) {
            return Ok(());
        }
        Err(denied(grant, op.word(), path(), right))
    }

    /// Tell the guards of a guarded capability `grant` that it did `op`
    /// on `node` (an agent's recent operations).
    pub(super) fn note(&self, grant: &Grant, op: &str, node: File) {
        if self.world.guarded(grant) {
            let ctx = self.world.ctx_as(grant);
            let path = walk::path_of(&ctx, node);
            ctx.note(&Did::Op { op, path: &path });
        }
    }
}

/// What an attach's aname asks for (cap(3) ATTACH): words separated by
/// spaces, each given at most once.
pub(super) struct Aname<'a> {
    /// The `token=c0.…` word's token.
    token: Option<&'a str>,
    /// Whether it attaches at `/cap` ([`CAP_ROOT`]) rather than the scope.
    at_cap: bool,
    /// The `reads=batch` word: streams end each batch with an empty read
    /// on this connection whatever its dialect (cellfs(4) STREAMS).
    batch: bool,
}

/// The aname word that makes streams end each batch with an empty read in
/// plain 9P2000 too: for Linux's client mounted with `version=9p2000`.
pub const BATCH_WORD: &str = "reads=batch";

impl<'a> Aname<'a> {
    /// Read `aname`. A word given twice is refused, not resolved by
    /// letting one win: two tokens (or two roots) are a client's mistake
    /// or a trick, and which was meant cannot be known.
    fn parse(aname: &'a str) -> Result<Aname<'a>, Error> {
        let mut token = None;
        let mut root = None;
        let mut auth = false;
        let mut batch = false;
        for word in aname.split_ascii_whitespace() {
            let (what, again) = if let Some(t) = word.strip_prefix("token=") {
                ("token=", token.replace(t).is_some())
            } else if word == BATCH_WORD {
                (BATCH_WORD, core::mem::replace(&mut batch, true))
            } else if word == AUTH_WORD {
                (AUTH_WORD, core::mem::replace(&mut auth, true))
            } else if word == "/" || word == CAP_ROOT {
                ("a root (/ or /cap)", root.replace(word).is_some())
            } else {
                let shown: String = word.chars().take(40).collect();
                return Err(Error::NotFound(format!(
                    "aname word \"{}\"; attach to \"\", \"/\" or \"{CAP_ROOT}\", optionally with token=c0.… and {BATCH_WORD}",
                    shown.escape_default()
                )));
            };
            if again {
                return Err(Error::Invalid(format!(
                    "aname holds {what} twice: give it once (one capability and one root per attach)"
                )));
            }
        }
        Ok(Aname {
            token,
            at_cap: root == Some(CAP_ROOT),
            batch,
        })
    }
}

/// What a request does, for the one access check ([`Server::allow`]).
#[derive(Clone, Copy, Debug)]
pub(super) enum Op {
    /// Open for reading, or read.
    Read,
    /// Open for writing, or write.
    Write,
    /// Remove (or open to remove on clunk).
    Remove,
    /// Create in a directory.
    Create,
    /// Change metadata with Twstat.
    Wstat,
    /// Change metadata with Tsetattr.
    Setattr,
}

impl Op {
    /// The right it needs.
    fn right(self) -> Right {
        match self {
            Op::Read => Right::Read,
            Op::Write | Op::Wstat | Op::Setattr => Right::Write,
            Op::Remove => Right::Remove,
            Op::Create => Right::Create,
        }
    }

    /// The word messages and guards name it by.
    fn word(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Remove => "remove",
            Op::Create => "create",
            Op::Wstat => "wstat",
            Op::Setattr => "setattr",
        }
    }
}

/// The file an operation acts on.
#[derive(Clone, Copy, Debug)]
pub(super) enum On<'a> {
    /// An existing file.
    File(File),
    /// A name to make in directory `dir`.
    New {
        /// The directory.
        dir: File,
        /// The new name.
        name: &'a str,
    },
}

pub(super) fn denied(grant: &Grant, op: &'static str, path: String, right: Right) -> Error {
    Error::Denied {
        op,
        path,
        holder: grant.holder.clone(),
        scope: grant.scope.clone(),
        rights: grant.rights,
        right,
    }
}
