//! [`RedisStore`]: sessions in Redis, on a pool of multiplexed connections.
//!
//! - A read is one `HGETALL` (the record carries its own expiry time, so no `PTTL`).
//! - Every write is one Lua script (loaded once and run with `EVALSHA`) that checks its
//!   condition, writes only the changed fields and sets the TTL, atomically: updates
//!   (only if present) run the lean `scripts/update.lua`; creation (only if absent),
//!   rotation and login run `scripts/write.lua`.
//! - Logout is one script: `DEL` and the user-index entry (`delete.lua`).
//! - Concurrent operations share the pooled multiplexed connections (pipelining: one
//!   connection by default, so Redis reads many commands per system call);
//!   `max_in_flight` bounds them.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{Script, ScriptInvocation};
use tokio::sync::Semaphore;

mod acl;
mod builder;
mod cache;
mod keys;
mod node;
mod pool;
mod protocol;
mod salt;
mod sentinel;
mod sink;
#[cfg(feature = "tokens")]
mod tokens;
mod watch;

pub use self::builder::RedisStoreBuilder;
use self::builder::{Nodes, redact_url};
use self::cache::Cache;
use self::cache::Forget;
pub use self::cache::{CacheStats, LocalCache};
use self::pool::{Conn, OwnClusterPool, OwnPool, OwnSentinelPool};
pub use self::sink::StreamSink;
use super::{
    Clock, ListCursor, PAGE_SIZE, Patch, Record, Revoke, SessionPage, SessionStore, UserKey,
    WriteMode, WriteOutcome,
};
use crate::error::{ConfigError, StoreError};
use crate::id::user_tag;
use crate::id::{SessionHandle, SessionKey};
use crate::store::record::{self, HANDLE, USER};

static WRITE: LazyLock<Script> =
    LazyLock::new(|| protocol::script(&[EVENTS_LIB, WRITE_LIB, include_str!("scripts/write.lua")]));
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    protocol::script(&[EVENTS_LIB, WRITE_LIB, include_str!("scripts/update.lua")])
});
/// Shared by the two session-writing scripts (TTL rule, deletions, events).
const WRITE_LIB: &str = include_str!("scripts/write_lib.lua");
static TAKE: LazyLock<Script> =
    LazyLock::new(|| protocol::script(&[include_str!("scripts/take.lua")]));
/// Shared by the scripts that record lifecycle events.
pub(super) const EVENTS_LIB: &str = include_str!("scripts/events_lib.lua");
/// The token key layout and the family walks: revoke.lua (log out everywhere ends the
/// user's tokens too) and tokens.lua share it, so it is here whether or not the feature
/// `tokens` is on.
pub(super) const TOKEN_LIB: &str = include_str!("scripts/token_lib.lua");

/// Most user-index entries or token families one script call reads (pruning, a listing
/// page, a revocation step). `events_lib.lua` repeats it; a unit test keeps the two
/// equal.
pub(crate) const USER_BATCH: usize = 100;
static DELETE: LazyLock<Script> =
    LazyLock::new(|| protocol::script(&[EVENTS_LIB, include_str!("scripts/delete.lua")]));
static LIST: LazyLock<Script> =
    LazyLock::new(|| protocol::script(&[EVENTS_LIB, include_str!("scripts/list.lua")]));
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    protocol::script(&[EVENTS_LIB, TOKEN_LIB, include_str!("scripts/revoke.lua")])
});
/// [`RedisStore::check`]: runs a script that reads a key of the namespace.
static CHECK: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call('EXISTS', KEYS[1])"));
static EXPIRED: LazyLock<Script> =
    LazyLock::new(|| protocol::script(&[EVENTS_LIB, include_str!("scripts/expired.lua")]));

#[derive(Clone)]
enum Pool {
    Own(OwnPool),
    OwnCluster(OwnClusterPool),
    OwnSentinel(OwnSentinelPool),
    Deadpool(deadpool_redis::Pool),
    DeadpoolCluster(deadpool_redis::cluster::Pool),
}

/// The live masters in a `CLUSTER NODES` reply, as (host, port): the nodes flagged
/// `master` and neither `fail` nor `fail?`.
pub(super) fn cluster_masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            let addr = parts.nth(1)?;
            let flags = parts.next()?;
            let is_master = flags.split(',').any(|f| f == "master");
            let failed = flags.split(',').any(|f| f == "fail" || f == "fail?");
            let (host, port) = addr.split('@').next()?.rsplit_once(':')?;
            let port = port.parse().ok()?;
            (is_master && !failed).then(|| (host.to_owned(), port))
        })
        .collect()
}

