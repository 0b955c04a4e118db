//! A request's view of its session: what was loaded, what changed, and how the
//! request ended (written, destroyed, failed, degraded).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Expiry;
use crate::details::SessionDetails;
use crate::error::log_store_error;
use crate::error::{SessionError, StoreError};
use crate::id::{SessionHandle, SessionId};
use crate::store::record::Loaded;

use crate::store::values::Values;

#[derive(Debug, Default)]
pub(super) enum Load {
    #[default]
    Pending,
    /// `None`: there is no stored session (none yet, ended, or destroyed). Shared: a
    /// cached session is the cache's own parsed copy.
    Done(Option<Arc<Loaded>>),
}

/// Whether the store has failed this request. A failure outranks a degraded load: once
/// failed, the request ends with the store-error response whatever else happens.
#[derive(Debug, Default)]
pub(super) enum Health {
    #[default]
    Ok,
    /// The load failed and the policy serves the request as anonymous: the session
    /// and its cookie are left as they are (unless a login succeeds).
    Degraded,
    /// A store failure during the handler; the layer answers with its error response.
    Failed(Arc<StoreError>),
}

/// What becomes of the session's id by the end of the request: one of three, so a
/// destroyed session cannot also be rotated.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) enum Fate {
    /// Kept (the usual case).
    #[default]
    Keep,
    /// Moved to a new id after the handler ([`cycle_id`](super::Session::cycle_id)).
    NewId,
    /// Ended in this request ([`destroy`](super::Session::destroy)); keys inserted
    /// afterwards go into a new session.
    Destroyed,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// The current id: the cookie's, or the one a login moved the session to.
    pub(super) id: Option<SessionId>,
    /// Set by a login: the new id's TTL, so the response sends the new cookie.
    pub(super) fresh: Option<Duration>,
    pub(super) load: Load,
    /// Pending changes: `Some(json)` to set, `None` to remove.
    pub(super) changes: BTreeMap<String, Option<String>>,
    pub(super) cleared: bool,
    pub(super) expiry: Option<Expiry>,
    /// What happens to the stored session's id.
    pub(super) fate: Fate,
    /// Whether the store has failed this request.
    pub(super) health: Health,
    pub(super) accessed: bool,
    /// The handle a new session will get.
    pub(super) new_handle: Option<SessionHandle>,
    /// Details set in this request (empty: remove them).
    pub(super) details: Option<SessionDetails>,
}

impl State {
    /// The session's details: set in this request, else stored.
    pub(super) fn details(&self) -> Option<SessionDetails> {
        if let Some(d) = &self.details {
            return Some(d.clone());
        }
        match &self.load {
            Load::Done(Some(l)) => l.details.as_deref().map(SessionDetails::from_json),
            _ => None,
        }
    }

    /// The session no longer exists: answer with a removal cookie unless a new one is
    /// created later in the request.
    pub(super) fn ended(&mut self) {
        *self = State {
            load: Load::Done(None),
            fate: Fate::Destroyed,
            accessed: true,
            ..State::default()
        };
    }

    /// The session's size ([`data_size`](crate::store::rules::data_size)) if `key` held
    /// `value`.
    /// `values` says how long a value is once stored (sealed or not).
    pub(super) fn size_with(&self, key: &str, value: &str, values: &Values) -> usize {
        use crate::store::rules::entry_len;
        let entry_size = |k: &str, v: &str| entry_len(k, values.stored_len(v.len()));
        let mut size = entry_size(key, value);
        if let Some(data) = self.stored_data() {
            size += data
                .iter()
                .filter(|(k, _)| *k != key && !self.changes.contains_key(*k))
                .map(|(k, v)| entry_size(k, v))
                .sum::<usize>();
        }
        size += self
            .changes
            .iter()
            .filter(|(k, _)| *k != key)
            .filter_map(|(k, v)| v.as_ref().map(|v| entry_size(k, v)))
            .sum::<usize>();
        size
    }

    /// How many keys the session would hold once `key` is set.
    pub(super) fn keys_with(&self, key: &str) -> usize {
        let stored = self.stored_data();
        let kept = stored.map_or(0, |d| {
            d.keys().filter(|k| !self.changes.contains_key(*k)).count()
        });
        let set = self.changes.values().filter(|v| v.is_some()).count();
        let present = match self.changes.get(key) {
            Some(v) => v.is_some(),
            None => stored.is_some_and(|d| d.contains_key(key)),
        };
        kept + set + usize::from(!present)
    }

    /// The stored data as the handler sees it: none if there is no stored session or the
    /// handler cleared it (pending changes are separate).
    pub(super) fn stored_data(&self) -> Option<&HashMap<String, String>> {
        match (&self.load, self.cleared) {
            (Load::Done(Some(l)), false) => Some(&l.data),
            _ => None,
        }
    }

    /// The logged-in user and the current id.
    pub(super) fn user(&self) -> Option<(String, SessionId)> {
        match (&self.load, &self.id) {
            (Load::Done(Some(l)), Some(id)) => Some((l.user.clone()?, id.clone())),
            _ => None,
        }
    }

    /// Records a store failure for the layer and returns it for the handler.
    pub(super) fn fail(&mut self, e: StoreError, op: &'static str) -> SessionError {
        log_store_error(&e, op);
        let e = Arc::new(e);
        self.health = Health::Failed(e.clone());
        SessionError::Store(e)
    }

    /// The load failed and the request goes on as anonymous (unless it already failed).
    pub(super) fn degrade(&mut self) {
        if matches!(self.health, Health::Ok) {
            self.health = Health::Degraded;
        }
    }

    /// A login wrote a new session: the request is no longer degraded.
    pub(super) fn recovered(&mut self) {
        if matches!(self.health, Health::Degraded) {
            self.health = Health::Ok;
        }
    }

    pub(super) fn raw(&self, key: &str) -> Option<&str> {
        if let Some(change) = self.changes.get(key) {
            return change.as_deref();
        }
        self.stored_data()?.get(key).map(String::as_str)
    }
}

/// A loaded session, if it is still within its TTL and deadline, with its values opened.
/// A shared copy is copied only when there are sealed values to open.
pub(super) fn parse_live(
    loaded: Option<Arc<Loaded>>,
    now: i64,
    values: &Values,
) -> Option<Arc<Loaded>> {
    let mut loaded =
        loaded.filter(|l| l.expires_ms > now && l.deadline_ms.is_none_or(|d| d > now))?;
    if values.seals() {
        let l = Arc::make_mut(&mut loaded);
        let handle = l.handle;
        values.open_data(&mut l.data, handle);
    }
    Some(loaded)
}
