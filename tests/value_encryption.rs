//! Session values encrypted at rest (`SessionLayer::with_value_encryption`): a Redis
//! dump shows no value, values read back through logins and field-level writes, and a
//! value altered, moved between keys or sessions, stored plain, or sealed under a
//! removed key reads as missing (never a 500).
#![cfg(feature = "value-encryption")]

mod common;

use std::collections::HashMap;

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post};
use common::{Client, RedisServer};
use redis::AsyncCommands as _;
use tower_redis_session::{
    Key, KeyRing, MemoryStore, Session, SessionConfig, SessionError, SessionLayer, SessionStore,
};

type Params = Query<HashMap<String, String>>;

fn app<S: SessionStore>(store: S, keys: KeyRing, config: SessionConfig) -> Router {
    Router::new()
        .route(
            "/set",
            post(|s: Session, Query(q): Params| async move {
                s.insert(&q["key"], &q["value"]).await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/get",
            get(|s: Session, Query(q): Params| async move {
                Ok::<_, SessionError>(match s.get::<String>(&q["key"]).await? {
                    Some(v) => (StatusCode::OK, v),
                    None => (StatusCode::NOT_FOUND, String::new()),
                })
            }),
        )
        .route(
            "/login",
            post(|s: Session, Query(q): Params| async move {
                s.login(&q["user"]).await?;
                Ok::<_, SessionError>("in")
            }),
        )
        .layer(
            SessionLayer::new(store, config)
                .unwrap()
                .with_value_encryption(keys),
        )
}

fn secret_key(byte: u8) -> Key {
    Key::from(&[byte; 64])
}

/// The session hashes of namespace `ns` on the shared server.
async fn session_keys(conn: &mut redis::aio::MultiplexedConnection, ns: &str) -> Vec<String> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{ns}*"))
        .query_async(conn)
        .await
        .unwrap();
    let mut hashes = Vec::new();
    for k in keys {
        let kind: String = redis::cmd("TYPE").arg(&k).query_async(conn).await.unwrap();
        // A session hash has its packed identity field.
        if kind == "hash" && conn.hexists(&k, "m:n").await.unwrap() {
            hashes.push(k);
        }
    }
    hashes
}

/// Values set anonymously, carried by a login, set after it and kept by a re-login all
/// read back, and neither `HGETALL` of every key nor `DUMP` of the session shows one.
async fn sealed_in_redis_and_read_back(store: tower_redis_session::RedisStore, ns: &str) {
    let app = app(store, secret_key(7).into(), SessionConfig::default());
    let mut c = Client::new(app);
    assert_eq!(
        c.post("/set?key=cart&value=plaintext-cart-4242")
            .await
            .status,
        200
    );
    c.post("/set?key=note&value=plaintext-note-1717").await;
    assert_eq!(c.post("/login?user=alice").await.status, 200);
    c.post("/set?key=after&value=plaintext-after-9191").await;
    assert_eq!(c.post("/login?user=alice").await.status, 200, "re-login");
    for (key, value) in [
        ("cart", "plaintext-cart-4242"),
        ("note", "plaintext-note-1717"),
        ("after", "plaintext-after-9191"),
    ] {
        let r = c.get(&format!("/get?key={key}")).await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, value), "{key}");
    }
    let mut conn = common::stores::redis_conn(&RedisServer::shared().url()).await;
    let all: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{ns}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let dump = common::stores::dump(&mut conn, &all).await;
    assert!(!dump.contains("plaintext"), "no value in Redis: {dump}");
    let sessions = session_keys(&mut conn, ns).await;
    assert_eq!(sessions.len(), 1, "{all:?}");
    let raw: Vec<u8> = redis::cmd("DUMP")
        .arg(&sessions[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!raw.windows(9).any(|w| w == b"plaintext"));
    let fields: HashMap<String, String> = conn.hgetall(&sessions[0]).await.unwrap();
    let data: Vec<_> = fields.iter().filter(|(k, _)| k.starts_with("d:")).collect();
    assert_eq!(data.len(), 3);
    assert!(data.iter().all(|(_, v)| v.starts_with("~1")), "{data:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_sealed_in_redis_and_read_back() {
    let ns = "enc-sealed";
    sealed_in_redis_and_read_back(common::stores::redis_store(ns), ns).await;
}

#[cfg(feature = "local-cache")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_sealed_with_the_local_cache() {
    let ns = "enc-cached";
    sealed_in_redis_and_read_back(common::stores::cached_store(ns), ns).await;
}

