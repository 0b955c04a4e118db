//! What a Redis that evicts (or an operator who deletes) a user's bookkeeping does to
//! that user's sessions: every key has a TTL, so under `volatile-*` or `allkeys-*`
//! policies the cold user index and handle map can go while hot sessions stay. Losing
//! them must never leave a session that revocation can no longer reach: such sessions
//! fail closed ("no session"), and revocation still ends what it promises.

mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::time::{Duration, Instant};

use axum::Router;
use common::{Client, RedisServer};
use redis::AsyncCommands as _;
use tower_redis_session::{LocalCache, RedisStore, SessionConfig, SessionLayer};

fn app(store: RedisStore) -> Router {
    routes::routes()
        .merge(common::session_routes::per_user())
        .layer(SessionLayer::new(store, SessionConfig::default()).unwrap())
}

async fn login(app: &Router, user: &str) -> Client {
    let mut c = Client::new(app.clone());
    assert_eq!(c.post(&format!("/login?user={user}")).await.status, 200);
    c
}

/// Deletes `suffix` (`u` the user index, `uh` its handle map) of `c`'s user, as an
/// eviction would.
async fn lose(ns: &str, c: &Client, suffix: &str) {
    let tag = c.cookie.as_deref().unwrap().split('.').next().unwrap();
    let mut conn = common::stores::redis_conn(&RedisServer::shared().url()).await;
    let n: u64 = conn.del(format!("{ns}:{{{tag}}}:{suffix}")).await.unwrap();
    assert_eq!(n, 1, "the key existed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_handle_map_ends_the_users_sessions() {
    let app = app(common::stores::redis_store("ev-map"));
    let mut alice = [login(&app, "alice").await, login(&app, "alice").await];
    let mut bob = login(&app, "bob").await;
    lose("ev-map", &alice[0], "uh").await;
    for c in &mut alice {
        assert_eq!(c.get("/read").await.status, 401, "fails closed");
        assert_eq!(c.post("/incr").await.status, 200);
        assert_eq!(
            c.get("/read").await.status,
            401,
            "a write does not revive it"
        );
    }
    assert_eq!(
        bob.get("/read").await.body,
        "bob",
        "other users are untouched"
    );
    // A new login works as before.
    let mut again = login(&app, "alice").await;
    assert_eq!(again.get("/read").await.body, "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_everywhere_holds_without_the_index() {
    let app = app(common::stores::redis_store("ev-all"));
    let mut alice = [login(&app, "alice").await, login(&app, "alice").await];
    lose("ev-all", &alice[0], "u").await;
    assert_eq!(alice[0].post("/everywhere").await.status, 200);
    for c in &mut alice {
        assert_eq!(c.get("/read").await.status, 401, "logged out everywhere");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_others_holds_without_the_index() {
    let app = app(common::stores::redis_store("ev-oth"));
    let mut alice = [
        login(&app, "alice").await,
        login(&app, "alice").await,
        login(&app, "alice").await,
    ];
    lose("ev-oth", &alice[0], "u").await;
    assert_eq!(alice[0].post("/revoke_others").await.status, 200);
    assert_eq!(
        alice[0].get("/read").await.body,
        "alice",
        "the current one stays"
    );
    for c in &mut alice[1..] {
        assert_eq!(c.get("/read").await.status, 401, "the others are out");
    }
}

/// A session kept in the local cache goes as soon as its user's handle map does: the
/// read that filled the cache tracked the map, and its invalidation drops the slot
/// (well before the staleness bound, set long here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_cache_drops_sessions_whose_handle_map_is_lost() {
    let store = RedisStore::builder(RedisServer::shared().url())
        .with_local_cache(LocalCache::default().with_max_staleness(Duration::from_secs(30)))
        .build()
        .unwrap()
        .with_namespace("ev-cache")
        .unwrap();
    let app = app(store.clone());
    let mut alice = login(&app, "alice").await;
    for _ in 0..3 {
        assert_eq!(alice.get("/read").await.body, "alice");
    }
    assert!(
        store.cache_stats().unwrap().hits > 0,
        "served from the cache"
    );
    lose("ev-cache", &alice, "uh").await;
    let start = Instant::now();
    while alice.get("/read").await.status != 401 {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the cached session outlived its handle map"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
