//! Opaque token strings: `at.<tag>.<secret>` (access) and `rt.<tag>.<secret>`
//! (refresh). The tag is the user's hash tag (the Redis Cluster slot of all their keys).
//! The 32-byte secret is 24 bytes from the OS CSPRNG and an 8-byte check,
//! `HMAC-SHA256(key, kind ‖ tag ‖ random)`, keyed by a secret derived from the
//! namespace's salt: a token with a forged secret or an altered tag is refused without
//! asking the store, so guessing costs the store nothing. The store sees only the
//! secret's SHA-256.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::StoreError;
use crate::id::SessionId;

/// Random bytes in a token secret (192 bits).
const RANDOM: usize = 24;

fn check(key: &[u8; 32], kind: Kind, tag: &str, random: &[u8]) -> Result<Hmac<Sha256>, StoreError> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|_| StoreError::Protocol("invalid token check key"))?;
    mac.update(kind.prefix().as_bytes());
    mac.update(tag.as_bytes());
    mac.update(random);
    Ok(mac)
}

/// The two kinds of opaque token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Access,
    Refresh,
    /// The `jti` of an OpenID Connect ID token (never handed out alone).
    Id,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Access => "at.",
            Self::Refresh => "rt.",
            Self::Id => "it.",
        }
    }
}

/// A parsed or freshly generated opaque token. `Debug` is redacted.
pub(crate) struct Opaque {
    kind: Kind,
    id: SessionId,
}

/// What the store knows of a token: its slot and the SHA-256 of its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) tag: String,
    pub(crate) hash: String,
}

impl Opaque {
    pub(crate) fn generate(kind: Kind, tag: &str, key: &[u8; 32]) -> Result<Self, StoreError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret[..RANDOM])?;
        let mac = check(key, kind, tag, &secret[..RANDOM])?
            .finalize()
            .into_bytes();
        secret[RANDOM..].copy_from_slice(&mac[..32 - RANDOM]);
        Ok(Self {
            kind,
            id: SessionId::from_parts(tag.to_owned(), secret),
        })
    }

    /// Whether the secret's check matches its kind and tag (constant time).
    pub(crate) fn verify(&self, key: &[u8; 32]) -> bool {
        let (random, tag) = self.id.secret().split_at(RANDOM);
        check(key, self.kind, self.id.tag(), random)
            .is_ok_and(|mac| mac.verify_truncated_left(tag).is_ok())
    }

    /// Parses a token of either kind. Anything but the exact format is `None`, with no
    /// I/O (the same parser as session cookies: fixed length, canonical base64url).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        [Kind::Access, Kind::Refresh, Kind::Id]
            .into_iter()
            .find_map(|kind| {
                let id = SessionId::parse(s.strip_prefix(kind.prefix())?)?;
                Some(Self { kind, id })
            })
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    pub(crate) fn stored(&self) -> Stored {
        let key = self.id.key();
        Stored {
            tag: key.tag().to_owned(),
            hash: key.hash().to_owned(),
        }
    }

    /// The token string handed to the client.
    pub(crate) fn encode(&self) -> String {
        let mut s = String::from(self.kind.prefix());
        s.push_str(&self.id.encode());
        s
    }
}

impl fmt::Debug for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opaque")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [9; 32];

    #[test]
    fn round_trip_and_kinds() {
        let t = Opaque::generate(Kind::Refresh, "AAAAAAAAAAAAAAAA", &KEY).unwrap();
        let s = t.encode();
        assert!(s.starts_with("rt.AAAAAAAAAAAAAAAA."));
        let back = Opaque::parse(&s).unwrap();
        assert_eq!(back.kind(), Kind::Refresh);
        assert_eq!(back.stored(), t.stored());
        assert!(!t.stored().hash.contains(&s[20..]));
        assert!(back.verify(&KEY));
        assert!(!back.verify(&[8; 32]));
    }

    #[test]
    fn check_binds_kind_and_tag() {
        let t = Opaque::generate(Kind::Access, "AAAAAAAAAAAAAAAA", &KEY)
            .unwrap()
            .encode();
        for forged in [
            t.replacen("at.", "rt.", 1),
            t.replacen("at.", "it.", 1),
            t.replacen("AAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAB", 1),
        ] {
            assert!(!Opaque::parse(&forged).unwrap().verify(&KEY));
        }
    }

    #[test]
    fn rejects_anything_else() {
        let good = Opaque::generate(Kind::Access, "AAAAAAAAAAAAAAAA", &KEY)
            .unwrap()
            .encode();
        for bad in [
            String::new(),
            "at.".into(),
            good.replacen("at.", "xt.", 1),
            good.replacen("at.", "", 1),
            format!("{good}A"),
            good[..good.len() - 1].to_owned(),
            good.replace('.', "!"),
            format!(" {}", &good[1..]),
        ] {
            assert!(Opaque::parse(&bad).is_none(), "{bad:?}");
        }
    }
}
