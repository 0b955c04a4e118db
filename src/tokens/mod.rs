//! Access and refresh tokens for API clients (mobile apps, single-page apps), on the
//! same store, users and revocation as sessions.
//!
//! - **Opaque by default.** A token is `at.<tag>.<secret>` or `rt.<tag>.<secret>`: 256
//!   bits from the OS CSPRNG, carrying the user's hash tag so every key of a user shares
//!   one Redis Cluster slot. The store keeps only the secret's SHA-256. Validation looks
//!   the token up, so revocation takes effect at once; Redis TTLs clean up.
//! - **Rotation with reuse detection** (RFC 9700 §4.14). Each
//!   [`refresh`](Tokens::refresh) consumes the presented refresh token and issues a new
//!   pair in the same *family*, atomically. Presenting a consumed refresh token again
//!   revokes the whole family (its live access and refresh tokens) and answers
//!   [`TokenError::Reused`], unless it is the immediately previous token within the
//!   [grace window](TokenConfig::with_reuse_grace) (a client's double submit), which
//!   answers [`TokenError::Raced`] and revokes nothing.
//! - **Lifetimes.** Access tokens live [1 hour](TokenConfig::with_access_ttl), refresh
//!   tokens expire after [30 days](TokenConfig::with_refresh_ttl) without use, and a
//!   family ends [90 days](TokenConfig::with_family_lifetime) after login whatever
//!   happens: no token's TTL passes the family's deadline.
//! - **Listing** ([`list`](Tokens::list)): a user's live token families ("apps signed in
//!   to your account"), with created, last refreshed, expiry, scope and bound session.
//! - **Revocation** ([`revoke`](Tokens::revoke), RFC 7009): idempotent, succeeds for
//!   unknown tokens; revoking a refresh token revokes its family. [`Tokens::revoke_all_tokens`]
//!   ends every token of a user; [`Session::logout_everywhere`](crate::Session::logout_everywhere)
//!   and [`SessionAdmin::revoke_all`](crate::SessionAdmin::revoke_all) end the user's sessions *and*
//!   tokens in one atomic step.
//! - **Devices** ([`login`](Tokens::login)): an app that keeps no cookie signs in as a
//!   session of its own (IP, user agent, details; counted by the per-user limit, listed
//!   and revoked with the browser sessions) that lives and dies with its token family.
//! - **Bound to a session** ([`issue_for_session`](Tokens::issue_for_session)): the family
//!   dies with the session (logout, revoke, expiry, a login as another user) and
//!   follows it through id rotation (`cycle_id`, a new login of the same user).
//! - **Bearer extractor** ([`Bearer`]): reads `Authorization: Bearer`, answers RFC 6750
//!   errors, and gives handlers the [`TokenClaims`].
//! - **JWT access tokens** (feature `jwt`, `Tokens::with_jwt`): signature and expiry
//!   are checked first, so forged tokens cost no Redis command; then the token must still
//!   be live in Redis. Keys (`JwtKey`: RS256, ES256, HS256) carry a key id; several can
//!   verify at once (rotation) and the public ones are published by `Tokens::jwks`.
//! - **OpenID Connect ID tokens** (feature `jwt`): a scope holding `openid` also issues
//!   an ID token whose `jti` lives in Redis with its own TTL and ends with its family
//!   (`Tokens::verify_id_token` checks signature, claims, then Redis).
//! - **Bearer requests keep their session alive**
//!   ([`with_session_layer`](Tokens::with_session_layer)): under the same threshold rule
//!   as cookie reads.
//!
//! ```rust,no_run
//! use axum::{Json, Router, routing::{get, post}};
//! use tower_redis_session::{RedisStore, tokens::{Bearer, TokenConfig, TokenError, TokenPair, Tokens}};
//!
//! async fn login(tokens: axum::Extension<Tokens>) -> Result<Json<TokenPair>, TokenError> {
//!     // ... check the password, then:
//!     Ok(Json(tokens.issue("alice").await?))
//! }
//!
//! async fn me(Bearer(claims): Bearer) -> String {
//!     format!("hello {}", claims.user_id)
//! }
//!
//! # fn app() -> Result<Router, Box<dyn std::error::Error>> {
//! let tokens = Tokens::new(RedisStore::from_url("redis://127.0.0.1")?, TokenConfig::default())?;
//! let app = Router::new()
//!     .route("/login", post(login))
//!     .route("/me", get(me))
//!     .layer(tokens.layer());
//! # Ok(app) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

mod bearer;
mod config;
mod error;
mod issue;
#[cfg(feature = "jwt")]
mod jwt;
mod refresh;
mod revoke;
mod token;
mod types;
mod verify;

