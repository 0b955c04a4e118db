//! The audit writer of [tower-redis-session](tower_redis_session): copies the lifecycle
//! event stream of a namespace
//! ([`RedisStore::with_event_stream`](tower_redis_session::RedisStore::with_event_stream))
//! into a PostgreSQL table, one row per event. It is its own crate so that the session
//! layer never depends on a PostgreSQL client.
//!
//! - It reads with a Redis consumer group, so a restarted writer resumes where it
//!   stopped: first the entries it had read but not acknowledged, then new ones.
//! - Each batch is inserted in one transaction with `ON CONFLICT DO NOTHING` on the
//!   stream entry id, and acknowledged (`XACK`) only after the commit. A crash between
//!   commit and acknowledgement re-delivers the batch, and the re-delivered rows are
//!   not inserted twice: every event the stream still held when the writer read it
//!   lands exactly once.
//! - An entry PostgreSQL refuses as data (e.g. a NUL byte in a text field, a value too
//!   large for the index) never stalls the writer: it goes to `session_audit_dead`
//!   with the database's reason and its fields (escaped), in the same transaction,
//!   and the rest of the batch commits.
//! - The stream is capped (`MAXLEN ~`): events trimmed before the writer read them
//!   are lost to the audit trail. The writer counts them (Redis's `entries-added`
//!   against the group's `entries-read`), writes a row to `session_audit_gaps` and
//!   logs a warning; [`AuditWriter::missed`] is the running total for metrics. Size
//!   the stream so that this stays at zero.
//! - Entries left pending by a writer that never came back are claimed after
//!   [`AuditWriter::with_claim_after`] (`XAUTOCLAIM`).
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
//!                                       -- token_refreshed, token_reused, token_revoked,
//!                                       -- token_grace_replay
//!     reason     text,                  -- revoke, revoke_others, logout_everywhere,
//!                                       -- evicted_by_cap
//!     user_id    text,
//!     handle     text,                  -- the session's public handle
//!     ip         text,
//!     user_agent text,
//!     family     text,                  -- token events: the token family
//!     details    text,                  -- the session's details (JSON), if any
//!     PRIMARY KEY (namespace, event_id)
//! );
//! CREATE TABLE session_audit_dead (      -- entries PostgreSQL refused
//!     namespace  text        NOT NULL,
//!     event_id   text        NOT NULL,
//!     failed_at  timestamptz NOT NULL DEFAULT now(),
//!     error      text        NOT NULL,  -- the database's message and SQLSTATE
//!     entry      text        NOT NULL,  -- the entry's fields, control characters escaped
//!     PRIMARY KEY (namespace, event_id)
//! );
//! CREATE TABLE session_audit_gaps (      -- events trimmed before they were read
//!     namespace      text        NOT NULL,
//!     noted_at       timestamptz NOT NULL DEFAULT now(),
//!     before_event   text        NOT NULL,  -- the first entry read after the gap
//!     missing        bigint      NOT NULL,
//!     PRIMARY KEY (namespace, before_event)
//! );
//! ```
//!
//! ```rust,no_run
//! # async fn run() -> Result<(), tower_redis_session_audit::AuditError> {
//! use tower_redis_session_audit::AuditWriter;
//!
//! let writer = AuditWriter::connect(
//!     "redis://127.0.0.1:6379",
//!     "session", // the store's namespace
//!     "host=127.0.0.1 user=postgres dbname=app",
//! )
//! .await?
//! .with_consumer("audit-1"); // stable per instance: it resumes its own pending entries
//! writer.run().await // runs until an error
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Value};
use tower_redis_session::__private::{collect_text, redis_certificates, rustls_client_config};
use tower_redis_session::TlsConfig;

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
    /// The TLS settings cannot be used.
    #[error("invalid audit writer settings")]
    Config(#[from] tower_redis_session::ConfigError),
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

/// Runs a PostgreSQL connection until it ends, logging why.
async fn log_end<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(
    connection: F,
) {
    if let Err(e) = connection.await {
        tracing::error!(
            error = &e as &dyn std::error::Error,
            "audit: postgres connection ended"
        );
    }
}

/// Valkey (8.1 checked) counts stream entries trimmed before a group read them as read
/// (`entries-read`), so [`AuditWriter::missed`] cannot see them there: say so once.
async fn warn_if_trims_are_unreported(redis: &mut Conn) {
    let info: Result<Value, _> = redis.query(redis::cmd("INFO").arg("server")).await;
    let mut texts = Vec::new();
    if let Ok(info) = info {
        collect_text(&info, &mut texts);
    }
    if texts.iter().any(|t| t.contains("server_name:valkey")) {
        tracing::warn!(
            "audit: on Valkey, events trimmed from the stream before they were read are \
             not counted (missed() stays 0); size MAXLEN generously"
        );
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
    /// Events trimmed from the stream before this writer's group read them, as counted
    /// so far (also in `session_audit_gaps`).
    missed: u64,
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
    details    text,
    PRIMARY KEY (namespace, event_id)
);
ALTER TABLE session_audit ADD COLUMN IF NOT EXISTS family text;
ALTER TABLE session_audit ADD COLUMN IF NOT EXISTS details text;
CREATE INDEX IF NOT EXISTS session_audit_user ON session_audit (user_id, at);
CREATE TABLE IF NOT EXISTS session_audit_dead (
    namespace  text        NOT NULL,
    event_id   text        NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now(),
    error      text        NOT NULL,
    entry      text        NOT NULL,
    PRIMARY KEY (namespace, event_id)
);
CREATE TABLE IF NOT EXISTS session_audit_gaps (
    namespace     text        NOT NULL,
    noted_at      timestamptz NOT NULL DEFAULT now(),
    before_event  text        NOT NULL,
    missing       bigint      NOT NULL,
    PRIMARY KEY (namespace, before_event)
);";

const INSERT_DEAD: &str = "INSERT INTO session_audit_dead (namespace, event_id, error, entry)
    VALUES ($1, $2, $3, $4) ON CONFLICT (namespace, event_id) DO NOTHING";

/// The dead-letter reason of an entry trimmed after it was read, before it was copied.
const TRIMMED: &str = "trimmed from the stream after it was read, before it was copied";

/// A dead letter for an entry that came back without its fields (trimmed while
/// pending), unless it was copied before (committed, then the writer stopped before its
/// XACK): that one is not lost.
const INSERT_TRIMMED: &str = "INSERT INTO session_audit_dead (namespace, event_id, error, entry)
    SELECT $1::text, $2::text, $3::text, ''
    WHERE NOT EXISTS
        (SELECT 1 FROM session_audit WHERE namespace = $1::text AND event_id = $2::text)
    ON CONFLICT (namespace, event_id) DO NOTHING";

const INSERT_GAP: &str = "INSERT INTO session_audit_gaps (namespace, before_event, missing)
    VALUES ($1, $2, $3) ON CONFLICT (namespace, before_event) DO NOTHING";

const MISSED_SO_FAR: &str =
    "SELECT coalesce(sum(missing), 0)::bigint FROM session_audit_gaps WHERE namespace = $1";

/// Whether PostgreSQL refused a row for what it holds (data exception, constraint,
/// program limit such as an index row too large), not for the connection or the
/// server's state: such an entry goes to the dead letters instead of failing the batch.
fn refused_as_data(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| matches!(c.code().get(..2), Some("22" | "23" | "54")))
}

const INSERT: &str = "INSERT INTO session_audit
    (namespace, event_id, at, kind, reason, user_id, handle, ip, user_agent, family, details)
    VALUES ($1, $2, to_timestamp($3::float8 / 1000), $4, $5, $6, $7, $8, $9, $10, $11)
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
        Self::with(Conn::Single(redis), namespace, postgres, None).await
    }

    /// As [`connect`](Self::connect), over TLS to PostgreSQL, verified with `tls` (a
    /// private CA, or the system trust store; and a client certificate if the server
    /// asks for one). Put `sslmode=require` in the connection string so that a server
    /// that does not offer TLS is refused.
    ///
    /// # Errors
    /// [`AuditError::Config`] for unusable TLS files, else as [`connect`](Self::connect)
    /// (a certificate the CA did not sign fails the PostgreSQL connection).
    pub async fn connect_tls(
        redis_url: &str,
        namespace: &str,
        postgres: &str,
        tls: &TlsConfig,
    ) -> Result<Self, AuditError> {
        let redis = redis::Client::open(redis_url)?
            .get_multiplexed_async_connection()
            .await?;
        Self::with(Conn::Single(redis), namespace, postgres, Some(tls)).await
    }

    /// As [`connect_tls`](Self::connect_tls), with TLS to Redis as well: `redis_tls`
    /// verifies a `rediss://` Redis with a private CA (the system trust store when it
    /// names none) and gives a client certificate if it has one, as
    /// [`RedisStoreBuilder::with_tls`](tower_redis_session::RedisStoreBuilder::with_tls) does for the store.
    /// `postgres_tls` is the TLS to PostgreSQL (`None`: none).
    ///
    /// # Errors
    /// [`AuditError::Config`] for unusable TLS files, else as [`connect`](Self::connect)
    /// (a certificate the CA did not sign fails the connection).
    pub async fn connect_with_tls(
        redis_url: &str,
        redis_tls: &TlsConfig,
        namespace: &str,
        postgres: &str,
        postgres_tls: Option<&TlsConfig>,
    ) -> Result<Self, AuditError> {
        let redis = redis::Client::build_with_tls(redis_url, redis_certificates(redis_tls)?)?
            .get_multiplexed_async_connection()
            .await?;
        Self::with(Conn::Single(redis), namespace, postgres, postgres_tls).await
    }

    /// As [`connect`](Self::connect), for a stream on a Redis Cluster (given some of
    /// its nodes), as written by [`StreamSink`](tower_redis_session::store::StreamSink).
    ///
    /// # Errors
    /// [`AuditError`] if either connection fails.
    pub async fn connect_cluster(
        nodes: &[&str],
        namespace: &str,
        postgres: &str,
    ) -> Result<Self, AuditError> {
        let redis = Self::cluster(nodes, None).await?;
        Self::with(Conn::Cluster(redis), namespace, postgres, None).await
    }

    /// As [`connect_cluster`](Self::connect_cluster), with TLS to the cluster's nodes
    /// (`rediss://` addresses) and optionally to PostgreSQL, as
    /// [`connect_with_tls`](Self::connect_with_tls) does for one Redis.
    ///
    /// # Errors
    /// [`AuditError::Config`] for unusable TLS files, else as [`connect`](Self::connect).
    pub async fn connect_cluster_with_tls(
        nodes: &[&str],
        redis_tls: &TlsConfig,
        namespace: &str,
        postgres: &str,
        postgres_tls: Option<&TlsConfig>,
    ) -> Result<Self, AuditError> {
        let redis = Self::cluster(nodes, Some(redis_certificates(redis_tls)?)).await?;
        Self::with(Conn::Cluster(redis), namespace, postgres, postgres_tls).await
    }

    async fn cluster(
        nodes: &[&str],
        tls: Option<redis::TlsCertificates>,
    ) -> Result<ClusterConnection, AuditError> {
        // Replies to a blocking read take up to the block time.
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
            .response_timeout(Duration::from_secs(30));
        if let Some(certs) = tls {
            builder = builder.certs(certs);
        }
        Ok(builder.build()?.get_async_connection().await?)
    }

    async fn with(
        mut redis: Conn,
        namespace: &str,
        postgres: &str,
        tls: Option<&TlsConfig>,
    ) -> Result<Self, AuditError> {
        warn_if_trims_are_unreported(&mut redis).await;
        let pg = match tls {
            Some(tls) => {
                let connector =
                    tokio_postgres_rustls::MakeRustlsConnect::new(rustls_client_config(tls)?);
                let (pg, connection) = tokio_postgres::connect(postgres, connector).await?;
                tokio::spawn(log_end(connection));
                pg
            }
            None => {
                let (pg, connection) =
                    tokio_postgres::connect(postgres, tokio_postgres::NoTls).await?;
                tokio::spawn(log_end(connection));
                pg
            }
        };
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
            missed: 0,
        })
    }

    /// The consumer group (default `audit-postgres`). Writers in one group share the
    /// work; each group gets every event.
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// This writer's consumer name (default `audit-1`). Keep it stable across restarts
    /// of one instance, and distinct between instances.
    #[must_use]
    pub fn with_consumer(mut self, consumer: impl Into<String>) -> Self {
        self.consumer = consumer.into();
        self
    }

    /// Most events per transaction (default 100).
    #[must_use]
    pub fn with_batch(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// How long a read waits for new events (default 1 s; keep it under the Redis
    /// response timeout).
    #[must_use]
    pub fn with_block(mut self, d: Duration) -> Self {
        self.block = d;
        self
    }

    /// After how long another writer's unacknowledged entries are taken over (default
    /// 60 s).
    #[must_use]
    pub fn with_claim_after(mut self, d: Duration) -> Self {
        self.claim_after = d;
        self
    }

    /// Creates the table and the consumer group if missing.
    async fn prepare(&mut self) -> Result<(), AuditError> {
        if self.ready {
            return Ok(());
        }
        self.pg.batch_execute(CREATE_TABLE).await?;
        let row = self.pg.query_one(MISSED_SO_FAR, &[&self.namespace]).await?;
        self.missed = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
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
        let mut gap = None;
        if entries.is_empty() {
            entries = self.read(">", Some(self.block)).await?;
            if let Some(first) = entries.first() {
                gap = self
                    .trimmed_unread(entries.len())
                    .await?
                    .map(|n| (first.id.clone(), n));
            }
        }
        if entries.is_empty() {
            return Ok(0);
        }
        self.insert(&entries, gap.as_ref()).await?;
        if let Some((before, n)) = gap {
            self.missed += n;
            tracing::warn!(
                stream = %self.stream,
                missing = n,
                before_event = %before,
                "audit: events were trimmed from the stream before they were read"
            );
        }
        self.ack(&entries).await?;
        Ok(entries.len())
    }

    /// Events trimmed from the stream before this writer's group read them, as counted
    /// so far (the sum of `session_audit_gaps`). Export it as a metric; anything above
    /// zero means the stream's `MAXLEN` is too small for the writer's pace.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// After a read of `delivered` new entries: how many events the stream lost before
    /// the group read them and not yet reported, if the writer is caught up (the count
    /// is exact only then; otherwise a later read reports it). `entries-added` counts
    /// every event ever added, `entries-read` those delivered to the group; neither
    /// moves with trimming.
    async fn trimmed_unread(&mut self, delivered: usize) -> Result<Option<u64>, AuditError> {
        if delivered >= self.batch {
            return Ok(None);
        }
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("STREAM").arg(&self.stream);
        let stream: Vec<Value> = self.redis.query(&cmd).await?;
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(&self.stream);
        let groups: Vec<Value> = self.redis.query(&cmd).await?;
        let Some(added) = info_int(&stream, "entries-added") else {
            return Ok(None);
        };
        let read = groups.iter().find_map(|g| {
            let Value::Array(fields) = g else { return None };
            let name = info_field(fields, "name").and_then(|v| text(v.clone()))?;
            (name == self.group).then(|| info_int(fields, "entries-read"))?
        });
        let Some(read) = read else { return Ok(None) };
        // Entries added after the read are still in the stream, unread: count them
        // (at most a batch; more means the count is not exact now).
        let unread = match groups.iter().find_map(|g| {
            let Value::Array(fields) = g else { return None };
            info_field(fields, "last-delivered-id").and_then(|v| text(v.clone()))
        }) {
            Some(last) => {
                let mut range = redis::cmd("XRANGE");
                range
                    .arg(&self.stream)
                    .arg(format!("({last}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(self.batch);
                let after: Vec<Value> = self.redis.query(&range).await?;
                if after.len() >= self.batch {
                    return Ok(None);
                }
                after.len() as u64
            }
            None => return Ok(None),
        };
        let lost = added.saturating_sub(read).saturating_sub(unread);
        if lost > self.missed {
            // Another writer of the group may have reported part of it.
            let row = self.pg.query_one(MISSED_SO_FAR, &[&self.namespace]).await?;
            self.missed = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
        }
        Ok(lost.checked_sub(self.missed).filter(|n| *n > 0))
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
        // [next-id, [[id, fields], ...], [deleted ids]]: the deleted ones were pending
        // but trimmed from the stream (Redis drops them from the pending list as it
        // answers), so they come back as entries without fields, for the dead letters.
        let Some(Value::Array(parts)) = as_array(reply) else {
            return Ok(Vec::new());
        };
        let mut parts = parts.into_iter().skip(1);
        let mut out = Vec::new();
        if let Some(Value::Array(items)) = parts.next() {
            out.extend(items.into_iter().filter_map(entry));
        }
        if let Some(Value::Array(deleted)) = parts.next() {
            out.extend(deleted.into_iter().filter_map(text).map(|id| Entry {
                id,
                fields: Vec::new(),
            }));
        }
        Ok(out)
    }

    /// Inserts a batch (and the gap before it) in one transaction. If PostgreSQL refuses
    /// an entry as data, the batch is redone with a savepoint per entry, so each refused
    /// entry goes to the dead letters and the others commit.
    async fn insert(
        &mut self,
        entries: &[Entry],
        gap: Option<&(String, u64)>,
    ) -> Result<(), AuditError> {
        match self.insert_batch(entries, gap, false).await {
            Err(AuditError::Postgres(e)) if refused_as_data(&e) => {
                self.insert_batch(entries, gap, true).await
            }
            other => other,
        }
    }

    async fn insert_batch(
        &mut self,
        entries: &[Entry],
        gap: Option<&(String, u64)>,
        one_by_one: bool,
    ) -> Result<(), AuditError> {
        let mut tx = self.pg.transaction().await?;
        let stmt = tx.prepare(INSERT).await?;
        if let Some((before, missing)) = gap {
            let missing = i64::try_from(*missing).unwrap_or(i64::MAX);
            tx.execute(INSERT_GAP, &[&self.namespace, before, &missing])
                .await?;
        }
        for e in entries {
            // An entry read earlier but trimmed before it was copied comes back without
            // fields: its event is lost, and the dead letters say so.
            let Some(kind) = e.get("kind") else {
                tx.execute(INSERT_TRIMMED, &[&self.namespace, &e.id, &TRIMMED])
                    .await?;
                continue;
            };
            let at: i64 = e.get("at").and_then(|a| a.parse().ok()).unwrap_or(0);
            let row: [&(dyn tokio_postgres::types::ToSql + Sync); 11] = [
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
                &e.get("details"),
            ];
            if !one_by_one {
                tx.execute(&stmt, &row).await?;
                continue;
            }
            let sp = tx.savepoint("entry").await?;
            match sp.execute(&stmt, &row).await {
                Ok(_) => sp.commit().await?,
                Err(err) if refused_as_data(&err) => {
                    sp.rollback().await?;
                    let reason = match err.as_db_error() {
                        Some(db) => format!("{} ({})", db.message(), db.code().code()),
                        None => err.to_string(),
                    };
                    let reason = reason.escape_debug().to_string();
                    let fields = format!("{:?}", e.fields);
                    tracing::warn!(
                        stream = %self.stream,
                        event_id = %e.id,
                        reason = %reason,
                        "audit: an event PostgreSQL refused went to the dead letters"
                    );
                    tx.execute(INSERT_DEAD, &[&self.namespace, &e.id, &reason, &fields])
                        .await?;
                }
                Err(err) => return Err(err.into()),
            }
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

/// A field of an `XINFO` reply (a flat list of names and values, or a map in RESP3).
fn info_field<'v>(fields: &'v [Value], name: &str) -> Option<&'v Value> {
    fields
        .chunks_exact(2)
        .find(|kv| text(kv[0].clone()).as_deref() == Some(name))
        .map(|kv| &kv[1])
}

fn info_int(fields: &[Value], name: &str) -> Option<u64> {
    match info_field(fields, name)? {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other.clone())?.parse().ok(),
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

/// A field value as text, bytes that are not UTF-8 replaced by U+FFFD.
fn lossy(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
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
    // Pairs first, then text: a value that is not UTF-8 (a user agent's obs-text bytes)
    // is kept with U+FFFD in place of what it cannot show, and never shifts the pairs.
    let fields = match fields {
        Value::Array(flat) => flat
            .chunks_exact(2)
            .filter_map(|kv| Some((text(kv[0].clone())?, lossy(&kv[1])?)))
            .collect(),
        _ => Vec::new(),
    };
    Some(Entry { id, fields })
}
