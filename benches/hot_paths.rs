//! In-process hot paths: cookie parsing, a full request through the layer on
//! `MemoryStore`, on a real Redis (started on a free port) and with the local cache
//! (feature `local-cache`), the same route without the layer, and the rejection of a
//! forged signed cookie.
//!
//! ```text
//! cargo bench --bench hot_paths --all-features
//! ```
#![allow(missing_docs)] // a bench binary

#[allow(dead_code)] // the bench uses only `start`
#[path = "../tests/common/redis_server.rs"]
mod redis_server;
#[allow(dead_code)]
#[path = "../tests/common/tls.rs"]
mod tls;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::{get, post};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;
use tower_redis_session::tokens::{TokenConfig, Tokens};
use tower_redis_session::{
    Key, MemoryStore, RedisStore, Session, SessionConfig, SessionKey, SessionLayer, SessionStore,
};

fn routes() -> Router {
    Router::new()
        .route("/plain", get(|| async { "ok" }))
        .route(
            "/login",
            post(|s: Session| async move {
                s.login("bench").await.unwrap();
                "ok"
            }),
        )
        .route(
            "/read",
            get(|s: Session| async move { s.user_id().await.unwrap().unwrap_or_default() }),
        )
        .route(
            "/incr",
            post(|s: Session| async move {
                let n = s.get::<u64>("counter").await.unwrap().unwrap_or(0) + 1;
                s.insert("counter", n).await.unwrap();
                n.to_string()
            }),
        )
}

fn app(store: impl SessionStore, signed: bool) -> Router {
    let layer = SessionLayer::new(store, SessionConfig::default()).unwrap();
    if signed {
        routes().layer(layer.with_signed(Key::from(&[9u8; 64])))
    } else {
        routes().layer(layer)
    }
}

async fn call(app: &Router, method: &str, path: &str, cookie: Option<&str>) -> Option<String> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    res.headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let valid = "AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    c.bench_function("cookie: parse + hash a session cookie", |b| {
        b.iter(|| SessionKey::from_cookie_value(std::hint::black_box(valid)))
    });

    let redis = redis_server::RedisServer::start();
    #[cfg_attr(not(feature = "local-cache"), allow(unused_mut))]
    let mut stores: Vec<(&str, Router)> = vec![
        ("memory", app(MemoryStore::new(), false)),
        (
            "redis",
            app(RedisStore::from_url(&redis.url()).unwrap(), false),
        ),
    ];
    // The local cache: a read is served from the process (the shared parsed copy), a
    // read-modify-write sends only its update script.
    #[cfg(feature = "local-cache")]
    {
        let _runtime = rt.enter();
        let cached = RedisStore::builder(redis.url())
            .with_local_cache(tower_redis_session::LocalCache::default())
            .build()
            .unwrap();
        stores.push(("redis + local cache", app(cached, false)));
    }
    for (name, app) in &stores {
        let cookie = rt.block_on(call(app, "POST", "/login", None)).unwrap();
        let cookie = Some(cookie.as_str());
        c.bench_function(&format!("request {name}: cookie, untouched"), |b| {
            b.to_async(&rt).iter(|| call(app, "GET", "/plain", cookie))
        });
        c.bench_function(&format!("request {name}: read"), |b| {
            b.to_async(&rt).iter(|| call(app, "GET", "/read", cookie))
        });
        c.bench_function(&format!("request {name}: read-modify-write"), |b| {
            b.to_async(&rt).iter(|| call(app, "POST", "/incr", cookie))
        });
    }
    // Values encrypted at rest: the same read-modify-write, each value opened on the
    // read and sealed on the write (compare with "request memory: read-modify-write").
    #[cfg(feature = "value-encryption")]
    {
        let layer = SessionLayer::new(MemoryStore::new(), SessionConfig::default()).unwrap();
        let sealed = routes().layer(layer.with_value_encryption(Key::from(&[5u8; 64])));
        let cookie = rt.block_on(call(&sealed, "POST", "/login", None)).unwrap();
        let cookie = Some(cookie.as_str());
        rt.block_on(call(&sealed, "POST", "/incr", cookie));
        c.bench_function("request memory, values encrypted: read-modify-write", |b| {
            b.to_async(&rt)
                .iter(|| call(&sealed, "POST", "/incr", cookie))
        });
    }
    let signed = app(MemoryStore::new(), true);
    let forged = "__Host-id=ZmFrZXNpZ25hdHVyZWZha2VzaWduYXR1cmVmYWtlc2lnbg==session:AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    c.bench_function("request memory: forged signed cookie rejected", |b| {
        b.to_async(&rt)
            .iter(|| call(&signed, "GET", "/read", Some(forged)))
    });
    // Tokens: authenticate a live access token (MemoryStore / Redis), and refuse a
    // forged one (checked without the store).
    for (name, tokens) in [
        (
            "memory",
            Tokens::new(MemoryStore::new(), TokenConfig::default()).unwrap(),
        ),
        (
            "redis",
            Tokens::new(
                RedisStore::from_url(&redis.url()).unwrap(),
                TokenConfig::default(),
            )
            .unwrap(),
        ),
    ] {
        let pair = rt.block_on(tokens.issue("bench")).unwrap();
        let access = pair.access_token.clone();
        c.bench_function(&format!("tokens {name}: authenticate"), |b| {
            b.to_async(&rt).iter(|| tokens.authenticate(&access))
        });
        let mut forged = access.clone().into_bytes();
        let last = forged.len() - 5;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        c.bench_function(&format!("tokens {name}: forged token refused"), |b| {
            b.to_async(&rt).iter(|| tokens.authenticate(&forged))
        });
    }
    // The floor of a request: the same route without the session layer.
    let bare = routes();
    c.bench_function("request: no session layer", |b| {
        b.to_async(&rt).iter(|| call(&bare, "GET", "/plain", None))
    });
    let plain_layer = app(MemoryStore::new(), false);
    c.bench_function("request: no cookie, untouched", |b| {
        b.to_async(&rt)
            .iter(|| call(&plain_layer, "GET", "/plain", None))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
