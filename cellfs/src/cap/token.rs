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
//! Since attenuation is offline, whoever holds a proof can sign any link
//! at all: everything a link must obey is checked by [`Token::verify`],
//! and [`Token::attenuate`] only refuses early what `verify` would. That
//! covers the link's id (the first link's is the node's number for it;
//! every later one is derived from the link itself, [`link_id`], so no
//! holder can pick one that collides with another capability's) and who
//! may hold it ([`holder_rule`]: a capability derived from an agent's
//! stays that agent's, only an admin names another agent, nobody but the
//! owner names `owner`).
//!
//! Binary form: postcard. Text form: `c0.` followed by base64url (no
//! padding) of the binary form, safe in files, shells and 9P anames.

use alloc::format;
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
/// The bit every derived link id has set and no id the node assigns has,
/// so the two never meet.
pub const DERIVED_ID: u64 = 1 << 63;
/// How the holder of an agent's capability starts: `agent/NAME`.
pub const AGENT_HOLDER: &str = "agent/";
/// The holder of the node's owner token: reserved (see [`holder_rule`]).
pub const OWNER_HOLDER: &str = "owner";

const DOMAIN: &[u8] = b"cell0 capability link v1";
const ID_DOMAIN: &[u8] = b"cell0 capability link id v1";

/// What one link of a token grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The capability's id (what revocation names): for the first link,
    /// the node's number for it (below 2^63; the owner's is 0); for every
    /// later link, [`link_id`] of the link.
    pub id: u64,
    /// Who holds it: a name, for status files and logs, and the agent a
    /// capability belongs to (`agent/NAME`).
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
            .field("issuer", &crate::hex::encode(&self.issuer))
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

/// Why a link may not name the holder it names (see [`holder_rule`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HolderRefusal {
    /// The link derives from agent `agent`'s capability and names
    /// another holder.
    StaysAgent {
        /// The agent whose capability it derives from.
        agent: String,
        /// The holder the link names.
        asked: String,
    },
    /// The link names an agent, and what it derives from lacks the admin
    /// right over a scope containing that agent's `/agent/NAME`.
    AgentNeedsAdmin {
        /// The holder the link names (`agent/NAME`).
        asked: String,
        /// The scope of what it derives from.
        scope: String,
        /// The rights of what it derives from.
        rights: Rights,
    },
    /// The link names `owner`, and what it derives from is not the
    /// owner's.
    Owner {
        /// The holder of what it derives from.
        parent: String,
    },
    /// The link names another holder, and what it derives from lacks the
    /// admin right.
    Rename {
        /// The holder of what it derives from.
        from: String,
        /// The holder the link names.
        to: String,
    },
}