/// Sessions in Redis. Cloning is cheap and shares the pool.
///
/// ```rust,no_run
/// use std::time::Duration;
/// use tower_redis_session::RedisStore;
///
/// let users = RedisStore::builder("redis://127.0.0.1:6379")
///     .max_connections(2)
///     .wait_timeout(Duration::from_millis(500))
///     .build()?
///     .with_namespace("user")?;
/// // Same pool, separate keys: a user session can never be read as an admin session.
/// let admins = users.clone().with_namespace("admin")?;
/// # Ok::<(), tower_redis_session::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RedisStore {
    pool: Pool,
    namespace: Arc<str>,
    timeout: Duration,
    /// The namespace's user-tag salt: derived from `user_key`, or read (or created)
    /// once from Redis (`salt.rs`).
    salt: Arc<salt::SaltCell>,
    user_key: Option<UserKey>,
    /// Bound on concurrent operations (our own pools; a user's pool bounds itself by
    /// exclusive checkouts).
    in_flight: Option<InFlight>,
    /// The approximate MAXLEN of the namespace's event stream, when events are logged.
    event_stream: Option<usize>,
    cluster: bool,
    /// Behind Sentinel (the ACL rules add `ROLE`).
    sentinel: bool,
    /// The nodes it was built for (for the expiry watcher and the stream sink).
    nodes: Option<Arc<Nodes>>,
    /// The local session cache, when enabled on the builder.
    cache: Option<Arc<Cache>>,
    /// Whether [`check`](RedisStore::check) accepts a server that may evict keys.
    eviction_allowed: bool,
    /// Replicas a revocation waits for, and how long (`wait_for_replicas`).
    durability: Option<(usize, Duration)>,
    /// Test hook: awaited between the bounded steps of a revocation.
    #[cfg(feature = "store-internals")]
    step_pause: Option<crate::context::Pause>,
}

#[derive(Clone)]
struct InFlight {
    permits: Arc<Semaphore>,
    max: usize,
    wait: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Connections of a [`RedisStore`]'s pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// Most connections the pool opens.
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Open connections not checked out.
    pub available: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
    /// Store operations running now, bounded by
    /// [`max_in_flight`](RedisStoreBuilder::max_in_flight) (always 0 on a user's pool,
    /// which bounds itself by its checkouts).
    pub in_flight: usize,
}

impl RedisStore {
    /// A store on your own `deadpool_redis::Pool`.
    ///
    /// Note: `deadpool_redis`'s manager sends `PING` on every checkout, one extra round
    /// trip per request; [`RedisStore::builder`] avoids it. Set the pool's timeouts:
    /// without them a request can wait forever for a connection.
    pub fn from_pool(pool: deadpool_redis::Pool) -> Self {
        Self::with_pool(Pool::Deadpool(pool), Duration::from_secs(3))
    }

    /// A store on your own `deadpool_redis::cluster::Pool` (same note as
    /// [`RedisStore::from_pool`]).
    pub fn from_cluster_pool(pool: deadpool_redis::cluster::Pool) -> Self {
        let mut store = Self::with_pool(Pool::DeadpoolCluster(pool), Duration::from_secs(3));
        store.cluster = true;
        store
    }

    fn with_pool(pool: Pool, timeout: Duration) -> Self {
        Self {
            in_flight: None,
            pool,
            namespace: Arc::from("session"),
            timeout,
            salt: Arc::default(),
            user_key: None,
            event_stream: None,
            cluster: false,
            sentinel: false,
            nodes: None,
            cache: None,
            eviction_allowed: false,
            durability: None,
            #[cfg(feature = "store-internals")]
            step_pause: None,
        }
    }

