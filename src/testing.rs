//! Unit tests for your handlers: a [`Session`] without an HTTP server.
//!
//! [`SessionTester`] plays the part of the layer and of a browser's cookie jar: it
//! hands out the session the next request would get, and after your handler ran, it
//! writes the session back exactly as the layer does and keeps the cookie the response
//! would have set.
//!
//! ```
//! use tower_redis_session::testing::{Finished, SessionTester};
//! use tower_redis_session::{MemoryStore, Session, SessionConfig, SessionError, SessionLayer};
//!
//! async fn visit(session: Session) -> Result<String, SessionError> {
//!     let n: u64 = session.get("visits").await?.unwrap_or(0) + 1;
//!     session.insert("visits", n).await?;
//!     Ok(format!("visit {n}"))
//! }
//!
//! # tokio_test_block_on(async {
//! let layer = SessionLayer::new(MemoryStore::new(), SessionConfig::default()).unwrap();
//! let mut browser = SessionTester::new(layer);
//!
//! let session = browser.session();
//! assert_eq!(visit(session.clone()).await.unwrap(), "visit 1");
//! assert!(matches!(browser.finish(session).await, Finished::CookieSet { .. }));
//!
//! let session = browser.session();
//! assert_eq!(visit(session.clone()).await.unwrap(), "visit 2");
//! browser.finish(session).await;
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```
//!
//! To drive a whole `Router` instead, send requests with `tower::ServiceExt::oneshot`
//! and carry the `Set-Cookie` value into the next request's `Cookie` header (see the
//! crate docs, "Testing your app").

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};

use crate::context::RequestMeta;
use crate::cookie::{self, CookieCodec, PlainCookie};
use crate::error::StoreError;
use crate::layer::SessionLayer;
use crate::session::{Commit, CookieAction, Session};

/// A browser's cookie jar and the layer's write-back, for calling handlers directly.
#[derive(Debug)]
pub struct SessionTester<C = PlainCookie> {
    layer: SessionLayer<C>,
    /// The session cookie's value, as a browser would send it.
    cookie: Option<String>,
}

/// What finishing a session did, as the response would show it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Finished {
    /// No `Set-Cookie`: the cookie (if any) stays as it was.
    CookieKept,
    /// A new cookie value was set (kept in the tester); `max_age` for a persistent one.
    CookieSet {
        /// The cookie's `Max-Age`, `None` for a browser-session cookie.
        max_age: Option<Duration>,
    },
    /// The cookie was removed (logout, or a session that no longer exists).
    CookieRemoved,
    /// The store failed: the layer would answer with its store-error response (503).
    StoreFailed(Arc<StoreError>),
    /// Concurrent writes would take the session past its size limit: nothing was
    /// written, the layer would answer 413.
    TooLarge,
}

impl<C: CookieCodec> SessionTester<C> {
    /// A tester with an empty cookie jar.
    pub fn new(layer: SessionLayer<C>) -> Self {
        Self {
            layer,
            cookie: None,
        }
    }

    /// The session the next request gets: the one the current cookie names (checked
    /// as the layer checks it), or a new anonymous one.
    pub fn session(&self) -> Session {
        let ctx = &self.layer.ctx;
        let mut headers = HeaderMap::new();
        if let Some(value) = &self.cookie
            && let Ok(v) = HeaderValue::from_str(&format!("{}={value}", ctx.config.cookie.name))
        {
            headers.insert(header::COOKIE, v);
        }
        let incoming = cookie::extract(
            &headers,
            &ctx.config.cookie.name,
            ctx.store.namespace(),
            &self.layer.codec,
        );
        Session::new(ctx.clone(), incoming, RequestMeta::default())
    }

    /// Writes `session` back as the layer does after a handler, and keeps the cookie
    /// the response would set. Call it once per session, after the handler returned.
    pub async fn finish(&mut self, session: Session) -> Finished {
        match session.commit().await {
            Commit::Cookie(CookieAction::Keep) => Finished::CookieKept,
            Commit::Cookie(CookieAction::Remove) => {
                self.cookie = None;
                Finished::CookieRemoved
            }
            Commit::Cookie(CookieAction::Set { id, max_age }) => {
                let ctx = &self.layer.ctx;
                self.cookie = self.layer.codec.seal(
                    &ctx.config.cookie.name,
                    ctx.store.namespace(),
                    id.encode(),
                );
                Finished::CookieSet { max_age }
            }
            Commit::Failed(e) => Finished::StoreFailed(e),
            Commit::TooLarge => Finished::TooLarge,
        }
    }

    /// The session cookie's current value (what the browser would send).
    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// Replaces the cookie (e.g. `None` to play a new browser, or a forged value).
    pub fn set_cookie(&mut self, value: Option<String>) {
        self.cookie = value;
    }

    /// The layer, e.g. for [`users`](SessionLayer::users) in admin assertions.
    pub fn layer(&self) -> &SessionLayer<C> {
        &self.layer
    }
}
