//! The store operations on Redis: reads, writes, deletes, listings and revocations,
//! each one bounded script or command. The local cache stands around them in one place,
//! `cached.rs`: this file only names what each operation changes.

use super::*;

impl RedisStore {
    /// The local cache's counts; `None` when the store was built without one (see
    /// [`RedisStoreBuilder::with_local_cache`]).
    ///
    /// Feature `local-cache`.
    #[cfg(feature = "local-cache")]
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// [`SessionStore::revoke_user`]'s steps.
    pub(super) async fn revoke_steps(
        &self,
        tag: &str,
        user_id: &str,
        which: Revoke<'_>,
        now_ms: i64,
    ) -> Result<Vec<SessionHandle>, StoreError> {
        // Bounded steps: each reads at most USER_BATCH index entries (then, for log out
        // everywhere, token families); every step's revocations are final when it
        // returns, so a session revoked by an early step can never come back.
        let mut stream = String::new();
        let stream = self.stream(&mut stream);
        let (mut sessions, mut families) = (Some(0u64), Some(0u64));
        let mut revoked = Vec::new();
        let mut first = true;
        while sessions.is_some() || families.is_some() {
            let call = protocol::RevokeStep {
                namespace: &self.namespace,
                tag,
                user_id,
                which,
                now_ms,
                stream,
                from: (sessions.unwrap_or(0), families.unwrap_or(0)),
                first,
            };
            first = false;
            let index = keys::user_index(&self.namespace, tag);
            let reply = self
                .invoke_durable(&call.invocation(&REVOKE), &index, |_: &Vec<String>| true)
                .await?;
            let step = protocol::RevokeStep::decode(reply)?;
            sessions = step.next_session;
            families = step.next_family;
            revoked.extend(step.revoked);
            #[cfg(feature = "store-internals")]
            if let Some(pause) = &self.step_pause
                && (sessions.is_some() || families.is_some())
            {
                (pause.0)().await;
            }
        }
        Ok(revoked)
    }

    /// The session `key` (at Redis key `rkey`), from Redis: its fields and, in the same
    /// round trip, whether its user's handle map still holds it (`HEXISTS`, ~0.1 µs of
    /// Redis CPU; for an anonymous session the map does not exist).
    pub(super) async fn read(
        &self,
        key: &SessionKey,
        rkey: &str,
    ) -> Result<Option<Record>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL")
            .arg(rkey)
            .cmd("HEXISTS")
            .arg(keys::handle_map(&self.namespace, key.tag()))
            .arg(key.hash());
        let (fields, mapped): (redis::Value, bool) = self
            .bounded(async {
                let mut conn = self.conn().await?;
                Ok(pipe.query_async(&mut conn).await?)
            })
            .await?;
        Self::record_of(fields_of(fields)?, mapped)
    }

    /// [`RedisStore::read`] on a Redis Cluster with the local cache: `CLIENT TRACKING`
    /// in the same pipeline, so the node connection that reads the key tracks it
    /// whichever node it is, also one connected after a failover or a resharding.
    pub(super) async fn read_tracked(
        &self,
        key: &SessionKey,
        rkey: &str,
    ) -> Result<Option<Record>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("NOLOOP")
            .ignore()
            .cmd("HGETALL")
            .arg(rkey)
            .cmd("HEXISTS")
            .arg(keys::handle_map(&self.namespace, key.tag()))
            .arg(key.hash());
        let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(rkey, SlotAddr::Master));
        let replies = self
            .bounded(async {
                let mut conn = self.conn().await?;
                let cluster = conn.cluster().ok_or(StoreError::Protocol(
                    "cluster store without a cluster connection",
                ))?;
                Ok(cluster.route_pipeline(pipe, 0, 3, route).await?)
            })
            .await?;
        let mut replies = replies.into_iter().rev();
        let (Some(mapped), Some(fields)) = (replies.next(), replies.next()) else {
            return Err(StoreError::Protocol("unexpected read reply"));
        };
        let bad = |_| StoreError::Protocol("unexpected read reply");
        let mapped: bool = redis::from_redis_value(mapped).map_err(bad)?;
        Self::record_of(fields_of(fields)?, mapped)
    }

    /// A session read from Redis: `None` for no key, for a record of another layout,
    /// and for a logged-in session that its user's handle map no longer holds (`mapped`
    /// false: the map was evicted or deleted, or revocation cut it): fail closed.
    pub(super) fn record_of(
        fields: HashMap<String, String>,
        mapped: bool,
    ) -> Result<Option<Record>, StoreError> {
        if fields.is_empty() {
            return Ok(None);
        }
        if !mapped && fields.contains_key(record::USER) {
            tracing::warn!(
                "a logged-in session without its handle-map entry (evicted?) was read as no session"
            );
            return Ok(None);
        }
        if !fields.contains_key(record::TIMES_FIELD) || !fields.contains_key(record::LIMITS_FIELD) {
            // Written in an earlier layout (0.1's per-field one, or m:t without m:l): no
            // session here, so no TTL input, deadline included, is read as absent.
            tracing::warn!("a session record in an earlier layout was read as no session");
            return Ok(None);
        }
        Ok(Some(Record::from_fields(fields)))
    }

    /// [`WriteMode::Update`], the write of every read-modify-write and refresh: its own
    /// lean script (`update.lua`), ~30 % less Redis CPU than the general one. `track`:
    /// the script reads the key last, so Redis tracks it again for this connection.
    /// Returns the outcome and, when written, the record's version.
    pub(super) async fn update(
        &self,
        key: &SessionKey,
        patch: &Patch,
        clock: Clock,
        track: bool,
    ) -> Result<(WriteOutcome, Option<u64>), StoreError> {
        let mut stream = String::new();
        let call = protocol::Update {
            namespace: &self.namespace,
            key,
            patch,
            clock,
            stream: self.stream(&mut stream),
            track,
        };
        let inv = call.invocation(&UPDATE)?;
        let reply = self.invoke::<Vec<i64>>(&inv).await?;
        protocol::Update::decode(&reply)
    }
}

