//! The [`Session`] handle that handlers use.
//!
//! A session is lazy: nothing is read from the store until a handler first calls a
//! method, and nothing is written unless the handler changed something, rotated the id,
//! or the TTL fell below the refresh threshold. The writes happen once, after the
//! handler, in one store call.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

mod commit;
#[cfg(feature = "tokens")]
mod device;
pub(crate) mod extractor;
mod login;
mod per_user;
mod state;
#[cfg(test)]
mod tests;

pub(crate) use self::commit::{Commit, CookieAction};
use self::state::{Fate, Load, State, parse_live};

use crate::config::{Expiry, StoreDownPolicy};
pub(crate) use crate::context::{LayerState, RequestMeta};
use crate::cookie::Incoming;
use crate::details::SessionDetails;
use crate::error::SessionError;
use crate::error::log_store_error;
use crate::events::EventKind;
use crate::id::SessionHandle;
use crate::store::record::{self};
use crate::time::now_ms;

/// How many times a write with a freshly generated id is retried on a key collision
/// (which takes 2^-256 luck, or a broken random number generator).
const COLLISION_RETRIES: usize = 3;

/// The most keys a session holds ([`SessionError::TooManyKeys`]): every write of a
/// session, a login's move of all of them included, stays one bounded step well under
/// what a Redis script can pass in one call.
const MAX_KEYS: usize = 1000;

/// The session of the current request.
///
/// Get it in an axum handler as an extractor (or `Option<Session>` if the layer may be
/// absent), or from the request extensions in any tower service. Cloning is cheap and
/// shares the session.
///
/// ```
/// use tower_redis_session::{Session, SessionError};
///
/// async fn counter(session: Session) -> Result<String, SessionError> {
///     let n: u64 = session.get("counter").await?.unwrap_or(0) + 1;
///     session.insert("counter", n).await?;
///     Ok(n.to_string())
/// }
/// ```
///
/// Changes are written once, after the handler returns, in one store call. Concurrent
/// requests on one session that change different keys both persist; two that change the
/// same key: the last write wins. Changes made through a clone kept past the response
/// (e.g. in a spawned task) are not saved.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<LayerState>,
    incoming: Incoming,
    meta: RequestMeta,
    state: Mutex<State>,
    /// Run when the request ends, before the write: each may give one change (a key
    /// and its JSON, or `None` to remove it), as an extension built on the session
    /// (flash messages) keeps its own state during the request.
    before_commit: std::sync::Mutex<Vec<BeforeCommit>>,
}

