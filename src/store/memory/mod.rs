//! An in-process store with the same semantics as [`RedisStore`](super::RedisStore):
//! TTLs that really evict, create-if-absent, update-if-present, in-slot rotation.
//!
//! For development and for your own unit tests; sessions are lost when the process ends
//! and are not shared between processes.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{
    Clock, ListCursor, PAGE_SIZE, Patch, Record, Revoke, SessionInfo, SessionPage, SessionStore,
    UserKey, WriteMode, WriteOutcome, stamp_ttl,
};
use crate::config::LimitPolicy;
use crate::error::{ConfigError, StoreError};
use crate::id::user_tag;
use crate::id::{SessionHandle, SessionKey};
use crate::store::record::{CREATED, DETAILS, HANDLE, IP, LAST_SEEN, USER, USER_AGENT};
use crate::store::rules::data_size;

mod ops;
#[cfg(feature = "tokens")]
mod tokens;

/// Most expiries kept for a watched namespace until its watcher reports them.
const MAX_UNREPORTED: usize = 65_536;

/// How often expired entries are swept out on writes.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

type MapKey = (Arc<str>, SessionKey);

#[derive(Debug)]
struct Entry {
    fields: HashMap<String, String>,
    expires: Instant,
}

#[derive(Debug)]
struct Map {
    entries: HashMap<MapKey, Entry>,
    last_sweep: Instant,
    #[cfg(feature = "tokens")]
    tokens: tokens::TokenMap,
    /// Expired logged-in sessions not yet reported, per watched namespace
    /// ([`MemoryStore::watch_expired`]); unwatched namespaces record nothing.
    expired: HashMap<Arc<str>, Vec<(SessionHandle, String)>>,
}

impl Entry {
    fn int(&self, field: &str) -> i64 {
        self.fields
            .get(field)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn handle(&self) -> Option<SessionHandle> {
        self.fields
            .get(HANDLE)
            .and_then(|h| SessionHandle::parse(h))
    }
}

/// The user-tag key of `namespace` under the application's `key` (as `RedisStore`).
fn derived_salt(key: &UserKey, namespace: &str) -> [u8; 32] {
    let mut salt = [0u8; 32];
    salt.copy_from_slice(&key.salt_for(namespace)[..32]);
    salt
}

/// In-memory session store. Cloning shares the sessions.
///
/// ```
/// use tower_redis_session::{MemoryStore, SessionConfig, SessionLayer};
///
/// let layer = SessionLayer::new(MemoryStore::new(), SessionConfig::default())?;
/// # Ok::<(), tower_redis_session::ConfigError>(())
/// ```
/// `Debug` shows the namespace only: never the user-tag key or a session record.
#[derive(Clone)]
pub struct MemoryStore {
    map: Arc<Mutex<Map>>,
    namespace: Arc<str>,
    /// Key of the user-tag HMAC: random (the namespace is then part of the hashed
    /// input), or derived from `user_key` for this namespace.
    salt: [u8; 32],
    /// The application's user key: tags are then the same as a `RedisStore`'s with it.
    user_key: Option<UserKey>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store with the namespace `session`.
    pub fn new() -> Self {
        let mut salt = [0u8; 32];
        // Without OS randomness the tags are still unique per user, only predictable.
        if getrandom::fill(&mut salt).is_err() {
            tracing::error!("no OS randomness for the MemoryStore user-tag salt");
        }
        Self {
            map: Arc::new(Mutex::new(Map {
                entries: HashMap::new(),
                last_sweep: Instant::now(),
                #[cfg(feature = "tokens")]
                tokens: tokens::TokenMap::default(),
                expired: HashMap::new(),
            })),
            namespace: Arc::from("session"),
            salt,
            user_key: None,
        }
    }

    /// Derives user tags and token check keys from `key` instead of a random salt of
    /// this store's own, so tokens issued by one process are accepted by another
    /// holding the same key (see [`UserKey`]).
    /// User tags and token keys are then the ones a [`RedisStore`](crate::RedisStore)
    /// with the same key and namespace computes.
    pub fn with_user_key(mut self, key: UserKey) -> Self {
        self.salt = derived_salt(&key, &self.namespace);
        self.user_key = Some(key);
        self
    }

    /// The same sessions map, seen under another namespace: sessions of one namespace
    /// are invisible in the other.
    ///
    /// # Errors
    /// [`ConfigError::InvalidNamespace`] unless the namespace is non-empty printable
    /// ASCII without `{`, `}`, `:`, spaces or glob characters (`*?[]\\`).
    pub fn with_namespace(mut self, namespace: &str) -> Result<Self, ConfigError> {
        super::validate_namespace(namespace)?;
        self.namespace = Arc::from(namespace);
        if let Some(key) = &self.user_key {
            self.salt = derived_salt(key, namespace);
        }
        Ok(self)
    }

    /// Whether `other` is this store or a clone of it (they share one map).
    #[cfg(feature = "tokens")]
    pub(crate) fn same_data_as(&self, other: &MemoryStore) -> bool {
        Arc::ptr_eq(&self.map, &other.map)
    }

