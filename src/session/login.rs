//! Login: the session gets a new id in its user's slot. Three cases, each leaving the
//! current session as it was whenever the login fails:
//! - the same user again: the session rotates in place (one atomic write that keeps
//!   its data, handle and bound token families);
//! - an anonymous session: its data moves to the user's slot (write the new session,
//!   then delete the old one);
//! - another user: a clean session for the new user, then the previous user's session
//!   ends (logout event).
//!
//! Nothing is taken and put back, so a revocation that runs while a login is in flight
//! is never undone by the login's failure.

use std::collections::HashMap;
use std::sync::Arc;

use super::state::{Fate, Load, State, parse_live};
use super::{COLLISION_RETRIES, Session};
use crate::config::millis;
use crate::error::log_store_error;
use crate::error::{SessionError, StoreError, check_user_id};
use crate::events::{EventKind, RevokeReason};
use crate::id::{SessionHandle, SessionId};
use crate::store::record::{
    self, Clock, Loaded, Patch, Record, WriteMode, WriteOutcome, data_field,
};
use crate::time::now_ms;

/// What a login does with the session it starts from.
enum Start {
    /// No stored session: a new one.
    Fresh,
    /// Logged in as this user already: rotate in place, keeping everything.
    Again(Arc<Loaded>, crate::id::SessionKey),
    /// Anonymous: carry its data into the user's slot.
    Carry(Arc<Loaded>),
    /// Logged in as another user: start clean, then end that session.
    Switch,
}

