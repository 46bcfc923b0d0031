//! The FUSE file system: each FUSE request becomes 9P2000.L requests.
//!
//! Inode numbers are qid paths plus one (the root's qid path is 0, FUSE's
//! root inode is 1), so the same file always has the same inode. Each inode
//! the kernel knows holds one walked fid; opens clone it. Every file is
//! opened with direct I/O and every attribute has a zero TTL: the files are
//! synthetic and change under the reader, so the page cache must never
//! answer for the node.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use ninep::Attr;

use super::interrupt::signal_pending;
use crate::client::{Client, ClientError, ROOT};

const TTL: Duration = Duration::ZERO;
/// How often a blocked read checks whether its reader was interrupted.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);
const AT_REMOVEDIR: u32 = 0x200;

struct Inode {
    fid: u32,
    nlookup: u64,
}

/// The mounted tree.
pub struct CellFs {
    client: Arc<Client>,
    inodes: Mutex<HashMap<u64, Inode>>,
}

fn errno(e: &ClientError) -> Errno {
    Errno::from_i32(e.errno())
}

fn ino_of(qid_path: u64) -> u64 {
    qid_path.wrapping_add(1)
}

fn time(sec: u64, nsec: u64) -> SystemTime {
    UNIX_EPOCH + Duration::new(sec, nsec.min(999_999_999) as u32)
}

