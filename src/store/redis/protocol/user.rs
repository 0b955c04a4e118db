//! The calls that end or list sessions: delete, take, a page of a user's index, a
//! revocation step, an expiry report.

use super::*;

/// `delete.lua`: a logout.
pub(in crate::store::redis) struct Delete<'a> {
    pub(in crate::store::redis) namespace: &'a str,
    pub(in crate::store::redis) key: &'a SessionKey,
    pub(in crate::store::redis) now_ms: i64,
    pub(in crate::store::redis) stream: Stream<'a>,
}

impl Delete<'_> {
    pub(in crate::store::redis) fn invocation<'s>(&self, script: &'s Script) -> Invocation<'s> {
        let mut inv = Invocation::new(
            script,
            &[
                &keys::session(self.namespace, self.key),
                &keys::user_index(self.namespace, self.key.tag()),
            ],
        );
        inv.arg(self.key.hash())
            .arg(self.now_ms)
            .arg(self.stream.key)
            .arg(self.stream.max_len);
        inv
    }

    /// The deleted session's handle and user (`""` when absent), or `None` if there
    /// was no session.
    pub(in crate::store::redis) fn decode(reply: Vec<String>) -> Option<(String, String)> {
        match <[String; 2]>::try_from(reply) {
            Ok([handle, user]) => Some((handle, user)),
            Err(_) => None,
        }
    }
}

/// `take.lua`: read and delete (the first half of a login).
pub(in crate::store::redis) struct Take<'a> {
    pub(in crate::store::redis) namespace: &'a str,
    pub(in crate::store::redis) key: &'a SessionKey,
}

impl Take<'_> {
    pub(in crate::store::redis) fn invocation<'s>(&self, script: &'s Script) -> Invocation<'s> {
        let mut inv = Invocation::new(
            script,
            &[
                &keys::session(self.namespace, self.key),
                &keys::user_index(self.namespace, self.key.tag()),
            ],
        );
        inv.arg(self.key.hash());
        inv
    }
}

/// `list.lua`: one page of a user's sessions.
pub(in crate::store::redis) struct List<'a> {
    pub(in crate::store::redis) namespace: &'a str,
    pub(in crate::store::redis) tag: &'a str,
    pub(in crate::store::redis) user_id: &'a str,
    pub(in crate::store::redis) cursor: ListCursor,
    pub(in crate::store::redis) page_size: usize,
    pub(in crate::store::redis) now_ms: i64,
    pub(in crate::store::redis) stream: Stream<'a>,
}

impl List<'_> {
    pub(in crate::store::redis) fn invocation<'s>(&self, script: &'s Script) -> Invocation<'s> {
        let mut inv = Invocation::new(script, &[&keys::user_index(self.namespace, self.tag)]);
        inv.arg(keys::session_prefix(self.namespace, self.tag))
            .arg(self.now_ms)
            .arg(self.user_id)
            .arg(self.stream.key)
            .arg(self.stream.max_len)
            .arg(self.cursor.position())
            .arg(self.page_size);
        inv
    }

    /// `{next rank or "", then 6 strings per session: key hash, handle, created, last
    /// seen, ip, user agent}`.
    pub(in crate::store::redis) fn decode(reply: Vec<String>) -> Result<SessionPage, StoreError> {
        let Some((next, flat)) = reply.split_first() else {
            return Err(StoreError::Protocol("unexpected list script reply"));
        };
        let next = match next.as_str() {
            "" => None,
            n => Some(ListCursor::from_position(n.parse().map_err(|_| {
                StoreError::Protocol("list script returned a non-number")
            })?)),
        };
        let opt = |s: &String| (!s.is_empty()).then(|| s.clone());
        let sessions = flat
            .chunks_exact(7)
            .filter_map(|r| {
                let info = SessionInfo::from_parts(
                    r[0].clone(),
                    SessionHandle::parse(&r[1])?,
                    r[2].parse().unwrap_or(0),
                    r[3].parse().unwrap_or(0),
                    opt(&r[4]),
                    opt(&r[5]),
                );
                Some(info.with_details((!r[6].is_empty()).then_some(r[6].as_str())))
            })
            .collect();
        Ok(SessionPage::new(sessions, next))
    }
}

