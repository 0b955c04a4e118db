//! Tokens on Redis: every operation is one run of `scripts/tokens.lua` in the user's
//! slot (key layout: `scripts/token_lib.lua`).

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::Script;

use super::invocation::Invocation;

use super::protocol::{
    self, TOKEN_AUTH, TOKEN_COLLISION, TOKEN_GONE, TOKEN_GRACE, TOKEN_INVALID, TOKEN_ISSUE,
    TOKEN_KIND_ACCESS, TOKEN_KIND_ID, TOKEN_LIST, TOKEN_OK, TOKEN_REFRESH, TOKEN_REUSE,
    TOKEN_REVOKE_ACCESS, TOKEN_REVOKE_FAMILY, TOKEN_REVOKE_REFRESH, TOKEN_REVOKE_USER,
    TOKEN_WRONG_CLIENT,
};
use super::scripts::{EVENTS_LIB, TOKEN_LIB as LIB};
use super::{RedisStore, keys};
use crate::error::StoreError;
use crate::id::{SessionHandle, SessionKey};
use crate::store::record;
use crate::store::tokens::{
    AccessRecord, BoundSession, FamilyRecord, Issue, IssueOutcome, Lookup, Refresh, RefreshOutcome,
    Target, Ttls,
};

static TOKENS: LazyLock<Script> =
    LazyLock::new(|| protocol::script(&[EVENTS_LIB, LIB, include_str!("scripts/tokens.lua")]));

/// The next step's first rank from a paged script reply ('' when done).
fn next_rank(s: &str) -> Result<Option<u64>, StoreError> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| StoreError::Protocol("token script returned a non-number"))
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn int(s: &str) -> Result<i64, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Protocol("token script returned a non-number"))
}

