//! An in-process store with the same semantics as [`RedisStore`](super::RedisStore):
//! TTLs that really evict, create-if-absent, update-if-present, in-slot rotation.
//!
//! For development and for your own unit tests; sessions are lost when the process ends
//! and are not shared between processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Clock, Patch, Record, SessionStore, WriteMode, WriteOutcome, stamp_ttl};
use crate::{ConfigError, SessionKey, StoreError};

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
}

/// In-memory session store. Cloning shares the sessions.
///
/// ```
/// use tower_redis_session::{MemoryStore, SessionConfig, SessionLayer};
///
/// let layer = SessionLayer::new(MemoryStore::new(), SessionConfig::default())?;
/// # Ok::<(), tower_redis_session::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStore {
    map: Arc<Mutex<Map>>,
    namespace: Arc<str>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store with the namespace `session`.
    pub fn new() -> Self {
        Self {
            map: Arc::new(Mutex::new(Map {
                entries: HashMap::new(),
                last_sweep: Instant::now(),
            })),
            namespace: Arc::from("session"),
        }
    }

    /// The same sessions map, seen under another namespace: sessions of one namespace
    /// are invisible in the other.
    ///
    /// # Errors
    /// [`ConfigError::InvalidNamespace`] unless the namespace is non-empty printable
    /// ASCII without `{`, `}`, `:` or spaces.
    pub fn with_namespace(mut self, namespace: &str) -> Result<Self, ConfigError> {
        super::validate_namespace(namespace)?;
        self.namespace = Arc::from(namespace);
        Ok(self)
    }

    /// The key namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Number of live (unexpired) sessions in this store's namespace.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .entries
            .iter()
            .filter(|((ns, _), e)| *ns == self.namespace && e.expires > now)
            .count()
    }

    /// Whether there are no live sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The remaining TTL of a session, if it exists (for tests).
    pub fn ttl(&self, key: &SessionKey) -> Option<Duration> {
        let now = Instant::now();
        let mk = self.map_key(key);
        let map = self.lock();
        map.entries
            .get(&mk)
            .filter(|e| e.expires > now)
            .map(|e| e.expires - now)
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
        if self.entries.get(key).is_some_and(|e| e.expires <= now) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn sweep(&mut self, now: Instant) {
        if now.duration_since(self.last_sweep) >= SWEEP_EVERY {
            self.entries.retain(|_, e| e.expires > now);
            self.last_sweep = now;
        }
    }
}

fn ttl_duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl SessionStore for MemoryStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        let mk = self.map_key(key);
        let mut map = self.lock();
        Ok(map
            .live(&mk, Instant::now())
            .map(|e| Record::from_fields(e.fields.clone())))
    }

    async fn write(
        &self,
        key: &SessionKey,
        mode: WriteMode<'_>,
        patch: &Patch,
        clock: Clock,
    ) -> Result<WriteOutcome, StoreError> {
        let now = Instant::now();
        let mk = self.map_key(key);
        let mut map = self.lock();
        map.sweep(now);
        let mut fields = match mode {
            WriteMode::Create => {
                if map.live(&mk, now).is_some() {
                    return Ok(WriteOutcome::Collision);
                }
                HashMap::new()
            }
            WriteMode::Update => match map.live(&mk, now) {
                Some(e) => std::mem::take(&mut e.fields),
                None => return Ok(WriteOutcome::Gone),
            },
            WriteMode::Rotate { from } => {
                let from = self.map_key(from);
                if map.live(&from, now).is_none() {
                    return Ok(WriteOutcome::Gone);
                }
                if map.live(&mk, now).is_some() {
                    return Ok(WriteOutcome::Collision);
                }
                match map.entries.remove(&from) {
                    Some(e) => e.fields,
                    None => return Ok(WriteOutcome::Gone),
                }
            }
        };
        patch.apply_to(&mut fields);
        match stamp_ttl(&mut fields, clock) {
            Some(ttl) => {
                let expires = now + ttl_duration(ttl);
                map.entries.insert(mk, Entry { fields, expires });
                Ok(WriteOutcome::Written {
                    ttl: ttl_duration(ttl),
                })
            }
            None => {
                map.entries.remove(&mk);
                Ok(WriteOutcome::Gone)
            }
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let mk = self.map_key(key);
        let mut map = self.lock();
        let existed = map.live(&mk, Instant::now()).is_some();
        map.entries.remove(&mk);
        Ok(existed)
    }
}
