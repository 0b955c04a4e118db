//! Login: the session moves into its user's slot (take, then write with the per-user
//! cap), keeping its data; on failure the taken session is put back.

use std::collections::HashMap;

use super::state::{Fate, Load, State, parse_live};
use super::{COLLISION_RETRIES, Session};
use crate::config::millis;
use crate::error::log_store_error;
use crate::error::{InvalidUserId, SessionError, StoreError};
use crate::events::{EventKind, RevokeReason};
use crate::id::{SessionHandle, SessionId};
use crate::store::record::{
    self, Clock, Loaded, Patch, Record, WriteMode, WriteOutcome, data_field,
};
use crate::time::now_ms;

impl Session {
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
        if base.is_none() {
            // A login without a session before it stored a new one.
            self.emit_own(EventKind::Created, handle, None, details.clone());
        }
        self.emit_own(EventKind::Login, handle, Some(user_id), details);
        Ok(())
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

    /// The full record of a session logging in: its data and metadata, the pending
    /// changes, and the user.
    pub(super) fn login_record(
        &self,
        st: &State,
        base: Option<&Loaded>,
        user_id: &str,
        now: i64,
    ) -> Patch {
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
        let deadline = super::commit::deadline_ms(
            st.expiry.and_then(|e| e.absolute),
            created,
            base.map(|b| b.deadline_ms),
            config.absolute_lifetime,
        );
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
            (
                record::DETAILS,
                match &st.details {
                    Some(d) => (!d.is_empty()).then(|| d.to_json()),
                    None => base.and_then(|b| b.details.clone()),
                },
            ),
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
    pub(super) async fn restore(
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
}
