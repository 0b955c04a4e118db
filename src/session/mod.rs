//! The [`Session`] handle that handlers use.
//!
//! A session is lazy: nothing is read from the store until a handler first calls a
//! method, and nothing is written unless the handler changed something, rotated the id,
//! or the TTL fell below the refresh threshold. The writes happen once, after the
//! handler, in one store call.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

pub(crate) mod extractor;

use crate::config::{Expiry, StoreDownPolicy, millis};
pub(crate) use crate::context::{Context, RequestMeta};
use crate::cookie::Incoming;
use crate::error::{InvalidUserId, SessionError, StoreError};
use crate::events::{EventKind, RevokeReason};
use crate::id::{SessionHandle, SessionId, SessionKey};
use crate::store::Revoke;
use crate::store::record::{
    self, Clock, Loaded, Patch, Record, WriteMode, WriteOutcome, data_field,
};
use crate::store::{ListCursor, SessionInfo, SessionPage};

/// How many times a write with a freshly generated id is retried on a key collision
/// (which takes 2^-256 luck, or a broken random number generator).
const COLLISION_RETRIES: usize = 3;

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
    ctx: Arc<Context>,
    incoming: Incoming,
    meta: RequestMeta,
    state: Mutex<State>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
enum Load {
    #[default]
    Pending,
    /// `None`: there is no stored session (none yet, ended, or destroyed).
    Done(Option<Loaded>),
}

#[derive(Debug, Default)]
struct State {
    /// The current id: the cookie's, or the one a login moved the session to.
    id: Option<SessionId>,
    /// Set by a login: the new id's TTL, so the response sends the new cookie.
    fresh: Option<Duration>,
    load: Load,
    /// Pending changes: `Some(json)` to set, `None` to remove.
    changes: BTreeMap<String, Option<String>>,
    cleared: bool,
    expiry: Option<Expiry>,
    cycle: bool,
    destroyed: bool,
    /// A store failure during the handler; the layer answers with its error response.
    failed: Option<Arc<StoreError>>,
    /// The load failed and the policy serves the request as anonymous.
    degraded: bool,
    accessed: bool,
    /// The handle a new session will get.
    new_handle: Option<SessionHandle>,
}

pub(crate) use crate::time::now_ms;

