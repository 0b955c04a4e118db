//! CSRF protection ([`CsrfLayer`], [`CsrfToken`]): fetch metadata, `Origin`, the token
//! fallback and its hostile inputs, on `MemoryStore`, Redis and a Redis Cluster.

#[macro_use]
mod common;

use axum::Router;
use axum::extract::Form;
use axum::routing::{get, post};
use common::{Client, TestStore};
use tower_redis_session::{
    ConfigError, CsrfLayer, CsrfToken, Session, SessionConfig, SessionError, SessionLayer,
};

macro_rules! all_cases {
    ($store:ident, $make:path) => {
        store_cases!($store, $make;
            fetch_metadata_decides, origin_decides_without_fetch_metadata,
            tokens_are_the_fallback, hostile_tokens_are_refused,
        );
    };
}

all_cases!(memory_store, super::common::stores::memory_store);
all_cases!(redis_store, super::common::stores::redis_store);
all_cases!(redis_cluster, super::common::stores::cluster_store);

#[test]
fn trusted_origins_must_be_origins() {
    assert!(matches!(
        CsrfLayer::new().with_trusted_origin("https://app.example.com/path"),
        Err(ConfigError::TrustedOrigin(_))
    ));
}

mod cases {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Note {
        note: String,
    }

    fn app<S: TestStore>(s: S) -> Router {
        Router::new()
            .route(
                "/form",
                get(|token: CsrfToken| async move { token.to_string() }),
            )
            .route(
                "/change",
                post(|Form(n): Form<Note>| async move { format!("changed: {}", n.note) }),
            )
            .route(
                "/plain",
                post(|session: Session| async move {
                    session.insert("x", 1).await?;
                    Ok::<_, SessionError>("changed")
                }),
            )
            .route(
                "/logout",
                post(|session: Session| async move {
                    session.destroy().await?;
                    Ok::<_, SessionError>("ok")
                }),
            )
            .layer(
                CsrfLayer::new()
                    .with_trusted_origin("https://front.example.com")
                    .unwrap(),
            )
            .layer(SessionLayer::new(s, SessionConfig::default()).unwrap())
    }

    fn with(c: &Client, headers: &[(&'static str, &str)]) -> Client {
        let mut c = c.clone();
        c.headers = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        c
    }

    pub async fn fetch_metadata_decides<S: TestStore>(s: S) {
        let base = Client::new(app(s));
        for (site, status) in [
            ("same-origin", 200),
            ("none", 200),
            ("same-site", 403),
            ("cross-site", 403),
            ("garbage", 403),
        ] {
            let mut c = with(&base, &[("sec-fetch-site", site)]);
            let r = c.post_form("/change", "note=hi").await;
            assert_eq!(r.status, status, "{site}: {}", r.body);
            if status == 200 {
                assert_eq!(r.body, "changed: hi", "the body reaches the handler");
            } else {
                assert!(r.body.contains("cross-origin"), "{}", r.body);
            }
            // Safe methods are never refused.
            assert_eq!(c.get("/form").await.status, 200, "{site}");
        }
        // A cross-site POST from a trusted origin passes; bearer requests are exempt.
        let mut trusted = with(
            &base,
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://front.example.com"),
            ],
        );
        assert_eq!(trusted.post_form("/change", "note=a").await.status, 200);
        let mut api = with(
            &base,
            &[
                ("sec-fetch-site", "cross-site"),
                ("authorization", "Bearer abc"),
            ],
        );
        assert_eq!(api.post_form("/change", "note=a").await.status, 200);
    }

    pub async fn origin_decides_without_fetch_metadata<S: TestStore>(s: S) {
        let base = Client::new(app(s));
        for (origin, status) in [
            ("http://app.test", 200),
            ("https://APP.test", 200),
            ("http://app.test:8080", 403),
            ("http://evil.test", 403),
            ("null", 403),
        ] {
            let mut c = with(&base, &[("host", "app.test"), ("origin", origin)]);
            let r = c.post_form("/change", "note=hi").await;
            assert_eq!(r.status, status, "{origin}: {}", r.body);
        }
    }

    pub async fn tokens_are_the_fallback<S: TestStore>(s: S) {
        // Neither fetch metadata nor Origin (an old browser, a script).
        let mut c = Client::new(app(s));
        assert_eq!(
            c.post_form("/change", "note=hi").await.status,
            403,
            "no token"
        );
        let token = c.get("/form").await.body;
        let again = c.get("/form").await.body;
        assert_ne!(token, again, "masked: different bytes on every render");
        let r = c
            .post_form("/change", &format!("a=1&csrf_token={token}&note=hi"))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body, "changed: hi",
            "the form reaches the handler unchanged"
        );
        // Either token works, and more than once, in the header as well.
        let mut h = with(&c, &[("x-csrf-token", &again)]);
        assert_eq!(h.post("/plain").await.status, 200);
        assert_eq!(
            c.post_form("/change", &format!("csrf_token={token}&note=x"))
                .await
                .status,
            200
        );
        // A token is bound to its session: useless in another, and after logout.
        let mut other = Client::new(c.app.clone());
        other.get("/form").await;
        assert_eq!(
            other
                .post_form("/change", &format!("csrf_token={token}&note=x"))
                .await
                .status,
            403
        );
        let mut no_session = Client::new(c.app.clone());
        assert_eq!(
            no_session
                .post_form("/change", &format!("csrf_token={token}&note=x"))
                .await
                .status,
            403
        );
        assert_eq!(
            with(&c, &[("x-csrf-token", &token)])
                .post("/logout")
                .await
                .status,
            200
        );
        c.cookie = None;
        assert_eq!(
            c.post_form("/change", &format!("csrf_token={token}&note=x"))
                .await
                .status,
            403
        );
    }

    pub async fn hostile_tokens_are_refused<S: TestStore>(s: S) {
        let mut c = Client::new(app(s));
        let token = c.get("/form").await.body;
        let mut flipped = token.clone().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        let long = "A".repeat(100_000);
        for bad in [
            "",
            "x",
            flipped.as_str(),
            &token[..token.len() - 1],
            "%41%41",
            long.as_str(),
        ] {
            let r = c
                .post_form("/change", &format!("csrf_token={bad}&note=x"))
                .await;
            assert!(
                r.status == 403 || r.status == 413,
                "{}: {}",
                bad.len(),
                r.status
            );
            assert!(!r.body.contains(&token), "no secret in a refusal");
        }
        let mut h = with(&c, &[("x-csrf-token", "ünicode garbage")]);
        assert_eq!(h.post("/plain").await.status, 403);
    }
}