/// A change an extension makes when the request ends (see `Inner::before_commit`).
pub(crate) type BeforeCommit = Box<dyn FnOnce() -> Option<(String, Option<String>)> + Send>;

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(ctx: Arc<LayerState>, incoming: Incoming, meta: RequestMeta) -> Self {
        let id = match &incoming {
            Incoming::Valid(id) | Incoming::OldKey(id) => Some(id.clone()),
            Incoming::Absent | Incoming::Invalid(_) => None,
        };
        Self {
            inner: Arc::new(Inner {
                ctx,
                incoming,
                meta,
                state: Mutex::new(State {
                    id,
                    ..State::default()
                }),
                before_commit: std::sync::Mutex::default(),
            }),
        }
    }

    /// Runs `change` when the request ends, before the session is written; the change
    /// it returns is applied as an insert (or remove) would be, without a size check of
    /// its own (the write refuses a session past the limit: 413, nothing written).
    #[cfg_attr(not(feature = "messages"), allow(dead_code))]
    pub(crate) fn before_commit(&self, change: BeforeCommit) {
        self.inner
            .before_commit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(change);
    }

    /// Queues an event about this request's session.
    fn emit(&self, kind: EventKind, handle: Option<SessionHandle>, user: Option<&str>) {
        self.inner
            .ctx
            .emit(kind, handle, user, Some(&self.inner.meta));
    }

    /// Queues the logout event of a session the store deleted (`ended`: its handle and
    /// user, as `SessionStore::delete` returns them).
    fn emit_logout(&self, ended: &crate::store::record::Record) {
        let fields = ended.fields();
        let handle = record::meta(fields, record::HANDLE).and_then(SessionHandle::parse);
        let user = record::meta(fields, record::USER);
        self.emit(EventKind::Logout, handle, user);
    }

    /// Queues an event about this request's session, with its details.
    fn emit_own(
        &self,
        kind: EventKind,
        handle: Option<SessionHandle>,
        user: Option<&str>,
        details: Option<SessionDetails>,
    ) {
        let ctx = &self.inner.ctx;
        if let Some(mut event) = ctx.event(kind, handle, user, Some(&self.inner.meta)) {
            event.details = details.filter(|d| !d.is_empty());
            ctx.events.emit(event);
        }
    }

    /// Locks the state and loads the record on first use (one store read).
    async fn loaded(&self) -> Result<tokio::sync::MutexGuard<'_, State>, SessionError> {
        let mut st = self.inner.state.lock().await;
        st.accessed = true;
        if matches!(st.load, Load::Pending) {
            let loaded = match &st.id {
                Some(id) => match self.inner.ctx.store.load(&id.key()).await {
                    Ok(record) => parse_live(record, now_ms(), &self.inner.ctx.values),
                    Err(e) if self.inner.ctx.config.store_down == StoreDownPolicy::Anonymous => {
                        log_store_error(&e, "load (serving as anonymous)");
                        self.emit(EventKind::StoreUnavailable, None, None);
                        st.degrade();
                        None
                    }
                    Err(e) => return Err(st.fail(e, "load")),
                },
                None => None,
            };
            st.load = Load::Done(loaded);
        }
        Ok(st)
    }

    /// The value of `key`, or `None` if it is not set.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the session could not be loaded,
    /// [`SessionError::Deserialize`] if the stored value is not a `T` (it is kept).
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let st = self.loaded().await?;
        match st.raw(key) {
            Some(raw) => {
                serde_json::from_str(raw)
                    .map(Some)
                    .map_err(|source| SessionError::Deserialize {
                        key: key.to_owned(),
                        source,
                    })
            }
            None => Ok(None),
        }
    }

    /// Sets `key` to `value`; written after the handler. Setting a value equal to the
    /// stored one writes nothing. On a request without a session, this creates one.
    ///
    /// # Errors
    /// [`SessionError::Serialize`] if `value` does not serialize (nothing changes),
    /// [`SessionError::TooManyKeys`] if the session would hold more than 1,000 keys and
    /// [`SessionError::TooLarge`] if it would pass the size limit (nothing changes:
    /// answer either with 413), [`SessionError::Store`] if the session could not be
    /// loaded.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let json = serde_json::to_string(&value).map_err(|source| SessionError::Serialize {
            key: key.to_owned(),
            source,
        })?;
        let mut st = self.loaded().await?;
        if st.stored_data().and_then(|d| d.get(key)) == Some(&json) {
            st.changes.remove(key);
            return Ok(());
        }
        if st.keys_with(key) > MAX_KEYS {
            return Err(SessionError::TooManyKeys { limit: MAX_KEYS });
        }
        let limit = self.inner.ctx.config.max_session_size;
        let size = st.size_with(key, &json, &self.inner.ctx.values);
        if size > limit {
            return Err(SessionError::TooLarge { size, limit });
        }
        st.changes.insert(key.to_owned(), Some(json));
        Ok(())
    }

    /// Removes `key` and returns its value.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the session could not be loaded,
    /// [`SessionError::Deserialize`] if the value is not a `T` (then it is not removed).
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let mut st = self.loaded().await?;
        let Some(raw) = st.raw(key) else {
            return Ok(None);
        };
        let value = serde_json::from_str(raw).map_err(|source| SessionError::Deserialize {
            key: key.to_owned(),
            source,
        })?;
        st.changes.insert(key.to_owned(), None);
        Ok(Some(value))
    }

    /// Removes every key; the session itself (id, handle, expiry) stays.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the session could not be loaded.
    pub async fn clear(&self) -> Result<(), SessionError> {
        let mut st = self.loaded().await?;
        st.changes.clear();
        st.cleared = true;
        Ok(())
    }

    /// Whether the session holds no keys (a new session always does).
    ///
    /// # Errors
    /// [`SessionError::Store`] if the session could not be loaded.
    pub async fn is_empty(&self) -> Result<bool, SessionError> {
        let st = self.loaded().await?;
        let stored = st
            .stored_data()
            .is_some_and(|d| d.keys().any(|k| !st.changes.contains_key(k)));
        Ok(!stored && st.changes.values().all(Option::is_none))
    }

    /// The session's public handle: safe to show, log and put in URLs; it cannot be
    /// turned into a cookie. A new session gets its handle now and keeps it when saved.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the session could not be loaded.
    pub async fn handle(&self) -> Result<SessionHandle, SessionError> {
        let mut st = self.loaded().await?;
        if let Load::Done(Some(l)) = &st.load {
            return Ok(l.handle);
        }
        Ok(*st.new_handle.get_or_insert_with(SessionHandle::generate))
    }

    /// Gives the session a new id after the handler, keeping its data: call it when the
    /// privilege level changes (login), so an id planted before login is useless after.
    /// A new session gets a fresh id anyway.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the session could not be loaded.
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        let mut st = self.loaded().await?;
        // A destroyed session has no id left to rotate.
        if st.fate != Fate::Destroyed {
            st.fate = Fate::NewId;
        }
        Ok(())
    }

    /// Ends the session now (logout): deletes it from the store in one command and
    /// answers with a cookie that removes it from the browser. Requests still in flight
    /// on this session cannot bring it back. Keys inserted afterwards go into a new
    /// session.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the delete failed; the session may then still exist.
    pub async fn destroy(&self) -> Result<(), SessionError> {
        let mut st = self.inner.state.lock().await;
        st.accessed = true;
        let store = &self.inner.ctx.store;
        if let Some(id) = &st.id {
            match store.delete(&id.key()).await {
                Ok(Some(ended)) => self.emit_logout(&ended),
                Ok(None) => {}
                Err(e) => return Err(st.fail(e, "delete")),
            }
        }
        st.ended();
        Ok(())
    }

    /// The user this session is logged in as.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the session could not be loaded.
    pub async fn user_id(&self) -> Result<Option<String>, SessionError> {
        let st = self.loaded().await?;
        Ok(match &st.load {
            Load::Done(Some(l)) => l.user.clone(),
            _ => None,
        })
    }

    /// When this session's user authenticated: its last [`login`](Self::login) (a new
    /// login, of the same user or another, resets it; [`cycle_id`](Self::cycle_id) and
    /// refreshes keep it). `None` when not logged in.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the session could not be loaded.
    pub async fn authenticated_at(&self) -> Result<Option<std::time::SystemTime>, SessionError> {
        let st = self.loaded().await?;
        Ok(match &st.load {
            Load::Done(Some(l)) if l.user.is_some() => Some(crate::time::system_time(l.created_ms)),
            _ => None,
        })
    }

    /// When the stored session was created (its last login restarts it); `None` when
    /// the request has no stored session.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the session could not be loaded.
    pub async fn created_at(&self) -> Result<Option<std::time::SystemTime>, SessionError> {
        let st = self.loaded().await?;
        Ok(match &st.load {
            Load::Done(Some(l)) => Some(crate::time::system_time(l.created_ms)),
            _ => None,
        })
    }

    /// When the stored session ends if no further request refreshes it: the idle
    /// timeout from its last write, never past its absolute deadline. As read by this
    /// request (this request's own writes move it when they are committed); `None` when
    /// the request has no stored session.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the session could not be loaded.
    pub async fn expires_at(&self) -> Result<Option<std::time::SystemTime>, SessionError> {
        let st = self.loaded().await?;
        Ok(match &st.load {
            Load::Done(Some(l)) => {
                let end = l.deadline_ms.map_or(l.expires_ms, |d| d.min(l.expires_ms));
                Some(crate::time::system_time(end))
            }
            _ => None,
        })
    }

    /// Whether the session's cookie is persistent (`Max-Age`, kept across browser
    /// restarts) rather than a browser-session cookie: this request's
    /// [`set_expiry`](Self::set_expiry) if any, else the session's stored override, else
    /// the configuration.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the session could not be loaded.
    pub async fn is_persistent(&self) -> Result<bool, SessionError> {
        let st = self.loaded().await?;
        let loaded = match &st.load {
            Load::Done(Some(l)) => Some(&**l),
            _ => None,
        };
        Ok(self.persistent(&st, loaded))
    }

    /// A guard for sensitive actions ("sudo mode": change the password, sign out every
    /// device): `Ok` when the user authenticated within `max_age`.
    ///
    /// # Errors
    /// - [`SessionError::NotLoggedIn`] (401) when the session is not logged in;
    /// - [`SessionError::StaleAuthentication`] (401) when the login is older than
    ///   `max_age`: ask for the password again (log in again), or match the error to
    ///   redirect to your login page;
    /// - [`SessionError::Store`] if the session could not be loaded.
    pub async fn require_recent_auth(
        &self,
        max_age: std::time::Duration,
    ) -> Result<(), SessionError> {
        let at = self
            .authenticated_at()
            .await?
            .ok_or(SessionError::NotLoggedIn)?;
        // A login stamped ahead of this clock (another instance's) counts as just now.
        let age_ms = now_ms().saturating_sub(crate::time::unix_ms(at)).max(0);
        if age_ms > crate::time::millis(max_age) {
            return Err(SessionError::StaleAuthentication { max_age });
        }
        Ok(())
    }

    /// Overrides this session's expiry, e.g. [`Expiry::remember_me`]. Stored with the
    /// session, so it holds on later requests; written after the handler.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the session could not be loaded.
    pub async fn set_expiry(&self, expiry: Expiry) -> Result<(), SessionError> {
        let mut st = self.loaded().await?;
        st.expiry = Some(expiry);
        Ok(())
    }

    /// The application's display details of this session: those set in this request,
    /// else the stored ones (empty when none).
    ///
    /// # Errors
    /// [`SessionError::Store`] if the session could not be loaded.
    pub async fn details(&self) -> Result<SessionDetails, SessionError> {
        let st = self.loaded().await?;
        Ok(st.details().unwrap_or_default())
    }

    /// Attaches display details to this session (e.g. a device name, a coarse location
    /// the application resolved), replacing any it had; empty details remove them.
    /// Shown by [`user_sessions`](Self::user_sessions) and
    /// [`SessionAdmin::list`](crate::SessionAdmin::list), and carried by this session's later
    /// events. Call it at [`login`](Self::login) (before or after) or any time later;
    /// written after the handler with the session's other changes. Details alone do
    /// not create a session that has no data.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the session could not be loaded.
    pub async fn set_details(&self, details: SessionDetails) -> Result<(), SessionError> {
        let mut st = self.loaded().await?;
        st.details = Some(details);
        Ok(())
    }
}
