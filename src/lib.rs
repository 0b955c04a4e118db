#![deny(unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]
//! Cookie sessions for [axum] and [tower], stored in Redis.
//!
//! Add [`SessionLayer`] to a router and every handler can take a [`Session`]. Sessions
//! are lazy (a request that never touches its session costs no store command), written
//! field by field (concurrent requests never overwrite each other's keys), and every
//! write is conditional, so a session that was logged out stays logged out.
//!
//! # Quick start
//!
//! ```rust,no_run
//! use axum::{Router, routing::{get, post}};
//! use tower_redis_session::{RedisStore, Session, SessionConfig, SessionError, SessionLayer};
//!
//! async fn login(session: Session) -> Result<&'static str, SessionError> {
//!     // (check the password first) New id in the user's slot, data kept.
//!     session.login("alice").await?;
//!     Ok("welcome")
//! }
//!
//! async fn me(session: Session) -> Result<String, SessionError> {
//!     let user: Option<String> = session.user_id().await?;
//!     Ok(user.unwrap_or_else(|| "anonymous".into()))
//! }
//!
//! async fn logout(session: Session) -> Result<&'static str, SessionError> {
//!     session.destroy().await?; // deleted in Redis, removal cookie sent
//!     Ok("bye")
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::from_url("redis://127.0.0.1:6379")?;
//! let sessions = SessionLayer::new(store, SessionConfig::default())?;
//! let app: Router = Router::new()
//!     .route("/login", post(login))
//!     .route("/me", get(me))
//!     .route("/logout", post(logout))
//!     .layer(sessions);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Configuration
//!
//! [`SessionConfig`] holds the timeouts and cookie attributes; it is validated once, in
//! [`SessionLayer::new`], so a configuration that cannot work (a `__Host-` cookie with a
//! `Domain`, a refresh threshold longer than the idle timeout) fails at start-up, not per
//! request.
//!
//! - **Idle timeout** (default 30 min): enforced by the Redis TTL.
//! - **Refresh threshold** (default: half the idle timeout): a read refreshes the TTL
//!   only once less than this remains, so a busy session costs one extra command per
//!   half idle period instead of a write per request.
//! - **Absolute lifetime** (default 12 h): the TTL is never extended past it.
//! - **Per session**: [`Session::set_expiry`] with an [`Expiry`], e.g.
//!   [`Expiry::remember_me`], stored with the session.
//!
//! # Cookie security
//!
//! Defaults: `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/`, the generic name
//! `__Host-id` (the prefix makes browsers refuse a cookie of that name planted by a
//! sibling subdomain), and a browser-session cookie. The value is `<tag>.<secret>` with a 256-bit secret from
//! the OS; Redis keys hold its SHA-256, so a Redis dump or `MONITOR` stream yields no
//! usable cookie. [`SessionLayer::with_signed`] and [`SessionLayer::with_private`] sign
//! or encrypt it with a `cookie::Key`, so forged cookies never reach Redis. Malformed,
//! oversized, duplicated or forged cookies are "no session": logged (target
//! `tower_redis_session::suspicious`, never with the value) and never sent to the store.
//! Responses that set or remove the cookie carry `Cache-Control: no-store`.
//!
//! # Stores
//!
//! - [`RedisStore`]: a pool of multiplexed connections with explicit timeouts, from a URL
//!   ([`RedisStore::builder`]) or your own `deadpool_redis::Pool`
//!   ([`RedisStore::from_pool`]). [`RedisStore::with_namespace`] separates e.g. `user`
//!   and `admin` sessions on one Redis.
//! - Redis Cluster: [`RedisStore::cluster_builder`] from some
//!   node URLs, or [`RedisStore::from_cluster_pool`]. Every feature works unchanged; see
//!   below.
//! - Sentinel: [`RedisStore::sentinel_builder`], or a
//!   `redis+sentinel://host:26379,host:26379/<master>` URL; each new connection asks the
//!   sentinels for the master, so a failover needs no restart.
//! - TLS (feature `tls`, on by default): `rediss://` URLs, and `TlsConfig` for a
//!   private CA and client certificates (`RedisStoreBuilder::with_tls`).
//! - [`MemoryStore`]: the same semantics in process, for development and tests.
//! - A local session cache (feature `local-cache`, then `RedisStoreBuilder::with_local_cache`):
//!   repeat reads cost no round trip and a read-modify-write only its write; Redis
//!   keeps the copies coherent (RESP3 `CLIENT TRACKING`), and a copy is never served
//!   longer than `LocalCache::with_max_staleness` after it was read, nor after a lost
//!   connection.
//!
//! [`RedisStore::check`] connects at start-up and reports a misconfiguration (TLS,
//! credentials, server version, ACL) as a typed error; [`RedisStore::acl_rules`] gives
//! the least-privilege ACL for a store. Redis 7.0+ and Valkey 7.2+ are supported.
//!
//! ## Redis Cluster
//!
//! Every key of a session carries a hash tag, `<ns>:{<tag>}:s:<hash>`, and Redis Cluster
//! places a key by its tag only, so all keys of one session sit in one slot. An
//! anonymous session has a random tag (sessions spread evenly over the masters). A
//! login moves the session to its user's tag, so a user's sessions and index
//! (`<ns>:{<tag>}:u`) share one slot and every per-user operation (login with its limit,
//! list, revoke, log out everywhere) is one atomic script on one node: no cross-slot
//! command, no distributed transaction. The move itself is two steps (create the new
//! session in the user's slot, then delete the old one); if the first fails, the old
//! session is left as it was, so a failed login never brings back a session revoked
//! while it ran. A re-login of the same user stays in its slot: one atomic rotation.
//!
//! Failover: Redis replication is asynchronous, so a write acknowledged by a master
//! that dies before its replica received it is lost: a session created, changed or
//! revoked in the last moments before the failover may come back in its previous
//! state (a revoked session reappearing is the case to weigh). Give every master at
//! least one replica; `min-replicas-to-write 1` with a small `min-replicas-max-lag`
//! narrows the window at the cost of refusing writes when no replica is in sync.
//! While a master is down (about `cluster-node-timeout` plus the election), requests
//! that need its sessions get the store-unavailable response; the client follows the
//! promotion by itself, without a restart.
//!
//! When the store fails, handlers get [`SessionError::Store`] and the layer answers
//! with `503 Service Unavailable` and `Retry-After` (configurable with
//! [`SessionLayer::with_store_error_response`]), or, with
//! [`StoreDownPolicy::Anonymous`], serves the request as anonymous without writing;
//! requests that never touch their session are unaffected. Every store operation has a
//! timeout, and the pool replaces failed connections by itself.
//!
//! # Per-user sessions
//!
//! [`Session::login`] binds a session to a user: it moves the session to a new id in
//! the user's Redis Cluster slot (a hash tag derived from the user id with a secret
//! HMAC key, so it reveals nothing), records created / last active / IP / user agent,
//! adds it to the user's index and enforces
//! [`SessionConfig::with_max_sessions_per_user`] ([`LimitPolicy::Reject`] → 409, or
//! [`LimitPolicy::EvictOldest`]) in one atomic step. Then:
//!
//! - [`Session::user_sessions`]: "where am I logged in" (current one marked);
//! - [`Session::revoke`], [`Session::revoke_other_sessions`],
//!   [`Session::logout_everywhere`];
//! - [`SessionAdmin`] (from [`SessionLayer::admin`]): the same for admin code without a request.
//!
//! Revoked sessions are gone for requests already in flight too: their writes fail and
//! their responses remove the cookie. See the [`admin`] module.
//!
//! ```rust,no_run
//! use tower_redis_session::{Session, SessionError};
//!
//! async fn sign_out_other_devices(session: Session) -> Result<String, SessionError> {
//!     let n = session.revoke_other_sessions().await?;
//!     Ok(format!("signed out {n} other devices"))
//! }
//! ```
//!
//! # Lifecycle events and audit
//!
//! [`SessionLayer::with_events`] installs a hook for created, login, id rotated,
//! refreshed, logout, revoked, expired, invalid-cookie and store-unavailable events; it
//! never blocks a request. [`RedisStore::with_event_stream`] also appends every change
//! to a Redis Stream in the same script as the change, [`RedisStore::watch_expired`]
//! reports expired sessions, and the sibling crate `tower-redis-session-audit` copies
//! the stream into PostgreSQL: exactly once for every event the stream still held,
//! refused rows to dead letters, trimmed events counted. See the [`events`] module.
//!
//! # Tokens for API clients
//!
//! Mobile and single-page apps use bearer tokens instead of cookies. With the feature
//! `tokens`, `tokens::Tokens` issues access and refresh tokens on the same store, in the
//! same per-user slot: rotation with reuse detection, RFC 7009 revocation, an axum
//! `tokens::Bearer` extractor with RFC 6750 errors, optional JWT access tokens (feature
//! `jwt`). [`Session::logout_everywhere`] and [`SessionAdmin::revoke_all`] end the user's
//! tokens in the same atomic step as the sessions. See the `tokens` module.
//!
//! # Testing your app
//!
//! A handler that takes a [`Session`] can be called directly:
//! [`testing::SessionTester`] hands out the session the next request would get and
//! writes it back after the handler exactly as the layer does, keeping the cookie like a
//! browser would. To test the whole router, give the tester the router's layer and
//! [`send`](testing::SessionTester::send) requests through the router: it adds the
//! session cookie to each and keeps what each response sets. With the `test-redis` feature, `testing::TestRedis` gives
//! a test a real Redis: the one at `REDIS_URL` (a CI service or container), or a
//! throwaway `redis-server`, in a namespace of its own that is deleted on drop. The
//! default cookie is `Secure` with a `__Host-` name: Chrome and Firefox accept it on
//! `http://localhost`; only another plain-HTTP host needs
//! [`SessionConfig::with_secure`]`(false)` and another cookie name.
//!
//! # How the crate is organised
//!
//! Modules depend only on modules below them: identifiers, time, errors,
//! [`config`], [`events`] and [`cookie`] at the bottom; the store contract and the
//! stores ([`store`]) above them; the request's [`Session`] ([`session`]), admin
//! [`SessionAdmin`] ([`admin`]) and `tokens` above the stores; [`SessionLayer`] and
//! [`SessionService`] on top. A store reports background events to an
//! [`events::EventSink`], never to the layer. [`SessionStore`] is sealed (see
//! [`store`] for why).
//!
//! A request, top-down (file of each hop in parentheses):
//!
//! 1. [`SessionService::call`](SessionService) (`service.rs`) reads the cookie with
//!    the layer's codec (`cookie/mod.rs`: the one module that reads and writes it) and
//!    puts a lazy [`Session`] in the request's extensions. No store command yet.
//! 2. The handler's first read ([`Session::get`], `session/mod.rs`) loads the record
//!    once for the request.
//! 3. The store, behind one boxed future per operation (`store/mod.rs`: the span and
//!    the store-latency metric).
//! 4. The local cache when there is one (`store/redis/cached.rs`, the one place it
//!    stands around reads and writes), then the operation (`store/redis/ops.rs`): one
//!    `HGETALL` (or one script call, typed in `store/redis/protocol/`).
//! 5. The bounded call (`store/redis/mod.rs`: the timeout and the in-flight bound),
//!    on a pooled connection (`store/redis/pool.rs`), to Redis.
//! 6. On the way back, the response future (`future.rs`) commits the session
//!    (`session/commit.rs`): nothing when unchanged, else one write through hops 3-5.
//! 7. The service sets, re-sends or removes the cookie (`service.rs`, `cookie/mod.rs`).
//!
//! [axum]: https://docs.rs/axum
//! [tower]: https://docs.rs/tower

