//! The Lua scripts of the session store, each with the libraries it is built from.

use std::sync::LazyLock;

use redis::Script;

use super::protocol;
use crate::store::rules::RULES_LUA;

pub(super) static WRITE: LazyLock<Script> = LazyLock::new(|| {
    protocol::script(&[
        EVENTS_LIB,
        RULES_LUA,
        WRITE_LIB,
        include_str!("scripts/write.lua"),
    ])
});
pub(super) static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    protocol::script(&[
        EVENTS_LIB,
        RULES_LUA,
        WRITE_LIB,
        include_str!("scripts/update.lua"),
    ])
});
/// Shared by the two session-writing scripts (TTL rule, deletions, events).
pub(super) const WRITE_LIB: &str = include_str!("scripts/write_lib.lua");
pub(super) static TAKE: LazyLock<Script> =
    LazyLock::new(|| protocol::script(&[include_str!("scripts/take.lua")]));
/// Shared by the scripts that record lifecycle events.
pub(super) const EVENTS_LIB: &str = include_str!("scripts/events_lib.lua");
/// The token key layout and the family walks: revoke.lua (log out everywhere ends the
/// user's tokens too) and tokens.lua share it, so it is here whether or not the feature
/// `tokens` is on.
pub(super) const TOKEN_LIB: &str = include_str!("scripts/token_lib.lua");

pub(super) static DELETE: LazyLock<Script> =
    LazyLock::new(|| protocol::script(&[EVENTS_LIB, include_str!("scripts/delete.lua")]));
pub(super) static LIST: LazyLock<Script> =
    LazyLock::new(|| protocol::script(&[EVENTS_LIB, include_str!("scripts/list.lua")]));
pub(super) static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    protocol::script(&[EVENTS_LIB, TOKEN_LIB, include_str!("scripts/revoke.lua")])
});
/// [`RedisStore::check`]: runs a script that reads a key of the namespace.
pub(super) static CHECK: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call('EXISTS', KEYS[1])"));
pub(super) static EXPIRED: LazyLock<Script> =
    LazyLock::new(|| protocol::script(&[EVENTS_LIB, include_str!("scripts/expired.lua")]));
