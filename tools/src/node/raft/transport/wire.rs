//! What goes on the wire between two nodes: the length-prefixed frame and
//! the signed handshake that opens each connection.

use std::io::Read;

use cellfs::cap::token::verify_signature;
use cellfs::cap::{NodeKey, PublicKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{DOMAIN, Directory, HELLO_LEN, MAGIC, MAX_FRAME};

pub(super) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    frame: &[u8],
) -> std::io::Result<()> {
    w.write_all(&(frame.len() as u32).to_le_bytes()).await?;
    w.write_all(frame).await
}

/// Read one frame; an error on EOF, I/O failure or an oversized length.
pub(super) async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "closed".to_string()
        } else {
            format!("read: {e}")
        }
    })?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(format!(
            "a frame of {len} bytes exceeds the limit of {MAX_FRAME}"
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok(buf)
}

/// Which end of the connection a handshake runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Dialer,
    Listener,
}

pub(super) fn fresh_nonce() -> Result<[u8; 32], String> {
    let mut n = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut n))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(n)
}

/// What each side signs: the whole exchange, in dialer-then-listener
/// order, preceded by the signer's role.
pub(super) fn transcript(
    signer: Role,
    dialer: (u64, &PublicKey, &[u8; 32]),
    listener: (u64, &PublicKey, &[u8; 32]),
) -> Vec<u8> {
    let mut t = Vec::with_capacity(DOMAIN.len() + 1 + 2 * 72);
    t.extend_from_slice(DOMAIN);
    t.push(match signer {
        Role::Dialer => b'D',
        Role::Listener => b'L',
    });
    for (id, key, nonce) in [dialer, listener] {
        t.extend_from_slice(&id.to_le_bytes());
        t.extend_from_slice(key);
        t.extend_from_slice(nonce);
    }
    t
}

/// Run the handshake on `s` as node `me`; on success, the peer's proven
/// id. `expect` is the id a dialer meant to reach.
pub(super) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    me: u64,
    key: &NodeKey,
    dir: &Directory,
    s: &mut S,
    role: Role,
    expect: Option<u64>,
) -> Result<u64, String> {
    let my_key = key.public();
    let my_nonce = fresh_nonce()?;
    let mut hello = Vec::with_capacity(HELLO_LEN);
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&me.to_le_bytes());
    hello.extend_from_slice(&my_key);
    hello.extend_from_slice(&my_nonce);
    s.write_all(&hello)
        .await
        .map_err(|e| format!("sending hello: {e}"))?;
    s.flush().await.map_err(|e| format!("sending hello: {e}"))?;

    let mut theirs = [0u8; HELLO_LEN];
    s.read_exact(&mut theirs)
        .await
        .map_err(|e| format!("reading hello: {e}"))?;
    if &theirs[..12] != MAGIC {
        return Err("bad magic in hello".into());
    }
    let peer_id = u64::from_le_bytes(theirs[12..20].try_into().unwrap_or_default());
    let peer_key: PublicKey = theirs[20..52].try_into().unwrap_or_default();
    let peer_nonce: [u8; 32] = theirs[52..84].try_into().unwrap_or_default();
    if let Some(want) = expect
        && peer_id != want
    {
        return Err(format!("dialed node {want} but it says it is {peer_id}"));
    }
    if peer_id == me {
        return Err(format!("the peer claims to be this node ({me})"));
    }
    let Some(listed) = dir.get(peer_id) else {
        return Err(format!("node {peer_id} is not in the directory"));
    };
    if listed.key != peer_key {
        return Err(format!(
            "node {peer_id} presented a key other than the directory's"
        ));
    }

    let mine = (me, &my_key, &my_nonce);
    let peer = (peer_id, &peer_key, &peer_nonce);
    let (dialer, listener) = match role {
        Role::Dialer => (mine, peer),
        Role::Listener => (peer, mine),
    };
    let peer_role = match role {
        Role::Dialer => Role::Listener,
        Role::Listener => Role::Dialer,
    };
    let my_sig = key.sign(&transcript(role, dialer, listener));
    let their_transcript = transcript(peer_role, dialer, listener);

    async fn read_sig<S: AsyncRead + Unpin>(s: &mut S) -> Result<[u8; 64], String> {
        let mut sig = [0u8; 64];
        s.read_exact(&mut sig)
            .await
            .map_err(|e| format!("reading the signature (refused by the peer?): {e}"))?;
        Ok(sig)
    }
    let check = |sig: &[u8; 64]| {
        if verify_signature(&peer_key, &their_transcript, sig) {
            Ok(())
        } else {
            Err(format!("node {peer_id}'s handshake signature is bad"))
        }
    };
    match role {
        Role::Dialer => {
            s.write_all(&my_sig)
                .await
                .map_err(|e| format!("sending the signature: {e}"))?;
            s.flush()
                .await
                .map_err(|e| format!("sending the signature: {e}"))?;
            check(&read_sig(s).await?)?;
        }
        Role::Listener => {
            check(&read_sig(s).await?)?;
            s.write_all(&my_sig)
                .await
                .map_err(|e| format!("sending the signature: {e}"))?;
            s.flush()
                .await
                .map_err(|e| format!("sending the signature: {e}"))?;
        }
    }
    Ok(peer_id)
}
