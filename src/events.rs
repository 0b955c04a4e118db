//! Session lifecycle events, for audit trails and security monitoring (OWASP: log
//! creation, renewal, destruction, login and logout, timeouts and invalid-session
//! activity).
//!
//! Install a [`SessionEvents`] hook with
//! [`SessionLayer::with_events`](crate::SessionLayer::with_events): a closure
//! `Fn(&SessionEvent)`, any type implementing the trait, or `()` for none.
//!
//! ```
//! use tower_redis_session::events::{EventKind, SessionEvent};
//! use tower_redis_session::{MemoryStore, SessionConfig, SessionLayer};
//!
//! let layer = SessionLayer::new(MemoryStore::new(), SessionConfig::default())?
//!     .with_events(|e: &SessionEvent| {
//!         if let EventKind::Login = e.kind {
//!             println!("{:?} logged in from {:?}", e.user_id, e.ip);
//!         }
//!     });
//! # Ok::<(), tower_redis_session::ConfigError>(())
//! ```
//!
//! **The hook never slows or fails a request.** Events go through a bounded queue
//! (default 4096) to a dedicated thread that runs the hook; when the queue is full the
//! event is dropped and counted ([`SessionLayer::dropped_events`](crate::SessionLayer::dropped_events)).
//! A panicking hook is caught and the next event is delivered.
//! [`SessionLayer::flush_events`](crate::SessionLayer::flush_events) waits until the
//! hook has seen every event queued so far (on shutdown, or in a test).
//!
//! **Durable.** [`RedisStore::with_event_stream`](crate::RedisStore::with_event_stream)
//! records the state changes in a Redis Stream, in the same atomic script as each
//! change; [`RedisStore::watch_expired`](crate::RedisStore::watch_expired) reports
//! expired sessions (keyspace notifications, with index pruning as the fallback).
//!
//! **No secrets.** An event carries the session's public [`SessionHandle`], never its
//! cookie or id. A refused cookie is identified by a keyed hash
//! ([`SessionEvent::fingerprint`]) that correlates repeats without revealing the value.

use std::fmt;
use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::SystemTime;

use crate::id::SessionHandle;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "reason")]
#[non_exhaustive]
pub enum EventKind {
    /// A new session was stored.
    Created,
    /// A session was logged in (moved to a new id in the user's slot).
    Login,
    /// A session's id was rotated ([`Session::cycle_id`](crate::Session::cycle_id)).
    IdRotated,
    /// A session's TTL was extended (threshold refresh).
    Refreshed,
    /// A session was ended by its own request ([`Session::destroy`](crate::Session::destroy)).
    Logout,
    /// A session was ended by someone else.
    Revoked(RevokeReason),
    /// A session's idle or absolute timeout passed.
    Expired,
    /// A session cookie was refused unread: malformed, oversized, duplicated, forged, or
    /// of another namespace. Suspicious.
    InvalidCookie,
    /// The store failed for this request.
    StoreUnavailable,
    /// A token family was issued (a login of an API client); see
    /// `tokens::Tokens::with_events`.
    TokenIssued,
    /// A refresh token was rotated.
    TokenRefreshed,
    /// A consumed refresh token was presented again: its family was revoked.
    /// Suspicious (a stolen token was probably replayed).
    TokenReused,
    /// A token, a token family, or all of a user's tokens were revoked.
    TokenRevoked,
    /// The refresh token just rotated away was presented again within the grace window
    /// (`tokens::TokenConfig::with_reuse_grace`):
    /// refused as a double submit, the family kept. Frequent ones from one family may
    /// be a thief racing its owner.
    TokenGraceReplay,
}

/// Why a session was revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RevokeReason {
    /// Revoked by handle ("sign out that device", or an admin).
    Revoke,
    /// Log out everywhere.
    LogoutEverywhere,
    /// "Sign out all other devices": every other session of the user.
    RevokeOthers,
    /// Evicted by a login at the per-user session cap.
    EvictedByCap,
}

impl EventKind {
    /// Every kind (one revocation reason stands for all: they share the name).
    pub(crate) const ALL: &[EventKind] = &[
        Self::Created,
        Self::Login,
        Self::IdRotated,
        Self::Refreshed,
        Self::Logout,
        Self::Revoked(RevokeReason::Revoke),
        Self::Expired,
        Self::InvalidCookie,
        Self::StoreUnavailable,
        Self::TokenIssued,
        Self::TokenRefreshed,
        Self::TokenReused,
        Self::TokenRevoked,
        Self::TokenGraceReplay,
    ];

