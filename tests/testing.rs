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
