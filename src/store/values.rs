//! How session values are stored: plain, or encrypted at rest (feature `value-encryption`,
//! `SessionLayer::with_value_encryption`).
//!
//! The session layer holds plain JSON; only what goes to the store is sealed. A value is
//! sealed when a write's patch is built (the session's handle is known by then, even for
//! a new or logged-in session) and opened when a record is read, so the size rule, the
//! "equal value writes nothing" check and field-level writes work on the same values
//! whether or not encryption is on.
//!
//! A sealed value is `~1` and the unpadded base64url of a random 96-bit nonce and the
//! AES-256-GCM-SIV ciphertext with its tag. The associated data is a fixed label, the
//! session's handle and the key's name, so a value moved to another key or another
//! session does not open. JSON never starts with `~`, so a plain value is told apart
//! and refused: with encryption on, a value that does not open (plain, altered, moved,
//! or sealed under a key no longer in the ring) reads as missing.

use std::collections::HashMap;

use crate::error::StoreError;
use crate::id::SessionHandle;
use crate::store::record::{DATA_PREFIX, Patch};

/// How a layer stores session values: as they are, or sealed with its keys.
#[derive(Clone, Debug, Default)]
pub(crate) struct Values {
    #[cfg(feature = "value-encryption")]
    sealer: Option<std::sync::Arc<sealing::Sealer>>,
}

impl Values {
    /// Values sealed with `keys` (newest seals, every one opens).
    #[cfg(feature = "value-encryption")]
    pub(crate) fn sealed(keys: &crate::cookie::KeyRing) -> Self {
        Self {
            sealer: Some(std::sync::Arc::new(sealing::Sealer::new(keys))),
        }
    }

    /// Whether values are sealed (and [`open_data`](Self::open_data) has work to do).
    pub(crate) fn seals(&self) -> bool {
        #[cfg(feature = "value-encryption")]
        return self.sealer.is_some();
        #[cfg(not(feature = "value-encryption"))]
        false
    }

    /// The stored length of a value of `len` bytes (what the size limit counts).
    pub(crate) fn stored_len(&self, len: usize) -> usize {
        #[cfg(feature = "value-encryption")]
        if self.sealer.is_some() {
            return sealing::sealed_len(len);
        }
        len
    }

    /// Seals the data fields `patch` sets, for session `handle`.
    ///
    /// # Errors
    /// [`StoreError::Protocol`] if the OS random source fails (nothing is written).
    pub(crate) fn seal_patch(
        &self,
        patch: &mut Patch,
        handle: SessionHandle,
    ) -> Result<(), StoreError> {
        self.seal_all(patch.set.iter_mut().map(|(f, v)| (&*f, v)), handle)
    }

    /// Seals stored-form data (`d:` fields) of session `handle` in place.
    pub(crate) fn seal_fields(
        &self,
        fields: &mut HashMap<String, String>,
        handle: SessionHandle,
    ) -> Result<(), StoreError> {
        self.seal_all(fields.iter_mut(), handle)
    }

    fn seal_all<'a>(
        &self,
        fields: impl Iterator<Item = (&'a String, &'a mut String)>,
        handle: SessionHandle,
    ) -> Result<(), StoreError> {
        #[cfg(feature = "value-encryption")]
        if let Some(sealer) = &self.sealer {
            for (field, value) in fields {
                if let Some(name) = field.strip_prefix(DATA_PREFIX) {
                    *value = sealer.seal(handle, name, value)?;
                }
            }
        }
        #[cfg(not(feature = "value-encryption"))]
        let _ = (fields, handle, DATA_PREFIX);
        Ok(())
    }

    /// Opens the values of session `handle` read from the store (`data`: key name to
    /// stored value); a value that does not open is dropped, so it reads as missing.
    pub(crate) fn open_data(&self, data: &mut HashMap<String, String>, handle: SessionHandle) {
        #[cfg(feature = "value-encryption")]
        if let Some(sealer) = &self.sealer {
            let mut refused = 0usize;
            data.retain(|name, value| match sealer.open(handle, name, value) {
                Some(plain) => {
                    *value = plain;
                    true
                }
                None => {
                    refused += 1;
                    false
                }
            });
            if refused > 0 {
                // Names and values stay out of the log: both are the application's data.
                tracing::info!(
                    target: "tower_redis_session::suspicious",
                    refused,
                    "session values that did not open were read as missing"
                );
            }
        }
        #[cfg(not(feature = "value-encryption"))]
        let _ = (data, handle);
    }
}

#[cfg(feature = "value-encryption")]
mod sealing {
    use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
    use aes_gcm_siv::{Aes256GcmSiv, Nonce};
    use base64::Engine as _;
    use hmac::{Hmac, Mac};

    use crate::cookie::KeyRing;
    use crate::error::StoreError;
    use crate::id::SessionHandle;

    const PREFIX: &str = "~1";
    const NONCE: usize = 12;
    const TAG: usize = 16;
    /// Binds a value to this use, its session and its key name.
    const LABEL: &[u8] = b"tower-redis-session value v1\0";
    /// Derives the value key from a ring key (HMAC-SHA256 as the PRF), so a key shared
    /// with the cookie codec is never used for two purposes.
    const KDF_LABEL: &[u8] = b"tower-redis-session value encryption key v1";
    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// The ring's keys as AEAD keys, newest first.
    pub(super) struct Sealer {
        keys: Vec<Aes256GcmSiv>,
    }

