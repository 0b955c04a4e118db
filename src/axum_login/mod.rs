//! [axum-login] on these sessions (feature `axum-login`): keep your `AuthnBackend`,
//! `AuthUser` and `AuthzBackend` implementations (axum-login's traits, from its crate)
//! and give them this crate's storage.
//!
//! ```rust,ignore
//! use tower_redis_session::axum_login::{self, AuthSession};
//! use tower_redis_session::{login_required, SessionLayer};
//!
//! let app = Router::new()
//!     .route("/", get(protected))
//!     .route_layer(login_required!(Backend, login_url = "/login"))
//!     .route("/login", post(login))
//!     .layer(axum_login::layer(backend))
//!     .layer(SessionLayer::new(store, config)?);
//!
//! async fn login(mut auth: AuthSession<Backend>, Form(creds): Form<Credentials>) -> Response {
//!     match auth.authenticate(creds).await {
//!         Ok(Some(user)) => match auth.login(&user).await {
//!             Ok(()) => Redirect::to("/").into_response(),
//!             Err(e) => e.into_response(),
//!         },
//!         Ok(None) => StatusCode::UNAUTHORIZED.into_response(),
//!         Err(e) => e.into_response(),
//!     }
//! }
//! ```
//!
//! [`AuthSession`] has axum-login's method names and meaning (`authenticate`, `login`,
//! `logout`, `user`, `backend`, as on axum-login's main branch). What differs is
//! underneath:
//! - [`login`](AuthSession::login) is [`Session::login`]: the user's hash-tag slot, a
//!   new id, the per-user cap and the login event, with the user id (its `Display`
//!   form) as the session's user;
//! - the session keeps an HMAC-SHA-256 of the user's `session_auth_hash`, not the hash
//!   itself (axum-login stores the password hash in the session), and every request
//!   that reads the user checks it in constant time: on a mismatch (the password
//!   changed) the session ends, so each device is logged out at its next request;
//! - the user is loaded when a handler or guard first asks for it, once per request,
//!   not on every request the layer sees;
//! - the device list, revocation and "log out everywhere" are the [`Session`]'s own
//!   (`user_sessions`, `revoke`, `logout_everywhere`): extract it beside.
//!
//! The guards are [`login_required!`](crate::login_required) and
//! [`permission_required!`](crate::permission_required), with axum-login's forms:
//! a redirect to the login URL with `next=` (307), or `401` / `403` for APIs.
//!
//! [axum-login]: https://docs.rs/axum-login

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use ::axum_login::{AuthUser, AuthnBackend, UserId};
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::StatusCode;
use http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::SessionError;
use crate::session::Session;

mod guards;

#[doc(hidden)]
pub use ::axum_login::AuthzBackend as __AuthzBackend;
#[doc(hidden)]
pub use axum as __axum;
#[doc(hidden)]
pub use guards::__login_url;

/// The session key holding the login: the user id and the check of its auth hash.
const KEY: &str = "__auth";

/// The HMAC key that turns a `session_auth_hash` into what the session stores (a
/// fixed, public domain separator: the point is that the stored value is not the
/// hash itself, and that comparing it is constant-time).
const HASH_KEY: &[u8] = b"tower-redis-session axum-login session_auth_hash";

#[derive(Serialize, Deserialize)]
struct Stored<Id> {
    id: Id,
    check: String,
}

fn hash_mac(auth_hash: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(HASH_KEY)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(auth_hash);
    mac
}

fn check_of(auth_hash: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(hash_mac(auth_hash).finalize().into_bytes())
}

/// Whether `check` was made from `auth_hash` (constant-time; anything malformed is no).
fn matches(check: &str, auth_hash: &[u8]) -> bool {
    URL_SAFE_NO_PAD
        .decode(check)
        .is_ok_and(|tag| hash_mac(auth_hash).verify_slice(&tag).is_ok())
}

/// What an [`AuthSession`] operation can fail with.
pub enum AuthError<B: AuthnBackend> {
    /// The session failed (the store, a refused login, …); answers as
    /// [`SessionError`] does.
    Session(SessionError),
    /// The backend failed (`authenticate` or `get_user`); answers `500` without its
    /// text, which is logged.
    Backend(B::Error),
    /// [`AuthSession`] was extracted on a route without [`layer`]: a wiring mistake,
    /// answered with `500`.
    MissingLayer,
}

impl<B: AuthnBackend> From<SessionError> for AuthError<B> {
    fn from(e: SessionError) -> Self {
        Self::Session(e)
    }
}

impl<B: AuthnBackend> fmt::Debug for AuthError<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session(e) => f.debug_tuple("Session").field(e).finish(),
            Self::Backend(e) => f.debug_tuple("Backend").field(e).finish(),
            Self::MissingLayer => f.write_str("MissingLayer"),
        }
    }
}

impl<B: AuthnBackend> fmt::Display for AuthError<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session(e) => e.fmt(f),
            Self::Backend(e) => write!(f, "authentication backend failed: {e}"),
            Self::MissingLayer => f.write_str(
                "no authentication backend in the request extensions: \
                 is axum_login::layer(backend) installed on this route?",
            ),
        }
    }
}

impl<B: AuthnBackend + 'static> std::error::Error for AuthError<B> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Session(e) => Some(e),
            Self::Backend(e) => Some(e),
            Self::MissingLayer => None,
        }
    }
}