    /// Records lifecycle events in the Redis Stream `<ns>:events`, trimmed to about
    /// `max_len` entries (`XADD … MAXLEN ~`), each in the same atomic script as the
    /// change it describes: created, login, id rotated, refreshed, logout, revoked (with
    /// the reason), and expired (found when a user's index is pruned, or reported by
    /// [`watch_expired`](Self::watch_expired)). An event is in the stream if and only if
    /// its change happened. Read it with a consumer group (`XREADGROUP`), so a crashed
    /// consumer resumes where it stopped.
    ///
    /// Entries hold `kind`, `reason`, `handle`, `user`, `ip`, `ua` (the session's
    /// recorded client) and `at` (Unix ms); never a cookie or key.
    ///
    /// # Errors
    /// [`ConfigError::EventStreamOnCluster`] on a Redis Cluster: a stream lives in one
    /// slot and a script cannot write outside its own.
    pub fn with_event_stream(mut self, max_len: usize) -> Result<Self, ConfigError> {
        if self.cluster {
            return Err(ConfigError::EventStreamOnCluster);
        }
        self.event_stream = Some(max_len.max(1));
        Ok(self)
    }

    /// The key of this namespace's event stream (see
    /// [`with_event_stream`](Self::with_event_stream)).
    pub fn event_stream_key(&self) -> String {
        keys::events(&self.namespace)
    }