impl Session {
    /// Logs the session in as `user_id`, giving it a new id in the user's hash-tag slot
    /// (so an id planted before login is useless), recording created / last active / IP /
    /// user agent, adding it to the user's index and enforcing the configured
    /// [`SessionLimit`](crate::SessionLimit), all in one atomic write. The user id is
    /// stored server-side only, never in the cookie.
    ///
    /// What the session keeps depends on who it belonged to:
    /// - **anonymous**: its data (a cart, say) moves into the logged-in session;
    /// - **the same user** (a re-login): data, handle and bound token families are kept
    ///   (an id rotation);
    /// - **another user**: nothing stored is kept. The new session gets a new handle
    ///   and none of the previous user's data, details or lifetime (what this request
    ///   set before the login goes with the new user), and the previous user's session
    ///   ends with a [`Logout`](crate::events::EventKind::Logout) event.
    ///
    /// Every login restarts the absolute lifetime and the session's created ("signed
    /// in") time, so time spent browsing before the login does not shorten it.
    ///
    /// Costs one round trip to read the current session (none if the handler read a
    /// logged-in one) and one for the login; an anonymous or another user's session is
    /// deleted in a third.
    ///
    /// # Errors
    /// [`SessionError::TooManySessions`] under [`LimitPolicy::Reject`](crate::LimitPolicy::Reject)
    /// at the limit; [`SessionError::TooLarge`] if concurrent writes grew the data
    /// past the size limit; [`SessionError::InvalidUserId`] for an empty or over-long
    /// user id, or one with a control character (answer it with 400);
    /// [`SessionError::Store`] if the store failed. In each case the current session is
    /// left as it was (or as a concurrent revocation left it).
    pub async fn login(&self, user_id: &str) -> Result<(), SessionError> {
        check_user_id(user_id).map_err(SessionError::InvalidUserId)?;
        let ctx = &self.inner.ctx;
        let store = &ctx.store;
        let login_mode = WriteMode::Login {
            limit: ctx.config.limit,
        };
        let mut st = self.inner.state.lock().await;
        st.accessed = true;
        let tag = match store.user_tag(user_id).await {
            Ok(tag) => tag,
            Err(e) => return Err(st.fail(e, "user tag")),
        };
        let current = match (&st.load, &st.id) {
            (Load::Done(None), _) | (_, None) => None,
            (_, Some(id)) => Some(id.clone()),
        };
        // Whose session it is, from this request's read if it had one; an anonymous
        // session's data is read as stored now, so what concurrent requests wrote is
        // carried.
        let base = match (&current, &st.load) {
            (Some(_), Load::Done(Some(l))) if l.user.is_some() => Some(l.clone()),
            (Some(id), _) => match store.load(&id.key()).await {
                Ok(record) => parse_live(record, now_ms(), &ctx.values),
                Err(e) => return Err(st.fail(e, "load")),
            },
            (None, _) => None,
        };
        #[cfg(feature = "store-internals")]
        if let Some(pause) = &ctx.login_pause {
            (pause.0)().await;
        }
        let mut start = match (base, &current) {
            (None, _) | (_, None) => Start::Fresh,
            (Some(b), Some(id)) => match b.user.as_deref() {
                Some(u) if u == user_id && id.tag() == tag => Start::Again(b, id.key()),
                Some(_) => Start::Switch,
                None => Start::Carry(b),
            },
        };
        let now = now_ms();
        let clock = ctx.clock(now);
        let generate = || SessionId::generate_in(tag.clone());
        let (patch, new, ttl, evicted) = loop {
            let (patch, written) = match &start {
                Start::Again(b, from) => {
                    let patch = match self.relogin_patch(&st, b, user_id) {
                        Ok(patch) => patch,
                        Err(e) => return Err(st.fail(e, "seal")),
                    };
                    let mode = WriteMode::Rotate { from };
                    let written = self.write_new(generate, mode, &patch, clock).await;
                    (patch, written)
                }
                Start::Carry(b) => {
                    let mut patch = match self.login_record(&st, Some(b), user_id) {
                        Ok(patch) => patch,
                        Err(e) => return Err(st.fail(e, "seal")),
                    };
                    patch.events = "login";
                    let written = self.write_new(generate, login_mode, &patch, clock).await;
                    (patch, written)
                }
                Start::Fresh | Start::Switch => {
                    let mut patch = match self.login_record(&st, None, user_id) {
                        Ok(patch) => patch,
                        Err(e) => return Err(st.fail(e, "seal")),
                    };
                    patch.events = "created login";
                    let written = self.write_new(generate, login_mode, &patch, clock).await;
                    (patch, written)
                }
            };
            match written {
                Ok((new, WriteOutcome::Written { ttl, evicted })) => {
                    break (patch, new, ttl, evicted);
                }
                Ok((_, WriteOutcome::Rejected)) => {
                    let limit = ctx.config.limit.map_or(0, |l| l.max);
                    return Err(SessionError::TooManySessions { limit });
                }
                Ok((_, WriteOutcome::TooLarge { size })) => {
                    let limit = ctx.config.max_session_size;
                    return Err(SessionError::TooLarge { size, limit });
                }
                Ok((_, WriteOutcome::Gone)) if matches!(start, Start::Again(..)) => {
                    // Revoked while the login was in flight: it stays ended, and the
                    // user, who just authenticated, gets a new session.
                    start = Start::Fresh;
                }
                Ok(_) => {
                    let e = StoreError::Protocol("login could not be written");
                    return Err(st.fail(e, "login"));
                }
                Err(e) => return Err(st.fail(e, "login")),
            }
        };
        if !evicted.is_empty() {
            tracing::info!(evicted = evicted.len(), "login evicted older sessions");
        }
        for h in &evicted {
            let reason = EventKind::Revoked(RevokeReason::EvictedByCap);
            self.emit(reason, Some(*h), Some(user_id));
        }
        // The session it started from, in another slot or of another user, goes.
        if let (Start::Carry(_) | Start::Switch, Some(old)) = (&start, &current) {
            self.retire(old, matches!(start, Start::Switch)).await;
        }
        // The stored form (sealed values, if on), opened as a read would open it.
        let mut fields = match &start {
            Start::Again(b, _) => {
                let mut fields = relogin_fields(b);
                if let Err(e) = ctx.values.seal_fields(&mut fields, b.handle) {
                    return Err(st.fail(e, "seal"));
                }
                fields
            }
            _ => HashMap::new(),
        };
        patch.apply_to(&mut fields);
        record::stamp_ttl(&mut fields, clock);
        let mut loaded = Loaded::parse(Record::from_fields(fields));
        if let Some(l) = &mut loaded {
            ctx.values.open_data(&mut l.data, l.handle);
        }
        st.load = Load::Done(loaded.map(Arc::new));
        st.changes.clear();
        st.cleared = false;
        st.expiry = None;
        // Written with the login: the new record holds them.
        st.details = None;
        st.fate = Fate::Keep;
        // A request served as anonymous after a failed load (StoreDownPolicy::Anonymous)
        // that logs in has written a new session: its cookie must be sent.
        st.recovered();
        st.id = Some(new);
        st.fresh = Some(ttl);
        let handle = match &st.load {
            Load::Done(Some(l)) => Some(l.handle),
            _ => None,
        };
        let details = st.details();
        if matches!(start, Start::Fresh | Start::Switch) {
            // A new session was stored.
            self.emit_own(EventKind::Created, handle, None, details.clone());
        }
        self.emit_own(EventKind::Login, handle, Some(user_id), details);
        Ok(())
    }

    /// Ends the session a login started from: another user's (a logout, with its
    /// event) or an anonymous one whose data moved (no event). Its failure only leaves
    /// an unreachable copy behind until it expires: the client has the new cookie.
    async fn retire(&self, old: &SessionId, logout: bool) {
        let store = &self.inner.ctx.store;
        let key = old.key();
        if logout {
            match store.delete(&key).await {
                Ok(Some(ended)) => self.emit_logout(&ended),
                Ok(None) => {}
                Err(e) => log_store_error(&e, "end the previous user's session"),
            }
        } else if let Err(e) = store.take(&key).await {
            log_store_error(&e, "delete the session moved by a login");
        }
    }

