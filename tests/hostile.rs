//! Hostile input: every malformed, oversized, forged or foreign session cookie is "no
//! session", never reaches Redis (commandstats delta 0), never panics, and is counted.

mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use common::{Client, RedisServer};
use proptest::prelude::*;
use tower_redis_session::{Key, MemoryStore, RedisStore, SessionConfig, SessionLayer};

fn request(cookie_headers: &[HeaderValue]) -> Request<Body> {
    let mut req = Request::get("/read").body(Body::empty()).unwrap();
    for v in cookie_headers {
        req.headers_mut().append(header::COOKIE, v.clone());
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cookies_never_reach_redis() {
    let server = RedisServer::start();
    let key = Key::generate();
    let store = |ns: &str| {
        RedisStore::from_url(&server.url())
            .unwrap()
            .with_namespace(ns)
            .unwrap()
    };
    let user_layer = SessionLayer::new(store("user"), SessionConfig::default())
        .unwrap()
        .with_signed(key.clone());
    let admin_layer = SessionLayer::new(store("admin"), SessionConfig::default())
        .unwrap()
        .with_signed(key.clone());
    let user_app = routes::routes().layer(user_layer.clone());
    let admin_app = routes::routes().layer(admin_layer);

    // Genuine cookies to derive attacks from.
    let mut user = Client::new(user_app.clone());
    user.post("/login?user=alice").await;
    let genuine = user.cookie.clone().unwrap();
    let mut admin = Client::new(admin_app.clone());
    admin.post("/login?user=root").await;
    let admin_cookie = admin.cookie.clone().unwrap();
    assert_eq!(user.get("/read").await.body, "alice");

    let mut tampered = genuine.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let inner = genuine[genuine.len() - 60..].to_owned();
    let hv = |s: &str| HeaderValue::from_str(s).unwrap();
    let many: Vec<HeaderValue> = (0..100)
        .map(|i| hv(&format!("other{i}=value{i}")))
        .chain([hv(&format!("__Host-id={tampered}"))])
        .collect();
    let cases: Vec<(&str, Vec<HeaderValue>)> = vec![
        ("empty", vec![hv("__Host-id=")]),
        ("huge", vec![hv(&format!("__Host-id={}", "A".repeat(9000)))]),
        (
            "non-UTF-8",
            vec![HeaderValue::from_bytes(b"__Host-id=\xff\xfe\xfd\x80abc").unwrap()],
        ),
        (
            "wrong length",
            vec![hv(&format!("__Host-id={}", &genuine[..genuine.len() - 1]))],
        ),
        (
            "bad base64",
            vec![hv(&format!("__Host-id={}!", &genuine[..genuine.len() - 1]))],
        ),
        (
            "wrong signature",
            vec![hv(&format!("__Host-id={tampered}"))],
        ),
        ("unsigned id", vec![hv(&format!("__Host-id={inner}"))]),
        (
            "another namespace's genuine cookie",
            vec![hv(&format!("__Host-id={admin_cookie}"))],
        ),
        ("glob *", vec![hv("__Host-id=*")]),
        ("glob ?", vec![hv("__Host-id=????????????????.???")]),
        ("glob [", vec![hv("__Host-id=[a-z]*")]),
        ("protocol", vec![hv("__Host-id=x%0D%0AFLUSHALL%0D%0A")]),
        (
            "escaped protocol",
            vec![hv("__Host-id=\\r\\nFLUSHALL\\r\\n")],
        ),
        ("many Cookie headers", many),
        (
            "duplicate session cookies",
            vec![hv(&format!("__Host-id={genuine}; __Host-id={genuine}"))],
        ),
        (
            "duplicate across headers",
            vec![
                hv(&format!("__Host-id={genuine}")),
                hv(&format!("__Host-id={admin_cookie}")),
            ],
        ),
    ];
    // Warm up so connection set-up does not count.
    user.get("/read").await;
    for (name, headers) in cases {
        let before_count = user_layer.rejected_cookies();
        let before = server.command_calls();
        let reply = common::client::send(user_app.clone(), request(&headers)).await;
        let delta = RedisServer::delta(&before, &server.command_calls());
        assert_eq!(reply.status, 401, "{name}: no session");
        assert!(delta.is_empty(), "{name} reached Redis: {delta:?}");
        assert_eq!(
            user_layer.rejected_cookies(),
            before_count + 1,
            "{name}: counted"
        );
        let removal = reply.set_cookie.expect("removal cookie");
        assert!(removal.is_removal(), "{name}");
        assert_eq!(removal.value, "", "{name}: the removal carries no value");
        // Nothing the client sent comes back in any header.
        for (h, v) in reply.headers.iter() {
            let v = String::from_utf8_lossy(v.as_bytes());
            assert!(
                !v.contains(&genuine),
                "{name}: the genuine value echoed in {h}"
            );
            for sent in &headers {
                let sent = String::from_utf8_lossy(sent.as_bytes());
                let sent = sent.split_once("__Host-id=").map_or("", |(_, v)| v);
                let sent = sent.split(';').next().unwrap_or("");
                assert!(
                    sent.len() < 4 || !v.contains(sent),
                    "{name}: the cookie value echoed in {h}"
                );
            }
        }
    }
    assert_eq!(
        user.get("/read").await.body,
        "alice",
        "the real session is unharmed"
    );
}

#[tokio::test]
async fn oversized_session_is_a_clear_error_and_changes_nothing() {
    let config = SessionConfig::default().with_max_session_size(100);
    let store = MemoryStore::new();
    let mut c = Client::new(routes::routes().layer(SessionLayer::new(store, config).unwrap()));
    c.post("/set?key=a&value=small").await;
    let big = "x".repeat(200);
    let r = c.post(&format!("/set?key=b&value={big}")).await;
    assert_eq!(r.status, 413);
    assert!(r.set_cookie.is_none());
    assert_eq!(c.get("/get?key=a").await.body, "small");
    assert_eq!(c.get("/get?key=b").await.status, 404);
    // Replacing a value counts the new size, not both.
    let r = c
        .post(&format!("/set?key=a&value={}", "y".repeat(80)))
        .await;
    assert_eq!(r.status, 200);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A store holding one live session of alice (with a note), its cookie, and an app on
/// it: the property tests check that hostile input never reaches it.
fn seeded(rt: &tokio::runtime::Runtime, signed: bool) -> (MemoryStore, axum::Router, String) {
    let store = MemoryStore::new();
    let layer = SessionLayer::new(store.clone(), SessionConfig::default()).unwrap();
    let app = if signed {
        routes::routes().layer(layer.with_signed(Key::from(&[7u8; 64])))
    } else {
        routes::routes().layer(layer)
    };
    let mut alice = Client::new(app.clone());
    rt.block_on(async {
        alice.post("/login?user=alice").await;
        assert_eq!(alice.post("/set?key=note&value=hers").await.status, 200);
    });
    (store, app, alice.cookie.unwrap())
}

/// alice's session as the test left it: still hers, its note unchanged.
fn alice_intact(rt: &tokio::runtime::Runtime, app: &axum::Router, cookie: &str) -> bool {
    let mut alice = Client::new(app.clone());
    alice.cookie = Some(cookie.to_owned());
    rt.block_on(async {
        alice.get("/read").await.body == "alice" && alice.get("/get?key=note").await.body == "hers"
    })
}

/// Bytes a `Cookie` header value may hold (tab, visible ASCII, obs-text), so no case is
/// filtered out before it reaches the layer.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff],
        0..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes in any number of `Cookie` headers: a response, never a panic, never
    /// the session that lives in the store.
    #[test]
    fn arbitrary_cookie_headers_are_safe(
        headers in prop::collection::vec(header_bytes(), 0..4),
        signed in any::<bool>(),
    ) {
        let rt = runtime();
        let (store, app, alice) = seeded(&rt, signed);
        let values: Vec<HeaderValue> = headers
            .iter()
            .map(|b| {
                let mut v = b"__Host-id=".to_vec();
                v.extend_from_slice(b);
                HeaderValue::from_bytes(&v).expect("a valid header value")
            })
            .collect();
        let reply = rt.block_on(common::client::send(app.clone(), request(&values)));
        prop_assert_eq!(reply.status.as_u16(), 401);
        prop_assert_eq!(store.live_sessions(), 1, "no session made by a read");
        prop_assert!(alice_intact(&rt, &app, &alice));
    }

    /// Valid-looking ids built from arbitrary characters of the right alphabet and
    /// length, used for a write: the write lands in a new session of its own, never in
    /// the one that lives in the store.
    #[test]
    fn near_valid_ids_are_safe(tag in "[A-Za-z0-9_-]{16}", secret in "[A-Za-z0-9_=+/-]{40,46}") {
        let rt = runtime();
        let (store, app, alice) = seeded(&rt, false);
        let mut c = Client::new(app.clone());
        c.cookie = Some(format!("{tag}.{secret}"));
        let reply = rt.block_on(c.post("/incr"));
        prop_assert_eq!(reply.body.as_str(), "1", "a fresh session, not alice's");
        prop_assert_ne!(c.cookie.as_deref(), Some(alice.as_str()));
        prop_assert_eq!(store.live_sessions(), 2);
        prop_assert!(alice_intact(&rt, &app, &alice));
    }
}