    /// A short stable name: `created`, `login`, `id_rotated`, `refreshed`, `logout`,
    /// `revoked`, `expired`, `invalid_cookie`, `store_unavailable`, `token_issued`,
    /// `token_refreshed`, `token_reused`, `token_revoked`, `token_grace_replay`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Login => "login",
            Self::IdRotated => "id_rotated",
            Self::Refreshed => "refreshed",
            Self::Logout => "logout",
            Self::Revoked(_) => "revoked",
            Self::Expired => "expired",
            Self::InvalidCookie => "invalid_cookie",
            Self::StoreUnavailable => "store_unavailable",
            Self::TokenIssued => "token_issued",
            Self::TokenRefreshed => "token_refreshed",
            Self::TokenReused => "token_reused",
            Self::TokenRevoked => "token_revoked",
            Self::TokenGraceReplay => "token_grace_replay",
        }
    }

    /// The kind named `name` (with `reason` for a revocation), as the event stream
    /// writes them.
    pub(crate) fn parse(name: &str, reason: Option<&str>) -> Option<Self> {
        if name == "revoked" {
            return Some(Self::Revoked(match reason? {
                "revoke" => RevokeReason::Revoke,
                "logout_everywhere" => RevokeReason::LogoutEverywhere,
                "revoke_others" => RevokeReason::RevokeOthers,
                "evicted_by_cap" => RevokeReason::EvictedByCap,
                _ => return None,
            }));
        }
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// The revocation reason, for [`EventKind::Revoked`].
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Revoked(RevokeReason::Revoke) => Some("revoke"),
            Self::Revoked(RevokeReason::LogoutEverywhere) => Some("logout_everywhere"),
            Self::Revoked(RevokeReason::RevokeOthers) => Some("revoke_others"),
            Self::Revoked(RevokeReason::EvictedByCap) => Some("evicted_by_cap"),
            _ => None,
        }
    }
}

/// One lifecycle event. `ip` and `user_agent` are those of the request that caused it
/// (for a revocation: the revoking request; none for admin calls without a request).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SessionEvent {
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
    /// The session's public handle, when the event concerns a known session.
    pub handle: Option<SessionHandle>,
    /// The user the session is logged in as.
    pub user_id: Option<String>,
    /// The store namespace.
    pub namespace: String,
    /// The client IP of the request.
    pub ip: Option<IpAddr>,
    /// The user agent of the request.
    pub user_agent: Option<String>,
    /// When it happened.
    #[serde(with = "unix_ms")]
    pub at: SystemTime,
    /// For [`EventKind::InvalidCookie`]: a keyed hash of the refused value (16 hex
    /// characters, keyed per process), to correlate repeated attempts.
    pub fingerprint: Option<String>,
    /// For token events: the token family.
    pub family: Option<crate::id::FamilyId>,
    /// The session's display details ([`Session::set_details`](crate::Session::set_details)),
    /// on events about the request's own session (created, login, refreshed, id
    /// rotated).
    pub details: Option<crate::SessionDetails>,
}

mod unix_ms {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub(super) fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

impl SessionEvent {
    /// An event from the fields of a stream entry (`field` gives a non-empty value);
    /// `None` for an entry without a known kind.
    pub(crate) fn from_stream<'a>(
        namespace: &str,
        field: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<Self> {
        let kind = EventKind::parse(field("kind")?, field("reason"))?;
        let mut e = Self::new(kind, namespace);
        e.handle = field("handle").and_then(SessionHandle::parse);
        e.user_id = field("user").map(str::to_owned);
        e.ip = field("ip").and_then(|ip| ip.parse().ok());
        e.user_agent = field("ua").map(str::to_owned);
        let at = field("at")
            .and_then(|at| at.parse::<u64>().ok())
            .unwrap_or(0);
        e.at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at);
        e.family = field("family").and_then(crate::id::FamilyId::parse);
        e.details = field("details").map(crate::SessionDetails::from_json);
        Some(e)
    }

    pub(crate) fn new(kind: EventKind, namespace: &str) -> Self {
        Self {
            kind,
            handle: None,
            user_id: None,
            namespace: namespace.to_owned(),
            ip: None,
            user_agent: None,
            at: SystemTime::now(),
            fingerprint: None,
            family: None,
            details: None,
        }
    }
}

/// Receives session events. Every method has a no-op default; `()` ignores
/// everything, and any `Fn(&SessionEvent) + Send + Sync + 'static` is a hook.
///
/// Runs on the event thread, never on a request: a slow hook delays other events, and
/// once the queue is full events are dropped and counted, but requests never wait.
pub trait SessionEvents: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &SessionEvent) {
        let _ = event;
    }
}

impl SessionEvents for () {}

impl<F> SessionEvents for F
where
    F: Fn(&SessionEvent) + Send + Sync + 'static,
{
    fn on_event(&self, event: &SessionEvent) {
        self(event);
    }
}

/// Both hooks, in order: `layer.with_events((audit_sink, metrics))`.
impl<A: SessionEvents, B: SessionEvents> SessionEvents for (A, B) {
    fn on_event(&self, event: &SessionEvent) {
        self.0.on_event(event);
        self.1.on_event(event);
    }
}

/// Where a store's background work (the expiry watchers) reports events: the event
/// queue of a [`SessionLayer`](crate::SessionLayer), from `(&layer).into()`, so
/// `store.watch_expired(&layer)` reads as before while the store never sees the layer.
#[derive(Clone, Debug)]
pub struct EventSink {
    dispatcher: Arc<EventHub>,
}

