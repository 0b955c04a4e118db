//! Least privilege: the conformance suite runs as a user with only
//! `RedisStore::acl_rules()` (see `conformance.rs`, module `acl`). Here: what a user
//! with less gets (a typed error at start-up, 503 on requests, never a panic), and the
//! README shows the exact rules.

mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use common::Client;
use common::stores::ACL_SERVER;
use tower_redis_session::{RedisStore, SessionConfig, SessionLayer, StoreError};

/// A store as a new user `name` with `rules`.
fn store_as(name: &str, password: &str, rules: &str) -> RedisStore {
    let server = &*ACL_SERVER;
    let reply = server
        .raw(&format!("ACL SETUSER {name} reset on >{password} {rules}"))
        .unwrap_or_default();
    assert!(reply.starts_with("+OK"), "{reply}");
    RedisStore::from_url(&format!(
        "redis://{name}:{password}@127.0.0.1:{}",
        server.port
    ))
    .unwrap()
    .with_namespace(name)
    .unwrap()
}

fn rules_for(name: &str) -> String {
    RedisStore::from_url("redis://127.0.0.1:1")
        .unwrap()
        .with_namespace(name)
        .unwrap()
        .acl_rules()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_rules_are_enough() {
    let store = store_as("acl-enough", "pw-enough", &rules_for("acl-enough"))
        .with_event_stream(100)
        .unwrap();
    store.check().await.unwrap();
    let layer = SessionLayer::new(store.clone(), SessionConfig::default()).unwrap();
    // The expiry watcher subscribes to the one channel the rules name (its database's).
    let watcher = store.watch_expired(&layer).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), watcher.subscribed())
        .await
        .expect("the watcher subscribes under the documented rules");
    watcher.abort();
    let mut c = Client::new(routes::routes().layer(layer));
    c.post("/login?user=amy").await;
    assert_eq!(c.post("/incr").await.body, "1");
    assert_eq!(c.get("/read").await.body, "amy");
    // Reading the event stream back is within the rules too.
    let events = store.recent_events(10).await.unwrap();
    assert_eq!(events.len(), 2, "created, login: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_evalsha_fails_cleanly() {
    let rules = rules_for("acl-noeval").replace(" +evalsha", "");
    assert!(!rules.contains("evalsha"));
    let store = store_as("acl-noeval", "pw-noeval", &rules);
    match store.check().await {
        Err(StoreError::Redis(e)) => assert!(
            e.to_string()
                .contains("no permissions to run the 'evalsha' command"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    let mut c = Client::new(
        routes::routes().layer(SessionLayer::new(store, SessionConfig::default()).unwrap()),
    );
    assert_eq!(c.post("/incr").await.status, 503);
    assert_eq!(c.post("/login?user=amy").await.status, 503);
    assert_eq!(c.get("/plain").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_cannot_read_the_version_cannot_connect() {
    let rules = rules_for("acl-noinfo").replace(" +info", "");
    let store = store_as("acl-noinfo", "pw-noinfo", &rules);
    match store.check().await {
        Err(StoreError::Connect { source: e, .. }) => assert!(
            e.to_string()
                .contains("no permissions to run the 'info' command"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_connect_error_without_the_password() {
    store_as("acl-wrongpw", "right-password", &rules_for("acl-wrongpw"));
    let store = RedisStore::from_url(&format!(
        "redis://acl-wrongpw:hunter2-wrong@127.0.0.1:{}",
        ACL_SERVER.port
    ))
    .unwrap();
    let e = store.check().await.unwrap_err();
    let text = format!("{e} {e:?} {store:?}");
    assert!(matches!(e, StoreError::Connect { .. }), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

/// A request on a store with a wrong password: 503, and the log line says why without
/// the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_logged_without_the_password() {
    let logs = common::logs::Logs::capture();
    store_as("acl-logged", "right-password", &rules_for("acl-logged"));
    let store = RedisStore::from_url(&format!(
        "redis://acl-logged:hunter2-logged@127.0.0.1:{}",
        ACL_SERVER.port
    ))
    .unwrap();
    let mut c = Client::new(
        routes::routes().layer(SessionLayer::new(store, SessionConfig::default()).unwrap()),
    );
    assert_eq!(c.post("/incr").await.status, 503);
    let logs = logs.text();
    assert!(logs.contains("session store unavailable"), "{logs}");
    assert!(logs.contains("cannot connect to Redis"), "{logs}");
    assert!(!logs.contains("hunter2"), "{logs}");
}

#[test]
fn the_readme_shows_the_exact_rules() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = format!(
        "ACL SETUSER sessions reset on >CHANGE-ME {}",
        rules_for("session")
    );
    assert!(readme.contains(&line), "README lacks:\n{line}");
}
