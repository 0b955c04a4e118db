//! What a store answers about a user's sessions: a page of [`SessionInfo`] from a
//! [`ListCursor`], and which sessions a [`Revoke`] ends.

use std::time::SystemTime;

use crate::events::RevokeReason;
use crate::id::{SessionHandle, SessionKey};
use crate::time::system_time as time;

/// Most sessions one listing returns; [`SessionPage::next`] goes on from there.
pub(crate) const PAGE_SIZE: usize = 100;

/// Where a listing of a user's sessions goes on, from [`SessionPage::next`]; the
/// default is the first page. It prints (`Display`) and parses back (`FromStr`), for a
/// "more" link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ListCursor(u64);

impl std::str::FromStr for ListCursor {
    type Err = std::num::ParseIntError;

    /// A cursor printed by `Display`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

impl ListCursor {
    store_internal! {
        /// For store implementations: a position in the user's index.
        fn from_position(position: u64) -> Self {
            Self(position)
        }
    }

    store_internal! {
        /// For store implementations: the position this cursor stands for.
        fn position(self) -> u64 {
            self.0
        }
    }
}

impl std::fmt::Display for ListCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One page of a user's sessions: at most 100, oldest first within the page.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SessionPage {
    /// The sessions of this page.
    pub sessions: Vec<SessionInfo>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<ListCursor>,
}

impl SessionPage {
    store_internal! {
        /// A page (for store implementations): its sessions, and where the next one starts
        /// (`None` after the last).
        fn new(sessions: Vec<SessionInfo>, next: Option<ListCursor>) -> Self {
            Self { sessions, next }
        }
    }

    /// Sorts the page oldest first (creation time, then handle).
    pub(crate) fn sort_oldest_first(&mut self) {
        oldest_first(&mut self.sessions);
    }
}

/// One live session of a user, as listed. Serialized with the times as Unix
/// milliseconds (`created_ms`, `last_active_ms`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SessionInfo {
    #[serde(skip)]
    hash: String,
    /// The public handle: pass it to [`SessionAdmin::revoke`](crate::admin::SessionAdmin::revoke) or
    /// [`Session::revoke`](crate::Session::revoke).
    pub handle: SessionHandle,
    /// When the session was created.
    #[serde(rename = "created_ms", serialize_with = "crate::time::serialize_ms")]
    pub created: SystemTime,
    /// When the session was last written or refreshed (within the refresh threshold).
    #[serde(
        rename = "last_active_ms",
        serialize_with = "crate::time::serialize_ms"
    )]
    pub last_active: SystemTime,
    /// The client IP at creation or login, if known.
    pub ip: Option<String>,
    /// The user agent at creation or login, if sent.
    pub user_agent: Option<String>,
    /// The application's display details
    /// ([`Session::set_details`](crate::Session::set_details)); empty when none were
    /// set. For display only.
    pub details: crate::SessionDetails,
    /// Whether this is the session of the current request.
    pub current: bool,
}

impl SessionInfo {
    store_internal! {
        /// Builds an entry (for store implementations). `key_hash` is
        /// [`SessionKey::hash`] of the session.
        fn from_parts(
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
                created: time(created_ms),
                last_active: time(last_active_ms),
                ip,
                user_agent,
                details: crate::SessionDetails::default(),
                current: false,
            }
        }
    }

    /// With the stored details (JSON), if any.
    pub(crate) fn with_details(mut self, raw: Option<&str>) -> Self {
        self.details = raw
            .map(crate::SessionDetails::from_json)
            .unwrap_or_default();
        self
    }

    pub(crate) fn mark_current(&mut self, key: &SessionKey) {
        self.current = self.hash == key.hash();
    }
}

/// The order of every listing: oldest first, ties by handle.
/// Sorts one page's sessions, oldest first.
pub(crate) fn oldest_first(list: &mut [SessionInfo]) {
    list.sort_by_key(|s| (s.created, s.handle));
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
