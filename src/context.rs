//! What the layer, its sessions and its admin handle share ([`LayerState`]: the store, the
//! configuration, the event queue), and what a request tells about its client
//! ([`RequestMeta`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use http::HeaderValue;

use crate::config::SessionConfig;
use crate::config::millis;
use crate::events::{EventHub, EventKind, SessionEvent};
use crate::id::SessionHandle;
use crate::store::DynStore;
use crate::store::record::{self, Clock, Patch};

/// Longest user agent recorded with a session, in bytes.
const MAX_USER_AGENT: usize = 256;

/// What the request says about the client, kept cheaply (no formatting) until a session
/// is written.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestMeta {
    pub(crate) ip: Option<IpAddr>,
    pub(crate) user_agent: Option<HeaderValue>,
}

impl RequestMeta {
    pub(crate) fn fields(&self, patch: &mut Patch) {
        if let Some(ip) = self.ip {
            patch.set.push((record::IP.to_owned(), ip.to_string()));
        }
        if let Some(ua) = self.user_agent() {
            patch
                .set
                .push((record::USER_AGENT.to_owned(), ua.to_owned()));
        }
    }

    /// The user agent, if it is text, cut to `MAX_USER_AGENT` bytes.
    pub(crate) fn user_agent(&self) -> Option<&str> {
        let ua = self.user_agent.as_ref()?.to_str().ok()?;
        let mut end = ua.len().min(MAX_USER_AGENT);
        while !ua.is_char_boundary(end) {
            end -= 1;
        }
        Some(&ua[..end])
    }
}

/// What the layer and every session of one layer share.
///
/// Cloned (not shared) by the layer's `with_*` builders, so a builder called on a clone
/// of a layer never changes the original; the one exception is the event hub, which
/// every handle of the layer shares so that a hook reaches all of them.
#[derive(Clone, Debug)]
pub(crate) struct LayerState {
    pub(crate) store: Arc<dyn DynStore>,
    pub(crate) config: SessionConfig,
    /// Session cookies refused unread.
    pub(crate) rejected: Arc<AtomicU64>,
    /// Lifecycle events: one hub for every handle of the layer (see `EventHub`).
    pub(crate) events: Arc<EventHub>,
    /// How session values are stored: plain, or sealed (feature `value-encryption`).
    pub(crate) values: crate::store::values::Values,
    /// Test hook: awaited by a login between its two store steps.
    #[cfg(feature = "store-internals")]
    pub(crate) login_pause: Option<crate::store::Pause>,
}

impl LayerState {
    /// Queues an event about session `handle` of `user`, with the request's client
    /// details when there is a request. Builds nothing when no hook is installed.
    pub(crate) fn emit(
        &self,
        kind: EventKind,
        handle: Option<SessionHandle>,
        user: Option<&str>,
        meta: Option<&RequestMeta>,
    ) {
        if let Some(event) = self.event(kind, handle, user, meta) {
            self.events.emit(event);
        }
    }

    /// The event to queue, or `None` when no hook is installed.
    pub(crate) fn event(
        &self,
        kind: EventKind,
        handle: Option<SessionHandle>,
        user: Option<&str>,
        meta: Option<&RequestMeta>,
    ) -> Option<SessionEvent> {
        if !self.events.enabled() {
            return None;
        }
        let mut event = SessionEvent::new(kind, self.store.namespace());
        event.handle = handle;
        event.user_id = user.map(str::to_owned);
        if let Some(meta) = meta {
            event.ip = meta.ip;
            event.user_agent = meta.user_agent().map(str::to_owned);
        }
        Some(event)
    }

    /// The TTL inputs of a write made at `now_ms`.
    pub(crate) fn clock(&self, now_ms: i64) -> Clock {
        Clock {
            now_ms,
            default_idle_ms: millis(self.config.idle_timeout),
        }
    }
}
