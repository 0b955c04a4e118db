//! Session stores: [`RedisStore`] (standalone Redis) and [`MemoryStore`] (development
//! and tests), behind the [`SessionStore`] trait.
//!
//! A store sees session keys (the SHA-256 of the cookie secret), never secrets.
//!
//! [`SessionStore`] is sealed: the two stores here are the only implementations. The
//! contract a store keeps is more than its method signatures: each write is atomic
//! with its condition, its TTL rule, the user's index and cap, and the event it
//! records; one conformance suite checks both stores against it, case by case. Until
//! that suite can be offered to other stores as a supported API, a third-party store
//! could not show it keeps the guarantees, so none can be plugged in. The contract's
//! types (records, patches, write modes) are visible only with the `store-internals`
//! feature, for this crate's own tests; they are not covered by semver.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use tracing::Instrument as _;

mod listing;
pub mod memory;
pub(crate) mod record;
pub mod redis;
/// The TTL and size rules, shared with the scripts (public with `store-internals`, for
/// the test that holds the two equal).
#[cfg(feature = "store-internals")]
pub mod rules;
#[cfg(not(feature = "store-internals"))]
pub(crate) mod rules;
#[cfg(feature = "tokens")]
pub(crate) mod tokens;
mod user_key;
pub(crate) mod values;
mod watcher;

pub use memory::MemoryStore;
#[cfg(feature = "local-cache")]
pub use redis::{CacheStats, LocalCache};
pub use redis::{PoolStatus, RedisStore, RedisStoreBuilder, StreamSink};
pub use user_key::UserKey;
pub use watcher::ExpiryWatcher;

use crate::error::StoreError;
use crate::id::{SessionHandle, SessionKey};
pub(crate) use listing::PAGE_SIZE;
#[cfg(feature = "store-internals")]
pub use listing::Revoke;
#[cfg(not(feature = "store-internals"))]
pub(crate) use listing::Revoke;
pub(crate) use listing::oldest_first;
pub use listing::{ListCursor, SessionInfo, SessionPage};
#[cfg(feature = "store-internals")]
pub use record::{Clock, Patch, Record, WriteMode, WriteOutcome, stamp_ttl};
#[cfg(not(feature = "store-internals"))]
pub(crate) use record::{Clock, Patch, Record, WriteMode, WriteOutcome, stamp_ttl};

mod sealed {
    use std::future::Future;
    use std::sync::Arc;

    use crate::error::StoreError;
    use crate::id::SessionKey;
    use crate::store::record::Loaded;

    /// Only this crate's stores implement [`SessionStore`](super::SessionStore).
    pub trait Sealed {
        /// The session at `key`, parsed for the session layer: [`load`] and
        /// [`Loaded::parse`], or a parsed copy the store shares (the Redis store's local
        /// cache hands out the same one until the session changes).
        ///
        /// [`load`]: super::SessionStore::load
        fn load_parsed<'a>(
            &'a self,
            key: &'a SessionKey,
        ) -> impl Future<Output = Result<Option<Arc<Loaded>>, StoreError>> + Send + 'a
        where
            Self: super::SessionStore,
        {
            async move {
                let record = super::SessionStore::load(self, key).await?;
                Ok(record.and_then(Loaded::parse).map(Arc::new))
            }
        }
    }
    impl Sealed for super::MemoryStore {}
}

