//! Tokens in memory: the rules of `scripts/tokens.lua`, under the store's lock.
//! Expiry times are Unix ms on the caller's clock; expired entries are ignored at once
//! and swept from their slot when it has doubled in size since its last sweep, so a
//! write costs amortised O(1) however long a family's history.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::{Map, MemoryStore};
use crate::id::SessionHandle;
use crate::store::tokens::{
    ACCESS_KEPT, AccessRecord, BoundSession, FamilyRecord, Issue, IssueOutcome, Lookup, Refresh,
    RefreshOutcome, Target,
};

/// Token slots by (namespace, hash tag).
#[derive(Debug, Default)]
pub(super) struct TokenMap {
    slots: HashMap<(Arc<str>, String), Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    access: HashMap<String, Access>,
    /// ID tokens, kept apart so that one is never taken for an access token.
    id: HashMap<String, Access>,
    refresh: HashMap<String, RefreshToken>,
    families: HashMap<String, Family>,
    /// Entries left after the last sweep.
    swept: usize,
    /// Device records of families just ended, for the map to end (`Map::end_devices`).
    devices: Vec<SessionHandle>,
}

/// A live access token: its record names the session it is bound to, if any.
#[derive(Debug)]
struct Access {
    record: AccessRecord,
}

#[derive(Debug)]
struct RefreshToken {
    family: String,
    expires: i64,
    /// When it was consumed, and by which token it was replaced.
    consumed: Option<(i64, String)>,
}

#[derive(Debug)]
struct Family {
    user: String,
    created: i64,
    refreshed: Option<i64>,
    deadline: i64,
    current: String,
    /// The session it is bound to (by handle, which survives id rotation).
    session: Option<SessionHandle>,
    scope: Option<String>,
    /// Its newest access tokens (at most [`ACCESS_KEPT`]), oldest first.
    access: VecDeque<String>,
    /// Its ID token and that token's expiry.
    id: Option<(String, i64)>,
    /// The expiry of its last token.
    expires: i64,
    /// The OAuth client it was issued to, if any.
    client: Option<String>,
    /// Its bound session is its own device record (`Tokens::login`): it ends with it.
    device: bool,
}

impl Slot {
    fn len(&self) -> usize {
        self.access.len() + self.id.len() + self.refresh.len() + self.families.len()
    }

    /// Drops expired entries once the slot has doubled since the last sweep.
    fn sweep(&mut self, now: i64) {
        if self.len() <= 2 * self.swept + 64 {
            return;
        }
        self.access.retain(|_, a| a.record.expires_ms > now);
        self.id.retain(|_, a| a.record.expires_ms > now);
        self.refresh.retain(|_, r| r.expires > now);
        self.families.retain(|_, f| f.expires > now);
        self.swept = self.len();
    }

    /// Ends a family: its live refresh token, kept access tokens and (through
    /// `devices`) device record. Consumed refresh tokens stay until they expire.
    fn kill(&mut self, fid: &str) -> bool {
        let Some(f) = self.families.remove(fid) else {
            return false;
        };
        for h in &f.access {
            self.access.remove(h);
        }
        if let Some((h, _)) = &f.id {
            self.id.remove(h);
        }
        self.refresh.remove(&f.current);
        if let (true, Some(h)) = (f.device, f.session) {
            self.devices.push(h);
        }
        true
    }

    /// Ends the families closest to expiry until fewer than `max` live ones are left in
    /// the slot (0: no limit), like a Redis family index ordered by expiry.
    fn make_room(&mut self, max: usize, now: i64) -> Vec<String> {
        let mut evicted = Vec::new();
        if max == 0 {
            return evicted;
        }
        let mut live: Vec<(i64, String)> = self
            .families
            .iter()
            .filter(|(_, f)| f.expires > now)
            .map(|(id, f)| (f.expires, id.clone()))
            .collect();
        if live.len() < max {
            return evicted;
        }
        live.sort();
        let over = live.len() + 1 - max;
        for (_, id) in live.into_iter().take(over) {
            self.kill(&id);
            evicted.push(id);
        }
        evicted
    }

    fn taken(&self, access: &str, refresh: &str) -> bool {
        self.access.contains_key(access) || self.refresh.contains_key(refresh)
    }

