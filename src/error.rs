//! Error types, one per layer of the stack.
//!
//! - [`ConfigError`]: a configuration that can never work, reported once at construction.
//! - [`StoreError`]: the session store (Redis, the pool, a timeout) failed.
//! - [`SessionError`]: what a handler sees from [`Session`](crate::Session) methods.

use std::sync::Arc;
use std::time::Duration;

use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// A configuration that can never work, reported when the layer or store is built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The cookie name is empty or contains characters not allowed in a cookie name.
    #[error("invalid cookie name {0:?}: use a non-empty RFC 6265 token")]
    InvalidCookieName(String),
    /// A `__Host-` cookie (the default name is `__Host-id`) must be `Secure`, have
    /// `Path=/` and no `Domain`.
    #[error(
        "a `__Host-` cookie (the default name is `__Host-id`) must be Secure, with Path=/ \
         and no Domain: for a Domain, another Path or a cookie without Secure, choose \
         another name with with_cookie_name (e.g. \"id\", or \"__Secure-id\" with a Domain)"
    )]
    HostPrefix,
    /// A `__Secure-` cookie must be `Secure`.
    #[error("a `__Secure-` cookie must be Secure")]
    SecurePrefix,
    /// `SameSite=None` is only accepted by browsers on `Secure` cookies.
    #[error("SameSite=None requires a Secure cookie")]
    SameSiteNoneWithoutSecure,
    /// The idle timeout must be between one second and ten years.
    #[error("idle timeout must be between 1 s and 10 years, got {0:?}")]
    IdleTimeout(Duration),
    /// The refresh threshold must not be longer than the idle timeout.
    #[error("refresh threshold {threshold:?} is longer than the idle timeout {idle:?}")]
    RefreshThreshold {
        /// The threshold that was configured.
        threshold: Duration,
        /// The idle timeout it was compared with.
        idle: Duration,
    },
    /// The absolute lifetime must be between one second and ten years.
    #[error("absolute lifetime must be between 1 s and 10 years, got {0:?}")]
    AbsoluteLifetime(Duration),
    /// A key namespace must be non-empty printable ASCII without `{`, `}`, `:`, spaces or
    /// glob characters: braces would move the Redis Cluster hash tag, and a glob would
    /// widen the ACL key pattern `~<ns>:*` to other namespaces' keys.
    #[error(
        "invalid key namespace {0:?}: use printable ASCII without '{{', '}}', ':', spaces or \
         glob characters ('*', '?', '[', ']', '\\')"
    )]
    InvalidNamespace(String),
    /// Invalid [`with_wait_for_replicas`](crate::RedisStoreBuilder::with_wait_for_replicas)
    /// settings.
    #[error("invalid durability settings: {0}")]
    Durability(&'static str),
    /// A trusted origin for [`CsrfLayer`](crate::CsrfLayer) is not
    /// `http(s)://host[:port]`.
    #[error("invalid trusted origin {0:?}: use http(s)://host[:port], without a path")]
    TrustedOrigin(String),
    /// A token lifetime is out of range (see `tokens::TokenConfig`).
    #[error("invalid {what}: {got:?}")]
    TokenLifetime {
        /// Which lifetime.
        what: &'static str,
        /// The configured value.
        got: Duration,
    },
    /// A Redis Cluster store cannot log events to a stream in the same script as the
    /// change (the stream would be in another slot).
    #[error(
        "an event stream needs standalone Redis (a cluster script cannot reach the stream's slot)"
    )]
    EventStreamOnCluster,
    /// The operation needs the Redis node addresses, which a store made from a
    /// connection pool (`RedisStore::from_pool`) does not know: build it with
    /// `RedisStore::builder` or `RedisStore::cluster_builder`.
    #[error("this needs a RedisStore built from node URLs, not from a pool")]
    UnknownNodes,
    /// A background task was asked for outside a Tokio runtime.
    #[error("this must be called inside a Tokio runtime")]
    NoRuntime,
    /// A JWT key is unusable.
    #[error("invalid JWT key: {0}")]
    JwtKey(&'static str),
    /// `tokens::Tokens::with_session_layer` was
    /// given a layer whose store is in another namespace than the tokens'.
    #[error("the session layer's namespace {layer:?} is not the tokens' {tokens:?}")]
    NamespaceMismatch {
        /// The layer's namespace.
        layer: String,
        /// The tokens' namespace.
        tokens: String,
    },
    /// `tokens::Tokens::with_session_layer` was given a layer on another store than
    /// the tokens' (another memory store, other Redis nodes or another database): the
    /// tokens would keep alive sessions the layer never reads.
    #[error("the session layer's store is not the tokens' store")]
    StoreMismatch,
    /// A [`UserKey`](crate::store::UserKey) needs at least 32 bytes.
    #[error("a user key needs at least 32 bytes, got {0}")]
    UserKeyTooShort(usize),
    /// Local cache settings out of range (`LocalCache`, feature `local-cache`).
    #[error("invalid local cache settings: {0}")]
    LocalCache(&'static str),
    /// The Redis URL could not be parsed.
    #[error("invalid Redis URL")]
    RedisUrl(#[source] redis::RedisError),
    /// Sentinel settings that cannot work (no sentinel, no master name, a bad URL form).
    #[error("invalid Sentinel settings: {0}")]
    Sentinel(&'static str),
    /// A TLS certificate or key that does not parse.
    #[error("invalid TLS settings: {0}")]
    Tls(String),
    /// A TLS file that cannot be read.
    #[error("cannot read TLS file {path}")]
    TlsFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connection pool could not be built.
    #[error("could not build the connection pool")]
    Pool(#[from] deadpool::managed::BuildError),
}

/// The session store failed.
///
/// The layer turns this into the configured store-unavailable response (503 by default)
/// and logs it; handlers receive it inside [`SessionError::Store`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A Redis command failed.
    #[error("redis command failed")]
    Redis(#[from] redis::RedisError),
    /// A connection to Redis could not be opened: refused, a TLS or authentication
    /// failure, or a server too old.
    #[error("cannot connect to Redis at {address}: {source}")]
    Connect {
        /// Where the store tried, credentials redacted (the node URLs, or the
        /// sentinels).
        address: String,
        /// Why.
        #[source]
        source: redis::RedisError,
    },
    /// No connection could be taken from the pool in time.
    #[error("no redis connection available")]
    Pool(#[from] deadpool::managed::PoolError<redis::RedisError>),
    /// The operation did not finish within the configured timeout.
    #[error("store operation timed out after {0:?}")]
    Timeout(Duration),
    /// The store answered something this crate did not write (e.g. another program wrote
    /// the key).
    #[error("unexpected store reply: {0}")]
    Protocol(&'static str),
    /// The namespace's user-tag key (`<namespace>:salt`) is missing from Redis (evicted,
    /// deleted, or lost in a restore) while the namespace still holds sessions or
    /// tokens made with it. Making a new key would silently move every user to another
    /// slot (log out everywhere would miss their sessions), so the store refuses
    /// per-user operations instead. Restore the key from a backup, or give the store a
    /// key of your own with `with_user_key` (sessions and tokens made under the lost key
    /// then need a new login).
    #[error(
        "the user-tag key of namespace {namespace:?} is missing from Redis but the namespace \
         holds data made with it: restore it or supply a UserKey"
    )]
    UserKeyLost {
        /// The namespace.
        namespace: String,
    },
    /// A revocation (logout, revoke, log out everywhere, a token revoked or a family
    /// ended by reuse) holds on the master, but fewer replicas than
    /// [`RedisStoreBuilder::with_wait_for_replicas`](crate::RedisStoreBuilder::with_wait_for_replicas)
    /// asks confirmed it in time: a failover now could undo it. Retry it, or alert.
    #[error("revocation reached {acked} of {wanted} replicas in time")]
    NotReplicated {
        /// Replicas that confirmed it.
        acked: usize,
        /// Replicas asked for.
        wanted: usize,
    },
    /// The server's `maxmemory-policy` may evict this store's keys (every key has a
    /// TTL, so `volatile-*` policies can too): revocation bookkeeping could vanish under
    /// memory pressure while sessions stay. Set `maxmemory-policy noeviction`, or opt
    /// in with [`RedisStore::with_eviction_allowed`](crate::RedisStore::with_eviction_allowed).
    #[error(
        "Redis may evict session keys (maxmemory-policy {policy}): set noeviction, or opt \
         in with RedisStore::with_eviction_allowed"
    )]
    EvictionPolicy {
        /// The policy the server reported.
        policy: String,
    },
    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Random(#[from] getrandom::Error),
}

/// Longest user id, in bytes.
pub(crate) const MAX_USER_ID: usize = 256;

/// Checks a user id given to `login` or a token issue: why it is refused, if it is
/// (empty, longer than 256 bytes, or holding a control character).
pub(crate) fn check_user_id(user_id: &str) -> Result<(), &'static str> {
    if user_id.is_empty() {
        Err("empty")
    } else if user_id.len() > MAX_USER_ID {
        Err("longer than 256 bytes")
    } else if user_id.chars().any(char::is_control) {
        Err("contains a control character")
    } else {
        Ok(())
    }
}

/// An error returned to a handler by a [`Session`](crate::Session) method.
///
/// It implements axum's `IntoResponse`, so handlers can use `?`: store failures answer
/// `503 Service Unavailable` with `Retry-After`, (de)serialization failures answer `500`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed; the layer also answers this request with its configured
    /// store-unavailable response.
    #[error("session store unavailable")]
    Store(#[source] Arc<StoreError>),
    /// The value could not be serialized.
    #[error("could not serialize session value {key:?}")]
    Serialize {
        /// The session key being written.
        key: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// A login was refused: the user already has the maximum number of sessions and the
    /// policy is [`LimitPolicy::Reject`](crate::LimitPolicy::Reject). Nothing changed.
    #[error("the user already has {limit} sessions")]
    TooManySessions {
        /// The configured limit.
        limit: usize,
    },
    /// The insert would make the session larger than
    /// [`SessionConfig::with_max_session_size`](crate::SessionConfig::with_max_session_size)
    /// allows. Nothing changed.
    #[error("session would be {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The size the session would have had.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The insert would give the session more than `limit` (1,000) keys: a session
    /// holds a bounded number of fields, so that every write of it (a login moves them
    /// all) stays one bounded step. Nothing changed; group many small values into one
    /// key (a map or a list).
    #[error("session would hold more than {limit} keys")]
    TooManyKeys {
        /// The most keys a session holds.
        limit: usize,
    },
    /// The operation needs a logged-in session.
    #[error("the session is not logged in")]
    NotLoggedIn,
    /// The user authenticated longer ago than the action allows
    /// ([`Session::require_recent_auth`](crate::Session::require_recent_auth)): they
    /// must log in again. Answers `401`.
    #[error("authentication older than {max_age:?}: log in again")]
    StaleAuthentication {
        /// The most time since the login the action accepts.
        max_age: Duration,
    },
    /// A user id must be 1 to 256 bytes without control characters (it is stored,
    /// logged in events and written to the audit table). Nothing changed.
    #[error("invalid user id: {0}")]
    InvalidUserId(&'static str),
    /// A [`SessionDetails`](crate::SessionDetails) field breaks its limits (named here).
    /// Nothing changed.
    #[error("invalid session details: {0}")]
    InvalidDetails(&'static str),
    /// The [`Session`](crate::Session) extractor ran on a route without the
    /// [`SessionLayer`](crate::SessionLayer): a wiring mistake, answered with `500`.
    #[error("no session in the request extensions: is SessionLayer installed on this route?")]
    MissingLayer,
    /// The stored value does not deserialize into the requested type. The value is kept.
    #[error("session value {key:?} does not deserialize into the requested type")]
    Deserialize {
        /// The session key being read.
        key: String,
        /// The deserializer's error.
        #[source]
        source: serde_json::Error,
    },
}

impl From<StoreError> for SessionError {
    fn from(e: StoreError) -> Self {
        Self::Store(Arc::new(e))
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        match self {
            SessionError::Store(_) => {
                let mut res =
                    (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable").into_response();
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                res
            }
            SessionError::TooManySessions { .. } => {
                (StatusCode::CONFLICT, "too many sessions").into_response()
            }
            SessionError::NotLoggedIn => {
                (StatusCode::UNAUTHORIZED, "not logged in").into_response()
            }
            SessionError::StaleAuthentication { .. } => {
                (StatusCode::UNAUTHORIZED, "re-authentication required").into_response()
            }
            SessionError::InvalidUserId(_) => {
                (StatusCode::BAD_REQUEST, "invalid user id").into_response()
            }
            SessionError::InvalidDetails(_) => {
                (StatusCode::BAD_REQUEST, "invalid session details").into_response()
            }
            SessionError::MissingLayer => {
                let text = self.to_string();
                tracing::error!("{text}");
                (StatusCode::INTERNAL_SERVER_ERROR, text).into_response()
            }
            SessionError::TooLarge { .. } | SessionError::TooManyKeys { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "session too large").into_response()
            }
            SessionError::Serialize { .. } | SessionError::Deserialize { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "session value error").into_response()
            }
        }
    }
}

/// Logs a store failure (never a key or secret: the error carries neither).
pub(crate) fn log_store_error(e: &StoreError, op: &'static str) {
    tracing::error!(
        error = e as &dyn std::error::Error,
        op,
        "session store unavailable"
    );
}