/// A place to keep sessions.
///
/// Implementations must be atomic per call: a `write` applies its whole patch and TTL
/// or nothing, and its condition (NX/XX) is checked in the same step.
pub trait SessionStore: sealed::Sealed + Clone + Send + Sync + 'static {
    /// `db.system.name` of this store's spans.
    #[doc(hidden)]
    fn db_system(&self) -> &'static str {
        "redis"
    }

    /// The span of one of this store's operations.
    #[doc(hidden)]
    fn span(&self, operation: &'static str) -> tracing::Span {
        op_span(self.db_system(), self.namespace(), operation)
    }

    /// The key namespace. Signed and private cookies are bound to it, so a cookie of
    /// another namespace is refused before the store is asked.
    fn namespace(&self) -> &str {
        "session"
    }

    /// Loads a session's fields, or `None` if it does not exist (or expired).
    fn load(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// Writes a patch under the mode's condition, then sets the TTL by the TTL rule
    /// (`stamp_ttl`: capped at the deadline, deleting a session whose deadline passed).
    fn write(
        &self,
        key: &SessionKey,
        mode: WriteMode<'_>,
        patch: &Patch,
        clock: Clock,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Deletes a session (and its user-index entry). Returns its record if it existed:
    /// at least the handle (`m:h`) and user (`m:u`) fields, for the logout event.
    fn delete(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// Reads and deletes a session in one atomic step (a login moves it to the user's
    /// slot).
    fn take(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// The hash tag of a user in this store's namespace: a keyed hash of the user id
    /// that reveals nothing about it.
    fn user_tag(&self, user_id: &str) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// One page (at most `PAGE_SIZE`, 100) of the live sessions of `user_id` in slot `tag`
    /// from `cursor`, pruning expired index entries. Each call does bounded work.
    fn list_user(
        &self,
        tag: &str,
        user_id: &str,
        cursor: ListCursor,
        now_ms: i64,
    ) -> impl Future<Output = Result<SessionPage, StoreError>> + Send;

    /// Destroys sessions of `user_id` in slot `tag`; returns their handles. Every
    /// session it finds is revoked when it returns; a store may get there in several
    /// bounded steps.
    fn revoke_user(
        &self,
        tag: &str,
        user_id: &str,
        which: Revoke<'_>,
        now_ms: i64,
    ) -> impl Future<Output = Result<Vec<SessionHandle>, StoreError>> + Send;
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Object-safe mirror of [`SessionStore`], so `Session` and the layer are not generic
/// over the store.
pub(crate) trait DynStore: Send + Sync + 'static {
    fn namespace(&self) -> &str;
    /// The concrete store, to tell whether another handle reaches the same data.
    #[cfg(feature = "tokens")]
    fn as_any(&self) -> &dyn std::any::Any;
    /// The session at `key`, parsed ([`sealed::Sealed::load_parsed`]).
    fn load<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<Option<std::sync::Arc<record::Loaded>>, StoreError>>;
    fn write<'a>(
        &'a self,
        key: &'a SessionKey,
        mode: WriteMode<'a>,
        patch: &'a Patch,
        clock: Clock,
    ) -> BoxFuture<'a, Result<WriteOutcome, StoreError>>;
    fn delete<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>>;
    fn take<'a>(&'a self, key: &'a SessionKey)
    -> BoxFuture<'a, Result<Option<Record>, StoreError>>;
    fn user_tag<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<String, StoreError>>;
    fn list_user<'a>(
        &'a self,
        tag: &'a str,
        user_id: &'a str,
        cursor: ListCursor,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<SessionPage, StoreError>>;
    fn revoke_user<'a>(
        &'a self,
        tag: &'a str,
        user_id: &'a str,
        which: Revoke<'a>,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<Vec<SessionHandle>, StoreError>>;
}

/// The span of one store operation, after the OpenTelemetry database conventions:
/// `db.system.name` (`redis` or `memory`), `db.operation.name`, and the namespace
/// (`db.namespace`). Never a key, id, token or user id. Its duration is the operation's
/// (subscribers record it when the span closes).
pub(crate) fn op_span(
    system: &'static str,
    namespace: &str,
    operation: &'static str,
) -> tracing::Span {
    tracing::info_span!(
        "session_store",
        db.system.name = system,
        db.namespace = namespace,
        db.operation.name = operation,
    )
}

/// Runs one of `store`'s operations in its span, measured (feature `metrics`).
fn measured<'a, S: SessionStore, T: 'a>(
    store: &'a S,
    operation: &'static str,
    op: impl Future<Output = Result<T, StoreError>> + 'a,
) -> impl Future<Output = Result<T, StoreError>> + 'a {
    crate::metrics::store_op(store.db_system(), store.namespace(), operation, op)
        .instrument(store.span(operation))
}

impl<T: SessionStore> DynStore for T {
    fn namespace(&self) -> &str {
        SessionStore::namespace(self)
    }

    #[cfg(feature = "tokens")]
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn load<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<Option<std::sync::Arc<record::Loaded>>, StoreError>> {
        Box::pin(measured(self, "load", self.load_parsed(key)))
    }

    fn write<'a>(
        &'a self,
        key: &'a SessionKey,
        mode: WriteMode<'a>,
        patch: &'a Patch,
        clock: Clock,
    ) -> BoxFuture<'a, Result<WriteOutcome, StoreError>> {
        let op = match mode {
            WriteMode::Create => "create",
            WriteMode::Update => "update",
            WriteMode::Rotate { .. } => "rotate",
            WriteMode::Login { .. } => "login",
        };
        Box::pin(measured(
            self,
            op,
            SessionStore::write(self, key, mode, patch, clock),
        ))
    }

    fn delete<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(measured(self, "delete", SessionStore::delete(self, key)))
    }

    fn take<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(measured(self, "take", SessionStore::take(self, key)))
    }

    fn user_tag<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<String, StoreError>> {
        Box::pin(SessionStore::user_tag(self, user_id))
    }

    fn list_user<'a>(
        &'a self,
        tag: &'a str,
        user_id: &'a str,
        cursor: ListCursor,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<SessionPage, StoreError>> {
        Box::pin(measured(
            self,
            "list_user",
            SessionStore::list_user(self, tag, user_id, cursor, now_ms),
        ))
    }

    fn revoke_user<'a>(
        &'a self,
        tag: &'a str,
        user_id: &'a str,
        which: Revoke<'a>,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<Vec<SessionHandle>, StoreError>> {
        Box::pin(measured(
            self,
            "revoke_user",
            SessionStore::revoke_user(self, tag, user_id, which, now_ms),
        ))
    }
}

impl fmt::Debug for dyn DynStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn SessionStore")
    }
}

/// Checks a key namespace: non-empty printable ASCII without `{`, `}`, `:`, spaces or
/// the glob characters `*`, `?`, `[`, `]`, `\` (the ACL key pattern `~<ns>:*` must
/// name this namespace's keys and no others).
pub(crate) fn validate_namespace(ns: &str) -> Result<(), crate::error::ConfigError> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'{' | b'}' | b':' | b'*' | b'?' | b'[' | b']' | b'\\')
        });
    if ok {
        Ok(())
    } else {
        Err(crate::ConfigError::InvalidNamespace(ns.to_owned()))
    }
}

/// Test hook (feature `store-internals`): a future an operation awaits between two of
/// its store steps (a login between reading the current session and writing the
/// logged-in one; a revocation between its bounded steps), so a test can act in the
/// gap.
#[cfg(feature = "store-internals")]
#[derive(Clone)]
pub(crate) struct Pause(
    pub(crate)  std::sync::Arc<
        dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
    >,
);

#[cfg(feature = "store-internals")]
impl Pause {
    pub(crate) fn new<F, Fut>(pause: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        Self(std::sync::Arc::new(move || Box::pin(pause())))
    }
}

#[cfg(feature = "store-internals")]
impl std::fmt::Debug for Pause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pause")
    }
}
