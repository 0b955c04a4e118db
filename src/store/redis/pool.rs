//! Connections: our own deadpool managers (standalone and cluster), or a user's
//! `deadpool_redis` pool of either kind, behind one private connection type so the
//! store code has one path.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use deadpool::Status;
use deadpool::managed::{self, Metrics, PoolError, RecycleError, RecycleResult};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

use super::cache::Cache;

/// Connections of a [`RedisStore`](super::RedisStore)'s pool.
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
    /// [`with_max_in_flight`](super::RedisStoreBuilder::with_max_in_flight) (always 0 on a user's pool,
    /// which bounds itself by its checkouts).
    pub in_flight: usize,
}

/// Creates connections and recycles them without I/O.
///
/// `deadpool_redis`'s managers send `PING` on every checkout, which would add a round
/// trip to every request. These managers instead drop a connection once a command on it
/// failed with an I/O, timeout or connection error, so a dead connection is replaced on
/// its next checkout and the pool heals when Redis comes back.
pub(crate) struct Manager {
    pub(crate) client: Client,
    pub(crate) config: AsyncConnectionConfig,
    /// The local cache its connections' invalidations go to (RESP3, tracking on).
    pub(crate) cache: Option<Arc<Cache>>,
}

/// The cluster counterpart of [`Manager`]. A cluster connection routes each command
/// to the node that owns its slot and follows `MOVED`/failovers by itself.
pub(crate) struct ClusterManager {
    pub(crate) client: ClusterClient,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

impl fmt::Debug for ClusterManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterManager").finish_non_exhaustive()
    }
}

/// A connection and whether a command on it has failed at the connection level. The
/// flag is shared with every handle cloned from the connection.
pub(crate) struct Tracked<C> {
    conn: C,
    broken: Arc<AtomicBool>,
}

impl<C: Clone> Tracked<C> {
    fn new(conn: C) -> Self {
        Self {
            conn,
            broken: Arc::default(),
        }
    }

    /// A handle on the same multiplexed connection, for one operation.
    pub(crate) fn share(&self) -> Tracked<C> {
        Tracked {
            conn: self.conn.clone(),
            broken: self.broken.clone(),
        }
    }
}

impl<C> Tracked<C> {
    /// Whether a command on this connection failed at the connection level.
    fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    fn note<T>(&mut self, r: &Result<T, RedisError>) {
        if let Err(e) = r
            && breaks_connection(e)
        {
            self.broken.store(true, Ordering::Relaxed);
        }
    }
}

fn recycle<C>(conn: &Tracked<C>) -> RecycleResult<RedisError> {
    if conn.is_broken() {
        Err(RecycleError::message("connection failed earlier"))
    } else {
        Ok(())
    }
}

/// The oldest Redis this crate works with: 7.0 (`SET … NX GET` for the user-tag key;
/// the audit writer reads the stream counters `XINFO` has since 7.0).
pub(crate) const MIN_REDIS: (u32, u32) = (7, 0);

/// Checks `INFO server` output against [`MIN_REDIS`] (Valkey reports a compatible
/// `redis_version` too). Returns the version found if it is too old or unreadable.
fn too_old(info: &str) -> Option<String> {
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))?
        .trim();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) if (major, minor) >= MIN_REDIS => None,
        _ => Some(version.to_owned()),
    }
}

/// Every text in a reply, however nested (an `INFO` reply per cluster node).
pub fn collect_text(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => out.push(s.clone()),
        Value::VerbatimString { text, .. } => out.push(text.clone()),
        Value::Array(items) | Value::Set(items) => {
            items.iter().for_each(|i| collect_text(i, out));
        }
        Value::Map(pairs) => pairs.iter().for_each(|(_, i)| collect_text(i, out)),
        _ => {}
    }
}

/// Fails a new connection to a server older than [`MIN_REDIS`], with an error that
/// says so, instead of failing every login later with a syntax error.
async fn check_version<C: ConnectionLike>(conn: &mut C) -> Result<(), RedisError> {
    // A cluster connection asks every node and answers a map of node -> info.
    let reply: Value = redis::cmd("INFO").arg("server").query_async(conn).await?;
    let mut infos = Vec::new();
    collect_text(&reply, &mut infos);
    match infos.iter().find_map(|info| too_old(info)) {
        None => Ok(()),
        Some(found) => Err(RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "tower-redis-session needs Redis 7.0 or newer (or a compatible Valkey)",
            format!("the server reports redis_version {found}"),
        ))),
    }
}

