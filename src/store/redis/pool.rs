//! Connections: our own deadpool manager, or a user's `deadpool_redis::Pool`, behind
//! one private connection type so the store code has one path.

use std::fmt;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

/// Creates multiplexed connections and recycles them without I/O.
///
/// `deadpool_redis::Manager` sends `UNWATCH` + `PING` on every checkout, which would
/// add a round trip to every request. This manager instead drops a connection once a
/// command on it failed with an I/O, timeout or connection error, so a dead connection
/// is replaced on its next checkout and the pool heals when Redis comes back.
pub(crate) struct Manager {
    pub(crate) client: Client,
    pub(crate) config: AsyncConnectionConfig,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

pub(crate) struct Tracked {
    conn: MultiplexedConnection,
    broken: bool,
}

impl managed::Manager for Manager {
    type Type = Tracked;
    type Error = RedisError;

    async fn create(&self) -> Result<Tracked, RedisError> {
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        Ok(Tracked {
            conn,
            broken: false,
        })
    }

    async fn recycle(&self, conn: &mut Tracked, _: &Metrics) -> RecycleResult<RedisError> {
        if conn.broken {
            Err(RecycleError::message("connection failed earlier"))
        } else {
            Ok(())
        }
    }
}

pub(crate) type OwnPool = managed::Pool<Manager>;

/// A checked-out connection of either pool kind.
pub(crate) enum Conn {
    Own(managed::Object<Manager>),
    Deadpool(deadpool_redis::Connection),
}

fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

impl Tracked {
    fn note<T>(&mut self, r: &Result<T, RedisError>) {
        if let Err(e) = r
            && breaks_connection(e)
        {
            self.broken = true;
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Own(obj) => Box::pin(async move {
                let r = obj.conn.req_packed_command(cmd).await;
                obj.note(&r);
                r
            }),
            Conn::Deadpool(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Own(obj) => Box::pin(async move {
                let r = obj.conn.req_packed_commands(pipeline, offset, count).await;
                obj.note(&r);
                r
            }),
            Conn::Deadpool(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Own(obj) => obj.conn.get_db(),
            Conn::Deadpool(c) => c.get_db(),
        }
    }
}
