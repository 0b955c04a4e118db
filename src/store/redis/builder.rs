//! Building a [`RedisStore`]: where it connects (a `Topology`: one node, a Cluster, or
//! a master behind Sentinel), with what TLS settings, and the pool's bounds.

use std::sync::Arc;
use std::time::Duration;

use redis::{AsyncConnectionConfig, IntoConnectionInfo as _};
use tokio::sync::Semaphore;

use super::cache::Cache;
#[cfg(feature = "local-cache")]
use super::cache::LocalCache;
use super::pool::{ClusterManager, Manager, SentinelManager, Shared};
use super::topology::{MasterAuth, Nodes, Topology, master_template};
use super::{InFlight, Pool, RedisStore, sentinel};
use crate::error::ConfigError;
#[cfg(feature = "tls")]
use crate::tls::{self, TlsConfig};

/// Builds a [`RedisStore`] with its own pool. Every timeout is explicit.
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisStoreBuilder {
    topology: Topology,
    max_connections: usize,
    max_in_flight: usize,
    wait_timeout: Duration,
    connect_timeout: Duration,
    response_timeout: Duration,
    timeout: Duration,
    #[cfg(feature = "tls")]
    tls: Option<TlsConfig>,
    #[cfg(feature = "local-cache")]
    local_cache: Option<LocalCache>,
    sentinel_quorum: Option<usize>,
    durability: Option<(usize, Duration)>,
}

impl RedisStoreBuilder {
    /// Keeps sessions read from Redis in this process, so a repeat read costs no round
    /// trip and a read-modify-write only its write. Redis keeps the copies coherent:
    /// every pooled connection speaks RESP3 with `CLIENT TRACKING ON NOLOOP`, and a
    /// change made by any other client (another instance's write, logout, revocation,
    /// eviction, expiry) is pushed to this process, which drops its copy. An entry is
    /// never served longer than [`LocalCache::with_max_staleness`] after it was read
    /// (default 1 s), nor after its session's expiry; a lost connection empties the
    /// cache. Off by default.
    ///
    /// Standalone Redis, Sentinel, Redis Cluster and Valkey. On a Cluster each read
    /// that fills the cache pipelines `CLIENT TRACKING` to the node it reads from
    /// (whichever node holds the session after a failover or resharding), and an
    /// update drops the session's copy instead of applying to it, so the next read
    /// goes to Redis. Where the server refuses `CLIENT TRACKING` (an ACL without it, a
    /// proxy), the store reads from Redis as without a cache and logs one line saying
    /// so.
    ///
    /// Feature `local-cache`.
    #[cfg(feature = "local-cache")]
    pub fn with_local_cache(mut self, cache: LocalCache) -> Self {
        self.local_cache = Some(cache);
        self
    }

    /// Revocations wait until `replicas` replicas have them (`WAIT`, on the connection
    /// that ran them), at most `timeout`: logout, revoke, revoke others, log out
    /// everywhere, token revocation and a family ended by refresh-token reuse. Fewer in
    /// time is [`StoreError::NotReplicated`](crate::StoreError::NotReplicated) (the
    /// revocation holds on the master; a failover could undo it). Off by default: Redis replication is asynchronous, so a
    /// master that dies right after a logout may come back, through its replica,
    /// without it.
    ///
    /// Costs one more command (`WAIT`) in the same round trip, and the time the
    /// replicas take to acknowledge; reads and other writes are unchanged. `timeout`
    /// must be shorter than the response timeout. The ACL rules add `+wait`.
    pub fn with_wait_for_replicas(mut self, replicas: usize, timeout: Duration) -> Self {
        self.durability = Some((replicas, timeout));
        self
    }

    /// Behind Sentinel: how many sentinels must name the same master before the store
    /// connects to it. Default: 2 where two or more sentinels are given, else 1. Every
    /// sentinel is asked; a sentinel that names another master is a refusal (the
    /// connection fails and is retried), never outvoted, so one wrong or hostile
    /// sentinel cannot send the store's sessions to its node. Ignored without Sentinel.
    pub fn with_sentinel_quorum(mut self, quorum: usize) -> Self {
        self.sentinel_quorum = Some(quorum);
        self
    }

    /// The master's credentials, for a store built with
    /// [`RedisStore::sentinel_builder`] (ignored otherwise), and its database.
    pub fn with_master_auth(mut self, username: Option<&str>, password: &str, db: i64) -> Self {
        if let Topology::Sentinel {
            auth,
            db: master_db,
            ..
        } = &mut self.topology
        {
            *auth = Some(MasterAuth {
                username: username.map(str::to_owned),
                password: password.to_owned(),
            });
            *master_db = db;
        }
        self
    }

