//! The property the fuzz target checks, shared with a stable test so CI
//! exercises it without nightly: decoding any bytes never panics, and
//! whatever decodes re-encodes to a frame that decodes to the same message
//! (byte for byte, except Tfsync's optional datasync field).

use alloc::vec::Vec;

use crate::msg::Dialect;

/// Check one input in every dialect; panics if the property fails.
pub fn check(data: &[u8]) {
    let _ = crate::frame::frame_len(data, 1 << 20);
    for dialect in [Dialect::P2000, Dialect::L, Dialect::U] {
        if let Ok(msg) = crate::decode(data, dialect) {
            let mut again = Vec::new();
            crate::encode(&msg, &mut again).expect("a decoded message encodes");
            let back = crate::decode(&again, dialect).expect("a re-encoded message decodes");
            assert_eq!(back, msg);
            if !matches!(msg.body, crate::Body::Tfsync { .. }) {
                assert_eq!(again, data, "round trip changed the bytes of {msg:?}");
            }
        }
    }
    let _ = crate::decode::decode_stat(data);
    let _ = crate::decode::decode_dirent(data);
}