impl EventSink {
    pub(crate) fn new(dispatcher: Arc<EventHub>) -> Self {
        Self { dispatcher }
    }

    /// Queues a `kind` event about session `handle` of `user` in `namespace` (no client
    /// details: there is no request).
    pub(crate) fn emit(
        &self,
        kind: EventKind,
        namespace: &str,
        handle: Option<SessionHandle>,
        user: Option<&str>,
    ) {
        if !self.dispatcher.enabled() {
            return;
        }
        let mut event = SessionEvent::new(kind, namespace);
        event.handle = handle;
        event.user_id = user.map(str::to_owned);
        self.dispatcher.emit(event);
    }
}

/// The event queue every handle of one layer (or of one `Tokens`) reports to: its
/// clones, its [`admin`](crate::SessionLayer::admin), the tokens bound to it and its
/// expiry watchers. [`SessionLayer::with_events`](crate::SessionLayer::with_events) installs
/// the hook here, so a handle taken before the call reports to the hook too.
#[derive(Debug, Default)]
pub(crate) struct EventHub(std::sync::RwLock<Arc<Dispatcher>>);

impl EventHub {
    fn current(&self) -> Arc<Dispatcher> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the queue and hook for every handle; events already queued still reach
    /// the previous hook.
    pub(crate) fn install(&self, dispatcher: Dispatcher) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(dispatcher);
    }

    pub(crate) fn enabled(&self) -> bool {
        self.current().enabled()
    }

    pub(crate) fn emit(&self, event: SessionEvent) {
        self.current().emit(event);
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.current().dropped()
    }

    pub(crate) async fn flush(&self) {
        let current = self.current();
        current.flush().await;
    }

    pub(crate) fn fingerprint(&self, raw: &[u8]) -> Option<String> {
        self.current().fingerprint(raw)
    }
}

/// The event queue of one hook: a bounded channel to a thread running it.
pub(crate) struct Dispatcher {
    tx: Option<SyncSender<SessionEvent>>,
    dropped: AtomicU64,
    /// Events accepted into a queue, since the layer was built.
    queued: AtomicU64,
    /// Events the hook has returned (or panicked) on, counted by the event thread.
    handled: Arc<tokio::sync::watch::Sender<u64>>,
    /// Keys [`SessionEvent::fingerprint`].
    fingerprint_key: [u8; 32],
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

/// Default queue length.
pub(crate) const DEFAULT_CAPACITY: usize = 4096;

impl Default for Dispatcher {
    fn default() -> Self {
        let mut key = [0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            tracing::error!("no OS randomness for the event fingerprint key");
        }
        Self {
            tx: None,
            dropped: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            handled: Arc::new(tokio::sync::watch::Sender::new(0)),
            fingerprint_key: key,
        }
    }
}

impl Dispatcher {
    /// A queue of `capacity` events to a new thread that runs `hook` (the thread ends
    /// once the dispatcher is dropped and the queue drained).
    pub(crate) fn with_hook(hook: Arc<dyn SessionEvents>, capacity: usize) -> Self {
        let (tx, rx) = sync_channel::<SessionEvent>(capacity.max(1));
        let handled: Arc<tokio::sync::watch::Sender<u64>> =
            Arc::new(tokio::sync::watch::Sender::new(0));
        let thread_handled = handled.clone();
        let spawned = std::thread::Builder::new()
            .name("session-events".into())
            .spawn(move || {
                for event in rx {
                    if catch_unwind(AssertUnwindSafe(|| hook.on_event(&event))).is_err() {
                        tracing::error!("session event hook panicked");
                    }
                    thread_handled.send_modify(|n| *n += 1);
                }
            });
        let tx = match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    "could not start the event thread"
                );
                None
            }
        };
        Self {
            tx,
            handled,
            ..Self::default()
        }
    }

    /// Whether a hook is installed (so callers can skip building events).
    pub(crate) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues an event; never blocks.
    pub(crate) fn emit(&self, event: SessionEvent) {
        let Some(tx) = self.tx.as_ref() else {
            return;
        };
        match tx.try_send(event) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::AcqRel);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                crate::metrics::event_dropped();
            }
        }
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until the hook has seen every event queued before the call.
    pub(crate) async fn flush(&self) {
        let target = self.queued.load(Ordering::Acquire);
        let mut handled = self.handled.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = handled.wait_for(|n| *n >= target).await;
    }

    /// A keyed hash of a refused cookie value.
    pub(crate) fn fingerprint(&self, value: &[u8]) -> Option<String> {
        use hmac::{Hmac, Mac};
        use std::fmt::Write as _;
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.fingerprint_key).ok()?;
        mac.update(value);
        let bytes = mac.finalize().into_bytes();
        let mut out = String::with_capacity(16);
        for b in &bytes[..8] {
            let _ = write!(out, "{b:02x}");
        }
        Some(out)
    }
}