    /// TLS settings for `rediss://` URLs: a private CA, a client certificate. Without
    /// it, `rediss://` verifies the server against the system trust store. With a
    /// plain `redis://` URL, [`build`](Self::build) refuses them
    /// ([`ConfigError::Tls`]) instead of silently talking plaintext. Feature `tls` (on
    /// by default).
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Maximum number of connections in the pool. Default: 1. Each is multiplexed:
    /// concurrent operations share a connection and are pipelined, so Redis reads many
    /// commands per `read` and answers them in one `write`. Operations go to the
    /// connections in turn, so more connections means fewer commands per system call on
    /// both sides: on the load benchmark one connection serves reads at 8–9 µs of Redis
    /// CPU each where 16 connections cost 15 µs, and the server gains ~25 % throughput.
    /// Raise it only when one connection's I/O task saturates a core (large values,
    /// many cores).
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Most store operations in flight at once; beyond it, operations wait up to
    /// [`with_wait_timeout`](Self::with_wait_timeout) and then fail with
    /// [`StoreError::Pool`](crate::StoreError::Pool) (the layer answers 503). Default:
    /// 1024.
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// How long an operation waits for capacity (an in-flight slot, or a connection
    /// being opened) before the store reports unavailable. Default: 1 s.
    pub fn with_wait_timeout(mut self, d: Duration) -> Self {
        self.wait_timeout = d;
        self
    }

    /// How long opening a connection may take. Default: 1 s.
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long one Redis reply may take. Default: 1 s.
    pub fn with_response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d;
        self
    }

    /// Upper bound for one whole store operation (checkout + command). Default: 3 s.
    pub fn with_timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Builds the store (namespace `session`). Connects lazily: no I/O happens here.
    ///
    /// # Errors
    /// [`ConfigError::RedisUrl`] if the URL does not parse, [`ConfigError::Pool`] if the
    /// pool cannot be built.
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        let sentinel = match &self.topology {
            Topology::Standalone(url) => sentinel::Sentinel::parse_url(url).transpose()?,
            Topology::Sentinel {
                sentinels,
                master,
                auth,
                db,
            } => Some(sentinel::Sentinel::new(
                sentinels.clone(),
                master.clone(),
                master_template(sentinels, auth.as_ref(), *db)?,
            )?),
            Topology::Cluster(_) => None,
        };
        if let Some((replicas, timeout)) = self.durability
            && (replicas == 0 || timeout.is_zero() || timeout >= self.response_timeout)
        {
            return Err(ConfigError::Durability(
                "wait_for_replicas needs at least one replica and a timeout above 0 and \
                 below the response timeout",
            ));
        }
        let mut sentinel = sentinel;
        if let (Some(s), Some(q)) = (&mut sentinel, self.sentinel_quorum) {
            s.set_quorum(q)?;
        }
        let urls = match (&self.topology, &sentinel) {
            (_, Some(s)) => s.sentinels.clone(),
            (Topology::Cluster(nodes), None) => nodes.clone(),
            (Topology::Standalone(url), None) => vec![url.clone()],
            // Always parsed into `sentinel` above.
            (Topology::Sentinel { sentinels, .. }, None) => sentinels.clone(),
        };
        let mut nodes = Nodes {
            #[cfg(feature = "tls")]
            tls: match &self.tls {
                Some(tls) => Some(tls.certificates()?),
                None => None,
            },
            urls,
            sentinel,
        };
        #[cfg(feature = "tls")]
        {
            let uses_tls = nodes.urls.iter().any(|u| u.starts_with("rediss:"))
                || nodes.sentinel.as_ref().is_some_and(|s| s.tls());
            if self.tls.is_some() && !uses_tls {
                // Ignored, the connection would be plaintext while the app believes it
                // verifies a CA or presents a client certificate.
                return Err(ConfigError::Tls(
                    "a CA or client certificate needs a rediss:// (or rediss+sentinel://) URL"
                        .to_owned(),
                ));
            }
            if uses_tls {
                tls::install_crypto_provider();
            }
        }
        if nodes.urls.iter().any(|u| u.contains("#insecure")) {
            tracing::warn!(
                "a Redis URL ends in #insecure: the server's TLS certificate is not verified"
            );
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout));
        // The local cache; its connections speak RESP3 and hand it their pushes.
        #[cfg(feature = "local-cache")]
        let store_cache = match self.local_cache {
            Some(limits) => {
                limits.validate()?;
                Some(Arc::new(Cache::new(limits)))
            }
            None => None,
        };
        #[cfg(not(feature = "local-cache"))]
        let store_cache: Option<Arc<Cache>> = None;
        let mut data_config = config.clone();
        let cluster = matches!(self.topology, Topology::Cluster(_));
        let cache = match &store_cache {
            // A cluster client takes its push handler itself (below).
            Some(cache) if cluster => Some(cache.clone()),
            Some(cache) => {
                let pushes = cache.clone();
                data_config = data_config.set_push_sender(move |push: redis::PushInfo| {
                    pushes.on_push(&push);
                    Ok::<(), std::convert::Infallible>(())
                });
                if let Some(s) = &mut nodes.sentinel {
                    s.use_resp3();
                }
                Some(cache.clone())
            }
            None => None,
        };
        let nodes = Arc::new(nodes);
        let pool = if nodes.sentinel.is_some() {
            let manager = SentinelManager {
                nodes: nodes.clone(),
                config,
                master_config: data_config,
                cache,
            };
            Pool::OwnSentinel(Arc::new(
                Shared::new(self.pool(deadpool::managed::Pool::builder(manager))?)
                    .with_cache(store_cache.clone()),
            ))
        } else if cluster {
            let client = nodes
                .cluster_client_with(self.connect_timeout, self.response_timeout, cache)
                .map_err(ConfigError::RedisUrl)?;
            Pool::OwnCluster(Arc::new(
                Shared::new(
                    self.pool(deadpool::managed::Pool::builder(ClusterManager { client }))?,
                )
                .with_cache(store_cache.clone()),
            ))
        } else {
            let url = nodes.urls.first().map_or("", String::as_str);
            let mut info = url.into_connection_info().map_err(ConfigError::RedisUrl)?;
            if cache.is_some() {
                info = super::node::resp3(info);
            }
            let client = nodes.client(info).map_err(ConfigError::RedisUrl)?;
            let manager = Manager {
                client,
                config: data_config,
                cache,
            };
            Pool::Own(Arc::new(
                Shared::new(self.pool(deadpool::managed::Pool::builder(manager))?)
                    .with_cache(store_cache.clone()),
            ))
        };
        let mut store = RedisStore::with_pool(pool, self.timeout);
        store.cluster = matches!(self.topology, Topology::Cluster(_));
        store.sentinel = nodes.sentinel.is_some();
        store.nodes = Some(nodes);
        store.cache = store_cache;
        store.durability = self.durability;
        store.in_flight = Some(InFlight {
            permits: Arc::new(Semaphore::new(self.max_in_flight)),
            max: self.max_in_flight,
            wait: self.wait_timeout,
        });
        Ok(store)
    }

    fn pool<M: deadpool::managed::Manager>(
        &self,
        builder: deadpool::managed::PoolBuilder<M>,
    ) -> Result<deadpool::managed::Pool<M>, ConfigError> {
        Ok(builder
            .max_size(self.max_connections)
            .wait_timeout(Some(self.wait_timeout))
            .create_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(self.response_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()?)
    }
}

