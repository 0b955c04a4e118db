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
//!
//! Cluster masters are reached with the credentials and TLS settings of the node URL the
//! store was built from. A watcher that cannot subscribe [`FAILURES_REPORTED`] times in a
//! row logs an error and emits [`EventKind::StoreUnavailable`], once per failing streak.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::{ConnectionInfo, IntoConnectionInfo as _};

use futures_util::StreamExt as _;
use tokio::sync::watch;

use super::{EXPIRED, Nodes, RedisStore, keys, protocol};
use crate::error::ConfigError;
use crate::events::{EventKind, EventSink};
use crate::id::SessionHandle;
use crate::store::ExpiryWatcher;

/// Consecutive failed subscriptions after which the watcher reports itself broken.
const FAILURES_REPORTED: u32 = 3;

impl RedisStore {
    /// Watches for expired sessions of this store's namespace and reports each as an
    /// [`EventKind::Expired`] event to the hook of `events` (pass `&layer`) (and to the event stream, if
    /// [enabled](Self::with_event_stream)). Enables `notify-keyspace-events Ex` on
    /// every master if the server allows `CONFIG SET` (otherwise enable it yourself).
    /// Reconnects by itself. [`ExpiryWatcher::subscribed`] waits until it listens on
    /// every master; [`ExpiryWatcher::abort`] stops it.
    ///
    /// # Errors
    /// [`ConfigError::UnknownNodes`] for a store made with `from_pool` (build it with
    /// [`RedisStore::builder`] or [`RedisStore::cluster_builder`], which know the node
    /// addresses); [`ConfigError::NoRuntime`] outside a Tokio runtime.
    pub fn watch_expired(
        &self,
        events: impl Into<EventSink>,
    ) -> Result<ExpiryWatcher, ConfigError> {
        let seeds = self.nodes.clone().ok_or(ConfigError::UnknownNodes)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        let store = self.clone();
        let sink: EventSink = events.into();
        let (subscribed, subscribed_rx) = watch::channel(false);
        let subscribed = Arc::new(subscribed);
        let task = runtime.spawn(async move {
            let mut failures = 0u32;
            loop {
                subscribed.send_replace(false);
                let result = match masters(&seeds, store.cluster).await {
                    Ok(masters) => {
                        let pending = Arc::new(AtomicUsize::new(masters.len()));
                        let tasks: Vec<_> = masters
                            .into_iter()
                            .map(|node| {
                                let (pending, subscribed) = (pending.clone(), subscribed.clone());
                                let on_subscribed = move || {
                                    if pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                                        subscribed.send_replace(true);
                                    }
                                };
                                tokio::spawn(watch_node(
                                    store.clone(),
                                    sink.clone(),
                                    seeds.client(node),
                                    on_subscribed,
                                ))
                            })
                            .collect();
                        // When one node's subscription ends, start over: the topology
                        // may have changed.
                        let (first, _, rest) = futures_util::future::select_all(tasks).await;
                        for t in rest {
                            t.abort();
                        }
                        first.unwrap_or(Ok(()))
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => failures = 0,
                    Err(e) => {
                        failures += 1;
                        if failures == FAILURES_REPORTED {
                            tracing::error!(
                                error = &e as &dyn std::error::Error,
                                failures,
                                "expiry watcher: cannot subscribe; expiries are reported only \
                                 when a user's index is pruned until it can"
                            );
                            sink.emit(EventKind::StoreUnavailable, &store.namespace, None, None);
                        } else {
                            tracing::warn!(
                                error = &e as &dyn std::error::Error,
                                "expiry watcher: cannot subscribe"
                            );
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Ok(ExpiryWatcher::new(task, subscribed_rx))
    }

    /// Handles one expired key: returns the handle and user if this call reported it.
    async fn on_expired_key(&self, key: &str) -> Option<(SessionHandle, String)> {
        let (tag, member) = keys::parse_session(&self.namespace, key)?;
        let mut stream = String::new();
        let call = protocol::Expired {
            namespace: &self.namespace,
            tag,
            member,
            now_ms: crate::time::now_ms(),
            stream: self.stream(&mut stream),
        };
        match self.invoke(&call.invocation(&EXPIRED)).await {
            Ok(reply) => protocol::Expired::decode(reply),
            Err(e) => {
                crate::error::log_store_error(&e, "report expiry");
                None
            }
        }
    }
}

/// The keyspace-event channel of expiries in database `db` (all databases when it is
/// not known: a store on a pool of the application's).
pub(super) fn expired_channel(db: Option<i64>) -> String {
    match db {
        Some(db) => format!("__keyevent@{db}__:expired"),
        None => "__keyevent@*__:expired".to_owned(),
    }
}

/// Subscribes to expired-key events on one node until the subscription ends. Fails
/// if it could not subscribe; a subscription that ran and ended is `Ok`.
async fn watch_node(
    store: RedisStore,
    sink: EventSink,
    client: redis::RedisResult<redis::Client>,
    on_subscribed: impl FnOnce(),
) -> Result<(), redis::RedisError> {
    let client = client?;
    enable_notifications(&client).await;
    let mut pubsub = client.get_async_pubsub().await?;
    let db = client.get_connection_info().redis_settings().db();
    pubsub.psubscribe(expired_channel(Some(db))).await?;
    on_subscribed();
    let mut messages = pubsub.into_on_message();
    while let Some(msg) = messages.next().await {
        let Ok(key) = msg.get_payload::<String>() else {
            continue;
        };
        if let Some((handle, user)) = store.on_expired_key(&key).await {
            sink.emit(
                EventKind::Expired,
                &store.namespace,
                Some(handle),
                Some(&user),
            );
        }
    }
    tracing::warn!("expiry watcher: subscription ended");
    Ok(())
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

/// The masters to subscribe on: the node itself, or every master of the cluster, each
/// with the seed's credentials.
async fn masters(nodes: &Nodes, cluster: bool) -> Result<Vec<ConnectionInfo>, redis::RedisError> {
    if let Some(sentinel) = &nodes.sentinel {
        // The current master; after a failover the subscription ends and this asks again.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)));
        return Ok(vec![sentinel.master_info(nodes, &config).await?]);
    }
    let seeds = &nodes.urls;
    if !cluster {
        return seeds
            .iter()
            .map(|s| s.as_str().into_connection_info())
            .collect();
    }
    let mut last_err = None;
    for seed in seeds {
        let attempt: Result<Vec<ConnectionInfo>, redis::RedisError> = async {
            let info = seed.as_str().into_connection_info()?;
            let client = nodes.client(info.clone())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await?;
            Ok(super::cluster_masters(&nodes)
                .iter()
                .map(|(host, port)| super::node::at(&info, host, *port))
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
