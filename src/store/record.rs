//! The stored record: one hash per session, so a change writes only its fields.
//!
//! The fields of the record as the session layer and [`MemoryStore`](crate::MemoryStore)
//! see it:
//!
//! | field | meaning |
//! |---|---|
//! | `d:<name>` | the JSON value of session key `<name>` |
//! | `m:h` | public handle (UUID) |
//! | `m:c` | created (Unix ms) |
//! | `m:s` | last seen (Unix ms) |
//! | `m:e` | expires at (Unix ms): when the TTL set with the last write runs out |
//! | `m:d` | absolute deadline (Unix ms), absent when there is none |
//! | `m:i` | idle timeout override (ms), set by [`Session::set_expiry`](crate::Session::set_expiry) |
//! | `m:p` | persistent-cookie override (`1`/`0`) |
//! | `m:u` | user id, once logged in (never in the cookie) |
//! | `m:ip` | client IP at creation or login |
//! | `m:ua` | user agent at creation or login (at most 256 bytes) |
//! | `m:x` | the application's display details ([`SessionDetails`](crate::SessionDetails)), a JSON object |
//!
//! `m:e` lets a read know the remaining TTL from the one read it already makes, instead
//! of a second `PTTL` command.
//!
//! ## The packed layout (Redis)
//!
//! [`RedisStore`](crate::RedisStore) packs the fixed-format metadata into three fields,
//! so a read decodes a handful of reply elements instead of ~20, and the update script
//! (the hot path) rewrites one short field:
//!
//! | field | values, comma-separated (`''` for none) | written |
//! |---|---|---|
//! | `m:t` | [`TIMES`]: expires, last seen, data size, version | by every write |
//! | `m:l` | [`LIMITS`]: index score, idle override, deadline, persistent | when one changes |
//! | `m:n` | [`IDENTITY`]: created, handle | at creation |
//!
//! The data size ([`data_size`](super::rules::data_size)) is kept by every write so the size limit holds after
//! concurrent writes merge; the index score is the score last written to the user
//! index (expiry + slack); the version counts the writes of the hash, so the local
//! cache applies its own writes in the order Redis ran them. All three are the store's
//! own bookkeeping. A record without `m:t` and `m:l` (an earlier layout) is no session.
//! `m:u`, `m:ip`, `m:ua` (free text) and the `d:` fields stay fields of their own. The
//! user agent (at most 256 bytes of ASCII) is stored in pieces of at most 64 bytes:
//! `m:ua`, then `m:ua2` to `m:ua4` for what is longer ([`USER_AGENT_PIECES`]), and the
//! scripts that read it join them. Each packed field stays at most 64 bytes too (`m:t`
//! at most 13 + 13 + 10 + 10 digits), so a browser's session whose values are short
//! stays in Redis's compact listpack encoding (~5 bytes a field, against ~40 in a
//! hashtable). [`meta`] reads a metadata field from either layout.

use std::collections::HashMap;
use std::time::Duration;

use crate::id::SessionHandle;

