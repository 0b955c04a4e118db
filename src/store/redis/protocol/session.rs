//! The calls that write one session: `update.lua` (a handler's changes) and
//! `write.lua` (create, rotate, log in).

use super::*;

/// `update.lua`: an existing session's changed fields and TTL.
///
/// The hot path, so the script gets its inputs precomputed: the data bytes the patch
/// sets, the data fields it touches (each once, for the size of what they replace),
/// and the packed metadata it changes as three values.
pub(in crate::store::redis) struct Update<'a> {
    pub(in crate::store::redis) namespace: &'a str,
    pub(in crate::store::redis) key: &'a SessionKey,
    pub(in crate::store::redis) patch: &'a Patch,
    pub(in crate::store::redis) clock: Clock,
    pub(in crate::store::redis) stream: Stream<'a>,
    /// Read the key once written, so Redis tracks it again for this connection (the
    /// local cache: a write under `NOLOOP` ends this connection's tracking of it).
    pub(in crate::store::redis) track: bool,
}

impl Update<'_> {
    /// The invocation, or an error for a patch an update never carries: one that
    /// changes the user, handle or creation time (a login or a new session does that).
    pub(in crate::store::redis) fn invocation<'s>(
        &self,
        script: &'s Script,
    ) -> Result<Invocation<'s>, StoreError> {
        let patch = record::split_user_agent(self.patch);
        let patch = &*patch;
        let is_data = |f: &str| f.starts_with(record::DATA_PREFIX);
        let fixed = [record::USER, record::HANDLE, record::CREATED];
        if patch
            .set
            .iter()
            .map(|(f, _)| f)
            .chain(&patch.delete)
            .any(|f| fixed.contains(&f.as_str()))
        {
            return Err(StoreError::Protocol(
                "an update cannot change the user, handle or creation time",
            ));
        }
        // What the three packed TTL inputs become.
        let change = |field: &str| {
            if let Some((_, v)) = patch.set.iter().rev().find(|(f, _)| f == field) {
                v.as_str()
            } else if patch.delete.iter().any(|f| f == field) {
                META_REMOVED
            } else {
                META_UNCHANGED
            }
        };
        let touched: Vec<&str> = if patch.clear_data {
            Vec::new() // what they replace is all dropped
        } else {
            patch
                .set
                .iter()
                .map(|(f, _)| f)
                .chain(&patch.delete)
                .map(String::as_str)
                .filter(|f| is_data(f))
                .collect()
        };
        let added: usize = patch
            .set
            .iter()
            .filter_map(|(f, v)| Some(rules::entry_size(f.strip_prefix(record::DATA_PREFIX)?, v)))
            .sum();
        let packed = [record::IDLE, record::DEADLINE, record::PERSISTENT];
        let sets: Vec<&(String, String)> = patch
            .set
            .iter()
            .filter(|(f, _)| !packed.contains(&f.as_str()))
            .collect();
        let mut inv = Invocation::new(
            script,
            &[
                &keys::session(self.namespace, self.key),
                &keys::user_index(self.namespace, self.key.tag()),
            ],
        );
        inv.arg(self.clock.now_ms)
            .arg(self.clock.default_idle_ms)
            .arg(flag(patch.clear_data))
            .arg(self.key.hash())
            .arg(self.stream.key)
            .arg(self.stream.max_len)
            .arg(patch.events)
            .arg(patch.max_size)
            .arg(added)
            .arg(change(record::IDLE))
            .arg(change(record::DEADLINE))
            .arg(change(record::PERSISTENT))
            .arg(flag(self.track))
            .arg(touched.len())
            .arg(sets.len());
        for f in touched {
            inv.arg(f);
        }
        for (f, v) in sets {
            inv.arg(f).arg(v);
        }
        for f in patch
            .delete
            .iter()
            .filter(|f| !packed.contains(&f.as_str()))
        {
            inv.arg(f);
        }
        Ok(inv)
    }

    /// `{ttl, version}` when written (the TTL > 0, and the record's version after the
    /// write), `{0}` if the session is gone, or `{-size}` for the merged data's size.
    pub(in crate::store::redis) fn decode(
        reply: &[i64],
    ) -> Result<(WriteOutcome, Option<u64>), StoreError> {
        Ok(match reply {
            [0] => (WriteOutcome::Gone, None),
            [ms, version] if *ms > 0 => (
                WriteOutcome::Written {
                    ttl: Duration::from_millis(ms.unsigned_abs()),
                    evicted: Vec::new(),
                },
                Some(version.unsigned_abs()),
            ),
            [size] if *size < 0 => (
                WriteOutcome::TooLarge {
                    size: usize::try_from(size.unsigned_abs()).unwrap_or(usize::MAX),
                },
                None,
            ),
            _ => return Err(StoreError::Protocol("unexpected update reply")),
        })
    }
}

