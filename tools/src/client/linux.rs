//! Calls of 9P2000.L: the Linux-shaped operations the FUSE mount needs.

use ninep::{Attr, Body, Qid, StatFs};

use super::reply::unexpected;
use super::{Client, ClientError, Opened, Result};

pub use ninep::mode::{AT_REMOVEDIR, setattr};

/// The fields of a Tsetattr; only those named in `valid` count.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Which fields to set: [`setattr`] bits.
    pub valid: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime_sec: u64,
    pub atime_nsec: u64,
    pub mtime_sec: u64,
    pub mtime_nsec: u64,
}

/// One 9P2000.L directory entry, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Its qid.
    pub qid: Qid,
    /// The cookie to pass to the next Treaddir to continue after it.
    pub offset: u64,
    /// The `d_type` of readdir(3): 4 directory, 8 regular file.
    pub ty: u8,
    /// Its name.
    pub name: String,
}

/// Every entry in one Rreaddir's data.
fn parse_dirents(mut data: &[u8]) -> Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (d, used) = ninep::decode::decode_dirent(data)
            .map_err(|e| ClientError::Protocol(format!("bad directory entry: {e}")))?;
        out.push(DirEntry {
            qid: d.qid,
            offset: d.offset,
            ty: d.ty,
            name: d.name.to_string(),
        });
        data = &data[used..];
    }
    Ok(out)
}

impl Client {
    /// Tlopen with Linux open flags (O_RDONLY, O_WRONLY|O_APPEND, …).
    pub fn lopen(&self, fid: u32, flags: u32) -> Result<Opened> {
        match self.call(&Body::Tlopen { fid, flags })?.body()? {
            Body::Rlopen { qid, iounit } => Ok(Opened {
                qid,
                iounit: self.effective_iounit(iounit),
            }),
            other => Err(unexpected("lopen", &other)),
        }
    }

    /// Tlcreate of a plain file `name` in directory `fid`, which then is
    /// the new file, open with `flags`.
    pub fn lcreate(&self, fid: u32, name: &str, flags: u32, mode: u32, gid: u32) -> Result<Opened> {
        let body = Body::Tlcreate {
            fid,
            name,
            flags,
            mode,
            gid,
        };
        match self.call(&body)?.body()? {
            Body::Rlcreate { qid, iounit } => Ok(Opened {
                qid,
                iounit: self.effective_iounit(iounit),
            }),
            other => Err(unexpected("lcreate", &other)),
        }
    }

    /// Tmkdir of `name` in directory `dfid`.
    pub fn mkdir(&self, dfid: u32, name: &str, mode: u32, gid: u32) -> Result<Qid> {
        let body = Body::Tmkdir {
            dfid,
            name,
            mode,
            gid,
        };
        match self.call(&body)?.body()? {
            Body::Rmkdir { qid } => Ok(qid),
            other => Err(unexpected("mkdir", &other)),
        }
    }

    /// Tunlinkat of `name` in directory `dfid` ([`AT_REMOVEDIR`] for a
    /// directory).
    pub fn unlinkat(&self, dfid: u32, name: &str, flags: u32) -> Result<()> {
        let body = Body::Tunlinkat {
            dirfid: dfid,
            name,
            flags,
        };
        self.call(&body).map(|_| ())
    }

    /// Tgetattr of the basic fields (mode, ids, size, times, …).
    pub fn getattr(&self, fid: u32) -> Result<Attr> {
        let body = Body::Tgetattr {
            fid,
            request_mask: ninep::stat::GETATTR_BASIC,
        };
        match self.call(&body)?.body()? {
            Body::Rgetattr { attr } => Ok(attr),
            other => Err(unexpected("getattr", &other)),
        }
    }

    /// Tsetattr of the fields `a.valid` names.
    pub fn setattr(&self, fid: u32, a: &SetAttr) -> Result<()> {
        let body = Body::Tsetattr {
            fid,
            valid: a.valid,
            mode: a.mode,
            uid: a.uid,
            gid: a.gid,
            size: a.size,
            atime_sec: a.atime_sec,
            atime_nsec: a.atime_nsec,
            mtime_sec: a.mtime_sec,
            mtime_nsec: a.mtime_nsec,
        };
        self.call(&body).map(|_| ())
    }

    /// Tsetattr of the size only (a truncation).
    pub fn truncate(&self, fid: u32, size: u64) -> Result<()> {
        let a = SetAttr {
            valid: setattr::SIZE,
            size,
            ..SetAttr::default()
        };
        self.setattr(fid, &a)
    }

    /// Tfsync: ask the node to make what was written to `fid` durable.
    pub fn fsync(&self, fid: u32, datasync: bool) -> Result<()> {
        let body = Body::Tfsync {
            fid,
            datasync: u32::from(datasync),
        };
        self.call(&body).map(|_| ())
    }

    /// Tstatfs.
    pub fn statfs(&self, fid: u32) -> Result<StatFs> {
        match self.call(&Body::Tstatfs { fid })?.body()? {
            Body::Rstatfs { statfs } => Ok(statfs),
            other => Err(unexpected("statfs", &other)),
        }
    }

    /// Treaddir of the directory open on `fid`, from cookie `offset`; an
    /// empty answer means the end.
    pub fn readdir(&self, fid: u32, offset: u64, count: u32) -> Result<Vec<DirEntry>> {
        let body = Body::Treaddir {
            fid,
            offset,
            count: count.min(self.iounit()),
        };
        match self.call(&body)?.body()? {
            Body::Rreaddir { data } => parse_dirents(data),
            other => Err(unexpected("readdir", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ninep::Dirent;

    #[test]
    fn readdir_data_yields_every_entry_and_rejects_a_torn_one() {
        let mut data = Vec::new();
        for (i, name) in ["ctl", "chan"].into_iter().enumerate() {
            let d = Dirent {
                qid: Qid::default(),
                offset: i as u64 + 1,
                ty: if name == "chan" { 4 } else { 8 },
                name,
            };
            ninep::encode::encode_dirent(&d, &mut data).unwrap();
        }
        let got = parse_dirents(&data).unwrap();
        let got: Vec<_> = got
            .iter()
            .map(|d| (d.name.as_str(), d.offset, d.ty))
            .collect();
        assert_eq!(got, [("ctl", 1, 8), ("chan", 2, 4)]);
        assert!(parse_dirents(&data[..data.len() - 2]).is_err());
    }
}
