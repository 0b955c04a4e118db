//! The user-tag key: what maps a user id to the Redis hash tag of its slot and keys the
//! token checks. Supplied by the application (like the cookie `Key`), or kept in Redis.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ConfigError;

/// Shortest key a [`UserKey`] accepts.
const MIN_LEN: usize = 32;

/// The application's user-tag key.
///
/// Every key of one user lives in one Redis slot whose hash tag is an HMAC of the user
/// id. If that HMAC's key changed, a user's existing sessions and tokens would sit in a
/// slot nobody looks in any more: log out everywhere would miss them. Give the store a
/// key you keep with your other secrets ([`RedisStore::with_user_key`],
/// [`MemoryStore::with_user_key`]) and the mapping can never change behind your back.
/// Each namespace derives its own key from it.
///
/// Without one, a [`RedisStore`] keeps a random key at `<namespace>:salt` in Redis; see
/// [`StoreError::UserKeyLost`](crate::StoreError::UserKeyLost) for what happens when that
/// key is evicted or deleted.
///
/// `Debug` never shows the key.
///
/// [`RedisStore`]: crate::RedisStore
/// [`RedisStore::with_user_key`]: crate::RedisStore::with_user_key
/// [`MemoryStore::with_user_key`]: crate::MemoryStore::with_user_key
#[derive(Clone)]
pub struct UserKey(Arc<[u8]>);

/// A key from secret bytes (at least 32, e.g. from your secret manager):
/// `UserKey::try_from(&secret[..])`; fewer than 32 bytes are
/// [`ConfigError::UserKeyTooShort`].
impl TryFrom<&[u8]> for UserKey {
    type Error = ConfigError;

    fn try_from(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.len() < MIN_LEN {
            return Err(ConfigError::UserKeyTooShort(bytes.len()));
        }
        Ok(Self(Arc::from(bytes)))
    }
}

impl UserKey {
    /// The salt of `namespace`: `HMAC-SHA256(key, label ‖ namespace)`.
    pub(crate) fn salt_for(&self, namespace: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(b"tower-redis-session user tag\0");
        mac.update(namespace.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_refused_and_debug_is_redacted() {
        assert!(matches!(
            UserKey::try_from(&[7; 31][..]),
            Err(ConfigError::UserKeyTooShort(31))
        ));
        let key = UserKey::try_from(&[7; 32][..]).unwrap();
        assert_eq!(format!("{key:?}"), "UserKey(<redacted>)");
        assert_ne!(
            key.salt_for("a"),
            key.salt_for("b"),
            "one salt per namespace"
        );
        assert_eq!(key.salt_for("a"), key.salt_for("a"));
    }
}
