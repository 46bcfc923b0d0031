//! The encoder: one [`Msg`] in, one size-prefixed frame appended.
//!
//! Fields are written straight into the caller's buffer; the size is
//! patched in at the end, so nothing is built twice.

use alloc::vec::Vec;

use crate::error::EncodeError;
use crate::msg::{Body, Msg};
use crate::qid::Qid;
use crate::stat::{Dirent, Stat};

/// Appends little-endian fields to a buffer.
struct Put<'a>(&'a mut Vec<u8>);

impl Put<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) -> Result<(), EncodeError> {
        let n = u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong(s.len()))?;
        self.u16(n);
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
    fn counted(&mut self, data: &[u8]) -> Result<(), EncodeError> {
        let n = u32::try_from(data.len()).map_err(|_| EncodeError::TooLarge(data.len()))?;
        self.u32(n);
        self.0.extend_from_slice(data);
        Ok(())
    }
    fn qid(&mut self, q: &Qid) {
        self.u8(q.ty.0);
        self.u32(q.version);
        self.u64(q.path);
    }
    fn stat(&mut self, s: &Stat<'_>) -> Result<(), EncodeError> {
        let size = s.encoded_len() - 2;
        let size = u16::try_from(size).map_err(|_| EncodeError::TooLarge(size))?;
        self.u16(size);
        self.u16(s.ty);
        self.u32(s.dev);
        self.qid(&s.qid);
        self.u32(s.mode);
        self.u32(s.atime);
        self.u32(s.mtime);
        self.u64(s.length);
        self.str(s.name)?;
        self.str(s.uid)?;
        self.str(s.gid)?;
        self.str(s.muid)?;
        if let Some(e) = &s.ext {
            self.str(e.extension)?;
            self.u32(e.n_uid);
            self.u32(e.n_gid);
            self.u32(e.n_muid);
        }
        Ok(())
    }
    /// n[2] then the stat, as Rstat and Twstat carry it.
    fn sized_stat(&mut self, s: &Stat<'_>) -> Result<(), EncodeError> {
        let n = s.encoded_len();
        self.u16(u16::try_from(n).map_err(|_| EncodeError::TooLarge(n))?);
        self.stat(s)
    }
}

