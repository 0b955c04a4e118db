//! What the tests need to see inside a store, for each store.

use std::future::Future;

use redis::AsyncCommands;
use tower_redis_session::{MemoryStore, RedisStore, SessionKey, SessionStore};

pub trait TestStore: SessionStore {
    /// Number of live sessions in this store's namespace.
    fn count(&self) -> impl Future<Output = usize> + Send;
    /// Remaining TTL of a session in ms, `None` if it does not exist.
    fn pttl(&self, key: &SessionKey) -> impl Future<Output = Option<i64>> + Send;
    /// The same storage seen under another namespace.
    fn in_namespace(&self, ns: &str) -> Self;
    /// Starts reporting expired sessions to `layer`'s event hook.
    fn watch_expired(
        &self,
        layer: &tower_redis_session::SessionLayer,
    ) -> tower_redis_session::ExpiryWatcher;
}

impl TestStore for MemoryStore {
    async fn count(&self) -> usize {
        self.live_sessions()
    }

    async fn pttl(&self, key: &SessionKey) -> Option<i64> {
        self.ttl(key).map(|d| d.as_millis() as i64)
    }

    fn in_namespace(&self, ns: &str) -> Self {
        self.clone().with_namespace(ns).unwrap()
    }

    fn watch_expired(
        &self,
        layer: &tower_redis_session::SessionLayer,
    ) -> tower_redis_session::ExpiryWatcher {
        MemoryStore::watch_expired(self, layer).unwrap()
    }
}

pub async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

impl TestStore for RedisStore {
    async fn count(&self) -> usize {
        let pattern = format!(
            "{}:{{*}}:s:*",
            tower_redis_session::SessionStore::namespace(self)
        );
        let mut n = 0;
        for url in test_urls(self) {
            let mut conn = redis_conn(&url).await;
            let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.unwrap();
            if matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"slave") {
                continue; // replicas repeat their master's keys
            }
            let keys: Vec<String> = conn.keys(&pattern).await.unwrap();
            n += keys.len();
        }
        n
    }

    async fn pttl(&self, key: &SessionKey) -> Option<i64> {
        // On a cluster, only the node that owns the slot answers (others say MOVED).
        for url in test_urls(self) {
            let mut conn = redis_conn(&url).await;
            if let Ok(ttl) = conn.pttl::<_, i64>(self.redis_key(key)).await {
                return (ttl >= 0).then_some(ttl);
            }
        }
        None
    }

    fn in_namespace(&self, ns: &str) -> Self {
        let urls = test_urls(self);
        URLS.lock().unwrap().insert(ns.to_owned(), urls);
        self.clone().with_namespace(ns).unwrap()
    }

    fn watch_expired(
        &self,
        layer: &tower_redis_session::SessionLayer,
    ) -> tower_redis_session::ExpiryWatcher {
        RedisStore::watch_expired(self, layer).unwrap()
    }
}

/// The node URLs behind a store's namespace (registered by the constructors below).
fn test_urls(store: &RedisStore) -> Vec<String> {
    URLS.lock()
        .unwrap()
        .get(tower_redis_session::SessionStore::namespace(store))
        .cloned()
        .unwrap_or_else(|| vec![super::RedisServer::shared().url()])
}

static URLS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>> =
    std::sync::LazyLock::new(Default::default);

/// Remembers which nodes hold `namespace`, for the helpers above.
pub fn register(namespace: &str, urls: Vec<String>) {
    URLS.lock().unwrap().insert(namespace.to_owned(), urls);
}

/// A Redis store on `url` under `namespace`, registered for the helpers above.
pub fn redis_store_on(url: &str, namespace: &str) -> RedisStore {
    register(namespace, vec![url.to_owned()]);
    RedisStore::from_url(url)
        .unwrap()
        .with_namespace(namespace)
        .unwrap()
}

