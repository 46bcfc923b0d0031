//! Answers as they come off the wire: owned frames, decoded on demand.

use ninep::{Body, Dialect, MsgType};

use super::error::{ClientError, Result};

/// One successful answer: the whole frame, decoded when the caller looks.
///
/// Keeping the frame rather than a decoded body lets the FUSE read path
/// hand the Rread payload to the kernel straight from the receive buffer.
#[derive(Debug)]
pub struct Reply {
    frame: Vec<u8>,
    dialect: Dialect,
}

impl Reply {
    /// The decoded message body.
    pub fn body(&self) -> Result<Body<'_>> {
        ninep::decode(&self.frame, self.dialect)
            .map(|m| m.body)
            .map_err(|e| ClientError::Protocol(format!("undecodable reply: {e}")))
    }

    /// The payload of an Rread, borrowed from the frame.
    pub fn read_data(&self) -> Result<&[u8]> {
        match self.body()? {
            Body::Rread { data } => Ok(data),
            other => Err(unexpected("read", &other)),
        }
    }

    /// The count of an Rwrite.
    pub fn write_count(&self) -> Result<u32> {
        match self.body()? {
            Body::Rwrite { count } => Ok(count),
            other => Err(unexpected("write", &other)),
        }
    }

    /// The raw frame, size field first.
    pub fn frame(&self) -> &[u8] {
        &self.frame
    }
}

/// The error for an answer of the wrong kind.
pub(crate) fn unexpected(what: &str, body: &Body<'_>) -> ClientError {
    ClientError::Protocol(format!("{what}: unexpected {:?}", body.msg_type()))
}

/// Sort an incoming frame for a request that expects message type
/// `expect`: Rerror and Rlerror become errors carrying the node's text or
/// errno, a frame of another type is a protocol error.
pub(crate) fn classify(frame: Vec<u8>, expect: u8, dialect: Dialect) -> Result<Reply> {
    let ty = frame.get(4).copied().unwrap_or(0);
    if ty == MsgType::Rerror as u8 || ty == MsgType::Rlerror as u8 {
        return match ninep::decode(&frame, dialect).map(|m| m.body) {
            Ok(Body::Rerror {
                ename,
                errno: Some(errno),
            }) => Err(ClientError::Refused {
                text: ename.to_string(),
                errno,
            }),
            Ok(Body::Rerror { ename, .. }) => Err(ClientError::Server(ename.to_string())),
            Ok(Body::Rlerror { ecode }) => Err(ClientError::Errno(ecode)),
            Ok(other) => Err(unexpected("error", &other)),
            Err(e) => Err(ClientError::Protocol(format!(
                "undecodable error reply: {e}"
            ))),
        };
    }
    if ty != expect {
        return Err(ClientError::Protocol(format!(
            "answer of type {ty} to a request expecting type {expect}"
        )));
    }
    Ok(Reply { frame, dialect })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ninep::Msg;

    fn frame(body: Body<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        ninep::encode(&Msg { tag: 3, body }, &mut out).unwrap();
        out
    }

    #[test]
    fn rerror_keeps_the_text_and_rlerror_the_errno() {
        let f = frame(Body::Rerror {
            ename: "chan x: full",
            errno: None,
        });
        assert_eq!(
            classify(f, MsgType::Rwrite as u8, Dialect::P2000).unwrap_err(),
            ClientError::Server("chan x: full".into())
        );
        let f = frame(Body::Rlerror { ecode: 11 });
        assert_eq!(
            classify(f, MsgType::Rwrite as u8, Dialect::L).unwrap_err(),
            ClientError::Errno(11)
        );
    }

    #[test]
    fn an_answer_of_the_wrong_type_is_a_protocol_error() {
        let f = frame(Body::Rclunk);
        let e = classify(f, MsgType::Rread as u8, Dialect::L).unwrap_err();
        assert!(matches!(e, ClientError::Protocol(_)), "{e:?}");
    }

    #[test]
    fn rread_data_is_borrowed_from_the_frame() {
        let f = frame(Body::Rread { data: b"hello" });
        let r = classify(f, MsgType::Rread as u8, Dialect::L).unwrap();
        assert_eq!(r.read_data().unwrap(), b"hello");
        let start = r.frame().len() - 5;
        assert!(std::ptr::eq(r.read_data().unwrap(), &r.frame()[start..]));
    }
}
