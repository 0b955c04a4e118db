//! The store operations on the in-memory map, each under the map's lock: the same
//! contract as the Redis scripts (conditions, TTL rule, user index and cap, events).

use super::*;

impl SessionStore for MemoryStore {
    fn db_system(&self) -> &'static str {
        "memory"
    }

    fn namespace(&self) -> &str {
        &self.namespace
    }

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
        // The size limit holds for the data as merged with what is stored now (which
        // concurrent requests may have grown); nothing is written past it.
        if patch.max_size > 0 {
            let stored = match mode {
                WriteMode::Update => map.live(&mk, now).map(|e| e.fields.clone()),
                WriteMode::Rotate { from } => {
                    let from = self.map_key(from);
                    map.live(&from, now).map(|e| e.fields.clone())
                }
                _ => Some(HashMap::new()),
            };
            if let Some(mut merged) = stored {
                patch.apply_to(&mut merged);
                let size = data_size(&merged);
                if size > patch.max_size {
                    return Ok(WriteOutcome::TooLarge { size });
                }
            }
        }
        let mut evicted = Vec::new();
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
            WriteMode::Login { limit } => {
                if map.live(&mk, now).is_some() {
                    return Ok(WriteOutcome::Collision);
                }
                if let Some(limit) = limit {
                    let mut live: Vec<(i64, String, MapKey)> = map
                        .slot(&self.namespace, key.tag(), now)
                        .map(|(k, e)| (e.int(LAST_SEEN), k.1.hash().to_owned(), k.clone()))
                        .collect();
                    if live.len() >= limit.max {
                        if limit.policy == LimitPolicy::Reject {
                            return Ok(WriteOutcome::Rejected);
                        }
                        live.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                        for (_, _, k) in live.iter().take(live.len() + 1 - limit.max) {
                            if let Some(handle) = map.entries.remove(k).and_then(|e| e.handle()) {
                                evicted.push(handle);
                            }
                        }
                    }
                }
                HashMap::new()
            }
        };
        patch.apply_to(&mut fields);
        match stamp_ttl(&mut fields, clock) {
            Some(ttl) => {
                let expires = now + ttl_duration(ttl);
                map.entries.insert(mk, Entry { fields, expires });
                Ok(WriteOutcome::Written {
                    ttl: ttl_duration(ttl),
                    evicted,
                })
            }
            None => {
                // Its deadline passed: it expires now.
                // (An update's entry is still in the map, its fields taken.)
                if map.entries.remove(&mk).is_some() {
                    map.note_expired(&self.namespace, &fields);
                }
                Ok(WriteOutcome::Gone)
            }
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        Ok(self.remove_live(key))
    }

    async fn take(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        Ok(self.remove_live(key))
    }

    async fn user_tag(&self, user_id: &str) -> Result<String, StoreError> {
        if self.user_key.is_some() {
            // As RedisStore derives it: the namespace is in the key.
            return user_tag(&self.salt, user_id.as_bytes());
        }
        let salt = self.salt;
        let mut input = Vec::with_capacity(self.namespace.len() + 1 + user_id.len());
        input.extend_from_slice(self.namespace.as_bytes());
        input.push(0);
        input.extend_from_slice(user_id.as_bytes());
        user_tag(&salt, &input)
    }

    async fn list_user(
        &self,
        tag: &str,
        user_id: &str,
        cursor: ListCursor,
        _now_ms: i64,
    ) -> Result<SessionPage, StoreError> {
        let map = self.lock();
        // In the order of a Redis user index: by expiry, then key.
        let mut all: Vec<_> = map
            .slot(&self.namespace, tag, Instant::now())
            .filter(|(_, e)| e.fields.get(USER).is_some_and(|u| u == user_id))
            .collect();
        all.sort_by(|((_, a), ea), ((_, b), eb)| {
            (ea.expires, a.hash()).cmp(&(eb.expires, b.hash()))
        });
        let start = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
        let sessions = all
            .iter()
            .skip(start)
            .take(PAGE_SIZE)
            .filter_map(|((_, k), e)| {
                Some(
                    SessionInfo::from_parts(
                        k.hash().to_owned(),
                        e.handle()?,
                        e.int(CREATED),
                        e.int(LAST_SEEN),
                        e.fields.get(IP).cloned(),
                        e.fields.get(USER_AGENT).cloned(),
                    )
                    .with_details(e.fields.get(DETAILS).map(String::as_str)),
                )
            })
            .collect();
        let end = start.saturating_add(PAGE_SIZE);
        let next = (all.len() > end).then(|| ListCursor::from_position(end as u64));
        Ok(SessionPage::new(sessions, next))
    }

    async fn revoke_user(
        &self,
        tag: &str,
        user_id: &str,
        which: Revoke<'_>,
        _now_ms: i64,
    ) -> Result<Vec<SessionHandle>, StoreError> {
        let mut map = self.lock();
        let doomed: Vec<MapKey> = map
            .slot(&self.namespace, tag, Instant::now())
            .filter(|(_, e)| e.fields.get(USER).is_some_and(|u| u == user_id))
            .filter(|((_, k), e)| match which {
                Revoke::All => true,
                Revoke::Handle(h) => e.handle() == Some(h),
                Revoke::AllExcept(keep) => k != keep,
            })
            .map(|(k, _)| k.clone())
            .collect();
        let revoked = doomed
            .iter()
            .filter_map(|k| map.entries.remove(k).and_then(|e| e.handle()))
            .collect();
        #[cfg(feature = "tokens")]
        if matches!(which, Revoke::All) {
            // Log out everywhere ends the user's tokens in the same step (after the
            // sessions, as revoke.lua does, so device records count as sessions).
            map.kill_user_tokens(&self.namespace, tag, user_id);
        }
        Ok(revoked)
    }
}