    impl std::fmt::Debug for Sealer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Sealer")
                .field("keys", &self.keys.len())
                .finish_non_exhaustive()
        }
    }

    /// The stored length of a sealed value of `len` bytes.
    pub(super) fn sealed_len(len: usize) -> usize {
        PREFIX.len() + (4 * (NONCE + len + TAG)).div_ceil(3)
    }

    fn aad(handle: SessionHandle, name: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(LABEL.len() + 16 + name.len());
        aad.extend_from_slice(LABEL);
        aad.extend_from_slice(uuid::Uuid::from(handle).as_bytes());
        aad.extend_from_slice(name.as_bytes());
        aad
    }

    impl Sealer {
        pub(super) fn new(ring: &KeyRing) -> Self {
            let keys = ring
                .keys()
                .iter()
                .map(|key| {
                    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.master())
                        .expect("HMAC takes a key of any length");
                    mac.update(KDF_LABEL);
                    let derived = mac.finalize().into_bytes();
                    Aes256GcmSiv::new_from_slice(&derived).expect("a 32-byte key")
                })
                .collect();
            Self { keys }
        }

        pub(super) fn seal(
            &self,
            handle: SessionHandle,
            name: &str,
            json: &str,
        ) -> Result<String, StoreError> {
            let failed = |_| StoreError::Protocol("session value could not be sealed");
            let mut nonce = [0u8; NONCE];
            getrandom::fill(&mut nonce).map_err(failed)?;
            let aad = aad(handle, name);
            let payload = Payload {
                msg: json.as_bytes(),
                aad: &aad,
            };
            let sealed = self.keys[0]
                .encrypt(Nonce::from_slice(&nonce), payload)
                .map_err(|_| StoreError::Protocol("session value could not be sealed"))?;
            let mut bytes = Vec::with_capacity(NONCE + sealed.len());
            bytes.extend_from_slice(&nonce);
            bytes.extend_from_slice(&sealed);
            let mut out = String::with_capacity(sealed_len(json.len()));
            out.push_str(PREFIX);
            B64.encode_string(&bytes, &mut out);
            Ok(out)
        }

        /// The plain value, or `None` if it is not a value this ring sealed for this
        /// session and name.
        pub(super) fn open(
            &self,
            handle: SessionHandle,
            name: &str,
            stored: &str,
        ) -> Option<String> {
            let bytes = B64.decode(stored.strip_prefix(PREFIX)?).ok()?;
            if bytes.len() < NONCE + TAG {
                return None;
            }
            let (nonce, sealed) = bytes.split_at(NONCE);
            let aad = aad(handle, name);
            self.keys.iter().find_map(|key| {
                let payload = Payload {
                    msg: sealed,
                    aad: &aad,
                };
                let plain = key.decrypt(Nonce::from_slice(nonce), payload).ok()?;
                String::from_utf8(plain).ok()
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::cookie::Key;

        #[test]
        fn sealed_values_open_only_where_they_were_sealed() {
            let old = Key::generate();
            let new = Key::generate();
            let (a, b) = (SessionHandle::generate(), SessionHandle::generate());
            let sealer = Sealer::new(&KeyRing::from(old.clone()));
            let v = sealer.seal(a, "cart", r#"{"items":3}"#).unwrap();
            assert_eq!(v.len(), sealed_len(11));
            assert!(!v.contains("items"));
            assert_ne!(
                v,
                sealer.seal(a, "cart", r#"{"items":3}"#).unwrap(),
                "a fresh nonce each time"
            );
            assert_eq!(
                sealer.open(a, "cart", &v).as_deref(),
                Some(r#"{"items":3}"#)
            );
            assert_eq!(sealer.open(a, "other", &v), None, "moved to another key");
            assert_eq!(sealer.open(b, "cart", &v), None, "moved to another session");
            assert_eq!(sealer.open(a, "cart", r#"{"items":3}"#), None, "plain");
            let mut altered = v.clone().into_bytes();
            let last = altered.len() - 1;
            altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap();
            assert_eq!(sealer.open(a, "cart", &altered), None, "altered");
            for junk in ["~1", "~1!!", "~1AAAA", "~", ""] {
                assert_eq!(sealer.open(a, "cart", junk), None);
            }
            // Rotation: the new ring seals with the new key and still opens the old.
            let rotated = Sealer::new(&KeyRing::from(new.clone()).with_older(old));
            assert_eq!(
                rotated.open(a, "cart", &v).as_deref(),
                Some(r#"{"items":3}"#)
            );
            let w = rotated.seal(a, "cart", "1").unwrap();
            assert_eq!(sealer.open(a, "cart", &w), None, "sealed with the new key");
            // A removed key: its values no longer open.
            assert_eq!(Sealer::new(&KeyRing::from(new)).open(a, "cart", &v), None);
        }

        #[test]
        fn debug_shows_no_key() {
            let sealer = Sealer::new(&KeyRing::from(Key::generate()));
            assert_eq!(format!("{sealer:?}"), "Sealer { keys: 1, .. }");
        }
    }
}
