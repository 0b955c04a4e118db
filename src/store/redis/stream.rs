//! The namespace's durable event stream, written by the session scripts: turning it
//! on, its key, reading it back.

use super::*;

impl RedisStore {
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

    /// The newest `count` events (at most 1000)
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
    pub(super) const RECENT_EVENTS_MAX: usize = 1000;

    /// The stream key and MAXLEN arguments of the event-recording scripts.
    /// The event stream as the session scripts take it (`key` borrowed from `buf`).
    pub(super) fn stream<'a>(&self, buf: &'a mut String) -> protocol::Stream<'a> {
        let max_len = match self.event_stream {
            Some(n) => {
                *buf = keys::events(&self.namespace);
                n
            }
            None => 0,
        };
        protocol::Stream { key: buf, max_len }
    }
}
