//! The logged-in user's other sessions, from a handler: list them, revoke one, the
//! others, or all (log out everywhere).

use super::Session;
use super::state::Load;
use crate::error::SessionError;
use crate::events::EventKind;
use crate::id::SessionHandle;
#[cfg(feature = "tokens")]
use crate::id::SessionKey;
use crate::store::Revoke;
use crate::store::{ListCursor, SessionInfo, SessionPage};
use crate::time::now_ms;

impl Session {
    /// The first page of the logged-in user's live sessions (at most
    /// 100), oldest first, with the current one
    /// marked; empty when not logged in. [`user_sessions_page`](Self::user_sessions_page)
    /// goes on.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store failed.
    pub async fn user_sessions(&self) -> Result<Vec<SessionInfo>, SessionError> {
        Ok(self
            .user_sessions_page(ListCursor::default())
            .await?
            .sessions)
    }

    /// One page of the logged-in user's live sessions from `cursor`
    /// (`ListCursor::default()` for the first, or a previous page's [`next`](SessionPage::next)), with
    /// the current one marked; empty when not logged in.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store failed.
    pub async fn user_sessions_page(
        &self,
        cursor: ListCursor,
    ) -> Result<SessionPage, SessionError> {
        let mut st = self.loaded().await?;
        let Some((user, id)) = st.user() else {
            return Ok(SessionPage::default());
        };
        let listed = self
            .inner
            .ctx
            .store
            .list_user(id.tag(), &user, cursor, now_ms())
            .await;
        let page = match listed {
            Ok(page) => page,
            Err(e) => return Err(st.fail(e, "list")),
        };
        let key = id.key();
        let next = page.next;
        let mut list = page.sessions;
        for s in &mut list {
            s.mark_current(&key);
        }
        crate::store::oldest_first(&mut list);
        Ok(SessionPage::new(list, next))
    }

    /// Revokes one session of the logged-in user by its handle (e.g. "sign out that
    /// laptop"); returns whether it existed. Revoking the current session ends it like
    /// [`destroy`](Self::destroy).
    ///
    /// # Errors
    /// [`SessionError::NotLoggedIn`] without a user; [`SessionError::Store`] if the store
    /// failed.
    pub async fn revoke(&self, handle: SessionHandle) -> Result<bool, SessionError> {
        let n = self.revoke_where(Which::Handle(handle)).await?;
        Ok(n > 0)
    }

    /// Revokes every other session of the logged-in user; returns how many.
    ///
    /// # Errors
    /// [`SessionError::NotLoggedIn`] without a user; [`SessionError::Store`] if the store
    /// failed.
    pub async fn revoke_other_sessions(&self) -> Result<usize, SessionError> {
        self.revoke_where(Which::Others).await
    }

    /// Logs the user out everywhere: revokes all of the user's sessions, this one
    /// included, in one atomic step. Requests in flight on any of them cannot bring them
    /// back. Returns how many were revoked.
    ///
    /// # Errors
    /// [`SessionError::NotLoggedIn`] without a user; [`SessionError::Store`] if the store
    /// failed.
    pub async fn logout_everywhere(&self) -> Result<usize, SessionError> {
        self.revoke_where(Which::All).await
    }

    pub(super) async fn revoke_where(&self, which: Which) -> Result<usize, SessionError> {
        let mut st = self.loaded().await?;
        let Some((user, id)) = st.user() else {
            return Err(SessionError::NotLoggedIn);
        };
        let key = id.key();
        let which = match which {
            Which::Handle(h) => Revoke::Handle(h),
            Which::All => Revoke::All,
            Which::Others => Revoke::AllExcept(&key),
        };
        let reason = which.reason();
        let store = &self.inner.ctx.store;
        let revoked = match store.revoke_user(id.tag(), &user, which, now_ms()).await {
            Ok(revoked) => revoked,
            Err(e) => return Err(st.fail(e, "revoke")),
        };
        for h in &revoked {
            self.emit(EventKind::Revoked(reason), Some(*h), Some(&user));
        }
        let current = match &st.load {
            Load::Done(Some(l)) => Some(l.handle),
            _ => None,
        };
        if current.is_some_and(|h| revoked.contains(&h)) {
            st.ended();
        }
        Ok(revoked.len())
    }

    /// What a token family bound to this session needs: the user, the session's store
    /// key and handle, and the store's namespace; `None` when not logged in.
    #[cfg(feature = "tokens")]
    pub(crate) async fn binding(
        &self,
    ) -> Result<Option<(String, SessionKey, SessionHandle, String)>, SessionError> {
        let st = self.loaded().await?;
        let (Some((user, id)), Load::Done(Some(l))) = (st.user(), &st.load) else {
            return Ok(None);
        };
        let ns = self.inner.ctx.store.namespace().to_owned();
        Ok(Some((user, id.key(), l.handle, ns)))
    }
}

/// Which of the current user's sessions to revoke.
#[derive(Clone, Copy, Debug)]
pub(super) enum Which {
    Handle(SessionHandle),
    All,
    Others,
}
