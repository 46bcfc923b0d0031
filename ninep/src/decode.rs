//! The decoder: one frame in, one [`Msg`] out.
//!
//! Fields are read with `nom`'s little-endian number and byte parsers
//! through a small cursor, so every message body reads as its manual page
//! lists it. Lengths from the wire are checked against the bytes present
//! before anything is taken, so hostile lengths cost nothing.

use nom::IResult;
use nom::bytes::complete::take;
use nom::error::{ErrorKind, ParseError};
use nom::number::complete::{le_u8, le_u16, le_u32, le_u64};

use crate::MAXWELEM;
use crate::error::DecodeError;
use crate::msg::{Body, Dialect, Msg, Names, Qids};
use crate::qid::{Qid, QidType};
use crate::stat::{Attr, Dirent, Stat, StatExt, StatFs};

/// nom's error type for this decoder: the [`DecodeError`] to report.
#[derive(Debug)]
struct Fail(DecodeError);

impl<I> ParseError<I> for Fail {
    fn from_error_kind(_: I, _: ErrorKind) -> Self {
        // The only way the complete-input parsers used here fail is by
        // running out of input.
        Fail(DecodeError::Truncated)
    }
    fn append(_: I, _: ErrorKind, other: Self) -> Self {
        other
    }
}

type Res<'a, T> = IResult<&'a [u8], T, Fail>;

/// A cursor over a message body.
struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn run<T>(&mut self, p: impl FnOnce(&'a [u8]) -> Res<'a, T>) -> Result<T, DecodeError> {
        match p(self.0) {
            Ok((rest, v)) => {
                self.0 = rest;
                Ok(v)
            }
            Err(nom::Err::Error(Fail(e)) | nom::Err::Failure(Fail(e))) => Err(e),
            Err(nom::Err::Incomplete(_)) => Err(DecodeError::Truncated),
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.run(le_u8)
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.run(le_u16)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.run(le_u32)
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.run(le_u64)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.0.len() {
            return Err(DecodeError::Truncated);
        }
        self.run(take(n))
    }

    /// A string: len[2] then that many bytes of UTF-8.
    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.u16()?;
        let bytes = self.take(usize::from(n))?;
        core::str::from_utf8(bytes).map_err(|_| DecodeError::BadUtf8)
    }

    /// count[4] then exactly that many bytes, which must end the message.
    fn counted_tail(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err(DecodeError::Truncated);
        }
        self.take(n)
    }

    fn qid(&mut self) -> Result<Qid, DecodeError> {
        Ok(Qid {
            ty: QidType(self.u8()?),
            version: self.u32()?,
            path: self.u64()?,
        })
    }

    /// A stat record with its own size[2] first.
    fn stat(&mut self) -> Result<Stat<'a>, DecodeError> {
        let size = usize::from(self.u16()?);
        let body = self.take(size)?;
        let mut c = Cur(body);
        let stat = Stat {
            ty: c.u16()?,
            dev: c.u32()?,
            qid: c.qid()?,
            mode: c.u32()?,
            atime: c.u32()?,
            mtime: c.u32()?,
            length: c.u64()?,
            name: c.str()?,
            uid: c.str()?,
            gid: c.str()?,
            muid: c.str()?,
            ext: None,
        };
        // The record carries its own size, so the 9P2000.u fields are
        // known by being there.
        let stat = if c.0.is_empty() {
            stat
        } else {
            Stat {
                ext: Some(StatExt {
                    extension: c.str()?,
                    n_uid: c.u32()?,
                    n_gid: c.u32()?,
                    n_muid: c.u32()?,
                }),
                ..stat
            }
        };
        c.end()?;
        Ok(stat)
    }

    /// n[2] then a stat record whose size[2] must be n-2 (Rstat, Twstat).
    fn sized_stat(&mut self) -> Result<Stat<'a>, DecodeError> {
        let n = usize::from(self.u16()?);
        let before = self.0.len();
        let stat = self.stat()?;
        if before - self.0.len() != n {
            return Err(DecodeError::BadCount);
        }
        Ok(stat)
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.0.len()))
        }
    }
}

/// Decode one whole frame (starting with its size[4] field) as a message of
/// `dialect`. Any T- or R-message is accepted; a server rejects R-messages
/// itself. Never panics.
pub fn decode(frame: &[u8], dialect: Dialect) -> Result<Msg<'_>, DecodeError> {
    let mut head = Cur(frame);
    let size = head.u32()?;
    if size as usize != frame.len() || (size as usize) < crate::frame::MIN_FRAME {
        return Err(DecodeError::BadSize {
            declared: size,
            actual: frame.len(),
        });
    }
    let ty = head.u8()?;
    let tag = head.u16()?;
    let mut c = head;
    let body = body(&mut c, ty, dialect)?;
    c.end()?;
    Ok(Msg { tag, body })
}

