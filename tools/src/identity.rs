//! A hosted node's identity and its owner's capability, kept in the data
//! directory. See cap(3).
//!
//! - `DATA/node.key`: the node's ed25519 secret seed, 64 hex digits and a
//!   newline, created at first start with mode 0600 (never readable by
//!   anyone else, not even for an instant). A node refuses to start if the
//!   file is readable or writable by group or others.
//! - `DATA/owner.token`: a token minted by that key granting everything
//!   (`/`, rights `rwcda`) for ten years, rewritten at each start, mode
//!   0600. Clients on the same machine use it unless given `--token`.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cellfs::cap::{Claims, NodeKey, Rights, Token};

/// The node key's file name in the data directory.
pub const KEY_FILE: &str = "node.key";
/// The owner token's file name in the data directory.
pub const OWNER_TOKEN_FILE: &str = "owner.token";
/// How long an owner token is valid: ten years.
pub const OWNER_TTL: u64 = 10 * 365 * 24 * 3600;

/// `DATA/owner.token`.
pub fn owner_token_path(data: &Path) -> PathBuf {
    data.join(OWNER_TOKEN_FILE)
}

/// The node's key from `DATA/node.key`, made at first start. Refuses a key
/// file that others may read or write, or that is not 64 hex digits.
pub fn load_or_create_key(data: &Path) -> anyhow::Result<NodeKey> {
    let path = data.join(KEY_FILE);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => read_key(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(&path),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn read_key(path: &Path) -> anyhow::Result<NodeKey> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{} is open to others (mode {mode:03o}): the node's secret key must be readable by its owner only; chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let seed = parse_hex32(text.trim()).with_context(|| {
        format!(
            "{} is damaged: expected 64 hex digits (the node's secret key)",
            path.display()
        )
    })?;
    Ok(NodeKey::from_seed(&seed))
}

/// `N` random bytes from the kernel; `what` says what they are for.
pub fn random<const N: usize>(what: &str) -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .with_context(|| format!("reading /dev/urandom for {what}"))?;
    Ok(bytes)
}

fn create_key(path: &Path) -> anyhow::Result<NodeKey> {
    let seed: [u8; 32] = random("the node key")?;
    // A crash never leaves a half-written key behind.
    write_secret(path, cellfs::cap::hex(&seed).as_bytes())?;
    Ok(NodeKey::from_seed(&seed))
}

/// Mint the owner's token (id 0, holder `owner`, scope `/`, every right,
/// ten years from `now`) and write it to `DATA/owner.token`, mode 0600.
pub fn write_owner_token(data: &Path, key: &NodeKey, now: u64) -> anyhow::Result<PathBuf> {
    let token = key
        .mint(Claims {
            id: 0,
            holder: "owner".into(),
            scope: "/".into(),
            rights: Rights::ALL,
            not_before: 0,
            expires: now + OWNER_TTL,
        })
        .map_err(|e| anyhow::anyhow!("minting the owner token: {e}"))?;
    let path = owner_token_path(data);
    write_secret(&path, token.to_text().as_bytes())?;
    Ok(path)
}

/// Write `bytes` and a newline to `path` (replacing it) with mode 0600
/// from the start: a temporary file created exclusively, then renamed.
pub fn write_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let written = f
        .write_all(bytes)
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written {
        // Nothing half-written is left behind (a full disk, say).
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Read a token from `path`, or from standard input when `path` is `-`.
pub fn read_token(path: &Path) -> anyhow::Result<Token> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading a token from standard input")?;
        s
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading token file {}", path.display()))?
    };
    let shown = if path == Path::new("-") {
        "standard input".to_string()
    } else {
        path.display().to_string()
    };
    Token::from_text(text.trim()).map_err(|e| anyhow::anyhow!("{shown}: not a Cell0 token: {e}"))
}

/// Which token a client uses: `--token FILE` if given (it must be
/// readable), else the owner token in the data directory if there is one.
/// The flag says whether the token was asked for explicitly.
#[derive(Clone, Debug, Default)]
pub struct ClientToken {
    /// The token's text form (`c0.…`), if any.
    pub text: Option<String>,
    /// Given with `--token` (a refusal of Tauth is then an error).
    pub explicit: bool,
}

impl ClientToken {
    /// Resolve `--token FILE` / `--data DIR`.
    pub fn resolve(token: Option<&Path>, data: Option<&Path>) -> anyhow::Result<ClientToken> {
        if let Some(path) = token {
            let t = read_token(path)?;
            return Ok(ClientToken {
                text: Some(t.to_text()),
                explicit: true,
            });
        }
        let data = data
            .map(Path::to_path_buf)
            .unwrap_or_else(crate::config::default_data_dir);
        let path = owner_token_path(&data);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let t = Token::from_text(text.trim())
                    .map_err(|e| anyhow::anyhow!("{}: not a Cell0 token: {e}", path.display()))?;
                Ok(ClientToken {
                    text: Some(t.to_text()),
                    explicit: false,
                })
            }
            Err(_) => Ok(ClientToken::default()),
        }
    }
}

/// 32 bytes from 64 hex digits.
pub fn parse_hex32(text: &str) -> anyhow::Result<[u8; 32]> {
    anyhow::ensure!(
        text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()),
        "not 64 hex digits"
    );
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = load_or_create_key(dir.path()).unwrap();
        let meta = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let k2 = load_or_create_key(dir.path()).unwrap();
        assert_eq!(k1.public(), k2.public());
    }

    #[test]
    fn key_open_to_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create_key(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_key(dir.path()).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn damaged_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_secret(&dir.path().join(KEY_FILE), b"nothex").unwrap();
        let err = format!("{:#}", load_or_create_key(dir.path()).unwrap_err());
        assert!(err.contains("damaged"), "{err}");
    }

    #[test]
    fn owner_token_verifies_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let key = load_or_create_key(dir.path()).unwrap();
        let path = write_owner_token(dir.path(), &key, now()).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let t = read_token(&path).unwrap();
        let g = t.verify(|k| *k == key.public()).unwrap();
        assert_eq!(g.scope, "/");
        assert_eq!(g.rights, Rights::ALL);
        g.check(now(), |_| false).unwrap();
    }
}
