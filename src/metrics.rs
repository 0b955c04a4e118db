//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`),
//! for the recorder the application installs (Prometheus, OpenTelemetry, StatsD…).
//! Without the feature every function here is empty and nothing is measured.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `db.client.operation.duration` (seconds) | histogram | `db.system.name`, `db.operation.name`, `db.namespace`, `error.type` on failure |
//! | `tower_redis_session.store.errors` | counter | `db.system.name`, `db.operation.name`, `db.namespace`, `error.type` |
//! | `tower_redis_session.cookies.refused` | counter | `reason` |
//! | `tower_redis_session.tokens.refused` | counter | `operation`, `reason` |
//! | `tower_redis_session.events.dropped` | counter | |
//! | `tower_redis_session.local_cache.reads` | counter | `result` (`hit` or `miss`) |
//!
//! The store latency follows the OpenTelemetry database conventions, as the
//! `session_store` tracing span does. Every label value is one of a fixed set of
//! words or the configured namespace: never a key, session id, token or user id.

#[cfg(feature = "metrics")]
use std::time::Instant;

use crate::error::StoreError;

/// Store operation latency (OpenTelemetry `db.client.operation.duration`).
#[cfg(feature = "metrics")]
pub const STORE_DURATION: &str = "db.client.operation.duration";
/// Failed store operations.
#[cfg(feature = "metrics")]
pub const STORE_ERRORS: &str = "tower_redis_session.store.errors";
/// Session cookies refused before the store was asked (forged, malformed, oversized,
/// duplicated, or of another namespace).
#[cfg(feature = "metrics")]
pub const COOKIES_REFUSED: &str = "tower_redis_session.cookies.refused";
/// Tokens refused (malformed, forged, unknown, expired, revoked, reused).
#[cfg(feature = "metrics")]
pub const TOKENS_REFUSED: &str = "tower_redis_session.tokens.refused";
/// Lifecycle events dropped because the hook's queue was full.
#[cfg(feature = "metrics")]
pub const EVENTS_DROPPED: &str = "tower_redis_session.events.dropped";
/// Loads answered by the local session cache (`result=hit`) or sent to Redis
/// (`result=miss`); the hit ratio is hit / (hit + miss).
#[cfg(feature = "metrics")]
pub const CACHE_READS: &str = "tower_redis_session.local_cache.reads";

/// The `error.type` of a store failure: a short fixed word.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn error_type(e: &StoreError) -> &'static str {
    match e {
        StoreError::Redis(_) => "redis",
        StoreError::Connect { .. } => "connect",
        StoreError::Pool(_) => "pool",
        StoreError::Timeout(_) => "timeout",
        StoreError::Protocol(_) => "protocol",
        StoreError::UserKeyLost { .. } => "user_key_lost",
        StoreError::EvictionPolicy { .. } => "eviction_policy",
        StoreError::NotReplicated { .. } => "not_replicated",
        StoreError::Random(_) => "random",
    }
}

/// Runs a store operation, recording its duration and, if it fails, the failure.
#[cfg(feature = "metrics")]
pub(crate) async fn store_op<T>(
    system: &'static str,
    namespace: &str,
    operation: &'static str,
    op: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let start = Instant::now();
    let r = op.await;
    let elapsed = start.elapsed().as_secs_f64();
    let labels = [
        ("db.system.name", system.to_owned()),
        ("db.operation.name", operation.to_owned()),
        ("db.namespace", namespace.to_owned()),
    ];
    match &r {
        Ok(_) => metrics::histogram!(STORE_DURATION, &labels).record(elapsed),
        Err(e) => {
            let error = ("error.type", error_type(e).to_owned());
            let labels: Vec<_> = labels.into_iter().chain([error]).collect();
            metrics::histogram!(STORE_DURATION, &labels).record(elapsed);
            metrics::counter!(STORE_ERRORS, &labels).increment(1);
        }
    }
    r
}

#[cfg(not(feature = "metrics"))]
pub(crate) async fn store_op<T>(
    _: &'static str,
    _: &str,
    _: &'static str,
    op: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    op.await
}

/// A session cookie refused without asking the store; `reason` is a fixed phrase.
pub(crate) fn cookie_refused(reason: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(COOKIES_REFUSED, "reason" => reason).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = reason;
}

/// A token refused by `operation` (`authenticate`, `refresh`) for `reason`.
#[cfg(feature = "tokens")]
pub(crate) fn token_refused(operation: &'static str, reason: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(TOKENS_REFUSED, "operation" => operation, "reason" => reason).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (operation, reason);
}

/// An event a hook's full queue dropped.
pub(crate) fn event_dropped() {
    #[cfg(feature = "metrics")]
    metrics::counter!(EVENTS_DROPPED).increment(1);
}

/// A load the local cache answered (`hit`) or passed to Redis.
#[cfg(feature = "local-cache")]
pub(crate) fn cache_read(hit: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!(CACHE_READS, "result" => if hit { "hit" } else { "miss" }).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = hit;
}
