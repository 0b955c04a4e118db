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
//!   unknown tokens; revoking a refresh token revokes its family. [`Tokens::revoke_all`]
//!   ends every token of a user; [`Session::logout_everywhere`](crate::Session::logout_everywhere)
//!   and [`Users::revoke_all`](crate::Users::revoke_all) end the user's sessions *and*
//!   tokens in one atomic step.
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
//!     format!("hello {}", claims.user_id())
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
#[cfg(feature = "jwt")]
mod jwt;
mod token;

pub use self::bearer::Bearer;
#[cfg(feature = "jwt")]
pub use self::jwt::{JwtKey, JwtKeys};
use self::token::{Kind, Opaque};
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

/// Token lifetimes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct TokenConfig {
    access_ttl: Duration,
    refresh_ttl: Duration,
    family_lifetime: Duration,
    reuse_grace: Duration,
    max_families: Option<usize>,
    id_token_ttl: Duration,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(3600),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            family_lifetime: Duration::from_secs(90 * 86_400),
            reuse_grace: Duration::from_secs(10),
            max_families: Some(100),
            id_token_ttl: Duration::from_secs(3600),
        }
    }
}

impl TokenConfig {
    /// How long an access token is valid. Default: 1 hour.
    pub fn with_access_ttl(mut self, d: Duration) -> Self {
        self.access_ttl = d;
        self
    }

    /// How long an OpenID Connect ID token is valid (and listed with its family).
    /// Default: 1 hour.
    pub fn with_id_token_ttl(mut self, d: Duration) -> Self {
        self.id_token_ttl = d;
        self
    }

    /// How long a refresh token stays valid unused (each refresh issues a new one).
    /// Default: 30 days.
    pub fn with_refresh_ttl(mut self, d: Duration) -> Self {
        self.refresh_ttl = d;
        self
    }

    /// Absolute lifetime of a token family (one login): no token of it outlives this.
    /// Default: 90 days.
    pub fn with_family_lifetime(mut self, d: Duration) -> Self {
        self.family_lifetime = d;
        self
    }

    /// How long after a refresh the token it consumed may be presented again without
    /// revoking the family (it gets [`TokenError::Raced`], not new tokens). Default:
    /// 10 s; zero makes every replay a reuse.
    pub fn with_reuse_grace(mut self, d: Duration) -> Self {
        self.reuse_grace = d;
        self
    }

    /// At most `max` (at least 1) live token families (signed-in apps) per user: issuing
    /// one more ends the family closest to expiry (the least recently refreshed),
    /// reported as a revocation. Default: 100. Every token operation costs the same
    /// however many families a user has; this bounds what listing and revoking all of
    /// a user's tokens go through.
    pub fn with_max_families_per_user(mut self, max: usize) -> Self {
        self.max_families = Some(max.max(1));
        self
    }

    /// No limit on token families per user.
    ///
    /// # Warning
    /// A client that logs in in a loop then grows its user's family index without
    /// bound; listing and revoking all of that user's tokens still go in bounded steps,
    /// but take as many steps as there are families.
    pub fn without_family_limit(mut self) -> Self {
        self.max_families = None;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (what, d) in [
            ("access token TTL", self.access_ttl),
            ("refresh token TTL", self.refresh_ttl),
            ("token family lifetime", self.family_lifetime),
            ("ID token TTL", self.id_token_ttl),
        ] {
            if !(MIN_DURATION..=MAX_DURATION).contains(&d) {
                return Err(ConfigError::TokenLifetime { what, got: d });
            }
        }
        if self.reuse_grace >= self.refresh_ttl {
            return Err(ConfigError::TokenLifetime {
                what: "reuse grace (must be shorter than the refresh token TTL)",
                got: self.reuse_grace,
            });
        }
        Ok(())
    }

    fn ttls(&self) -> Ttls {
        Ttls {
            access: millis(self.access_ttl),
            refresh_idle: millis(self.refresh_ttl),
            family: millis(self.family_lifetime),
            grace: millis(self.reuse_grace),
            id: millis(self.id_token_ttl),
        }
    }
}

/// A new access and refresh token. Serializes as an OAuth 2.0 token response
/// (RFC 6749 §5.1). `Debug` is redacted.
#[derive(Clone, serde::Serialize)]
pub struct TokenPair {
    access_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
    refresh_token: String,
    /// Seconds until the refresh token expires unused.
    refresh_token_expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    /// An OpenID Connect ID token, when the scope holds `openid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(skip)]
    family: FamilyId,
}

impl TokenPair {
    /// The access token, for `Authorization: Bearer`.
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// The refresh token, for [`Tokens::refresh`].
    pub fn refresh_token(&self) -> &str {
        &self.refresh_token
    }