    /// Stores a new pair in family `fid`; returns the expiry times.
    fn pair(
        &mut self,
        fid: &str,
        access: &str,
        refresh: &str,
        now: i64,
        ttl: crate::store::tokens::Ttls,
    ) -> (i64, i64) {
        let Some(f) = self.families.get_mut(fid) else {
            return (0, 0);
        };
        let access_exp = (now + ttl.access).min(f.deadline);
        let refresh_exp = (now + ttl.refresh_idle).min(f.deadline);
        f.current = refresh.to_owned();
        f.expires = f.expires.max(access_exp).max(refresh_exp);
        f.access.push_back(access.to_owned());
        if f.access.len() > ACCESS_KEPT
            && let Some(oldest) = f.access.pop_front()
        {
            self.access.remove(&oldest);
        }
        let record = AccessRecord {
            user: f.user.clone(),
            family: fid.to_owned(),
            issued_ms: now,
            expires_ms: access_exp,
            session: f.session,
            scope: f.scope.clone(),
            bound: None,
        };
        self.access.insert(access.to_owned(), Access { record });
        self.refresh.insert(
            refresh.to_owned(),
            RefreshToken {
                family: fid.to_owned(),
                expires: refresh_exp,
                consumed: None,
            },
        );
        (access_exp, refresh_exp)
    }
}

impl Map {
    /// Ends the device records of the families the slot `tag` just ended, as
    /// `kill_family` does in `token_lib.lua`.
    fn end_devices(&mut self, ns: &Arc<str>, tag: &str) {
        let slot = self.tokens.slots.get_mut(&(ns.clone(), tag.to_owned()));
        let ended = slot
            .map(|s| std::mem::take(&mut s.devices))
            .unwrap_or_default();
        if ended.is_empty() {
            return;
        }
        let doomed: Vec<_> = self
            .slot(ns, tag, Instant::now())
            .filter(|(_, e)| e.handle().is_some_and(|h| ended.contains(&h)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.entries.remove(&k);
        }
    }

    /// Whether the session a family is bound to (by handle; `None`: unbound) lives in
    /// the slot, under whatever id it has now (ids rotate; handles stay).
    fn session_live(&self, ns: &Arc<str>, tag: &str, bound: Option<SessionHandle>) -> bool {
        bound.is_none_or(|h| self.bound_session(ns, tag, h).is_some())
    }

    /// The live session with handle `h` in the slot.
    fn bound_session(&self, ns: &Arc<str>, tag: &str, h: SessionHandle) -> Option<BoundSession> {
        self.slot(ns, tag, Instant::now())
            .find(|(_, e)| e.handle() == Some(h))
            .and_then(|((_, key), e)| BoundSession::new(key.clone(), &e.fields))
    }

    /// Revokes every token family of `user` in a slot (log out everywhere).
    pub(super) fn kill_user_tokens(&mut self, ns: &Arc<str>, tag: &str, user: &str) -> Vec<String> {
        let Some(slot) = self.tokens.slots.get_mut(&(ns.clone(), tag.to_owned())) else {
            return Vec::new();
        };
        let doomed: Vec<String> = slot
            .families
            .iter()
            .filter(|(_, f)| f.user == user)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &doomed {
            slot.kill(id);
        }
        self.end_devices(ns, tag);
        doomed
    }
}

impl MemoryStore {
    fn slot_key(&self, tag: &str) -> (Arc<str>, String) {
        (self.namespace.clone(), tag.to_owned())
    }

