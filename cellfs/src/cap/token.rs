//! Capability tokens: signed, scoped, time-bound, attenuable offline.
//!
//! A token is a chain of links. The first is signed by the issuing node's
//! key; each later one by a key named in the link before it. Every link
//! names the key that may sign the next (`next_key`), and the token carries
//! that key's secret (`proof`). So whoever holds a token can derive a
//! narrower one without asking the node ([`Token::attenuate`]): it signs a
//! new link with the proof and puts a fresh key's secret in its place. The
//! holder of the narrower token cannot strip that link to get the wider
//! token back, because it does not hold the secret the wider one needs.
//! A link may only narrow: its scope inside, its rights a subset, its
//! validity window inside the one before.
//!
//! Binary form: postcard. Text form: `c0.` followed by base64url (no
//! padding) of the binary form, safe in files, shells and 9P anames.

use alloc::string::String;
use alloc::vec::Vec;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use core::fmt;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::rights::Rights;
use super::scope::{self, ScopeError};

/// An ed25519 public key.
pub type PublicKey = [u8; 32];

/// The prefix of a token's text form.
pub const TEXT_PREFIX: &str = "c0.";
/// The longest token text accepted, in bytes.
pub const MAX_TEXT: usize = 16 * 1024;
/// The most links a token may have.
pub const MAX_LINKS: usize = 16;
/// The longest holder name.
pub const MAX_HOLDER: usize = 64;

const DOMAIN: &[u8] = b"cell0 capability link v1";

/// What one link of a token grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The capability's id (what revocation names).
    pub id: u64,
    /// Who holds it: a name, for status files and logs.
    pub holder: String,
    /// The subtree it reaches: a normalised absolute path.
    pub scope: String,
    /// What it allows there.
    pub rights: Rights,
    /// Valid from this time (Unix seconds).
    pub not_before: u64,
    /// Valid until this time (Unix seconds, exclusive).
    pub expires: u64,
}

/// One signed link of a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// What it grants.
    pub claims: Claims,
    /// The public key that may sign the next link.
    pub next_key: PublicKey,
    /// The signature, in two halves (serde has no 64-byte arrays).
    pub signature: [[u8; 32]; 2],
}

/// A capability: the issuing node, the chain of links, and the secret that
/// lets its holder attenuate it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The public key of the node that minted the first link.
    pub issuer: PublicKey,
    /// The links, widest first.
    pub links: Vec<Link>,
    /// The secret key matching the last link's `next_key`.
    pub proof: [u8; 32],
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the proof: it is what lets a holder attenuate.
        f.debug_struct("Token")
            .field("issuer", &super::hex(&self.issuer))
            .field("links", &self.links)
            .finish_non_exhaustive()
    }
}

