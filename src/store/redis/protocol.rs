//! The protocol between [`RedisStore`](super::RedisStore) and its session scripts,
//! typed on the Rust side: one type per script call, which lays out its keys and
//! arguments in the order the script reads them (the script's header says the same),
//! and one decoder per reply into an enum.
//!
//! The codes both sides share (write modes, limit policies, revoke modes, reply codes)
//! are defined once, in [`CODES`], and reach the scripts as a generated Lua prelude; the
//! scripts use the names, never the letters, and a unit test checks that they do. The
//! record's field names are defined once in `store/record.rs`; a unit test checks every
//! field name a script spells against them, and every event name against
//! [`EventKind`](crate::events::EventKind).

use std::sync::LazyLock;
use std::time::Duration;

use redis::{Script, ScriptInvocation};

use super::keys;
use crate::config::{LimitPolicy, SessionLimit};
use crate::error::StoreError;
use crate::id::{SessionHandle, SessionKey};
use crate::store::record::{self, Clock, Patch, WriteOutcome};
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
/// `m:e` in `m:t`, `N_H` that of `m:h` in `m:n`, and so on.
pub(super) static PRELUDE: LazyLock<String> = LazyLock::new(|| {
    let mut prelude: String = CODES
        .iter()
        .map(|(name, value)| format!("local {name} = '{value}'\n"))
        .collect();
    for (prefix, fields) in [("T", &record::TIMES[..]), ("N", &record::IDENTITY[..])] {
        for (i, field) in fields.iter().enumerate() {
            let suffix = field.trim_start_matches("m:").to_uppercase();
            prelude.push_str(&format!("local {prefix}_{suffix} = {}\n", i + 1));
        }
    }
    prelude.push_str(&format!("local CLOCK_SLACK_MS = {CLOCK_SLACK_MS}\n"));
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
fn patch_args(inv: &mut ScriptInvocation<'_>, patch: &Patch) {
    for (f, v) in &patch.set {
        inv.arg(f).arg(v);
    }
    for f in &patch.delete {
        inv.arg(f);
    }
}

/// `update.lua`: an existing session's changed fields and TTL.
///
/// The hot path, so the script gets its inputs precomputed: the data bytes the patch
/// sets, the data fields it touches (each once, for the size of what they replace),
/// and the packed metadata it changes as three values.
pub(super) struct Update<'a> {
    pub(super) namespace: &'a str,
    pub(super) key: &'a SessionKey,
    pub(super) patch: &'a Patch,
    pub(super) clock: Clock,
    pub(super) stream: Stream<'a>,
    /// Read the key once written, so Redis tracks it again for this connection (the
    /// local cache: a write under `NOLOOP` ends this connection's tracking of it).
    pub(super) track: bool,
}

impl Update<'_> {
    /// The invocation, or an error for a patch an update never carries: one that
    /// changes the user, handle or creation time (a login or a new session does that).
    pub(super) fn invocation<'s>(
        &self,
        script: &'s Script,
    ) -> Result<ScriptInvocation<'s>, StoreError> {
        let patch = self.patch;
        let is_data = |f: &str| f.starts_with(record::DATA_PREFIX);
        let fixed = [record::USER, record::HANDLE, record::CREATED];
        if patch
            .set
            .iter()
            .map(|(f, _)| f)
            .chain(&patch.delete)
            .any(|f| fixed.contains(&f.as_str()))
        {
            return Err(StoreError::Protocol(
                "an update cannot change the user, handle or creation time",
            ));
        }
        // What the three packed TTL inputs become.
        let change = |field: &str| {
            if let Some((_, v)) = patch.set.iter().rev().find(|(f, _)| f == field) {
                v.as_str()
            } else if patch.delete.iter().any(|f| f == field) {
                META_REMOVED
            } else {
                META_UNCHANGED
            }
        };
        let touched: Vec<&str> = if patch.clear_data {
            Vec::new() // what they replace is all dropped
        } else {
            patch
                .set
                .iter()
                .map(|(f, _)| f)
                .chain(&patch.delete)
                .map(String::as_str)
                .filter(|f| is_data(f))
                .collect()
        };
        let added: usize = patch
            .set
            .iter()
            .filter_map(|(f, v)| Some(f.strip_prefix(record::DATA_PREFIX)?.len() + v.len()))
            .sum();
        let packed = [record::IDLE, record::DEADLINE, record::PERSISTENT];
        let sets: Vec<&(String, String)> = patch
            .set
            .iter()
            .filter(|(f, _)| !packed.contains(&f.as_str()))
            .collect();
        let mut inv = script.prepare_invoke();
        inv.key(keys::session(self.namespace, self.key))
            .key(keys::user_index(self.namespace, self.key.tag()))
            .arg(self.clock.now_ms)
            .arg(self.clock.default_idle_ms)
            .arg(flag(patch.clear_data))
            .arg(self.key.hash())
            .arg(self.stream.key)
            .arg(self.stream.max_len)
            .arg(patch.events)
            .arg(patch.max_size)
            .arg(added)
            .arg(change(record::IDLE))
            .arg(change(record::DEADLINE))
            .arg(change(record::PERSISTENT))
            .arg(flag(self.track))
            .arg(touched.len())
            .arg(sets.len());
        for f in touched {
            inv.arg(f);
        }
        for (f, v) in sets {
            inv.arg(f).arg(v);
        }
        for f in patch
            .delete
            .iter()
            .filter(|f| !packed.contains(&f.as_str()))
        {
            inv.arg(f);
        }
        Ok(inv)
    }

    /// `{ttl, version}` when written (the TTL > 0, and the record's version after the
    /// write), `{0}` if the session is gone, or `{-size}` for the merged data's size.
    pub(super) fn decode(reply: &[i64]) -> Result<(WriteOutcome, Option<u64>), StoreError> {
        Ok(match reply {
            [0] => (WriteOutcome::Gone, None),
            [ms, version] if *ms > 0 => (
                WriteOutcome::Written {
                    ttl: Duration::from_millis(ms.unsigned_abs()),
                    evicted: Vec::new(),
                },
                Some(version.unsigned_abs()),
            ),
            [size] if *size < 0 => (
                WriteOutcome::TooLarge {
                    size: usize::try_from(size.unsigned_abs()).unwrap_or(usize::MAX),
                },
                None,
            ),
            _ => return Err(StoreError::Protocol("unexpected update reply")),
        })
    }
}

