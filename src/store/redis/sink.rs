//! [`StreamSink`]: session events appended to the namespace's stream by the event
//! thread, for Redis Cluster (where a session script cannot reach the stream's slot).

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use super::{RedisStore, keys};
use crate::error::ConfigError;
use crate::events::{EventKind, SessionEvent, SessionEvents};

/// A [`SessionEvents`] hook that appends the state-change events (created, login, id
/// rotated, refreshed, logout, revoked, expired) and token events (issued, refreshed,
/// reused, revoked; with a `family` field) to the namespace's stream `<ns>:events`, in
/// the same format as [`RedisStore::with_event_stream`], so the same consumers (such as
/// the audit writer) read it. Made by [`RedisStore::event_stream_sink`]; give it to
/// `tokens::Tokens::with_events` to audit token activity.
///
/// Use it on a Redis Cluster; on standalone Redis prefer `with_event_stream`, which
/// writes each event in the same atomic script as its change. This sink writes after
/// the change, from the event thread: an event is lost if the process dies first, if
/// the queue is full, or if Redis is unreachable (logged). `ip` and `ua` are those of
/// the request that caused the event.
pub struct StreamSink {
    target: Target,
    key: String,
    max_len: usize,
    conn: Mutex<Option<Box<dyn redis::ConnectionLike + Send>>>,
}

enum Target {
    Single(Box<redis::Client>),
    Cluster(Box<redis::cluster::ClusterClient>),
    /// The master Sentinel names, looked up on each (re)connect.
    Sentinel(std::sync::Arc<super::Nodes>),
}

impl fmt::Debug for StreamSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSink")
            .field("key", &self.key)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

use redis::IntoConnectionInfo as _;

const TIMEOUT: Duration = Duration::from_secs(1);

impl RedisStore {
    /// A hook that appends this namespace's state-change events to its stream: the
    /// durable event log on a Redis Cluster. See [`StreamSink`]. Combine it with your
    /// own hook as a tuple: `layer.with_events((sink, my_hook))`.
    ///
    /// # Errors
    /// [`ConfigError::UnknownNodes`] for a store made with `from_pool` (it does not know
    /// the node addresses); [`ConfigError::RedisUrl`] if they do not parse.
    pub fn event_stream_sink(&self, max_len: usize) -> Result<StreamSink, ConfigError> {
        let nodes = self.nodes.as_deref().ok_or(ConfigError::UnknownNodes)?;
        let target = if nodes.sentinel.is_some() {
            Target::Sentinel(self.nodes.clone().ok_or(ConfigError::UnknownNodes)?)
        } else if self.cluster {
            Target::Cluster(Box::new(
                nodes
                    .cluster_client(TIMEOUT, TIMEOUT)
                    .map_err(ConfigError::RedisUrl)?,
            ))
        } else {
            let url = nodes.urls.first().ok_or(ConfigError::UnknownNodes)?;
            let info = url
                .as_str()
                .into_connection_info()
                .map_err(ConfigError::RedisUrl)?;
            Target::Single(Box::new(nodes.client(info).map_err(ConfigError::RedisUrl)?))
        };
        Ok(StreamSink {
            target,
            key: keys::events(&self.namespace),
            max_len: max_len.max(1),
            conn: Mutex::new(None),
        })
    }
}

impl StreamSink {
    fn connect(&self) -> redis::RedisResult<Box<dyn redis::ConnectionLike + Send>> {
        Ok(match &self.target {
            Target::Single(c) => {
                let conn = c.get_connection_with_timeout(TIMEOUT)?;
                conn.set_read_timeout(Some(TIMEOUT))?;
                conn.set_write_timeout(Some(TIMEOUT))?;
                Box::new(conn)
            }
            Target::Cluster(c) => Box::new(c.get_connection()?),
            Target::Sentinel(nodes) => {
                let sentinel = nodes.sentinel.as_ref().ok_or_else(|| {
                    redis::RedisError::from((redis::ErrorKind::Client, "no sentinel"))
                })?;
                let master = sentinel.master_info_blocking(nodes, TIMEOUT)?;
                let conn = nodes.client(master)?.get_connection_with_timeout(TIMEOUT)?;
                conn.set_read_timeout(Some(TIMEOUT))?;
                conn.set_write_timeout(Some(TIMEOUT))?;
                Box::new(conn)
            }
        })
    }
}

impl SessionEvents for StreamSink {
    fn on_event(&self, e: &SessionEvent) {
        let recorded = matches!(
            e.kind,
            EventKind::Created
                | EventKind::Login
                | EventKind::IdRotated
                | EventKind::Refreshed
                | EventKind::Logout
                | EventKind::Revoked(_)
                | EventKind::Expired
                | EventKind::TokenIssued
                | EventKind::TokenRefreshed
                | EventKind::TokenReused
                | EventKind::TokenRevoked
                | EventKind::TokenGraceReplay
        );
        if !recorded {
            return;
        }
        let at =
            e.at.duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_len)
            .arg("*")
            .arg("kind")
            .arg(e.kind.name())
            .arg("reason")
            .arg(e.kind.reason().unwrap_or(""))
            .arg("handle")
            .arg(e.handle.map(|h| h.to_string()).unwrap_or_default())
            .arg("user")
            .arg(e.user_id.as_deref().unwrap_or(""))
            .arg("ip")
            .arg(e.ip.map(|ip| ip.to_string()).unwrap_or_default())
            .arg("ua")
            .arg(e.user_agent.as_deref().unwrap_or(""))
            .arg("at")
            .arg(at);
        if let Some(family) = e.family {
            cmd.arg("family").arg(family.to_string());
        }
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let result = match conn.as_mut() {
            Some(c) => cmd.query::<()>(c.as_mut()),
            None => self.connect().and_then(|mut c| {
                let r = cmd.query::<()>(c.as_mut());
                *conn = Some(c);
                r
            }),
        };
        if let Err(err) = result {
            // Reconnect on the next event.
            *conn = None;
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                kind = e.kind.name(),
                "could not append a session event to the stream; event lost"
            );
        }
    }
}
