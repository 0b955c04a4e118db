//! The local cache around the store's operations, in one place: a read goes through
//! [`RedisStore::cached_read`], the update of a read-modify-write through
//! [`RedisStore::cached_update`], and every other operation that changes or removes
//! sessions through [`RedisStore::changing`], naming what it changes. Without a cache
//! (or without the `local-cache` feature, where `Cache` cannot exist) each is the bare
//! operation. The connection-level parts stay with the connections: tracking on
//! connect and the lost-connection flush (`pool.rs`), the invalidation pushes
//! (`topology.rs`).

use super::*;

use crate::store::record::Loaded;

impl crate::store::sealed::Sealed for RedisStore {
    fn load_parsed<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> impl Future<Output = Result<Option<Arc<Loaded>>, StoreError>> + Send + 'a
    where
        Self: SessionStore,
    {
        self.cached_read_parsed(key)
    }
}

impl RedisStore {
    fn live_cache(&self) -> Option<&Cache> {
        self.cache.as_deref().filter(|c| c.enabled())
    }

    /// The session `key`: the cached copy when one is fresh, else read from Redis and
    /// kept unless an invalidation or one of this process's changes overtook the read.
    pub(super) async fn cached_read(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        self.read_through(key, |f, _| Record::from_fields(f.clone()), |r, _| r)
            .await
    }

    /// [`cached_read`](Self::cached_read) parsed for the session layer: a cached copy is
    /// handed out shared, as it is, without copying or parsing it again.
    pub(super) async fn cached_read_parsed(
        &self,
        key: &SessionKey,
    ) -> Result<Option<Arc<Loaded>>, StoreError> {
        let hit = |_: &HashMap<String, String>, parsed: &Arc<Loaded>| parsed.clone();
        let miss = |r: Option<Record>, kept: Option<Arc<Loaded>>| {
            kept.or_else(|| r.and_then(Loaded::parse).map(Arc::new))
        };
        self.read_through(key, hit, miss).await
    }

    /// The read both serve: `hit` shows a fresh entry (its fields and parsed copy);
    /// `miss` turns what Redis answered, and the parsed copy the cache kept of it (if
    /// any), into the answer.
    async fn read_through<T>(
        &self,
        key: &SessionKey,
        hit: impl FnOnce(&HashMap<String, String>, &Arc<Loaded>) -> T,
        miss: impl FnOnce(Option<Record>, Option<Arc<Loaded>>) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        let rkey = keys::session(&self.namespace, key);
        let Some(cache) = self.live_cache() else {
            return Ok(miss(self.read(key, &rkey).await?, None));
        };
        if let Some(hit) = cache.get(&rkey, crate::time::now_ms(), hit) {
            return Ok(Some(hit));
        }
        // Boxed: the Cluster's tracked read is a large future, and every load would
        // otherwise carry its size.
        let (record, kept) = Box::pin(self.fill(cache, key, &rkey)).await?;
        Ok(miss(record, kept))
    }

    /// A cache miss: reserves `rkey`, reads it (tracked, on a Cluster: see
    /// `read_tracked`) and fills the reservation if it still holds. Returns the record
    /// and the parsed copy the cache keeps, if it keeps one.
    async fn fill(
        &self,
        cache: &Cache,
        key: &SessionKey,
        rkey: &str,
    ) -> Result<(Option<Record>, Option<Arc<Loaded>>), StoreError> {
        let ticket = cache.reserve(rkey);
        let read = if self.cluster {
            self.read_tracked(key, rkey).await
        } else {
            self.read(key, rkey).await
        };
        let kept = match (&read, ticket) {
            (Ok(record), Some(ticket)) => cache.fill(rkey, ticket, record.as_ref()),
            _ => {
                cache.evict(rkey);
                None
            }
        };
        Ok((read?, kept))
    }

    /// The update of a read-modify-write or refresh (`update.lua`). The cached copy
    /// follows it in the order Redis ran the writes (the script returns the record's
    /// version); on a Cluster, where the node connection may not track (see
    /// `read_tracked`), and whenever the outcome is unknown, the copy is dropped instead.
    pub(super) async fn cached_update(
        &self,
        key: &SessionKey,
        patch: &Patch,
        clock: Clock,
    ) -> Result<WriteOutcome, StoreError> {
        let cache = self.live_cache();
        let outcome = self
            .update(key, patch, clock, cache.is_some() && !self.cluster)
            .await;
        if let Some(cache) = cache {
            let rkey = keys::session(&self.namespace, key);
            match &outcome {
                Ok((WriteOutcome::Written { ttl, .. }, Some(version))) if !self.cluster => {
                    cache.updated(&rkey, patch, clock.now_ms, *ttl, *version);
                }
                // Nothing was written.
                Ok((WriteOutcome::TooLarge { .. }, _)) => {}
                // Gone, unknown whether it ran, or on a cluster: drop it, and keep
                // reads in flight across it from filling.
                _ => cache.forget(&rkey),
            }
        }
        outcome.map(|(outcome, _)| outcome)
    }

    /// Runs `op`, which changes or removes the sessions `what` names. Our own writes
    /// are not pushed back to us (`NOLOOP`), so the cache drops them before and after
    /// `op` (also if this future is dropped before the reply), and reads in flight
    /// across it do not fill.
    pub(super) async fn changing<T>(
        &self,
        what: impl FnOnce() -> Forget,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let _forget = self.cache.as_deref().map(|cache| cache.forgetting(what()));
        op.await
    }
}
