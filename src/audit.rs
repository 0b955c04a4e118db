//! An audit writer (feature `audit-postgres`): copies the lifecycle event stream of a
//! namespace ([`RedisStore::with_event_stream`](crate::RedisStore::with_event_stream))
//! into a PostgreSQL table, one row per event.
//!
//! - It reads with a Redis consumer group, so a restarted writer resumes where it
//!   stopped: first the entries it had read but not acknowledged, then new ones.
//! - Each batch is inserted in one transaction with `ON CONFLICT DO NOTHING` on the
//!   stream entry id, and acknowledged (`XACK`) only after the commit. A crash between
//!   commit and acknowledgement re-delivers the batch, and the re-delivered rows are
//!   not inserted twice: every event lands exactly once.
//! - Entries left pending by a writer that never came back are claimed after
//!   [`AuditWriter::claim_after`] (`XAUTOCLAIM`).
//!
//! The table (created if missing):
//!
//! ```sql
//! CREATE TABLE session_audit (
//!     namespace  text        NOT NULL,
//!     event_id   text        NOT NULL,  -- the stream entry id
//!     at         timestamptz NOT NULL,
//!     kind       text        NOT NULL,  -- created, login, id_rotated, refreshed, logout,
//!                                       -- revoked, expired, token_issued,
//!                                       -- token_refreshed, token_reused, token_revoked
//!     reason     text,                  -- revoke, revoke_others, logout_everywhere,
//!                                       -- evicted_by_cap
//!     user_id    text,
//!     handle     text,                  -- the session's public handle
//!     ip         text,
//!     user_agent text,
//!     family     text,                  -- token events: the token family
//!     PRIMARY KEY (namespace, event_id)
//! );
//! ```
//!
//! ```rust,no_run
//! # async fn run() -> Result<(), tower_redis_session::audit::AuditError> {
//! use tower_redis_session::audit::AuditWriter;
//!
//! let writer = AuditWriter::connect(
//!     "redis://127.0.0.1:6379",
//!     "session", // the store's namespace
//!     "host=127.0.0.1 user=postgres dbname=app",
//! )
//! .await?
//! .consumer("audit-1"); // stable per instance: it resumes its own pending entries
//! writer.run().await // runs until an error
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Value};

/// What stopped the audit writer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Redis failed.
    #[error("redis failed")]
    Redis(#[from] redis::RedisError),
    /// PostgreSQL failed.
    #[error("postgres failed")]
    Postgres(#[from] tokio_postgres::Error),
}

/// One stream entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Entry {
    id: String,
    fields: Vec<(String, String)>,
}

impl Entry {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// A connection to standalone Redis or to a Redis Cluster.
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> redis::RedisResult<T> {
        let value = match self {
            Self::Single(c) => c.req_packed_command(cmd).await?,
            Self::Cluster(c) => c.req_packed_command(cmd).await?,
        };
        // A server error (e.g. BUSYGROUP) stays an error with its code.
        Ok(redis::from_redis_value(value.extract_error()?)?)
    }
}

/// Copies a namespace's event stream into PostgreSQL. See the [module docs](self).
pub struct AuditWriter {
    redis: Conn,
    pg: tokio_postgres::Client,
    namespace: String,
    stream: String,
    group: String,
    consumer: String,
    batch: usize,
    block: Duration,
    claim_after: Duration,
    ready: bool,
}

impl fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditWriter")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS session_audit (
    namespace  text        NOT NULL,
    event_id   text        NOT NULL,
    at         timestamptz NOT NULL,
    kind       text        NOT NULL,
    reason     text,
    user_id    text,
    handle     text,
    ip         text,
    user_agent text,
    family     text,
    PRIMARY KEY (namespace, event_id)
);
ALTER TABLE session_audit ADD COLUMN IF NOT EXISTS family text;
CREATE INDEX IF NOT EXISTS session_audit_user ON session_audit (user_id, at);";

