//! Connections: our own deadpool managers (standalone and cluster), or a user's
//! `deadpool_redis` pool of either kind, behind one private connection type so the
//! store code has one path.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

/// Creates connections and recycles them without I/O.
///
/// `deadpool_redis`'s managers send `PING` on every checkout, which would add a round
/// trip to every request. These managers instead drop a connection once a command on it
/// failed with an I/O, timeout or connection error, so a dead connection is replaced on
/// its next checkout and the pool heals when Redis comes back.
pub(crate) struct Manager {
    pub(crate) client: Client,
    pub(crate) config: AsyncConnectionConfig,
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
    fn note<T>(&mut self, r: &Result<T, RedisError>) {
        if let Err(e) = r
            && breaks_connection(e)
        {
            self.broken.store(true, Ordering::Relaxed);
        }
    }
}

fn recycle<C>(conn: &Tracked<C>) -> RecycleResult<RedisError> {
    if conn.broken.load(Ordering::Relaxed) {
        Err(RecycleError::message("connection failed earlier"))
    } else {
        Ok(())
    }
}

impl managed::Manager for Manager {
    type Type = Tracked<MultiplexedConnection>;
    type Error = RedisError;

    async fn create(&self) -> Result<Self::Type, RedisError> {
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
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
        Ok(Tracked::new(self.client.get_async_connection().await?))
    }

    async fn recycle(&self, conn: &mut Self::Type, _: &Metrics) -> RecycleResult<RedisError> {
        recycle(conn)
    }
}

pub(crate) type OwnPool = managed::Pool<Manager>;
pub(crate) type OwnClusterPool = managed::Pool<ClusterManager>;

/// A checked-out connection of any pool kind.
pub(crate) enum Conn {
    Own(Tracked<MultiplexedConnection>),
    OwnCluster(Tracked<ClusterConnection>),
    Deadpool(deadpool_redis::Connection),
    DeadpoolCluster(deadpool_redis::cluster::Connection),
}

fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
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