/// Turns on client tracking for the local cache on a new connection, before any read
/// goes through it. A server that refuses it (an ACL without `CLIENT`, a proxy) turns
/// the cache off for good, with a log line; the connection serves as without a cache.
async fn track(conn: &mut MultiplexedConnection, cache: Option<&Cache>) -> Result<(), RedisError> {
    let Some(cache) = cache.filter(|c| c.enabled()) else {
        return Ok(());
    };
    let on: Result<(), RedisError> = redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("NOLOOP")
        .query_async(conn)
        .await;
    match on {
        Ok(()) => Ok(()),
        Err(e) if breaks_connection(&e) => Err(e),
        Err(e) => {
            cache.disable(&format!("CLIENT TRACKING refused: {e}"));
            Ok(())
        }
    }
}

impl managed::Manager for Manager {
    type Type = Tracked<MultiplexedConnection>;
    type Error = RedisError;

    async fn create(&self) -> Result<Self::Type, RedisError> {
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        check_version(&mut conn).await?;
        track(&mut conn, self.cache.as_deref()).await?;
        Ok(Tracked::new(conn))
    }

    async fn recycle(&self, conn: &mut Self::Type, _: &Metrics) -> RecycleResult<RedisError> {
        recycle(conn)
    }
}

impl managed::Manager for ClusterManager {
    type Type = Tracked<ClusterConnection>;
    type Error = RedisError;

    async fn create(&self) -> Result<Self::Type, RedisError> {
        let mut conn = self.client.get_async_connection().await?;
        check_version(&mut conn).await?;
        Ok(Tracked::new(conn))
    }

    async fn recycle(&self, conn: &mut Self::Type, _: &Metrics) -> RecycleResult<RedisError> {
        recycle(conn)
    }
}

/// Connections to the master Sentinel names, checked to be a master.
pub(crate) struct SentinelManager {
    pub(crate) nodes: Arc<super::Nodes>,
    /// For the sentinels.
    pub(crate) config: AsyncConnectionConfig,
    /// For the master: with the local cache's push handler when it has one.
    pub(crate) master_config: AsyncConnectionConfig,
    pub(crate) cache: Option<Arc<Cache>>,
}

impl fmt::Debug for SentinelManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelManager").finish_non_exhaustive()
    }
}

impl managed::Manager for SentinelManager {
    type Type = Tracked<MultiplexedConnection>;
    type Error = RedisError;

    async fn create(&self) -> Result<Self::Type, RedisError> {
        let sentinel = self.nodes.sentinel.as_ref().ok_or_else(|| {
            RedisError::from((
                redis::ErrorKind::Client,
                "a sentinel pool without sentinels",
            ))
        })?;
        let mut conn = sentinel
            .connect(&self.nodes, &self.config, &self.master_config)
            .await?;
        check_version(&mut conn).await?;
        track(&mut conn, self.cache.as_deref()).await?;
        Ok(Tracked::new(conn))
    }

    async fn recycle(&self, conn: &mut Self::Type, _: &Metrics) -> RecycleResult<RedisError> {
        recycle(conn)
    }
}

pub(crate) type OwnPool = Arc<Shared<Manager>>;
pub(crate) type OwnSentinelPool = Arc<Shared<SentinelManager>>;
pub(crate) type OwnClusterPool = Arc<Shared<ClusterManager>>;

/// Our pools' connections, kept checked out in slots and shared by every operation.
///
/// An operation clones a handle from the next slot: no checkout, no `await`, no
/// allocation. Only an empty slot (first use) or a connection that failed goes through
/// the pool. A pool checkout is an async state machine of ~7 KB; awaited on every
/// operation, it made each store future ~14 KB, copied and heap-allocated per request
/// (a large allocation that also made glibc consolidate its free lists every time).
pub(crate) struct Shared<M: managed::Manager> {
    pool: managed::Pool<M>,
    slots: Box<[Slot<M>]>,
    next: AtomicUsize,
    /// The local cache fed by these connections' invalidations: a connection dropped
    /// for a failure (a timeout, `READONLY`) takes its tracking with it, so the cache
    /// forgets what it held.
    cache: Option<Arc<Cache>>,
}

struct Slot<M: managed::Manager> {
    conn: Mutex<Option<managed::Object<M>>>,
    /// Held while the slot is refilled, so concurrent operations wait for one
    /// checkout instead of each taking one.
    refill: tokio::sync::Mutex<()>,
}