const INSERT: &str = "INSERT INTO session_audit
    (namespace, event_id, at, kind, reason, user_id, handle, ip, user_agent, family)
    VALUES ($1, $2, to_timestamp($3::float8 / 1000), $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (namespace, event_id) DO NOTHING";

impl AuditWriter {
    /// Connects to Redis and PostgreSQL (`postgres` is a `tokio_postgres` connection
    /// string, without TLS) for the stream of `namespace`.
    ///
    /// # Errors
    /// [`AuditError`] if either connection fails.
    pub async fn connect(
        redis_url: &str,
        namespace: &str,
        postgres: &str,
    ) -> Result<Self, AuditError> {
        let redis = redis::Client::open(redis_url)?
            .get_multiplexed_async_connection()
            .await?;
        Self::with(Conn::Single(redis), namespace, postgres).await
    }

    /// As [`connect`](Self::connect), for a stream on a Redis Cluster (given some of
    /// its nodes), as written by [`StreamSink`](crate::store::StreamSink).
    ///
    /// # Errors
    /// [`AuditError`] if either connection fails.
    pub async fn connect_cluster(
        nodes: &[&str],
        namespace: &str,
        postgres: &str,
    ) -> Result<Self, AuditError> {
        // Replies to a blocking read take up to the block time.
        let redis = redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
            .response_timeout(Duration::from_secs(30))
            .build()?
            .get_async_connection()
            .await?;
        Self::with(Conn::Cluster(redis), namespace, postgres).await
    }

    async fn with(redis: Conn, namespace: &str, postgres: &str) -> Result<Self, AuditError> {
        let (pg, connection) = tokio_postgres::connect(postgres, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    "audit: postgres connection ended"
                );
            }
        });
        Ok(Self {
            redis,
            pg,
            namespace: namespace.to_owned(),
            stream: format!("{namespace}:events"),
            group: "audit-postgres".to_owned(),
            consumer: "audit-1".to_owned(),
            batch: 100,
            block: Duration::from_secs(1),
            claim_after: Duration::from_secs(60),
            ready: false,
        })
    }

    /// The consumer group (default `audit-postgres`). Writers in one group share the
    /// work; each group gets every event.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// This writer's consumer name (default `audit-1`). Keep it stable across restarts
    /// of one instance, and distinct between instances.
    #[must_use]
    pub fn consumer(mut self, consumer: impl Into<String>) -> Self {
        self.consumer = consumer.into();
        self
    }

    /// Most events per transaction (default 100).
    #[must_use]
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// How long a read waits for new events (default 1 s; keep it under the Redis
    /// response timeout).
    #[must_use]
    pub fn block(mut self, d: Duration) -> Self {
        self.block = d;
        self
    }

    /// After how long another writer's unacknowledged entries are taken over (default
    /// 60 s).
    #[must_use]
    pub fn claim_after(mut self, d: Duration) -> Self {
        self.claim_after = d;
        self
    }

    /// Creates the table and the consumer group if missing.
    async fn prepare(&mut self) -> Result<(), AuditError> {
        if self.ready {
            return Ok(());
        }
        self.pg.batch_execute(CREATE_TABLE).await?;
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM");
        let created: redis::RedisResult<()> = self.redis.query(&cmd).await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            other => other?,
        }
        self.ready = true;
        Ok(())
    }

    /// Copies one batch: this consumer's pending entries first (read before a crash,
    /// never acknowledged), then entries claimed from stalled consumers, then new ones
    /// (waiting up to the block time). Returns how many events were committed (rows
    /// already present count too).
    ///
    /// # Errors
    /// [`AuditError`] if Redis or PostgreSQL failed; nothing was acknowledged, so the
    /// batch comes again.
    pub async fn step(&mut self) -> Result<usize, AuditError> {
        self.prepare().await?;
        let mut entries = self.read("0", None).await?;
        if entries.is_empty() {
            entries = self.claim().await?;
        }
        if entries.is_empty() {
            entries = self.read(">", Some(self.block)).await?;
        }
        if entries.is_empty() {
            return Ok(0);
        }
        self.insert(&entries).await?;
        self.ack(&entries).await?;
        Ok(entries.len())
    }

    /// Runs [`step`](Self::step) forever.
    ///
    /// # Errors
    /// The first [`AuditError`]; restart the writer to resume.
    pub async fn run(mut self) -> Result<(), AuditError> {
        loop {
            self.step().await?;
        }
    }

    async fn read(
        &mut self,
        from: &str,
        block: Option<Duration>,
    ) -> Result<Vec<Entry>, AuditError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.batch);
        if let Some(b) = block {
            cmd.arg("BLOCK")
                .arg(u64::try_from(b.as_millis()).unwrap_or(u64::MAX));
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(from);
        let reply: Value = self.redis.query(&cmd).await?;
        // [[stream, [[id, [field, value, ...]], ...]]], or nil after a timeout.
        let Some(Value::Array(streams)) = as_array(reply) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for s in streams {
            let Some(Value::Array(mut pair)) = as_array(s) else {
                continue;
            };
            if pair.len() == 2
                && let Some(Value::Array(items)) = as_array(pair.remove(1))
            {
                out.extend(items.into_iter().filter_map(entry));
            }
        }
        Ok(out)
    }

    /// Takes over entries idle for `claim_after` in other consumers' pending lists.
    async fn claim(&mut self) -> Result<Vec<Entry>, AuditError> {
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&self.stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(u64::try_from(self.claim_after.as_millis()).unwrap_or(u64::MAX))
            .arg("0")
            .arg("COUNT")
            .arg(self.batch);
        let reply: Value = self.redis.query(&cmd).await?;
        // [next-id, [[id, fields], ...], [deleted ids]]
        let Some(Value::Array(mut parts)) = as_array(reply) else {
            return Ok(Vec::new());
        };
        if parts.len() < 2 {
            return Ok(Vec::new());
        }
        let Some(Value::Array(items)) = as_array(parts.swap_remove(1)) else {
            return Ok(Vec::new());
        };
        Ok(items.into_iter().filter_map(entry).collect())
    }

    async fn insert(&mut self, entries: &[Entry]) -> Result<(), AuditError> {
        let tx = self.pg.transaction().await?;
        let stmt = tx.prepare(INSERT).await?;
        for e in entries {
            // An entry trimmed from the stream before it was read has no fields.
            let Some(kind) = e.get("kind") else {
                continue;
            };
            let at: i64 = e.get("at").and_then(|a| a.parse().ok()).unwrap_or(0);
            tx.execute(
                &stmt,
                &[
                    &self.namespace,
                    &e.id,
                    &(at as f64),
                    &kind,
                    &e.get("reason"),
                    &e.get("user"),
                    &e.get("handle"),
                    &e.get("ip"),
                    &e.get("ua"),
                    &e.get("family"),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn ack(&mut self, entries: &[Entry]) -> Result<(), AuditError> {
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.stream).arg(&self.group);
        for e in entries {
            cmd.arg(&e.id);
        }
        self.redis.query::<()>(&cmd).await?;
        Ok(())
    }
}

fn as_array(v: Value) -> Option<Value> {
    match v {
        Value::Array(_) => Some(v),
        _ => None,
    }
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// `[id, [field, value, ...]]` (fields nil if the entry was deleted).
fn entry(v: Value) -> Option<Entry> {
    let Value::Array(mut parts) = v else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop()?;
    let id = text(parts.pop()?)?;
    let fields = match fields {
        Value::Array(flat) => {
            let flat: Vec<String> = flat.into_iter().filter_map(text).collect();
            flat.chunks_exact(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect()
        }
        _ => Vec::new(),
    };
    Some(Entry { id, fields })
}
