//! Every Redis key name this crate uses, in one place.
//!
//! All keys of one session (and, with per-user sessions, of one user) share a
//! `{hash tag}`, so every script touches a single Redis Cluster slot.

use crate::SessionKey;

/// `<ns>:{<tag>}:s:<sha256(secret)>`: the hash holding one session.
pub(crate) fn session(namespace: &str, key: &SessionKey) -> String {
    let mut k = String::with_capacity(namespace.len() + key.tag().len() + key.hash().len() + 7);
    k.push_str(namespace);
    k.push_str(":{");
    k.push_str(key.tag());
    k.push_str("}:s:");
    k.push_str(key.hash());
    k
}