/// How `write.lua` writes.
#[derive(Clone, Copy, Debug)]
pub(super) enum WriteKind<'a> {
    /// Only if absent.
    Create,
    /// Rename `from` to the key, then update.
    Rotate { from: &'a SessionKey },
    /// Create, index in the user's slot, enforce the limit.
    Login { limit: Option<SessionLimit> },
}

/// `write.lua`: a session created, moved to a new id, or logged in.
pub(super) struct Write<'a> {
    pub(super) namespace: &'a str,
    pub(super) key: &'a SessionKey,
    pub(super) kind: WriteKind<'a>,
    pub(super) patch: &'a Patch,
    pub(super) clock: Clock,
    pub(super) stream: Stream<'a>,
}

impl Write<'_> {
    pub(super) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(keys::session(self.namespace, self.key))
            .key(keys::user_index(self.namespace, self.key.tag()));
        let (mode, limit, from) = match self.kind {
            WriteKind::Create => (MODE_CREATE, None, None),
            WriteKind::Rotate { from } => (MODE_ROTATE, None, Some(from)),
            WriteKind::Login { limit } => (MODE_LOGIN, limit, None),
        };
        if let Some(from) = from {
            inv.key(keys::session(self.namespace, from));
        }
        let policy = match limit.map(|l| l.policy) {
            Some(LimitPolicy::EvictOldest) => POLICY_EVICT,
            _ => POLICY_REJECT,
        };
        inv.arg(mode)
            .arg(self.clock.now_ms)
            .arg(self.clock.default_idle_ms)
            .arg(flag(self.patch.clear_data))
            .arg(limit.map_or(0, |l| l.max))
            .arg(policy)
            .arg(self.key.hash())
            .arg(from.map_or("", |f| f.hash()))
            .arg(self.patch.set.len())
            .arg(self.stream.key)
            .arg(self.stream.max_len)
            .arg(self.patch.events)
            .arg(self.patch.max_size);
        patch_args(&mut inv, self.patch);
        inv
    }

    /// `{ttl, evicted handles...}` when written; otherwise a reply code (with the size
    /// for [`REPLY_TOO_LARGE`]).
    pub(super) fn decode(reply: Vec<String>) -> Result<WriteOutcome, StoreError> {
        let bad = || StoreError::Protocol("unexpected write script reply");
        let (code, rest) = reply.split_first().ok_or_else(bad)?;
        Ok(match code.as_str() {
            REPLY_GONE => WriteOutcome::Gone,
            REPLY_EXISTS => WriteOutcome::Collision,
            REPLY_REJECTED => WriteOutcome::Rejected,
            REPLY_TOO_LARGE => WriteOutcome::TooLarge {
                size: rest.first().and_then(|s| s.parse().ok()).ok_or_else(bad)?,
            },
            ttl => match ttl.parse::<u64>() {
                Ok(ms) if ms > 0 => WriteOutcome::Written {
                    ttl: Duration::from_millis(ms),
                    evicted: rest
                        .iter()
                        .filter_map(|h| SessionHandle::parse(h))
                        .collect(),
                },
                _ => return Err(bad()),
            },
        })
    }
}

