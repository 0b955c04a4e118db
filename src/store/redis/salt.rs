//! The namespace's user-tag salt: derived from the application's [`UserKey`], or kept
//! in Redis at `<ns>:salt` and never made anew while the namespace holds data made
//! with the old one (guarantee: identity never changes silently).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use tokio::sync::OnceCell;

use super::{RedisStore, keys};
use crate::error::StoreError;
use crate::store::UserKey;
use crate::store::record::USER;

/// Keys one `SCAN` step looks at.
const SCAN_COUNT: usize = 1000;

/// How long a process answers "key lost" without asking Redis again.
const LOST_RETRY: Duration = Duration::from_secs(5);

/// A store's salt, once known; and when it was last found lost.
#[derive(Debug, Default)]
pub(super) struct SaltCell {
    salt: OnceCell<Vec<u8>>,
    lost_at: Mutex<Option<Instant>>,
}

/// The salt cell of a store on `namespace`: filled at once from `key`, if given.
pub(super) fn cell(key: Option<&UserKey>, namespace: &str) -> Arc<SaltCell> {
    Arc::new(SaltCell {
        salt: OnceCell::new_with(key.map(|k| k.salt_for(namespace))),
        lost_at: Mutex::default(),
    })
}

/// `SCAN` pattern matching every slot key of `namespace` (`<ns>:{<tag>}:…`), glob
/// characters of the namespace escaped.
fn slot_pattern(namespace: &str) -> String {
    let mut p = String::with_capacity(namespace.len() + 4);
    for c in namespace.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push_str(":{*}:*");
    p
}

/// What a slot key says about the user-tag key: made with it (a user index or handle
/// map, a token family or its index, an access, refresh or ID token), maybe (a session:
/// made with it only if logged in, i.e. it has `m:u`), or not (anything else).
#[derive(Debug, PartialEq, Eq)]
enum Needs {
    Yes,
    IfLoggedIn,
    No,
}

fn needs_key(key: &str) -> Needs {
    let kind = key.rsplit_once("}:").map_or("", |(_, kind)| kind);
    match kind.split(':').next() {
        Some("u" | "uh" | "t" | "tf" | "a" | "r" | "i") => Needs::Yes,
        Some("s") => Needs::IfLoggedIn,
        _ => Needs::No,
    }
}

fn scan_step(cursor: u64, pattern: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(SCAN_COUNT);
    cmd
}

impl RedisStore {
    /// The namespace's salt: derived from the [`UserKey`], or read once from Redis; made
    /// (`SET NX GET`, so concurrent processes agree) only while no key made with an
    /// earlier one exists ([`namespace_in_use`](Self::namespace_in_use)).
    ///
    /// # Errors
    /// [`StoreError::UserKeyLost`] when the key is missing but the namespace holds
    /// sessions or tokens; Redis errors.
    pub(crate) async fn salt(&self) -> Result<&[u8], StoreError> {
        if let Some(salt) = self.salt.salt.get() {
            return Ok(salt);
        }
        let lost = || StoreError::UserKeyLost {
            namespace: self.namespace.to_string(),
        };
        let recently_lost = |at: &Option<Instant>| at.is_some_and(|t| t.elapsed() < LOST_RETRY);
        if recently_lost(&self.salt.lost_at.lock().unwrap_or_else(|e| e.into_inner())) {
            return Err(lost());
        }
        let salt = self
            .salt
            .salt
            .get_or_try_init(|| async {
                let key = keys::salt(&self.namespace);
                let stored: Option<String> = self.command(redis::cmd("GET").arg(&key)).await?;
                let stored = match stored {
                    Some(s) => s,
                    None if self.namespace_in_use().await? => {
                        *self.salt.lost_at.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(Instant::now());
                        tracing::error!(
                            namespace = %self.namespace,
                            "the user-tag key is missing from Redis while the namespace holds \
                             sessions or tokens; refusing to make a new one"
                        );
                        return Err(lost());
                    }
                    None => {
                        let mut fresh = [0u8; 32];
                        getrandom::fill(&mut fresh)?;
                        let fresh = STANDARD.encode(fresh);
                        let old: Option<String> = self
                            .command(redis::cmd("SET").arg(&key).arg(&fresh).arg("NX").arg("GET"))
                            .await?;
                        old.unwrap_or(fresh)
                    }
                };
                STANDARD
                    .decode(stored)
                    .map_err(|_| StoreError::Protocol("user-tag salt is not base64"))
            })
            .await?;
        Ok(salt)
    }