    /// Writes `patch` under a freshly generated id, generating another on the
    /// (2^-256, or broken-RNG) chance that the key exists. Returns the id and the first
    /// outcome that is not a collision.
    pub(super) async fn write_new(
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

    /// The full record of a session logging in: the data it carries (`base`, an
    /// anonymous session, or none for a new or another user's session), this request's
    /// changes, and the user.
    ///
    /// # Errors
    /// A [`StoreError`] if the values could not be sealed (nothing is written).
    pub(super) fn login_record(
        &self,
        st: &State,
        base: Option<&Loaded>,
        user_id: &str,
    ) -> Result<Patch, StoreError> {
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
        let expiry = st.expiry;
        let deadline = login_deadline(self, expiry, base);
        let idle = expiry
            .and_then(|e| e.idle)
            .map(millis)
            .or(base.and_then(|b| b.idle_ms));
        let persistent = expiry
            .and_then(|e| e.persistent)
            .or(base.and_then(|b| b.persistent));
        let details = match &st.details {
            Some(d) => (!d.is_empty()).then(|| d.to_json()),
            _ => base.and_then(|b| b.details.clone()),
        };
        let meta = [
            (record::HANDLE, Some(handle.to_string())),
            (record::CREATED, Some(record::relative(0))),
            (record::DEADLINE, deadline.map(record::relative)),
            (record::IDLE, idle.map(|i| i.to_string())),
            (
                record::PERSISTENT,
                persistent.map(|p| if p { "1" } else { "0" }.to_owned()),
            ),
            (record::USER, Some(user_id.to_owned())),
            (record::DETAILS, details),
        ];
        for (field, value) in meta {
            if let Some(v) = value {
                patch.set.push((field.to_owned(), v));
            }
        }
        self.inner.meta.fields(&mut patch);
        self.inner.ctx.values.seal_patch(&mut patch, handle)?;
        Ok(patch)
    }

    /// The patch of a re-login of the session's own user (a rotation): this request's
    /// changes, a restarted lifetime and created time, the client's IP and user agent.
    fn relogin_patch(&self, st: &State, base: &Loaded, user_id: &str) -> Result<Patch, StoreError> {
        let mut patch = super::commit::data_patch(st, self.inner.ctx.config.max_session_size);
        patch.events = "login";
        if let Some(e) = st.expiry {
            super::commit::expiry_fields(&mut patch, e);
        }
        patch
            .set
            .push((record::CREATED.to_owned(), record::relative(0)));
        match login_deadline(self, st.expiry, Some(base)) {
            Some(d) => patch
                .set
                .push((record::DEADLINE.to_owned(), record::relative(d))),
            None => patch.delete.push(record::DEADLINE.to_owned()),
        }
        patch
            .set
            .push((record::USER.to_owned(), user_id.to_owned()));
        match &st.details {
            Some(d) if d.is_empty() => patch.delete.push(record::DETAILS.to_owned()),
            Some(d) => patch.set.push((record::DETAILS.to_owned(), d.to_json())),
            None => {}
        }
        self.inner.meta.fields(&mut patch);
        self.inner.ctx.values.seal_patch(&mut patch, base.handle)?;
        Ok(patch)
    }
}

/// The lifetime a login gives, in ms from the login (which the store's clock stamps;
/// `None` for none). This request's override wins; else the session it carries keeps
/// the lifetime it had (a "remember me" of 30 days stays 30 days); else the configured
/// one.
fn login_deadline(
    session: &Session,
    expiry: Option<crate::Expiry>,
    base: Option<&Loaded>,
) -> Option<i64> {
    let lifetime = session.inner.ctx.config.absolute_lifetime;
    match (expiry.and_then(|e| e.absolute_from(now_ms())), base) {
        (Some(absolute), _) => absolute.map(millis),
        (None, Some(b)) => b.deadline_ms.map(|d| (d - b.created_ms).max(0)),
        (None, None) => lifetime.map(millis),
    }
}

/// The per-field record a re-login rotates (what it keeps), for the request's view.
fn relogin_fields(b: &Loaded) -> HashMap<String, String> {
    let mut fields: HashMap<String, String> = b
        .data
        .iter()
        .map(|(k, v)| (data_field(k), v.clone()))
        .collect();
    let meta = [
        (record::HANDLE, Some(b.handle.to_string())),
        (record::IDLE, b.idle_ms.map(|i| i.to_string())),
        (
            record::PERSISTENT,
            b.persistent.map(|p| if p { "1" } else { "0" }.to_owned()),
        ),
        (record::DETAILS, b.details.clone()),
    ];
    for (field, value) in meta {
        if let Some(v) = value {
            fields.insert(field.to_owned(), v);
        }
    }
    fields
}