pub(crate) use super::rules::DATA_PREFIX;
pub(crate) const HANDLE: &str = "m:h";
pub(crate) const CREATED: &str = "m:c";
pub(crate) const LAST_SEEN: &str = "m:s";
pub(crate) const EXPIRES: &str = "m:e";
pub(crate) const DEADLINE: &str = "m:d";
pub(crate) const IDLE: &str = "m:i";
pub(crate) const PERSISTENT: &str = "m:p";
pub(crate) const USER: &str = "m:u";
pub(crate) const IP: &str = "m:ip";
pub(crate) const USER_AGENT: &str = "m:ua";
/// Redis: the fields of the user agent, stored in pieces of at most [`PIECE`] bytes
/// (module docs); the first is [`USER_AGENT`].
pub(crate) const USER_AGENT_PIECES: [&str; 4] = [USER_AGENT, "m:ua2", "m:ua3", "m:ua4"];
/// Redis: the longest value of a packed or split field, Redis's default
/// `hash-max-listpack-value`.
pub(crate) const PIECE: usize = 64;
pub(crate) const DETAILS: &str = "m:x";
/// Redis: the packed times and TTL inputs (module docs).
pub(crate) const TIMES_FIELD: &str = "m:t";
/// Redis: the packed TTL inputs and index score (module docs).
pub(crate) const LIMITS_FIELD: &str = "m:l";
/// Redis: the packed creation time and handle (module docs).
pub(crate) const IDENTITY_FIELD: &str = "m:n";
/// Redis only, packed in `m:t`: the data's size in bytes, kept by the write scripts.
const SIZE: &str = "m:z";
/// Redis only, packed in `m:l`: the session's score in its user index (with slack).
/// A name of its own (`L_R` in the scripts): `m:x` is the details field.
const INDEX_SCORE: &str = "m:r";
/// Redis only, packed in `m:t`: how many writes the hash has had.
pub(crate) const VERSION: &str = "m:v";
/// What `m:t` holds, in order: what every write changes. The scripts index it by the
/// prelude's `T_*` numbers.
pub(crate) const TIMES: [&str; 4] = [EXPIRES, LAST_SEEN, SIZE, VERSION];
/// What `m:l` holds, in order (`L_*` in the scripts): what a write reads, and changes
/// only now and then.
pub(crate) const LIMITS: [&str; 4] = [INDEX_SCORE, IDLE, DEADLINE, PERSISTENT];
/// What `m:n` holds, in order (`N_*` in the scripts). The handle, which never contains
/// a comma, comes last.
pub(crate) const IDENTITY: [&str; 2] = [CREATED, HANDLE];
/// Every metadata field the scripts use, as the prelude's `F_*` names (`F_U` is
/// `m:u`): the one table of field names for Rust and Lua.
pub(crate) const FIELDS: &[&str] = &[
    HANDLE,
    CREATED,
    DEADLINE,
    IDLE,
    PERSISTENT,
    USER,
    IP,
    USER_AGENT,
    USER_AGENT_PIECES[1],
    USER_AGENT_PIECES[2],
    USER_AGENT_PIECES[3],
    DETAILS,
    TIMES_FIELD,
    LIMITS_FIELD,
    IDENTITY_FIELD,
];
/// The packed fields and what each holds (the scripts' `T_*`, `L_*` and `N_*`
/// positions are named after the field: `T` for `m:t`).
pub(crate) const PACKED: [(&str, &[&str]); 3] = [
    (TIMES_FIELD, &TIMES),
    (LIMITS_FIELD, &LIMITS),
    (IDENTITY_FIELD, &IDENTITY),
];

/// Where a packed field lives: the field and its position there.
fn packed_slot(name: &str) -> Option<(&'static str, usize)> {
    PACKED
        .iter()
        .find_map(|(packed, names)| names.iter().position(|f| *f == name).map(|i| (*packed, i)))
}

/// Metadata field `name` (e.g. [`HANDLE`]) of stored fields in either layout; `None`
/// when absent or empty.
pub(crate) fn meta<'a>(fields: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    if let Some((packed, i)) = packed_slot(name)
        && let Some(values) = fields.get(packed)
    {
        return values.split(',').nth(i).filter(|v| !v.is_empty());
    }
    fields.get(name).map(String::as_str)
}

/// Turns the packed layout into the per-field one (the scripts' own values, size and
/// index score, are dropped, and the user agent's pieces joined): for a record that is
/// written back as a patch.
pub(crate) fn unpack(fields: &mut HashMap<String, String>) {
    let rest: String = USER_AGENT_PIECES[1..]
        .iter()
        .filter_map(|f| fields.remove(*f))
        .collect();
    if let Some(ua) = fields.get_mut(USER_AGENT) {
        ua.push_str(&rest);
    }
    for (packed, names) in PACKED {
        let Some(values) = fields.remove(packed) else {
            continue;
        };
        for (name, value) in names.iter().zip(values.split(',')) {
            if !value.is_empty() && ![SIZE, INDEX_SCORE, VERSION].contains(name) {
                fields.insert((*name).to_owned(), value.to_owned());
            }
        }
    }
}

/// The raw fields of a stored session, as a store keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    fields: HashMap<String, String>,
}

impl Record {
    /// Builds a record from stored fields.
    pub fn from_fields(fields: HashMap<String, String>) -> Self {
        Self { fields }
    }

    /// The stored fields, in the layout the store keeps (see the module docs: Redis
    /// packs the metadata).
    pub fn fields(&self) -> &HashMap<String, String> {
        &self.fields
    }

    /// Field `name` (data or metadata, e.g. `m:e`) in either layout; `None` when absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        meta(&self.fields, name)
    }

    /// The fields in the per-field layout, whichever layout the store keeps (a packed
    /// store's own bookkeeping, data size, index score and version, left out).
    pub fn unpacked(&self) -> HashMap<String, String> {
        let mut fields = self.fields.clone();
        unpack(&mut fields);
        fields
    }

    pub(crate) fn into_fields(self) -> HashMap<String, String> {
        self.fields
    }
}