    /// The newest `count` events (at most [`RECENT_EVENTS_MAX`](Self::RECENT_EVENTS_MAX))
    /// of this namespace's durable event stream, newest first: one bounded `XREVRANGE`
    /// through the store's own connections (TLS, Sentinel and ACL included), e.g. for an
    /// activity page. Entries this crate did not write are skipped. Empty when the
    /// stream does not exist (no [`with_event_stream`](Self::with_event_stream) yet).
    ///
    /// # Errors
    /// [`StoreError`] if Redis failed.
    pub async fn recent_events(
        &self,
        count: usize,
    ) -> Result<Vec<crate::events::SessionEvent>, StoreError> {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(self.event_stream_key())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count.clamp(1, Self::RECENT_EVENTS_MAX));
        let entries: Vec<(String, Vec<String>)> = self.command(&cmd).await?;
        Ok(entries
            .iter()
            .filter_map(|(_, flat)| {
                let field = |name: &str| {
                    flat.chunks_exact(2)
                        .find(|kv| kv[0] == name)
                        .map(|kv| kv[1].as_str())
                        .filter(|v| !v.is_empty())
                };
                crate::events::SessionEvent::from_stream(&self.namespace, field)
            })
            .collect())
    }

    /// The most events [`recent_events`](Self::recent_events) reads at once.
    pub const RECENT_EVENTS_MAX: usize = 1000;

    /// The stream key and MAXLEN arguments of the event-recording scripts.
    /// The event stream as the session scripts take it (`key` borrowed from `buf`).
    fn stream<'a>(&self, buf: &'a mut String) -> protocol::Stream<'a> {
        let max_len = match self.event_stream {
            Some(n) => {
                *buf = keys::events(&self.namespace);
                n
            }
            None => 0,
        };
        protocol::Stream { key: buf, max_len }
    }

    /// Puts this store's keys under `namespace` (default `session`). Stores with
    /// different namespaces never see each other's sessions, even on one pool.
    ///
    /// # Errors
    /// [`ConfigError::InvalidNamespace`] unless it is non-empty printable ASCII without
    /// `{`, `}`, `:`, spaces or glob characters (`*?[]\\`): braces would move the Redis
    /// Cluster hash tag, a glob would widen the ACL key pattern to other namespaces.
    pub fn with_namespace(mut self, namespace: &str) -> Result<Self, ConfigError> {
        super::validate_namespace(namespace)?;
        self.namespace = Arc::from(namespace);
        self.salt = salt::cell(self.user_key.as_ref(), namespace);
        Ok(self)
    }

    /// Derives user tags and token check keys from your `key` instead of keeping a
    /// random one in Redis at `<namespace>:salt` (see [`UserKey`]). Recommended in
    /// production: a key in Redis can be evicted (`allkeys-*` policies), deleted or
    /// lost in a restore, and then per-user operations fail with
    /// [`StoreError::UserKeyLost`] until it is restored.
    ///
    /// Switching an existing deployment to a key of your own moves every user to a new
    /// slot: their sessions and tokens made before need a new login.
    pub fn with_user_key(mut self, key: UserKey) -> Self {
        self.salt = salt::cell(Some(&key), &self.namespace);
        self.user_key = Some(key);
        self
    }

    /// Connections in the pool right now, for metrics and health checks.
    pub fn pool_status(&self) -> PoolStatus {
        let s = match &self.pool {
            Pool::Own(p) => p.status(),
            Pool::OwnCluster(p) => p.status(),
            Pool::OwnSentinel(p) => p.status(),
            Pool::Deadpool(p) => p.status(),
            Pool::DeadpoolCluster(p) => p.status(),
        };
        PoolStatus {
            max_size: s.max_size,
            size: s.size,
            available: s.available,
            waiting: s.waiting,
            in_flight: self
                .in_flight
                .as_ref()
                .map_or(0, |f| f.max.saturating_sub(f.permits.available_permits())),
        }
    }

    store_internal! {
        /// The Redis key of a session (for tests and operations tooling).
        fn redis_key(&self, key: &SessionKey) -> String {
            keys::session(&self.namespace, key)
        }
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        let conn = match &self.pool {
            Pool::Own(p) => p.handle().await.map(Conn::Own),
            Pool::OwnCluster(p) => p.handle().await.map(Conn::OwnCluster),
            Pool::OwnSentinel(p) => p.handle().await.map(Conn::Own),
            // A user's pool checks out per operation; boxed, so its large state machine
            // is not part of every store operation's future.
            Pool::Deadpool(p) => Box::pin(p.get()).await.map(Conn::Deadpool),
            Pool::DeadpoolCluster(p) => Box::pin(p.get()).await.map(Conn::DeadpoolCluster),
        };
        conn.map_err(|e| match e {
            // Opening a connection failed: say why (refused, TLS, credentials, version).
            deadpool::managed::PoolError::Backend(source) => StoreError::Connect {
                address: self.address(),
                source,
            },
            e => StoreError::Pool(e),
        })
    }

    /// Connects now and checks the deployment: the server is reachable (TLS handshake,
    /// credentials), runs Redis 7.0 or newer (or Valkey), and lets this user run the
    /// store's scripts on its keys. Call it at start-up to fail fast on a
    /// misconfiguration; without it the first requests answer 503 and log the reason.
    ///
    /// # Errors
    /// [`StoreError::Connect`] when no connection can be made (with the reason, e.g.
    /// an unknown certificate authority or a server too old); [`StoreError::Redis`]
    /// when the server refuses the check (e.g. `NOPERM` for an ACL user without
    /// `EVALSHA`); [`StoreError::EvictionPolicy`] when the server's `maxmemory-policy` is
    /// not `noeviction` (on a Cluster: any node's), unless
    /// [`with_eviction_allowed`](Self::with_eviction_allowed);
    /// [`StoreError::Timeout`] or [`StoreError::Pool`] when it takes too long.
    pub async fn check(&self) -> Result<(), StoreError> {
        let mut inv = CHECK.prepare_invoke();
        inv.key(format!("{}:{{check}}:probe", self.namespace));
        let _: i64 = self.invoke(&inv).await?;
        if !self.eviction_allowed {
            let mut cmd = redis::cmd("INFO");
            cmd.arg("memory");
            let info: redis::Value = self.command(&cmd).await?;
            match eviction_policy(&info) {
                Some(policy) if policy == "noeviction" => {}
                Some(policy) => return Err(StoreError::EvictionPolicy { policy }),
                None => return Err(StoreError::Protocol("INFO memory without maxmemory_policy")),
            }
        }
        Ok(())
    }

    /// Where this store connects, for error messages: its node URLs (or sentinels)
    /// with credentials and query parameters redacted.
    fn address(&self) -> String {
        match &self.nodes {
            Some(nodes) => {
                let urls: Vec<String> = nodes.urls.iter().map(|u| redact_url(u)).collect();
                match &nodes.sentinel {
                    Some(s) => format!("master {:?} of sentinels {}", s.master, urls.join(",")),
                    None => urls.join(","),
                }
            }
            None => "the application's connection pool".to_owned(),
        }
    }

    /// The database this store's keys live in, when it was built from URLs (0 on a
    /// Cluster).
    fn db(&self) -> Option<i64> {
        let nodes = self.nodes.as_ref()?;
        if self.cluster {
            return Some(0);
        }
        if let Some(s) = &nodes.sentinel {
            return Some(s.db());
        }
        let url = nodes.urls.first()?;
        redis::IntoConnectionInfo::into_connection_info(url.as_str())
            .ok()
            .map(|info| info.redis_settings().db())
    }

    /// Lets [`check`](Self::check) accept a server whose `maxmemory-policy` may evict
    /// keys (anything but `noeviction`), and logs a warning saying so.
    ///
    /// # Warning
    /// Every key of this store has a TTL, so `volatile-*` and `allkeys-*` policies may
    /// evict any of them under memory pressure, the cold bookkeeping first (a user's
    /// index and handle map, a token family's record) while hot sessions and tokens
    /// stay. This crate fails closed where it can see the loss (a token without its
    /// family record is refused; see the README's security section), but an evicted
    /// user-tag key or index still costs users their sessions. Use it for a cache-only
    /// deployment that accepts that.
    pub fn with_eviction_allowed(mut self) -> Self {
        tracing::warn!(
            namespace = %self.namespace,
            "RedisStore::with_eviction_allowed: Redis may evict session bookkeeping"
        );
        self.eviction_allowed = true;
        self
    }

    /// Test hook (feature `store-internals`, not covered by semver): a revocation of a
    /// user's sessions awaits `pause()` between its bounded steps.
    #[cfg(feature = "store-internals")]
    #[doc(hidden)]
    pub fn with_step_pause<F, Fut>(mut self, pause: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.step_pause = Some(crate::context::Pause::new(pause));
        self
    }

    /// Runs one operation under the in-flight bound and the overall timeout.
    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let _permit = match &self.in_flight {
            // A free slot is taken without a timer; only a full store waits.
            Some(f) => match f.permits.try_acquire() {
                Ok(permit) => Some(permit),
                Err(_) => match Box::pin(tokio::time::timeout(f.wait, f.permits.acquire())).await {
                    Ok(Ok(permit)) => Some(permit),
                    Ok(Err(_)) | Err(_) => {
                        return Err(StoreError::Pool(deadpool::managed::PoolError::Timeout(
                            deadpool::managed::TimeoutType::Wait,
                        )));
                    }
                },
            },
            None => None,
        };
        tokio::time::timeout(self.timeout, op)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.timeout)))
    }

    /// Runs one command on a pooled connection, under the store's bounds.
    async fn command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            Ok(cmd.query_async(&mut conn).await?)
        })
        .await
    }

    /// Runs a script on a pooled connection, under the store's bounds.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            Ok(inv.invoke_async(&mut conn).await?)
        })
        .await
    }

    /// Runs a revoking script and, when the store waits for replicas
    /// ([`RedisStoreBuilder::wait_for_replicas`]) and `revoked` says the reply revoked
    /// something, `WAIT`s on the same connection (the node of `slot_key` on a Cluster)
    /// until that many replicas have it. Fewer in time is
    /// [`StoreError::NotReplicated`]: the revocation holds on the master but a failover
    /// could still undo it.
    async fn invoke_durable<T: redis::FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
        slot_key: &str,
        revoked: impl Fn(&T) -> bool,
    ) -> Result<T, StoreError> {
        let Some((wanted, wait)) = self.durability else {
            return self.invoke(inv).await;
        };
        let op = async {
            let mut conn = self.conn().await?;
            let reply: T = inv.invoke_async(&mut conn).await?;
            if !revoked(&reply) {
                return Ok((reply, wanted));
            }
            let mut cmd = redis::cmd("WAIT");
            cmd.arg(wanted)
                .arg(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
            let acked: usize = match conn.cluster() {
                Some(cluster) => {
                    let route = redis::cluster_routing::RoutingInfo::SingleNode(
                        SingleNodeRoutingInfo::SpecificNode(Route::with_key(
                            slot_key,
                            SlotAddr::Master,
                        )),
                    );
                    redis::from_redis_value(cluster.route_command(cmd, route).await?)
                        .map_err(|_| StoreError::Protocol("unexpected WAIT reply"))?
                }
                None => cmd.query_async(&mut conn).await?,
            };
            Ok((reply, acked))
        };
        let (reply, acked) = tokio::time::timeout(self.timeout + wait, op)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.timeout + wait)))?;
        if acked < wanted {
            return Err(StoreError::NotReplicated { acked, wanted });
        }
        Ok(reply)
    }

    /// Runs `op`, which changes or removes the session at `key`, with the local cache
    /// (if any) dropping the key before and after it (see `Cache::forget`).
    async fn forgetting<T>(
        &self,
        key: &SessionKey,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let Some(cache) = &self.cache else {
            return op.await;
        };
        let _forget = cache.forgetting(Forget::Key(keys::session(&self.namespace, key)));
        op.await
    }

    /// The local cache's counts; `None` when the store was built without one (see
    /// [`RedisStoreBuilder::local_cache`]).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// [`SessionStore::revoke_user`]'s steps.
    async fn revoke_steps(
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
    async fn read(&self, key: &SessionKey, rkey: &str) -> Result<Option<Record>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL")
            .arg(rkey)
            .cmd("HEXISTS")
            .arg(keys::handle_map(&self.namespace, key.tag()))
            .arg(key.hash());
        let (fields, mapped): (HashMap<String, String>, bool) = self
            .bounded(async {
                let mut conn = self.conn().await?;
                Ok(pipe.query_async(&mut conn).await?)
            })
            .await?;
        Self::record_of(fields, mapped)
    }

    /// [`RedisStore::read`] on a Redis Cluster with the local cache: `CLIENT TRACKING`
    /// in the same pipeline, so the node connection that reads the key tracks it
    /// whichever node it is, also one connected after a failover or a resharding.
    /// A cache miss: reads `rkey` (tracked) and fills the reservation made before.
    async fn fill_cache(
        &self,
        cache: &Cache,
        key: &SessionKey,
        rkey: &str,
    ) -> Result<Option<Record>, StoreError> {
        let ticket = cache.reserve(rkey);
        let read = if self.cluster {
            self.read_tracked(key, rkey).await
        } else {
            self.read(key, rkey).await
        };
        match (&read, ticket) {
            (Ok(record), Some(ticket)) => cache.fill(rkey, ticket, record.as_ref()),
            _ => cache.evict(rkey),
        }
        read
    }

    async fn read_tracked(
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
        let fields: HashMap<String, String> = redis::from_redis_value(fields).map_err(bad)?;
        let mapped: bool = redis::from_redis_value(mapped).map_err(bad)?;
        Self::record_of(fields, mapped)
    }

    /// A session read from Redis: `None` for no key, for a record of another layout,
    /// and for a logged-in session that its user's handle map no longer holds (`mapped`
    /// false: the map was evicted or deleted, or revocation cut it): fail closed.
    fn record_of(
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
        if !fields.contains_key(record::TIMES_FIELD) {
            // Written by tower-redis-session 0.1 (per-field layout): no session here.
            tracing::warn!("a session record in the pre-0.2 layout was read as no session");
            return Ok(None);
        }
        Ok(Some(Record::from_fields(fields)))
    }

    /// [`WriteMode::Update`], the write of every read-modify-write and refresh: its own
    /// lean script (`update.lua`), ~30 % less Redis CPU than the general one.
    async fn update(
        &self,
        key: &SessionKey,
        patch: &Patch,
        clock: Clock,
    ) -> Result<WriteOutcome, StoreError> {
        let mut stream = String::new();
        let cache = self.cache.as_deref().filter(|c| c.enabled());
        let call = protocol::Update {
            namespace: &self.namespace,
            key,
            patch,
            clock,
            stream: self.stream(&mut stream),
            // On a cluster the node connection may not track (see `read_tracked`):
            // there an update drops the entry instead.
            track: cache.is_some() && !self.cluster,
        };
        let inv = call.invocation(&UPDATE)?;
        let outcome = match self.invoke::<Vec<i64>>(&inv).await {
            Ok(reply) => protocol::Update::decode(&reply),
            Err(e) => Err(e),
        };
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
}

