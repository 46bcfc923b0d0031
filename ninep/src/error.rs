//! Why a frame could not be decoded or a message encoded.

use core::fmt;

/// A frame that is not a well-formed 9P message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame ended before the message did.
    Truncated,
    /// The size field disagrees with the bytes given, or is below the minimum.
    BadSize { declared: u32, actual: usize },
    /// The size field exceeds the negotiated maximum.
    TooLarge { size: u32, max: u32 },
    /// The type byte names no message of the dialect in use.
    UnknownType(u8),
    /// An R-message arrived where a T-message was expected, or the reverse.
    WrongDirection(u8),
    /// Bytes remained after the last field of the message.
    TrailingBytes(usize),
    /// A string field is not valid UTF-8.
    BadUtf8,
    /// A Twalk names more than 16 elements (or an Rwalk returns more qids).
    TooManyNames(u16),
    /// A count field disagrees with the data that follows it.
    BadCount,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("message truncated"),
            DecodeError::BadSize { declared, actual } => {
                write!(f, "size field says {declared} bytes but frame has {actual}")
            }
            DecodeError::TooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds msize {max}")
            }
            DecodeError::UnknownType(t) => write!(f, "unknown message type {t}"),
            DecodeError::WrongDirection(t) => write!(f, "message type {t} not expected here"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} bytes after end of message"),
            DecodeError::BadUtf8 => f.write_str("string is not valid UTF-8"),
            DecodeError::TooManyNames(n) => write!(f, "walk of {n} names; at most 16 allowed"),
            DecodeError::BadCount => f.write_str("count field disagrees with data"),
        }
    }
}

/// A message that cannot be put on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A string is longer than 65535 bytes.
    StringTooLong(usize),
    /// The message would exceed 4 GiB, or the caller's limit.
    TooLarge(usize),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::StringTooLong(n) => write!(f, "string of {n} bytes exceeds 65535"),
            EncodeError::TooLarge(n) => write!(f, "message of {n} bytes too large"),
        }
    }
}

impl core::error::Error for DecodeError {}
impl core::error::Error for EncodeError {}