/// A change to one session: fields to set and to delete, applied atomically.
///
/// Only the fields a request changed are written, so concurrent requests that change
/// different keys of one session never overwrite each other.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patch {
    pub(crate) clear_data: bool,
    pub(crate) set: Vec<(String, String)>,
    pub(crate) delete: Vec<String>,
    /// Lifecycle events this write records once it happens (space-separated names),
    /// for stores with a durable event log.
    pub(crate) events: &'static str,
    /// Most data bytes ([`data_size`](super::rules::data_size)) the session may hold after the patch; 0: none.
    pub(crate) max_size: usize,
}

impl Patch {
    /// Adds fields to set.
    pub fn set_fields(&mut self, fields: impl IntoIterator<Item = (String, String)>) {
        self.set.extend(fields);
    }

    /// Adds fields to delete.
    pub fn delete_fields(&mut self, fields: impl IntoIterator<Item = String>) {
        self.delete.extend(fields);
    }

    /// Deletes every `d:` (data) field before the rest of the patch applies.
    pub fn clear_all_data(&mut self) {
        self.clear_data = true;
    }

    /// Whether every `d:` field is deleted before `set` is applied.
    pub fn clear_data(&self) -> bool {
        self.clear_data
    }

    /// The most data bytes (keys plus values) the session may hold once this patch is
    /// merged with what is stored; 0 for no limit. A store refuses a write that would
    /// pass it with [`WriteOutcome::TooLarge`], writing nothing.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Fields to set.
    pub fn set(&self) -> &[(String, String)] {
        &self.set
    }

    /// Fields to delete.
    pub fn delete(&self) -> &[String] {
        &self.delete
    }

    /// The lifecycle events this write records if it happens, space-separated
    /// (`created`, `login`, `id_rotated`, `refreshed`), for a store that logs events
    /// in the same atomic step as the change.
    pub fn events(&self) -> &'static str {
        self.events
    }

    /// Applies the patch to a field map (the reference semantics of every store).
    pub fn apply_to(&self, fields: &mut HashMap<String, String>) {
        if self.clear_data {
            fields.retain(|k, _| !k.starts_with(DATA_PREFIX));
        }
        for k in &self.delete {
            fields.remove(k);
        }
        for (k, v) in &self.set {
            fields.insert(k.clone(), v.clone());
        }
    }
}

/// How a store writes a session.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum WriteMode<'a> {
    /// Create a new session; fails with [`WriteOutcome::Collision`] if the key exists.
    Create,
    /// Update an existing session; fails with [`WriteOutcome::Gone`] if it does not exist.
    Update,
    /// Move the session at `from` to the new key (same hash tag), then apply the patch.
    /// `Gone` if `from` no longer exists, `Collision` if the new key exists.
    Rotate {
        /// The current key, which stops existing.
        from: &'a crate::id::SessionKey,
    },
    /// Create a logged-in session (the record has `m:u`) in its user's slot, add it to
    /// the user index, and enforce the user's session limit in the same atomic step.
    Login {
        /// The limit, if any.
        limit: Option<crate::config::SessionLimit>,
    },
}

/// The inputs a store needs to compute a session's TTL after a write.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The application's clock, Unix ms.
    pub now_ms: i64,
    /// The idle timeout used when the record has no `m:i` override.
    pub default_idle_ms: i64,
}

/// The result of a write.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOutcome {
    /// Written; the key now expires after `ttl`.
    Written {
        /// The TTL that was set: `min(idle, deadline - now)`.
        ttl: Duration,
        /// Sessions of the user destroyed by a login under
        /// [`LimitPolicy::EvictOldest`](crate::LimitPolicy::EvictOldest).
        evicted: Vec<SessionHandle>,
    },
    /// A login was refused: the user is at the limit under
    /// [`LimitPolicy::Reject`](crate::LimitPolicy::Reject). Nothing was written.
    Rejected,
    /// The session no longer exists (or passed its absolute deadline and was deleted).
    Gone,
    /// The target key already exists; nothing was written.
    Collision,
    /// The session's data would be `size` bytes once merged with what is stored, more
    /// than [`Patch::max_size`]. Nothing was written.
    TooLarge {
        /// The size it would have had.
        size: usize,
    },
}

/// A time `ms` after the store's now, for a written created time or deadline (`+<ms>`):
/// the store resolves it against its own clock (Redis: `TIME`), so an application
/// instance whose clock is off cannot move it.
pub(crate) fn relative(ms: i64) -> String {
    format!("+{ms}")
}

/// Resolves the relative created time and deadline of written fields against `now`.
fn resolve(fields: &mut HashMap<String, String>, now: i64) {
    for f in [CREATED, DEADLINE] {
        if let Some(v) = fields.get_mut(f)
            && let Some(ms) = v.strip_prefix('+').and_then(|r| r.parse::<i64>().ok())
        {
            *v = now.saturating_add(ms).to_string();
        }
    }
}

