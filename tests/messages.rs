//! Flash messages on the session: kept until a request reads them, read once, carried
//! across a redirect and a logout, bounded; on the in-memory store and a real Redis.
#![cfg(feature = "messages")]

mod common;

use axum::Router;
use axum::response::Redirect;
use axum::routing::{get, post};
use common::Client;
use tower_redis_session::messages::{Level, Messages};
use tower_redis_session::{
    MemoryStore, RedisStore, Session, SessionConfig, SessionError, SessionLayer, SessionStore,
};

fn app<S: SessionStore>(store: S) -> Router {
    Router::new()
        .route(
            "/save",
            post(|m: Messages| async move {
                m.success("Saved").info("Two of them");
                Redirect::to("/show")
            }),
        )
        .route(
            "/show",
            get(|m: Messages| async move {
                m.map(|m| format!("{}:{}", m.level, m.message))
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        )
        .route(
            "/first",
            get(|mut m: Messages| async move { m.next().map(|m| m.message).unwrap_or_default() }),
        )
        .route("/other", get(|| async { "no messages read" }))
        .route(
            "/logout",
            post(|s: Session, m: Messages| async move {
                s.destroy().await?;
                m.push(Level::Warning, "Signed out", None);
                Ok::<_, SessionError>("bye")
            }),
        )
        .route(
            "/spam",
            post(|m: Messages| async move {
                for i in 0..50 {
                    m.clone().info(format!("n{i}"));
                }
            }),
        )
        .layer(SessionLayer::new(store, SessionConfig::default()).unwrap())
}

async fn messages_survive_a_redirect_and_are_read_once(app: Router) {
    let mut c = Client::new(app);
    assert_eq!(c.post("/save").await.status, 303);
    assert_eq!(c.get("/other").await.body, "no messages read");
    assert_eq!(c.get("/show").await.body, "success:Saved,info:Two of them");
    assert_eq!(c.get("/show").await.body, "", "read once");
    // Only what was yielded is gone.
    c.post("/save").await;
    assert_eq!(c.get("/first").await.body, "Saved");
    assert_eq!(c.get("/show").await.body, "info:Two of them");
    // A message added after a logout reaches the next, anonymous request.
    c.post("/save").await;
    c.get("/show").await;
    assert_eq!(c.post("/logout").await.body, "bye");
    assert_eq!(c.get("/show").await.body, "warning:Signed out");
    // Bounded: the newest 32 are kept.
    c.post("/spam").await;
    let shown = c.get("/show").await.body;
    let shown: Vec<&str> = shown.split(',').collect();
    assert_eq!(shown.len(), 32);
    assert_eq!((shown[0], shown[31]), ("info:n18", "info:n49"));
}

#[tokio::test]
async fn on_the_memory_store() {
    messages_survive_a_redirect_and_are_read_once(app(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    let store: RedisStore = common::stores::redis_store("flash");
    messages_survive_a_redirect_and_are_read_once(app(store)).await;
}

#[tokio::test]
async fn without_the_layer_the_rejection_says_so() {
    let app = Router::new().route("/show", get(|_: Messages| async { "never" }));
    let r = Client::new(app).get("/show").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("is SessionLayer installed"), "{}", r.body);
}