    /// Whether any of `keys` (found by a `SCAN` step) was made with the user-tag key.
    /// A session counts only if logged in: one `HEXISTS … m:u` per session key, sent
    /// together on the multiplexed connection.
    async fn any_needs_key(&self, keys: &[String]) -> Result<bool, StoreError> {
        let mut sessions = Vec::new();
        for k in keys {
            match needs_key(k) {
                Needs::Yes => return Ok(true),
                Needs::IfLoggedIn => sessions.push(k),
                Needs::No => {}
            }
        }
        let checks = sessions.iter().map(|k| async move {
            let mut cmd = redis::cmd("HEXISTS");
            cmd.arg(*k).arg(USER);
            self.command::<bool>(&cmd).await
        });
        let logged_in = futures_util::future::try_join_all(checks).await?;
        Ok(logged_in.into_iter().any(|b| b))
    }

    /// Whether any key made with the user-tag key exists: `SCAN` of the namespace's slot
    /// keys in bounded steps on the server, or on every master of a cluster; user
    /// indexes, token families and tokens count, sessions if logged in. Stops at the
    /// first one found. (It runs only when the key is missing.)
    async fn namespace_in_use(&self) -> Result<bool, StoreError> {
        let pattern = slot_pattern(&self.namespace);
        if !self.cluster {
            let mut cursor = 0;
            loop {
                let (next, found): (u64, Vec<String>) =
                    self.command(&scan_step(cursor, &pattern)).await?;
                if self.any_needs_key(&found).await? {
                    return Ok(true);
                }
                if next == 0 {
                    return Ok(false);
                }
                cursor = next;
            }
        }
        let mut conn = self.conn().await?;
        let cluster = conn.cluster().ok_or(StoreError::Protocol(
            "cluster store without a cluster connection",
        ))?;
        let reply = cluster
            .route_command(
                redis::cmd("CLUSTER").arg("NODES").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let nodes: String = redis::from_redis_value(reply)
            .map_err(|_| StoreError::Protocol("unexpected CLUSTER NODES reply"))?;
        for (host, port) in super::cluster_masters(&nodes) {
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            let mut cursor = 0;
            loop {
                let reply = cluster
                    .route_command(scan_step(cursor, &pattern), route.clone())
                    .await?;
                let (next, found): (u64, Vec<String>) = redis::from_redis_value(reply)
                    .map_err(|_| StoreError::Protocol("unexpected SCAN reply"))?;
                if self.any_needs_key(&found).await? {
                    return Ok(true);
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::{Needs, needs_key, slot_pattern};

    #[test]
    fn scan_pattern_escapes_glob_characters() {
        assert_eq!(slot_pattern("session"), "session:{*}:*");
        assert_eq!(slot_pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\:{*}:*");
    }

    #[test]
    fn keys_made_with_the_user_key() {
        for k in [
            "ns:{T}:u",
            "ns:{T}:uh",
            "ns:{T}:tf",
            "ns:{T}:t:f",
            "ns:{T}:a:h",
            "ns:{T}:r:h",
        ] {
            assert_eq!(needs_key(k), Needs::Yes, "{k}");
        }
        assert_eq!(needs_key("ns:{T}:s:h"), Needs::IfLoggedIn);
        assert_eq!(needs_key("ns:{T}:other"), Needs::No);
    }
}