pub use self::bearer::Bearer;
pub use self::config::TokenConfig;
pub use self::error::TokenError;
#[cfg(feature = "jwt")]
pub use self::jwt::{JwtKey, JwtKeys};
use self::token::{Kind, Opaque};
#[cfg(feature = "jwt")]
pub use self::types::IdTokenClaims;
pub use self::types::{FamilyInfo, IssueOptions, TokenClaims, TokenPair};
use crate::config::{MAX_DURATION, MIN_DURATION, millis};
use crate::error::{ConfigError, SessionError, StoreError, check_user_id};
use crate::id::SessionHandle;
use crate::session::Session;
use crate::store::tokens::{
    self as store, AccessRecord, Backend, Issue, IssueOutcome, Lookup, Refresh, RefreshOutcome,
    Target, Ttls,
};
use crate::store::{MemoryStore, RedisStore};
use crate::time::{now_ms, system_time as time};
/// The JWT crate, for building [`JwtKeys`] with other algorithms.
#[cfg(feature = "jwt")]
pub use jsonwebtoken;

pub use crate::id::FamilyId;

/// How many times an operation with freshly generated secrets is retried on a collision.
const COLLISION_RETRIES: usize = 3;

/// Issues, checks, rotates and revokes tokens. Cloning is cheap. `Debug` shows the
/// store and the configuration, never key material.
#[derive(Clone)]
pub struct Tokens {
    backend: Backend,
    config: Arc<TokenConfig>,
    /// One hub for every clone, as a layer's (see `EventHub`).
    events: Arc<crate::events::EventHub>,
    /// The key that checks token secrets, derived once from the namespace salt.
    check_key: Arc<tokio::sync::OnceCell<[u8; 32]>>,
    #[cfg(feature = "jwt")]
    jwt: Option<Arc<JwtKeys>>,
    /// The session layer whose sessions bearer requests keep alive, if any.
    sessions: Option<Arc<crate::context::LayerState>>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("backend", &self.backend)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens on `store` ([`RedisStore`] or [`MemoryStore`]), in its namespace: give it
    /// the same store as the [`SessionLayer`](crate::SessionLayer) so that users,
    /// slots and "log out everywhere" are shared.
    ///
    /// # Errors
    /// [`ConfigError::TokenLifetime`] if a lifetime is shorter than 1 s or longer than 10
    /// years, or the grace window is not shorter than the refresh token TTL.
    pub fn new(store: impl TokenStore, config: TokenConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            backend: store.into_backend(),
            config: Arc::new(config),
            events: Arc::default(),
            check_key: Arc::default(),
            #[cfg(feature = "jwt")]
            jwt: None,
            sessions: None,
        })
    }

    /// Keeps sessions alive through their bearer tokens: authenticating an access token
    /// bound to a session ([`issue_for_session`](Self::issue_for_session)) refreshes
    /// that session as a cookie request would, under `layer`'s idle timeout and refresh
    /// threshold: no extra store command while the session is above the threshold, one
    /// write when below, which also records the request as the session's last activity
    /// (shown by [`SessionAdmin::list`](crate::SessionAdmin::list)) and emits
    /// [`EventKind::Refreshed`](crate::events::EventKind::Refreshed) through the
    /// layer's event hook. Without it, bearer requests do not extend sessions.
    ///
    /// Takes the layer (`&layer`) or its [`admin`](crate::SessionLayer::admin) handle:
    /// both carry the layer's store, configuration and event hook.
    ///
    /// # Errors
    /// [`ConfigError::NamespaceMismatch`] if the layer's store is in another namespace,
    /// [`ConfigError::StoreMismatch`] if it is another store.
    pub fn with_session_layer(
        mut self,
        layer: impl Into<crate::admin::SessionAdmin>,
    ) -> Result<Self, ConfigError> {
        let layer = layer.into();
        self.check_store(&*layer.ctx.store)?;
        self.sessions = Some(layer.ctx);
        Ok(self)
    }

    /// Whether a session layer's `store` holds the same data as these tokens: the same
    /// namespace of the same store.
    ///
    /// # Errors
    /// [`ConfigError::NamespaceMismatch`] or [`ConfigError::StoreMismatch`].
    fn check_store(&self, store: &dyn crate::store::DynStore) -> Result<(), ConfigError> {
        let ns = store.namespace();
        if ns != self.backend.namespace() {
            return Err(ConfigError::NamespaceMismatch {
                layer: ns.to_owned(),
                tokens: self.backend.namespace().to_owned(),
            });
        }
        if !self.backend.same_data_as(store) {
            return Err(ConfigError::StoreMismatch);
        }
        Ok(())
    }

    /// Refreshes the session `record` is bound to when it is below the threshold (see
    /// [`with_session_layer`](Self::with_session_layer)). A failed refresh does not fail
    /// the request: the token is valid; it is logged and counted as a store error.
    async fn keep_alive(&self, record: &AccessRecord) {
        let (Some(ctx), Some(bound)) = (&self.sessions, &record.bound) else {
            return;
        };
        let now = now_ms();
        let c = &ctx.config;
        if !c.needs_refresh(bound.expires_ms, bound.idle_ms, bound.deadline_ms, now) {
            return;
        }
        let patch = crate::store::record::Patch {
            events: "refreshed",
            max_size: c.max_session_size,
            ..Default::default()
        };
        let mode = crate::store::record::WriteMode::Update;
        match ctx
            .store
            .write(&bound.key, mode, &patch, ctx.clock(now))
            .await
        {
            Ok(crate::store::record::WriteOutcome::Written { .. }) => {
                let kind = crate::events::EventKind::Refreshed;
                ctx.emit(kind, record.session, Some(&record.user), None);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                target: "tower_redis_session::tokens",
                error = %e,
                "could not refresh the session of a bearer token"
            ),
        }
    }

    /// Issues access tokens as signed JWTs (the refresh token stays opaque). A JWT's
    /// signature and `exp` are checked before Redis is asked, then its `jti` must still
    /// be live, so revocation stays immediate.
    #[cfg(feature = "jwt")]
    #[must_use]
    pub fn with_jwt(mut self, keys: JwtKeys) -> Self {
        self.jwt = Some(Arc::new(keys));
        self
    }

    /// Sends token events (issued, refreshed, reused, revoked) to `hook`, through a
    /// bounded queue to a dedicated thread, like
    /// [`SessionLayer::with_events`](crate::SessionLayer::with_events). Events carry the
    /// user and the [`FamilyId`], never a token. The hook serves every clone of these
    /// `Tokens`, taken before or after this call; calling it again replaces it.
    #[must_use]
    pub fn with_events(self, hook: impl crate::events::SessionEvents) -> Self {
        // Installed in the hub every clone shares, so none taken earlier is left silent.
        self.events.install(crate::events::Dispatcher::with_hook(
            Arc::new(hook),
            crate::events::DEFAULT_CAPACITY,
        ));
        self
    }

    /// Waits until the event hook has returned on every event queued before this call
    /// (as [`SessionLayer::flush_events`](crate::SessionLayer::flush_events)).
    pub async fn flush_events(&self) {
        self.events.flush().await;
    }

    /// The key that checks token secrets (read and derived on first use, then cached).
    async fn check_key(&self) -> Result<[u8; 32], StoreError> {
        self.check_key
            .get_or_try_init(|| self.backend.check_key())
            .await
            .copied()
    }

    fn emit(&self, kind: crate::events::EventKind, user: Option<&str>, family: Option<FamilyId>) {
        if !self.events.enabled() {
            return;
        }
        let mut e = crate::events::SessionEvent::new(kind, self.backend.namespace());
        e.user_id = user.map(str::to_owned);
        e.family = family;
        self.events.emit(e);
    }

    /// A layer that puts these `Tokens` into request extensions, for the [`Bearer`]
    /// extractor and for handlers (`Extension<Tokens>`).
    pub fn layer(&self) -> axum::Extension<Self> {
        axum::Extension(self.clone())
    }
}

