//! Per-user sessions: "where am I logged in", "sign out that laptop", "sign out
//! everywhere", "at most N devices".
//!
//! [`Session::login`](crate::Session::login) moves a session into its user's hash-tag
//! slot and adds it to the user's index (a sorted set scored by expiry time), enforcing
//! the configured [`SessionLimit`](crate::SessionLimit) in the same atomic script
//! (default: 100 sessions per user, the least recently active evicted).
//!
//! No Redis call does work proportional to a user's sessions: listing goes in pages of
//! [`PAGE_SIZE`] ([`Users::list_page`], with the first page the default), revoking all
//! or all others runs in steps of at most 100 index entries each (the call returns once
//! every session it found is revoked), and pruning expired entries drops at most 100
//! per call. Revoking one session by handle costs O(1). No `KEYS`, no `SCAN`; the index
//! key expires once its sessions have.
//!
//! From a handler, use the [`Session`](crate::Session) methods (they know which session
//! is current); from admin code without a request, use [`Users`], obtained from
//! [`SessionLayer::users`](crate::SessionLayer::users).
//!
//! ```rust,no_run
//! use tower_redis_session::{LimitPolicy, RedisStore, SessionConfig, SessionLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = SessionConfig::default().with_max_sessions_per_user(5, LimitPolicy::EvictOldest);
//! let layer = SessionLayer::new(RedisStore::from_url("redis://127.0.0.1")?, config)?;
//! let users = layer.users();
//! for s in users.list("alice").await? {
//!     println!("{} {:?} {:?}", s.handle(), s.ip(), s.user_agent());
//! }
//! users.revoke_all("alice").await?; // e.g. after a password reset
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::events::{EventKind, RevokeReason};
use crate::session::{Context, now_ms};
use crate::{SessionError, SessionHandle, SessionKey};

/// Most sessions one listing returns; [`SessionPage::next`] goes on from there.
pub const PAGE_SIZE: usize = 100;

/// Where a listing of a user's sessions goes on, from [`SessionPage::next`]. It prints
/// (`Display`) and parses back, for a "more" link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ListCursor(u64);

impl ListCursor {
    /// The first page.
    pub const START: Self = Self(0);

    /// A cursor printed by `Display`, or `None` if `s` is not one.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok().map(Self)
    }

    /// For store implementations: a position in the user's index.
    pub fn from_position(position: u64) -> Self {
        Self(position)
    }

    /// For store implementations: the position this cursor stands for.
    pub fn position(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for ListCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One page of a user's sessions: at most [`PAGE_SIZE`], oldest first within the page.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionPage {
    sessions: Vec<SessionInfo>,
    next: Option<ListCursor>,
}

impl SessionPage {
    /// A page (for store implementations): its sessions, and where the next one starts
    /// (`None` after the last).
    pub fn new(sessions: Vec<SessionInfo>, next: Option<ListCursor>) -> Self {
        Self { sessions, next }
    }

    /// The sessions of this page.
    pub fn sessions(&self) -> &[SessionInfo] {
        &self.sessions
    }

    /// Takes the sessions of this page.
    pub fn into_sessions(self) -> Vec<SessionInfo> {
        self.sessions
    }

    /// Where the next page starts; `None` after the last page.
    pub fn next(&self) -> Option<ListCursor> {
        self.next
    }
}

