//! Reading a pipelined protocol off a socket: one buffer per connection,
//! filled by as many bytes as the kernel has, from which whole replies are
//! taken in place, so a burst of replies costs one `read` and no
//! allocation.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;

/// Bytes one connection's buffer holds; far more than a burst of 64-byte
/// messages, so the buffer is rarely compacted.
const CAPACITY: usize = 256 * 1024;

/// What [`InBuf::fill`] found.
pub enum Fill {
    /// More bytes are in the buffer.
    Some,
    /// None came within the socket's read timeout.
    TimedOut,
}

/// Bytes read from a socket and not taken yet.
pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    /// An empty buffer.
    pub fn new() -> InBuf {
        InBuf {
            buf: vec![0; CAPACITY],
            start: 0,
            end: 0,
        }
    }

    /// The bytes not taken yet.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Take `n` bytes from the front; returns where they were, so the
    /// caller can look at them until the next [`InBuf::fill`].
    pub fn take(&mut self, n: usize) -> std::ops::Range<usize> {
        let r = self.start..self.start + n;
        self.start += n;
        r
    }

    /// Bytes at `r`, as handed out by [`InBuf::take`].
    pub fn at(&self, r: std::ops::Range<usize>) -> &[u8] {
        &self.buf[r]
    }

    /// Read what `stream` has. A closed connection is an error: nothing in
    /// the benchmark closes one while it is read.
    pub fn fill(&mut self, stream: &mut TcpStream) -> anyhow::Result<Fill> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            anyhow::ensure!(
                self.start > 0,
                "a reply longer than {CAPACITY} bytes: not one the benchmark asked for"
            );
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        match stream.read(&mut self.buf[self.end..]) {
            Ok(0) => anyhow::bail!("the server closed the connection"),
            Ok(n) => {
                self.end += n;
                Ok(Fill::Some)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Ok(Fill::TimedOut)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(Fill::Some),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn bytes_come_out_in_order_across_compactions() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut w = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut r, _) = l.accept().unwrap();
        let mut b = InBuf::new();
        let mut next = 0u8;
        // Enough to fill the buffer several times over, taken 7 at a time
        // so a partial record is left at each compaction.
        let writer = std::thread::spawn(move || {
            let all: Vec<u8> = (0..3 * CAPACITY).map(|i| i as u8).collect();
            w.write_all(&all).unwrap();
        });
        let mut seen = 0;
        while seen < 3 * CAPACITY - 7 {
            while b.data().len() < 7 {
                b.fill(&mut r).unwrap();
            }
            let at = b.take(7);
            for &x in b.at(at) {
                assert_eq!(x, next);
                next = next.wrapping_add(1);
            }
            seen += 7;
        }
        writer.join().unwrap();
    }
}
