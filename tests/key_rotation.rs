//! Rotating the cookie key of signed and private cookies with a `KeyRing`: each
//! transition on a real `redis-server`, with the Redis commands each request costs.

mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::time::Duration;

use axum::Router;
use common::{Client, RedisServer};
use tower_redis_session::cookie::KeyRing;
use tower_redis_session::{
    Expiry, Key, RedisStore, Session, SessionConfig, SessionError, SessionLayer,
};

fn app(layer: SessionLayer) -> Router {
    routes::routes()
        .route(
            "/remember",
            axum::routing::post(|session: Session| async move {
                session
                    .set_expiry(Expiry::remember_me(Duration::from_secs(7 * 86_400)))
                    .await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .layer(layer)
}

fn store(server: &RedisServer, ns: &str) -> RedisStore {
    RedisStore::from_url(&server.url())
        .unwrap()
        .with_namespace(ns)
        .unwrap()
}

/// The Redis commands a request made (from `INFO commandstats`).
async fn commands(
    server: &RedisServer,
    c: &mut Client,
    uri: &str,
    post: bool,
) -> (common::client::Reply, usize) {
    let before = server.command_calls();
    let reply = if post {
        c.post(uri).await
    } else {
        c.get(uri).await
    };
    let after = server.command_calls();
    let n = RedisServer::delta(&before, &after).values().sum::<u64>() as usize;
    (reply, n)
}

/// Every transition, for a codec family made by `seal(layer, keys)`.
async fn rotation(ns: &str, seal: impl Fn(SessionLayer, KeyRing) -> SessionLayer) {
    let server = RedisServer::start();
    let (a, b) = (Key::generate(), Key::generate());
    // One store, connected before anything is counted (a new connection's handshake
    // is not a request's cost).
    let shared = store(&server, ns);
    shared.check().await.unwrap();
    let layer = |keys: KeyRing| {
        let base = SessionLayer::new(shared.clone(), SessionConfig::default()).unwrap();
        app(seal(base, keys))
    };
    let only_a = layer(KeyRing::from(a.clone()));
    let b_then_a = layer(KeyRing::from(b.clone()).with_older(a.clone()));
    let only_b = layer(KeyRing::from(b.clone()));

    // 1. Under [A]: a browser-session login and a "remember me" login.
    let mut browser = Client::new(only_a.clone());
    browser.post("/login?user=ada").await;
    browser.post("/incr").await;
    let under_a = browser.cookie.clone().unwrap();
    let mut remembered = Client::new(only_a.clone());
    remembered.post("/login?user=bea").await;
    remembered.post("/remember").await;
    let remembered_under_a = remembered.cookie.clone().unwrap();

    // 2. Rotated to [B, A]: a route that ignores the session costs nothing and sets
    //    nothing...
    browser.app = b_then_a.clone();
    let (r, n) = commands(&server, &mut browser, "/plain", false).await;
    assert_eq!((r.status.as_u16(), n), (200, 0));
    assert!(r.set_cookie.is_none());
    // ...a read is accepted (one read, no write) and re-issues the cookie under B.
    let (r, n) = commands(&server, &mut browser, "/read", false).await;
    assert_eq!(r.body, "ada");
    assert_eq!(
        n, 2,
        "the read only: HGETALL and the handle-map check, one round trip"
    );
    let reissued = r.set_cookie.expect("re-issued under the newest key");
    assert_ne!(reissued.value, under_a);
    assert_eq!(reissued.max_age(), None, "still a browser-session cookie");
    assert!(
        r.headers
            .get("cache-control")
            .is_some_and(|v| v == "no-store")
    );
    // The next request under [B, A] carries the new cookie: nothing more to re-issue.
    let r = browser.get("/read").await;
    assert_eq!(r.body, "ada");
    assert!(r.set_cookie.is_none());
    // A persistent cookie keeps its lifetime when re-issued.
    remembered.app = b_then_a.clone();
    let r = remembered.post("/incr").await;
    assert_eq!(r.status, 200);
    let age = r
        .set_cookie
        .expect("re-issued")
        .max_age()
        .expect("persistent");
    assert!(age > 7 * 86_400 - 10, "{age}");
    let remembered_under_b = remembered.cookie.clone().unwrap();
    assert_ne!(remembered_under_b, remembered_under_a);

    // 3. A retires: the re-issued cookies still work, with the same session and data...
    browser.app = only_b.clone();
    assert_eq!(browser.post("/incr").await.body, "2");
    remembered.app = only_b.clone();
    assert_eq!(remembered.get("/read").await.body, "bea");
    // ...and a cookie still under A is no session, refused without asking Redis.
    let mut stale = Client::new(only_b.clone());
    stale.cookie = Some(under_a.clone());
    let (r, n) = commands(&server, &mut stale, "/read", false).await;
    assert_eq!(r.status, 401);
    assert_eq!(n, 0, "a cookie under a retired key costs no Redis command");

    // 4. Under [B, A], a cookie still under A can log out; the session ends.
    let mut late = Client::new(b_then_a.clone());
    late.post("/login?user=cid").await;
    let cid = late.cookie.clone().unwrap();
    let mut under_a_again = Client::new(only_a.clone());
    under_a_again.post("/login?user=cid").await;
    under_a_again.app = b_then_a.clone();
    let r = under_a_again.post("/logout").await;
    assert!(r.set_cookie.expect("removal").is_removal());
    assert_eq!(under_a_again.get("/read").await.status, 401);
    // The other device of the same user is untouched.
    late.cookie = Some(cid);
    assert_eq!(late.get("/read").await.body, "cid");

    // 5. An unrelated key opens nothing.
    let mut foreign = Client::new(layer(KeyRing::from(Key::generate())));
    foreign.cookie = browser.cookie.clone();
    assert_eq!(foreign.get("/read").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_cookie_keys_rotate() {
    rotation("rot-signed", |layer, keys| layer.with_signed(keys)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_cookie_keys_rotate() {
    rotation("rot-private", |layer, keys| layer.with_private(keys)).await;
}

#[test]
fn a_key_ring_never_shows_its_keys() {
    let key = Key::from(&[42u8; 64]);
    let debug = format!("{:?}", KeyRing::from(key.clone()).with_older(key));
    assert_eq!(debug, "KeyRing(2 keys, redacted)");
}