/// One bounded step of `revoke.lua`.
pub(in crate::store::redis) struct RevokeStep<'a> {
    pub(in crate::store::redis) namespace: &'a str,
    pub(in crate::store::redis) tag: &'a str,
    pub(in crate::store::redis) user_id: &'a str,
    pub(in crate::store::redis) which: Revoke<'a>,
    pub(in crate::store::redis) now_ms: i64,
    pub(in crate::store::redis) stream: Stream<'a>,
    /// How many entries of the session index and of the token-family index the previous
    /// step kept (0, 0 on the first): the step reads from rank 0 that many plus a batch,
    /// so a kept entry re-scored between steps cannot make the walk skip one.
    pub(in crate::store::redis) from: (u64, u64),
    /// The first step of the call (log out everywhere and revoke others then cut the
    /// handle map, which ends the sessions at once, before walking the index).
    pub(in crate::store::redis) first: bool,
}

/// What a revoke step did and what the next one passes back (`None`: that part is
/// done).
#[derive(Debug)]
pub(in crate::store::redis) struct RevokeProgress {
    pub(in crate::store::redis) next_session: Option<u64>,
    pub(in crate::store::redis) next_family: Option<u64>,
    pub(in crate::store::redis) revoked: Vec<SessionHandle>,
}

impl RevokeStep<'_> {
    pub(in crate::store::redis) fn invocation<'s>(&self, script: &'s Script) -> Invocation<'s> {
        let (mode, arg) = match self.which {
            Revoke::Handle(h) => (REVOKE_HANDLE, h.to_string()),
            Revoke::All => (REVOKE_ALL, String::new()),
            Revoke::AllExcept(keep) => (REVOKE_OTHERS, keep.hash().to_owned()),
        };
        let reason = crate::events::EventKind::Revoked(self.which.reason())
            .reason()
            .unwrap_or_default();
        let mut inv = Invocation::new(script, &[&keys::user_index(self.namespace, self.tag)]);
        inv.arg(keys::session_prefix(self.namespace, self.tag))
            .arg(self.now_ms)
            .arg(self.user_id)
            .arg(mode)
            .arg(arg)
            .arg(self.stream.key)
            .arg(self.stream.max_len)
            .arg(reason)
            .arg(self.from.0)
            .arg(self.from.1)
            .arg(if self.first { "1" } else { "0" });
        inv
    }

    /// `{sessions kept, families kept, revoked handles...}`, a count `""` once that part
    /// is done.
    pub(in crate::store::redis) fn decode(
        reply: Vec<String>,
    ) -> Result<RevokeProgress, StoreError> {
        let [next_session, next_family, handles @ ..] = &reply[..] else {
            return Err(StoreError::Protocol("unexpected revoke script reply"));
        };
        let rank = |s: &str| -> Result<Option<u64>, StoreError> {
            if s.is_empty() {
                return Ok(None);
            }
            s.parse()
                .map(Some)
                .map_err(|_| StoreError::Protocol("revoke script returned a non-number"))
        };
        Ok(RevokeProgress {
            next_session: rank(next_session)?,
            next_family: rank(next_family)?,
            revoked: handles
                .iter()
                .filter_map(|h| SessionHandle::parse(h))
                .collect(),
        })
    }
}

/// `expired.lua`: a session key expired; drop it from its user's index and report it
/// once.
pub(in crate::store::redis) struct Expired<'a> {
    pub(in crate::store::redis) namespace: &'a str,
    pub(in crate::store::redis) tag: &'a str,
    pub(in crate::store::redis) member: &'a str,
    pub(in crate::store::redis) now_ms: i64,
    pub(in crate::store::redis) stream: Stream<'a>,
}

impl Expired<'_> {
    pub(in crate::store::redis) fn invocation<'s>(&self, script: &'s Script) -> Invocation<'s> {
        let mut inv = Invocation::new(script, &[&keys::user_index(self.namespace, self.tag)]);
        inv.arg(self.member)
            .arg(self.now_ms)
            .arg(self.stream.key)
            .arg(self.stream.max_len);
        inv
    }

    /// The expired session's handle and user if this call reported it.
    pub(in crate::store::redis) fn decode(reply: Vec<String>) -> Option<(SessionHandle, String)> {
        match <[String; 2]>::try_from(reply) {
            Ok([handle, user]) => Some((SessionHandle::parse(&handle)?, user)),
            Err(_) => None,
        }
    }
}
