//! After the handler: what the session's changes become in the store (one write, or
//! none) and what the response's cookie becomes.

use std::sync::Arc;
use std::time::Duration;

use super::Session;
use super::state::{Fate, Health, Load, State};
use crate::config::{Expiry, millis};
use crate::cookie::Incoming;
use crate::error::StoreError;
use crate::error::log_store_error;
use crate::events::EventKind;
use crate::id::{SessionHandle, SessionId};
use crate::store::record::{self, Clock, Loaded, Patch, WriteMode, WriteOutcome, data_field};
use crate::time::now_ms;

impl Session {
    /// Runs after the handler: writes what changed and says what the cookie becomes.
    pub(crate) async fn commit(&self) -> Commit {
        let mut st = self.inner.state.lock().await;
        let hooks = std::mem::take(
            &mut *self
                .inner
                .before_commit
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for change in hooks {
            // Only on a session this request loaded: an unloaded one is not written.
            if let (Some((key, value)), Load::Done(_)) = (change(), &st.load) {
                st.changes.insert(key, value);
            }
        }
        let st = std::mem::take(&mut *st);
        if let Health::Failed(e) = st.health {
            self.emit(EventKind::StoreUnavailable, None, None);
            return Commit::Failed(e);
        }
        if matches!(st.health, Health::Degraded) {
            // Served as anonymous while the store was down: leave the session and the
            // cookie as they are.
            return Commit::Cookie(CookieAction::Keep);
        }
        let clock = self.inner.ctx.clock(now_ms());
        let result = match st.load {
            Load::Pending => Ok(if st.fate == Fate::Destroyed {
                CookieAction::Remove
            } else {
                CookieAction::Keep
            }),
            Load::Done(None) => {
                if st.changes.values().any(Option::is_some) {
                    self.create(&st, clock).await
                } else if st.accessed && !matches!(self.inner.incoming, Incoming::Absent)
                    || st.fate == Fate::Destroyed
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

    pub(super) async fn create(
        &self,
        st: &State,
        clock: Clock,
    ) -> Result<CookieAction, WriteFailure> {
        let config = &self.inner.ctx.config;
        let handle = st.new_handle.unwrap_or_else(SessionHandle::generate);
        let mut patch = data_patch(st, config.max_session_size);
        patch.events = "created";
        patch
            .set
            .push((record::HANDLE.to_owned(), handle.to_string()));
        // Both counted from the store's now (one clock for every instance).
        patch
            .set
            .push((record::CREATED.to_owned(), record::relative(0)));
        let absolute = st.expiry.and_then(|e| e.absolute_from(clock.now_ms));
        if let Some(d) = deadline_ms(absolute, 0, None, config.absolute_lifetime) {
            patch
                .set
                .push((record::DEADLINE.to_owned(), record::relative(d)));
        }
        if let Some(e) = st.expiry {
            expiry_fields(&mut patch, e);
        }
        details_fields(st, &mut patch, true);
        self.inner.meta.fields(&mut patch);
        self.inner.ctx.values.seal_patch(&mut patch, handle)?;
        let persistent = self.persistent(st, None);
        let written = self
            .write_new(SessionId::generate, WriteMode::Create, &patch, clock)
            .await?;
        Ok(match written {
            (id, WriteOutcome::Written { ttl, .. }) => {
                self.emit_own(EventKind::Created, Some(handle), None, st.details());
                set_cookie(id, ttl, persistent)
            }
            (_, WriteOutcome::TooLarge { size }) => return Err(WriteFailure::TooLarge(size)),
            _ => CookieAction::Remove,
        })
    }

    pub(super) async fn update(
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
            expiry_fields(&mut patch, e);
            if let Some(absolute) = e.absolute_from(loaded.created_ms) {
                // An override counts from the session's creation, or removes the cap.
                let current = Some(loaded.deadline_ms);
                let lifetime = self.inner.ctx.config.absolute_lifetime;
                match deadline_ms(Some(absolute), loaded.created_ms, current, lifetime) {
                    Some(d) => patch.set.push((record::DEADLINE.to_owned(), d.to_string())),
                    None => patch.delete.push(record::DEADLINE.to_owned()),
                }
            }
        }
        details_fields(st, &mut patch, false);
        self.inner
            .ctx
            .values
            .seal_patch(&mut patch, loaded.handle)?;
        let persistent = self.persistent(st, Some(loaded));
        let key = id.key();
        if st.fate == Fate::NewId {
            patch.events = "id_rotated";
            let generate = || SessionId::generate_in(id.tag().to_owned());
            let mode = WriteMode::Rotate { from: &key };
            return Ok(match self.write_new(generate, mode, &patch, clock).await? {
                (new, WriteOutcome::Written { ttl, .. }) => {
                    let user = loaded.user.as_deref();
                    let details = st.details();
                    self.emit_own(EventKind::IdRotated, Some(loaded.handle), user, details);
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
            self.emit_own(
                EventKind::Refreshed,
                Some(loaded.handle),
                user,
                st.details(),
            );
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

    pub(super) fn persistent(&self, st: &State, loaded: Option<&Loaded>) -> bool {
        st.expiry
            .and_then(|e| e.persistent)
            .or(loaded.and_then(|l| l.persistent))
            .unwrap_or(self.inner.ctx.config.persistent)
    }

    /// Refresh only below the threshold, and only if it gains something: near the
    /// absolute deadline the TTL cannot grow, so reads stop refreshing.
    pub(super) fn needs_refresh(&self, loaded: &Loaded, now: i64) -> bool {
        let config = &self.inner.ctx.config;
        config.needs_refresh(loaded.expires_ms, loaded.idle_ms, loaded.deadline_ms, now)
    }
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

pub(super) fn data_patch(st: &State, max_size: usize) -> Patch {
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

/// The details set in this request: stored as JSON, or removed when empty (a new
/// record has nothing to remove).
fn details_fields(st: &State, patch: &mut Patch, new: bool) {
    match &st.details {
        Some(d) if d.is_empty() && !new => patch.delete.push(record::DETAILS.to_owned()),
        Some(d) if !d.is_empty() => patch.set.push((record::DETAILS.to_owned(), d.to_json())),
        _ => {}
    }
}

/// The fields of an expiry override other than the deadline (see [`deadline_ms`]).
pub(super) fn expiry_fields(patch: &mut Patch, e: Expiry) {
    if let Some(idle) = e.idle {
        patch
            .set
            .push((record::IDLE.to_owned(), millis(idle).to_string()));
    }
    if let Some(p) = e.persistent {
        let v = if p { "1" } else { "0" };
        patch
            .set
            .push((record::PERSISTENT.to_owned(), v.to_owned()));
    }
}

/// The one rule for a session's absolute deadline (Unix ms, `None` for none): an
/// override's lifetime (`absolute`, `Some(None)` for no cap) counts from the session's
/// creation; without one, an existing session (`current`) keeps its deadline and a new
/// one gets the configured `lifetime` from its creation.
pub(super) fn deadline_ms(
    absolute: Option<Option<Duration>>,
    created_ms: i64,
    current: Option<Option<i64>>,
    lifetime: Option<Duration>,
) -> Option<i64> {
    match (absolute, current) {
        (Some(absolute), _) => absolute.map(|a| created_ms + millis(a)),
        (None, Some(existing)) => existing,
        (None, None) => lifetime.map(|a| created_ms + millis(a)),
    }
}

pub(super) fn set_cookie(id: SessionId, ttl: Duration, persistent: bool) -> CookieAction {
    CookieAction::Set {
        id,
        max_age: persistent.then_some(ttl),
    }
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
