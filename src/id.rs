//! Identifiers: a session's cookie secret, its store key and public handle; a token
//! family's public id.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::StoreError;

/// Random bytes in an anonymous session's hash tag (16 base64url characters).
const TAG_BYTES: usize = 12;
/// Length of a hash tag in characters.
pub(crate) const TAG_LEN: usize = 16;
/// Random bytes in a session secret (256 bits).
const SECRET_BYTES: usize = 32;
/// Length of the base64url secret in characters.
const SECRET_LEN: usize = 43;
/// Length of a cookie value: `<tag>.<secret>`.
pub(crate) const COOKIE_VALUE_LEN: usize = TAG_LEN + 1 + SECRET_LEN;

/// The secret that a session cookie carries: `<tag>.<secret>`.
///
/// Only this struct and the cookie ever hold the secret; the store sees a
/// [`SessionKey`], which holds its SHA-256. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SessionId {
    tag: String,
    secret: [u8; SECRET_BYTES],
}

impl SessionId {
    /// A new id with a random tag (anonymous session).
    pub(crate) fn generate() -> Result<Self, StoreError> {
        let mut tag = [0u8; TAG_BYTES];
        getrandom::fill(&mut tag)?;
        Self::generate_in(URL_SAFE_NO_PAD.encode(tag))
    }

    /// A new secret in the slot of an existing tag (rotation keeps the slot).
    pub(crate) fn generate_in(tag: String) -> Result<Self, StoreError> {
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret)?;
        Ok(Self { tag, secret })
    }

    /// An id from its parts (tokens build their secret themselves).
    #[cfg(feature = "tokens")]
    pub(crate) fn from_parts(tag: String, secret: [u8; SECRET_BYTES]) -> Self {
        Self { tag, secret }
    }

    /// The raw secret.
    #[cfg(feature = "tokens")]
    pub(crate) fn secret(&self) -> &[u8; SECRET_BYTES] {
        &self.secret
    }

    /// Parses a cookie value. Anything but the exact format is `None`: no I/O happens
    /// for a malformed value.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        if value.len() != COOKIE_VALUE_LEN {
            return None;
        }
        let (tag, rest) = value.split_at_checked(TAG_LEN)?;
        let secret = rest.strip_prefix('.')?;
        if !tag.bytes().all(is_base64url) {
            return None;
        }
        // The decoder rejects non-canonical trailing bits, so one secret has one spelling.
        let mut buf = [0u8; SECRET_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(secret, &mut buf) {
            Ok(SECRET_BYTES) => Some(Self {
                tag: tag.to_owned(),
                secret: buf,
            }),
            _ => None,
        }
    }

    /// The cookie value.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::with_capacity(COOKIE_VALUE_LEN);
        out.push_str(&self.tag);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(self.secret, &mut out);
        out
    }

    /// The hash tag (Redis Cluster slot) of this session.
    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }

    /// The store key: the tag and the SHA-256 of the secret, never the secret.
    pub(crate) fn key(&self) -> SessionKey {
        let digest = Sha256::digest(self.secret);
        SessionKey {
            tag: self.tag.clone(),
            hash: URL_SAFE_NO_PAD.encode(digest),
        }
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The hash tag of a user: `base64url(hmac_sha256(salt, input))[..16]`. With a secret
/// salt the tag reveals nothing about the user id, yet all of a user's keys share it.
pub(crate) fn user_tag(salt: &[u8], input: &[u8]) -> Result<String, StoreError> {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salt)
        .map_err(|_| StoreError::Protocol("invalid user-tag salt"))?;
    mac.update(input);
    let mut tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    tag.truncate(TAG_LEN);
    Ok(tag)
}

/// What a store knows of a session: its hash tag and the SHA-256 of its secret.
///
/// A store never sees the cookie secret, so a leaked store dump yields no usable cookie.
/// `Debug` shows the tag only.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    tag: String,
    hash: String,
}

impl SessionKey {
    /// The store key of a plain session cookie value (`<tag>.<secret>`), or `None` if
    /// the value is malformed. For tests and operations tooling; does no I/O.
    pub fn from_cookie_value(value: &str) -> Option<Self> {
        SessionId::parse(value).map(|id| id.key())
    }

    /// The Redis Cluster hash tag shared by all keys of this session (and, once logged
    /// in, of its user).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// base64url SHA-256 of the cookie secret.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// A key from its parts, e.g. for a store that lists a user's sessions.
    pub fn from_parts(tag: String, hash: String) -> Self {
        Self { tag, hash }
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey")
            .field("tag", &self.tag)
            .field("hash", &"<redacted>")
            .finish()
    }
}