/// How `write.lua` writes.
#[derive(Clone, Copy, Debug)]
pub(in crate::store::redis) enum WriteKind<'a> {
    /// Only if absent.
    Create,
    /// Rename `from` to the key, then update.
    Rotate { from: &'a SessionKey },
    /// Create, index in the user's slot, enforce the limit.
    Login { limit: Option<SessionLimit> },
}

/// `write.lua`: a session created, moved to a new id, or logged in.
pub(in crate::store::redis) struct Write<'a> {
    pub(in crate::store::redis) namespace: &'a str,
    pub(in crate::store::redis) key: &'a SessionKey,
    pub(in crate::store::redis) kind: WriteKind<'a>,
    pub(in crate::store::redis) patch: &'a Patch,
    pub(in crate::store::redis) clock: Clock,
    pub(in crate::store::redis) stream: Stream<'a>,
}

impl Write<'_> {
    pub(in crate::store::redis) fn invocation<'s>(&self, script: &'s Script) -> Invocation<'s> {
        let patch = record::split_user_agent(self.patch);
        let patch = &*patch;
        let (mode, limit, from) = match self.kind {
            WriteKind::Create => (MODE_CREATE, None, None),
            WriteKind::Rotate { from } => (MODE_ROTATE, None, Some(from)),
            WriteKind::Login { limit } => (MODE_LOGIN, limit, None),
        };
        let session = keys::session(self.namespace, self.key);
        let index = keys::user_index(self.namespace, self.key.tag());
        let mut inv = match from {
            Some(from) => Invocation::new(
                script,
                &[&session, &index, &keys::session(self.namespace, from)],
            ),
            None => Invocation::new(script, &[&session, &index]),
        };
        let policy = match limit.map(|l| l.policy) {
            Some(LimitPolicy::EvictOldest) => POLICY_EVICT,
            _ => POLICY_REJECT,
        };
        inv.arg(mode)
            .arg(self.clock.now_ms)
            .arg(self.clock.default_idle_ms)
            .arg(flag(patch.clear_data))
            .arg(limit.map_or(0, |l| l.max))
            .arg(policy)
            .arg(self.key.hash())
            .arg(from.map_or("", |f| f.hash()))
            .arg(patch.set.len())
            .arg(self.stream.key)
            .arg(self.stream.max_len)
            .arg(patch.events)
            .arg(patch.max_size);
        patch_args(&mut inv, patch);
        inv
    }

    /// `{ttl, evicted handles...}` when written; otherwise a reply code (with the size
    /// for [`REPLY_TOO_LARGE`]).
    pub(in crate::store::redis) fn decode(reply: Vec<String>) -> Result<WriteOutcome, StoreError> {
        let bad = || StoreError::Protocol("unexpected write script reply");
        let (code, rest) = reply.split_first().ok_or_else(bad)?;
        Ok(match code.as_str() {
            REPLY_GONE => WriteOutcome::Gone,
            REPLY_EXISTS => WriteOutcome::Collision,
            REPLY_REJECTED => WriteOutcome::Rejected,
            REPLY_TOO_LARGE => WriteOutcome::TooLarge {
                size: rest.first().and_then(|s| s.parse().ok()).ok_or_else(bad)?,
            },
            ttl => match ttl.parse::<u64>() {
                Ok(ms) if ms > 0 => WriteOutcome::Written {
                    ttl: Duration::from_millis(ms),
                    evicted: rest
                        .iter()
                        .filter_map(|h| SessionHandle::parse(h))
                        .collect(),
                },
                _ => return Err(bad()),
            },
        })
    }
}
