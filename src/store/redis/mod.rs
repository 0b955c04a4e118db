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
//!   `with_max_in_flight` bounds them.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use self::invocation::Invocation;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use tokio::sync::Semaphore;

mod acl;
mod builder;
#[cfg(feature = "local-cache")]
mod cache;
#[cfg(not(feature = "local-cache"))]
#[path = "no_cache.rs"]
mod cache;
mod cached;
mod invocation;
mod keys;
mod node;
mod ops;
mod pool;
mod protocol;
mod salt;
mod scripts;
mod sentinel;
mod sink;
mod stream;
#[cfg(feature = "tokens")]
mod tokens;
mod topology;
mod watch;

pub use self::builder::RedisStoreBuilder;
use self::cache::Cache;
use self::cache::Forget;
#[cfg(feature = "local-cache")]
pub use self::cache::{CacheStats, LocalCache};
pub use self::pool::PoolStatus;
/// Not public API (see `crate::__private`).
#[doc(hidden)]
pub use self::pool::collect_text;
use self::pool::{Conn, OwnClusterPool, OwnPool, OwnSentinelPool};
use self::scripts::{CHECK, DELETE, EXPIRED, LIST, REVOKE, TAKE, UPDATE, WRITE};
pub use self::sink::StreamSink;
use self::topology::{Nodes, redact_url};
use super::{
    Clock, ListCursor, PAGE_SIZE, Patch, Record, Revoke, SessionPage, SessionStore, UserKey,
    WriteMode, WriteOutcome,
};
use crate::error::{ConfigError, StoreError};
use crate::id::user_tag;
use crate::id::{SessionHandle, SessionKey};
use crate::store::record::{self, HANDLE, USER};

/// Most user-index entries or token families one script call reads (pruning, a listing
/// page, a revocation step). `events_lib.lua` repeats it; a unit test keeps the two
/// equal.
pub(crate) const USER_BATCH: usize = 100;

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
///     .with_max_connections(2)
///     .with_wait_timeout(Duration::from_millis(500))
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
    /// Replicas a revocation waits for, and how long (`with_wait_for_replicas`).
    durability: Option<(usize, Duration)>,
    /// Which construction this store (and its clones) came from: tells apart two
    /// stores on two application pools, which have no URLs to compare.
    #[cfg_attr(not(feature = "tokens"), allow(dead_code))]
    origin: u64,
    /// Test hook: awaited between the bounded steps of a revocation.
    #[cfg(feature = "store-internals")]
    step_pause: Option<crate::store::Pause>,
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
        static ORIGINS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            origin: ORIGINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
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
        let probe = format!("{}:{{check}}:probe", self.namespace);
        let _: i64 = self.invoke(&Invocation::new(&CHECK, &[&probe])).await?;
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
        self.step_pause = Some(crate::store::Pause::new(pause));
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
        inv: &Invocation<'_>,
    ) -> Result<T, StoreError> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            Ok(inv.invoke_async(&mut conn).await?)
        })
        .await
    }

    /// Runs a revoking script and, when the store waits for replicas
    /// ([`RedisStoreBuilder::with_wait_for_replicas`]) and `revoked` says the reply revoked
    /// something, `WAIT`s on the same connection (the node of `slot_key` on a Cluster)
    /// until that many replicas have it. Fewer in time is
    /// [`StoreError::NotReplicated`]: the revocation holds on the master but a failover
    /// could still undo it.
    async fn invoke_durable<T: redis::FromRedisValue>(
        &self,
        inv: &Invocation<'_>,
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
mod tests;