/// `delete.lua`: a logout.
pub(super) struct Delete<'a> {
    pub(super) namespace: &'a str,
    pub(super) key: &'a SessionKey,
    pub(super) now_ms: i64,
    pub(super) stream: Stream<'a>,
}

impl Delete<'_> {
    pub(super) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(keys::session(self.namespace, self.key))
            .key(keys::user_index(self.namespace, self.key.tag()))
            .arg(self.key.hash())
            .arg(self.now_ms)
            .arg(self.stream.key)
            .arg(self.stream.max_len);
        inv
    }

    /// The deleted session's handle and user (`""` when absent), or `None` if there
    /// was no session.
    pub(super) fn decode(reply: Vec<String>) -> Option<(String, String)> {
        match <[String; 2]>::try_from(reply) {
            Ok([handle, user]) => Some((handle, user)),
            Err(_) => None,
        }
    }
}

/// `take.lua`: read and delete (the first half of a login).
pub(super) struct Take<'a> {
    pub(super) namespace: &'a str,
    pub(super) key: &'a SessionKey,
}

impl Take<'_> {
    pub(super) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(keys::session(self.namespace, self.key))
            .key(keys::user_index(self.namespace, self.key.tag()))
            .arg(self.key.hash());
        inv
    }
}

/// `list.lua`: one page of a user's sessions.
pub(super) struct List<'a> {
    pub(super) namespace: &'a str,
    pub(super) tag: &'a str,
    pub(super) user_id: &'a str,
    pub(super) cursor: ListCursor,
    pub(super) page_size: usize,
    pub(super) now_ms: i64,
    pub(super) stream: Stream<'a>,
}

impl List<'_> {
    pub(super) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(keys::user_index(self.namespace, self.tag))
            .arg(keys::session_prefix(self.namespace, self.tag))
            .arg(self.now_ms)
            .arg(self.user_id)
            .arg(self.stream.key)
            .arg(self.stream.max_len)
            .arg(self.cursor.position())
            .arg(self.page_size);
        inv
    }

    /// `{next rank or "", then 6 strings per session: key hash, handle, created, last
    /// seen, ip, user agent}`.
    pub(super) fn decode(reply: Vec<String>) -> Result<SessionPage, StoreError> {
        let Some((next, flat)) = reply.split_first() else {
            return Err(StoreError::Protocol("unexpected list script reply"));
        };
        let next = match next.as_str() {
            "" => None,
            n => Some(ListCursor::from_position(n.parse().map_err(|_| {
                StoreError::Protocol("list script returned a non-number")
            })?)),
        };
        let opt = |s: &String| (!s.is_empty()).then(|| s.clone());
        let sessions = flat
            .chunks_exact(7)
            .filter_map(|r| {
                let info = SessionInfo::from_parts(
                    r[0].clone(),
                    SessionHandle::parse(&r[1])?,
                    r[2].parse().unwrap_or(0),
                    r[3].parse().unwrap_or(0),
                    opt(&r[4]),
                    opt(&r[5]),
                );
                Some(info.with_details((!r[6].is_empty()).then_some(r[6].as_str())))
            })
            .collect();
        Ok(SessionPage::new(sessions, next))
    }
}

