//! The 9P wire format, for 9P2000 and 9P2000.L.
//!
//! This crate knows how bytes on the wire map to messages and back; it does
//! no I/O and keeps no state beyond the [`Dialect`] a caller passes in.
//! Decoding borrows from the input frame ([`Msg`] holds `&str` and `&[u8]`
//! slices into it), so a server can parse a request without allocating.
//!
//! - [`frame`] splits a byte stream into size-prefixed frames and refuses
//!   oversized ones before reading them.
//! - [`decode()`] turns one frame into a [`Msg`]; malformed, truncated or
//!   trailing input is an error, never a panic.
//! - [`encode()`] appends one framed message to a buffer.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod decode;
pub mod encode;
pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzzcheck;
pub mod mode;
pub mod msg;
pub mod qid;
pub mod stat;

pub use decode::decode;
pub use encode::encode;
pub use error::{DecodeError, EncodeError};
pub use msg::{Body, Dialect, Msg, MsgType, Names, Qids};
pub use qid::{Qid, QidType};
pub use stat::{Attr, Dirent, Stat, StatExt, StatFs};

/// The tag of messages that are not part of a transaction (Tversion).
pub const NOTAG: u16 = 0xFFFF;
/// The fid value meaning "no fid" (the afid of an unauthenticated attach).
pub const NOFID: u32 = 0xFFFF_FFFF;
/// The most names a Twalk may carry and the most qids an Rwalk may return.
pub const MAXWELEM: usize = 16;
/// Bytes before the payload of Rread / Twrite: size[4] type[1] tag[2] count[4]
/// (plus fid[4] offset[8] for Twrite). Servers subtract this from msize to
/// get the iounit.
pub const IOHDRSZ: u32 = 24;
