//! [`SessionLayer`]: configuration holder that wraps services in
//! [`SessionService`](crate::SessionService).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderValue, Response, StatusCode, header};

use crate::config::SessionConfig;
use crate::context::LayerState;
use crate::cookie::{Codec, KeyRing};
use crate::error::{ConfigError, StoreError};
use crate::events::SessionEvents;
use crate::store::SessionStore;

impl From<&SessionLayer> for crate::events::EventSink {
    fn from(layer: &SessionLayer) -> Self {
        crate::events::EventSink::new(layer.ctx.events.clone())
    }
}

/// The layer's admin handle; also what binds `Tokens` to the layer
/// (`tokens.with_session_layer(&layer)`), so that `tokens/` never names the middleware.
impl From<&SessionLayer> for crate::admin::SessionAdmin {
    fn from(layer: &SessionLayer) -> Self {
        Self {
            ctx: layer.ctx.clone(),
        }
    }
}

/// Builds the response sent when the store fails.
pub(crate) type ErrorResponder = Arc<dyn Fn(&StoreError) -> Response<()> + Send + Sync>;

/// Adds a [`Session`](crate::Session) to every request and writes it back after the
/// handler.
///
/// Cloning is cheap; [`Layer::layer`](tower_layer::Layer::layer) only clones.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_redis_session::{MemoryStore, Session, SessionConfig, SessionLayer};
///
/// async fn handler(session: Session) -> String {
///     let visits: u64 = session.get("visits").await.ok().flatten().unwrap_or(0);
///     let _ = session.insert("visits", visits + 1).await;
///     format!("visit {}", visits + 1)
/// }
///
/// let layer = SessionLayer::new(MemoryStore::new(), SessionConfig::default())?;
/// let app: Router = Router::new().route("/", get(handler)).layer(layer);
/// # Ok::<(), tower_redis_session::ConfigError>(())
/// ```
#[must_use]
#[derive(Clone)]
pub struct SessionLayer {
    pub(crate) ctx: Arc<LayerState>,
    pub(crate) codec: Codec,
    pub(crate) on_store_error: ErrorResponder,
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("config", &self.ctx.config)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

/// The default store-unavailable response: `503`, `Retry-After: 1`, `Cache-Control:
/// no-store`.
fn unavailable(_: &StoreError) -> Response<()> {
    let mut res = Response::new(());
    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = res.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

impl SessionLayer {
    /// A layer on `store` with `config`, plain cookies.
    ///
    /// # Errors
    /// A [`ConfigError`] for a configuration that cannot work (the first one found).
    pub fn new(store: impl SessionStore, config: SessionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            ctx: Arc::new(LayerState {
                store: Arc::new(store),
                config,
                rejected: Arc::new(AtomicU64::new(0)),
                events: Arc::new(crate::events::EventHub::default()),
                values: Default::default(),
                #[cfg(feature = "store-internals")]
                login_pause: None,
            }),
            codec: Codec::Plain,
            on_store_error: Arc::new(unavailable),
        })
    }
    /// Signs the cookie with HMAC-SHA256: forged or altered cookies are rejected before
    /// the store is asked. Keep the key secret and stable across restarts and instances
    /// (`Key::from` 64 bytes of your secret). Pass a [`KeyRing`] to rotate keys
    /// without logging anyone out.
    pub fn with_signed(mut self, keys: impl Into<KeyRing>) -> Self {
        self.codec = Codec::Signed(keys.into());
        self
    }

    /// Encrypts and authenticates the cookie (AES-256-GCM). Pass a [`KeyRing`] to
    /// rotate keys without logging anyone out.
    pub fn with_private(mut self, keys: impl Into<KeyRing>) -> Self {
        self.codec = Codec::Private(keys.into());
        self
    }

