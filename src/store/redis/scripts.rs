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
/// The hot path's script: the rules as they are, the other libraries behind `lib()`, so
/// a call that needs none of them (every read-modify-write but a rare one) does not
/// build their ~20 closures (~2 µs of Redis CPU).
pub(super) static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    protocol::script(&[
        RULES_LUA,
        "local function build_lib()\n",
        EVENTS_LIB,
        WRITE_LIB,
        UPDATE_LIB_END,
        include_str!("scripts/update.lua"),
    ])
});
/// The end of update.lua's `lib()`: the event stream from its arguments, and the
/// helpers it calls, built once per call at most.
const UPDATE_LIB_END: &str = "STREAM, MAXLEN = ARGV[5], ARGV[6]
return {drop_expired = drop_expired, delete_fields = delete_fields, reindex = reindex,
  hset_chunked = hset_chunked, record = record}
end
local LIB
local function lib()
  LIB = LIB or build_lib()
  return LIB
end
";
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