impl SessionStore for RedisStore {
    fn namespace(&self) -> &str {
        &self.namespace
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        self.cached_read(key).await
    }

    async fn write(
        &self,
        key: &SessionKey,
        mode: WriteMode<'_>,
        patch: &Patch,
        clock: Clock,
    ) -> Result<WriteOutcome, StoreError> {
        let kind = match mode {
            WriteMode::Update => return self.cached_update(key, patch, clock).await,
            WriteMode::Create => protocol::WriteKind::Create,
            WriteMode::Rotate { from } => protocol::WriteKind::Rotate { from },
            WriteMode::Login { limit } => protocol::WriteKind::Login { limit },
        };
        let forget = || match mode {
            WriteMode::Rotate { from } => Forget::Keys(
                keys::session(&self.namespace, from),
                keys::session(&self.namespace, key),
            ),
            // The limit may evict any session of the user's slot.
            WriteMode::Login { .. } => {
                Forget::Slot(keys::session_prefix(&self.namespace, key.tag()))
            }
            WriteMode::Create | WriteMode::Update => {
                Forget::Key(keys::session(&self.namespace, key))
            }
        };
        let mut stream = String::new();
        let call = protocol::Write {
            namespace: &self.namespace,
            key,
            kind,
            patch,
            clock,
            stream: self.stream(&mut stream),
        };
        let outcome = self
            .changing(forget, self.invoke(&call.invocation(&WRITE)))
            .await;
        protocol::Write::decode(outcome?)
    }

    async fn delete(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        let mut stream = String::new();
        let call = protocol::Delete {
            namespace: &self.namespace,
            key,
            now_ms: crate::time::now_ms(),
            stream: self.stream(&mut stream),
        };
        let reply = self
            .changing(
                || Forget::Key(keys::session(&self.namespace, key)),
                self.invoke_durable(
                    &call.invocation(&DELETE),
                    &keys::session(&self.namespace, key),
                    |r: &Vec<String>| !r.is_empty(),
                ),
            )
            .await?;
        Ok(protocol::Delete::decode(reply).map(|(handle, user)| {
            let fields = [(HANDLE, handle), (USER, user)]
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            Record::from_fields(fields)
        }))
    }

    async fn take(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        let call = protocol::Take {
            namespace: &self.namespace,
            key,
        };
        // A flat field/value list, decoded like HGETALL's reply; written back as a
        // patch, so in the per-field layout.
        let mut fields: HashMap<String, String> = self
            .changing(
                || Forget::Key(keys::session(&self.namespace, key)),
                self.invoke(&call.invocation(&TAKE)),
            )
            .await?;
        record::unpack(&mut fields);
        Ok((!fields.is_empty()).then(|| Record::from_fields(fields)))
    }

    async fn user_tag(&self, user_id: &str) -> Result<String, StoreError> {
        user_tag(self.salt().await?, user_id.as_bytes())
    }

    async fn list_user(
        &self,
        tag: &str,
        user_id: &str,
        cursor: ListCursor,
        now_ms: i64,
    ) -> Result<SessionPage, StoreError> {
        let mut stream = String::new();
        let call = protocol::List {
            namespace: &self.namespace,
            tag,
            user_id,
            cursor,
            page_size: PAGE_SIZE.min(USER_BATCH),
            now_ms,
            stream: self.stream(&mut stream),
        };
        protocol::List::decode(self.invoke(&call.invocation(&LIST)).await?)
    }

    async fn revoke_user(
        &self,
        tag: &str,
        user_id: &str,
        which: Revoke<'_>,
        now_ms: i64,
    ) -> Result<Vec<SessionHandle>, StoreError> {
        self.changing(
            || Forget::Slot(keys::session_prefix(&self.namespace, tag)),
            self.revoke_steps(tag, user_id, which, now_ms),
        )
        .await
    }
}

/// An `HGETALL` reply (an array of field/value pairs in RESP2, a map in RESP3) as the
/// record's fields: each value's bytes become its `String` without a copy, into a map
/// sized once (redis-rs's conversion grows it one insert at a time).
fn fields_of(reply: redis::Value) -> Result<HashMap<String, String>, StoreError> {
    use redis::Value;
    let bad = || StoreError::Protocol("unexpected HGETALL reply");
    let text = |v: Value| match v {
        Value::BulkString(bytes) => String::from_utf8(bytes).map_err(|_| bad()),
        Value::SimpleString(s) => Ok(s),
        _ => Err(bad()),
    };
    let fill = |n: usize, pairs: &mut dyn Iterator<Item = (Value, Value)>| {
        let mut fields = HashMap::with_capacity(n);
        for (k, v) in pairs {
            fields.insert(text(k)?, text(v)?);
        }
        Ok(fields)
    };
    match reply {
        Value::Nil => Ok(HashMap::new()),
        Value::Map(pairs) => fill(pairs.len(), &mut pairs.into_iter()),
        Value::Array(items) if items.len() % 2 == 0 => {
            let n = items.len() / 2;
            let mut items = items.into_iter();
            fill(
                n,
                &mut std::iter::from_fn(|| Some((items.next()?, items.next()?))),
            )
        }
        _ => Err(bad()),
    }
}
