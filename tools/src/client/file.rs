//! Reads and writes (the same messages in both dialects), cut to the
//! iounit.

use ninep::Body;

use super::reply::unexpected;
use super::{Client, ClientError, Reply, Result};

impl Client {
    /// Clamp a per-file iounit to what the msize allows (0 means "ask the
    /// msize", as open(5) says).
    pub fn effective_iounit(&self, iounit: u32) -> u32 {
        match iounit {
            0 => self.iounit(),
            n => n.min(self.iounit()),
        }
    }

    /// Read up to `count` bytes at `offset`; the answer keeps the frame, so
    /// [`Reply::read_data`] borrows the bytes without copying.
    pub fn read_reply(&self, fid: u32, offset: u64, count: u32) -> Result<Reply> {
        let body = Body::Tread {
            fid,
            offset,
            count: count.min(self.iounit()),
        };
        let reply = self.call(&body)?;
        if ask_again(offset, &reply) {
            return self.call(&body);
        }
        Ok(reply)
    }

    /// Read up to `count` bytes at `offset`.
    pub fn read(&self, fid: u32, offset: u64, count: u32) -> Result<Vec<u8>> {
        Ok(self.read_reply(fid, offset, count)?.read_data()?.to_vec())
    }

    /// Read from offset 0 until a read returns nothing (end of file). On a
    /// stream this blocks for as long as the stream does.
    pub fn read_all(&self, fid: u32, iounit: u32) -> Result<Vec<u8>> {
        let count = self.effective_iounit(iounit);
        let mut out = Vec::new();
        loop {
            let reply = self.read_reply(fid, out.len() as u64, count)?;
            let data = reply.read_data()?;
            if data.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(data);
        }
    }

    /// Write `data` at `offset` in one message; returns the count the node
    /// took. `data` must fit in the iounit.
    pub fn write(&self, fid: u32, offset: u64, data: &[u8]) -> Result<u32> {
        if data.len() > self.iounit() as usize {
            return Err(ClientError::Protocol(format!(
                "a write of {} bytes does not fit in one message (iounit {})",
                data.len(),
                self.iounit()
            )));
        }
        match self.call(&Body::Twrite { fid, offset, data })?.body()? {
            Body::Rwrite { count } if count as usize <= data.len() => Ok(count),
            Body::Rwrite { count } => Err(ClientError::Protocol(format!(
                "the node took {count} bytes of a {}-byte write",
                data.len()
            ))),
            other => Err(unexpected("write", &other)),
        }
    }

    /// Write all of `data` from `offset`: one Twrite when it fits in the
    /// iounit, else successive ones (resending what a short write left).
    /// Empty data is sent as one empty write (an empty message, on a
    /// channel).
    pub fn write_all(&self, fid: u32, offset: u64, data: &[u8], iounit: u32) -> Result<u64> {
        let unit = self.effective_iounit(iounit) as usize;
        if data.is_empty() {
            return self.write(fid, offset, data).map(u64::from);
        }
        let mut done = 0usize;
        while done < data.len() {
            let end = data.len().min(done + unit);
            let n = self.write(fid, offset + done as u64, &data[done..end])?;
            if n == 0 {
                return Err(ClientError::Protocol(format!(
                    "the node took none of a {}-byte write",
                    end - done
                )));
            }
            done += n as usize;
        }
        Ok(done as u64)
    }
}

/// Whether a read at `offset` answered by `reply` should be sent once
/// more: a Cell0 stream ends each batch it hands over with one empty read
/// (cellfs(4) STREAMS), so past the start an empty answer is asked for
/// again, which waits for the next message; at a true end of file it is
/// empty again.
pub fn ask_again(offset: u64, reply: &Reply) -> bool {
    offset > 0 && reply.read_data().is_ok_and(<[u8]>::is_empty)
}
