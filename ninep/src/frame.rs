//! Framing: find where one message ends in a byte stream.

use crate::error::DecodeError;

/// The smallest legal message: size[4] type[1] tag[2].
pub const MIN_FRAME: usize = 7;

/// If `buf` starts with a complete frame, its length. `Ok(None)` means more
/// bytes are needed. A size field below [`MIN_FRAME`] or above `max` is an
/// error as soon as the four size bytes are in, so a peer that announces a
/// 4 GiB message is refused before anything is buffered.
pub fn frame_len(buf: &[u8], max: u32) -> Result<Option<usize>, DecodeError> {
    let Some(size) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let size = u32::from_le_bytes(*size);
    if (size as usize) < MIN_FRAME {
        return Err(DecodeError::BadSize {
            declared: size,
            actual: buf.len(),
        });
    }
    if size > max {
        return Err(DecodeError::TooLarge { size, max });
    }
    Ok((buf.len() >= size as usize).then_some(size as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_found_and_bad_sizes_refused_early() {
        assert_eq!(frame_len(&[], 100), Ok(None));
        assert_eq!(frame_len(&[7, 0, 0], 100), Ok(None));
        assert_eq!(frame_len(&[8, 0, 0, 0, 1, 2, 3], 100), Ok(None));
        assert_eq!(frame_len(&[7, 0, 0, 0, 1, 2, 3, 9], 100), Ok(Some(7)));
        assert!(matches!(
            frame_len(&[3, 0, 0, 0], 100),
            Err(DecodeError::BadSize { .. })
        ));
        assert_eq!(
            frame_len(&[0xff; 4], 8192),
            Err(DecodeError::TooLarge {
                size: u32::MAX,
                max: 8192
            })
        );
    }
}