/// The public, non-secret handle of a session (a random UUID v4).
///
/// Use it in listings, revoke APIs, URLs and logs: it cannot be turned into a cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct SessionHandle(Uuid);

impl SessionHandle {
    pub(crate) fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    /// `s` as a handle, or `None` (the public form is `FromStr`).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Uuid::try_parse(s).ok().map(Self)
    }
}

/// The handle's UUID (e.g. for a `uuid` column).
impl From<SessionHandle> for Uuid {
    fn from(handle: SessionHandle) -> Self {
        handle.0
    }
}

/// Parses a handle, e.g. from a revoke form or URL.
impl std::str::FromStr for SessionHandle {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s).map(Self)
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The public id of a token family (one login of one client): for listings, revoke
/// APIs and logs. It cannot be turned into a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct FamilyId(Uuid);

impl FamilyId {
    /// A new random family id.
    #[cfg(feature = "tokens")]
    pub(crate) fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    /// `s` as a family id, or `None` (the public form is `FromStr`).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Uuid::try_parse(s).ok().map(Self)
    }
}

/// Parses a family id.
impl std::str::FromStr for FamilyId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s).map(Self)
    }
}

impl fmt::Display for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_length() {
        let id = SessionId::generate().unwrap();
        let v = id.encode();
        assert_eq!(v.len(), COOKIE_VALUE_LEN);
        assert_eq!(SessionId::parse(&v), Some(id));
    }

    /// The secret carries 256 bits from the OS CSPRNG: over 2,000 draws every one of
    /// its 32 bytes takes (nearly) every value, and no two secrets are equal. A secret
    /// filled only partly at random (e.g. 1 or 16 of its bytes) fails this.
    #[test]
    fn secrets_carry_256_random_bits() {
        let draws: Vec<SessionId> = (0..2000).map(|_| SessionId::generate().unwrap()).collect();
        for pos in 0..SECRET_BYTES {
            let values: std::collections::HashSet<u8> =
                draws.iter().map(|id| id.secret[pos]).collect();
            // Expected ~256; fewer than 200 is astronomically unlikely for random bytes.
            assert!(
                values.len() >= 200,
                "byte {pos} took {} values",
                values.len()
            );
        }
        let distinct: std::collections::HashSet<_> = draws.iter().map(SessionId::encode).collect();
        assert_eq!(distinct.len(), draws.len());
        // The cookie's secret part decodes to exactly 32 bytes.
        let v = draws[0].encode();
        let decoded = URL_SAFE_NO_PAD.decode(&v[TAG_LEN + 1..]).unwrap();
        assert_eq!(decoded.len(), 32);
        // Anonymous tags are random too.
        let tags: std::collections::HashSet<_> =
            draws.iter().map(|id| id.tag().to_owned()).collect();
        assert_eq!(tags.len(), draws.len());
    }

    #[test]
    fn rejects_malformed() {
        let v = SessionId::generate().unwrap().encode();
        let mut wrong_sep = v.clone();
        wrong_sep.replace_range(TAG_LEN..=TAG_LEN, "-");
        let mut bad_char = v.clone();
        bad_char.replace_range(0..1, "*");
        let mut bad_secret = v.clone();
        bad_secret.replace_range(COOKIE_VALUE_LEN - 1.., "=");
        for bad in [
            "",
            &v[1..],
            &format!("{v}A"),
            &wrong_sep,
            &bad_char,
            &bad_secret,
            "0123456789abcdef.\r\n*?[]",
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad:?}");
        }
        // 43 characters carry 258 bits for 256: the last character's two low bits
        // must be zero. Setting one gives a second spelling of the same secret.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut non_canonical = v;
        let last = non_canonical.pop().unwrap();
        let index = ALPHABET.iter().position(|&c| c == last as u8).unwrap();
        assert_eq!(index & 3, 0);
        non_canonical.push(ALPHABET[index | 1] as char);
        assert_eq!(SessionId::parse(&non_canonical), None);
    }

    #[test]
    fn key_hides_secret_and_debug_is_redacted() {
        let id = SessionId::generate().unwrap();
        let key = id.key();
        let cookie = id.encode();
        let secret = &cookie[TAG_LEN + 1..];
        assert!(!key.hash().contains(secret));
        assert!(!format!("{id:?}{key:?}").contains(secret));
        assert!(!format!("{key:?}").contains(key.hash()));
    }
}
