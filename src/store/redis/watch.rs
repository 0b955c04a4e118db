//! Expiry detection by keyspace notifications: Redis deletes an expired session
//! silently, but with `notify-keyspace-events Ex` it publishes the key's name. The
//! watcher subscribes on every master, and for each expired session key runs
//! `expired.lua` in its slot: the session leaves its user's index, and its expiry is
//! reported once (shared with index pruning, which reports the expiries a watcher
//! missed).
//!
//! Pub/sub is at-most-once: notifications published while the watcher is disconnected
//! are lost. Those sessions are still reported by pruning the next time their user's
//! index is read or written (login, listing, revocation).

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::task::JoinHandle;

use super::{EXPIRED, RedisStore, keys};
use crate::events::EventKind;
use crate::session::Context;
use crate::{ConfigError, SessionHandle, SessionLayer};

impl RedisStore {
    /// Watches for expired sessions of this store's namespace and reports each as an
    /// [`EventKind::Expired`] event to `layer`'s hook (and to the event stream, if
    /// [enabled](Self::with_event_stream)). Enables `notify-keyspace-events Ex` on
    /// every master if the server allows `CONFIG SET` (otherwise enable it yourself).
    /// Reconnects by itself; abort the returned task to stop.
    ///
    /// # Errors
    /// [`ConfigError::UnknownNodes`] for a store made with `from_pool` (build it with
    /// [`RedisStore::builder`] or [`RedisStore::cluster_builder`], which know the node
    /// addresses); [`ConfigError::NoRuntime`] outside a Tokio runtime.
    pub fn watch_expired<C: Send + Sync + 'static>(
        &self,
        layer: &SessionLayer<C>,
    ) -> Result<JoinHandle<()>, ConfigError> {
        let seeds = self.nodes.clone().ok_or(ConfigError::UnknownNodes)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        let store = self.clone();
        let ctx = layer.ctx.clone();
        Ok(runtime.spawn(async move {
            loop {
                match masters(&seeds, store.cluster).await {
                    Ok(masters) => {
                        let tasks: Vec<_> = masters
                            .into_iter()
                            .map(|url| tokio::spawn(watch_node(store.clone(), ctx.clone(), url)))
                            .collect();
                        // When one node's subscription ends, start over: the topology
                        // may have changed.
                        let (_, _, rest) = futures_util::future::select_all(tasks).await;
                        for t in rest {
                            t.abort();
                        }
                    }
                    Err(e) => tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "expiry watcher: cannot reach redis"
                    ),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }

    /// Handles one expired key: returns the handle and user if this call reported it.
    async fn on_expired_key(&self, key: &str) -> Option<(SessionHandle, String)> {
        let (tag, member) = keys::parse_session(&self.namespace, key)?;
        let mut inv = EXPIRED.prepare_invoke();
        let (stream, max_len) = self.stream_args();
        inv.key(keys::user_index(&self.namespace, tag))
            .arg(member)
            .arg(crate::session::now_ms())
            .arg(stream)
            .arg(max_len);
        match self.invoke::<Vec<String>>(&inv).await {
            Ok(reply) => match &reply[..] {
                [handle, user] => Some((SessionHandle::parse(handle)?, user.clone())),
                _ => None,
            },
            Err(e) => {
                crate::session::log_store_error(&e, "report expiry");
                None
            }
        }
    }
}

/// Subscribes to expired-key events on one node until the subscription ends.
async fn watch_node(store: RedisStore, ctx: std::sync::Arc<Context>, url: String) {
    let result: Result<(), redis::RedisError> = async {
        let client = redis::Client::open(url.as_str())?;
        enable_notifications(&client).await;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.psubscribe("__keyevent@*__:expired").await?;
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let Ok(key) = msg.get_payload::<String>() else {
                continue;
            };
            if let Some((handle, user)) = store.on_expired_key(&key).await {
                ctx.emit(EventKind::Expired, Some(handle), Some(&user), None);
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(
            error = &e as &dyn std::error::Error,
            "expiry watcher: subscription ended"
        );
    }
}

/// Adds `Ex` to the node's `notify-keyspace-events`, keeping the flags already set.
async fn enable_notifications(client: &redis::Client) {
    let result: Result<(), redis::RedisError> = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        let current: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query_async(&mut conn)
            .await?;
        let flags = current.get(1).cloned().unwrap_or_default();
        let has_expired = flags.contains('x') || flags.contains('A');
        if flags.contains('E') && has_expired {
            return Ok(());
        }
        let mut wanted = flags.clone();
        for f in ['E', 'x'] {
            if !wanted.contains(f) {
                wanted.push(f);
            }
        }
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg(wanted)
            .query_async::<()>(&mut conn)
            .await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(
            error = &e as &dyn std::error::Error,
            "could not enable notify-keyspace-events Ex; enable it on the server"
        );
    }
}

/// The masters to subscribe on: the node itself, or every master of the cluster.
async fn masters(seeds: &[String], cluster: bool) -> Result<Vec<String>, redis::RedisError> {
    if !cluster {
        return Ok(seeds.to_vec());
    }
    let mut last_err = None;
    for seed in seeds {
        let attempt: Result<Vec<String>, redis::RedisError> = async {
            let client = redis::Client::open(seed.as_str())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await?;
            let scheme = seed.split_once("://").map_or("redis", |(s, _)| s);
            Ok(nodes
                .lines()
                .filter_map(|line| {
                    let mut parts = line.split(' ');
                    let addr = parts.nth(1)?;
                    let flags = parts.next()?;
                    let is_master = flags.split(',').any(|f| f == "master");
                    let failed = flags.split(',').any(|f| f == "fail" || f == "fail?");
                    let host_port = addr.split('@').next()?;
                    (is_master && !failed).then(|| format!("{scheme}://{host_port}"))
                })
                .collect())
        }
        .await;
        match attempt {
            Ok(masters) => return Ok(masters),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::Client, "no cluster node given"))
    }))
}
