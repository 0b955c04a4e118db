//! Every store operation runs in a `session_store` span after the OpenTelemetry
//! database conventions (`db.system.name`, `db.namespace`, `db.operation.name`), whose
//! close records its duration; no span or log line carries a cookie, key, token or user
//! id.

mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use common::{Client, RedisServer};
use tower_redis_session::tokens::{TokenConfig, Tokens};
use tower_redis_session::{RedisStore, SessionConfig, SessionLayer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_operations_have_spans_without_secrets() {
    let logs = common::logs::Logs::capture();
    let server = RedisServer::start();
    let store = RedisStore::from_url(&server.url())
        .unwrap()
        .with_namespace("traced")
        .unwrap();
    let app =
        routes::routes().layer(SessionLayer::new(store.clone(), SessionConfig::default()).unwrap());
    let mut c = Client::new(app);
    c.post("/login?user=user-secret-id").await;
    c.post("/incr").await;
    c.get("/read").await;
    c.post("/logout").await;
    let tokens = Tokens::new(store, TokenConfig::default()).unwrap();
    let pair = tokens.issue("user-secret-id").await.unwrap();
    tokens.authenticate(&pair.access_token).await.unwrap();

    let logs = logs.text();
    for op in [
        "login",
        "update",
        "load",
        "delete",
        "token_issue",
        "token_authenticate",
    ] {
        let line = logs
            .lines()
            .find(|l| l.contains(&format!("db.operation.name=\"{op}\"")) && l.contains("close"))
            .unwrap_or_else(|| panic!("no closed span for {op}:\n{logs}"));
        assert!(line.contains("session_store"), "{line}");
        assert!(line.contains("db.system.name=\"redis\""), "{line}");
        assert!(line.contains("db.namespace=\"traced\""), "{line}");
        assert!(line.contains("time.busy="), "duration recorded: {line}");
    }
    let cookie = c.cookie.clone().unwrap_or_default();
    for secret in ["user-secret-id", &pair.access_token, &pair.refresh_token] {
        assert!(!logs.contains(secret), "{secret} in:\n{logs}");
    }
    if let Some((_, s)) = cookie.split_once('.') {
        assert!(!logs.contains(s));
    }
}