    /// Encrypts every session value before it reaches the store (feature
    /// `value-encryption`): AES-256-GCM-SIV, each value bound to its session and key
    /// name, so a Redis dump or backup shows no value and a value moved between keys or
    /// sessions does not open. The key is derived from `keys` for this use alone (the
    /// cookie keys can be passed again). Pass a [`KeyRing`] to rotate: the newest key
    /// seals, older ones still open; a value under a key no longer in the ring, a plain
    /// value (stored before encryption was on) and an altered one read as missing.
    /// User ids, details, IP and user agent stay readable to the per-user API.
    #[cfg(feature = "value-encryption")]
    pub fn with_value_encryption(mut self, keys: impl Into<KeyRing>) -> Self {
        let mut ctx = (*self.ctx).clone();
        ctx.values = crate::store::values::Values::sealed(&keys.into());
        self.ctx = Arc::new(ctx);
        self
    }

    /// How many requests carried a session cookie that was refused unread (malformed,
    /// oversized, duplicated, forged or of another namespace) since the layer was built.
    /// Each is also logged at `info` on the target `tower_redis_session::suspicious`.
    pub fn rejected_cookies(&self) -> u64 {
        self.ctx.rejected.load(Ordering::Relaxed)
    }

    /// The per-user session API (list, revoke, log out everywhere) for admin code that
    /// has no request.
    pub fn admin(&self) -> crate::admin::SessionAdmin {
        self.into()
    }

    /// Sends lifecycle events to `hook` (see [`events`](crate::events)), through a
    /// bounded queue of 4096 events to a dedicated thread: the hook never runs on, or
    /// slows, a request.
    ///
    /// The hook serves every handle of this layer, whether taken before or after this
    /// call: its clones, [`admin`](Self::admin), tokens bound with
    /// `Tokens::with_session_layer`, and expiry watchers. Calling it again replaces the
    /// hook for all of them (events already queued still reach the previous one). A
    /// separate hook needs a separate [`SessionLayer::new`].
    pub fn with_events(self, hook: impl SessionEvents) -> Self {
        self.with_events_queue(hook, crate::events::DEFAULT_CAPACITY)
    }

    /// As [`with_events`](Self::with_events), with a queue of `capacity` events; when it
    /// is full, events are dropped and counted.
    pub fn with_events_queue(self, hook: impl SessionEvents, capacity: usize) -> Self {
        // Installed in the hub every handle of the layer shares, so that none taken
        // earlier is left without the hook.
        self.ctx
            .events
            .install(crate::events::Dispatcher::with_hook(
                Arc::new(hook),
                capacity,
            ));
        self
    }

    /// Test hook (feature `store-internals`, not covered by semver): every login awaits
    /// `pause()` between reading the current session and writing the logged-in one.
    #[cfg(feature = "store-internals")]
    #[doc(hidden)]
    pub fn with_login_pause<F, Fut>(mut self, pause: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut ctx = (*self.ctx).clone();
        ctx.login_pause = Some(crate::store::Pause::new(pause));
        self.ctx = Arc::new(ctx);
        self
    }

    /// Events dropped because the queue was full, since the layer was built.
    pub fn dropped_events(&self) -> u64 {
        self.ctx.events.dropped()
    }

    /// Waits until the event hook has returned on every event queued before this call
    /// (e.g. on shutdown, before the process exits; or in a test, before looking at
    /// what a hook recorded). Returns at once without a hook. A hook that never returns
    /// makes this wait forever: bound it with a timeout where that matters.
    pub async fn flush_events(&self) {
        self.ctx.events.flush().await;
    }

    /// The session cookie's value for `id`: sealed by the codec for this layer's
    /// cookie name and namespace.
    pub(crate) fn cookie_value(&self, id: &crate::id::SessionId) -> Option<String> {
        let name = &self.ctx.config.cookie.name;
        self.codec
            .seal(name, self.ctx.store.namespace(), id.encode())
    }

    /// The response sent when the store fails for a request that needs its session.
    /// Default: `503 Service Unavailable` with `Retry-After: 1`. The body of the
    /// response is the body type's default (empty); the failure is always logged with
    /// `tracing` at error level.
    pub fn with_store_error_response<F>(mut self, f: F) -> Self
    where
        F: Fn(&StoreError) -> Response<()> + Send + Sync + 'static,
    {
        self.on_store_error = Arc::new(f);
        self
    }
}
