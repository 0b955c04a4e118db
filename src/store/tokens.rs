//! What [`Tokens`](crate::tokens::Tokens) asks of a store, and the two stores that answer:
//! [`RedisStore`] (one script per operation, `scripts/tokens.lua`) and [`MemoryStore`]
//! (the same rules under one lock). The conformance suite runs the same cases on both.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use crate::error::StoreError;
use crate::id::{SessionHandle, SessionKey};
use crate::store::record;
use crate::store::{MemoryStore, RedisStore};

/// Live access tokens one family keeps: issuing one more (by a refresh) ends the
/// oldest, so ending a family touches a bounded number of tokens. `token_lib.lua`
/// repeats it; a unit test keeps the two equal.
pub(crate) const ACCESS_KEPT: usize = 8;

/// A new token family with its first pair.
#[derive(Debug)]
pub(crate) struct Issue<'a> {
    pub(crate) user: &'a str,
    pub(crate) tag: &'a str,
    pub(crate) family: &'a str,
    pub(crate) access: &'a str,
    pub(crate) refresh: &'a str,
    pub(crate) now_ms: i64,
    pub(crate) ttl: Ttls,
    /// A session the family lives and dies with: its key hash and handle.
    pub(crate) session: Option<(&'a str, SessionHandle)>,
    pub(crate) scope: Option<&'a str>,
    /// Most families of the user (0: no limit); at it, the one closest to expiry ends.
    pub(crate) max_families: usize,
    /// The hash of an ID token issued with the pair, if any.
    pub(crate) id_token: Option<&'a str>,
    /// The OAuth client the family is issued to: only it may refresh or revoke it.
    pub(crate) client: Option<&'a str>,
    /// The bound session is the family's own device record (`Tokens::login`): it ends
    /// when the family does.
    pub(crate) device: bool,
}

/// Which kind of token a lookup reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    Access,
    /// An OpenID Connect ID token (never accepted as an access token).
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    Id,
}

/// The live session a token is bound to, as the lookup found it: enough to apply the
/// threshold refresh rule without reading the session again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BoundSession {
    pub(crate) key: SessionKey,
    pub(crate) expires_ms: i64,
    pub(crate) idle_ms: Option<i64>,
    pub(crate) deadline_ms: Option<i64>,
}

impl BoundSession {
    /// From a session's stored fields (packed or not); `None` without an expiry.
    pub(crate) fn new(key: SessionKey, fields: &HashMap<String, String>) -> Option<Self> {
        let int = |name: &str| record::meta(fields, name).and_then(|v| v.parse().ok());
        Some(Self {
            expires_ms: int(record::EXPIRES)?,
            idle_ms: int(record::IDLE),
            deadline_ms: int(record::DEADLINE),
            key,
        })
    }
}

/// Lifetimes in ms.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ttls {
    pub(crate) access: i64,
    pub(crate) refresh_idle: i64,
    pub(crate) family: i64,
    pub(crate) grace: i64,
    /// ID tokens.
    pub(crate) id: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IssueOutcome {
    /// Expiry times (Unix ms) of the access and the refresh token.
    Issued {
        access_exp: i64,
        refresh_exp: i64,
        /// The ID token's expiry, when one was issued.
        id_exp: Option<i64>,
        /// Families ended to stay within the limit.
        evicted: Vec<String>,
    },
    /// The bound session no longer exists.
    SessionGone,
    Collision,
}

/// A live access token, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AccessRecord {
    pub(crate) user: String,
    pub(crate) family: String,
    pub(crate) issued_ms: i64,
    pub(crate) expires_ms: i64,
    pub(crate) session: Option<SessionHandle>,
    pub(crate) scope: Option<String>,
    /// The bound session, when the lookup checked it (a bound token's lookup does).
    pub(crate) bound: Option<BoundSession>,
}

/// A refresh of `presented` into the new pair `access`/`refresh`.
#[derive(Debug)]
pub(crate) struct Refresh<'a> {
    pub(crate) tag: &'a str,
    pub(crate) presented: &'a str,
    pub(crate) access: &'a str,
    pub(crate) refresh: &'a str,
    pub(crate) now_ms: i64,
    pub(crate) ttl: Ttls,
    /// The client asking (`None`: a first-party refresh); a family issued to another
    /// client, or to one when none asks, is refused untouched.
    pub(crate) client: Option<&'a str>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RefreshOutcome {
    Rotated {
        access: AccessRecord,
        refresh_exp: i64,
    },
    /// Unknown, expired, revoked, or its family or bound session ended.
    Invalid,
    /// The token just rotated away, presented again within the grace window (its
    /// family and user named).
    Grace {
        family: String,
        user: String,
    },
    /// A consumed token: its family (named here) was revoked.
    Reused {
        family: String,
        user: String,
        session: Option<SessionHandle>,
    },
    Collision,
}

/// A live token family, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FamilyRecord {
    pub(crate) family: String,
    pub(crate) created_ms: i64,
    pub(crate) refreshed_ms: Option<i64>,
    pub(crate) expires_ms: i64,
    pub(crate) session: Option<SessionHandle>,
    pub(crate) scope: Option<String>,
    /// When its ID token expires, if it has a live one.
    pub(crate) id_expires_ms: Option<i64>,
    /// The OAuth client it was issued to, if any.
    pub(crate) client: Option<String>,
}

/// Which token to revoke.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target<'a> {
    /// An access token; with a client, only if its family was issued to that client.
    Access(&'a str, Option<&'a str>),
    /// A refresh token (live or consumed): revokes its whole family; with a client, only
    /// if the family was issued to that client.
    Refresh(&'a str, Option<&'a str>),
    Family {
        id: &'a str,
        user: &'a str,
    },
    User(&'a str),
}

