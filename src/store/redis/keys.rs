//! Every Redis key name this crate uses, in one place.
//!
//! All keys of one session, and once logged in all keys of its user, share a
//! `{hash tag}`, so every script touches a single Redis Cluster slot.

use crate::id::SessionKey;

/// `<ns>:{<tag>}:s:<sha256(secret)>`: the hash holding one session.
pub(crate) fn session(namespace: &str, key: &SessionKey) -> String {
    let mut k = session_prefix(namespace, key.tag());
    k.push_str(key.hash());
    k
}

/// `<ns>:{<tag>}:s:`: what precedes a session's hash; index members are the rest.
pub(crate) fn session_prefix(namespace: &str, tag: &str) -> String {
    let mut k = slot_prefix(namespace, tag);
    k.push_str("s:");
    k
}

/// `<ns>:{<tag>}:`: what every key of one slot starts with. The token scripts build
/// their keys from it (all in the slot of their first declared key):
/// `a:<sha256>` access token, `r:<sha256>` refresh token, `t:<family>` token family,
/// `tf` the slot's family index, and `s:<sha256>` sessions.
pub(crate) fn slot_prefix(namespace: &str, tag: &str) -> String {
    let mut k = String::with_capacity(namespace.len() + tag.len() + 7 + 43);
    k.push_str(namespace);
    k.push_str(":{");
    k.push_str(tag);
    k.push_str("}:");
    k
}

/// `<ns>:{<tag>}:tf`: the token families of a slot, a sorted set of family ids scored
/// by the expiry of their last token (ms).
#[cfg(feature = "tokens")]
pub(crate) fn family_index(namespace: &str, tag: &str) -> String {
    format!("{namespace}:{{{tag}}}:tf")
}

/// `<ns>:{<tag>}:u`: the user index of a slot, a sorted set of session hashes scored by
/// expiry time (ms).
pub(crate) fn user_index(namespace: &str, tag: &str) -> String {
    format!("{namespace}:{{{tag}}}:u")
}

/// `<ns>:{<tag>}:uh`: the handle map of a slot's user index (index member -> handle and
/// user, `#handle` -> member). A logged-in session is live only while its entry is
/// there: losing the map (evicted, deleted) ends the user's sessions instead of leaving
/// them beyond revocation's reach.
pub(crate) fn handle_map(namespace: &str, tag: &str) -> String {
    format!("{namespace}:{{{tag}}}:uh")
}

/// `<ns>:salt`: 32 random bytes (base64), created once with `SET NX`, keying the
/// user-tag HMAC of this namespace.
pub(crate) fn salt(namespace: &str) -> String {
    format!("{namespace}:salt")
}

/// `<ns>:events`: the namespace's lifecycle event stream (standalone Redis).
pub(crate) fn events(namespace: &str) -> String {
    format!("{namespace}:events")
}

/// The hash tag and index member of a session key of `namespace`, or `None` for any
/// other key.
pub(crate) fn parse_session<'k>(namespace: &str, key: &'k str) -> Option<(&'k str, &'k str)> {
    let rest = key.strip_prefix(namespace)?.strip_prefix(":{")?;
    let (tag, rest) = rest.split_once('}')?;
    let member = rest.strip_prefix(":s:")?;
    Some((tag, member))
}
