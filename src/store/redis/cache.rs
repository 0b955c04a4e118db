//! The local session cache: sessions read from Redis, kept in the process and kept
//! coherent by Redis server-assisted client-side caching.
//!
//! Every pooled connection speaks RESP3 and runs `CLIENT TRACKING ON NOLOOP`: Redis
//! remembers the keys each connection read and pushes an `invalidate` message on that
//! connection when another client changes, deletes or expires one. Pushes reach
//! [`Cache::on_push`] from the connection's reader (on a Cluster, through the cluster
//! client's push task; a reservation keeps that order-independent). On a Cluster the
//! read that fills pipelines `CLIENT TRACKING` to the node it reads, and an update
//! drops the copy instead of applying to it.
//!
//! The rules that keep it coherent (DESIGN.md, guarantee 11):
//! - **A read fills only its own reservation.** A miss reserves the key before it sends
//!   `HGETALL`; an invalidation that arrives before the reply is stored removes the
//!   reservation, so a reply older than an invalidation is never kept.
//! - **Our own writes** are not pushed back to us (`NOLOOP`): an update applies its
//!   patch to the entry once Redis confirmed it, in the order Redis ran them (each
//!   write returns the record's new version; one that arrives early waits for the
//!   versions before it), and the update script reads the key last, so Redis tracks it
//!   again for this connection. An update whose outcome is unknown (an error, a
//!   timeout) drops the entry. Every other store operation
//!   ([`Cache::forget`]) drops the keys it touches before and after it runs (a
//!   per-user operation: every entry of the user's slot), and no read in flight across
//!   it fills its reservation.
//! - **Never older than the bound.** An entry is served at most
//!   [`LocalCache::with_max_staleness`] after it was read from Redis, whatever happened to
//!   the invalidations meanwhile (a connection that stops forwarding), and never past
//!   the session's own expiry. A lost connection empties the cache.
//! - **Bounded.** At most [`LocalCache::with_max_entries`] entries and about
//!   [`LocalCache::with_max_bytes`] bytes; the oldest entries go first.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind, Value};

use crate::error::ConfigError;
use crate::store::record::{self, Loaded, Patch, Record};

mod entries;

pub(crate) use self::entries::Ticket;
use self::entries::{Entries, Slot, State, Written, parse};

/// Settings of the local session cache
/// ([`RedisStoreBuilder::with_local_cache`](crate::RedisStoreBuilder::with_local_cache)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalCache {
    max_entries: usize,
    max_bytes: usize,
    max_staleness: Duration,
}

impl Default for LocalCache {
    /// 10 000 sessions, 16 MiB, 1 s staleness.
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 16 << 20,
            max_staleness: Duration::from_secs(1),
        }
    }
}

impl LocalCache {
    /// The most sessions kept (default 10 000); the oldest entry goes first.
    #[must_use]
    pub fn with_max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// About the most bytes of session keys, field names and values kept (default
    /// 16 MiB), each session's counted twice: its fields, and the parsed copy that
    /// reads share. A session larger than an eighth of it is not cached.
    #[must_use]
    pub fn with_max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// How long after it was read from Redis an entry may be served (default 1 s).
    /// Invalidations normally end an entry within milliseconds; this bounds what an
    /// instance cut off from Redis serves (a revoked session included).
    ///
    /// # Warning
    /// A longer bound lets an instance that lost its invalidations serve a revoked
    /// session for that long.
    #[must_use]
    pub fn with_max_staleness(mut self, d: Duration) -> Self {
        self.max_staleness = d;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_entries == 0 || self.max_bytes == 0 {
            return Err(ConfigError::LocalCache(
                "room for at least one entry is needed",
            ));
        }
        if self.max_staleness.is_zero() || self.max_staleness > Duration::from_secs(60) {
            return Err(ConfigError::LocalCache(
                "max staleness must be above 0 and at most 60 s",
            ));
        }
        Ok(())
    }
}