    /// How long the access token is valid.
    pub fn expires_in(&self) -> Duration {
        Duration::from_secs(self.expires_in)
    }

    /// How long the refresh token stays valid unused.
    pub fn refresh_expires_in(&self) -> Duration {
        Duration::from_secs(self.refresh_token_expires_in)
    }

    /// The family both tokens belong to.
    pub fn family(&self) -> FamilyId {
        self.family
    }

    /// The OpenID Connect ID token issued with the pair (feature `jwt`, scope holding
    /// `openid`), if any.
    pub fn id_token(&self) -> Option<&str> {
        self.id_token.as_deref()
    }
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("family", &self.family)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// What an authenticated access token says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenClaims {
    user_id: String,
    family: FamilyId,
    session: Option<SessionHandle>,
    scope: Option<String>,
    issued_ms: i64,
    expires_ms: i64,
}

impl TokenClaims {
    /// The user the token was issued to.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The token's family.
    pub fn family(&self) -> FamilyId {
        self.family
    }

    /// The session the family is bound to, if any.
    pub fn session(&self) -> Option<SessionHandle> {
        self.session
    }

    /// The scope given at issue, if any.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// When the token was issued.
    pub fn issued_at(&self) -> SystemTime {
        time(self.issued_ms)
    }

    /// When the token expires.
    pub fn expires_at(&self) -> SystemTime {
        time(self.expires_ms)
    }
}

/// What a verified OpenID Connect ID token says ([`Tokens::verify_id_token`]).
#[cfg(feature = "jwt")]
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IdTokenClaims {
    subject: String,
    audience: String,
    issuer: String,
    issued_ms: i64,
    expires_ms: i64,
    auth_time_ms: i64,
    nonce: Option<String>,
    session: Option<SessionHandle>,
    family: FamilyId,
}

#[cfg(feature = "jwt")]
impl IdTokenClaims {
    /// The user (`sub`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The client it was issued to (`aud`).
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// When it was issued.
    pub fn issued_at(&self) -> SystemTime {
        time(self.issued_ms)
    }

    /// When it expires.
    pub fn expires_at(&self) -> SystemTime {
        time(self.expires_ms)
    }

    /// When the user authenticated (`auth_time`).
    pub fn auth_time(&self) -> SystemTime {
        time(self.auth_time_ms)
    }

    /// The client's `nonce`, if it sent one.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    /// The session it is bound to (`sid`), if any.
    pub fn session(&self) -> Option<SessionHandle> {
        self.session
    }

    /// The token family it belongs to.
    pub fn family(&self) -> FamilyId {
        self.family
    }
}

/// A live token family of a user (one signed-in app or device), as listed by
/// [`Tokens::list`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FamilyInfo {
    family: FamilyId,
    created_ms: i64,
    refreshed_ms: Option<i64>,
    expires_ms: i64,
    session: Option<SessionHandle>,
    scope: Option<String>,
    id_token_expires_ms: Option<i64>,
    client_id: Option<String>,
}

impl FamilyInfo {
    /// The family's id: pass it to [`Tokens::revoke_family`].
    pub fn family(&self) -> FamilyId {
        self.family
    }

    /// When it was issued (the login).
    pub fn created(&self) -> SystemTime {
        time(self.created_ms)
    }

    /// When it was last refreshed, if ever.
    pub fn last_refreshed(&self) -> Option<SystemTime> {
        self.refreshed_ms.map(time)
    }

    /// When its last token expires unless refreshed.
    pub fn expires(&self) -> SystemTime {
        time(self.expires_ms)
    }

    /// The session it is bound to, if any.
    pub fn session(&self) -> Option<SessionHandle> {
        self.session
    }

    /// Its scope, if any.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// When its OpenID Connect ID token expires, if it has a live one.
    pub fn id_token_expires(&self) -> Option<SystemTime> {
        self.id_token_expires_ms.map(time)
    }

    /// The OAuth client it was issued to ([`IssueOptions::client_id`]), if any.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }
}

/// Options for [`Tokens::issue_with`] and [`Tokens::issue_for_session`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct IssueOptions {
    scope: Option<String>,
    client_id: Option<String>,
    nonce: Option<String>,
    auth_time: Option<SystemTime>,
}

/// Longest client id or nonce, in bytes.
const MAX_PARAMETER: usize = 256;

