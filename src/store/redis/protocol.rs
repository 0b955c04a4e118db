//! The protocol between [`RedisStore`](super::RedisStore) and its session scripts,
//! typed on the Rust side: one type per script call, which lays out its keys and
//! arguments in the order the script reads them (the script's header says the same),
//! and one decoder per reply into an enum.
//!
//! The codes both sides share (write modes, limit policies, revoke modes, reply codes)
//! are defined once, in [`CODES`], and reach the scripts as a generated Lua prelude; the
//! scripts use the names, never the letters, and a unit test checks that they do. The
//! record's field names are defined once in `store/record.rs` and reach the scripts the
//! same way, as `F_*` locals (`F_U` is `m:u`): a script spells no field name (a unit
//! test checks), and every event name it records is an
//! [`EventKind`](crate::events::EventKind)'s.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::invocation::Invocation;

use super::keys;
use crate::config::{LimitPolicy, SessionLimit};
use crate::error::StoreError;
use crate::id::{SessionHandle, SessionKey};
use crate::store::record::{self, Clock, Patch, WriteOutcome};
use crate::store::rules;
use crate::store::{ListCursor, Revoke, SessionInfo, SessionPage};

/// Every code shared with the scripts: (Lua name, value).
pub(super) const CODES: &[(&str, &str)] = &[
    ("MODE_CREATE", MODE_CREATE),
    ("MODE_ROTATE", MODE_ROTATE),
    ("MODE_LOGIN", MODE_LOGIN),
    ("POLICY_REJECT", POLICY_REJECT),
    ("POLICY_EVICT", POLICY_EVICT),
    ("REVOKE_HANDLE", REVOKE_HANDLE),
    ("REVOKE_ALL", REVOKE_ALL),
    ("REVOKE_OTHERS", REVOKE_OTHERS),
    ("META_UNCHANGED", META_UNCHANGED),
    ("META_REMOVED", META_REMOVED),
    ("REPLY_GONE", REPLY_GONE),
    ("REPLY_EXISTS", REPLY_EXISTS),
    ("REPLY_REJECTED", REPLY_REJECTED),
    ("REPLY_TOO_LARGE", REPLY_TOO_LARGE),
    ("TOKEN_ISSUE", TOKEN_ISSUE),
    ("TOKEN_AUTH", TOKEN_AUTH),
    ("TOKEN_REFRESH", TOKEN_REFRESH),
    ("TOKEN_REVOKE_ACCESS", TOKEN_REVOKE_ACCESS),
    ("TOKEN_REVOKE_REFRESH", TOKEN_REVOKE_REFRESH),
    ("TOKEN_REVOKE_FAMILY", TOKEN_REVOKE_FAMILY),
    ("TOKEN_LIST", TOKEN_LIST),
    ("TOKEN_REVOKE_USER", TOKEN_REVOKE_USER),
    ("TOKEN_KIND_ACCESS", TOKEN_KIND_ACCESS),
    ("TOKEN_KIND_ID", TOKEN_KIND_ID),
    ("TOKEN_OK", TOKEN_OK),
    ("TOKEN_GONE", TOKEN_GONE),
    ("TOKEN_COLLISION", TOKEN_COLLISION),
    ("TOKEN_INVALID", TOKEN_INVALID),
    ("TOKEN_GRACE", TOKEN_GRACE),
    ("TOKEN_REUSE", TOKEN_REUSE),
    ("TOKEN_WRONG_CLIENT", TOKEN_WRONG_CLIENT),
    ("REFRESH_LIVE", REFRESH_LIVE),
    ("REFRESH_CONSUMED", REFRESH_CONSUMED),
];

const MODE_CREATE: &str = "c";
const MODE_ROTATE: &str = "r";
const MODE_LOGIN: &str = "l";
const POLICY_REJECT: &str = "r";
const POLICY_EVICT: &str = "e";
const REVOKE_HANDLE: &str = "h";
const REVOKE_ALL: &str = "a";
const REVOKE_OTHERS: &str = "x";
// update.lua: a packed TTL input the patch leaves as it is, or removes.
const META_UNCHANGED: &str = "=";
const META_REMOVED: &str = "-";
const REPLY_GONE: &str = "0";
const REPLY_EXISTS: &str = "-1";
const REPLY_REJECTED: &str = "-2";
const REPLY_TOO_LARGE: &str = "-3";
// The token script (`tokens.lua`): its operations and reply words.
pub(super) const TOKEN_ISSUE: &str = "issue";
pub(super) const TOKEN_AUTH: &str = "auth";
pub(super) const TOKEN_REFRESH: &str = "refresh";
pub(super) const TOKEN_REVOKE_ACCESS: &str = "revoke_access";
pub(super) const TOKEN_REVOKE_REFRESH: &str = "revoke_refresh";
pub(super) const TOKEN_REVOKE_FAMILY: &str = "revoke_family";
pub(super) const TOKEN_LIST: &str = "list";
pub(super) const TOKEN_REVOKE_USER: &str = "revoke_user";
// The kinds of token `auth` looks up: the letter of their keys (token_lib.lua).
pub(super) const TOKEN_KIND_ACCESS: &str = "a";
pub(super) const TOKEN_KIND_ID: &str = "i";
pub(super) const TOKEN_OK: &str = "ok";
pub(super) const TOKEN_GONE: &str = "gone";
pub(super) const TOKEN_COLLISION: &str = "collision";
pub(super) const TOKEN_INVALID: &str = "invalid";
pub(super) const TOKEN_GRACE: &str = "grace";
pub(super) const TOKEN_REUSE: &str = "reuse";
pub(super) const TOKEN_WRONG_CLIENT: &str = "wrong_client";
// A refresh token record's state (its `s` field).
const REFRESH_LIVE: &str = "l";
const REFRESH_CONSUMED: &str = "c";