/// What a verified token grants: its last link's claims, and the ids of
/// every link (revoking any of them revokes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The node that issued the first link.
    pub issuer: PublicKey,
    /// The ids of the chain, widest first; the last is this token's id.
    pub ids: Vec<u64>,
    /// The holder named in the last link.
    pub holder: String,
    /// The subtree it reaches.
    pub scope: String,
    /// What it allows.
    pub rights: Rights,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds, exclusive).
    pub expires: u64,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapError {
    /// The text or bytes are not a token.
    Encoding(&'static str),
    /// Link `n` (from 0) does not carry a valid signature: the token was
    /// altered or forged.
    BadSignature(usize),
    /// The first link was signed by a key this node does not trust.
    UnknownIssuer(PublicKey),
    /// The token's proof does not match its last link: a link was removed.
    BadProof,
    /// Link `n` grants more than the link before it.
    Widens {
        /// The link, from 0.
        link: usize,
        /// What it widens.
        what: &'static str,
    },
    /// A scope in the token is not a clean absolute path.
    Scope(ScopeError),
    /// A holder name is empty, too long, or has spaces or control bytes.
    BadHolder,
    /// The token expired at this time (Unix seconds).
    Expired(u64),
    /// The token is not valid before this time (Unix seconds).
    NotYetValid(u64),
    /// The capability with this id (the token's or an ancestor's) was
    /// revoked.
    Revoked(u64),
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapError::Encoding(why) => write!(f, "not a capability token: {why}"),
            CapError::BadSignature(n) => {
                write!(
                    f,
                    "capability link {n} has a bad signature: the token was altered or forged"
                )
            }
            CapError::UnknownIssuer(k) => write!(
                f,
                "capability issued by unknown key {}: this node does not trust it",
                super::hex(k)
            ),
            CapError::BadProof => {
                f.write_str("capability proof does not match its last link: a link was removed")
            }
            CapError::Widens { link, what } => write!(
                f,
                "capability link {link} widens its parent's {what}: an attenuation may only narrow"
            ),
            CapError::Scope(e) => write!(f, "capability scope: {e}"),
            CapError::BadHolder => f.write_str(
                "capability holder must be 1-64 bytes without spaces or control characters",
            ),
            CapError::Expired(t) => write!(f, "capability expired at {t} (Unix seconds)"),
            CapError::NotYetValid(t) => {
                write!(f, "capability is not valid before {t} (Unix seconds)")
            }
            CapError::Revoked(id) => write!(f, "capability {id} was revoked"),
        }
    }
}

/// Check a holder name: 1–64 bytes, no whitespace or control characters.
pub fn check_holder(name: &str) -> Result<(), CapError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_HOLDER
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(()) } else { Err(CapError::BadHolder) }
}

fn check_claims(c: &Claims) -> Result<(), CapError> {
    check_holder(&c.holder)?;
    let norm = scope::normalize(&c.scope).map_err(CapError::Scope)?;
    if norm != c.scope {
        return Err(CapError::Scope(ScopeError::BadName(c.scope.clone())));
    }
    Ok(())
}

/// The bytes link `claims`/`next_key` signs: a domain tag, what it is
/// chained to (the issuer for the first link, else the previous
/// signature), the claims and the next key.
fn signed_bytes(chained_to: &[u8], claims: &Claims, next_key: &PublicKey) -> Vec<u8> {
    let mut m = Vec::with_capacity(256);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(chained_to);
    // Encoding plain data into a Vec cannot fail.
    m.extend_from_slice(&postcard::to_allocvec(claims).unwrap_or_default());
    m.extend_from_slice(next_key);
    m
}

fn split(sig: &Signature) -> [[u8; 32]; 2] {
    let b = sig.to_bytes();
    let mut out = [[0u8; 32]; 2];
    out[0].copy_from_slice(&b[..32]);
    out[1].copy_from_slice(&b[32..]);
    out
}

fn join(halves: &[[u8; 32]; 2]) -> Signature {
    let mut b = [0u8; 64];
    b[..32].copy_from_slice(&halves[0]);
    b[32..].copy_from_slice(&halves[1]);
    Signature::from_bytes(&b)
}

/// A secret derived from `secret` for `purpose` and `data`: keys and ids
/// are derived, not drawn, so the core needs no randomness and an
/// outsider cannot predict them without the secret.
pub(crate) fn derive(secret: &[u8; 32], purpose: &[u8], data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"cell0 derive v1");
    h.update(purpose);
    h.update(secret);
    h.update(data);
    h.finalize().into()
}

/// A node's signing identity.
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", super::hex(&self.public()))
    }
}

impl NodeKey {
    /// The key whose secret seed is `seed` (32 random bytes, kept secret).
    pub fn from_seed(seed: &[u8; 32]) -> NodeKey {
        NodeKey(SigningKey::from_bytes(seed))
    }