impl SessionStore for RedisStore {
    fn namespace(&self) -> &str {
        &self.namespace
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        let rkey = keys::session(&self.namespace, key);
        let Some(cache) = self.cache.as_deref().filter(|c| c.enabled()) else {
            return self.read(key, &rkey).await;
        };
        if let Some(hit) = cache.get(&rkey, crate::time::now_ms()) {
            return Ok(Some(hit));
        }
        // Boxed: the Cluster's tracked read is a large future, and every load would
        // otherwise carry its size.
        Box::pin(self.fill_cache(cache, key, &rkey)).await
    }

    async fn write(
        &self,
        key: &SessionKey,
        mode: WriteMode<'_>,
        patch: &Patch,
        clock: Clock,
    ) -> Result<WriteOutcome, StoreError> {
        let kind = match mode {
            WriteMode::Update => return self.update(key, patch, clock).await,
            WriteMode::Create => protocol::WriteKind::Create,
            WriteMode::Rotate { from } => protocol::WriteKind::Rotate { from },
            WriteMode::Login { limit } => protocol::WriteKind::Login { limit },
        };
        // Our own writes are not pushed back to us: drop what this one changes, before
        // and after (also if this future is dropped before the reply).
        let _forget = self.cache.as_deref().map(|cache| {
            cache.forgetting(match mode {
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
            })
        });
        let mut stream = String::new();
        let call = protocol::Write {
            namespace: &self.namespace,
            key,
            kind,
            patch,
            clock,
            stream: self.stream(&mut stream),
        };
        let outcome = self.invoke(&call.invocation(&WRITE)).await;
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
            .forgetting(
                key,
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
            .forgetting(key, self.invoke(&call.invocation(&TAKE)))
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
        let _forget = self.cache.as_deref().map(|cache| {
            cache.forgetting(Forget::Slot(keys::session_prefix(&self.namespace, tag)))
        });
        self.revoke_steps(tag, user_id, which, now_ms).await
    }
}

/// The `maxmemory_policy` an `INFO memory` reply names: the first that is not
/// `noeviction` when several nodes answer (a Cluster), else `noeviction`; `None` when
/// no node names one.
fn eviction_policy(info: &redis::Value) -> Option<String> {
    fn texts<'a>(v: &'a redis::Value, out: &mut Vec<std::borrow::Cow<'a, str>>) {
        match v {
            redis::Value::BulkString(b) => out.push(String::from_utf8_lossy(b)),
            redis::Value::SimpleString(s) => out.push(s.as_str().into()),
            redis::Value::VerbatimString { text, .. } => out.push(text.as_str().into()),
            redis::Value::Array(items) | redis::Value::Set(items) => {
                items.iter().for_each(|i| texts(i, out));
            }
            redis::Value::Map(pairs) => pairs.iter().for_each(|(_, v)| texts(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    texts(info, &mut all);
    let mut found = None;
    for line in all.iter().flat_map(|t| t.lines()) {
        if let Some(p) = line.trim().strip_prefix("maxmemory_policy:") {
            if p != "noeviction" {
                return Some(p.to_owned());
            }
            found = Some(p.to_owned());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store operation's future is boxed (and moved) on every request, so its size is
    /// a per-request cost: a pool checkout awaited inline made `load` ~14 KB, a large
    /// allocation plus a 14 KB copy per read. Below 1 KB, glibc serves it from its small
    /// bins without consolidating its free lists.
    #[test]
    fn scripts_read_as_many_index_entries_as_the_store_says() {
        let line = format!("local USER_BATCH = {USER_BATCH}\n");
        assert!(
            EVENTS_LIB.contains(&line),
            "events_lib.lua must say {line:?}"
        );
        const { assert!(PAGE_SIZE <= USER_BATCH, "a listing page is one script call") };
    }

    #[test]
    fn cluster_masters_skips_replicas_and_failed_nodes() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
a3 127.0.0.1:7002@17002 master,fail - 0 0 3 connected 10923-16383
a4 127.0.0.1:7003@17003 master,fail? - 0 0 4 connected
a5 127.0.0.1:7004@17004 slave a1 0 0 5 connected
";
        assert_eq!(
            cluster_masters(nodes),
            [
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001)
            ]
        );
    }

    #[test]
    fn debug_never_shows_credentials() {
        for builder in [
            RedisStore::builder("redis://alice:hunter2-pw@127.0.0.1:6379/0"),
            RedisStore::builder("rediss://:hunter2-pw@cache.example:6380"),
            RedisStore::builder("redis+unix:///run/redis.sock?pass=hunter2-pw"),
            RedisStore::cluster_builder(["redis://alice:hunter2-pw@127.0.0.1:7000"]),
        ] {
            let shown = format!("{builder:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("alice"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        let plain = format!("{:?}", RedisStore::builder("redis://127.0.0.1:6379"));
        assert!(plain.contains("redis://127.0.0.1:6379"), "{plain}");
    }

    #[test]
    fn read_futures_stay_small() {
        let store = RedisStore::from_url("redis://127.0.0.1:1").unwrap();
        let key = SessionKey::from_parts("t".into(), "h".into());
        let load = SessionStore::load(&store, &key);
        assert!(
            size_of_val(&load) < 1024,
            "load: {} bytes",
            size_of_val(&load)
        );
        let cmd = redis::cmd("GET");
        let command = store.command::<String>(&cmd);
        assert!(
            size_of_val(&command) < 1024,
            "command: {} bytes",
            size_of_val(&command)
        );
    }
}