/// Append `msg` to `out` as one frame, size[4] first. On error `out` is left
/// as it was.
pub fn encode(msg: &Msg<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode_into(msg, out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_into(msg: &Msg<'_>, out: &mut Vec<u8>, start: usize) -> Result<(), EncodeError> {
    out.extend_from_slice(&[0; 4]);
    let mut p = Put(out);
    p.u8(msg.body.msg_type() as u8);
    p.u16(msg.tag);
    body(&mut p, &msg.body)?;
    let len = out.len() - start;
    let size = u32::try_from(len).map_err(|_| EncodeError::TooLarge(len))?;
    out[start..start + 4].copy_from_slice(&size.to_le_bytes());
    Ok(())
}

fn body(p: &mut Put<'_>, b: &Body<'_>) -> Result<(), EncodeError> {
    match b {
        Body::Tversion { msize, version } | Body::Rversion { msize, version } => {
            p.u32(*msize);
            p.str(version)?;
        }
        Body::Tauth {
            afid,
            uname,
            aname,
            n_uname,
        } => {
            p.u32(*afid);
            p.str(uname)?;
            p.str(aname)?;
            if let Some(n) = n_uname {
                p.u32(*n);
            }
        }
        Body::Rauth { aqid } => p.qid(aqid),
        Body::Tattach {
            fid,
            afid,
            uname,
            aname,
            n_uname,
        } => {
            p.u32(*fid);
            p.u32(*afid);
            p.str(uname)?;
            p.str(aname)?;
            if let Some(n) = n_uname {
                p.u32(*n);
            }
        }
        Body::Rattach { qid }
        | Body::Rsymlink { qid }
        | Body::Rmknod { qid }
        | Body::Rmkdir { qid } => p.qid(qid),
        Body::Rerror { ename, errno } => {
            p.str(ename)?;
            if let Some(n) = errno {
                p.u32(*n);
            }
        }
        Body::Tflush { oldtag } => p.u16(*oldtag),
        Body::Twalk {
            fid,
            newfid,
            wnames,
        } => {
            p.u32(*fid);
            p.u32(*newfid);
            p.u16(wnames.len() as u16);
            for n in wnames {
                p.str(n)?;
            }
        }
        Body::Rwalk { wqids } => {
            p.u16(wqids.len() as u16);
            for q in wqids {
                p.qid(q);
            }
        }
        Body::Topen { fid, mode } => {
            p.u32(*fid);
            p.u8(*mode);
        }
        Body::Ropen { qid, iounit }
        | Body::Rcreate { qid, iounit }
        | Body::Rlopen { qid, iounit }
        | Body::Rlcreate { qid, iounit } => {
            p.qid(qid);
            p.u32(*iounit);
        }
        Body::Tcreate {
            fid,
            name,
            perm,
            mode,
            extension,
        } => {
            p.u32(*fid);
            p.str(name)?;
            p.u32(*perm);
            p.u8(*mode);
            if let Some(e) = extension {
                p.str(e)?;
            }
        }
        Body::Tread { fid, offset, count } | Body::Treaddir { fid, offset, count } => {
            p.u32(*fid);
            p.u64(*offset);
            p.u32(*count);
        }
        Body::Rread { data } | Body::Rreaddir { data } => p.counted(data)?,
        Body::Twrite { fid, offset, data } => {
            p.u32(*fid);
            p.u64(*offset);
            p.counted(data)?;
        }
        Body::Rwrite { count } => p.u32(*count),
        Body::Tclunk { fid }
        | Body::Tremove { fid }
        | Body::Tstat { fid }
        | Body::Tstatfs { fid }
        | Body::Treadlink { fid } => p.u32(*fid),
        Body::Rstat { stat } => p.sized_stat(stat)?,
        Body::Twstat { fid, stat } => {
            p.u32(*fid);
            p.sized_stat(stat)?;
        }
        Body::Rflush
        | Body::Rclunk
        | Body::Rremove
        | Body::Rwstat
        | Body::Rrename
        | Body::Rsetattr
        | Body::Rxattrcreate
        | Body::Rfsync
        | Body::Rlink
        | Body::Rrenameat
        | Body::Runlinkat => {}
        Body::Rlerror { ecode } => p.u32(*ecode),
        Body::Rstatfs { statfs: s } => {
            p.u32(s.ty);
            p.u32(s.bsize);
            p.u64(s.blocks);
            p.u64(s.bfree);
            p.u64(s.bavail);
            p.u64(s.files);
            p.u64(s.ffree);
            p.u64(s.fsid);
            p.u32(s.namelen);
        }
        Body::Tlopen { fid, flags } => {
            p.u32(*fid);
            p.u32(*flags);
        }
        Body::Tlcreate {
            fid,
            name,
            flags,
            mode,
            gid,
        } => {
            p.u32(*fid);
            p.str(name)?;
            p.u32(*flags);
            p.u32(*mode);
            p.u32(*gid);
        }
        Body::Tsymlink {
            fid,
            name,
            symtgt,
            gid,
        } => {
            p.u32(*fid);
            p.str(name)?;
            p.str(symtgt)?;
            p.u32(*gid);
        }
        Body::Tmknod {
            dfid,
            name,
            mode,
            major,
            minor,
            gid,
        } => {
            p.u32(*dfid);
            p.str(name)?;
            p.u32(*mode);
            p.u32(*major);
            p.u32(*minor);
            p.u32(*gid);
        }
        Body::Trename { fid, dfid, name } => {
            p.u32(*fid);
            p.u32(*dfid);
            p.str(name)?;
        }
        Body::Rreadlink { target } => p.str(target)?,
        Body::Tgetattr { fid, request_mask } => {
            p.u32(*fid);
            p.u64(*request_mask);
        }
        Body::Rgetattr { attr: a } => {
            p.u64(a.valid);
            p.qid(&a.qid);
            p.u32(a.mode);
            p.u32(a.uid);
            p.u32(a.gid);
            for v in [
                a.nlink,
                a.rdev,
                a.size,
                a.blksize,
                a.blocks,
                a.atime_sec,
                a.atime_nsec,
                a.mtime_sec,
                a.mtime_nsec,
                a.ctime_sec,
                a.ctime_nsec,
                a.btime_sec,
                a.btime_nsec,
                a.generation,
                a.data_version,
            ] {
                p.u64(v);
            }
        }
        Body::Tsetattr {
            fid,
            valid,
            mode,
            uid,
            gid,
            size,
            atime_sec,
            atime_nsec,
            mtime_sec,
            mtime_nsec,
        } => {
            p.u32(*fid);
            p.u32(*valid);
            p.u32(*mode);
            p.u32(*uid);
            p.u32(*gid);
            for v in [*size, *atime_sec, *atime_nsec, *mtime_sec, *mtime_nsec] {
                p.u64(v);
            }
        }
        Body::Txattrwalk { fid, newfid, name } => {
            p.u32(*fid);
            p.u32(*newfid);
            p.str(name)?;
        }
        Body::Rxattrwalk { size } => p.u64(*size),
        Body::Txattrcreate {
            fid,
            name,
            attr_size,
            flags,
        } => {
            p.u32(*fid);
            p.str(name)?;
            p.u64(*attr_size);
            p.u32(*flags);
        }
        Body::Tfsync { fid, datasync } => {
            p.u32(*fid);
            p.u32(*datasync);
        }
        Body::Tlock {
            fid,
            ty,
            flags,
            start,
            length,
            proc_id,
            client_id,
        } => {
            p.u32(*fid);
            p.u8(*ty);
            p.u32(*flags);
            p.u64(*start);
            p.u64(*length);
            p.u32(*proc_id);
            p.str(client_id)?;
        }
        Body::Rlock { status } => p.u8(*status),
        Body::Tgetlock {
            fid,
            ty,
            start,
            length,
            proc_id,
            client_id,
        } => {
            p.u32(*fid);
            p.u8(*ty);
            p.u64(*start);
            p.u64(*length);
            p.u32(*proc_id);
            p.str(client_id)?;
        }
        Body::Rgetlock {
            ty,
            start,
            length,
            proc_id,
            client_id,
        } => {
            p.u8(*ty);
            p.u64(*start);
            p.u64(*length);
            p.u32(*proc_id);
            p.str(client_id)?;
        }
        Body::Tlink { dfid, fid, name } => {
            p.u32(*dfid);
            p.u32(*fid);
            p.str(name)?;
        }
        Body::Tmkdir {
            dfid,
            name,
            mode,
            gid,
        } => {
            p.u32(*dfid);
            p.str(name)?;
            p.u32(*mode);
            p.u32(*gid);
        }
        Body::Trenameat {
            olddirfid,
            oldname,
            newdirfid,
            newname,
        } => {
            p.u32(*olddirfid);
            p.str(oldname)?;
            p.u32(*newdirfid);
            p.str(newname)?;
        }
        Body::Tunlinkat {
            dirfid,
            name,
            flags,
        } => {
            p.u32(*dirfid);
            p.str(name)?;
            p.u32(*flags);
        }
    }
    Ok(())
}

/// Append one stat record, with its leading size[2], as a 9P2000 directory
/// read carries it. On error `out` is left as it was.
pub fn encode_stat(stat: &Stat<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let r = Put(out).stat(stat);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Append one 9P2000.L directory entry. On error `out` is left as it was.
pub fn encode_dirent(d: &Dirent<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let mut p = Put(out);
    p.qid(&d.qid);
    p.u64(d.offset);
    p.u8(d.ty);
    let r = p.str(d.name);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

impl Stat<'_> {
    /// Bytes [`encode_stat`] appends for this record, including its size[2].
    pub fn encoded_len(&self) -> usize {
        2 + 2
            + 4
            + crate::qid::QID_SIZE
            + 4
            + 4
            + 4
            + 8
            + 2
            + self.name.len()
            + 2
            + self.uid.len()
            + 2
            + self.gid.len()
            + 2
            + self.muid.len()
            + self.ext.map_or(0, |e| 2 + e.extension.len() + 4 + 4 + 4)
    }
}

impl Dirent<'_> {
    /// Bytes [`encode_dirent`] appends for this entry.
    pub fn encoded_len(&self) -> usize {
        crate::qid::QID_SIZE + 8 + 1 + 2 + self.name.len()
    }
}
