//! Tokens in memory: the rules of `scripts/tokens.lua`, under the store's lock.
//! Expiry times are Unix ms on the caller's clock; expired entries are ignored at once
//! and swept from their slot on its next write.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::{Map, MemoryStore};
use crate::SessionKey;
use crate::tokens::store::{
    AccessRecord, FamilyRecord, Issue, IssueOutcome, Refresh, RefreshOutcome, Target,
};

/// Token slots by (namespace, hash tag).
#[derive(Debug, Default)]
pub(super) struct TokenMap {
    slots: HashMap<(Arc<str>, String), Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    access: HashMap<String, Access>,
    refresh: HashMap<String, RefreshToken>,
    families: HashMap<String, Family>,
}

#[derive(Debug)]
struct Access {
    record: AccessRecord,
    session_key: Option<String>,
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
    session_key: Option<String>,
    session: Option<crate::SessionHandle>,
    scope: Option<String>,
    /// Its tokens: (is access, hash, expiry).
    members: Vec<(bool, String, i64)>,
}

impl Slot {
    fn sweep(&mut self, now: i64) {
        self.access.retain(|_, a| a.record.expires_ms > now);
        self.refresh.retain(|_, r| r.expires > now);
        for f in self.families.values_mut() {
            f.members.retain(|m| m.2 > now);
        }
        self.families.retain(|_, f| !f.members.is_empty());
    }

    fn kill(&mut self, fid: &str) -> bool {
        let Some(f) = self.families.remove(fid) else {
            return false;
        };
        for (is_access, h, _) in f.members {
            if is_access {
                self.access.remove(&h);
            } else {
                self.refresh.remove(&h);
            }
        }
        true
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
        ttl: crate::tokens::store::Ttls,
    ) -> (i64, i64) {
        let Some(f) = self.families.get_mut(fid) else {
            return (0, 0);
        };
        let access_exp = (now + ttl.access).min(f.deadline);
        let refresh_exp = (now + ttl.refresh_idle).min(f.deadline);
        f.current = refresh.to_owned();
        f.members.push((true, access.to_owned(), access_exp));
        f.members.push((false, refresh.to_owned(), refresh_exp));
        let record = AccessRecord {
            user: f.user.clone(),
            family: fid.to_owned(),
            issued_ms: now,
            expires_ms: access_exp,
            session: f.session,
            scope: f.scope.clone(),
        };
        let session_key = f.session_key.clone();
        self.access.insert(
            access.to_owned(),
            Access {
                record,
                session_key,
            },
        );
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
    fn session_live(&mut self, ns: &Arc<str>, tag: &str, hash: Option<&str>) -> bool {
        hash.is_none_or(|h| {
            let key = (
                ns.clone(),
                SessionKey::from_parts(tag.to_owned(), h.to_owned()),
            );
            self.live(&key, Instant::now()).is_some()
        })
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
        doomed
    }
}

impl MemoryStore {
    fn slot_key(&self, tag: &str) -> (Arc<str>, String) {
        (self.namespace.clone(), tag.to_owned())
    }

    pub(crate) fn token_issue(&self, req: &Issue<'_>) -> IssueOutcome {
        let mut map = self.lock();
        if !map.session_live(&self.namespace, req.tag, req.session.map(|s| s.0)) {
            return IssueOutcome::SessionGone;
        }
        let slot = map.tokens.slots.entry(self.slot_key(req.tag)).or_default();
        slot.sweep(req.now_ms);
        if slot.families.contains_key(req.family) || slot.taken(req.access, req.refresh) {
            return IssueOutcome::Collision;
        }
        slot.families.insert(
            req.family.to_owned(),
            Family {
                user: req.user.to_owned(),
                created: req.now_ms,
                refreshed: None,
                deadline: req.now_ms + req.ttl.family,
                current: String::new(),
                session_key: req.session.map(|s| s.0.to_owned()),
                session: req.session.map(|s| s.1),
                scope: req.scope.map(str::to_owned),
                members: Vec::new(),
            },
        );
        let (access_exp, refresh_exp) =
            slot.pair(req.family, req.access, req.refresh, req.now_ms, req.ttl);
        IssueOutcome::Issued {
            access_exp,
            refresh_exp,
        }
    }

    pub(crate) fn token_auth(&self, tag: &str, access: &str, now_ms: i64) -> Option<AccessRecord> {
        let mut map = self.lock();
        let (record, session_key) = {
            let slot = map.tokens.slots.get(&self.slot_key(tag))?;
            let a = slot
                .access
                .get(access)
                .filter(|a| a.record.expires_ms > now_ms)?;
            (a.record.clone(), a.session_key.clone())
        };
        if map.session_live(&self.namespace, tag, session_key.as_deref()) {
            return Some(record);
        }
        if let Some(slot) = map.tokens.slots.get_mut(&self.slot_key(tag)) {
            slot.kill(&record.family);
        }
        None
    }

    pub(crate) fn token_refresh(&self, req: &Refresh<'_>) -> RefreshOutcome {
        let mut map = self.lock();
        let key = self.slot_key(req.tag);
        let now = req.now_ms;
        let (fid, session_key) = {
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
            if let Some((at, next)) = &r.consumed {
                if req.ttl.grace > 0 && *next == f.current && now - at <= req.ttl.grace {
                    return RefreshOutcome::Grace;
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
            (fid, f.session_key.clone())
        };
        if !map.session_live(&self.namespace, req.tag, session_key.as_deref()) {
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
            .filter_map(|(id, f)| {
                let expires = f.members.iter().map(|m| m.2).max()?;
                (expires > now_ms).then(|| FamilyRecord {
                    family: id.clone(),
                    created_ms: f.created,
                    refreshed_ms: f.refreshed,
                    expires_ms: expires,
                    session: f.session,
                    scope: f.scope.clone(),
                })
            })
            .collect()
    }

    pub(crate) fn token_revoke(&self, tag: &str, target: Target<'_>, now_ms: i64) -> Vec<String> {
        let mut map = self.lock();
        if let Target::User(user) = target {
            return map.kill_user_tokens(&self.namespace, tag, user);
        }
        let Some(slot) = map.tokens.slots.get_mut(&self.slot_key(tag)) else {
            return Vec::new();
        };
        slot.sweep(now_ms);
        let fid = match target {
            Target::Access(h) => {
                let Some(a) = slot.access.remove(h) else {
                    return Vec::new();
                };
                if let Some(f) = slot.families.get_mut(&a.record.family) {
                    f.members.retain(|m| m.1 != h);
                }
                return vec![a.record.family];
            }
            Target::Refresh(h) => match slot.refresh.remove(h) {
                Some(r) => r.family,
                None => return Vec::new(),
            },
            Target::Family { id, user } => {
                if slot.families.get(id).is_none_or(|f| f.user != user) {
                    return Vec::new();
                }
                id.to_owned()
            }
            Target::User(_) => return Vec::new(),
        };
        if slot.kill(&fid) {
            vec![fid]
        } else {
            Vec::new()
        }
    }
}