/// The TTL rule every store applies after a write: `min(idle, deadline - now)`, where
/// idle is the record's `m:i` or the default. Also stamps `m:s` and `m:e`, and resolves
/// relative times (`+<ms>`) against `now`.
/// Returns `None` when the deadline has passed (the session must be deleted).
// Public only under `store-internals` (store/mod.rs re-exports it there).
#[cfg_attr(not(feature = "store-internals"), allow(unreachable_pub))]
pub fn stamp_ttl(fields: &mut HashMap<String, String>, clock: Clock) -> Option<i64> {
    resolve(fields, clock.now_ms);
    let idle = fields
        .get(IDLE)
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(clock.default_idle_ms);
    let deadline = fields.get(DEADLINE).and_then(|v| v.parse::<i64>().ok());
    let ttl = super::rules::ttl(idle, deadline, clock.now_ms);
    if ttl <= 0 {
        return None;
    }
    fields.insert(LAST_SEEN.to_owned(), clock.now_ms.to_string());
    fields.insert(EXPIRES.to_owned(), (clock.now_ms + ttl).to_string());
    Some(ttl)
}

/// A record parsed for the session handle.
///
/// `pub` only for the sealed store trait, which returns it; unnameable outside the
/// crate, and its fields are the crate's.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub(crate) data: HashMap<String, String>,
    pub(crate) handle: SessionHandle,
    pub(crate) created_ms: i64,
    pub(crate) expires_ms: i64,
    pub(crate) deadline_ms: Option<i64>,
    pub(crate) idle_ms: Option<i64>,
    pub(crate) persistent: Option<bool>,
    pub(crate) user: Option<String>,
    /// The stored details (JSON), if any.
    pub(crate) details: Option<String>,
}

impl Loaded {
    /// Parses stored fields; `None` if the metadata this crate always writes is missing.
    pub(crate) fn parse(record: Record) -> Option<Self> {
        let mut fields = record.into_fields();
        let f = &fields;
        let int = |k: &str| meta(f, k).and_then(|v| v.parse().ok());
        let handle = meta(f, HANDLE).and_then(SessionHandle::parse)?;
        let created_ms = int(CREATED)?;
        let expires_ms = int(EXPIRES)?;
        let deadline_ms = int(DEADLINE);
        let idle_ms = int(IDLE);
        let persistent = meta(f, PERSISTENT).map(|v| v == "1");
        let user = fields.remove(USER);
        let details = fields.remove(DETAILS);
        let data = fields
            .drain()
            .filter_map(|(k, v)| k.strip_prefix(DATA_PREFIX).map(|k| (k.to_owned(), v)))
            .collect();
        Some(Self {
            data,
            handle,
            created_ms,
            expires_ms,
            deadline_ms,
            idle_ms,
            persistent,
            user,
            details,
        })
    }
}

/// The patch as Redis stores it: a user agent it sets goes in pieces of at most
/// [`PIECE`] bytes, each cut at a character boundary, and the pieces it leaves unused
/// are deleted (a user agent it deletes loses every piece). A patch without one is
/// borrowed as it is.
pub(crate) fn split_user_agent(patch: &Patch) -> std::borrow::Cow<'_, Patch> {
    use std::borrow::Cow;
    let sets_ua = patch.set.iter().any(|(f, _)| f == USER_AGENT);
    let deletes_ua = patch.delete.iter().any(|f| f == USER_AGENT);
    if !sets_ua && !deletes_ua {
        return Cow::Borrowed(patch);
    }
    let mut out = patch.clone();
    out.set.retain(|(f, _)| f != USER_AGENT);
    out.delete.retain(|f| f != USER_AGENT);
    let mut used = 0;
    if let Some((_, ua)) = patch.set.iter().rev().find(|(f, _)| f == USER_AGENT) {
        let mut rest = ua.as_str();
        while !rest.is_empty() && used < USER_AGENT_PIECES.len() {
            let mut end = rest.len().min(PIECE);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            let (piece, tail) = rest.split_at(end);
            out.set
                .push((USER_AGENT_PIECES[used].to_owned(), piece.to_owned()));
            used += 1;
            rest = tail;
        }
    }
    out.delete
        .extend(USER_AGENT_PIECES[used..].iter().map(|f| (*f).to_owned()));
    Cow::Owned(out)
}

pub(crate) fn data_field(name: &str) -> String {
    let mut f = String::with_capacity(DATA_PREFIX.len() + name.len());
    f.push_str(DATA_PREFIX);
    f.push_str(name);
    f
}

#[cfg(test)]
mod tests;