    store_internal! {
        /// Number of live (unexpired) sessions in this store's namespace (for tests).
        fn live_sessions(&self) -> usize {
            let now = Instant::now();
            self.lock()
                .entries
                .iter()
                .filter(|((ns, _), e)| *ns == self.namespace && e.expires > now)
                .count()
        }
    }

    store_internal! {
        /// The remaining TTL of a session, if it exists (for tests).
        fn ttl(&self, key: &SessionKey) -> Option<Duration> {
            let now = Instant::now();
            let mk = self.map_key(key);
            let map = self.lock();
            map.entries
                .get(&mk)
                .filter(|e| e.expires > now)
                .map(|e| e.expires - now)
        }
    }

    /// Reports expired logged-in sessions of this namespace as
    /// [`EventKind::Expired`](crate::events::EventKind::Expired) events to the hook of
    /// `events` (pass `&layer`), once each, within about 200 ms of their expiry (the in-memory counterpart
    /// of [`RedisStore::watch_expired`](crate::RedisStore::watch_expired)); it is
    /// [subscribed](crate::ExpiryWatcher::subscribed) from the start.
    ///
    /// # Errors
    /// [`ConfigError::NoRuntime`] outside a Tokio runtime.
    pub fn watch_expired(
        &self,
        events: impl Into<crate::events::EventSink>,
    ) -> Result<crate::store::ExpiryWatcher, ConfigError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        self.lock()
            .expired
            .entry(self.namespace.clone())
            .or_default();
        let store = self.clone();
        let sink: crate::events::EventSink = events.into();
        let (subscribed, subscribed_rx) = tokio::sync::watch::channel(true);
        let task = runtime.spawn(async move {
            let _subscribed = subscribed;
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let expired = {
                    let mut map = store.lock();
                    map.sweep_now(Instant::now());
                    map.expired
                        .get_mut(&store.namespace)
                        .map(std::mem::take)
                        .unwrap_or_default()
                };
                for (handle, user) in expired {
                    sink.emit(
                        crate::events::EventKind::Expired,
                        &store.namespace,
                        Some(handle),
                        Some(&user),
                    );
                }
            }
        });
        Ok(crate::ExpiryWatcher::new(task, subscribed_rx))
    }

    /// The store's secret salt (keys user tags and token checks).
    #[cfg(feature = "tokens")]
    pub(crate) fn salt(&self) -> [u8; 32] {
        self.salt
    }

    /// Removes a session and returns it if it was live. In memory, a delete (logout)
    /// and a take (the first half of a login) are the same operation.
    fn remove_live(&self, key: &SessionKey) -> Option<Record> {
        let mk = self.map_key(key);
        let mut map = self.lock();
        let live = map.live(&mk, Instant::now()).is_some();
        let entry = map.entries.remove(&mk);
        entry
            .filter(|_| live)
            .map(|e| Record::from_fields(e.fields))
    }

    fn map_key(&self, key: &SessionKey) -> MapKey {
        (self.namespace.clone(), key.clone())
    }

    fn lock(&self) -> MutexGuard<'_, Map> {
        // A panic while holding this lock cannot leave an entry half-written (every
        // mutation is a single insert/remove), so a poisoned map is still consistent.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Map {
    fn live(&mut self, key: &MapKey, now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| e.expires <= now)
            && let Some(e) = self.entries.remove(key)
        {
            self.note_expired(&key.0, &e.fields);
        }
        self.entries.get_mut(key)
    }

    /// Records the expiry of a logged-in session, if its namespace is watched.
    fn note_expired(&mut self, ns: &Arc<str>, fields: &HashMap<String, String>) {
        let Some(list) = self.expired.get_mut(ns) else {
            return;
        };
        // Bounded, in case the watcher task was stopped.
        if list.len() >= MAX_UNREPORTED {
            return;
        }
        let handle = fields.get(HANDLE).and_then(|h| SessionHandle::parse(h));
        if let (Some(handle), Some(user)) = (handle, fields.get(USER)) {
            list.push((handle, user.clone()));
        }
    }

    /// Live logged-in sessions of one slot (the memory analogue of the user index).
    fn slot<'a>(
        &'a self,
        namespace: &'a Arc<str>,
        tag: &'a str,
        now: Instant,
    ) -> impl Iterator<Item = (&'a MapKey, &'a Entry)> + 'a {
        self.entries.iter().filter(move |((ns, k), e)| {
            ns == namespace && k.tag() == tag && e.expires > now && e.fields.contains_key(USER)
        })
    }

    fn sweep(&mut self, now: Instant) {
        if now.duration_since(self.last_sweep) >= SWEEP_EVERY {
            self.sweep_now(now);
        }
    }

    fn sweep_now(&mut self, now: Instant) {
        let gone: Vec<MapKey> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(e) = self.entries.remove(&k) {
                self.note_expired(&k.0, &e.fields);
            }
        }
        self.last_sweep = now;
    }
}

fn ttl_duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests;
