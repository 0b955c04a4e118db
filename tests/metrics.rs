//! Metrics (feature `metrics`) recorded by a test recorder: every metric the `metrics`
//! module documents appears with its labels, and no metric name or label carries a
//! cookie, token, key or user id.

mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{Client, RedisServer};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower_redis_session::metrics::{
    CACHE_READS, COOKIES_REFUSED, EVENTS_DROPPED, STORE_DURATION, STORE_ERRORS, TOKENS_REFUSED,
};
use tower_redis_session::tokens::{TokenConfig, Tokens};
use tower_redis_session::{LocalCache, RedisStore, SessionConfig, SessionLayer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_appear_without_secrets() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("one recorder per test binary");
    let server = RedisServer::shared();
    let user = "metrics-user-7f3a";

    // Store operations (and the local cache) through the layer; a hook whose queue of
    // one event is held, so later events are dropped.
    let store = RedisStore::builder(server.url())
        .with_local_cache(LocalCache::default())
        .build()
        .unwrap()
        .with_namespace("metrics")
        .unwrap();
    let gate = Arc::new(Barrier::new(2));
    let held = gate.clone();
    let first = Arc::new(AtomicBool::new(true));
    let layer = SessionLayer::new(store.clone(), SessionConfig::default())
        .unwrap()
        .with_events_queue(
            move |_: &tower_redis_session::events::SessionEvent| {
                if first.swap(false, Ordering::Relaxed) {
                    held.wait();
                }
            },
            1,
        );
    let mut c = Client::new(routes::routes().layer(layer.clone()));
    assert_eq!(c.post(&format!("/login?user={user}")).await.status, 200);
    assert_eq!(c.get("/read").await.body, user);
    assert_eq!(c.get("/read").await.body, user);
    let cookie = c.cookie.clone().unwrap();
    for _ in 0..3 {
        assert_eq!(c.post("/incr").await.status, 200);
    }
    // More events than the hook (held on its first) and its queue of one can take.
    for i in 0..4 {
        let mut other = Client::new(routes::routes().layer(layer.clone()));
        assert_eq!(
            other.post(&format!("/login?user=other-{i}")).await.status,
            200
        );
    }
    gate.wait(); // let the hook go
    assert!(layer.dropped_events() >= 2, "{}", layer.dropped_events());

    // A refused cookie.
    let mut forged = Client::new(routes::routes().layer(layer.clone()));
    forged.cookie = Some("not-a-session-cookie".into());
    assert_eq!(forged.get("/read").await.status, 401);

    // Failed store operations: nothing listens there.
    let down = RedisStore::builder("redis://127.0.0.1:1")
        .with_connect_timeout(Duration::from_millis(200))
        .with_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
        .with_namespace("metrics")
        .unwrap();
    let mut d = Client::new(
        routes::routes().layer(SessionLayer::new(down, SessionConfig::default()).unwrap()),
    );
    assert_eq!(d.post("/set?key=a&value=1").await.status, 503);

    // Tokens: a good one, and refused ones.
    let tokens = Tokens::new(store, TokenConfig::default()).unwrap();
    let pair = tokens.issue(user).await.unwrap();
    tokens.authenticate(&pair.access_token).await.unwrap();
    assert!(tokens.authenticate("forged").await.is_err());
    assert!(tokens.refresh("forged").await.is_err());

    let snapshot = snapshotter.snapshot().into_vec();
    let mut seen: Vec<String> = Vec::new();
    for (key, _, _, value) in &snapshot {
        let key = key.key();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let line = format!("{} {} {value:?}", key.name(), labels.join(","));
        for secret in [
            user,
            cookie.as_str(),
            &pair.access_token,
            &pair.refresh_token,
        ] {
            assert!(!line.contains(secret), "a secret in {line}");
        }
        seen.push(line);
    }
    let text = seen.join("\n");
    let has = |name: &str, labels: &[&str]| {
        seen.iter()
            .any(|l| l.starts_with(&format!("{name} ")) && labels.iter().all(|x| l.contains(x)))
    };
    for op in [
        "load",
        "login",
        "update",
        "token_issue",
        "token_authenticate",
    ] {
        assert!(
            has(
                STORE_DURATION,
                &[
                    "db.system.name=redis",
                    &format!("db.operation.name={op}"),
                    "db.namespace=metrics"
                ]
            ),
            "{op}: {text}"
        );
    }
    assert!(has(STORE_ERRORS, &["error.type="]), "{text}");
    assert!(
        has(STORE_DURATION, &["error.type="]),
        "failures are timed too: {text}"
    );
    assert!(
        has(COOKIES_REFUSED, &["reason=malformed session cookie"]),
        "{text}"
    );
    assert!(
        has(
            TOKENS_REFUSED,
            &["operation=authenticate", "reason=invalid_token"]
        ),
        "{text}"
    );
    assert!(
        has(
            TOKENS_REFUSED,
            &["operation=refresh", "reason=invalid_grant"]
        ),
        "{text}"
    );
    assert!(has(EVENTS_DROPPED, &[]), "{text}");
    assert!(has(CACHE_READS, &["result=hit"]), "{text}");
    assert!(has(CACHE_READS, &["result=miss"]), "{text}");
    // The counts are what happened.
    let count = |name: &str, label: &str| -> u64 {
        snapshot
            .iter()
            .filter(|(k, ..)| {
                k.key().name() == name
                    && k.key()
                        .labels()
                        .any(|l| format!("{}={}", l.key(), l.value()) == label)
            })
            .map(|(.., v)| match v {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
            .sum()
    };
    assert_eq!(count(COOKIES_REFUSED, "reason=malformed session cookie"), 1);
    assert_eq!(count(TOKENS_REFUSED, "operation=authenticate"), 1);
}
