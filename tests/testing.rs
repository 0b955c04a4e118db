//! `SessionTester`: handlers called directly behave as through the layer (same store
//! writes, same cookie), for plain and signed cookies.

mod common;

use std::time::Duration;

use tower_redis_session::testing::{Finished, SessionTester};
use tower_redis_session::{
    Expiry, Key, MemoryStore, Session, SessionConfig, SessionError, SessionLayer,
};

async fn visit(session: Session) -> Result<u64, SessionError> {
    let n: u64 = session.get("visits").await?.unwrap_or(0) + 1;
    session.insert("visits", n).await?;
    Ok(n)
}

async fn login(session: Session, user: &str) -> Result<(), SessionError> {
    session.login(user).await?;
    session
        .set_expiry(Expiry::remember_me(Duration::from_secs(86_400)))
        .await
}

#[tokio::test]
async fn a_handler_called_directly_keeps_its_session_across_requests() {
    let store = MemoryStore::new();
    let layer = SessionLayer::new(store.clone(), SessionConfig::default())
        .unwrap()
        .with_signed(Key::generate());
    let users = layer.admin();
    let mut browser = SessionTester::new(layer);

    let s = browser.session();
    assert_eq!(visit(s.clone()).await.unwrap(), 1);
    assert!(matches!(
        browser.finish(s).await,
        Finished::CookieSet { max_age: None }
    ));
    let first = browser.cookie().unwrap().to_owned();

    // A read-only request: nothing written, the cookie stays.
    let s = browser.session();
    assert_eq!(s.get::<u64>("visits").await.unwrap(), Some(1));
    assert!(matches!(browser.finish(s).await, Finished::CookieKept));

    // Login rotates the id and makes the cookie persistent.
    let s = browser.session();
    login(s.clone(), "ada").await.unwrap();
    assert!(matches!(
        browser.finish(s).await,
        Finished::CookieSet { max_age: Some(_) }
    ));
    assert_ne!(browser.cookie().unwrap(), first);
    let s = browser.session();
    assert_eq!(s.user_id().await.unwrap().as_deref(), Some("ada"));
    assert_eq!(
        visit(s.clone()).await.unwrap(),
        2,
        "the data moved with the login"
    );
    browser.finish(s).await;
    assert_eq!(users.list("ada").await.unwrap().len(), 1);

    // The old cookie names no session any more; a forged one neither.
    browser.set_cookie(Some(first));
    assert_eq!(browser.session().user_id().await.unwrap(), None);
    browser.set_cookie(Some("forged".into()));
    assert_eq!(browser.session().user_id().await.unwrap(), None);
}

#[tokio::test]
async fn logout_removes_the_cookie() {
    let layer = SessionLayer::new(MemoryStore::new(), SessionConfig::default()).unwrap();
    let mut browser = SessionTester::new(layer);
    let s = browser.session();
    visit(s.clone()).await.unwrap();
    browser.finish(s).await;
    let s = browser.session();
    s.destroy().await.unwrap();
    assert!(matches!(browser.finish(s).await, Finished::CookieRemoved));
    assert_eq!(browser.cookie(), None);
}