impl fmt::Display for HolderRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HolderRefusal::StaysAgent { agent, asked } => write!(
                f,
                "'{asked}' refused: a capability derived from agent {agent}'s stays agent {agent}'s, so every later holder must be '{AGENT_HOLDER}{agent}'"
            ),
            HolderRefusal::AgentNeedsAdmin {
                asked,
                scope,
                rights,
            } => {
                let name = asked.strip_prefix(AGENT_HOLDER).unwrap_or(asked);
                write!(
                    f,
                    "'{asked}' refused: naming an agent needs the admin right over a scope containing /agent/{name}, and the capability it derives from has scope {scope}, rights {rights}"
                )
            }
            HolderRefusal::Owner { parent } => write!(
                f,
                "'{OWNER_HOLDER}' refused: that holder is reserved for the node's owner, and the capability it derives from is held by '{parent}'"
            ),
            HolderRefusal::Rename { from, to } => write!(
                f,
                "'{to}' refused: without the admin right a holder may only stay '{from}' or become a sub-name '{from}/NAME'"
            ),
        }
    }
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
    /// A holder name is not 1–64 bytes of printable ASCII without spaces,
    /// or names an agent by a name no agent can have.
    BadHolder {
        /// The name, as given.
        holder: String,
        /// What is wrong with it.
        why: String,
    },
    /// The first link's id has bit 63 set: only derived ids have it.
    FirstId(u64),
    /// A link after the first carries an id other than the one derived
    /// from it ([`link_id`]): a holder chose it.
    LinkId {
        /// The link, from 1.
        link: usize,
        /// The id it carries.
        carried: u64,
        /// The id derived from it.
        derived: u64,
    },
    /// A link names a holder that what it derives from may not hand it to.
    Holder {
        /// The link, from 1.
        link: usize,
        /// Why.
        why: HolderRefusal,
    },
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
                crate::hex::encode(k)
            ),
            CapError::BadProof => {
                f.write_str("capability proof does not match its last link: a link was removed")
            }
            CapError::Widens { link, what } => write!(
                f,
                "capability link {link} widens its parent's {what}: an attenuation may only narrow"
            ),
            CapError::Scope(e) => write!(f, "capability scope: {e}"),
            CapError::BadHolder { holder, why } => {
                // Escaped, so that a control or bidi character cannot
                // scramble the message that reports it.
                let shown: String = holder.chars().take(MAX_HOLDER + 8).collect();
                let more = if shown.len() < holder.len() {
                    "..."
                } else {
                    ""
                };
                write!(
                    f,
                    "capability holder \"{}{more}\" refused: {why}; a holder is 1-{MAX_HOLDER} bytes of printable ASCII without spaces",
                    shown.escape_default()
                )
            }
            CapError::FirstId(id) => write!(
                f,
                "capability link 0 has id {id}, above 2^63: the ids a node assigns are below it (derived ids alone are above)"
            ),
            CapError::LinkId {
                link,
                carried,
                derived,
            } => write!(
                f,
                "capability link {link} carries id {carried}, but a link's id is derived from the link itself and this one's is {derived}: ids cannot be chosen"
            ),
            CapError::Holder { link, why } => write!(f, "capability link {link}: holder {why}"),
            CapError::Expired(t) => write!(f, "capability expired at {t} (Unix seconds)"),
            CapError::NotYetValid(t) => {
                write!(f, "capability is not valid before {t} (Unix seconds)")
            }
            CapError::Revoked(id) => write!(f, "capability {id} was revoked"),
        }
    }
}