impl<M: managed::Manager> fmt::Debug for Shared<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the slot half-written.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<M, C> Shared<M>
where
    M: managed::Manager<Type = Tracked<C>, Error = RedisError>,
    C: Clone,
{
    /// One slot per connection the pool may open.
    pub(crate) fn new(pool: managed::Pool<M>) -> Self {
        let slots = (0..pool.status().max_size.max(1))
            .map(|_| Slot {
                conn: Mutex::new(None),
                refill: tokio::sync::Mutex::new(()),
            })
            .collect();
        Self {
            pool,
            slots,
            next: AtomicUsize::new(0),
            cache: None,
        }
    }

    /// Tells `cache` when a connection is dropped for a failure.
    pub(crate) fn with_cache(mut self, cache: Option<Arc<Cache>>) -> Self {
        self.cache = cache;
        self
    }

    /// A handle on the next slot's connection: no await unless the slot must be
    /// refilled, and that rare path is boxed so its large state machine is not part of
    /// every store operation's future.
    pub(crate) async fn handle(&self) -> Result<Tracked<C>, PoolError<RedisError>> {
        match self.ready() {
            Ok(conn) => Ok(conn),
            Err(slot) => Box::pin(self.refill(slot)).await,
        }
    }

    /// A handle on the next slot's connection if it is live, else the slot to refill.
    fn ready(&self) -> Result<Tracked<C>, usize> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        lock(&self.slots[i].conn)
            .as_ref()
            .filter(|c| !c.is_broken())
            .map(|c| c.share())
            .ok_or(i)
    }

    /// Fills slot `i` from the pool: its first connection, or a new one after a failure.
    async fn refill(&self, i: usize) -> Result<Tracked<C>, PoolError<RedisError>> {
        let slot = &self.slots[i];
        let _refilling = slot.refill.lock().await;
        let failed = {
            let mut conn = lock(&slot.conn);
            match conn.as_ref() {
                // Refilled by another operation while this one waited.
                Some(c) if !c.is_broken() => return Ok(c.share()),
                _ => conn.take(),
            }
        };
        // Back to the pool, whose recycle check discards it, with the tracking Redis
        // kept for it: what the cache read through it gets no more invalidations.
        if failed.is_some()
            && let Some(cache) = &self.cache
        {
            cache.lost_connection();
        }
        drop(failed);
        let fresh = self.pool.get().await?;
        let handle = fresh.share();
        *lock(&slot.conn) = Some(fresh);
        Ok(handle)
    }

    /// The pool's counts, with connections held in slots counted as available: they
    /// are shared by every operation, never checked out by one.
    pub(crate) fn status(&self) -> Status {
        let mut s = self.pool.status();
        let held = self
            .slots
            .iter()
            .filter(|slot| lock(&slot.conn).is_some())
            .count();
        s.available += held;
        s
    }
}

/// A checked-out connection of any pool kind.
pub(crate) enum Conn {
    Own(Tracked<MultiplexedConnection>),
    OwnCluster(Tracked<ClusterConnection>),
    Deadpool(deadpool_redis::Connection),
    DeadpoolCluster(deadpool_redis::cluster::Connection),
}

impl Conn {
    /// The cluster connection, to route a command to one node.
    pub(crate) fn cluster(&mut self) -> Option<&mut ClusterConnection> {
        match self {
            Conn::OwnCluster(t) => Some(&mut t.conn),
            Conn::DeadpoolCluster(c) => Some(c),
            Conn::Own(_) | Conn::Deadpool(_) => None,
        }
    }
}

/// Whether a failed command means the connection must be replaced: it broke, or the
/// node was demoted to a replica (`READONLY`, after a failover behind Sentinel).
fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
}

/// Runs one request on a tracked connection, noting connection-level failures.
async fn tracked<C: ConnectionLike, T>(
    t: &mut Tracked<C>,
    f: impl AsyncFnOnce(&mut C) -> Result<T, RedisError>,
) -> Result<T, RedisError> {
    let r = f(&mut t.conn).await;
    t.note(&r);
    r
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Own(obj) => Box::pin(tracked(obj, async |c| c.req_packed_command(cmd).await)),
            Conn::OwnCluster(obj) => {
                Box::pin(tracked(obj, async |c| c.req_packed_command(cmd).await))
            }
            Conn::Deadpool(c) => c.req_packed_command(cmd),
            Conn::DeadpoolCluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Own(obj) => Box::pin(tracked(obj, async move |c| {
                c.req_packed_commands(pipeline, offset, count).await
            })),
            Conn::OwnCluster(obj) => Box::pin(tracked(obj, async move |c| {
                c.req_packed_commands(pipeline, offset, count).await
            })),
            Conn::Deadpool(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::DeadpoolCluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Own(obj) => obj.conn.get_db(),
            Conn::OwnCluster(obj) => obj.conn.get_db(),
            Conn::Deadpool(c) => c.get_db(),
            Conn::DeadpoolCluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::too_old;

    #[test]
    fn servers_older_than_7_0_are_refused() {
        let info = |v: &str| format!("# Server\r\nredis_version:{v}\r\nredis_mode:standalone\r\n");
        for ok in ["7.0.15", "7.2.4", "8.0.0", "10.1.2"] {
            assert_eq!(too_old(&info(ok)), None, "{ok}");
        }
        for old in ["6.2.14", "5.0.7", "6.9.9", "garbage"] {
            assert_eq!(too_old(&info(old)).as_deref(), Some(old), "{old}");
        }
        assert_eq!(
            too_old("# Server\r\n"),
            None,
            "no version line: nothing to say"
        );
    }
}