    pub(crate) fn token_issue(&self, req: &Issue<'_>) -> IssueOutcome {
        let mut map = self.lock();
        if !map.session_live(&self.namespace, req.tag, req.session.map(|s| s.1)) {
            return IssueOutcome::SessionGone;
        }
        let slot = map.tokens.slots.entry(self.slot_key(req.tag)).or_default();
        slot.sweep(req.now_ms);
        if slot.families.contains_key(req.family)
            || slot.taken(req.access, req.refresh)
            || req.id_token.is_some_and(|h| slot.id.contains_key(h))
        {
            return IssueOutcome::Collision;
        }
        let evicted = slot.make_room(req.max_families, req.now_ms);
        slot.families.insert(
            req.family.to_owned(),
            Family {
                user: req.user.to_owned(),
                created: req.now_ms,
                refreshed: None,
                deadline: req.now_ms + req.ttl.family,
                current: String::new(),
                session: req.session.map(|s| s.1),
                scope: req.scope.map(str::to_owned),
                access: VecDeque::new(),
                id: None,
                expires: 0,
                client: req.client.map(str::to_owned),
                device: req.device && req.session.is_some(),
            },
        );
        let deadline = req.now_ms + req.ttl.family;
        let id_exp = req.id_token.map(|h| {
            let expires_ms = (req.now_ms + req.ttl.id).min(deadline);
            let record = AccessRecord {
                user: req.user.to_owned(),
                family: req.family.to_owned(),
                issued_ms: req.now_ms,
                expires_ms,
                session: req.session.map(|s| s.1),
                scope: req.scope.map(str::to_owned),
                bound: None,
            };
            slot.id.insert(h.to_owned(), Access { record });
            if let Some(f) = slot.families.get_mut(req.family) {
                f.id = Some((h.to_owned(), expires_ms));
                f.expires = expires_ms;
            }
            expires_ms
        });
        let (access_exp, refresh_exp) =
            slot.pair(req.family, req.access, req.refresh, req.now_ms, req.ttl);
        map.end_devices(&self.namespace, req.tag);
        IssueOutcome::Issued {
            access_exp,
            refresh_exp,
            id_exp,
            evicted,
        }
    }

    pub(crate) fn token_auth(
        &self,
        tag: &str,
        kind: Lookup,
        hash: &str,
        now_ms: i64,
    ) -> Option<AccessRecord> {
        let mut map = self.lock();
        let mut record = {
            let slot = map.tokens.slots.get(&self.slot_key(tag))?;
            let tokens = match kind {
                Lookup::Access => &slot.access,
                Lookup::Id => &slot.id,
            };
            let a = tokens.get(hash).filter(|a| a.record.expires_ms > now_ms)?;
            a.record.clone()
        };
        let Some(h) = record.session else {
            return Some(record);
        };
        record.bound = map.bound_session(&self.namespace, tag, h);
        if record.bound.is_some() {
            return Some(record);
        }
        if let Some(slot) = map.tokens.slots.get_mut(&self.slot_key(tag)) {
            slot.kill(&record.family);
        }
        map.end_devices(&self.namespace, tag);
        None
    }

    pub(crate) fn token_refresh(&self, req: &Refresh<'_>) -> RefreshOutcome {
        let mut map = self.lock();
        let outcome = self.refresh_in(&mut map, req);
        map.end_devices(&self.namespace, req.tag);
        outcome
    }

    fn refresh_in(&self, map: &mut Map, req: &Refresh<'_>) -> RefreshOutcome {
        let key = self.slot_key(req.tag);
        let now = req.now_ms;
        let (fid, bound) = {
            let Some(slot) = map.tokens.slots.get_mut(&key) else {
                return RefreshOutcome::Invalid;
            };
            let Some(r) = slot.refresh.get(req.presented).filter(|r| r.expires > now) else {
                return RefreshOutcome::Invalid;
            };
            let fid = r.family.clone();
            let Some(f) = slot.families.get(&fid) else {
                slot.refresh.remove(req.presented);
                return RefreshOutcome::Invalid;
            };
            if f.client.as_deref() != req.client {
                return RefreshOutcome::Invalid;
            }
            if let Some((at, next)) = &r.consumed {
                if req.ttl.grace > 0 && *next == f.current && now - at <= req.ttl.grace {
                    return RefreshOutcome::Grace {
                        family: fid,
                        user: f.user.clone(),
                    };
                }
                let reused = RefreshOutcome::Reused {
                    family: fid.clone(),
                    user: f.user.clone(),
                    session: f.session,
                };
                slot.kill(&fid);
                return reused;
            }
            if f.deadline <= now {
                slot.kill(&fid);
                return RefreshOutcome::Invalid;
            }
            (fid, f.session)
        };
        if !map.session_live(&self.namespace, req.tag, bound) {
            if let Some(slot) = map.tokens.slots.get_mut(&key) {
                slot.kill(&fid);
            }
            return RefreshOutcome::Invalid;
        }
        let Some(slot) = map.tokens.slots.get_mut(&key) else {
            return RefreshOutcome::Invalid;
        };
        if slot.taken(req.access, req.refresh) {
            return RefreshOutcome::Collision;
        }
        if let Some(r) = slot.refresh.get_mut(req.presented) {
            r.consumed = Some((now, req.refresh.to_owned()));
        }
        if let Some(f) = slot.families.get_mut(&fid) {
            f.refreshed = Some(now);
        }
        slot.sweep(now);
        let (_, refresh_exp) = slot.pair(&fid, req.access, req.refresh, now, req.ttl);
        match slot.access.get(req.access) {
            Some(a) => RefreshOutcome::Rotated {
                access: a.record.clone(),
                refresh_exp,
            },
            None => RefreshOutcome::Invalid,
        }
    }

