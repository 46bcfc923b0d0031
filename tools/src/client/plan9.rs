//! Calls of plain 9P2000: open, create, stat, remove, and directories read
//! as stat records.

use ninep::{Body, Qid, Stat};

use super::reply::unexpected;
use super::{Client, ClientError, Opened, Result};

/// The open modes of open(5) (ninep's, shared with the server).
pub mod mode {
    pub use ninep::mode::{ORCLOSE, ORDWR, OREAD, OTRUNC, OWRITE};
}

/// A 9P2000 stat record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedStat {
    /// The file's name (empty or `/` for the root, depending on the node).
    pub name: String,
    /// Its qid.
    pub qid: Qid,
    /// Permission bits, with [`ninep::stat::DMDIR`] for directories.
    pub mode: u32,
    /// Last access, Unix seconds.
    pub atime: u32,
    /// Last modification, Unix seconds.
    pub mtime: u32,
    /// Length in bytes (0 for streams and ctl files).
    pub length: u64,
    /// Owner.
    pub uid: String,
    /// Group.
    pub gid: String,
    /// Who last modified it.
    pub muid: String,
}

impl OwnedStat {
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & ninep::stat::DMDIR != 0
    }
}

impl From<&Stat<'_>> for OwnedStat {
    fn from(s: &Stat<'_>) -> OwnedStat {
        OwnedStat {
            name: s.name.to_string(),
            qid: s.qid,
            mode: s.mode,
            atime: s.atime,
            mtime: s.mtime,
            length: s.length,
            uid: s.uid.to_string(),
            gid: s.gid.to_string(),
            muid: s.muid.to_string(),
        }
    }
}

/// Every stat record in one directory read's data.
fn parse_stats(mut data: &[u8], out: &mut Vec<OwnedStat>) -> Result<()> {
    while !data.is_empty() {
        let (s, used) = ninep::decode::decode_stat(data)
            .map_err(|e| ClientError::Protocol(format!("bad directory entry: {e}")))?;
        out.push(OwnedStat::from(&s));
        data = &data[used..];
    }
    Ok(())
}

impl Client {
    /// 9P2000 Topen with a [`mode`].
    pub fn open(&self, fid: u32, mode: u8) -> Result<Opened> {
        match self.call(&Body::Topen { fid, mode })?.body()? {
            Body::Ropen { qid, iounit } => Ok(Opened {
                qid,
                iounit: self.effective_iounit(iounit),
            }),
            other => Err(unexpected("open", &other)),
        }
    }

    /// 9P2000 Tcreate of `name` in directory `fid`, which then is the new
    /// file, open with `mode`. `perm` with DMDIR makes a directory.
    pub fn create(&self, fid: u32, name: &str, perm: u32, mode: u8) -> Result<Opened> {
        let body = Body::Tcreate {
            fid,
            name,
            perm,
            mode,
            extension: (self.dialect() == ninep::Dialect::U).then_some(""),
        };
        match self.call(&body)?.body()? {
            Body::Rcreate { qid, iounit } => Ok(Opened {
                qid,
                iounit: self.effective_iounit(iounit),
            }),
            other => Err(unexpected("create", &other)),
        }
    }

    /// 9P2000 Tstat.
    pub fn stat(&self, fid: u32) -> Result<OwnedStat> {
        match self.call(&Body::Tstat { fid })?.body()? {
            Body::Rstat { stat } => Ok(OwnedStat::from(&stat)),
            other => Err(unexpected("stat", &other)),
        }
    }

    /// Tremove: remove the file `fid` points at. The fid is gone afterwards
    /// whether or not the removal succeeded (remove(5)).
    pub fn remove(&self, fid: u32) -> Result<()> {
        let r = self.call(&Body::Tremove { fid });
        self.free_fid(fid);
        r.map(|_| ())
    }

    /// 9P2000: the whole file at `path` (walk, open, read to the end,
    /// clunk). A stream blocks for as long as it does.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        let fid = self.walk_path(path)?;
        let r = self
            .open(fid, mode::OREAD)
            .and_then(|o| self.read_all(fid, o.iounit));
        let _ = self.clunk(fid);
        r
    }

    /// 9P2000: write `data` to the file at `path` in one message (walk,
    /// open, write, clunk), as a ctl file wants a command.
    pub fn write_file(&self, path: &str, data: &[u8]) -> Result<()> {
        let fid = self.walk_path(path)?;
        let r = self
            .open(fid, mode::OWRITE)
            .and_then(|_| self.write(fid, 0, data));
        let _ = self.clunk(fid);
        r.map(|_| ())
    }

    /// The names in directory `fid` (or the file's own name), and whether
    /// each is a directory.
    pub fn list(&self, fid: u32) -> Result<Vec<(String, bool)>> {
        let st = self.stat(fid)?;
        if !st.is_dir() {
            return Ok(vec![(st.name, false)]);
        }
        let opened = self.open(fid, mode::OREAD)?;
        let entries = self.read_dir(fid, opened.iounit)?;
        Ok(entries
            .into_iter()
            .map(|e| {
                let dir = e.is_dir();
                (e.name, dir)
            })
            .collect())
    }

    /// 9P2000: every entry of the directory open on `fid`.
    pub fn read_dir(&self, fid: u32, iounit: u32) -> Result<Vec<OwnedStat>> {
        let count = self.effective_iounit(iounit);
        let mut out = Vec::new();
        let mut offset = 0u64;
        loop {
            let reply = self.read_reply(fid, offset, count)?;
            let data = reply.read_data()?;
            if data.is_empty() {
                return Ok(out);
            }
            offset += data.len() as u64;
            parse_stats(data, &mut out)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_read_yields_every_record_and_rejects_a_torn_one() {
        let a = Stat {
            name: "ctl",
            mode: 0o200,
            ..Stat::default()
        };
        let b = Stat {
            name: "chan",
            mode: ninep::stat::DMDIR | 0o755,
            length: 0,
            ..Stat::default()
        };
        let mut data = Vec::new();
        ninep::encode::encode_stat(&a, &mut data).unwrap();
        ninep::encode::encode_stat(&b, &mut data).unwrap();
        let mut out = Vec::new();
        parse_stats(&data, &mut out).unwrap();
        let names: Vec<_> = out.iter().map(|s| (s.name.as_str(), s.is_dir())).collect();
        assert_eq!(names, [("ctl", false), ("chan", true)]);
        let mut out = Vec::new();
        assert!(parse_stats(&data[..data.len() - 1], &mut out).is_err());
    }
}