    /// The secret seed (to store it).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        self.0.verifying_key().to_bytes()
    }

    /// Sign arbitrary bytes (messages, log heads).
    pub fn sign(&self, data: &[u8]) -> [u8; 64] {
        self.0.sign(data).to_bytes()
    }

    /// Mint a token with `claims`, signed by this node. Deterministic: the
    /// same claims give the same token (so replaying a mint command does).
    pub fn mint(&self, claims: Claims) -> Result<Token, CapError> {
        check_claims(&claims)?;
        let claim_bytes = postcard::to_allocvec(&claims).unwrap_or_default();
        let proof = derive(&self.seed(), b"mint", &claim_bytes);
        let next_key = SigningKey::from_bytes(&proof).verifying_key().to_bytes();
        let issuer = self.public();
        let sig = self.0.sign(&signed_bytes(&issuer, &claims, &next_key));
        Ok(Token {
            issuer,
            links: alloc::vec![Link {
                claims,
                next_key,
                signature: split(&sig),
            }],
            proof,
        })
    }
}

/// Verify a signature made with [`NodeKey::sign`].
pub fn verify_signature(key: &PublicKey, data: &[u8], sig: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(key)
        .is_ok_and(|k| k.verify_strict(data, &Signature::from_bytes(sig)).is_ok())
}

impl Token {
    /// The token's binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Read a token's binary form (not yet verified).
    pub fn from_bytes(bytes: &[u8]) -> Result<Token, CapError> {
        let t: Token = postcard::from_bytes(bytes)
            .map_err(|_| CapError::Encoding("its bytes do not decode"))?;
        if t.links.is_empty() || t.links.len() > MAX_LINKS {
            return Err(CapError::Encoding("it must have 1 to 16 links"));
        }
        Ok(t)
    }

    /// The token's text form: `c0.` and base64url.
    pub fn to_text(&self) -> String {
        let mut s = String::from(TEXT_PREFIX);
        URL_SAFE_NO_PAD.encode_string(self.to_bytes(), &mut s);
        s
    }