/// A method that is public only with the `store-internals` feature (the store
/// contract's constructors and test hooks) and crate-private otherwise.
macro_rules! store_internal {
    ($(#[$meta:meta])* fn $name:ident $($rest:tt)*) => {
        #[cfg(feature = "store-internals")]
        $(#[$meta])*
        pub fn $name $($rest)*

        #[cfg(not(feature = "store-internals"))]
        $(#[$meta])*
        #[allow(dead_code, reason = "used by stores and tests; public with store-internals")]
        pub(crate) fn $name $($rest)*
    };
}

pub mod admin;
#[cfg(feature = "axum-login")]
pub mod axum_login;
pub mod config;
mod context;
pub mod cookie;
pub mod csrf;
mod details;
pub mod error;
pub mod events;
pub mod future;
mod id;
mod layer;
#[cfg(test)]
mod layering;
#[cfg(feature = "messages")]
pub mod messages;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
mod metrics;
mod service;
pub mod session;
pub mod store;
pub mod testing;
mod time;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tokens")]
pub mod tokens;

pub use config::{Expiry, LimitPolicy, SessionConfig, SessionLimit, StoreDownPolicy};
// The cookie crate's types, documented where the modules re-export them.
#[doc(no_inline)]
pub use config::SameSite;
#[doc(no_inline)]
pub use cookie::Key;
pub use cookie::KeyRing;
pub use csrf::{CsrfLayer, CsrfToken};
pub use details::SessionDetails;
pub use error::{ConfigError, SessionError, StoreError};
pub use id::SessionHandle;
// What a store sees of a session: part of the store contract.
#[cfg(feature = "store-internals")]
pub use id::SessionKey;
pub use layer::SessionLayer;
pub use service::SessionService;
pub use session::Session;
#[cfg(feature = "local-cache")]
pub use store::{CacheStats, LocalCache};
pub use store::{
    ExpiryWatcher, MemoryStore, PoolStatus, RedisStore, RedisStoreBuilder, SessionStore, UserKey,
};
#[cfg(feature = "tls")]
pub use tls::TlsConfig;

/// Not public API: what the sibling crate `tower-redis-session-audit` (which pins this
/// exact version) takes from the core. Not covered by semver.
#[cfg(feature = "tls")]
#[doc(hidden)]
pub mod __private {
    pub use crate::store::redis::collect_text;
    pub use crate::tls::{redis_certificates, rustls_client_config};
}
pub use admin::{ListCursor, SessionAdmin, SessionInfo, SessionPage};