/// A store that can keep tokens: [`RedisStore`] or [`MemoryStore`]. Sealed.
pub trait TokenStore: store::Sealed {}

impl TokenStore for RedisStore {}
impl TokenStore for MemoryStore {}

/// Counts a token refused by `operation` (feature `metrics`); store failures and bad
/// input that is not a token are not refusals.
fn count_refusal<T>(operation: &'static str, result: &Result<T, TokenError>) {
    let reason = match result {
        Err(TokenError::InvalidToken) => "invalid_token",
        Err(TokenError::InvalidGrant) => "invalid_grant",
        Err(TokenError::Reused { .. }) => "reused",
        Err(TokenError::Raced) => "raced",
        Err(TokenError::SessionEnded) => "session_ended",
        _ => return,
    };
    crate::metrics::token_refused(operation, reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_bounded() {
        let huge = Duration::from_secs(u64::MAX);
        for config in [
            TokenConfig::default().with_access_ttl(huge),
            TokenConfig::default().with_refresh_ttl(huge),
            TokenConfig::default().with_family_lifetime(huge),
            TokenConfig::default().with_family_lifetime(MAX_DURATION + Duration::from_secs(1)),
        ] {
            assert!(matches!(
                Tokens::new(crate::MemoryStore::new(), config),
                Err(ConfigError::TokenLifetime { .. })
            ));
        }
        let longest = TokenConfig::default()
            .with_refresh_ttl(MAX_DURATION)
            .with_family_lifetime(MAX_DURATION);
        Tokens::new(crate::MemoryStore::new(), longest).unwrap();
    }

    #[test]
    fn debug_shows_no_key_material() {
        let t = Tokens::new(crate::MemoryStore::new(), TokenConfig::default()).unwrap();
        t.check_key.set([0xAB; 32]).unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains("171"), "{shown}");
        assert!(shown.contains("Tokens"), "{shown}");
    }
}