fn body<'a>(c: &mut Cur<'a>, ty: u8, dialect: Dialect) -> Result<Body<'a>, DecodeError> {
    let n_uname = |c: &mut Cur<'a>| -> Result<Option<u32>, DecodeError> {
        if matches!(dialect, Dialect::L | Dialect::U) {
            c.u32().map(Some)
        } else {
            Ok(None)
        }
    };
    Ok(match ty {
        100 => Body::Tversion {
            msize: c.u32()?,
            version: c.str()?,
        },
        101 => Body::Rversion {
            msize: c.u32()?,
            version: c.str()?,
        },
        102 => Body::Tauth {
            afid: c.u32()?,
            uname: c.str()?,
            aname: c.str()?,
            n_uname: n_uname(c)?,
        },
        103 => Body::Rauth { aqid: c.qid()? },
        104 => Body::Tattach {
            fid: c.u32()?,
            afid: c.u32()?,
            uname: c.str()?,
            aname: c.str()?,
            n_uname: n_uname(c)?,
        },
        105 => Body::Rattach { qid: c.qid()? },
        107 => Body::Rerror {
            ename: c.str()?,
            errno: if dialect == Dialect::U {
                Some(c.u32()?)
            } else {
                None
            },
        },
        108 => Body::Tflush { oldtag: c.u16()? },
        109 => Body::Rflush,
        110 => {
            let fid = c.u32()?;
            let newfid = c.u32()?;
            let n = c.u16()?;
            if usize::from(n) > MAXWELEM {
                return Err(DecodeError::TooManyNames(n));
            }
            let mut wnames = Names::new();
            for _ in 0..n {
                // Cannot overflow: n <= MAXWELEM was checked above.
                let _ = wnames.push(c.str()?);
            }
            Body::Twalk {
                fid,
                newfid,
                wnames,
            }
        }
        111 => {
            let n = c.u16()?;
            if usize::from(n) > MAXWELEM {
                return Err(DecodeError::TooManyNames(n));
            }
            let mut wqids = Qids::new();
            for _ in 0..n {
                let _ = wqids.push(c.qid()?);
            }
            Body::Rwalk { wqids }
        }
        112 => Body::Topen {
            fid: c.u32()?,
            mode: c.u8()?,
        },
        113 => Body::Ropen {
            qid: c.qid()?,
            iounit: c.u32()?,
        },
        114 => Body::Tcreate {
            fid: c.u32()?,
            name: c.str()?,
            perm: c.u32()?,
            mode: c.u8()?,
            extension: if dialect == Dialect::U {
                Some(c.str()?)
            } else {
                None
            },
        },
        115 => Body::Rcreate {
            qid: c.qid()?,
            iounit: c.u32()?,
        },
        116 => Body::Tread {
            fid: c.u32()?,
            offset: c.u64()?,
            count: c.u32()?,
        },
        117 => Body::Rread {
            data: c.counted_tail()?,
        },
        118 => Body::Twrite {
            fid: c.u32()?,
            offset: c.u64()?,
            data: c.counted_tail()?,
        },
        119 => Body::Rwrite { count: c.u32()? },
        120 => Body::Tclunk { fid: c.u32()? },
        121 => Body::Rclunk,
        122 => Body::Tremove { fid: c.u32()? },
        123 => Body::Rremove,
        124 => Body::Tstat { fid: c.u32()? },
        125 => Body::Rstat {
            stat: c.sized_stat()?,
        },
        126 => Body::Twstat {
            fid: c.u32()?,
            stat: c.sized_stat()?,
        },
        127 => Body::Rwstat,

        7 => Body::Rlerror { ecode: c.u32()? },
        8 => Body::Tstatfs { fid: c.u32()? },
        9 => Body::Rstatfs {
            statfs: StatFs {
                ty: c.u32()?,
                bsize: c.u32()?,
                blocks: c.u64()?,
                bfree: c.u64()?,
                bavail: c.u64()?,
                files: c.u64()?,
                ffree: c.u64()?,
                fsid: c.u64()?,
                namelen: c.u32()?,
            },
        },
        12 => Body::Tlopen {
            fid: c.u32()?,
            flags: c.u32()?,
        },
        13 => Body::Rlopen {
            qid: c.qid()?,
            iounit: c.u32()?,
        },
        14 => Body::Tlcreate {
            fid: c.u32()?,
            name: c.str()?,
            flags: c.u32()?,
            mode: c.u32()?,
            gid: c.u32()?,
        },
        15 => Body::Rlcreate {
            qid: c.qid()?,
            iounit: c.u32()?,
        },
        16 => Body::Tsymlink {
            fid: c.u32()?,
            name: c.str()?,
            symtgt: c.str()?,
            gid: c.u32()?,
        },
        17 => Body::Rsymlink { qid: c.qid()? },
        18 => Body::Tmknod {
            dfid: c.u32()?,
            name: c.str()?,
            mode: c.u32()?,
            major: c.u32()?,
            minor: c.u32()?,
            gid: c.u32()?,
        },
        19 => Body::Rmknod { qid: c.qid()? },
        20 => Body::Trename {
            fid: c.u32()?,
            dfid: c.u32()?,
            name: c.str()?,
        },
        21 => Body::Rrename,
        22 => Body::Treadlink { fid: c.u32()? },
        23 => Body::Rreadlink { target: c.str()? },
        24 => Body::Tgetattr {
            fid: c.u32()?,
            request_mask: c.u64()?,
        },
        25 => Body::Rgetattr {
            attr: Attr {
                valid: c.u64()?,
                qid: c.qid()?,
                mode: c.u32()?,
                uid: c.u32()?,
                gid: c.u32()?,
                nlink: c.u64()?,
                rdev: c.u64()?,
                size: c.u64()?,
                blksize: c.u64()?,
                blocks: c.u64()?,
                atime_sec: c.u64()?,
                atime_nsec: c.u64()?,
                mtime_sec: c.u64()?,
                mtime_nsec: c.u64()?,
                ctime_sec: c.u64()?,
                ctime_nsec: c.u64()?,
                btime_sec: c.u64()?,
                btime_nsec: c.u64()?,
                generation: c.u64()?,
                data_version: c.u64()?,
            },
        },
        26 => Body::Tsetattr {
            fid: c.u32()?,
            valid: c.u32()?,
            mode: c.u32()?,
            uid: c.u32()?,
            gid: c.u32()?,
            size: c.u64()?,
            atime_sec: c.u64()?,
            atime_nsec: c.u64()?,
            mtime_sec: c.u64()?,
            mtime_nsec: c.u64()?,
        },
        27 => Body::Rsetattr,
        30 => Body::Txattrwalk {
            fid: c.u32()?,
            newfid: c.u32()?,
            name: c.str()?,
        },
        31 => Body::Rxattrwalk { size: c.u64()? },
        32 => Body::Txattrcreate {
            fid: c.u32()?,
            name: c.str()?,
            attr_size: c.u64()?,
            flags: c.u32()?,
        },
        33 => Body::Rxattrcreate,
        40 => Body::Treaddir {
            fid: c.u32()?,
            offset: c.u64()?,
            count: c.u32()?,
        },
        41 => Body::Rreaddir {
            data: c.counted_tail()?,
        },
        50 => {
            let fid = c.u32()?;
            // Older clients send no datasync field.
            let datasync = if c.0.is_empty() { 0 } else { c.u32()? };
            Body::Tfsync { fid, datasync }
        }
        51 => Body::Rfsync,
        52 => Body::Tlock {
            fid: c.u32()?,
            ty: c.u8()?,
            flags: c.u32()?,
            start: c.u64()?,
            length: c.u64()?,
            proc_id: c.u32()?,
            client_id: c.str()?,
        },
        53 => Body::Rlock { status: c.u8()? },
        54 => Body::Tgetlock {
            fid: c.u32()?,
            ty: c.u8()?,
            start: c.u64()?,
            length: c.u64()?,
            proc_id: c.u32()?,
            client_id: c.str()?,
        },
        55 => Body::Rgetlock {
            ty: c.u8()?,
            start: c.u64()?,
            length: c.u64()?,
            proc_id: c.u32()?,
            client_id: c.str()?,
        },
        70 => Body::Tlink {
            dfid: c.u32()?,
            fid: c.u32()?,
            name: c.str()?,
        },
        71 => Body::Rlink,
        72 => Body::Tmkdir {
            dfid: c.u32()?,
            name: c.str()?,
            mode: c.u32()?,
            gid: c.u32()?,
        },
        73 => Body::Rmkdir { qid: c.qid()? },
        74 => Body::Trenameat {
            olddirfid: c.u32()?,
            oldname: c.str()?,
            newdirfid: c.u32()?,
            newname: c.str()?,
        },
        75 => Body::Rrenameat,
        76 => Body::Tunlinkat {
            dirfid: c.u32()?,
            name: c.str()?,
            flags: c.u32()?,
        },
        77 => Body::Runlinkat,
        other => return Err(DecodeError::UnknownType(other)),
    })
}

/// Decode one stat record (with its leading size[2]) from the start of `buf`,
/// as found in a 9P2000 directory read; returns it and the bytes it used.
pub fn decode_stat(buf: &[u8]) -> Result<(Stat<'_>, usize), DecodeError> {
    let mut c = Cur(buf);
    let stat = c.stat()?;
    Ok((stat, buf.len() - c.0.len()))
}

/// Decode one 9P2000.L directory entry from the start of `buf`; returns it
/// and the bytes it used.
pub fn decode_dirent(buf: &[u8]) -> Result<(Dirent<'_>, usize), DecodeError> {
    let mut c = Cur(buf);
    let d = Dirent {
        qid: c.qid()?,
        offset: c.u64()?,
        ty: c.u8()?,
        name: c.str()?,
    };
    Ok((d, buf.len() - c.0.len()))
}
