//! Where a store connects: one node, a Redis Cluster, or a master behind Sentinel, each
//! in one shape ([`Topology`]), and the resolved node list ([`Nodes`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::{Client, IntoConnectionInfo as _};

use super::cache::Cache;
use super::sentinel;
use crate::error::ConfigError;

/// Where the builder connects.
#[derive(Clone)]
pub(super) enum Topology {
    /// A node URL, or a `redis+sentinel://` URL.
    Standalone(String),
    Cluster(Vec<String>),
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        auth: Option<MasterAuth>,
        db: i64,
    },
}

/// The master's credentials behind Sentinel.
#[derive(Clone)]
pub(super) struct MasterAuth {
    pub(super) username: Option<String>,
    pub(super) password: String,
}

/// The servers a store was built for and how to reach them: for the clients it makes
/// besides its pool (expiry watcher, stream sink).
pub(crate) struct Nodes {
    pub(crate) urls: Vec<String>,
    /// Set for a store behind Sentinel (`urls` are then the sentinels).
    pub(crate) sentinel: Option<sentinel::Sentinel>,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<redis::TlsCertificates>,
}

impl Nodes {
    /// A client for one node, with the store's TLS certificates when it uses TLS.
    pub(crate) fn client(&self, info: redis::ConnectionInfo) -> redis::RedisResult<Client> {
        #[cfg(feature = "tls")]
        if let (Some(certs), redis::ConnectionAddr::TcpTls { .. }) = (&self.tls, info.addr()) {
            return Client::build_with_tls(info, certs.clone());
        }
        Client::open(info)
    }

    /// A cluster client on the seed nodes, with the store's TLS certificates.
    pub(crate) fn cluster_client(
        &self,
        connect: Duration,
        response: Duration,
    ) -> redis::RedisResult<redis::cluster::ClusterClient> {
        self.cluster_client_with(connect, response, None)
    }

    /// [`Nodes::cluster_client`], speaking RESP3 and handing every node connection's
    /// pushes to `cache` when there is one (the local cache).
    pub(crate) fn cluster_client_with(
        &self,
        connect: Duration,
        response: Duration,
        cache: Option<Arc<Cache>>,
    ) -> redis::RedisResult<redis::cluster::ClusterClient> {
        let mut builder =
            redis::cluster::ClusterClientBuilder::new(self.urls.iter().map(String::as_str))
                .connection_timeout(connect)
                .response_timeout(response);
        if let Some(cache) = cache {
            builder = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(move |push: redis::PushInfo| {
                    cache.on_push(&push);
                    Ok::<(), std::convert::Infallible>(())
                });
        }
        #[cfg(feature = "tls")]
        let builder = match &self.tls {
            Some(certs) => builder.certs(certs.clone()),
            None => builder,
        };
        builder.build()
    }
}

/// The master's connection settings behind Sentinel (TLS when the sentinels use it),
/// at a placeholder address.
pub(super) fn master_template(
    sentinels: &[String],
    auth: Option<&MasterAuth>,
    db: i64,
) -> Result<redis::ConnectionInfo, ConfigError> {
    let scheme = if sentinels.iter().any(|s| s.starts_with("rediss:")) {
        "rediss"
    } else {
        "redis"
    };
    let info = format!("{scheme}://127.0.0.1:6379")
        .into_connection_info()
        .map_err(ConfigError::RedisUrl)?;
    let mut settings = info.redis_settings().clone().set_db(db);
    if let Some(auth) = auth {
        settings = settings.set_password(&auth.password);
        if let Some(user) = &auth.username {
            settings = settings.set_username(user);
        }
    }
    Ok(info.set_redis_settings(settings))
}

/// A Redis URL without its credentials: user and password, and the query (which can
/// carry a password for `redis+unix://`).
pub(super) fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let (rest, query) = rest
        .split_once('?')
        .map_or((rest, ""), |(r, _)| (r, "?<redacted>"));
    let user = if url.contains('@') { "<redacted>@" } else { "" };
    format!("{scheme}://{user}{rest}{query}")
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Standalone(url) => f.debug_tuple("Standalone").field(&redact_url(url)).finish(),
            Self::Cluster(urls) => f
                .debug_tuple("Cluster")
                .field(&urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
                .finish(),
            Self::Sentinel {
                sentinels, master, ..
            } => f
                .debug_struct("Sentinel")
                .field(
                    "sentinels",
                    &sentinels.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
                )
                .field("master", master)
                .finish_non_exhaustive(),
        }
    }
}

impl super::RedisStore {
    /// Where this store connects, for error messages: its node URLs (or sentinels)
    /// with credentials and query parameters redacted.
    pub(super) fn address(&self) -> String {
        match &self.nodes {
            Some(nodes) => {
                let urls: Vec<String> = nodes.urls.iter().map(|u| redact_url(u)).collect();
                match &nodes.sentinel {
                    Some(s) => format!("master {:?} of sentinels {}", s.master, urls.join(",")),
                    None => urls.join(","),
                }
            }
            None => "the application's connection pool".to_owned(),
        }
    }

    /// Whether `other` reaches the same keys: built from the same node URLs for the
    /// same database, or made from the same pool (this store or a clone of it).
    #[cfg(feature = "tokens")]
    pub(crate) fn same_data_as(&self, other: &super::RedisStore) -> bool {
        match (&self.nodes, &other.nodes) {
            (Some(a), Some(b)) => {
                a.urls == b.urls
                    && a.sentinel.as_ref().map(|s| &s.master)
                        == b.sentinel.as_ref().map(|s| &s.master)
                    && self.db() == other.db()
            }
            (None, None) => self.origin == other.origin,
            _ => false,
        }
    }

    /// The database this store's keys live in, when it was built from URLs (0 on a
    /// Cluster).
    pub(super) fn db(&self) -> Option<i64> {
        let nodes = self.nodes.as_ref()?;
        if self.cluster {
            return Some(0);
        }
        if let Some(s) = &nodes.sentinel {
            return Some(s.db());
        }
        let url = nodes.urls.first()?;
        redis::IntoConnectionInfo::into_connection_info(url.as_str())
            .ok()
            .map(|info| info.redis_settings().db())
    }
}
