//! Boot-proof facts gathered before the heap exists: a small fixed
//! buffer that `write!` fills, and the hashes the markers carry.

use core::fmt;

use sha2::{Digest, Sha256};

/// One stage's `key=value` words, held until the ledger (which needs the
/// heap) records them.
pub struct Facts {
    buf: [u8; 256],
    len: usize,
}

impl Facts {
    /// No facts yet.
    pub const fn new() -> Facts {
        Facts {
            buf: [0; 256],
            len: 0,
        }
    }

    /// The words written so far.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for Facts {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hex of the first `n` bytes of `hash`, written to `f`.
pub fn write_hex(f: &mut impl fmt::Write, hash: &[u8], n: usize) -> fmt::Result {
    for b in &hash[..n.min(hash.len())] {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

unsafe extern "C" {
    /// The start of .text and the end of .rodata (kernel.ld).
    static __image_start: u8;
    static __image_end: u8;
}

/// The kernel's code and read-only data: what nothing writes, so its hash
/// names the image.
pub fn image() -> &'static [u8] {
    let start = core::ptr::addr_of!(__image_start);
    let end = core::ptr::addr_of!(__image_end) as usize;
    // SAFETY: the linker script puts both symbols around .text and
    // .rodata, which are mapped and never written.
    unsafe { core::slice::from_raw_parts(start, end - start as usize) }
}