    pub(crate) fn token_list(&self, tag: &str, user: &str, now_ms: i64) -> Vec<FamilyRecord> {
        let map = self.lock();
        let Some(slot) = map.tokens.slots.get(&self.slot_key(tag)) else {
            return Vec::new();
        };
        slot.families
            .iter()
            .filter(|(_, f)| f.user == user)
            .filter(|(_, f)| f.expires > now_ms)
            .map(|(id, f)| FamilyRecord {
                family: id.clone(),
                created_ms: f.created,
                refreshed_ms: f.refreshed,
                expires_ms: f.expires,
                session: f.session,
                scope: f.scope.clone(),
                id_expires_ms: f.id.as_ref().map(|(_, e)| *e).filter(|e| *e > now_ms),
                client: f.client.clone(),
            })
            .collect()
    }

    /// `None` when a client asks to revoke a token of a family issued to another one
    /// (nothing changes), as `tokens.lua` answers.
    pub(crate) fn token_revoke(
        &self,
        tag: &str,
        target: Target<'_>,
        now_ms: i64,
    ) -> Option<Vec<String>> {
        let mut map = self.lock();
        let revoked = self.revoke_in(&mut map, tag, target, now_ms);
        map.end_devices(&self.namespace, tag);
        revoked
    }

    fn revoke_in(&self, map: &mut Map, tag: &str, to: Target<'_>, now: i64) -> Option<Vec<String>> {
        if let Target::User(user) = to {
            return Some(map.kill_user_tokens(&self.namespace, tag, user));
        }
        let Some(slot) = map.tokens.slots.get_mut(&self.slot_key(tag)) else {
            return Some(Vec::new());
        };
        slot.sweep(now);
        // A family whose record is gone has no live tokens: its leftovers go unchecked.
        let wrong_client = |slot: &Slot, fid: &str, client: Option<&str>| {
            client.is_some_and(|c| {
                slot.families
                    .get(fid)
                    .is_some_and(|f| f.client.as_deref() != Some(c))
            })
        };
        let fid = match to {
            Target::Access(h, client) => {
                let Some(fid) = slot.access.get(h).map(|a| a.record.family.clone()) else {
                    return Some(Vec::new());
                };
                if wrong_client(slot, &fid, client) {
                    return None;
                }
                slot.access.remove(h);
                if let Some(f) = slot.families.get_mut(&fid) {
                    f.access.retain(|kept| kept != h);
                }
                return Some(vec![fid]);
            }
            Target::Refresh(h, client) => {
                let Some(fid) = slot.refresh.get(h).map(|r| r.family.clone()) else {
                    return Some(Vec::new());
                };
                if wrong_client(slot, &fid, client) {
                    return None;
                }
                match slot.refresh.remove(h) {
                    Some(r) if r.expires > now => fid,
                    _ => return Some(Vec::new()),
                }
            }
            Target::Family { id, user } => {
                if slot.families.get(id).is_none_or(|f| f.user != user) {
                    return Some(Vec::new());
                }
                id.to_owned()
            }
            Target::User(_) => return Some(Vec::new()),
        };
        Some(if slot.kill(&fid) {
            vec![fid]
        } else {
            Vec::new()
        })
    }
}
