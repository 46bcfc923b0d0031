//! Request dispatch: each 9P request to the operation that serves it.

use crate::attr;
use crate::cap::Right;
use crate::clock::Clock;
use crate::dev::Step;
use crate::error::Error;
use crate::fid::{Access, Fid, Mode};
use crate::log::Log;
use crate::outbox::{ConnId, Outbox};
use crate::parked::ParkedRead;
use crate::root;
use crate::walk;
use alloc::format;
use alloc::string::String;
use ninep::mode::{AT_REMOVEDIR, ORCLOSE};
use ninep::stat::{DMDIR, StatFs};
use ninep::{Body, Dialect, Msg, Qid, QidType};

use super::access::{On, Op};
use super::files::Making;
use super::*;

impl<L: Log, C: Clock> Server<L, C> {
    pub(super) fn dispatch(
        &mut self,
        conn: ConnId,
        msg: Msg<'_>,
        out: &mut Outbox,
    ) -> Result<(), Error> {
        let tag = msg.tag;
        match msg.body {
            Body::Tversion { msize, version } => self.version(conn, tag, msize, version, out),
            Body::Tauth { afid, aname, .. } => {
                // An auth fid is opened only for a client that asks for
                // the capability protocol by name. Clients that always try
                // Tauth first and give up on an Rauth they cannot follow
                // (py9p, diod's) are told none is needed, and attach with
                // their token in the aname; so is every client of an
                // insecure node.
                let asks = aname.split_ascii_whitespace().any(|w| w == AUTH_WORD);
                if !asks || self.world.config.insecure {
                    return Err(Error::NoAuth);
                }
                let c = self.conn(conn)?;
                c.fids.check_free(afid)?;
                c.fids
                    .insert(afid, Fid::new(root::ROOT, Access::Auth(None)));
                self.world.fids += 1;
                let aqid = Qid {
                    ty: QidType::AUTH,
                    version: 0,
                    path: AUTH_PATH,
                };
                self.reply(conn, tag, Body::Rauth { aqid }, out);
                Ok(())
            }
            Body::Tattach {
                fid, afid, aname, ..
            } => {
                self.conn(conn)?.fids.check_free(fid)?;
                let (grant, at_cap) = self.attach_grant(conn, afid, aname)?;
                // A guarded capability may be refused outright (an agent
                // that is gone or halted cannot attach).
                self.world.ctx_as(&grant).vet(&Step::Act)?;
                let root = if at_cap {
                    self.cap_root(&grant)?
                } else {
                    walk::resolve(&self.world.ctx(), &grant.scope).ok_or_else(|| {
                        Error::Unauthorized(format!(
                            "capability scope {} does not exist on this node",
                            grant.scope
                        ))
                    })?
                };
                let qid = self.qid(root)?;
                let c = self.conn(conn)?;
                c.fids
                    .insert(fid, Fid::new(root, Access::Attached { grant, root }));
                c.attached = true;
                self.world.fids += 1;
                self.reply(conn, tag, Body::Rattach { qid }, out);
                Ok(())
            }
            Body::Tflush { oldtag } => {
                self.flush(conn, tag, oldtag, out);
                Ok(())
            }
            Body::Twalk {
                fid,
                newfid,
                wnames,
            } => {
                let (start, grant, root) = self.access(conn, fid)?;
                let c = self.conns.get_mut(&conn).ok_or(Error::UnknownFid(fid))?;
                if c.fids.get(fid)?.open.is_some() {
                    return Err(Error::FidOpen);
                }
                if newfid != fid {
                    c.fids.check_free(newfid)?;
                }
                let ctx = self.world.ctx_as(&grant);
                let walked = walk::walk(&ctx, root, start, &wnames)?;
                if walked.qids.len() == wnames.len() {
                    let node = walked.node;
                    let access = Access::Attached {
                        grant: grant.clone(),
                        root,
                    };
                    if c.fids.insert(newfid, Fid::new(node, access)) {
                        self.world.fids += 1;
                    }
                }
                self.reply(conn, tag, Body::Rwalk { wqids: walked.qids }, out);
                Ok(())
            }
            Body::Topen { fid, mode } => {
                let qid = self.open(conn, fid, Mode::from_9p(mode), mode & ORCLOSE != 0)?;
                let iounit = self.iounit(conn);
                self.reply(conn, tag, Body::Ropen { qid, iounit }, out);
                Ok(())
            }
            Body::Tlopen { fid, flags } => {
                let qid = self.open(conn, fid, Mode::from_linux(flags), false)?;
                let iounit = self.iounit(conn);
                self.reply(conn, tag, Body::Rlopen { qid, iounit }, out);
                Ok(())
            }
            Body::Tcreate {
                fid,
                name,
                perm,
                mode,
                ..
            } => {
                use ninep::stat::{DMDEVICE, DMNAMEDPIPE, DMSOCKET, DMSYMLINK};
                if perm & (DMSYMLINK | DMDEVICE | DMNAMEDPIPE | DMSOCKET) != 0 {
                    return Err(Error::Unsupported(
                        "symbolic links, devices, pipes and sockets",
                    ));
                }
                let how = CreateHow::Create(Mode::from_9p(mode));
                let making = if perm & DMDIR != 0 {
                    Making::Dir
                } else if perm & ninep::stat::DMEXCL != 0 {
                    Making::NewFile
                } else {
                    Making::File
                };
                let opened = self.create(conn, tag, fid, name, making, how)?;
                self.created(conn, tag, opened, false, out)
            }
            Body::Tlcreate {
                fid, name, flags, ..
            } => {
                let making = if flags & ninep::mode::O_EXCL != 0 {
                    Making::NewFile
                } else {
                    Making::File
                };
                let how = CreateHow::Lcreate(Mode::from_linux(flags));
                let opened = self.create(conn, tag, fid, name, making, how)?;
                self.created(conn, tag, opened, true, out)
            }
            Body::Tmkdir { dfid, name, .. } => self
                .create(conn, tag, dfid, name, Making::Dir, CreateHow::Mkdir)
                .map(|_| ()),
            Body::Tread { fid, offset, count } => {
                let req = ParkedRead {
                    conn,
                    tag,
                    fid,
                    offset,
                    count,
                };
                self.read(req, false, out)
            }
            Body::Twrite {
                fid, offset, data, ..
            } => {
                if self.is_auth(conn, fid)? {
                    return self.auth_write(conn, tag, fid, offset, data, out);
                }
                let (node, grant, _) = self.access(conn, fid)?;
                let f = self.conn(conn)?.fids.get(fid)?;
                if !f.open.is_some_and(|m| m.write) {
                    return Err(Error::NotOpenFor("writing"));
                }
                self.allow(&grant, Op::Write, On::File(node))?;
                self.note(&grant, "write", node);
                self.write(conn, tag, fid, node, &grant, data)
            }
            Body::Tclunk { fid } => {
                let f = self.take_fid(conn, fid)?;
                let allowed = f.rclose
                    && match &f.access {
                        Access::Attached { grant, .. } => {
                            self.world.check(grant).is_ok()
                                && grant.rights.has(Right::Remove)
                                && (!self.world.guarded(grant)
                                    || self.allow(grant, Op::Remove, On::File(f.node)).is_ok())
                        }
                        Access::Auth(_) => false,
                    };
                if allowed {
                    // Remove-on-close: best effort, nobody to tell.
                    let ctx = self.world.ctx();
                    if let Ok(Some(cmd)) = ctx.device(f.node).remove(&ctx, f.node)
                        && let Ok(p) = self.propose_id(cmd, conn, tag, Then::Quiet)
                    {
                        // The tag is the client's again at the Rclunk: a
                        // later request or Tflush under it is not this one.
                        if let Some(w) = self.inflight.get_mut(&p) {
                            w.cancelled = true;
                        }
                        self.conn(conn)?.live_tags.remove(&tag);
                    }
                }
                self.reply(conn, tag, Body::Rclunk, out);
                Ok(())
            }
            Body::Tremove { fid } => {
                // remove(5): the fid is clunked even if the remove fails.
                let checked = self.access(conn, fid);
                let f = self.take_fid(conn, fid)?;
                let (node, grant, root) = checked?;
                if node == root {
                    return Err(Error::Perm(format!(
                        "remove {}: cannot remove the root of the capability's scope",
                        walk::path_of(&self.world.ctx(), node)
                    )));
                }
                self.allow(&grant, Op::Remove, On::File(node))?;
                self.note(&grant, "remove", node);
                self.remove(conn, tag, f.node, false, out)
            }
            Body::Tunlinkat {
                dirfid,
                name,
                flags,
            } => {
                let (dir, grant, root) = self.access(conn, dirfid)?;
                crate::name::check_element(name).map_err(Error::BadName)?;
                let ctx = self.world.ctx_as(&grant);
                let node = walk::lookup(&ctx, root, dir, name)?;
                self.allow(&grant, Op::Remove, On::File(node))?;
                let ctx = self.world.ctx_as(&grant);
                let is_dir = ctx.device(node).info(&ctx, node).is_some_and(|i| i.dir);
                if flags & AT_REMOVEDIR != 0 && !is_dir {
                    return Err(Error::NotDir);
                }
                if flags & AT_REMOVEDIR == 0 && is_dir {
                    return Err(Error::IsDir);
                }
                self.note(&grant, "remove", node);
                self.remove(conn, tag, node, true, out)
            }
            Body::Tstat { fid } => {
                let (node, ..) = self.access(conn, fid)?;
                let ctx = self.world.ctx();
                let mut info = ctx.device(node).info(&ctx, node).ok_or_else(gone)?;
                info.length = ctx.stat_length(node, &info);
                let stat = attr::stat_in(node, &info, self.dialect(conn));
                encode_reply(out, conn, tag, Body::Rstat { stat });
                Ok(())
            }
            Body::Twstat { fid, stat } => {
                let (node, grant, _) = self.access(conn, fid)?;
                self.allow(&grant, Op::Wstat, On::File(node))?;
                let ctx = self.world.ctx();
                let info = ctx.device(node).info(&ctx, node).ok_or_else(gone)?;
                let keeps = |v: u32| v == u32::MAX;
                let truncate_ok = stat.length == u64::MAX || (stat.length == 0 && !info.dir);
                if !stat.name.is_empty() && stat.name != info.name {
                    return Err(Error::Perm(String::from("files cannot be renamed")));
                }
                let ids_kept = stat
                    .ext
                    .is_none_or(|e| keeps(e.n_uid) && keeps(e.n_gid) && keeps(e.n_muid));
                if !keeps(stat.mode)
                    || !stat.uid.is_empty()
                    || !stat.gid.is_empty()
                    || !ids_kept
                    || !truncate_ok
                {
                    return Err(Error::Perm(String::from(
                        "mode, owner and length are fixed (only a truncation to 0 is accepted)",
                    )));
                }
                self.reply(conn, tag, Body::Rwstat, out);
                Ok(())
            }
            Body::Tgetattr { fid, .. } => {
                let (node, ..) = self.access(conn, fid)?;
                let ctx = self.world.ctx();
                let mut info = ctx.device(node).info(&ctx, node).ok_or_else(gone)?;
                info.length = ctx.stat_length(node, &info);
                let attr = attr::getattr(node, &info);
                self.reply(conn, tag, Body::Rgetattr { attr }, out);
                Ok(())
            }
            Body::Tsetattr {
                fid, valid, size, ..
            } => {
                use ninep::mode::setattr::{GID, MODE, SIZE, UID};
                let (node, grant, _) = self.access(conn, fid)?;
                self.allow(&grant, Op::Setattr, On::File(node))?;
                let ctx = self.world.ctx();
                let info = ctx.device(node).info(&ctx, node).ok_or_else(gone)?;
                if valid & (MODE | UID | GID) != 0 {
                    return Err(Error::Perm(String::from("mode and owner are fixed")));
                }
                if valid & SIZE != 0 && (size != 0 || info.dir) {
                    return Err(Error::Perm(String::from(
                        "length is fixed (only a truncation to 0 is accepted)",
                    )));
                }
                self.reply(conn, tag, Body::Rsetattr, out);
                Ok(())
            }
            Body::Treaddir { fid, offset, count } => {
                self.readdir(conn, tag, fid, offset, count, out)
            }
            Body::Tstatfs { fid } => {
                self.access(conn, fid)?;
                let statfs = StatFs {
                    ty: 0x0102_1997,
                    bsize: 4096,
                    namelen: 255,
                    ..StatFs::default()
                };
                self.reply(conn, tag, Body::Rstatfs { statfs }, out);
                Ok(())
            }
            Body::Tfsync { fid, .. } => {
                // Every acknowledged write is already durable.
                self.access(conn, fid)?;
                self.reply(conn, tag, Body::Rfsync, out);
                Ok(())
            }
            Body::Treadlink { .. } => Err(Error::Invalid(String::from("not a symbolic link"))),
            Body::Tsymlink { .. } => Err(Error::Unsupported("symlink")),
            Body::Tmknod { .. } => Err(Error::Unsupported("mknod")),
            Body::Trename { .. } | Body::Trenameat { .. } => Err(Error::Unsupported("rename")),
            Body::Tlink { .. } => Err(Error::Unsupported("link")),
            Body::Txattrwalk { .. } | Body::Txattrcreate { .. } => {
                Err(Error::Unsupported("extended attributes"))
            }
            Body::Tlock { .. } | Body::Tgetlock { .. } => Err(Error::Unsupported("file locking")),
            other => Err(Error::Protocol(format!(
                "{:?} is a reply, not a request",
                other.msg_type()
            ))),
        }
    }

