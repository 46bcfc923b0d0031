//! The operations the tool needs, as typed calls.

use ninep::{Attr, Body, Dialect, Names, Qid};

use super::{Client, ClientError, ROOT, Result};

/// A 9P2000 stat, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedStat {
    /// The file's name.
    pub name: String,
    /// Its qid.
    pub qid: Qid,
    /// Mode bits, with DMDIR for directories.
    pub mode: u32,
    /// Length in bytes.
    pub length: u64,
    /// Modification time, Unix seconds.
    pub mtime: u32,
    /// Owner.
    pub uid: String,
}

impl OwnedStat {
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & ninep::stat::DMDIR != 0
    }
}

/// A 9P2000.L directory entry, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Its qid.
    pub qid: Qid,
    /// The cookie to continue after it.
    pub offset: u64,
    /// `d_type` (4 directory, 8 file).
    pub ty: u8,
    /// Its name.
    pub name: String,
}

fn decode(frame: &[u8], dialect: Dialect) -> Result<Body<'_>> {
    ninep::decode(frame, dialect)
        .map(|m| m.body)
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

fn unexpected(what: &str, body: &Body<'_>) -> ClientError {
    ClientError::Protocol(format!("{what}: unexpected {:?}", body.msg_type()))
}

/// Split a tree path into names: `/chan/x` and `chan/x/` give `chan`, `x`.
pub fn split(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect()
}

impl Client {
    /// Walk `names` from `from` into a new fid; every name must exist.
    pub fn walk(&self, from: u32, names: &[&str]) -> Result<u32> {
        let newfid = self.alloc_fid();
        let mut cur = from;
        let chunks: Vec<&[&str]> = if names.is_empty() {
            vec![&[]]
        } else {
            names.chunks(ninep::MAXWELEM).collect()
        };
        for (i, chunk) in chunks.iter().enumerate() {
            let wnames = Names::from_slice(chunk)
                .map_err(|_| ClientError::Protocol("too many names".into()))?;
            let r = self.call(&Body::Twalk {
                fid: cur,
                newfid,
                wnames,
            });
            let walked = match r {
                Ok(frame) => match decode(&frame, self.dialect)? {
                    Body::Rwalk { wqids } => wqids.len(),
                    other => return Err(unexpected("walk", &other)),
                },
                Err(e) => {
                    if i > 0 {
                        let _ = self.clunk(newfid);
                    } else {
                        self.free_fid(newfid);
                    }
                    return Err(e);
                }
            };
            if walked < chunk.len() {
                let missing = chunk[walked];
                if i > 0 {
                    let _ = self.clunk(newfid);
                } else {
                    self.free_fid(newfid);
                }
                return Err(match self.dialect {
                    Dialect::L => ClientError::Errno(libc::ENOENT as u32),
                    Dialect::P2000 => ClientError::Server(format!("'{missing}' does not exist")),
                });
            }
            cur = newfid;
        }
        Ok(newfid)
    }

    /// Walk from the root along a slash-separated path.
    pub fn walk_path(&self, path: &str) -> Result<u32> {
        self.walk(ROOT, &split(path))
    }

    /// Clunk `fid` and forget it.
    pub fn clunk(&self, fid: u32) -> Result<()> {
        let r = self.call(&Body::Tclunk { fid });
        self.free_fid(fid);
        r.map(|_| ())
    }

    /// Open (9P2000 mode byte, or Linux flags in 9P2000.L); returns the
    /// qid and the iounit.
    pub fn open(&self, fid: u32, mode: u32) -> Result<(Qid, u32)> {
        let frame = match self.dialect {
            Dialect::L => self.call(&Body::Tlopen { fid, flags: mode })?,
            Dialect::P2000 => self.call(&Body::Topen {
                fid,
                mode: mode as u8,
            })?,
        };
        match decode(&frame, self.dialect)? {
            Body::Ropen { qid, iounit } | Body::Rlopen { qid, iounit } => Ok((
                qid,
                if iounit == 0 {
                    self.iounit()
                } else {
                    iounit.min(self.iounit())
                },
            )),
            other => Err(unexpected("open", &other)),
        }
    }

    /// Read up to `count` bytes at `offset`.
    pub fn read(&self, fid: u32, offset: u64, count: u32) -> Result<Vec<u8>> {
        let frame = self.call(&Body::Tread {
            fid,
            offset,
            count: count.min(self.iounit()),
        })?;
        read_data(&frame, self.dialect)
    }

    /// Write `data` at `offset` in one message; returns the count taken.
    pub fn write(&self, fid: u32, offset: u64, data: &[u8]) -> Result<u32> {
        let frame = self.call(&Body::Twrite { fid, offset, data })?;
        match decode(&frame, self.dialect)? {
            Body::Rwrite { count } => Ok(count),
            other => Err(unexpected("write", &other)),
        }
    }

    /// Remove the file `fid` points at (the fid is clunked either way).
    pub fn remove(&self, fid: u32) -> Result<()> {
        let r = self.call(&Body::Tremove { fid });
        self.free_fid(fid);
        r.map(|_| ())
    }