    /// Read a token's text form (surrounding whitespace is ignored).
    pub fn from_text(text: &str) -> Result<Token, CapError> {
        let text = text.trim();
        if text.len() > MAX_TEXT {
            return Err(CapError::Encoding("it is longer than 16 KiB"));
        }
        let body = text
            .strip_prefix(TEXT_PREFIX)
            .ok_or(CapError::Encoding("it does not start with 'c0.'"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CapError::Encoding("it is not base64url"))?;
        Token::from_bytes(&bytes)
    }

    /// The last link's claims (unverified).
    pub fn claims(&self) -> &Claims {
        // from_bytes and mint never make a token without links.
        &self.links[self.links.len() - 1].claims
    }

    /// Check every signature, that each link only narrows, and the proof;
    /// `trusted` says whether an issuer key is one this node accepts.
    /// Times and revocation are checked per use, by [`Grant::check`].
    pub fn verify(&self, trusted: impl Fn(&PublicKey) -> bool) -> Result<Grant, CapError> {
        if self.links.is_empty() || self.links.len() > MAX_LINKS {
            return Err(CapError::Encoding("it must have 1 to 16 links"));
        }
        if !trusted(&self.issuer) {
            return Err(CapError::UnknownIssuer(self.issuer));
        }
        let mut signer = self.issuer;
        let mut chained_to: Vec<u8> = self.issuer.to_vec();
        let mut ids = Vec::with_capacity(self.links.len());
        for (n, link) in self.links.iter().enumerate() {
            check_claims(&link.claims)?;
            if n > 0 {
                narrows(&self.links[n - 1].claims, &link.claims, n)?;
            }
            let key = VerifyingKey::from_bytes(&signer).map_err(|_| CapError::BadSignature(n))?;
            let sig = join(&link.signature);
            key.verify_strict(
                &signed_bytes(&chained_to, &link.claims, &link.next_key),
                &sig,
            )
            .map_err(|_| CapError::BadSignature(n))?;
            ids.push(link.claims.id);
            signer = link.next_key;
            chained_to = sig.to_bytes().to_vec();
        }
        if SigningKey::from_bytes(&self.proof)
            .verifying_key()
            .to_bytes()
            != signer
        {
            return Err(CapError::BadProof);
        }
        let c = self.claims();
        Ok(Grant {
            issuer: self.issuer,
            ids,
            holder: c.holder.clone(),
            scope: c.scope.clone(),
            rights: c.rights,
            not_before: c.not_before,
            expires: c.expires,
        })
    }

    /// A narrower token, derived offline: `holder`, a scope inside this
    /// one's, rights a subset, a window inside this one's. Its id is
    /// derived from the proof and the new claims.
    pub fn attenuate(
        &self,
        holder: &str,
        scope_path: &str,
        rights: Rights,
        not_before: u64,
        expires: u64,
    ) -> Result<Token, CapError> {
        if self.links.len() >= MAX_LINKS {
            return Err(CapError::Encoding("it already has 16 links"));
        }
        let scope = scope::normalize(scope_path).map_err(CapError::Scope)?;
        let mut claims = Claims {
            id: 0,
            holder: String::from(holder),
            scope,
            rights,
            not_before,
            expires,
        };
        check_claims(&claims)?;
        let n = self.links.len();
        narrows(self.claims(), &claims, n)?;
        let seed = postcard::to_allocvec(&claims).unwrap_or_default();
        let id_bytes = derive(&self.proof, b"id", &seed);
        claims.id = u64::from_le_bytes(id_bytes[..8].try_into().unwrap_or([0; 8])) | (1 << 63);
        let next = derive(&self.proof, b"next", &seed);
        let next_key = SigningKey::from_bytes(&next).verifying_key().to_bytes();
        let signer = SigningKey::from_bytes(&self.proof);
        let last = &self.links[n - 1];
        let sig = signer.sign(&signed_bytes(
            &join(&last.signature).to_bytes(),
            &claims,
            &next_key,
        ));
        let mut links = self.links.clone();
        links.push(Link {
            claims,
            next_key,
            signature: split(&sig),
        });
        Ok(Token {
            issuer: self.issuer,
            links,
            proof: next,
        })
    }
}

/// Check that `child` (link `n`) only narrows `parent`.
fn narrows(parent: &Claims, child: &Claims, n: usize) -> Result<(), CapError> {
    let widen = |what| Err(CapError::Widens { link: n, what });
    if !scope::contains(&parent.scope, &child.scope) {
        return widen("scope");
    }
    if !child.rights.within(parent.rights) {
        return widen("rights");
    }
    if child.expires > parent.expires {
        return widen("expiry");
    }
    if child.not_before < parent.not_before {
        return widen("start time");
    }
    Ok(())
}

impl Grant {
    /// Whether the grant is usable at `now` (Unix seconds) given the
    /// revoked ids: cheap, done on every operation.
    pub fn check(&self, now: u64, revoked: impl Fn(u64) -> bool) -> Result<(), CapError> {
        if let Some(id) = self.ids.iter().copied().find(|id| revoked(*id)) {
            return Err(CapError::Revoked(id));
        }
        if now < self.not_before {
            return Err(CapError::NotYetValid(self.not_before));
        }
        if now >= self.expires {
            return Err(CapError::Expired(self.expires));
        }
        Ok(())
    }