impl RedisStore {
    /// An invocation of the token script: `op` in slot `tag` at `now_ms`.
    fn tokens(&self, tag: &str, op: &str, now_ms: i64) -> Invocation<'static> {
        let mut inv = Invocation::new(&TOKENS, &[&keys::family_index(&self.namespace, tag)]);
        inv.arg(op)
            .arg(keys::slot_prefix(&self.namespace, tag))
            .arg(now_ms);
        inv
    }

    pub(crate) async fn token_issue(&self, req: &Issue<'_>) -> Result<IssueOutcome, StoreError> {
        let mut inv = self.tokens(req.tag, TOKEN_ISSUE, req.now_ms);
        let (sk, sh) = req
            .session
            .map_or((String::new(), String::new()), |(k, h)| {
                (k.to_owned(), h.to_string())
            });
        inv.arg(req.user)
            .arg(req.family)
            .arg(req.access)
            .arg(req.refresh)
            .arg(req.ttl.access)
            .arg(req.ttl.refresh_idle)
            .arg(req.ttl.family)
            .arg(sk)
            .arg(sh)
            .arg(req.scope.unwrap_or(""))
            .arg(req.max_families)
            .arg(req.id_token.unwrap_or(""))
            .arg(req.ttl.id)
            .arg(req.client.unwrap_or(""))
            .arg(if req.device { "1" } else { "" });
        let reply: Vec<String> = self.invoke(&inv).await?;
        match reply.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            [TOKEN_OK, a, r, i, ref evicted @ ..] => Ok(IssueOutcome::Issued {
                access_exp: int(a)?,
                refresh_exp: int(r)?,
                id_exp: if i.is_empty() { None } else { Some(int(i)?) },
                evicted: evicted.iter().map(|&f| f.to_owned()).collect(),
            }),
            [TOKEN_GONE] => Ok(IssueOutcome::SessionGone),
            [TOKEN_COLLISION] => Ok(IssueOutcome::Collision),
            _ => Err(StoreError::Protocol("unexpected token script reply")),
        }
    }

    pub(crate) async fn token_auth(
        &self,
        tag: &str,
        kind: Lookup,
        access: &str,
        now_ms: i64,
    ) -> Result<Option<AccessRecord>, StoreError> {
        // One script: the token, its family's record (a token whose family is gone
        // is refused: revocation could not reach it) and a bound session, checked
        // together.
        let kind = match kind {
            Lookup::Access => TOKEN_KIND_ACCESS,
            Lookup::Id => TOKEN_KIND_ID,
        };
        let mut inv = self.tokens(tag, TOKEN_AUTH, now_ms);
        inv.arg(access).arg(kind);
        let reply: Vec<String> = self.invoke(&inv).await?;
        match &reply[..] {
            [] => Ok(None),
            [
                user,
                family,
                issued,
                expires,
                handle,
                scope,
                member,
                times,
                limits,
            ] => {
                let bound = (!member.is_empty()).then(|| {
                    let key = SessionKey::from_parts(tag.to_owned(), member.clone());
                    let fields = HashMap::from([
                        (record::TIMES_FIELD.to_owned(), times.clone()),
                        (record::LIMITS_FIELD.to_owned(), limits.clone()),
                    ]);
                    BoundSession::new(key, &fields)
                });
                Ok(Some(AccessRecord {
                    user: user.clone(),
                    family: family.clone(),
                    issued_ms: int(issued)?,
                    expires_ms: int(expires)?,
                    session: SessionHandle::parse(handle),
                    scope: opt(scope),
                    bound: bound.flatten(),
                }))
            }
            _ => Err(StoreError::Protocol("unexpected token script reply")),
        }
    }

    pub(crate) async fn token_refresh(
        &self,
        req: &Refresh<'_>,
    ) -> Result<RefreshOutcome, StoreError> {
        let mut inv = self.tokens(req.tag, TOKEN_REFRESH, req.now_ms);
        let Ttls {
            access,
            refresh_idle,
            grace,
            ..
        } = req.ttl;
        inv.arg(req.presented)
            .arg(req.access)
            .arg(req.refresh)
            .arg(access)
            .arg(refresh_idle)
            .arg(grace)
            .arg(req.client.unwrap_or(""));
        // Reuse ends the family: with wait_for_replicas, that waits for the replicas.
        let slot = keys::family_index(&self.namespace, req.tag);
        let reply: Vec<String> = self
            .invoke_durable(&inv, &slot, |r: &Vec<String>| {
                r.first().is_some_and(|k| k == TOKEN_REUSE)
            })
            .await?;
        let reply: Vec<&str> = reply.iter().map(String::as_str).collect();
        Ok(match reply[..] {
            [
                TOKEN_OK,
                user,
                family,
                access_exp,
                refresh_exp,
                handle,
                scope,
            ] => RefreshOutcome::Rotated {
                access: AccessRecord {
                    user: user.to_owned(),
                    family: family.to_owned(),
                    issued_ms: req.now_ms,
                    expires_ms: int(access_exp)?,
                    session: SessionHandle::parse(handle),
                    scope: opt(scope),
                    bound: None,
                },
                refresh_exp: int(refresh_exp)?,
            },
            [TOKEN_INVALID] => RefreshOutcome::Invalid,
            [TOKEN_GRACE, family, user] => RefreshOutcome::Grace {
                family: family.to_owned(),
                user: user.to_owned(),
            },
            [TOKEN_REUSE, family, user, handle] => RefreshOutcome::Reused {
                family: family.to_owned(),
                user: user.to_owned(),
                session: SessionHandle::parse(handle),
            },
            [TOKEN_COLLISION] => RefreshOutcome::Collision,
            _ => return Err(StoreError::Protocol("unexpected token script reply")),
        })
    }

    pub(crate) async fn token_list(
        &self,
        tag: &str,
        user: &str,
        now_ms: i64,
    ) -> Result<Vec<FamilyRecord>, StoreError> {
        let flat = self.token_pages(tag, TOKEN_LIST, user, now_ms).await?;
        flat.chunks_exact(8)
            .map(|r| {
                Ok(FamilyRecord {
                    family: r[0].clone(),
                    created_ms: int(&r[1])?,
                    refreshed_ms: if r[2].is_empty() {
                        None
                    } else {
                        Some(int(&r[2])?)
                    },
                    expires_ms: int(&r[3])?,
                    session: SessionHandle::parse(&r[4]),
                    scope: opt(&r[5]),
                    id_expires_ms: if r[6].is_empty() {
                        None
                    } else {
                        Some(int(&r[6])?)
                    },
                    client: opt(&r[7]),
                })
            })
            .collect()
    }

    /// Runs a paged token op (`list`, `revoke_user`) over the slot's family index, one
    /// bounded script call per step, and joins the steps' replies (each step answers
    /// what the next step passes back, '' when done, then its items: for `list` the
    /// next page's first rank, for `revoke_user` how many families the step kept).
    async fn token_pages(
        &self,
        tag: &str,
        op: &str,
        user: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut items = Vec::new();
        let mut rank = Some(0);
        while let Some(from) = rank {
            let mut inv = self.tokens(tag, op, now_ms);
            inv.arg(user).arg(from);
            let reply: Vec<String> = if op == TOKEN_REVOKE_USER {
                let slot = keys::family_index(&self.namespace, tag);
                self.invoke_durable(&inv, &slot, |_: &Vec<String>| true)
                    .await?
            } else {
                self.invoke(&inv).await?
            };
            let Some((next, step)) = reply.split_first() else {
                return Err(StoreError::Protocol("unexpected token script reply"));
            };
            rank = next_rank(next)?;
            items.extend_from_slice(step);
        }
        Ok(items)
    }

    pub(crate) async fn token_revoke(
        &self,
        tag: &str,
        target: Target<'_>,
        now_ms: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let inv = match target {
            Target::Access(h, client) => {
                let mut inv = self.tokens(tag, TOKEN_REVOKE_ACCESS, now_ms);
                inv.arg(h).arg(client.unwrap_or(""));
                inv
            }
            Target::Refresh(h, client) => {
                let mut inv = self.tokens(tag, TOKEN_REVOKE_REFRESH, now_ms);
                inv.arg(h).arg(client.unwrap_or(""));
                inv
            }
            Target::Family { id, user } => {
                let mut inv = self.tokens(tag, TOKEN_REVOKE_FAMILY, now_ms);
                inv.arg(id).arg(user);
                inv
            }
            Target::User(user) => {
                return Ok(Some(
                    self.token_pages(tag, TOKEN_REVOKE_USER, user, now_ms)
                        .await?,
                ));
            }
        };
        let slot = keys::family_index(&self.namespace, tag);
        let reply: Vec<String> = self
            .invoke_durable(&inv, &slot, |r: &Vec<String>| {
                r.first().is_none_or(|k| k != TOKEN_WRONG_CLIENT)
            })
            .await?;
        Ok((reply.first().map(String::as_str) != Some(TOKEN_WRONG_CLIENT)).then_some(reply))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::tokens::ACCESS_KEPT;

    #[test]
    fn script_keeps_as_many_access_tokens_as_the_memory_store() {
        let line = format!("local ACCESS_KEPT = {ACCESS_KEPT}\n");
        assert!(
            super::LIB.contains(&line),
            "token_lib.lua must say {line:?}"
        );
    }
}