    /// Answer a create that opened an existing file (`opened`, with
    /// `linux` for Rlcreate); one that makes a file is answered when it
    /// commits.
    fn created(
        &mut self,
        conn: ConnId,
        tag: u16,
        opened: Option<Qid>,
        linux: bool,
        out: &mut Outbox,
    ) -> Result<(), Error> {
        if let Some(qid) = opened {
            let iounit = self.iounit(conn);
            let body = if linux {
                Body::Rlcreate { qid, iounit }
            } else {
                Body::Rcreate { qid, iounit }
            };
            self.reply(conn, tag, body, out);
        }
        Ok(())
    }

    pub(super) fn version(
        &mut self,
        conn: ConnId,
        tag: u16,
        msize: u32,
        version: &str,
        out: &mut Outbox,
    ) -> Result<(), Error> {
        self.reset(conn);
        let max = self.world.config.max_msize;
        let c = self.conn(conn)?;
        // A new session: a stranger again until it attaches.
        c.attached = false;
        // version(5): the highest dialect both speak; a suffix this
        // server does not know falls back to plain 9P2000.
        let dialect = match version {
            "9P2000.L" => Some(Dialect::L),
            "9P2000.u" => Some(Dialect::U),
            v if v.starts_with("9P2000") => Some(Dialect::P2000),
            _ => None,
        };
        if msize < MIN_MSIZE {
            c.dialect = None;
            return Err(Error::Protocol(format!(
                "msize {msize} is too small; at least {MIN_MSIZE}"
            )));
        }
        c.dialect = dialect;
        c.msize = msize.min(max);
        let msize = c.msize;
        let version = dialect.map_or("unknown", Dialect::version);
        encode_reply(out, conn, tag, Body::Rversion { msize, version });
        Ok(())
    }
}

/// For requests whose failures are reported on `/events`: the fid they act
/// on and the name they act on inside it.
pub(super) fn mutation_target<'a>(body: &Body<'a>) -> Option<(u32, Option<&'a str>)> {
    match *body {
        Body::Twrite { fid, .. }
        | Body::Tremove { fid }
        | Body::Twstat { fid, .. }
        | Body::Tsetattr { fid, .. } => Some((fid, None)),
        Body::Tcreate { fid, name, .. } | Body::Tlcreate { fid, name, .. } => {
            Some((fid, Some(name)))
        }
        Body::Tmkdir { dfid, name, .. } => Some((dfid, Some(name))),
        Body::Tunlinkat { dirfid, name, .. } => Some((dirfid, Some(name))),
        _ => None,
    }
}