    /// This token's own id (its last link's).
    pub fn id(&self) -> u64 {
        self.ids.last().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeKey {
        NodeKey::from_seed(&[7; 32])
    }

    fn owner(k: &NodeKey) -> Token {
        k.mint(Claims {
            id: 1,
            holder: String::from("owner"),
            scope: String::from("/"),
            rights: Rights::ALL,
            not_before: 100,
            expires: 10_000,
        })
        .unwrap()
    }

    #[test]
    fn minted_tokens_verify_round_trip_and_are_deterministic() {
        let k = node();
        let t = owner(&k);
        assert_eq!(t, owner(&k));
        let text = t.to_text();
        assert!(text.starts_with("c0."));
        let back = Token::from_text(&text).unwrap();
        let g = back.verify(|i| *i == k.public()).unwrap();
        assert_eq!(g.scope, "/");
        assert_eq!(g.ids, [1]);
        assert!(g.check(500, |_| false).is_ok());
        assert_eq!(g.check(50, |_| false), Err(CapError::NotYetValid(100)));
        assert_eq!(g.check(10_000, |_| false), Err(CapError::Expired(10_000)));
        assert_eq!(g.check(500, |id| id == 1), Err(CapError::Revoked(1)));
    }

    #[test]
    fn attenuation_narrows_and_verifies() {
        let k = node();
        let t = owner(&k);
        let r = Rights::parse("r").unwrap();
        let a = t.attenuate("agent", "/chan/alerts", r, 200, 5_000).unwrap();
        let g = a.verify(|i| *i == k.public()).unwrap();
        assert_eq!(g.scope, "/chan/alerts");
        assert_eq!(g.rights, r);
        assert_eq!(g.ids.len(), 2);
        assert!(g.ids[1] >> 63 == 1);
        // And again, narrower still.
        let b = a
            .attenuate("sub", "/chan/alerts/data", r, 200, 4_000)
            .unwrap();
        assert_eq!(b.verify(|i| *i == k.public()).unwrap().ids.len(), 3);
        // Any revoked ancestor revokes it.
        let gb = b.verify(|_| true).unwrap();
        assert_eq!(
            gb.check(300, |id| id == g.ids[1]),
            Err(CapError::Revoked(g.ids[1]))
        );
    }

    #[test]
    fn widening_is_refused() {
        let k = node();
        let t = owner(&k)
            .attenuate("a", "/chan", Rights::parse("rw").unwrap(), 200, 5_000)
            .unwrap();
        let rw = Rights::parse("rw").unwrap();
        let w = |r: Result<Token, CapError>, what| {
            assert_eq!(r.unwrap_err(), CapError::Widens { link: 2, what })
        };
        w(t.attenuate("b", "/ctl", rw, 200, 5_000), "scope");
        w(t.attenuate("b", "/", rw, 200, 5_000), "scope");
        w(
            t.attenuate("b", "/chan", Rights::parse("rwa").unwrap(), 200, 5_000),
            "rights",
        );
        w(t.attenuate("b", "/chan", rw, 200, 6_000), "expiry");
        w(t.attenuate("b", "/chan", rw, 100, 5_000), "start time");
        assert!(matches!(
            t.attenuate("b", "/chan/../ctl", rw, 200, 5_000),
            Err(CapError::Scope(_))
        ));
    }

    #[test]
    fn tampering_forgery_and_stripping_are_caught() {
        let k = node();
        let t = owner(&k);
        let trusted = |i: &PublicKey| *i == k.public();
        // Every single flipped bit of the binary form is refused.
        let bytes = t.to_bytes();
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            if let Ok(tt) = Token::from_bytes(&b) {
                assert!(
                    tt.verify(trusted).is_err(),
                    "bit {i} flipped still verifies"
                );
            }
        }
        // Signed by another node.
        let other = NodeKey::from_seed(&[9; 32]);
        assert!(matches!(
            owner(&other).verify(trusted),
            Err(CapError::UnknownIssuer(_))
        ));
        // An attenuated token with its last link stripped has the wrong proof.
        let mut a = t
            .attenuate("a", "/chan", Rights::parse("r").unwrap(), 200, 500)
            .unwrap();
        a.links.pop();
        assert_eq!(a.verify(trusted), Err(CapError::BadProof));
        // A link whose claims were edited (widened back) fails its signature.
        let mut a = t
            .attenuate("a", "/chan", Rights::parse("r").unwrap(), 200, 500)
            .unwrap();
        a.links[1].claims.rights = Rights::ALL;
        assert_eq!(a.verify(trusted), Err(CapError::BadSignature(1)));
        assert!(Token::from_text("c0.!!").is_err());
        assert!(Token::from_text("xyz").is_err());
    }
}