/// Field-level writes keep working on sealed values: two requests on one session that
/// set different keys at the same time both land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_field_writes_both_land() {
    for app in [
        app(
            common::stores::redis_store("enc-fields"),
            secret_key(1).into(),
            SessionConfig::default(),
        ),
        app(
            MemoryStore::new(),
            secret_key(1).into(),
            SessionConfig::default(),
        ),
    ] {
        let mut a = Client::new(app.clone());
        a.post("/set?key=first&value=1").await;
        let mut b = Client::new(app);
        b.cookie = a.cookie.clone();
        let (ra, rb) = tokio::join!(
            a.post("/set?key=x&value=from-a"),
            b.post("/set?key=y&value=from-b")
        );
        assert_eq!((ra.status.as_u16(), rb.status.as_u16()), (200, 200));
        assert_eq!(a.get("/get?key=x").await.body, "from-a");
        assert_eq!(a.get("/get?key=y").await.body, "from-b");
        assert_eq!(a.get("/get?key=first").await.body, "1");
    }
}

/// The size limit counts the sealed value, so an insert that would pass it once sealed
/// is refused when it is made (413), not when the store refuses the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_limit_counts_sealed_values() {
    let config = SessionConfig::default().with_max_session_size(100);
    let value = "v".repeat(50); // 4 + 52 bytes of JSON plain, 2 + 107 sealed
    for app in [
        app(
            common::stores::redis_store("enc-size"),
            secret_key(2).into(),
            config.clone(),
        ),
        app(MemoryStore::new(), secret_key(2).into(), config.clone()),
    ] {
        let mut c = Client::new(app);
        assert_eq!(
            c.post(&format!("/set?key=big&value={value}")).await.status,
            413
        );
        assert_eq!(c.post("/set?key=s&value=small").await.status, 200);
        assert_eq!(c.get("/get?key=s").await.body, "small");
    }
}

/// What an attacker with write access to Redis, or an operator who dropped a key, can
/// do to a value: each reads as missing, the other values still read, nothing is a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_moved_plain_or_unkeyed_values_read_as_missing() {
    let ns = "enc-hostile";
    let old = secret_key(3);
    let new = secret_key(4);
    let store = common::stores::redis_store(ns);
    let mut c = Client::new(app(
        store.clone(),
        old.clone().into(),
        SessionConfig::default(),
    ));
    for key in ["a", "b", "c", "d", "e"] {
        c.post(&format!("/set?key={key}&value=value-{key}")).await;
    }
    let mut other = Client::new(app(
        store.clone(),
        old.clone().into(),
        SessionConfig::default(),
    ));
    other.post("/set?key=a&value=other-a").await;
    let mut conn = common::stores::redis_conn(&RedisServer::shared().url()).await;
    let sessions = session_keys(&mut conn, ns).await;
    assert_eq!(sessions.len(), 2);
    let mine = {
        let mut mine = None;
        for k in &sessions {
            let f: HashMap<String, String> = conn.hgetall(k).await.unwrap();
            if f.contains_key("d:b") {
                mine = Some((k.clone(), f));
            }
        }
        mine.unwrap()
    };
    let theirs = sessions.iter().find(|k| **k != mine.0).unwrap().clone();
    let (key, fields) = mine;
    // Moved between keys: b's value under a.
    let _: () = conn.hset(&key, "d:a", &fields["d:b"]).await.unwrap();
    // Altered: one character of c's ciphertext.
    let mut altered = fields["d:c"].clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    let _: () = conn.hset(&key, "d:c", altered).await.unwrap();
    // Plain JSON written behind the layer's back.
    let _: () = conn.hset(&key, "d:d", "\"planted\"").await.unwrap();
    // Moved to another session: e's value into the other session's a.
    let _: () = conn.hset(&theirs, "d:a", &fields["d:e"]).await.unwrap();
    for (k, status) in [("a", 404), ("b", 200), ("c", 404), ("d", 404), ("e", 200)] {
        assert_eq!(c.get(&format!("/get?key={k}")).await.status, status, "{k}");
    }
    assert_eq!(
        other.get("/get?key=a").await.status,
        404,
        "moved between sessions"
    );
    // A rotated ring still opens values sealed with the older key.
    let mut rotated = Client::new(app(
        store.clone(),
        KeyRing::from(new.clone()).with_older(old),
        SessionConfig::default(),
    ));
    rotated.cookie = c.cookie.clone();
    assert_eq!(rotated.get("/get?key=b").await.body, "value-b");
    rotated.post("/set?key=f&value=value-f").await;
    // The older key removed: what it sealed reads as missing; the new key's value reads.
    let mut removed = Client::new(app(store, new.into(), SessionConfig::default()));
    removed.cookie = c.cookie.clone();
    assert_eq!(removed.get("/get?key=b").await.status, 404);
    assert_eq!(removed.get("/get?key=f").await.body, "value-f");
}