/// A `MemoryStore` and a `RedisStore` (on the shared server) for one case of a
/// property test that runs the same operations on both: a fresh namespace
/// `<prefix><case>` and the same user key (`key_byte` repeated), so user tags, and so
/// keys, are the same on both. Returns the case number too (unique in the process).
pub fn twin_stores(prefix: &str, key_byte: u8) -> (u64, MemoryStore, RedisStore) {
    static CASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let case = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + u64::from(std::process::id()) * 1_000;
    let user_key = tower_redis_session::UserKey::try_from(&[key_byte; 32][..]).unwrap();
    let ns = format!("{prefix}{case}");
    let redis = RedisStore::from_url(&super::RedisServer::shared().url())
        .unwrap()
        .with_namespace(&ns)
        .unwrap()
        .with_user_key(user_key.clone());
    let memory = MemoryStore::new()
        .with_namespace(&ns)
        .unwrap()
        .with_user_key(user_key);
    (case, memory, redis)
}

/// A `MemoryStore` under `namespace`.
pub fn memory_store(namespace: &str) -> MemoryStore {
    MemoryStore::new().with_namespace(namespace).unwrap()
}

/// A Redis store on the shared server of this test binary.
pub fn redis_store(namespace: &str) -> RedisStore {
    RedisStore::from_url(&super::RedisServer::shared().url())
        .unwrap()
        .with_namespace(namespace)
        .unwrap()
}

/// A Redis store with the local session cache, on the shared server of this test
/// binary.
#[cfg(feature = "local-cache")]
pub fn cached_store(namespace: &str) -> RedisStore {
    RedisStore::builder(super::RedisServer::shared().url())
        .with_local_cache(tower_redis_session::LocalCache::default())
        .build()
        .unwrap()
        .with_namespace(namespace)
        .unwrap()
}

/// A Redis store on the shared cluster of this test binary.
pub fn cluster_store(namespace: &str) -> RedisStore {
    let urls = super::RedisCluster::shared().urls();
    register(namespace, urls.clone());
    RedisStore::cluster_builder(urls)
        .build()
        .unwrap()
        .with_namespace(namespace)
        .unwrap()
}

/// A cluster store with the local session cache, on the shared cluster.
#[cfg(feature = "local-cache")]
pub fn cached_cluster_store(namespace: &str) -> RedisStore {
    let urls = super::RedisCluster::shared().urls();
    register(namespace, urls.clone());
    RedisStore::cluster_builder(urls)
        .with_local_cache(tower_redis_session::LocalCache::default())
        .build()
        .unwrap()
        .with_namespace(namespace)
        .unwrap()
}

/// Certificates and a mutual-TLS server (`tls-auth-clients yes`) shared by the tests of
/// this binary.
pub static TLS: std::sync::LazyLock<(super::tls::Certs, super::RedisServer)> =
    std::sync::LazyLock::new(|| {
        let dir = std::env::temp_dir().join(format!("trs-certs-{}", std::process::id()));
        let certs = super::tls::Certs::generate(&dir);
        let server = super::RedisServer::start_tls(&certs, "yes", &[]);
        (certs, server)
    });

/// Certificates and a 3-master cluster over TLS shared by the tests of this binary.
pub static TLS_CLUSTER: std::sync::LazyLock<(super::tls::Certs, super::RedisCluster)> =
    std::sync::LazyLock::new(|| {
        let dir = std::env::temp_dir().join(format!("trs-cluster-certs-{}", std::process::id()));
        let certs = super::tls::Certs::generate(&dir);
        let cluster = super::RedisCluster::start_tls(3, &certs);
        (certs, cluster)
    });

/// The CA and client certificate of `certs`, as a store takes them.
#[cfg(feature = "tls")]
pub fn client_tls(certs: &super::tls::Certs) -> tower_redis_session::TlsConfig {
    tower_redis_session::TlsConfig::default()
        .with_ca_pem(certs.ca_pem.clone())
        .with_client_cert_pem(certs.client_cert_pem.clone(), certs.client_key_pem.clone())
}

/// A Redis store over mutual TLS (the client certificate required) on the shared TLS
/// server of this test binary.
#[cfg(feature = "tls")]
pub fn tls_store(namespace: &str) -> RedisStore {
    let (certs, server) = &*TLS;
    register(namespace, vec![server.url()]);
    RedisStore::builder(server.tls_url())
        .with_tls(client_tls(certs))
        .build()
        .unwrap()
        .with_namespace(namespace)
        .unwrap()
}