    /// 9P2000 create in directory `fid`; the fid becomes the new file.
    pub fn create(&self, fid: u32, name: &str, perm: u32, mode: u8) -> Result<Qid> {
        let frame = self.call(&Body::Tcreate {
            fid,
            name,
            perm,
            mode,
        })?;
        match decode(&frame, self.dialect)? {
            Body::Rcreate { qid, .. } => Ok(qid),
            other => Err(unexpected("create", &other)),
        }
    }

    /// 9P2000.L mkdir in directory `dfid`.
    pub fn mkdir(&self, dfid: u32, name: &str, mode: u32, gid: u32) -> Result<Qid> {
        let frame = self.call(&Body::Tmkdir {
            dfid,
            name,
            mode,
            gid,
        })?;
        match decode(&frame, self.dialect)? {
            Body::Rmkdir { qid } => Ok(qid),
            other => Err(unexpected("mkdir", &other)),
        }
    }

    /// 9P2000.L create of a plain file in directory `fid` (which becomes it).
    pub fn lcreate(
        &self,
        fid: u32,
        name: &str,
        flags: u32,
        mode: u32,
        gid: u32,
    ) -> Result<(Qid, u32)> {
        let frame = self.call(&Body::Tlcreate {
            fid,
            name,
            flags,
            mode,
            gid,
        })?;
        match decode(&frame, self.dialect)? {
            Body::Rlcreate { qid, iounit } => {
                Ok((qid, if iounit == 0 { self.iounit() } else { iounit }))
            }
            other => Err(unexpected("lcreate", &other)),
        }
    }

    /// 9P2000.L unlinkat of `name` in directory `dfid`.
    pub fn unlinkat(&self, dfid: u32, name: &str, flags: u32) -> Result<()> {
        self.call(&Body::Tunlinkat {
            dirfid: dfid,
            name,
            flags,
        })
        .map(|_| ())
    }

    /// 9P2000 stat.
    pub fn stat(&self, fid: u32) -> Result<OwnedStat> {
        let frame = self.call(&Body::Tstat { fid })?;
        match decode(&frame, self.dialect)? {
            Body::Rstat { stat } => Ok(own_stat(&stat)),
            other => Err(unexpected("stat", &other)),
        }
    }

    /// 9P2000.L getattr.
    pub fn getattr(&self, fid: u32) -> Result<Attr> {
        let frame = self.call(&Body::Tgetattr {
            fid,
            request_mask: ninep::stat::GETATTR_BASIC,
        })?;
        match decode(&frame, self.dialect)? {
            Body::Rgetattr { attr } => Ok(attr),
            other => Err(unexpected("getattr", &other)),
        }
    }

    /// 9P2000.L setattr of the size (truncation) only.
    pub fn truncate(&self, fid: u32, size: u64) -> Result<()> {
        let body = Body::Tsetattr {
            fid,
            valid: 0x8,
            mode: 0,
            uid: 0,
            gid: 0,
            size,
            atime_sec: 0,
            atime_nsec: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
        };
        self.call(&body).map(|_| ())
    }

    /// 9P2000.L statfs.
    pub fn statfs(&self, fid: u32) -> Result<ninep::StatFs> {
        let frame = self.call(&Body::Tstatfs { fid })?;
        match decode(&frame, self.dialect)? {
            Body::Rstatfs { statfs } => Ok(statfs),
            other => Err(unexpected("statfs", &other)),
        }
    }

    /// 9P2000.L readdir from cookie `offset`.
    pub fn readdir(&self, fid: u32, offset: u64, count: u32) -> Result<Vec<DirEntry>> {
        let frame = self.call(&Body::Treaddir {
            fid,
            offset,
            count: count.min(self.iounit()),
        })?;
        let data = match decode(&frame, self.dialect)? {
            Body::Rreaddir { data } => data,
            other => return Err(unexpected("readdir", &other)),
        };
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let (d, used) = ninep::decode::decode_dirent(rest)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            out.push(DirEntry {
                qid: d.qid,
                offset: d.offset,
                ty: d.ty,
                name: d.name.to_string(),
            });
            rest = &rest[used..];
        }
        Ok(out)
    }

    /// 9P2000: every entry of the open directory `fid`.
    pub fn read_dir(&self, fid: u32) -> Result<Vec<OwnedStat>> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        loop {
            let data = self.read(fid, offset, self.iounit())?;
            if data.is_empty() {
                return Ok(out);
            }
            offset += data.len() as u64;
            let mut rest = &data[..];
            while !rest.is_empty() {
                let (s, used) = ninep::decode::decode_stat(rest)
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                out.push(own_stat(&s));
                rest = &rest[used..];
            }
        }
    }
}

fn own_stat(s: &ninep::Stat<'_>) -> OwnedStat {
    OwnedStat {
        name: s.name.to_string(),
        qid: s.qid,
        mode: s.mode,
        length: s.length,
        mtime: s.mtime,
        uid: s.uid.to_string(),
    }
}

/// The data of an Rread frame.
pub fn read_data(frame: &[u8], dialect: Dialect) -> Result<Vec<u8>> {
    match decode(frame, dialect)? {
        Body::Rread { data } => Ok(data.to_vec()),
        other => Err(unexpected("read", &other)),
    }
}
