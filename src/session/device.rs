//! Device records: sessions that no cookie names, for a sign-in through tokens
//! (`Tokens::login`). A device is a session like any other (listed, counted by the
//! per-user limit, revoked with the user's sessions); only its client holds tokens
//! instead of a cookie.

use super::Session;
use crate::config::Expiry;
use crate::cookie::Incoming;
use crate::details::SessionDetails;
use crate::error::SessionError;
use crate::id::{SessionHandle, SessionKey};

impl Session {
    /// Logs `user_id` in on a new session of this request's layer, with this request's
    /// client (IP, user agent), `expiry` and `details`, leaving this request's own
    /// session as it is: the new one is written at once (the login's one atomic write,
    /// with the limit and events) and no cookie is ever sent for it. Returns its key and
    /// handle, for a token family to bind to.
    ///
    /// # Errors
    /// As [`Session::login`]; nothing is written on error.
    pub(crate) async fn login_device(
        &self,
        user_id: &str,
        expiry: Expiry,
        details: Option<SessionDetails>,
    ) -> Result<(SessionKey, SessionHandle), SessionError> {
        let device = Session::new(
            self.inner.ctx.clone(),
            Incoming::Absent,
            self.inner.meta.clone(),
        );
        device.set_expiry(expiry).await?;
        if let Some(details) = details {
            device.set_details(details).await?;
        }
        device.login(user_id).await?;
        match device.binding().await? {
            Some((_, key, handle, _)) => Ok((key, handle)),
            None => Err(crate::error::StoreError::Protocol("device login not stored").into()),
        }
    }

    /// The store of this session's layer.
    pub(crate) fn store(&self) -> &dyn crate::store::DynStore {
        &*self.inner.ctx.store
    }
}