/// Turns a store into a [`Backend`]; seals [`TokenStore`](super::TokenStore).
pub trait Sealed {
    /// The store, as a token backend.
    fn into_backend(self) -> Backend;
}

impl Sealed for RedisStore {
    fn into_backend(self) -> Backend {
        Backend::Redis(self)
    }
}

impl Sealed for MemoryStore {
    fn into_backend(self) -> Backend {
        Backend::Memory(self)
    }
}

/// The stores that keep tokens.
#[derive(Clone, Debug)]
pub enum Backend {
    /// Redis, standalone or Cluster.
    Redis(RedisStore),
    /// In process.
    Memory(MemoryStore),
}

impl Backend {
    /// Whether `store` (a layer's) reaches the same data as this backend: the same
    /// memory map, or the same Redis nodes and database (or the same user pool).
    pub(crate) fn same_data_as(&self, store: &dyn crate::store::DynStore) -> bool {
        let any = store.as_any();
        match self {
            Self::Redis(s) => any
                .downcast_ref::<RedisStore>()
                .is_some_and(|other| s.same_data_as(other)),
            Self::Memory(s) => any
                .downcast_ref::<MemoryStore>()
                .is_some_and(|other| s.same_data_as(other)),
        }
    }

    pub(crate) fn namespace(&self) -> &str {
        use crate::store::SessionStore as _;
        match self {
            Self::Redis(s) => s.namespace(),
            Self::Memory(s) => s.namespace(),
        }
    }

    pub(crate) async fn user_tag(&self, user: &str) -> Result<String, StoreError> {
        use crate::store::SessionStore as _;
        match self {
            Self::Redis(s) => s.user_tag(user).await,
            Self::Memory(s) => s.user_tag(user).await,
        }
    }

    /// The key that checks token secrets (see [`check_key`]).
    pub(crate) async fn check_key(&self) -> Result<[u8; 32], StoreError> {
        Ok(match self {
            Self::Redis(s) => check_key(s.salt().await?, self.namespace()),
            Self::Memory(s) => check_key(&s.salt(), self.namespace()),
        })
    }

    /// The span of one token operation (see [`op_span`](crate::store::op_span)).
    fn system(&self) -> &'static str {
        match self {
            Self::Redis(_) => "redis",
            Self::Memory(_) => "memory",
        }
    }

    fn span(&self, operation: &'static str) -> tracing::Span {
        crate::store::op_span(self.system(), self.namespace(), operation)
    }

    /// Runs one token operation in its span, measured (feature `metrics`).
    fn measured<T>(
        &self,
        operation: &'static str,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> impl Future<Output = Result<T, StoreError>> {
        crate::metrics::store_op(self.system(), self.namespace(), operation, op)
            .instrument(self.span(operation))
    }

    pub(crate) async fn issue(&self, req: &Issue<'_>) -> Result<IssueOutcome, StoreError> {
        self.measured("token_issue", async {
            match self {
                Self::Redis(s) => s.token_issue(req).await,
                Self::Memory(s) => Ok(s.token_issue(req)),
            }
        })
        .await
    }

    pub(crate) async fn authenticate(
        &self,
        tag: &str,
        kind: Lookup,
        hash: &str,
        now_ms: i64,
    ) -> Result<Option<AccessRecord>, StoreError> {
        let operation = match kind {
            Lookup::Access => "token_authenticate",
            Lookup::Id => "token_verify_id",
        };
        self.measured(operation, async {
            match self {
                Self::Redis(s) => s.token_auth(tag, kind, hash, now_ms).await,
                Self::Memory(s) => Ok(s.token_auth(tag, kind, hash, now_ms)),
            }
        })
        .await
    }

    pub(crate) async fn refresh(&self, req: &Refresh<'_>) -> Result<RefreshOutcome, StoreError> {
        self.measured("token_refresh", async {
            match self {
                Self::Redis(s) => s.token_refresh(req).await,
                Self::Memory(s) => Ok(s.token_refresh(req)),
            }
        })
        .await
    }

    /// The live token families of `user` in slot `tag`.
    pub(crate) async fn list(
        &self,
        tag: &str,
        user: &str,
        now_ms: i64,
    ) -> Result<Vec<FamilyRecord>, StoreError> {
        self.measured("token_list", async {
            match self {
                Self::Redis(s) => s.token_list(tag, user, now_ms).await,
                Self::Memory(s) => Ok(s.token_list(tag, user, now_ms)),
            }
        })
        .await
    }

    /// Returns the ids of the revoked families (for an access token: its family, though
    /// only that token ended), or `None` when the target names a client and the token's
    /// family was issued to another (nothing was revoked).
    pub(crate) async fn revoke(
        &self,
        tag: &str,
        target: Target<'_>,
        now_ms: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        self.measured("token_revoke", async {
            match self {
                Self::Redis(s) => s.token_revoke(tag, target, now_ms).await,
                Self::Memory(s) => Ok(s.token_revoke(tag, target, now_ms)),
            }
        })
        .await
    }
}

/// The key that checks token secrets: `SHA-256(salt ‖ namespace ‖ label)`. A hash rather
/// than an HMAC under the salt, so no user tag (`HMAC(salt, user id)`) can reveal it.
pub(crate) fn check_key(salt: &[u8], namespace: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(namespace.as_bytes());
    h.update(b"\0tower-redis-session token check v1");
    h.finalize().into()
}
