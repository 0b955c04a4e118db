//! Per-user sessions: "where am I logged in", "sign out that laptop", "sign out
//! everywhere", "at most N devices".
//!
//! [`Session::login`](crate::Session::login) moves a session into its user's hash-tag
//! slot and adds it to the user's index (a sorted set scored by expiry time), enforcing
//! the configured [`SessionLimit`](crate::SessionLimit) in the same atomic script
//! (default: 100 sessions per user, the least recently active evicted).
//!
//! No Redis call does work proportional to a user's sessions: listing goes in pages of
//! 100 ([`SessionAdmin::list_page`], with the first page the default), revoking all
//! or all others runs in steps of at most 100 index entries each (the call returns once
//! every session it found is revoked), and pruning expired entries drops at most 100
//! per call. Revoking one session by handle costs O(1). No `KEYS`, no `SCAN`; the index
//! key expires once its sessions have.
//!
//! From a handler, use the [`Session`](crate::Session) methods (they know which session
//! is current); from admin code without a request, use [`SessionAdmin`], obtained from
//! [`SessionLayer::admin`](crate::SessionLayer::admin).
//!
//! ```rust,no_run
//! use tower_redis_session::{LimitPolicy, RedisStore, SessionConfig, SessionLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = SessionConfig::default().with_max_sessions_per_user(5, LimitPolicy::EvictOldest);
//! let layer = SessionLayer::new(RedisStore::from_url("redis://127.0.0.1")?, config)?;
//! let users = layer.admin();
//! for s in users.list("alice").await? {
//!     println!("{} {:?} {:?}", s.handle, s.ip, s.user_agent);
//! }
//! users.revoke_all("alice").await?; // e.g. after a password reset
//! # Ok(()) }
//! ```

use std::sync::Arc;

use crate::context::LayerState;
use crate::error::SessionError;
use crate::events::EventKind;
use crate::id::SessionHandle;
use crate::store::Revoke;
pub use crate::store::{ListCursor, SessionInfo, SessionPage};
use crate::time::now_ms;

/// The sessions of any user, for admin code without a request.
#[derive(Clone, Debug)]
pub struct SessionAdmin {
    pub(crate) ctx: Arc<LayerState>,
}

impl SessionAdmin {
    /// The first page of `user_id`'s live sessions (at most 100), oldest
    /// first; [`list_page`](Self::list_page) goes on.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store failed.
    pub async fn list(&self, user_id: &str) -> Result<Vec<SessionInfo>, SessionError> {
        Ok(self
            .list_page(user_id, ListCursor::default())
            .await?
            .sessions)
    }

    /// One page of `user_id`'s live sessions, from `cursor` (`ListCursor::default()`, or a
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
        page.sort_oldest_first();
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