impl Session {
    pub(crate) fn new(ctx: Arc<Context>, incoming: Incoming, meta: RequestMeta) -> Self {
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
            }),
        }
    }

    /// Queues an event about this request's session.
    fn emit(&self, kind: EventKind, handle: Option<SessionHandle>, user: Option<&str>) {
        self.inner
            .ctx
            .emit(kind, handle, user, Some(&self.inner.meta));
    }

    /// Locks the state and loads the record on first use (one store read).
    async fn loaded(&self) -> Result<tokio::sync::MutexGuard<'_, State>, SessionError> {
        let mut st = self.inner.state.lock().await;
        st.accessed = true;
        if matches!(st.load, Load::Pending) {
            let loaded = match &st.id {
                Some(id) => match self.inner.ctx.store.load(&id.key()).await {
                    Ok(record) => parse_live(record, now_ms()),
                    Err(e) if self.inner.ctx.config.store_down == StoreDownPolicy::Anonymous => {
                        log_store_error(&e, "load (serving as anonymous)");
                        self.emit(EventKind::StoreUnavailable, None, None);
                        st.degraded = true;
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
    /// [`SessionError::Store`] if the session could not be loaded.
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
        let limit = self.inner.ctx.config.max_session_size;
        let size = st.size_with(key, json.len());
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
        st.cycle = true;
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
                Ok(Some(ended)) => {
                    let fields = ended.fields();
                    let handle = fields
                        .get(record::HANDLE)
                        .and_then(|h| SessionHandle::parse(h));
                    let user = fields.get(record::USER).map(String::as_str);
                    self.emit(EventKind::Logout, handle, user);
                }
                Ok(None) => {}
                Err(e) => return Err(st.fail(e, "delete")),
            }
        }
        st.ended();
        Ok(())
    }

    /// Logs the session in as `user_id`: moves it (with its data) to a new id in the
    /// user's hash-tag slot, records created / last active / IP / user agent, adds it to
    /// the user's index and enforces the configured
    /// [`SessionLimit`](crate::SessionLimit), all in one atomic step. The old id stops
    /// working, so an id planted before login is useless. The user id is stored
    /// server-side only, never in the cookie.
    ///
    /// Costs two round trips: one to take the current session, one for the login.
    ///
    /// # Errors
    /// [`SessionError::TooManySessions`] under [`LimitPolicy::Reject`](crate::LimitPolicy::Reject)
    /// at the limit (nothing changed: the current session is kept);
    /// [`SessionError::InvalidUserId`] for an empty or over-long user id, or one with a
    /// control character (nothing changed; answer it with 400);
    /// [`SessionError::Store`] if the store failed.
    pub async fn login(&self, user_id: &str) -> Result<(), SessionError> {
        InvalidUserId::check(user_id).map_err(SessionError::InvalidUserId)?;
        let ctx = &self.inner.ctx;
        let store = &ctx.store;
        let mut st = self.inner.state.lock().await;
        st.accessed = true;
        let tag = match store.user_tag(user_id).await {
            Ok(tag) => tag,
            Err(e) => return Err(st.fail(e, "user tag")),
        };
        let current = match (&st.load, &st.id) {
            (Load::Done(None), _) | (_, None) => None,
            (_, Some(id)) => Some(id.key()),
        };
        let taken = match &current {
            Some(key) => match store.take(key).await {
                Ok(record) => record,
                Err(e) => return Err(st.fail(e, "take")),
            },
            None => None,
        };
        let now = now_ms();
        let clock = ctx.clock(now);
        let base = parse_live(taken.clone(), now);
        let mut patch = self.login_record(&st, base.as_ref(), user_id, now);
        patch.events = if base.is_none() {
            "created login"
        } else {
            "login"
        };
        let mode = WriteMode::Login {
            limit: ctx.config.limit,
        };
        let generate = || SessionId::generate_in(tag.clone());
        let written = self.write_new(generate, mode, &patch, clock).await;
        let (new, ttl, evicted) = match written {
            Ok((new, WriteOutcome::Written { ttl, evicted })) => (new, ttl, evicted),
            Ok((_, WriteOutcome::Rejected)) => {
                self.restore(current.as_ref(), taken, clock).await;
                let limit = ctx.config.limit.map_or(0, |l| l.max);
                return Err(SessionError::TooManySessions { limit });
            }
            Ok((_, WriteOutcome::TooLarge { size })) => {
                // Concurrent writes grew the session it takes along past the limit.
                self.restore(current.as_ref(), taken, clock).await;
                let limit = ctx.config.max_session_size;
                return Err(SessionError::TooLarge { size, limit });
            }
            Ok(_) => {
                self.restore(current.as_ref(), taken, clock).await;
                let e = StoreError::Protocol("login could not be written");
                return Err(st.fail(e, "login"));
            }
            Err(e) => {
                // Also an id that could not be generated: the taken session goes back.
                self.restore(current.as_ref(), taken, clock).await;
                return Err(st.fail(e, "login"));
            }
        };
        if !evicted.is_empty() {
            tracing::info!(evicted = evicted.len(), "login evicted older sessions");
        }
        for h in &evicted {
            let reason = EventKind::Revoked(RevokeReason::EvictedByCap);
            self.emit(reason, Some(*h), Some(user_id));
        }
        let mut fields = HashMap::new();
        patch.apply_to(&mut fields);
        record::stamp_ttl(&mut fields, clock);
        st.load = Load::Done(Loaded::parse(Record::from_fields(fields)));
        st.changes.clear();
        st.cleared = false;
        st.expiry = None;
        st.cycle = false;
        st.destroyed = false;
        // A request served as anonymous after a failed load (StoreDownPolicy::Anonymous)
        // that logs in has written a new session: its cookie must be sent.
        st.degraded = false;
        st.id = Some(new);
        st.fresh = Some(ttl);
        let handle = match &st.load {
            Load::Done(Some(l)) => Some(l.handle),
            _ => None,
        };
        if base.is_none() {
            // A login without a session before it stored a new one.
            self.emit(EventKind::Created, handle, None);
        }
        self.emit(EventKind::Login, handle, Some(user_id));
        Ok(())
    }

    /// Writes `patch` under a freshly generated id, generating another on the
    /// (2^-256, or broken-RNG) chance that the key exists. Returns the id and the first
    /// outcome that is not a collision.
    async fn write_new(
        &self,
        generate: impl Fn() -> Result<SessionId, StoreError>,
        mode: WriteMode<'_>,
        patch: &Patch,
        clock: Clock,
    ) -> Result<(SessionId, WriteOutcome), StoreError> {
        for _ in 0..COLLISION_RETRIES {
            let id = generate()?;
            let outcome = self
                .inner
                .ctx
                .store
                .write(&id.key(), mode, patch, clock)
                .await?;
            if outcome != WriteOutcome::Collision {
                return Ok((id, outcome));
            }
        }
        Err(StoreError::Protocol("session id collided repeatedly"))
    }

    /// The full record of a session logging in: its data and metadata, the pending
    /// changes, and the user.
    fn login_record(&self, st: &State, base: Option<&Loaded>, user_id: &str, now: i64) -> Patch {
        let config = &self.inner.ctx.config;
        let mut data: HashMap<&str, &str> = HashMap::new();
        if let Some(b) = base.filter(|_| !st.cleared) {
            data.extend(b.data.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        for (k, v) in &st.changes {
            match v {
                Some(v) => data.insert(k, v),
                None => data.remove(k.as_str()),
            };
        }
        let mut patch = Patch {
            max_size: config.max_session_size,
            ..Patch::default()
        };
        patch
            .set
            .extend(data.into_iter().map(|(k, v)| (data_field(k), v.to_owned())));
        let handle = base
            .map(|b| b.handle)
            .or(st.new_handle)
            .unwrap_or_else(SessionHandle::generate);
        let created = base.map_or(now, |b| b.created_ms);
        let deadline = match st.expiry.and_then(|e| e.absolute) {
            Some(absolute) => absolute.map(|a| created + millis(a)),
            None => base.map_or_else(
                || config.absolute_lifetime.map(|a| now + millis(a)),
                |b| b.deadline_ms,
            ),
        };
        let idle = st
            .expiry
            .map(|e| millis(e.idle))
            .or(base.and_then(|b| b.idle_ms));
        let persistent = st
            .expiry
            .and_then(|e| e.persistent)
            .or(base.and_then(|b| b.persistent));
        let meta = [
            (record::HANDLE, Some(handle.to_string())),
            (record::CREATED, Some(created.to_string())),
            (record::DEADLINE, deadline.map(|d| d.to_string())),
            (record::IDLE, idle.map(|i| i.to_string())),
            (
                record::PERSISTENT,
                persistent.map(|p| if p { "1" } else { "0" }.to_owned()),
            ),
            (record::USER, Some(user_id.to_owned())),
        ];
        for (field, value) in meta {
            if let Some(v) = value {
                patch.set.push((field.to_owned(), v));
            }
        }
        self.inner.meta.fields(&mut patch);
        patch
    }

    /// Puts back a session taken by a login that did not happen (best effort: the
    /// session was only ours to move).
    async fn restore(
        &self,
        key: Option<&crate::id::SessionKey>,
        taken: Option<Record>,
        clock: Clock,
    ) {
        let (Some(key), Some(record)) = (key, taken) else {
            return;
        };
        let mut patch = Patch::default();
        patch.set.extend(
            record
                .into_fields()
                .into_iter()
                .filter(|(k, _)| k != record::LAST_SEEN && k != record::EXPIRES),
        );
        if let Err(e) = self
            .inner
            .ctx
            .store
            .write(key, WriteMode::Create, &patch, clock)
            .await
        {
            log_store_error(&e, "restore");
        }
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

    /// The first page of the logged-in user's live sessions (at most
    /// [`PAGE_SIZE`](crate::users::PAGE_SIZE)), oldest first, with the current one
    /// marked; empty when not logged in. [`user_sessions_page`](Self::user_sessions_page)
    /// goes on.
    ///
    /// # Errors
    /// [`SessionError::Store`] if the store failed.
    pub async fn user_sessions(&self) -> Result<Vec<SessionInfo>, SessionError> {
        Ok(self
            .user_sessions_page(ListCursor::START)
            .await?
            .into_sessions())
    }

    /// One page of the logged-in user's live sessions from `cursor`
    /// ([`ListCursor::START`] or a previous page's [`next`](SessionPage::next)), with
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
        let next = page.next();
        let mut list = page.into_sessions();
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

    async fn revoke_where(&self, which: Which) -> Result<usize, SessionError> {
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

    /// Runs after the handler: writes what changed and says what the cookie becomes.
    pub(crate) async fn commit(&self) -> Commit {
        let mut st = self.inner.state.lock().await;
        let st = std::mem::take(&mut *st);
        if let Some(e) = st.failed {
            self.emit(EventKind::StoreUnavailable, None, None);
            return Commit::Failed(e);
        }
        if st.degraded {
            // Served as anonymous while the store was down: leave the session and the
            // cookie as they are.
            return Commit::Cookie(CookieAction::Keep);
        }
        let clock = self.inner.ctx.clock(now_ms());
        let result = match st.load {
            Load::Pending => Ok(if st.destroyed {
                CookieAction::Remove
            } else {
                CookieAction::Keep
            }),
            Load::Done(None) => {
                if st.changes.values().any(Option::is_some) {
                    self.create(&st, clock).await
                } else if st.accessed && !matches!(self.inner.incoming, Incoming::Absent)
                    || st.destroyed
                {
                    Ok(CookieAction::Remove)
                } else {
                    Ok(CookieAction::Keep)
                }
            }
            Load::Done(Some(ref loaded)) => self.update(&st, loaded, clock).await,
        };
        match result {
            Ok(action) => Commit::Cookie(action),
            Err(WriteFailure::TooLarge(size)) => {
                let limit = self.inner.ctx.config.max_session_size;
                tracing::info!(size, limit, "session write refused: over the size limit");
                Commit::TooLarge
            }
            Err(WriteFailure::Store(e)) => {
                log_store_error(&e, "write");
                self.emit(EventKind::StoreUnavailable, None, None);
                Commit::Failed(Arc::new(e))
            }
        }
    }

    async fn create(&self, st: &State, clock: Clock) -> Result<CookieAction, WriteFailure> {
        let config = &self.inner.ctx.config;
        let handle = st.new_handle.unwrap_or_else(SessionHandle::generate);
        let mut patch = data_patch(st, config.max_session_size);
        patch.events = "created";
        patch
            .set
            .push((record::HANDLE.to_owned(), handle.to_string()));
        patch
            .set
            .push((record::CREATED.to_owned(), clock.now_ms.to_string()));
        let absolute = st
            .expiry
            .and_then(|e| e.absolute)
            .unwrap_or(config.absolute_lifetime);
        if let Some(a) = absolute {
            patch.set.push((
                record::DEADLINE.to_owned(),
                (clock.now_ms + millis(a)).to_string(),
            ));
        }
        if let Some(e) = st.expiry {
            expiry_fields(&mut patch, e, None, clock.now_ms);
        }
        self.inner.meta.fields(&mut patch);
        let persistent = self.persistent(st, None);
        let written = self
            .write_new(SessionId::generate, WriteMode::Create, &patch, clock)
            .await?;
        Ok(match written {
            (id, WriteOutcome::Written { ttl, .. }) => {
                self.emit(EventKind::Created, Some(handle), None);
                set_cookie(id, ttl, persistent)
            }
            (_, WriteOutcome::TooLarge { size }) => return Err(WriteFailure::TooLarge(size)),
            _ => CookieAction::Remove,
        })
    }

    async fn update(
        &self,
        st: &State,
        loaded: &Loaded,
        clock: Clock,
    ) -> Result<CookieAction, WriteFailure> {
        let Some(id) = &st.id else {
            return Ok(CookieAction::Keep);
        };
        let store = &self.inner.ctx.store;
        let mut patch = data_patch(st, self.inner.ctx.config.max_session_size);
        if let Some(e) = st.expiry {
            expiry_fields(&mut patch, e, Some(loaded.created_ms), clock.now_ms);
        }
        let persistent = self.persistent(st, Some(loaded));
        let key = id.key();
        if st.cycle {
            patch.events = "id_rotated";
            let generate = || SessionId::generate_in(id.tag().to_owned());
            let mode = WriteMode::Rotate { from: &key };
            return Ok(match self.write_new(generate, mode, &patch, clock).await? {
                (new, WriteOutcome::Written { ttl, .. }) => {
                    let user = loaded.user.as_deref();
                    self.emit(EventKind::IdRotated, Some(loaded.handle), user);
                    set_cookie(new, ttl, persistent)
                }
                (_, WriteOutcome::TooLarge { size }) => {
                    return Err(WriteFailure::TooLarge(size));
                }
                _ => CookieAction::Remove,
            });
        }
        let changed = !patch.set.is_empty() || !patch.delete.is_empty() || patch.clear_data;
        // A cookie sealed under an older key of the ring is re-issued under the newest.
        let reissue = matches!(self.inner.incoming, Incoming::OldKey(_));
        if !changed && !self.needs_refresh(loaded, clock.now_ms) {
            // A login in this request moved the session to a new id: send it.
            return Ok(match st.fresh {
                Some(ttl) => set_cookie(id.clone(), ttl, persistent),
                None if reissue => {
                    let left = u64::try_from(loaded.expires_ms - clock.now_ms).unwrap_or(0);
                    set_cookie(id.clone(), Duration::from_millis(left), persistent)
                }
                None => CookieAction::Keep,
            });
        }
        if !changed {
            patch.events = "refreshed";
        }
        let outcome = store.write(&key, WriteMode::Update, &patch, clock).await?;
        if !changed && matches!(outcome, WriteOutcome::Written { .. }) {
            let user = loaded.user.as_deref();
            self.emit(EventKind::Refreshed, Some(loaded.handle), user);
        }
        match outcome {
            // A browser-session cookie does not change when the TTL is reset.
            WriteOutcome::Written { ttl, .. }
                if persistent || st.expiry.is_some() || st.fresh.is_some() || reissue =>
            {
                Ok(set_cookie(id.clone(), ttl, persistent))
            }
            WriteOutcome::Written { .. } => Ok(CookieAction::Keep),
            WriteOutcome::TooLarge { size } => Err(WriteFailure::TooLarge(size)),
            WriteOutcome::Gone | WriteOutcome::Collision | WriteOutcome::Rejected => {
                Ok(CookieAction::Remove)
            }
        }
    }

    fn persistent(&self, st: &State, loaded: Option<&Loaded>) -> bool {
        st.expiry
            .and_then(|e| e.persistent)
            .or(loaded.and_then(|l| l.persistent))
            .unwrap_or(self.inner.ctx.config.persistent)
    }

    /// Refresh only below the threshold, and only if it gains something: near the
    /// absolute deadline the TTL cannot grow, so reads stop refreshing.
    fn needs_refresh(&self, loaded: &Loaded, now: i64) -> bool {
        let config = &self.inner.ctx.config;
        let idle = loaded
            .idle_ms
            .unwrap_or_else(|| millis(config.idle_timeout));
        let threshold = config.threshold_ms(idle);
        let remaining = loaded.expires_ms - now;
        if remaining >= threshold {
            return false;
        }
        let new_ttl = loaded.deadline_ms.map_or(idle, |d| idle.min(d - now));
        let gain = new_ttl - remaining;
        gain > 0 && gain > (idle - threshold) / 2
    }
}

impl State {
    /// The session no longer exists: answer with a removal cookie unless a new one is
    /// created later in the request.
    fn ended(&mut self) {
        *self = State {
            load: Load::Done(None),
            destroyed: true,
            accessed: true,
            ..State::default()
        };
    }

    /// The session's size (keys + JSON values) if `key` had a value of `len` bytes.
    fn size_with(&self, key: &str, len: usize) -> usize {
        let mut size = key.len() + len;
        if let Some(data) = self.stored_data() {
            size += data
                .iter()
                .filter(|(k, _)| *k != key && !self.changes.contains_key(*k))
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        }
        size += self
            .changes
            .iter()
            .filter(|(k, _)| *k != key)
            .filter_map(|(k, v)| v.as_ref().map(|v| k.len() + v.len()))
            .sum::<usize>();
        size
    }

    /// The stored data as the handler sees it: none if there is no stored session or the
    /// handler cleared it (pending changes are separate).
    fn stored_data(&self) -> Option<&HashMap<String, String>> {
        match (&self.load, self.cleared) {
            (Load::Done(Some(l)), false) => Some(&l.data),
            _ => None,
        }
    }

    /// The logged-in user and the current id.
    fn user(&self) -> Option<(String, SessionId)> {
        match (&self.load, &self.id) {
            (Load::Done(Some(l)), Some(id)) => Some((l.user.clone()?, id.clone())),
            _ => None,
        }
    }

    /// Records a store failure for the layer and returns it for the handler.
    fn fail(&mut self, e: StoreError, op: &'static str) -> SessionError {
        log_store_error(&e, op);
        let e = Arc::new(e);
        self.failed = Some(e.clone());
        SessionError::Store(e)
    }

    fn raw(&self, key: &str) -> Option<&str> {
        if let Some(change) = self.changes.get(key) {
            return change.as_deref();
        }
        self.stored_data()?.get(key).map(String::as_str)
    }
}

/// A stored record as a session, if it is well-formed and still within its TTL and
/// deadline.
fn parse_live(record: Option<Record>, now: i64) -> Option<Loaded> {
    record
        .and_then(Loaded::parse)
        .filter(|l| l.expires_ms > now && l.deadline_ms.is_none_or(|d| d > now))
}

/// Why a commit's write did not happen.
#[derive(Debug)]
pub(crate) enum WriteFailure {
    Store(StoreError),
    /// The merged data would have been this many bytes, over the limit.
    TooLarge(usize),
}

impl From<StoreError> for WriteFailure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn data_patch(st: &State, max_size: usize) -> Patch {
    let mut patch = Patch {
        clear_data: st.cleared,
        max_size,
        ..Patch::default()
    };
    for (k, v) in &st.changes {
        match v {
            Some(json) => patch.set.push((data_field(k), json.clone())),
            None => patch.delete.push(data_field(k)),
        }
    }
    patch
}

fn expiry_fields(patch: &mut Patch, e: Expiry, created_ms: Option<i64>, now: i64) {
    patch
        .set
        .push((record::IDLE.to_owned(), millis(e.idle).to_string()));
    if let Some(p) = e.persistent {
        let v = if p { "1" } else { "0" };
        patch
            .set
            .push((record::PERSISTENT.to_owned(), v.to_owned()));
    }
    match e.absolute {
        Some(Some(a)) => patch.set.push((
            record::DEADLINE.to_owned(),
            (created_ms.unwrap_or(now) + millis(a)).to_string(),
        )),
        Some(None) => patch.delete.push(record::DEADLINE.to_owned()),
        None => {}
    }
}

fn set_cookie(id: SessionId, ttl: Duration, persistent: bool) -> CookieAction {
    CookieAction::Set {
        id,
        max_age: persistent.then_some(ttl),
    }
}

pub(crate) use crate::error::log_store_error;

/// Which of the current user's sessions to revoke.
#[derive(Clone, Copy, Debug)]
enum Which {
    Handle(SessionHandle),
    All,
    Others,
}

/// What the response's session cookie becomes.
#[derive(Debug)]
pub(crate) enum CookieAction {
    Keep,
    Set {
        id: SessionId,
        max_age: Option<Duration>,
    },
    Remove,
}

#[derive(Debug)]
pub(crate) enum Commit {
    Cookie(CookieAction),
    Failed(Arc<StoreError>),
    /// Concurrent writes grew the session: this request's changes would take it past
    /// the size limit. Nothing was written; the response becomes 413.
    TooLarge,
}