/// One bounded step of `revoke.lua`.
pub(super) struct RevokeStep<'a> {
    pub(super) namespace: &'a str,
    pub(super) tag: &'a str,
    pub(super) user_id: &'a str,
    pub(super) which: Revoke<'a>,
    pub(super) now_ms: i64,
    pub(super) stream: Stream<'a>,
    /// How many entries of the session index and of the token-family index the previous
    /// step kept (0, 0 on the first): the step reads from rank 0 that many plus a batch,
    /// so a kept entry re-scored between steps cannot make the walk skip one.
    pub(super) from: (u64, u64),
    /// The first step of the call (log out everywhere and revoke others then cut the
    /// handle map, which ends the sessions at once, before walking the index).
    pub(super) first: bool,
}

/// What a revoke step did and what the next one passes back (`None`: that part is
/// done).
#[derive(Debug)]
pub(super) struct RevokeProgress {
    pub(super) next_session: Option<u64>,
    pub(super) next_family: Option<u64>,
    pub(super) revoked: Vec<SessionHandle>,
}

impl RevokeStep<'_> {
    pub(super) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let (mode, arg) = match self.which {
            Revoke::Handle(h) => (REVOKE_HANDLE, h.to_string()),
            Revoke::All => (REVOKE_ALL, String::new()),
            Revoke::AllExcept(keep) => (REVOKE_OTHERS, keep.hash().to_owned()),
        };
        let reason = crate::events::EventKind::Revoked(self.which.reason())
            .reason()
            .unwrap_or_default();
        let mut inv = script.prepare_invoke();
        inv.key(keys::user_index(self.namespace, self.tag))
            .arg(keys::session_prefix(self.namespace, self.tag))
            .arg(self.now_ms)
            .arg(self.user_id)
            .arg(mode)
            .arg(arg)
            .arg(self.stream.key)
            .arg(self.stream.max_len)
            .arg(reason)
            .arg(self.from.0)
            .arg(self.from.1)
            .arg(if self.first { "1" } else { "0" });
        inv
    }

    /// `{sessions kept, families kept, revoked handles...}`, a count `""` once that part
    /// is done.
    pub(super) fn decode(reply: Vec<String>) -> Result<RevokeProgress, StoreError> {
        let [next_session, next_family, handles @ ..] = &reply[..] else {
            return Err(StoreError::Protocol("unexpected revoke script reply"));
        };
        let rank = |s: &str| -> Result<Option<u64>, StoreError> {
            if s.is_empty() {
                return Ok(None);
            }
            s.parse()
                .map(Some)
                .map_err(|_| StoreError::Protocol("revoke script returned a non-number"))
        };
        Ok(RevokeProgress {
            next_session: rank(next_session)?,
            next_family: rank(next_family)?,
            revoked: handles
                .iter()
                .filter_map(|h| SessionHandle::parse(h))
                .collect(),
        })
    }
}

/// `expired.lua`: a session key expired; drop it from its user's index and report it
/// once.
pub(super) struct Expired<'a> {
    pub(super) namespace: &'a str,
    pub(super) tag: &'a str,
    pub(super) member: &'a str,
    pub(super) now_ms: i64,
    pub(super) stream: Stream<'a>,
}

impl Expired<'_> {
    pub(super) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(keys::user_index(self.namespace, self.tag))
            .arg(self.member)
            .arg(self.now_ms)
            .arg(self.stream.key)
            .arg(self.stream.max_len);
        inv
    }

    /// The expired session's handle and user if this call reported it.
    pub(super) fn decode(reply: Vec<String>) -> Option<(SessionHandle, String)> {
        match <[String; 2]>::try_from(reply) {
            Ok([handle, user]) => Some((SessionHandle::parse(&handle)?, user)),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests;