impl IssueOptions {
    /// A scope carried by every token of the family (RFC 6749 §3.3). A scope holding
    /// `openid` also issues an OpenID Connect ID token (feature `jwt`; needs a
    /// [`client_id`](Self::client_id) and `JwtKeys` with an issuer).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The OAuth client the tokens are for: the ID token's audience (`aud`). The family
    /// remembers it: only [`Tokens::refresh_for_client`] and
    /// [`Tokens::revoke_for_client`] with this client refresh or revoke it (RFC 6749 §6,
    /// RFC 7009 §2.1); [`Tokens::refresh`] refuses it.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The client's `nonce`, echoed in the ID token (OpenID Connect Core §3.1.2.1).
    pub fn nonce(mut self, nonce: impl Into<String>) -> Self {
        self.nonce = Some(nonce.into());
        self
    }

    /// When the user authenticated (the ID token's `auth_time`). Default: the session's
    /// login ([`Session::authenticated_at`]) for [`Tokens::issue_for_session`], else the
    /// time of issue.
    pub fn auth_time(mut self, at: SystemTime) -> Self {
        self.auth_time = Some(at);
        self
    }

    /// Whether the scope asks for an ID token.
    fn openid(&self) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|w| w == "openid"))
    }

    /// Checks the client-supplied values; nothing is issued when one is refused.
    fn check(&self) -> Result<(), TokenError> {
        for (what, v) in [
            ("scope", &self.scope),
            ("client_id", &self.client_id),
            ("nonce", &self.nonce),
        ] {
            if let Some(v) = v
                && (v.is_empty()
                    || v.len() > MAX_PARAMETER
                    || !v.bytes().all(|b| (0x20..0x7f).contains(&b)))
            {
                return Err(TokenError::InvalidRequest(what));
            }
        }
        if self.openid() && self.client_id.is_none() {
            return Err(TokenError::InvalidRequest("client_id"));
        }
        Ok(())
    }
}