/// What the local cache did so far ([`RedisStore::cache_stats`](crate::RedisStore::cache_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Whether the cache is in use (false once tracking proved unavailable).
    pub enabled: bool,
    /// Loads answered from the cache.
    pub hits: u64,
    /// Loads that went to Redis.
    pub misses: u64,
    /// Keys dropped because Redis said they changed (or everything, counted once, on a
    /// flush or a lost connection).
    pub invalidations: u64,
    /// Sessions held now.
    pub entries: usize,
    /// About the bytes held now.
    pub bytes: usize,
}

/// What an operation of this process changes, for [`Cache::forgetting`].
pub(crate) enum Forget {
    Key(String),
    /// Every session whose key starts with this prefix (a user's slot).
    Slot(String),
    /// Two keys (a rotation: the old and the new).
    Keys(String, String),
}

impl Forget {
    fn run(&self, cache: &Cache) {
        match self {
            Forget::Key(k) => cache.forget(k),
            Forget::Slot(p) => cache.forget_slot(p),
            Forget::Keys(a, b) => {
                cache.forget(a);
                cache.forget(b);
            }
        }
    }
}

/// Forgets again when dropped (see [`Cache::forgetting`]).
pub(crate) struct ForgetGuard<'a> {
    cache: &'a Cache,
    what: Forget,
}

impl Drop for ForgetGuard<'_> {
    fn drop(&mut self) {
        self.what.run(self.cache);
    }
}