/// A whole `Router` driven through the tester's cookie jar: its layers and extractors
/// run, the session cookie goes out with each request (beside the request's own
/// cookies) and comes back from each response, signed cookies included.
#[tokio::test]
async fn a_router_is_driven_with_the_cookie_jar() {
    use axum::body::Body;
    use axum::http::{Request, header};
    use axum::routing::{get, post};
    use http_body_util::BodyExt;

    let layer = SessionLayer::new(MemoryStore::new(), SessionConfig::default())
        .unwrap()
        .with_signed(Key::generate());
    let app = axum::Router::new()
        .route(
            "/visit",
            post(|s: Session| async move { visit(s).await.map(|n| n.to_string()) }),
        )
        .route("/login", post(|s: Session| login(s, "ada")))
        .route(
            "/who",
            get(|s: Session, h: axum::http::HeaderMap| async move {
                let theme = h[header::COOKIE].to_str().unwrap().contains("theme=dark");
                let user = s.user_id().await?.unwrap_or_default();
                Ok::<_, SessionError>(format!("{user} {theme}"))
            }),
        )
        .route(
            "/logout",
            post(|s: Session| async move { s.destroy().await }),
        )
        .layer(layer.clone());
    let mut browser = SessionTester::new(layer);
    let body = |res: axum::response::Response| async move {
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    };
    let post_to = |uri: &str| Request::post(uri).body(Body::empty()).unwrap();
    assert_eq!(
        body(browser.send(app.clone(), post_to("/visit")).await).await,
        "1"
    );
    let anonymous = browser.cookie().map(str::to_owned);
    assert_eq!(
        body(browser.send(app.clone(), post_to("/visit")).await).await,
        "2"
    );
    browser.send(app.clone(), post_to("/login")).await;
    assert_ne!(
        browser.cookie().map(str::to_owned),
        anonymous,
        "a new id at login"
    );
    let who = Request::get("/who")
        .header(header::COOKIE, "theme=dark")
        .body(Body::empty())
        .unwrap();
    assert_eq!(body(browser.send(app.clone(), who).await).await, "ada true");
    assert_eq!(
        body(browser.send(app.clone(), post_to("/visit")).await).await,
        "3"
    );
    // The tester and the app see the same session.
    assert_eq!(
        browser.session().user_id().await.unwrap().as_deref(),
        Some("ada")
    );
    browser.send(app.clone(), post_to("/logout")).await;
    assert_eq!(browser.cookie(), None, "the removal cookie empties the jar");
    assert_eq!(body(browser.send(app, post_to("/visit")).await).await, "1");
}

/// `TestRedis`: a throwaway `redis-server` (REDIS_URL is not set in this suite's
/// environment... unless it is, and then that server is used), and a namespace of its
/// own on a shared server, cleaned up on drop.
#[cfg(feature = "test-redis")]
mod test_redis {
    use super::*;
    use tower_redis_session::testing::TestRedis;

    #[tokio::test]
    async fn a_test_gets_a_real_redis_and_leaves_nothing_behind() {
        let redis = TestRedis::start().unwrap();
        let layer = SessionLayer::new(redis.store().unwrap(), SessionConfig::default()).unwrap();
        let mut browser = SessionTester::new(layer);
        let s = browser.session();
        assert_eq!(visit(s.clone()).await.unwrap(), 1);
        browser.finish(s).await;
        let s = browser.session();
        assert_eq!(visit(s.clone()).await.unwrap(), 2, "stored in Redis");
        browser.finish(s).await;
        let url = redis.url().to_owned();
        drop(redis);
        if std::env::var("REDIS_URL").is_err() {
            let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
            assert!(
                std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
                "the throwaway server stopped"
            );
        }
    }

    #[tokio::test]
    async fn on_a_shared_server_each_test_has_its_namespace_and_cleans_it() {
        let server = crate::common::RedisServer::start();
        let (a, b) = (TestRedis::on(server.url()), TestRedis::on(server.url()));
        assert_ne!(a.namespace(), b.namespace());
        for t in [&a, &b] {
            let mut browser = SessionTester::new(
                SessionLayer::new(t.store().unwrap(), SessionConfig::default()).unwrap(),
            );
            let s = browser.session();
            s.login("ada").await.unwrap();
            browser.finish(s).await;
        }
        let keys = |ns: &str| server.raw(&format!("KEYS {ns}:*")).unwrap_or_default();
        let ns_a = a.namespace().to_owned();
        assert!(!keys(&ns_a).starts_with("*0"), "a wrote keys");
        drop(a);
        assert!(
            keys(&ns_a).starts_with("*0"),
            "a's keys are gone: {}",
            keys(&ns_a)
        );
        assert!(!keys(b.namespace()).starts_with("*0"), "b's are untouched");
    }
}
