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
    fn namespace(&self) -> String;
}

impl TestStore for MemoryStore {
    async fn count(&self) -> usize {
        self.len()
    }

    async fn pttl(&self, key: &SessionKey) -> Option<i64> {
        self.ttl(key).map(|d| d.as_millis() as i64)
    }

    fn in_namespace(&self, ns: &str) -> Self {
        self.clone().with_namespace(ns).unwrap()
    }

    fn namespace(&self) -> String {
        MemoryStore::namespace(self).to_owned()
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
        let mut conn = redis_conn(&test_url(self)).await;
        let keys: Vec<String> = conn
            .keys(format!("{}:{{*}}:s:*", RedisStore::namespace(self)))
            .await
            .unwrap();
        keys.len()
    }

    async fn pttl(&self, key: &SessionKey) -> Option<i64> {
        let mut conn = redis_conn(&test_url(self)).await;
        let ttl: i64 = conn.pttl(self.redis_key(key)).await.unwrap();
        (ttl >= 0).then_some(ttl)
    }

    fn in_namespace(&self, ns: &str) -> Self {
        let url = test_url(self);
        URLS.lock().unwrap().insert(ns.to_owned(), url);
        self.clone().with_namespace(ns).unwrap()
    }

    fn namespace(&self) -> String {
        RedisStore::namespace(self).to_owned()
    }
}

/// Tests put the server's URL in the namespace registry below, keyed by namespace.
fn test_url(store: &RedisStore) -> String {
    URLS.lock()
        .unwrap()
        .get(RedisStore::namespace(store))
        .cloned()
        .unwrap_or_else(|| super::RedisServer::shared().url())
}

static URLS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
    std::sync::LazyLock::new(Default::default);

/// A Redis store on `url` under `namespace`, registered for the helpers above.
pub fn redis_store_on(url: &str, namespace: &str) -> RedisStore {
    URLS.lock()
        .unwrap()
        .insert(namespace.to_owned(), url.to_owned());
    RedisStore::from_url(url)
        .unwrap()
        .with_namespace(namespace)
        .unwrap()
}

/// A Redis store on the shared server of this test binary.
pub fn redis_store(namespace: &str) -> RedisStore {
    RedisStore::from_url(&super::RedisServer::shared().url())
        .unwrap()
        .with_namespace(namespace)
        .unwrap()
}
