//! Redis behind Sentinel: the store asks the sentinels where the master is each time it
//! opens a connection, and checks that the node it reached is a master. A connection
//! that fails (the master died) or answers `READONLY` (it was demoted) is dropped, so
//! the next operation asks again and finds the new master after a failover.
//!
//! URL form: `redis+sentinel://[[user]:password@]host:port[,host:port…]/<master>[/<db>]`
//! (`rediss+sentinel://` for TLS to the sentinels and the master). The credentials are
//! the master's; sentinels that need their own are given to
//! [`RedisStore::sentinel_builder`](crate::RedisStore::sentinel_builder) as URLs.

use std::fmt;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ErrorKind, RedisError};
use redis::{IntoConnectionInfo as _, RedisResult, Value};

use super::Nodes;
use crate::error::ConfigError;

/// Where the sentinels are and which master they watch.
#[derive(Clone)]
pub(crate) struct Sentinel {
    /// Sentinel URLs (`redis://host:port`, with the sentinel's credentials if any).
    pub(crate) sentinels: Vec<String>,
    /// The master name the sentinels monitor.
    pub(crate) master: String,
    /// The master's connection settings (credentials, database, TLS) at a placeholder
    /// address.
    template: ConnectionInfo,
    /// How many sentinels must name the same master (and none another) before the
    /// store connects to it: 2 where two or more are given, else 1.
    quorum: usize,
}