/// A Redis store on the shared TLS cluster of this test binary (CA file, no client
/// certificate).
#[cfg(feature = "tls")]
pub fn tls_cluster_store(namespace: &str) -> RedisStore {
    let (certs, cluster) = &*TLS_CLUSTER;
    register(namespace, cluster.urls());
    RedisStore::cluster_builder(cluster.tls_urls())
        .with_tls(tower_redis_session::TlsConfig::default().with_ca_file(certs.path("ca.crt")))
        .build()
        .unwrap()
        .with_namespace(namespace)
        .unwrap()
}

/// A server for least-privilege tests: each store gets its own ACL user with
/// exactly the rules `RedisStore::acl_rules` documents (keyspace notifications are set
/// in the configuration, as the rules tell operators to).
pub static ACL_SERVER: std::sync::LazyLock<super::RedisServer> = std::sync::LazyLock::new(|| {
    super::RedisServer::start_with(&["--notify-keyspace-events", "Ex"])
});

/// A store on [`ACL_SERVER`] as a user made with `acl_rules()` for `namespace`, plus
/// the key patterns of the two namespaces derived from it that the conformance suite
/// also uses (`<ns>-admin`, `<ns>-2`). The helpers above inspect it as the default user.
pub fn acl_store(namespace: &str) -> RedisStore {
    let server = &*ACL_SERVER;
    let rules = RedisStore::from_url(&server.url())
        .unwrap()
        .with_namespace(namespace)
        .unwrap()
        .acl_rules();
    let reply = server
        .raw(&format!(
            "ACL SETUSER {namespace} on >pw-{namespace} {rules} ~{namespace}-admin:* ~{namespace}-2:*"
        ))
        .unwrap_or_default();
    assert!(reply.starts_with("+OK"), "{reply}");
    register(namespace, vec![server.url()]);
    let url = format!(
        "redis://{namespace}:pw-{namespace}@127.0.0.1:{}",
        server.port
    );
    RedisStore::from_url(&url)
        .unwrap()
        .with_namespace(namespace)
        .unwrap()
}

/// A Sentinel deployment shared by the tests of this binary.
pub static SENTINELS: std::sync::LazyLock<super::Sentinels> =
    std::sync::LazyLock::new(|| super::Sentinels::start("shared"));

/// A store on the master of the shared Sentinel deployment, found through the
/// sentinels (the URL form).
pub fn sentinel_store(namespace: &str) -> RedisStore {
    let sentinels = &*SENTINELS;
    register(namespace, sentinels.node_urls());
    RedisStore::from_url(&sentinels.url())
        .unwrap()
        .with_namespace(namespace)
        .unwrap()
}

/// Pool settings for tests of a user's own `deadpool_redis` pool: explicit timeouts.
pub fn user_pool_config() -> deadpool_redis::PoolConfig {
    let second = Some(std::time::Duration::from_secs(1));
    deadpool_redis::PoolConfig {
        max_size: 4,
        timeouts: deadpool_redis::Timeouts {
            wait: second,
            create: second,
            recycle: second,
        },
        ..Default::default()
    }
}

/// Every key name and value of `keys` (hashes, sorted sets with scores, strings) as one
/// string, to search for secrets.
pub async fn dump(conn: &mut redis::aio::MultiplexedConnection, keys: &[String]) -> String {
    let mut dump = String::new();
    for k in keys {
        dump.push_str(k);
        let kind: String = redis::cmd("TYPE").arg(k).query_async(conn).await.unwrap();
        let values: Vec<String> = match kind.as_str() {
            "hash" => conn.hgetall(k).await.unwrap(),
            "zset" => conn.zrange_withscores(k, 0, -1).await.unwrap(),
            "string" => vec![conn.get(k).await.unwrap()],
            other => panic!("unexpected key type {other} for {k}"),
        };
        dump.extend(values);
    }
    dump
}

/// Every entry of a stream, oldest first: its id and its fields.
pub async fn stream_entries(
    url: &str,
    stream: &str,
) -> Vec<(String, std::collections::HashMap<String, String>)> {
    let mut conn = redis_conn(url).await;
    let reply: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    reply
        .into_iter()
        .map(|(id, flat)| {
            let fields = flat
                .chunks_exact(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect();
            (id, fields)
        })
        .collect()
}