impl RedisStore {
    /// A store on `url` with default pool settings.
    ///
    /// # Errors
    /// As [`RedisStoreBuilder::build`].
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        Self::builder(url).build()
    }

    /// A builder for a store on `url` (e.g. `redis://127.0.0.1:6379/0`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        Self::builder_for(Topology::Standalone(url.into()))
    }

    /// A builder for a store on the master that Sentinel monitors under `master`,
    /// given some sentinels (`redis://host:26379`, with the sentinel's credentials if
    /// it needs any; `rediss://` for TLS to the sentinels and the master). Give the
    /// master's credentials with [`with_master_auth`](RedisStoreBuilder::with_master_auth). The
    /// URL form `redis+sentinel://[[user]:password@]host:port[,host:port…]/<master>[/<db>]`
    /// works with [`RedisStore::builder`] and [`RedisStore::from_url`] too.
    ///
    /// Every new connection asks the sentinels where the master is and checks that it
    /// is one; after a failover, operations fail (503) until the sentinels name the
    /// new master, then reconnect to it by themselves.
    pub fn sentinel_builder<I, S>(sentinels: I, master: &str) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder_for(Topology::Sentinel {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            master: master.to_owned(),
            auth: None,
            db: 0,
        })
    }

    /// A builder for a store on a Redis Cluster, given some of its nodes.
    pub fn cluster_builder<I, S>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder_for(Topology::Cluster(
            nodes.into_iter().map(Into::into).collect(),
        ))
    }

    fn builder_for(topology: Topology) -> RedisStoreBuilder {
        RedisStoreBuilder {
            topology,
            max_connections: 1,
            max_in_flight: 1024,
            wait_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(3),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "local-cache")]
            local_cache: None,
            sentinel_quorum: None,
            durability: None,
        }
    }
}