impl fmt::Debug for Sentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sentinel")
            .field(
                "sentinels",
                &self
                    .sentinels
                    .iter()
                    .map(|u| super::redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

impl Sentinel {
    /// Sentinels at `sentinels` watching `master`, whose connection settings are those
    /// of `master_url` (its host and port are ignored).
    fn from_master_url(
        sentinels: Vec<String>,
        master: String,
        master_url: &str,
    ) -> Result<Self, ConfigError> {
        let template = master_url
            .into_connection_info()
            .map_err(ConfigError::RedisUrl)?;
        Self::new(sentinels, master, template)
    }

    /// Sentinels at `sentinels` watching `master`, reached with the settings of
    /// `template` (its address is ignored).
    pub(crate) fn new(
        sentinels: Vec<String>,
        master: String,
        template: ConnectionInfo,
    ) -> Result<Self, ConfigError> {
        if sentinels.is_empty() {
            return Err(ConfigError::Sentinel("no sentinel address given"));
        }
        if master.is_empty() {
            return Err(ConfigError::Sentinel("no master name given"));
        }
        for s in &sentinels {
            s.as_str()
                .into_connection_info()
                .map_err(ConfigError::RedisUrl)?;
        }
        let quorum = sentinels.len().min(2);
        Ok(Self {
            sentinels,
            master,
            template,
            quorum,
        })
    }

    /// Sets how many sentinels must agree on the master.
    pub(crate) fn set_quorum(&mut self, quorum: usize) -> Result<(), ConfigError> {
        if quorum == 0 || quorum > self.sentinels.len() {
            return Err(ConfigError::Sentinel(
                "the sentinel quorum must be between 1 and the number of sentinels",
            ));
        }
        self.quorum = quorum;
        Ok(())
    }

    /// The master the sentinels' `answers` agree on: at least `quorum` answered, and
    /// all of those that answered name the same address. A sentinel that names another
    /// master (out of date, or lying) is a refusal, never a vote lost: connecting to the
    /// wrong node would hand it every session.
    fn agreed(&self, answers: Vec<RedisResult<(String, u16)>>) -> RedisResult<ConnectionInfo> {
        let mut named: Option<(String, u16)> = None;
        let mut votes = 0;
        let mut last = None;
        for answer in answers {
            match answer {
                Ok(addr) => match &named {
                    Some(n) if *n != addr => {
                        return Err(RedisError::from((
                            ErrorKind::InvalidClientConfig,
                            "the sentinels disagree on the master",
                            self.master.clone(),
                        )));
                    }
                    _ => {
                        named = Some(addr);
                        votes += 1;
                    }
                },
                Err(e) => last = Some(e),
            }
        }
        match named {
            Some((host, port)) if votes >= self.quorum => Ok(self.master_at(&host, port)),
            Some(_) => Err(last.unwrap_or_else(|| {
                RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "too few sentinels answered to agree on the master",
                    self.master.clone(),
                ))
            })),
            None => Err(last.unwrap_or_else(|| self.unknown_master())),
        }
    }

    /// Parses `redis+sentinel://…` (or `rediss+sentinel://…`); `None` for other URLs.
    pub(crate) fn parse_url(url: &str) -> Option<Result<Self, ConfigError>> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else {
            (true, url.strip_prefix("rediss+sentinel://")?)
        };
        Some(Self::from_parts(tls, rest))
    }

    fn from_parts(tls: bool, rest: &str) -> Result<Self, ConfigError> {
        let scheme = if tls { "rediss" } else { "redis" };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (Some(user), hosts),
            None => (None, authority),
        };
        let mut path = path.split('/');
        let master = path.next().unwrap_or("").to_owned();
        let db = path.next().filter(|d| !d.is_empty()).unwrap_or("0");
        if path.next().is_some_and(|p| !p.is_empty()) {
            return Err(ConfigError::Sentinel(
                "expected /<master>[/<db>] after the sentinel addresses",
            ));
        }
        let sentinels: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{h}"))
            .collect();
        if sentinels.is_empty() {
            return Err(ConfigError::Sentinel("no sentinel address given"));
        }
        let first = hosts.split(',').next().unwrap_or("");
        let master_url = match userinfo {
            Some(user) => format!("{scheme}://{user}@{first}/{db}"),
            None => format!("{scheme}://{first}/{db}"),
        };
        Self::from_master_url(sentinels, master, &master_url)
    }

    /// Masters are reached over RESP3 (for the local cache's invalidation pushes).
    pub(crate) fn use_resp3(&mut self) {
        self.template = super::node::resp3(self.template.clone());
    }

    /// The master's database.
    pub(crate) fn db(&self) -> i64 {
        self.template.redis_settings().db()
    }

    /// Whether connections use TLS.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn tls(&self) -> bool {
        matches!(self.template.addr(), ConnectionAddr::TcpTls { .. })
            || self.sentinels.iter().any(|s| s.starts_with("rediss:"))
    }

    /// The master's connection settings at `host:port`.
    fn master_at(&self, host: &str, port: u16) -> ConnectionInfo {
        super::node::at(&self.template, host, port)
    }

    /// Asks every sentinel (at once) where the master is; the answer is theirs only if
    /// enough of them agree ([`agreed`](Self::agreed)).
    pub(crate) async fn master_info(
        &self,
        nodes: &Nodes,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<ConnectionInfo> {
        let asks = self.sentinels.iter().map(|url| async move {
            let client = nodes.client(url.as_str().into_connection_info()?)?;
            let mut conn = client
                .get_multiplexed_async_connection_with_config(config)
                .await?;
            let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&self.master)
                .query_async(&mut conn)
                .await?;
            addr.ok_or_else(|| self.unknown_master())
        });
        self.agreed(futures_util::future::join_all(asks).await)
    }

    /// As [`master_info`](Self::master_info), blocking (for the stream sink's thread).
    pub(crate) fn master_info_blocking(
        &self,
        nodes: &Nodes,
        timeout: std::time::Duration,
    ) -> RedisResult<ConnectionInfo> {
        let answers = self
            .sentinels
            .iter()
            .map(|url| {
                let client = nodes.client(url.as_str().into_connection_info()?)?;
                let mut conn = client.get_connection_with_timeout(timeout)?;
                conn.set_read_timeout(Some(timeout))?;
                let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&self.master)
                    .query(&mut conn)?;
                addr.ok_or_else(|| self.unknown_master())
            })
            .collect();
        self.agreed(answers)
    }

    fn unknown_master(&self) -> RedisError {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "no sentinel knows the master",
            self.master.clone(),
        ))
    }

    /// A connection to the current master: asks the sentinels, connects, and checks
    /// that the node is a master (a sentinel may not have seen a failover yet).
    /// A connection to the master: the sentinels are asked with `config`, the master
    /// is reached with `master` (which may carry the local cache's push handler).
    pub(crate) async fn connect(
        &self,
        nodes: &Nodes,
        config: &AsyncConnectionConfig,
        master: &AsyncConnectionConfig,
    ) -> RedisResult<MultiplexedConnection> {
        let info = self.master_info(nodes, config).await?;
        let client = nodes.client(info)?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(master)
            .await?;
        let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
        match role.first() {
            Some(Value::BulkString(r)) if r == b"master" => Ok(conn),
            _ => Err(RedisError::from((
                ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
                "the node the sentinels named is not a master (yet)",
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_form() {
        let s =
            Sentinel::parse_url("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26380/mymaster/2")
                .unwrap()
                .unwrap();
        assert_eq!(
            s.sentinels,
            ["redis://10.0.0.1:26379", "redis://10.0.0.2:26380"]
        );
        assert_eq!(s.master, "mymaster");
        assert_eq!(s.template.redis_settings().db(), 2);
        assert_eq!(s.template.redis_settings().password(), Some("pw"));
        assert!(!s.tls());
        let debug = format!("{s:?}");
        assert!(!debug.contains("pw"), "{debug}");

        let s = Sentinel::parse_url("rediss+sentinel://app:pw@s1:26379/cache")
            .unwrap()
            .unwrap();
        assert!(s.tls());
        assert_eq!(s.template.redis_settings().username(), Some("app"));
        assert_eq!(s.template.redis_settings().db(), 0);

        assert!(Sentinel::parse_url("redis://host:6379").is_none());
        for bad in [
            "redis+sentinel://s1:26379",
            "redis+sentinel://s1:26379/",
            "redis+sentinel:///m",
            "redis+sentinel://s1:26379/m/0/x",
            "redis+sentinel://s1:notaport/m",
        ] {
            assert!(
                matches!(Sentinel::parse_url(bad), Some(Err(_))),
                "{bad} was accepted"
            );
        }
    }
}