impl<B: AuthnBackend> IntoResponse for AuthError<B> {
    fn into_response(self) -> Response {
        match self {
            Self::Session(e) => e.into_response(),
            Self::Backend(e) => {
                tracing::error!(error = %e, "authentication backend failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "authentication failed").into_response()
            }
            Self::MissingLayer => {
                let text = self.to_string();
                tracing::error!("{text}");
                (StatusCode::INTERNAL_SERVER_ERROR, text).into_response()
            }
        }
    }
}

/// The layer that gives [`AuthSession`] its backend: put it beside (inside or outside)
/// the [`SessionLayer`](crate::SessionLayer).
pub fn layer<B: AuthnBackend + 'static>(backend: B) -> axum::Extension<B> {
    axum::Extension(backend)
}

/// A request's login state on the [`Session`]: an extractor (needs [`layer`] and the
/// [`SessionLayer`](crate::SessionLayer)). Clones, and every extraction in one
/// request (a guard, then the handler), share the same state.
pub struct AuthSession<B: AuthnBackend> {
    backend: B,
    session: Session,
    user: Arc<Mutex<Option<B::User>>>,
}

impl<B: AuthnBackend> Clone for AuthSession<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            session: self.session.clone(),
            user: self.user.clone(),
        }
    }
}

impl<B: AuthnBackend> fmt::Debug for AuthSession<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSession")
            .field("logged_in", &self.current().is_some())
            .finish_non_exhaustive()
    }
}

impl<B: AuthnBackend> AuthSession<B> {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<B::User>> {
        self.user.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Option<B::User> {
        self.slot().clone()
    }

    /// The backend given to [`layer`].
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The logged-in user, if any.
    pub async fn user(&self) -> Option<B::User> {
        self.current()
    }

    /// Checks `creds` with the backend: the user they name, or `None` if they are
    /// wrong. Changes nothing; [`login`](Self::login) the user next.
    ///
    /// # Errors
    /// [`AuthError::Backend`] if the backend failed.
    pub async fn authenticate(
        &self,
        creds: B::Credentials,
    ) -> Result<Option<B::User>, AuthError<B>> {
        self.backend
            .authenticate(creds)
            .await
            .map_err(AuthError::Backend)
    }

    /// Logs the session in as `user`: [`Session::login`] with the user id's `Display`
    /// form (new id in the user's slot, the per-user cap, the login event), and the
    /// check of the user's `session_auth_hash` stored with it in the same write.
    ///
    /// # Errors
    /// What [`Session::login`] answers ([`SessionError::TooManySessions`],
    /// [`SessionError::InvalidUserId`] for an id whose `Display` form is empty, too
    /// long or has a control character, a store failure); the session is then left
    /// as it was, not logged in as `user`.
    pub async fn login(&mut self, user: &B::User) -> Result<(), AuthError<B>> {
        let id = user.id();
        let stored = Stored {
            id: id.clone(),
            check: check_of(user.session_auth_hash()),
        };
        // Inserted first, so that the login's one write carries it.
        self.session.insert(KEY, &stored).await?;
        if let Err(e) = self.session.login(&id.to_string()).await {
            // Nothing that reads as this login is left for the end of the request.
            self.session.remove::<serde::de::IgnoredAny>(KEY).await.ok();
            return Err(e.into());
        }
        *self.slot() = Some(user.clone());
        Ok(())
    }

    /// Logs out: ends the session ([`Session::destroy`]) and answers the user who was
    /// logged in.
    ///
    /// # Errors
    /// [`AuthError::Session`] if the store failed; the user is then still logged in.
    pub async fn logout(&mut self) -> Result<Option<B::User>, AuthError<B>> {
        self.session.destroy().await?;
        Ok(self.slot().take())
    }

    /// The request's login, read from the session: the user whose id it stores, if
    /// the session is logged in as that user and the auth hash still matches. A
    /// mismatch ends the session.
    async fn load(session: Session, backend: B) -> Result<Self, AuthError<B>> {
        let stored = match session.get::<Stored<UserId<B>>>(KEY).await {
            Ok(stored) => stored,
            // Not a login this layer wrote: not logged in.
            Err(SessionError::Deserialize { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let mut user = None;
        if let Some(stored) = stored {
            // Only the session's own user counts: a value under the key on an
            // anonymous session, or another user's, is no login.
            let owner = session.user_id().await?;
            if owner.is_some_and(|o| o == stored.id.to_string()) {
                match backend.get_user(&stored.id).await {
                    Ok(Some(u)) if matches(&stored.check, u.session_auth_hash()) => user = Some(u),
                    Ok(Some(_)) => session.destroy().await?,
                    Ok(None) => {}
                    Err(e) => return Err(AuthError::Backend(e)),
                }
            }
        }
        Ok(Self {
            backend,
            session,
            user: Arc::new(Mutex::new(user)),
        })
    }
}

impl<S, B> FromRequestParts<S> for AuthSession<B>
where
    S: Send + Sync,
    B: AuthnBackend + 'static,
{
    /// [`AuthError::MissingLayer`] or [`SessionError::MissingLayer`] on a route
    /// without the layers; a store or backend failure while loading the user.
    type Rejection = AuthError<B>;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(auth) = parts.extensions.get::<Self>() {
            return Ok(auth.clone());
        }
        let session = parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(SessionError::MissingLayer)?;
        let backend = parts
            .extensions
            .get::<B>()
            .cloned()
            .ok_or(AuthError::MissingLayer)?;
        let auth = Self::load(session, backend).await?;
        parts.extensions.insert(auth.clone());
        Ok(auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_check_is_not_the_hash_and_matches_only_it() {
        let check = check_of(b"$argon2id$hash");
        assert!(!check.contains("argon2"));
        assert!(matches(&check, b"$argon2id$hash"));
        assert!(!matches(&check, b"$argon2id$hasH"));
        assert!(!matches("not base64!", b"$argon2id$hash"));
        assert!(!matches("", b""));
    }
}