/// One live session of a user, as listed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SessionInfo {
    #[serde(skip)]
    hash: String,
    handle: SessionHandle,
    created_ms: i64,
    last_active_ms: i64,
    ip: Option<String>,
    user_agent: Option<String>,
    current: bool,
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl SessionInfo {
    /// Builds an entry (for store implementations). `key_hash` is
    /// [`SessionKey::hash`] of the session.
    pub fn from_parts(
        key_hash: String,
        handle: SessionHandle,
        created_ms: i64,
        last_active_ms: i64,
        ip: Option<String>,
        user_agent: Option<String>,
    ) -> Self {
        Self {
            hash: key_hash,
            handle,
            created_ms,
            last_active_ms,
            ip,
            user_agent,
            current: false,
        }
    }

    /// The public handle: pass it to [`Users::revoke`] or
    /// [`Session::revoke`](crate::Session::revoke).
    pub fn handle(&self) -> SessionHandle {
        self.handle
    }

    /// When the session was created.
    pub fn created(&self) -> SystemTime {
        time(self.created_ms)
    }

    /// When the session was last written or refreshed (within the refresh threshold).
    pub fn last_active(&self) -> SystemTime {
        time(self.last_active_ms)
    }

    /// The client IP at creation or login, if known.
    pub fn ip(&self) -> Option<&str> {
        self.ip.as_deref()
    }

    /// The user agent at creation or login, if sent.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// Whether this is the session of the current request.
    pub fn is_current(&self) -> bool {
        self.current
    }

    pub(crate) fn mark_current(&mut self, key: &SessionKey) {
        self.current = self.hash == key.hash();
    }
}

/// The order of every listing: oldest first, ties by handle.
/// Sorts one page's sessions, oldest first.
pub(crate) fn oldest_first(list: &mut [SessionInfo]) {
    list.sort_by_key(|s| (s.created_ms, s.handle));
}

/// Which sessions of a user to revoke.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Revoke<'a> {
    /// The session with this handle.
    Handle(SessionHandle),
    /// All of them (log out everywhere).
    All,
    /// All but this one (the current session).
    AllExcept(&'a SessionKey),
}

impl Revoke<'_> {
    /// The reason recorded for the sessions it ends.
    pub(crate) fn reason(&self) -> RevokeReason {
        match self {
            Revoke::Handle(_) => RevokeReason::Revoke,
            Revoke::All => RevokeReason::LogoutEverywhere,
            Revoke::AllExcept(_) => RevokeReason::RevokeOthers,
        }
    }
}

/// The sessions of any user, for admin code without a request.
#[derive(Clone, Debug)]
pub struct Users {
    pub(crate) ctx: Arc<Context>,
}

impl Users {
    /// The first page of `user_id`'s live sessions (at most [`PAGE_SIZE`]), oldest
    /// first; [`list_page`](Self::list_page) goes on.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store failed.
    pub async fn list(&self, user_id: &str) -> Result<Vec<SessionInfo>, SessionError> {
        Ok(self
            .list_page(user_id, ListCursor::START)
            .await?
            .into_sessions())
    }

    /// One page of `user_id`'s live sessions, from `cursor` ([`ListCursor::START`], or a
    /// previous page's [`next`](SessionPage::next)). A session that logs in or ends
    /// while pages are read may be missed or shown twice.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store failed.
    pub async fn list_page(
        &self,
        user_id: &str,
        cursor: ListCursor,
    ) -> Result<SessionPage, SessionError> {
        let store = &self.ctx.store;
        let tag = store.user_tag(user_id).await?;
        let mut page = store.list_user(&tag, user_id, cursor, now_ms()).await?;
        oldest_first(&mut page.sessions);
        Ok(page)
    }

    /// Revokes the session `handle` of `user_id`; returns whether it existed. Its
    /// cookie gives "no session" from now on, even for requests in flight.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store failed.
    pub async fn revoke(&self, user_id: &str, handle: SessionHandle) -> Result<bool, SessionError> {
        self.revoke_where(user_id, Revoke::Handle(handle))
            .await
            .map(|n| n > 0)
    }

    /// Revokes every session of `user_id` (log out everywhere); returns how many.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store failed.
    pub async fn revoke_all(&self, user_id: &str) -> Result<usize, SessionError> {
        self.revoke_where(user_id, Revoke::All).await
    }

    async fn revoke_where(&self, user_id: &str, which: Revoke<'_>) -> Result<usize, SessionError> {
        let store = &self.ctx.store;
        let tag = store.user_tag(user_id).await?;
        let reason = which.reason();
        let revoked = store.revoke_user(&tag, user_id, which, now_ms()).await?;
        for h in &revoked {
            self.ctx
                .emit(EventKind::Revoked(reason), Some(*h), Some(user_id), None);
        }
        Ok(revoked.len())
    }
}