/// The cache of one store (shared by its clones and its connections' push handlers).
pub(crate) struct Cache {
    limits: LocalCache,
    entries: Mutex<Entries>,
    enabled: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Cache {
    pub(crate) fn new(limits: LocalCache) -> Self {
        Self {
            limits,
            entries: Mutex::default(),
            enabled: AtomicBool::new(true),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Every change below leaves the map consistent before anything can panic.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Stops caching for good (tracking is unavailable), with one log line.
    pub(crate) fn disable(&self, why: &str) {
        if self.enabled.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                reason = why,
                "local session cache disabled, reading from Redis"
            );
        }
        self.lock().clear();
    }

    /// The session at `key` if a fresh entry holds it, as `view` shows the entry's
    /// fields and their parsed copy.
    pub(crate) fn get<T>(
        &self,
        key: &str,
        now_ms: i64,
        view: impl FnOnce(&HashMap<String, String>, &Arc<Loaded>) -> T,
    ) -> Option<T> {
        if !self.enabled() {
            return None;
        }
        let mut entries = self.lock();
        let hit = match entries.map.get(key) {
            Some(Slot {
                state:
                    State::Ready {
                        fields,
                        parsed,
                        fetched,
                        ..
                    },
                ..
            }) => {
                if fetched.elapsed() <= self.limits.max_staleness && parsed.expires_ms > now_ms {
                    Some(view(fields, parsed))
                } else {
                    entries.remove(key);
                    None
                }
            }
            _ => None,
        };
        drop(entries);
        crate::metrics::cache_read(hit.is_some());
        let counter = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Reserves `key` for the reply of a read about to be sent.
    pub(crate) fn reserve(&self, key: &str) -> Option<Ticket> {
        if !self.enabled() {
            return None;
        }
        let mut entries = self.lock();
        entries.next += 1;
        let id = entries.next;
        let epoch = entries.epoch;
        entries.remove(key);
        entries.insert(
            key.to_owned(),
            Slot {
                id,
                state: State::Pending {
                    epoch,
                    sent: Instant::now(),
                },
                bytes: 0,
                early: BTreeMap::new(),
            },
        );
        entries.order.push_back((key.to_owned(), id));
        entries.shrink(&self.limits);
        Some(Ticket(id))
    }

    /// Stores the reply of the read `ticket` reserved, unless an invalidation (or a
    /// newer read) took the reservation meanwhile. Returns the parsed copy it keeps.
    pub(crate) fn fill(
        &self,
        key: &str,
        ticket: Ticket,
        record: Option<&Record>,
    ) -> Option<Arc<Loaded>> {
        let mut entries = self.lock();
        let epoch = entries.epoch;
        let slot = entries.map.get(key)?;
        let State::Pending { epoch: e, sent } = slot.state else {
            return None;
        };
        if slot.id != ticket.0 {
            return None;
        }
        if e != epoch {
            // Another operation of this process ran meanwhile: the reply may predate it.
            entries.remove(key);
            return None;
        }
        let version = record
            .and_then(|r| r.get(record::VERSION))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let fields = record.map(Record::unpacked);
        let Some((fields, parsed)) = fields.and_then(|f| {
            let parsed = parse(&f)?;
            Some((f, parsed))
        }) else {
            // No session (or an unreadable one): nothing to keep.
            entries.remove(key);
            return None;
        };
        let slot = entries.map.get_mut(key)?;
        slot.state = State::Ready {
            fields,
            parsed: parsed.clone(),
            fetched: sent,
            version,
        };
        // Updates confirmed while the read was in flight: those it already saw go.
        slot.early.retain(|v, _| *v > version);
        entries.catch_up(key, &self.limits);
        // The reply as read, whatever early updates the copy kept has applied since.
        Some(parsed)
    }

    /// An update of `key` by this process that Redis confirmed: `patch`, written at
    /// `now_ms` with `ttl`, made the record's version `version`. Applied to the entry
    /// (or to the reply of the read in flight) once the versions before it are.
    pub(crate) fn updated(
        &self,
        key: &str,
        patch: &Patch,
        now_ms: i64,
        ttl: Duration,
        version: u64,
    ) {
        let mut entries = self.lock();
        let Some(slot) = entries.map.get_mut(key) else {
            // Nothing cached: a later read sees this write.
            return;
        };
        if let State::Ready { version: v, .. } = slot.state
            && version <= v
        {
            return; // The entry was read after it.
        }
        slot.early.insert(
            version,
            Written {
                patch: patch.clone(),
                now_ms,
                ttl,
            },
        );
        entries.catch_up(key, &self.limits);
    }

    /// Drops `key` (a read of it failed).
    pub(crate) fn evict(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Before and after a store operation of this process that changes or removes the
    /// session at `key`: drops it, and keeps reads in flight across it from filling.
    pub(crate) fn forget(&self, key: &str) {
        let mut entries = self.lock();
        entries.epoch += 1;
        entries.remove(key);
    }

    /// [`Cache::forget`] for every session whose key starts with `prefix` (a user's
    /// slot: per-user operations reach any of its sessions).
    pub(crate) fn forget_slot(&self, prefix: &str) {
        let mut entries = self.lock();
        entries.epoch += 1;
        entries.remove_slot(prefix);
    }

    /// A connection that tracked reads was dropped: what it read gets no more
    /// invalidations, so everything goes (as on a lost connection).
    pub(crate) fn lost_connection(&self) {
        self.lock().clear();
        self.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets `what` now and again when the guard drops, also when the operation's
    /// future is dropped before it finished (a reply may still change the key).
    pub(crate) fn forgetting(&self, what: Forget) -> ForgetGuard<'_> {
        what.run(self);
        ForgetGuard { cache: self, what }
    }

    /// A push from a tracked connection: an invalidation, or the connection's end.
    pub(crate) fn on_push(&self, push: &PushInfo) {
        match push.kind {
            PushKind::Invalidate => {
                let mut entries = self.lock();
                match push.data.first() {
                    Some(Value::Array(keys)) => {
                        for k in keys {
                            let Value::BulkString(k) = k else { continue };
                            let Ok(k) = std::str::from_utf8(k) else {
                                continue;
                            };
                            if entries.remove(k) {
                                self.invalidations.fetch_add(1, Ordering::Relaxed);
                            } else if let Some(slot) = k.strip_suffix(":uh") {
                                // A user's handle map changed or went (a login elsewhere,
                                // a revocation, an eviction): its sessions are reread.
                                entries.epoch += 1;
                                if entries.remove_slot(&format!("{slot}:s:")) {
                                    self.invalidations.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    // A null key list: the server flushed, or dropped its tracking table.
                    _ => {
                        entries.clear();
                        self.invalidations.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            PushKind::Disconnection => self.lost_connection(),
            _ => {}
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let entries = self.lock();
        let held = entries
            .map
            .values()
            .filter(|s| matches!(s.state, State::Ready { .. }))
            .count();
        CacheStats {
            enabled: self.enabled(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            entries: held,
            bytes: entries.bytes,
        }
    }
}

#[cfg(test)]
mod tests;