fn file_attr(a: &Attr) -> FileAttr {
    let kind = if a.mode & 0o170000 == 0o040000 {
        FileType::Directory
    } else {
        FileType::RegularFile
    };
    FileAttr {
        ino: INodeNo(ino_of(a.qid.path)),
        size: a.size,
        blocks: a.blocks,
        atime: time(a.atime_sec, a.atime_nsec),
        mtime: time(a.mtime_sec, a.mtime_nsec),
        ctime: time(a.ctime_sec, a.ctime_nsec),
        crtime: time(a.mtime_sec, a.mtime_nsec),
        kind,
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink as u32,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl CellFs {
    /// A file system over a client attached to the node's root.
    pub fn new(client: Arc<Client>) -> CellFs {
        let mut inodes = HashMap::new();
        inodes.insert(
            1,
            Inode {
                fid: ROOT,
                nlookup: 1,
            },
        );
        CellFs {
            client,
            inodes: Mutex::new(inodes),
        }
    }

    fn fid(&self, ino: INodeNo) -> Result<u32, Errno> {
        let table = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        table.get(&ino.0).map(|i| i.fid).ok_or(Errno::ESTALE)
    }

    /// Walk `name` from `parent` and remember the inode (one more lookup).
    fn lookup_attr(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let name = name.to_str().ok_or(Errno::ENOENT)?;
        let dir = self.fid(parent)?;
        let fid = self.client.walk(dir, &[name]).map_err(|e| errno(&e))?;
        let attr = match self.client.getattr(fid) {
            Ok(a) => a,
            Err(e) => {
                let _ = self.client.clunk(fid);
                return Err(errno(&e));
            }
        };
        let ino = ino_of(attr.qid.path);
        let spare = {
            let mut table = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
            match table.get_mut(&ino) {
                Some(i) => {
                    i.nlookup += 1;
                    Some(fid)
                }
                None => {
                    table.insert(ino, Inode { fid, nlookup: 1 });
                    None
                }
            }
        };
        if let Some(fid) = spare {
            let _ = self.client.clunk(fid);
        }
        Ok(file_attr(&attr))
    }

    /// A fresh fid on `ino`, opened with `flags`.
    fn open_fid(&self, ino: INodeNo, flags: u32) -> Result<u32, Errno> {
        let fid = self
            .client
            .walk(self.fid(ino)?, &[])
            .map_err(|e| errno(&e))?;
        match self.client.open(fid, flags & libc::O_ACCMODE as u32) {
            Ok(_) => Ok(fid),
            Err(e) => {
                let _ = self.client.clunk(fid);
                Err(errno(&e))
            }
        }
    }
}

impl Filesystem for CellFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lookup_attr(parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if ino.0 == 1 {
            return;
        }
        let gone = {
            let mut table = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
            match table.get_mut(&ino.0) {
                Some(i) if i.nlookup <= nlookup => table.remove(&ino.0).map(|i| i.fid),
                Some(i) => {
                    i.nlookup -= nlookup;
                    None
                }
                None => None,
            }
        };
        if let Some(fid) = gone {
            let _ = self.client.clunk(fid);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let r = self
            .fid(ino)
            .and_then(|fid| self.client.getattr(fid).map_err(|e| errno(&e)));
        match r {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if mode.is_some() || uid.is_some() || gid.is_some() {
            return reply.error(Errno::EPERM);
        }
        let r = self.fid(ino).and_then(|fid| {
            if let Some(size) = size {
                self.client.truncate(fid, size).map_err(|e| errno(&e))?;
            }
            self.client.getattr(fid).map_err(|e| errno(&e))
        });
        match r {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let Some(n) = name.to_str() else {
            return reply.error(Errno::EINVAL);
        };
        let r = self
            .fid(parent)
            .and_then(|dir| {
                self.client
                    .mkdir(dir, n, mode & 0o7777, 0)
                    .map_err(|e| errno(&e))
            })
            .and_then(|_| self.lookup_attr(parent, name));
        match r {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, 0, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, AT_REMOVEDIR, reply);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let Some(n) = name.to_str() else {
            return reply.error(Errno::EINVAL);
        };
        let r = (|| {
            let fid = self
                .client
                .walk(self.fid(parent)?, &[])
                .map_err(|e| errno(&e))?;
            if let Err(e) = self.client.lcreate(fid, n, flags as u32, mode & 0o7777, 0) {
                let _ = self.client.clunk(fid);
                return Err(errno(&e));
            }
            let attr = self.lookup_attr(parent, name)?;
            Ok((fid, attr))
        })();
        match r {
            Ok((fid, attr)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(u64::from(fid)),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.open_fid(ino, flags.0 as u32) {
            Ok(fid) => reply.opened(FileHandle(u64::from(fid)), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // A read may block until the node has something (a channel, the
        // event stream), so it waits on its own thread, not a FUSE worker.
        let client = self.client.clone();
        let tid = req.pid();
        std::thread::spawn(move || {
            let body = ninep::Body::Tread {
                fid: fh.0 as u32,
                offset,
                count: size.min(client.iounit()),
            };
            let pending = match client.start(&body) {
                Ok(p) => p,
                Err(e) => return reply.error(errno(&e)),
            };
            let result = loop {
                if let Some(r) = pending.wait_timeout(INTERRUPT_POLL) {
                    break r;
                }
                if signal_pending(tid) {
                    break pending.flush();
                }
            };
            match result.and_then(|frame| crate::client::read_data(&frame, client.dialect)) {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.client.write(fh.0 as u32, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => {
                eprintln!("cell0 mount: write failed: {e}; the node's message is on /events");
                reply.error(errno(&e))
            }
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _ = self.client.clunk(fh.0 as u32);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Every write the node acknowledged is already durable.
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.open_fid(ino, libc::O_RDONLY as u32) {
            Ok(fid) => reply.opened(FileHandle(u64::from(fid)), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.client.readdir(fh.0 as u32, offset, 64 * 1024) {
            Ok(e) => e,
            Err(e) => return reply.error(errno(&e)),
        };
        for d in entries {
            let kind = if d.ty == 4 {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            if reply.add(INodeNo(ino_of(d.qid.path)), d.offset, kind, &d.name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _ = self.client.clunk(fh.0 as u32);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.client.statfs(ROOT) {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }
}

impl CellFs {
    fn remove(&self, parent: INodeNo, name: &OsStr, flags: u32, reply: ReplyEmpty) {
        let Some(n) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        let r = self
            .fid(parent)
            .and_then(|dir| self.client.unlinkat(dir, n, flags).map_err(|e| errno(&e)));
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
