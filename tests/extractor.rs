//! The axum extractor: `Session`, `Option<Session>`, and the missing-layer rejection.

mod common;

use axum::Router;
use axum::routing::get;
use common::Client;
use tower_redis_session::{MemoryStore, Session, SessionConfig, SessionLayer};

fn routes() -> Router {
    Router::new()
        .route("/required", get(|_: Session| async { "has session" }))
        .route(
            "/optional",
            get(|s: Option<Session>| async move { if s.is_some() { "some" } else { "none" } }),
        )
}

#[tokio::test]
async fn without_the_layer_the_rejection_says_so() {
    let mut c = Client::new(routes());
    let r = c.get("/required").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("is SessionLayer installed"), "{}", r.body);
    assert_eq!(c.get("/optional").await.body, "none");
}

#[tokio::test]
async fn with_the_layer_both_extract() {
    let layer = SessionLayer::new(MemoryStore::new(), SessionConfig::default()).unwrap();
    let mut c = Client::new(routes().layer(layer));
    assert_eq!(c.get("/required").await.body, "has session");
    assert_eq!(c.get("/optional").await.body, "some");
}