/// Check a holder name: 1–64 bytes of printable ASCII without spaces
/// (no control, format or bidi characters, which would scramble the
/// files and messages that show it); `agent/NAME` needs a NAME an agent
/// can have.
pub fn check_holder(name: &str) -> Result<(), CapError> {
    let bad = |why: String| {
        Err(CapError::BadHolder {
            holder: String::from(name),
            why,
        })
    };
    if name.is_empty() {
        return bad(String::from("it is empty"));
    }
    if name.len() > MAX_HOLDER {
        return bad(format!("it is {} bytes long", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic()) {
        let what = match c {
            ' ' => "a space",
            c if c.is_ascii_control() => "a control character",
            _ => "a character that is not ASCII",
        };
        return bad(format!("it holds {what} (U+{:04X})", u32::from(c)));
    }
    if let Some(agent) = name.strip_prefix(AGENT_HOLDER)
        && !crate::name::is_object(agent)
    {
        return bad(format!(
            "an agent's holder is {AGENT_HOLDER}NAME, and \"{agent}\" is not an agent's name (1-64 of A-Z a-z 0-9 . _ -, not starting with '.')"
        ));
    }
    Ok(())
}

/// Whether a link derived from a capability held by `parent`, with
/// `scope` and `rights`, may name `holder` (cap(3) HOLDERS):
///
/// - a capability derived from agent NAME's (`agent/NAME`) stays agent
///   NAME's: it keeps that holder;
/// - naming an agent needs the admin right over a scope containing its
///   `/agent/NAME` (what a runner holds);
/// - `owner` is named only by what the owner holds;
/// - any other holder needs the admin right, unless it is a sub-name
///   `PARENT/SUFFIX` of the parent's holder.
pub fn holder_rule(
    parent: &str,
    scope: &str,
    rights: Rights,
    holder: &str,
) -> Result<(), HolderRefusal> {
    if let Some(agent) = parent.strip_prefix(AGENT_HOLDER) {
        if holder == parent {
            return Ok(());
        }
        return Err(HolderRefusal::StaysAgent {
            agent: String::from(agent),
            asked: String::from(holder),
        });
    }
    if holder == parent {
        return Ok(());
    }
    let admin = rights.has(super::Right::Admin);
    if let Some(agent) = holder.strip_prefix(AGENT_HOLDER) {
        if admin && scope::contains(scope, &format!("/agent/{agent}")) {
            return Ok(());
        }
        return Err(HolderRefusal::AgentNeedsAdmin {
            asked: String::from(holder),
            scope: String::from(scope),
            rights,
        });
    }
    if holder == OWNER_HOLDER {
        return Err(HolderRefusal::Owner {
            parent: String::from(parent),
        });
    }
    let sub_name = holder
        .strip_prefix(parent)
        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'));
    if admin || sub_name {
        return Ok(());
    }
    Err(HolderRefusal::Rename {
        from: String::from(parent),
        to: String::from(holder),
    })
}

fn check_claims(c: &Claims) -> Result<(), CapError> {
    check_holder(&c.holder)?;
    let norm = scope::normalize(&c.scope).map_err(CapError::Scope)?;
    if norm != c.scope {
        return Err(CapError::Scope(ScopeError::BadName(c.scope.clone())));
    }
    Ok(())
}

/// The bytes a link with `claims` and `next_key` signs: a domain tag,
/// what it is chained to (the issuer for the first link, else the
/// previous link's signature), the claims and the next key. Public so
/// that tools and tests can check (or forge, to see them refused) links
/// by cap(3)'s description.
pub fn link_message(chained_to: &[u8], claims: &Claims, next_key: &PublicKey) -> Vec<u8> {
    let mut m = Vec::with_capacity(256);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(chained_to);
    // Encoding plain data into a Vec cannot fail.
    m.extend_from_slice(&postcard::to_allocvec(claims).unwrap_or_default());
    m.extend_from_slice(next_key);
    m
}

/// The id of a link after the first: the first 8 bytes (little-endian) of
/// SHA-256 over a domain tag, what the link is chained to (the previous
/// link's signature), its claims with the id as 0 and its next key, with
/// bit 63 set. Anyone can compute it and nobody can choose it: two links
/// share an id only if they are the same link.
pub fn link_id(chained_to: &[u8], claims: &Claims, next_key: &PublicKey) -> u64 {
    let zeroed = Claims {
        id: 0,
        ..claims.clone()
    };
    let mut h = Sha256::new();
    h.update(ID_DOMAIN);
    h.update(chained_to);
    h.update(postcard::to_allocvec(&zeroed).unwrap_or_default());
    h.update(next_key);
    let digest: [u8; 32] = h.finalize().into();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first) | DERIVED_ID
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
        write!(f, "NodeKey({})", crate::hex::encode(&self.public()))
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
    /// The id must be below 2^63 (the ids above are derived ones').
    pub fn mint(&self, claims: Claims) -> Result<Token, CapError> {
        check_claims(&claims)?;
        if claims.id & DERIVED_ID != 0 {
            return Err(CapError::FirstId(claims.id));
        }
        let claim_bytes = postcard::to_allocvec(&claims).unwrap_or_default();
        let proof = derive(&self.seed(), b"mint", &claim_bytes);
        let next_key = SigningKey::from_bytes(&proof).verifying_key().to_bytes();
        let issuer = self.public();
        let sig = self.0.sign(&link_message(&issuer, &claims, &next_key));
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

    /// Check every signature, that each link only narrows, names a holder
    /// its parent may hand it to ([`holder_rule`]) and carries the id
    /// derived from it ([`link_id`]), and the proof; `trusted` says
    /// whether an issuer key is one this node accepts. Times and
    /// revocation are checked per use, by [`Grant::check`].
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
            let c = &link.claims;
            check_claims(c)?;
            match n.checked_sub(1).map(|p| &self.links[p].claims) {
                None if c.id & DERIVED_ID != 0 => return Err(CapError::FirstId(c.id)),
                None => {}
                Some(parent) => {
                    narrows(parent, c, n)?;
                    holder_rule(&parent.holder, &parent.scope, parent.rights, &c.holder)
                        .map_err(|why| CapError::Holder { link: n, why })?;
                }
            }
            let key = VerifyingKey::from_bytes(&signer).map_err(|_| CapError::BadSignature(n))?;
            let sig = join(&link.signature);
            key.verify_strict(&link_message(&chained_to, c, &link.next_key), &sig)
                .map_err(|_| CapError::BadSignature(n))?;
            if n > 0 {
                let derived = link_id(&chained_to, c, &link.next_key);
                if c.id != derived {
                    return Err(CapError::LinkId {
                        link: n,
                        carried: c.id,
                        derived,
                    });
                }
            }
            ids.push(c.id);
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

    /// A narrower token, derived offline: `holder` (see [`holder_rule`]),
    /// a scope inside this one's, rights a subset, a window inside this
    /// one's. Refuses what [`Token::verify`] would refuse. Its id is
    /// derived from the new link ([`link_id`]).
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
        let parent = self.claims();
        narrows(parent, &claims, n)?;
        holder_rule(&parent.holder, &parent.scope, parent.rights, holder)
            .map_err(|why| CapError::Holder { link: n, why })?;
        let seed = postcard::to_allocvec(&claims).unwrap_or_default();
        let next = derive(&self.proof, b"next", &seed);
        let next_key = SigningKey::from_bytes(&next).verifying_key().to_bytes();
        let chained_to = join(&self.links[n - 1].signature).to_bytes();
        claims.id = link_id(&chained_to, &claims, &next_key);
        let signer = SigningKey::from_bytes(&self.proof);
        let sig = signer.sign(&link_message(&chained_to, &claims, &next_key));
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

    /// The agent whose capability this is, if a link of its chain names
    /// one (`agent/NAME`). [`Token::verify`] holds every link after such
    /// a link to the same holder ([`holder_rule`]), so a chain names an
    /// agent exactly when its last holder does: that is where it is read.
    pub fn agent(&self) -> Option<&str> {
        self.holder.strip_prefix(AGENT_HOLDER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

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
        let a = t
            .attenuate("reader", "/chan/alerts", r, 200, 5_000)
            .unwrap();
        let g = a.verify(|i| *i == k.public()).unwrap();
        assert_eq!(g.scope, "/chan/alerts");
        assert_eq!(g.rights, r);
        assert_eq!(g.ids.len(), 2);
        assert!(g.ids[1] >> 63 == 1);
        // And again, narrower still (a sub-holder needs no admin right).
        let b = a
            .attenuate("reader/sub", "/chan/alerts/data", r, 200, 4_000)
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

    /// A link signed with `parent`'s proof, carrying whatever `claims`
    /// say: what a dishonest holder can make offline.
    fn forge(parent: &Token, claims: Claims, honest_id: bool) -> Token {
        let secret = [0x5a; 32];
        let next_key = SigningKey::from_bytes(&secret).verifying_key().to_bytes();
        let chained_to = join(&parent.links.last().unwrap().signature).to_bytes();
        let mut claims = claims;
        if honest_id {
            claims.id = link_id(&chained_to, &claims, &next_key);
        }
        let sig = SigningKey::from_bytes(&parent.proof).sign(&link_message(
            &chained_to,
            &claims,
            &next_key,
        ));
        let mut links = parent.links.clone();
        links.push(Link {
            claims,
            next_key,
            signature: split(&sig),
        });
        Token {
            issuer: parent.issuer,
            links,
            proof: secret,
        }
    }

    fn claims(holder: &str, scope: &str, rights: &str) -> Claims {
        Claims {
            id: 0,
            holder: String::from(holder),
            scope: String::from(scope),
            rights: Rights::parse(rights).unwrap(),
            not_before: 200,
            expires: 5_000,
        }
    }

    #[test]
    fn link_ids_are_derived_and_checked() {
        let k = node();
        let trusted = |i: &PublicKey| *i == k.public();
        let t = owner(&k);
        let a = t
            .attenuate("reader", "/chan", Rights::parse("r").unwrap(), 200, 5_000)
            .unwrap();
        let l = &a.links[1];
        let chained_to = join(&t.links[0].signature).to_bytes();
        assert_eq!(l.claims.id, link_id(&chained_to, &l.claims, &l.next_key));
        // The same claims under another parent get another id.
        let t2 = k
            .mint(Claims {
                id: 2,
                ..t.claims().clone()
            })
            .unwrap();
        let a2 = t2
            .attenuate("reader", "/chan", Rights::parse("r").unwrap(), 200, 5_000)
            .unwrap();
        assert_ne!(a2.claims().id, a.claims().id);
        // A forged link with the owner's id, a minted id or any chosen
        // one is refused, naming the link and the id it should carry.
        for chosen in [0, 1, 3, 99, a.claims().id, u64::MAX] {
            let f = forge(
                &t,
                Claims {
                    id: chosen,
                    ..claims("reader", "/chan", "r")
                },
                false,
            );
            match f.verify(trusted) {
                Err(CapError::LinkId {
                    link: 1, carried, ..
                }) => assert_eq!(carried, chosen),
                other => panic!("id {chosen}: {other:?}"),
            }
        }
        let honest = forge(&t, claims("reader", "/chan", "r"), true);
        assert!(honest.verify(trusted).is_ok());
        // The node never assigns an id with bit 63, and such a first link
        // is refused even if signed.
        let high = Claims {
            id: DERIVED_ID | 5,
            ..claims("x", "/", "r")
        };
        assert_eq!(k.mint(high).unwrap_err(), CapError::FirstId(DERIVED_ID | 5));
        let msg = CapError::LinkId {
            link: 1,
            carried: 0,
            derived: 9,
        }
        .to_string();
        assert!(msg.contains("link 1 carries id 0") && msg.contains("cannot be chosen"));
    }

    #[test]
    fn holders_follow_the_rules() {
        let all = Rights::ALL;
        let rw = Rights::parse("rw").unwrap();
        let ok = |p: &str, s: &str, r: Rights, h: &str| holder_rule(p, s, r, h).is_ok();
        // An agent's stays the agent's, whatever the parent may do.
        assert!(ok("agent/foo", "/", all, "agent/foo"));
        assert!(!ok("agent/foo", "/", all, "x"));
        assert!(!ok("agent/foo", "/", all, "agent/bar"));
        assert!(!ok("agent/foo", "/", all, "owner"));
        assert!(!ok("agent/foo", "/", all, "agent/foo/sub"));
        // Naming an agent needs admin over its /agent/NAME.
        assert!(ok("owner", "/", all, "agent/foo"));
        assert!(ok(
            "runner",
            "/agent",
            Rights::parse("ra").unwrap(),
            "agent/foo"
        ));
        assert!(!ok("runner", "/chan", all, "agent/foo"));
        assert!(!ok("alice", "/", rw, "agent/foo"));
        assert!(!ok("agent", "/", rw, "agent/foo"), "not a sub-name route");
        // owner only from owner.
        assert!(ok("owner", "/", all, "owner"));
        assert!(!ok("alice", "/", all, "owner"));
        // Renames need admin; sub-names do not.
        assert!(ok("alice", "/", all, "bob"));
        assert!(!ok("alice", "/", rw, "bob"));
        assert!(ok("alice", "/", rw, "alice/bob"));
        assert!(!ok("alice", "/", rw, "alice/"));
        assert!(!ok("alice", "/", rw, "alicex"));
        let e = holder_rule("agent/foo", "/", all, "x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'x' refused") && e.contains("'agent/foo'"),
            "{e}"
        );
        let e = holder_rule("alice", "/", rw, "bob")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'alice/NAME'"), "{e}");
        // verify applies them to links forged past attenuate.
        let k = node();
        let agent = owner(&k)
            .attenuate("agent/foo", "/", rw, 200, 5_000)
            .unwrap();
        assert!(matches!(
            agent.attenuate("x", "/", rw, 200, 5_000),
            Err(CapError::Holder { link: 2, .. })
        ));
        let renamed = forge(&agent, claims("x", "/", "rw"), true);
        assert!(matches!(
            renamed.verify(|_| true),
            Err(CapError::Holder {
                link: 2,
                why: HolderRefusal::StaysAgent { .. }
            })
        ));
        let kept = agent
            .attenuate("agent/foo", "/chan", rw, 200, 5_000)
            .unwrap();
        assert_eq!(kept.verify(|_| true).unwrap().agent(), Some("foo"));
    }

    #[test]
    fn holder_names_are_printable_ascii() {
        for good in ["owner", "agent/w-1", "ci", "a.b_c/d", &"x".repeat(64)] {
            assert!(check_holder(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("a b", "a space"),
            ("a\tb", "control"),
            ("a\u{7f}", "control"),
            ("a\u{202e}b", "U+202E"),
            ("caf\u{e9}", "not ASCII"),
            ("agent/", "not an agent's name"),
            ("agent/a/b", "not an agent's name"),
            (&"x".repeat(65), "65 bytes"),
        ] {
            let e = check_holder(bad).unwrap_err().to_string();
            assert!(
                e.contains(why) && e.contains("printable ASCII"),
                "{bad:?}: {e}"
            );
            // The message itself holds no control or bidi character.
            assert!(e.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{e}");
        }
    }
}
