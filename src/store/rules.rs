//! The rules every write of a session follows, once: the TTL and the deadline cap, and
//! the size the limit bounds. `MemoryStore` and the session handle use them here; the
//! Redis scripts use the same rules from `RULES_LUA` (`scripts/rules.lua`, prepended to
//! both session-writing scripts), and `tests/stores_agree.rs`
//! (`rust_and_lua_rules_agree`) runs the two on random inputs in a real Redis.
//!
//! The index slack (a logged-in session's score in its user index is its expiry plus
//! half its TTL, so the index outlives it) and the per-user cap's eviction order exist
//! only in Redis's scripts and are written there once (`slack_of` in `rules.lua`,
//! `write.lua`'s cap); `MemoryStore` has no index to score.
// Public only under `store-internals` (store/mod.rs exports the module there).
#![cfg_attr(not(feature = "store-internals"), allow(unreachable_pub))]

use std::collections::HashMap;

/// The prefix of a data field in the stored record (`d:<key>`): what the size counts.
pub(crate) const DATA_PREFIX: &str = "d:";

/// `rules.lua`: the same rules for the Redis scripts (`ttl_of`, `d_len`,
/// `merged_size`, `slack_of`).
pub const RULES_LUA: &str = include_str!("redis/scripts/rules.lua");

/// The TTL a write leaves: `min(idle, deadline - now)`, where idle is the session's
/// override or the layer's default. Zero or less once the deadline has passed: the
/// session must be deleted, never extended.
pub fn ttl(idle_ms: i64, deadline_ms: Option<i64>, now_ms: i64) -> i64 {
    match deadline_ms {
        Some(deadline) => idle_ms.min(deadline.saturating_sub(now_ms)),
        None => idle_ms,
    }
}

/// What one data entry counts toward
/// [`with_max_session_size`](crate::SessionConfig::with_max_session_size): its key
/// (without the stored `d:` prefix) plus its serialized value, in bytes.
pub fn entry_size(key: &str, value: &str) -> usize {
    entry_len(key, value.len())
}

/// [`entry_size`] of key `key` with a value of `value_len` bytes.
pub(crate) fn entry_len(key: &str, value_len: usize) -> usize {
    key.len() + value_len
}

/// The session's data size: the sum of [`entry_size`] over its data fields (`fields`
/// as stored, the data ones prefixed `d:`). The scripts keep it up to date incrementally
/// (`merged_size` in `rules.lua`: what is stored, minus what a patch replaces, plus what
/// it sets), in the script itself so the limit holds for the merged session under
/// concurrent writers; the test holds that increment equal to this sum.
pub fn data_size(fields: &HashMap<String, String>) -> usize {
    fields
        .iter()
        .filter_map(|(k, v)| Some(entry_size(k.strip_prefix(DATA_PREFIX)?, v)))
        .sum()
}