/// What a token operation can fail with.
///
/// `IntoResponse`: [`InvalidToken`](Self::InvalidToken) answers `401` with
/// `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750); refresh failures answer
/// `400 {"error":"invalid_grant"}` (RFC 6749 §5.2); store failures answer `503`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The access token is malformed, forged, expired or revoked.
    #[error("invalid access token")]
    InvalidToken,
    /// No `Authorization: Bearer` header ([`Bearer`]).
    #[error("no bearer token")]
    MissingToken,
    /// The `Authorization` header is not `Bearer <token68>`, or appears more than once
    /// ([`Bearer`]).
    #[error("malformed Authorization header")]
    MalformedAuthorization,
    /// [`Tokens::layer`] is not installed on the route of a [`Bearer`] extractor.
    #[error("Tokens missing from request extensions: add `.layer(tokens.layer())`")]
    MissingLayer,
    /// The refresh token is malformed, unknown, expired, or its family or session ended.
    #[error("invalid refresh token")]
    InvalidGrant,
    /// The refresh token was already used: its whole family has been revoked (a stolen
    /// token was probably replayed). Nothing of that family works any more.
    #[error("refresh token reused; its token family was revoked")]
    Reused {
        /// The revoked family.
        family: FamilyId,
    },
    /// The refresh token was rotated moments ago (within the grace window): a client's
    /// double submit. No tokens are issued; the family is kept.
    #[error("refresh token already rotated")]
    Raced,
    /// Tokens can be bound only to a logged-in session of this store's namespace.
    #[error("the session is not logged in in this token store's namespace")]
    NotLoggedIn,
    /// The session ended before its tokens could be issued.
    #[error("the session has ended")]
    SessionEnded,
    /// The user id is empty, longer than 256 bytes or holds a control character.
    /// Nothing was issued.
    #[error("invalid user id: {0}")]
    InvalidUserId(&'static str),
    /// A request parameter (named here: `scope`, `client_id`, `nonce`) is empty,
    /// longer than 256 bytes or not printable ASCII, or one an ID token needs is
    /// missing. Nothing was issued.
    #[error("invalid request parameter: {0}")]
    InvalidRequest(&'static str),
    /// The scope asks for an OpenID Connect ID token, but this `Tokens` cannot sign one
    /// (no feature `jwt`, no `JwtKeys`, or keys without an issuer). Nothing was
    /// issued.
    #[error("ID tokens are not configured: {0}")]
    IdTokenUnavailable(&'static str),
    /// The store failed.
    #[error("token store unavailable")]
    Store(#[from] StoreError),
    /// Loading the session failed.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        match self {
            Self::InvalidToken | Self::NotLoggedIn | Self::SessionEnded => {
                bearer::challenge(StatusCode::UNAUTHORIZED, Some("invalid_token"))
            }
            Self::MissingToken => bearer::challenge(StatusCode::UNAUTHORIZED, None),
            Self::MalformedAuthorization => {
                bearer::challenge(StatusCode::BAD_REQUEST, Some("invalid_request"))
            }
            Self::InvalidGrant | Self::Reused { .. } | Self::Raced => {
                oauth_error(r#"{"error":"invalid_grant"}"#)
            }
            Self::Store(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
            )
                .into_response(),
            Self::InvalidUserId(_) => (StatusCode::BAD_REQUEST, "invalid user id").into_response(),
            Self::InvalidRequest(_) => oauth_error(r#"{"error":"invalid_request"}"#),
            Self::IdTokenUnavailable(_) | Self::MissingLayer => {
                tracing::error!("{self}");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
            Self::Session(e) => e.into_response(),
        }
    }
}

/// A `400` RFC 6749 §5.2 error with its JSON `body`, never cached.
fn oauth_error(body: &'static str) -> Response {
    let mut r = (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Issues, checks, rotates and revokes tokens. Cloning is cheap. `Debug` shows the
/// store and the configuration, never key material.
#[derive(Clone)]
pub struct Tokens {
    backend: Backend,
    config: Arc<TokenConfig>,
    events: Arc<crate::events::Dispatcher>,
    /// The key that checks token secrets, derived once from the namespace salt.
    check_key: Arc<tokio::sync::OnceCell<[u8; 32]>>,
    #[cfg(feature = "jwt")]
    jwt: Option<Arc<JwtKeys>>,
    /// The session layer whose sessions bearer requests keep alive, if any.
    sessions: Option<Arc<crate::context::Context>>,
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
    /// (shown by [`Users::list`](crate::Users::list)) and emits
    /// [`EventKind::Refreshed`](crate::events::EventKind::Refreshed) through the
    /// layer's event hook. Without it, bearer requests do not extend sessions.
    ///
    /// # Errors
    /// [`ConfigError::NamespaceMismatch`] if the layer's store is in another namespace.
    pub fn with_session_layer(mut self, layer: &crate::SessionLayer) -> Result<Self, ConfigError> {
        let ns = layer.ctx.store.namespace();
        if ns != self.backend.namespace() {
            return Err(ConfigError::NamespaceMismatch {
                layer: ns.to_owned(),
                tokens: self.backend.namespace().to_owned(),
            });
        }
        self.sessions = Some(layer.ctx.clone());
        Ok(self)
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
    /// user and the [`FamilyId`], never a token.
    #[must_use]
    pub fn with_events(mut self, hook: impl crate::events::SessionEvents) -> Self {
        // A new queue: clones made before keep theirs.
        self.events = Arc::new(crate::events::Dispatcher::with_hook(
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

    /// Issues a new token family for `user_id` and returns its first pair.
    ///
    /// # Errors
    /// [`TokenError::Store`] if the store failed.
    pub async fn issue(&self, user_id: &str) -> Result<TokenPair, TokenError> {
        self.issue_with(user_id, IssueOptions::default()).await
    }

    /// As [`issue`](Self::issue), with options (a scope).
    ///
    /// # Errors
    /// [`TokenError::InvalidUserId`] for an empty or over-long user id, or one with a
    /// control character; [`TokenError::Store`] if the store failed.
    pub async fn issue_with(
        &self,
        user_id: &str,
        options: IssueOptions,
    ) -> Result<TokenPair, TokenError> {
        check_user_id(user_id).map_err(TokenError::InvalidUserId)?;
        options.check()?;
        self.id_token_wanted(&options)?;
        let tag = self.backend.user_tag(user_id).await?;
        self.issue_in(&tag, user_id, None, options).await
    }

    /// Issues a token family for the user logged in on `session`, bound to it: when the
    /// session ends (logout, revoke, expiry, or a login as another user), its tokens
    /// stop working too. The binding is by the session's handle, so it survives id
    /// rotation ([`Session::cycle_id`], a new login of the same user).
    ///
    /// # Errors
    /// [`TokenError::NotLoggedIn`] if the session is not logged in (or belongs to another
    /// namespace); [`TokenError::SessionEnded`] if it ended meanwhile;
    /// [`TokenError::Store`] / [`TokenError::Session`] if a store failed.
    pub async fn issue_for_session(
        &self,
        session: &Session,
        mut options: IssueOptions,
    ) -> Result<TokenPair, TokenError> {
        options.check()?;
        self.id_token_wanted(&options)?;
        let Some((user, key, handle, ns)) = session.binding().await? else {
            return Err(TokenError::NotLoggedIn);
        };
        // The ID token's auth_time is the session's login, not the issue.
        if options.auth_time.is_none() {
            options.auth_time = session.authenticated_at().await?;
        }
        if ns != self.backend.namespace() {
            return Err(TokenError::NotLoggedIn);
        }
        self.issue_in(key.tag(), &user, Some((key.hash(), handle)), options)
            .await
    }

    /// Whether `options` ask for an ID token; an error if they do and none can be made.
    fn id_token_wanted(&self, options: &IssueOptions) -> Result<bool, TokenError> {
        if !options.openid() {
            return Ok(false);
        }
        #[cfg(feature = "jwt")]
        return match &self.jwt {
            Some(keys) if keys.signs_with_secret() => Err(TokenError::IdTokenUnavailable(
                "ID tokens need a public-key signing key (JwtKey::rs256_pem or es256_pem), \
                 not a shared secret",
            )),
            Some(keys) if keys.issuer().is_some() => Ok(true),
            Some(_) => Err(TokenError::IdTokenUnavailable(
                "the JWT keys have no issuer (JwtKeys::with_issuer)",
            )),
            None => Err(TokenError::IdTokenUnavailable(
                "no JWT keys (Tokens::with_jwt)",
            )),
        };
        #[cfg(not(feature = "jwt"))]
        Err(TokenError::IdTokenUnavailable(
            "built without the `jwt` feature",
        ))
    }

    async fn issue_in(
        &self,
        tag: &str,
        user: &str,
        session: Option<(&str, SessionHandle)>,
        options: IssueOptions,
    ) -> Result<TokenPair, TokenError> {
        let with_id = self.id_token_wanted(&options)?;
        for _ in 0..COLLISION_RETRIES {
            let family = FamilyId::generate();
            let fid = family.to_string();
            let key = self.check_key().await?;
            let access = Opaque::generate(Kind::Access, tag, &key)?;
            let refresh = Opaque::generate(Kind::Refresh, tag, &key)?;
            let id = match with_id {
                true => Some(Opaque::generate(Kind::Id, tag, &key)?),
                false => None,
            };
            let id_hash = id.as_ref().map(|t| t.stored().hash);
            let now = now_ms();
            let req = Issue {
                user,
                tag,
                family: &fid,
                access: &access.stored().hash,
                refresh: &refresh.stored().hash,
                now_ms: now,
                ttl: self.config.ttls(),
                session,
                scope: options.scope.as_deref(),
                max_families: self.config.max_families.unwrap_or(0),
                id_token: id_hash.as_deref(),
                client: options.client_id.as_deref(),
            };
            match self.backend.issue(&req).await? {
                IssueOutcome::Issued {
                    access_exp,
                    refresh_exp,
                    id_exp,
                    evicted,
                } => {
                    for gone in &evicted {
                        let kind = crate::events::EventKind::TokenRevoked;
                        self.emit(kind, Some(user), FamilyId::parse(gone));
                    }
                    self.emit(
                        crate::events::EventKind::TokenIssued,
                        Some(user),
                        Some(family),
                    );
                    let claims = TokenClaims {
                        user_id: user.to_owned(),
                        family,
                        session: session.map(|s| s.1),
                        scope: options.scope.clone(),
                        issued_ms: now,
                        expires_ms: access_exp,
                    };
                    #[cfg_attr(not(feature = "jwt"), allow(unused_mut))]
                    let mut pair = self.pair(&access, &refresh, claims, now, refresh_exp)?;
                    #[cfg(feature = "jwt")]
                    if let (Some(keys), Some(id), Some(exp)) = (&self.jwt, &id, id_exp) {
                        let claims = jwt::IdClaims {
                            iss: keys.issuer().unwrap_or_default().to_owned(),
                            sub: user.to_owned(),
                            aud: options.client_id.clone().unwrap_or_default(),
                            exp: exp / 1000,
                            iat: now / 1000,
                            auth_time: options.auth_time.map_or(now, crate::time::unix_ms) / 1000,
                            nonce: options.nonce.clone(),
                            sid: session.map(|s| s.1.to_string()),
                            at_hash: keys.at_hash(&pair.access_token),
                            jti: id.encode(),
                        };
                        pair.id_token = Some(keys.sign_id(&claims)?);
                    }
                    #[cfg(not(feature = "jwt"))]
                    let _ = (id, id_exp);
                    return Ok(pair);
                }
                IssueOutcome::SessionGone => return Err(TokenError::SessionEnded),
                IssueOutcome::Collision => continue,
            }
        }
        Err(StoreError::Protocol("token collision persisted; is the RNG broken?").into())
    }

    fn pair(
        &self,
        access: &Opaque,
        refresh: &Opaque,
        claims: TokenClaims,
        now: i64,
        refresh_exp: i64,
    ) -> Result<TokenPair, TokenError> {
        let secs = |exp: i64| u64::try_from((exp - now) / 1000).unwrap_or(0);
        #[cfg(feature = "jwt")]
        let access_token = match &self.jwt {
            Some(keys) => keys.sign(&access.encode(), &claims)?,
            None => access.encode(),
        };
        #[cfg(not(feature = "jwt"))]
        let access_token = access.encode();
        Ok(TokenPair {
            access_token,
            token_type: "Bearer",
            expires_in: secs(claims.expires_ms),
            refresh_token: refresh.encode(),
            refresh_token_expires_in: secs(refresh_exp),
            scope: claims.scope,
            id_token: None,
            family: claims.family,
        })
    }

    /// Checks an access token: well-formed (and, with JWTs, correctly signed and not
    /// expired) and still live in the store. A malformed or forged token is refused
    /// without any store command.
    ///
    /// # Errors
    /// [`TokenError::InvalidToken`] if it is not a live access token;
    /// [`TokenError::Store`] if the store failed.
    pub async fn authenticate(&self, access_token: &str) -> Result<TokenClaims, TokenError> {
        let checked = self.check_access(access_token).await;
        count_refusal("authenticate", &checked);
        checked
    }

    async fn check_access(&self, access_token: &str) -> Result<TokenClaims, TokenError> {
        #[cfg(feature = "jwt")]
        let verified;
        #[cfg(feature = "jwt")]
        let access_token = match &self.jwt {
            Some(keys) => {
                verified = keys.verify(access_token).ok_or(TokenError::InvalidToken)?;
                verified.as_str()
            }
            None => access_token,
        };
        let record = self.look_up(access_token, Lookup::Access).await?;
        self.keep_alive(&record).await;
        Ok(TokenClaims {
            user_id: record.user,
            family: FamilyId::parse(&record.family).ok_or(TokenError::InvalidToken)?,
            session: record.session,
            scope: record.scope,
            issued_ms: record.issued_ms,
            expires_ms: record.expires_ms,
        })
    }

    /// The live record of an opaque access token or ID-token handle: the exact format
    /// and its check (no I/O), then one lookup in the store.
    async fn look_up(&self, token: &str, kind: Lookup) -> Result<AccessRecord, TokenError> {
        let want = match kind {
            Lookup::Access => Kind::Access,
            Lookup::Id => Kind::Id,
        };
        let token = Opaque::parse(token)
            .filter(|t| t.kind() == want)
            .ok_or(TokenError::InvalidToken)?;
        if !token.verify(&self.check_key().await?) {
            return Err(TokenError::InvalidToken);
        }
        let stored = token.stored();
        self.backend
            .authenticate(&stored.tag, kind, &stored.hash, now_ms())
            .await?
            .ok_or(TokenError::InvalidToken)
    }

    /// Checks an OpenID Connect ID token issued by these `Tokens`: signature (by its
    /// `kid`), `iss`, `aud` (must be `expected_audience`), `exp`, then that it is still
    /// live in the store: not expired, its family not revoked (revocation, log out
    /// everywhere) and its bound session not ended. A malformed, forged, oversized or
    /// unknown-`kid` token is refused without any store command.
    ///
    /// # Errors
    /// [`TokenError::InvalidToken`] if it is not a live ID token for that audience;
    /// [`TokenError::Store`] if the store failed.
    #[cfg(feature = "jwt")]
    pub async fn verify_id_token(
        &self,
        id_token: &str,
        expected_audience: &str,
    ) -> Result<IdTokenClaims, TokenError> {
        let checked = self.check_id(id_token, expected_audience).await;
        count_refusal("verify_id_token", &checked);
        checked
    }

    #[cfg(feature = "jwt")]
    async fn check_id(
        &self,
        id_token: &str,
        expected_audience: &str,
    ) -> Result<IdTokenClaims, TokenError> {
        let keys = self.jwt.as_ref().ok_or(TokenError::InvalidToken)?;
        let claims = keys
            .verify_id(id_token, expected_audience)
            .ok_or(TokenError::InvalidToken)?;
        let record = Some(self.look_up(&claims.jti, Lookup::Id).await?)
            .filter(|r| r.user == claims.sub)
            .ok_or(TokenError::InvalidToken)?;
        Ok(IdTokenClaims {
            subject: claims.sub,
            audience: claims.aud,
            issuer: claims.iss,
            issued_ms: record.issued_ms,
            expires_ms: record.expires_ms,
            auth_time_ms: claims.auth_time.saturating_mul(1000),
            nonce: claims.nonce,
            session: record.session,
            family: FamilyId::parse(&record.family).ok_or(TokenError::InvalidToken)?,
        })
    }

    /// The public keys that verify this `Tokens`' JWTs, as a JSON Web Key Set to serve
    /// at `/.well-known/jwks.json` (empty without asymmetric keys).
    #[cfg(feature = "jwt")]
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        self.jwt.as_ref().map_or_else(
            || jsonwebtoken::jwk::JwkSet { keys: Vec::new() },
            |k| k.jwks(),
        )
    }

    /// Rotates a refresh token: consumes it and issues a new pair in its family, in one
    /// atomic step. Of concurrent refreshes with one token, exactly one succeeds.
    ///
    /// # Errors
    /// - [`TokenError::InvalidGrant`]: malformed, unknown, expired, revoked, or its family
    ///   or bound session ended.
    /// - [`TokenError::Raced`]: the token was rotated within the grace window (a
    ///   double submit); nothing changed.
    /// - [`TokenError::Reused`]: the token was consumed before; its family is now
    ///   revoked.
    /// - [`TokenError::Store`]: the store failed.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, TokenError> {
        let rotated = self.rotate(refresh_token, None).await;
        count_refusal("refresh", &rotated);
        rotated
    }

    /// As [`refresh`](Self::refresh), for the OAuth client `client_id` that your token
    /// endpoint authenticated: a family issued to another client (or to none) is refused
    /// with [`TokenError::InvalidGrant`] and left as it was (RFC 6749 §6).
    ///
    /// # Errors
    /// As [`refresh`](Self::refresh).
    pub async fn refresh_for_client(
        &self,
        client_id: &str,
        refresh_token: &str,
    ) -> Result<TokenPair, TokenError> {
        let rotated = self.rotate(refresh_token, Some(client_id)).await;
        count_refusal("refresh", &rotated);
        rotated
    }

    async fn rotate(
        &self,
        refresh_token: &str,
        client: Option<&str>,
    ) -> Result<TokenPair, TokenError> {
        let key = self.check_key().await?;
        let presented = Opaque::parse(refresh_token)
            .filter(|t| t.kind() == Kind::Refresh && t.verify(&key))
            .ok_or(TokenError::InvalidGrant)?
            .stored();
        for _ in 0..COLLISION_RETRIES {
            let access = Opaque::generate(Kind::Access, &presented.tag, &key)?;
            let refresh = Opaque::generate(Kind::Refresh, &presented.tag, &key)?;
            let now = now_ms();
            let req = Refresh {
                tag: &presented.tag,
                presented: &presented.hash,
                access: &access.stored().hash,
                refresh: &refresh.stored().hash,
                now_ms: now,
                ttl: self.config.ttls(),
                client,
            };
            match self.backend.refresh(&req).await? {
                RefreshOutcome::Rotated {
                    access: record,
                    refresh_exp,
                } => {
                    let claims = TokenClaims {
                        user_id: record.user,
                        family: FamilyId::parse(&record.family)
                            .ok_or(StoreError::Protocol("token family id is not a UUID"))?,
                        session: record.session,
                        scope: record.scope,
                        issued_ms: record.issued_ms,
                        expires_ms: record.expires_ms,
                    };
                    self.emit(
                        crate::events::EventKind::TokenRefreshed,
                        Some(&claims.user_id),
                        Some(claims.family),
                    );
                    return self.pair(&access, &refresh, claims, now, refresh_exp);
                }
                RefreshOutcome::Invalid => return Err(TokenError::InvalidGrant),
                RefreshOutcome::Grace { family, user } => {
                    let kind = crate::events::EventKind::TokenGraceReplay;
                    self.emit(kind, Some(&user), FamilyId::parse(&family));
                    return Err(TokenError::Raced);
                }
                RefreshOutcome::Reused { family, user, .. } => {
                    tracing::warn!(
                        target: "tower_redis_session::tokens",
                        family = %family,
                        "refresh token reused: token family revoked"
                    );
                    let id = FamilyId::parse(&family);
                    self.emit(crate::events::EventKind::TokenReused, Some(&user), id);
                    return Err(match id {
                        Some(family) => TokenError::Reused { family },
                        None => TokenError::InvalidGrant,
                    });
                }
                RefreshOutcome::Collision => continue,
            }
        }
        Err(StoreError::Protocol("token collision persisted; is the RNG broken?").into())
    }

    /// Revokes a token (RFC 7009): an access token ends alone; a refresh token (live or
    /// already rotated) ends its whole family, access tokens included. Idempotent, and
    /// succeeds for unknown or malformed tokens. Whatever client the token was issued
    /// to: this is the server's own revocation (a logout, an admin); a revocation
    /// endpoint that serves OAuth clients calls
    /// [`revoke_for_client`](Self::revoke_for_client).
    ///
    /// # Errors
    /// [`StoreError`] if the store failed.
    pub async fn revoke(&self, token: &str) -> Result<(), StoreError> {
        self.revoke_as(token, None).await.map(|_| ())
    }

    /// As [`revoke`](Self::revoke), for the OAuth client `client_id` that your
    /// revocation endpoint authenticated (RFC 7009 §2.1): a token whose family was
    /// issued to another client (or to none) is refused and nothing changes.
    ///
    /// # Errors
    /// - [`TokenError::InvalidGrant`]: the token was issued to another client.
    /// - [`TokenError::Store`]: the store failed.
    pub async fn revoke_for_client(&self, client_id: &str, token: &str) -> Result<(), TokenError> {
        match self.revoke_as(token, Some(client_id)).await? {
            true => Ok(()),
            false => Err(TokenError::InvalidGrant),
        }
    }

    /// Revokes `token` as `client` asks (`None`: unchecked); false when its family
    /// belongs to another client.
    async fn revoke_as(&self, token: &str, client: Option<&str>) -> Result<bool, StoreError> {
        #[cfg(feature = "jwt")]
        let unwrapped;
        #[cfg(feature = "jwt")]
        let token = match self.jwt.as_ref().and_then(|k| k.jti_ignoring_expiry(token)) {
            Some(jti) => {
                unwrapped = jti;
                unwrapped.as_str()
            }
            None => token,
        };
        let Some(t) = Opaque::parse(token) else {
            return Ok(true);
        };
        if !t.verify(&self.check_key().await?) {
            return Ok(true);
        }
        let stored = t.stored();
        let target = match t.kind() {
            Kind::Access => Target::Access(&stored.hash, client),
            Kind::Refresh => Target::Refresh(&stored.hash, client),
            // An ID token ends with its family.
            Kind::Id => return Ok(true),
        };
        let Some(ended) = self.backend.revoke(&stored.tag, target, now_ms()).await? else {
            return Ok(false);
        };
        for family in ended {
            let kind = crate::events::EventKind::TokenRevoked;
            self.emit(kind, None, FamilyId::parse(&family));
        }
        Ok(true)
    }

    /// The live token families of `user_id`, oldest first ("apps signed in to your
    /// account").
    ///
    /// # Errors
    /// [`StoreError`] if the store failed.
    pub async fn list(&self, user_id: &str) -> Result<Vec<FamilyInfo>, StoreError> {
        let tag = self.backend.user_tag(user_id).await?;
        let mut list: Vec<FamilyInfo> = self
            .backend
            .list(&tag, user_id, now_ms())
            .await?
            .into_iter()
            .filter_map(|r| {
                Some(FamilyInfo {
                    family: FamilyId::parse(&r.family)?,
                    created_ms: r.created_ms,
                    refreshed_ms: r.refreshed_ms,
                    expires_ms: r.expires_ms,
                    session: r.session,
                    scope: r.scope,
                    id_token_expires_ms: r.id_expires_ms,
                    client_id: r.client,
                })
            })
            .collect();
        list.sort_by_key(|f| (f.created_ms, f.family));
        Ok(list)
    }

    /// Revokes one token family of `user_id` (e.g. "sign out that app"); returns whether
    /// it existed.
    ///
    /// # Errors
    /// [`StoreError`] if the store failed.
    pub async fn revoke_family(&self, user_id: &str, family: FamilyId) -> Result<bool, StoreError> {
        let tag = self.backend.user_tag(user_id).await?;
        let id = family.to_string();
        let target = Target::Family {
            id: &id,
            user: user_id,
        };
        let revoked = self
            .backend
            .revoke(&tag, target, now_ms())
            .await?
            .is_some_and(|ended| !ended.is_empty());
        if revoked {
            let kind = crate::events::EventKind::TokenRevoked;
            self.emit(kind, Some(user_id), Some(family));
        }
        Ok(revoked)
    }

    /// Revokes every token of `user_id`, in one atomic step; returns how many families
    /// ended. (To end sessions too, use [`Users::revoke_all`](crate::Users::revoke_all).)
    ///
    /// # Errors
    /// [`StoreError`] if the store failed.
    pub async fn revoke_all(&self, user_id: &str) -> Result<usize, StoreError> {
        let tag = self.backend.user_tag(user_id).await?;
        let revoked = self
            .backend
            .revoke(&tag, Target::User(user_id), now_ms())
            .await?
            .unwrap_or_default();
        for family in &revoked {
            let kind = crate::events::EventKind::TokenRevoked;
            self.emit(kind, Some(user_id), FamilyId::parse(family));
        }
        Ok(revoked.len())
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