/// `local NAME = 'value'` for every code, prepended to the session scripts, then the
/// positions of the packed metadata (record.rs): `T_E` is the 1-based position of
/// `m:e` in `m:t`, `L_D` that of `m:d` in `m:l`, `N_H` that of `m:h` in `m:n`, and so
/// on; `T_MATCH` and `L_MATCH` are patterns whose captures are the values of `m:t` and
/// `m:l` (`{string.match(v, T_MATCH)}` is empty for a malformed value).
pub(super) static PRELUDE: LazyLock<String> = LazyLock::new(|| {
    let mut prelude: String = CODES
        .iter()
        .map(|(name, value)| format!("local {name} = '{value}'\n"))
        .collect();
    for (packed, fields) in record::PACKED {
        let prefix = packed.trim_start_matches("m:").to_uppercase();
        for (i, field) in fields.iter().enumerate() {
            let suffix = field.trim_start_matches("m:").to_uppercase();
            prelude.push_str(&format!("local {prefix}_{suffix} = {}\n", i + 1));
        }
        let captures = vec!["([^,]*)"; fields.len()].join(",");
        prelude.push_str(&format!("local {prefix}_MATCH = '^{captures}$'\n"));
    }
    // The record's field names, from the one table in `store/record.rs`: `F_U` is
    // 'm:u', `F_UA` 'm:ua'. Scripts never spell a field themselves (a unit test checks).
    for field in record::FIELDS {
        let suffix = field.trim_start_matches("m:").to_uppercase();
        prelude.push_str(&format!("local F_{suffix} = '{field}'\n"));
    }
    prelude.push_str(&format!("local CLOCK_SLACK_MS = {CLOCK_SLACK_MS}\n"));
    prelude.push_str(&format!("local CHUNK = {CHUNK}\n"));
    prelude.push_str(CLOCK_LUA);
    prelude
});

/// One clock for every instance: a script takes "now" from Redis (`TIME`) whenever the
/// calling instance's clock is more than [`CLOCK_SLACK_MS`] off it, so a skewed instance
/// can move a deadline or an expiry check by at most that much. (Within the slack the
/// caller's now stands: instances kept by NTP agree to milliseconds, and tests can
/// drive time.) `clock(i)` settles `ARGV[i]` (the caller's now, Unix ms) and returns
/// it. A time the caller derived from its own clock travels as `+<ms>` ("that long
/// after now", `record::relative`) and is resolved against the settled now.
const CLOCK_LUA: &str = "local function clock(i)
  local t = redis.call('TIME')
  local server = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local caller = tonumber(ARGV[i])
  if not caller or math.abs(caller - server) > CLOCK_SLACK_MS then
    ARGV[i] = tostring(server)
  end
  return tonumber(ARGV[i])
end
";

/// How far an instance's clock may be from Redis's before the scripts use Redis's.
pub(super) const CLOCK_SLACK_MS: i64 = 1_000;
/// Most values a script passes to one `HSET` or `HDEL` (an even number, so pairs stay
/// whole): Lua's `unpack` fails past ~8,000 values, and a session's key count is bounded
/// only per request (concurrent requests may merge more).
const CHUNK: usize = 1000;
/// A script made of the prelude and `parts`.
pub(super) fn script(parts: &[&str]) -> Script {
    let mut source = PRELUDE.clone();
    for part in parts {
        source.push_str(part);
    }
    Script::new(&source)
}

/// The event stream a script appends to: its key (`""` for none) and approximate
/// `MAXLEN`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stream<'a> {
    pub(super) key: &'a str,
    pub(super) max_len: usize,
}

fn flag(on: bool) -> &'static str {
    if on { "1" } else { "0" }
}

/// The patch's arguments, last in both write scripts: field/value pairs, then the
/// fields to delete.
fn patch_args(inv: &mut Invocation<'_>, patch: &Patch) {
    for (f, v) in &patch.set {
        inv.arg(f).arg(v);
    }
    for f in &patch.delete {
        inv.arg(f);
    }
}

mod session;
mod user;

pub(super) use self::session::{Update, Write, WriteKind};
pub(super) use self::user::{Delete, Expired, List, RevokeStep, Take};

#[cfg(test)]
mod tests;
