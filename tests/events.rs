//! Lifecycle events: each kind emitted exactly once for its action, with the right
//! fields and nothing secret, on `MemoryStore` and on a real `redis-server`; the hook
//! never blocks a request.

#[macro_use]
mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use common::{Client, TestStore};
use tower_redis_session::events::{EventKind, RevokeReason, SessionEvent};
use tower_redis_session::{LimitPolicy, MemoryStore, SessionConfig, SessionLayer};

macro_rules! all_cases {
    ($store:ident, $make:path) => {
        store_cases!($store, $make;
            session_lifecycle_events, revocation_events, invalid_cookie_events,
            no_secret_in_any_event, expiry_is_reported_once,
        );
    };
}

all_cases!(memory_store, super::common::stores::memory_store);
all_cases!(redis_store, super::common::stores::redis_store);

/// Collects events delivered to the hook of the layers it is attached to.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<SessionEvent>>>, Arc<Mutex<Vec<SessionLayer>>>);

impl Recorder {
    fn hook(&self) -> impl Fn(&SessionEvent) + Send + Sync + 'static {
        let events = self.0.clone();
        move |e: &SessionEvent| events.lock().unwrap().push(e.clone())
    }

    /// Installs the hook on `layer`, whose queue [`take`](Self::take) drains.
    fn attach(&self, layer: SessionLayer) -> SessionLayer {
        let layer = layer.with_events(self.hook());
        self.1.lock().unwrap().push(layer.clone());
        layer
    }

    /// Waits until the hooks have seen every event queued so far (they run on another
    /// thread), then returns them all, checking that there are exactly `n`.
    async fn take(&self, n: usize) -> Vec<SessionEvent> {
        let layers = self.1.lock().unwrap().clone();
        for layer in layers {
            tokio::time::timeout(Duration::from_secs(10), layer.flush_events())
                .await
                .expect("the hook drains its queue");
        }
        let events = std::mem::take(&mut *self.0.lock().unwrap());
        assert_eq!(events.len(), n, "{events:#?}");
        events
    }
}

mod cases {
    use super::*;

    fn config() -> SessionConfig {
        SessionConfig::default().with_client_ip_header(http::HeaderName::from_static("x-real-ip"))
    }

    fn app<S: TestStore>(s: S, config: SessionConfig, rec: &Recorder) -> (Router, SessionLayer) {
        let layer = rec.attach(SessionLayer::new(s, config).unwrap());
        let app = routes::routes()
            .merge(common::session_routes::per_user())
            .layer(layer.clone());
        (app, layer)
    }

    fn client(app: &Router, ip: &str) -> Client {
        let mut c = Client::new(app.clone());
        c.headers = vec![
            ("user-agent", format!("agent-{ip}")),
            ("x-real-ip", ip.to_owned()),
        ];
        c
    }

    fn check(e: &SessionEvent, kind: EventKind, handle: Option<&str>, user: Option<&str>) {
        assert_eq!(e.kind, kind, "{e:?}");
        assert_eq!(e.handle.map(|h| h.to_string()).as_deref(), handle, "{e:?}");
        assert_eq!(e.user_id.as_deref(), user, "{e:?}");
    }

    pub async fn session_lifecycle_events<S: TestStore>(s: S) {
        let rec = Recorder::default();
        // idle 2 s, refresh below 1.9 s: a read 200 ms later refreshes.
        let config = config()
            .with_idle_timeout(Duration::from_secs(2))
            .with_refresh_threshold(Duration::from_millis(1900));
        let (app, _) = app(s.clone(), config, &rec);
        let mut c = client(&app, "192.0.2.1");

        assert_eq!(c.get("/plain").await.status, 200);
        rec.take(0).await;

        c.post("/incr").await;
        let handle = c.get("/handle").await.body;
        let created = rec.take(1).await;
        check(&created[0], EventKind::Created, Some(&handle), None);
        let ns = tower_redis_session::SessionStore::namespace(&s);
        assert_eq!(created[0].namespace, ns);
        assert_eq!(created[0].ip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(created[0].user_agent.as_deref(), Some("agent-192.0.2.1"));

        c.post("/login?user=alice").await;
        let login = rec.take(1).await;
        check(&login[0], EventKind::Login, Some(&handle), Some("alice"));

        c.post("/cycle").await;
        check(
            &rec.take(1).await[0],
            EventKind::IdRotated,
            Some(&handle),
            Some("alice"),
        );

        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(c.get("/read").await.body, "alice");
        check(
            &rec.take(1).await[0],
            EventKind::Refreshed,
            Some(&handle),
            Some("alice"),
        );
        // A write is not a refresh event.
        c.post("/incr").await;
        rec.take(0).await;

        c.post("/logout").await;
        check(
            &rec.take(1).await[0],
            EventKind::Logout,
            Some(&handle),
            Some("alice"),
        );

        // Logout of a session the handler never read still names it.
        let mut d = client(&app, "192.0.2.2");
        d.post("/login?user=bob").await;
        let events = rec.take(2).await;
        check(
            &events[0],
            EventKind::Created,
            events[0].handle.map(|h| h.to_string()).as_deref(),
            None,
        );
        let bob = events[1].handle.unwrap().to_string();
        check(&events[1], EventKind::Login, Some(&bob), Some("bob"));
        d.post("/logout").await;
        check(
            &rec.take(1).await[0],
            EventKind::Logout,
            Some(&bob),
            Some("bob"),
        );
        // Destroying nothing is no event.
        d.post("/logout").await;
        rec.take(0).await;
    }

    pub async fn revocation_events<S: TestStore>(s: S) {
        let rec = Recorder::default();
        let config = config().with_max_sessions_per_user(2, LimitPolicy::EvictOldest);
        let (app, layer) = app(s, config, &rec);
        let mut devices = Vec::new();
        for i in 0..2 {
            let mut c = client(&app, &format!("192.0.2.{i}"));
            c.post("/login?user=carol").await;
            devices.push(c);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let first = devices[0].get("/handle").await.body;
        let second = devices[1].get("/handle").await.body;
        rec.take(4).await; // two new sessions, each created and logged in
        // A third login evicts the least recently active (the first).
        devices[1].get("/read").await;
        let mut third = client(&app, "192.0.2.9");
        third.post("/login?user=carol").await;
        let events = rec.take(3).await;
        check(
            &events[0],
            EventKind::Revoked(RevokeReason::EvictedByCap),
            Some(&first),
            Some("carol"),
        );
        assert_eq!(
            events[0].ip,
            Some("192.0.2.9".parse().unwrap()),
            "the acting request"
        );
        assert_eq!(events[1].kind, EventKind::Created);
        assert_eq!(events[2].kind, EventKind::Login);

        assert_eq!(
            third.post(&format!("/revoke?handle={second}")).await.body,
            "true"
        );
        check(
            &rec.take(1).await[0],
            EventKind::Revoked(RevokeReason::Revoke),
            Some(&second),
            Some("carol"),
        );
        let mut fourth = client(&app, "192.0.2.10");
        fourth.post("/login?user=carol").await;
        rec.take(2).await;
        assert_eq!(third.post("/everywhere").await.body, "2");
        let events = rec.take(2).await;
        for e in &events {
            assert_eq!(e.kind, EventKind::Revoked(RevokeReason::LogoutEverywhere));
            assert_eq!(e.user_id.as_deref(), Some("carol"));
        }
        // "Sign out all other devices" says so.
        let mut fifth = client(&app, "192.0.2.12");
        fifth.post("/login?user=carol").await;
        let mut sixth = client(&app, "192.0.2.13");
        sixth.post("/login?user=carol").await;
        rec.take(4).await;
        assert_eq!(sixth.post("/revoke_others").await.body, "1");
        let e = &rec.take(1).await[0];
        assert_eq!(e.kind, EventKind::Revoked(RevokeReason::RevokeOthers));
        assert_eq!(e.kind.reason(), Some("revoke_others"));
        assert_eq!(e.user_id.as_deref(), Some("carol"));
        // The admin API, without a request: no client details.
        let mut c = client(&app, "192.0.2.11");
        c.post("/login?user=carol").await;
        rec.take(2).await;
        assert_eq!(layer.admin().revoke_all("carol").await.unwrap(), 2);
        let e = &rec.take(2).await[0];
        assert_eq!(e.kind, EventKind::Revoked(RevokeReason::LogoutEverywhere));
        assert_eq!((e.ip, e.user_agent.as_deref()), (None, None));
    }

    pub async fn invalid_cookie_events<S: TestStore>(s: S) {
        let rec = Recorder::default();
        let (app, layer) = app(s, config(), &rec);
        let mut c = client(&app, "198.51.100.7");
        c.cookie = Some("forged-value".into());
        assert_eq!(c.get("/read").await.status, 401);
        c.cookie = Some("forged-value".into());
        c.get("/read").await;
        c.cookie = Some("another".into());
        c.get("/read").await;
        let events = rec.take(3).await;
        for e in &events {
            assert_eq!(e.kind, EventKind::InvalidCookie);
            assert_eq!(e.ip, Some("198.51.100.7".parse().unwrap()));
            assert_eq!(e.handle, None);
        }
        let fp: Vec<_> = events
            .iter()
            .map(|e| e.fingerprint.clone().unwrap())
            .collect();
        assert_eq!(fp[0], fp[1], "repeats correlate");
        assert_ne!(fp[0], fp[2]);
        assert!(!fp[0].contains("forged"));
        assert_eq!(layer.rejected_cookies(), 3);
    }

    pub async fn expiry_is_reported_once<S: TestStore>(s: S) {
        let rec = Recorder::default();
        let config = config().with_idle_timeout(Duration::from_secs(1));
        let (app, layer) = app(s.clone(), config, &rec);
        let watcher = s.watch_expired(&layer);
        tokio::time::timeout(Duration::from_secs(10), watcher.subscribed())
            .await
            .expect("the watcher subscribes");
        let mut c = client(&app, "192.0.2.5");
        c.post("/login?user=henry").await;
        let handle = c.get("/handle").await.body;
        rec.take(2).await; // created, login
        let mut expired = Vec::new();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            expired = rec.0.lock().unwrap().clone();
            if !expired.is_empty() {
                break;
            }
        }
        assert_eq!(expired.len(), 1, "{expired:?}");
        check(
            &expired[0],
            EventKind::Expired,
            Some(&handle),
            Some("henry"),
        );
        // Later accesses and listings do not report it again.
        assert_eq!(c.get("/read").await.status, 401);
        assert!(layer.admin().list("henry").await.unwrap().is_empty());
        assert_eq!(rec.take(1).await[0].kind, EventKind::Expired);
        watcher.abort();
    }

    /// The cookie secret and the key hash (the SHA-256 of the secret, the Redis key)
    /// of a cookie value.
    fn secrets_of(cookie: &str) -> [String; 2] {
        use base64::Engine as _;
        use sha2::Digest as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let secret = cookie.split_once('.').unwrap().1.to_owned();
        let hash = b64.encode(sha2::Sha256::digest(b64.decode(&secret).unwrap()));
        [secret, hash]
    }

    pub async fn no_secret_in_any_event<S: TestStore>(s: S) {
        let rec = Recorder::default();
        let config = config().with_max_sessions_per_user(2, LimitPolicy::EvictOldest);
        // Reads through `refresher` always refresh (threshold = idle timeout).
        let (refresher, _) = app(
            s.clone(),
            config
                .clone()
                .with_refresh_threshold(Duration::from_secs(30 * 60)),
            &rec,
        );
        let (app, _) = app(s, config, &rec);
        let mut cookies = Vec::new();
        let mut events = Vec::new();
        let mut c = client(&app, "192.0.2.1");
        c.post("/incr").await; // created
        cookies.push(c.cookie.clone().unwrap());
        c.post("/login?user=dave").await; // login
        cookies.push(c.cookie.clone().unwrap());
        c.post("/cycle").await; // id_rotated
        cookies.push(c.cookie.clone().unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut via_refresher = Client {
            app: refresher,
            ..c.clone()
        };
        via_refresher.get("/read").await; // refreshed
        events.extend(rec.take(4).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut d = client(&app, "192.0.2.2");
        d.post("/login?user=dave").await; // created, login
        cookies.push(d.cookie.clone().unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut e = client(&app, "192.0.2.3");
        e.post("/login?user=dave").await; // created, login, revoked (evicted_by_cap: c)
        cookies.push(e.cookie.clone().unwrap());
        events.extend(rec.take(5).await);
        let handle_d = d.get("/handle").await.body;
        e.post(&format!("/revoke?handle={handle_d}")).await; // revoked (revoke)
        let mut f = client(&app, "192.0.2.4");
        f.post("/login?user=dave").await; // created, login
        cookies.push(f.cookie.clone().unwrap());
        f.post("/revoke_others").await; // revoked (revoke_others: e)
        f.post("/everywhere").await; // revoked (logout_everywhere: f)
        events.extend(rec.take(5).await);
        let mut g = client(&app, "192.0.2.5");
        g.cookie = Some("forged.not-a-real-secret-but-echo-me".into());
        g.get("/read").await; // invalid_cookie
        let mut h = client(&app, "192.0.2.6");
        h.post("/incr").await; // created
        cookies.push(h.cookie.clone().unwrap());
        h.post("/logout").await; // logout
        events.extend(rec.take(3).await);

        let json = serde_json::to_string(&events).unwrap();
        let kinds: std::collections::BTreeSet<String> = events
            .iter()
            .map(|e| match e.kind.reason() {
                Some(r) => format!("{}:{r}", e.kind.name()),
                None => e.kind.name().to_owned(),
            })
            .collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            [
                "created",
                "id_rotated",
                "invalid_cookie",
                "login",
                "logout",
                "refreshed",
                "revoked:evicted_by_cap",
                "revoked:logout_everywhere",
                "revoked:revoke",
                "revoked:revoke_others",
            ]
        );
        for cookie in &cookies {
            let [secret, hash] = secrets_of(cookie);
            assert!(!json.contains(&secret), "a cookie secret is in an event");
            assert!(!json.contains(&hash), "a session key hash is in an event");
        }
        assert!(!json.contains("echo-me"), "a rejected cookie is echoed");
        let first: serde_json::Value = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(first["kind"], "created");
        assert!(first["at"].as_u64().unwrap() > 1_600_000_000_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_unavailable_event() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = tower_redis_session::RedisStore::builder(format!("redis://127.0.0.1:{port}"))
        .with_connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let rec = Recorder::default();
    let layer = rec.attach(SessionLayer::new(store, SessionConfig::default()).unwrap());
    let app = routes::routes().layer(layer);
    let mut c = Client::new(app);
    assert_eq!(c.post("/incr").await.status, 503);
    let e = &rec.take(1).await[0];
    assert_eq!(e.kind, EventKind::StoreUnavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_or_panicking_hook_never_blocks_requests() {
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let seen = Arc::new(Mutex::new(0usize));
    let seen2 = seen.clone();
    let hook = move |_: &SessionEvent| {
        let n = {
            let mut n = seen2.lock().unwrap();
            *n += 1;
            *n
        };
        if n == 1 {
            // Blocks until the test lets it go.
            let _ = release_rx.lock().unwrap().recv();
            panic!("a broken hook");
        }
    };
    let layer = SessionLayer::new(MemoryStore::new(), SessionConfig::default())
        .unwrap()
        .with_events_queue(hook, 4);
    let app = routes::routes().layer(layer.clone());
    // 20 new sessions while the hook is stuck on the first event: every request
    // completes (a hook on the request path would hang this test).
    for i in 0..20 {
        if i == 1 {
            // The hook has taken the first event and is stuck on it.
            while *seen.lock().unwrap() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let mut c = Client::new(app.clone());
        let r = tokio::time::timeout(Duration::from_secs(5), c.post("/incr"))
            .await
            .expect("a request waited for the hook");
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        layer.dropped_events(),
        20 - 1 - 4,
        "queue of 4, one in the hook"
    );
    release_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), layer.flush_events())
        .await
        .expect("the queue drains");
    assert_eq!(
        *seen.lock().unwrap(),
        5,
        "after a panic, the queued events still arrive"
    );
}

/// A hook serves every handle of its layer, taken before or after `with_events`: a
/// clone serving requests, the admin handle, an expiry watcher's sink. (It used to
/// reach only the layer value `with_events` returned, leaving earlier handles silent.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_reaches_every_handle_of_its_layer() {
    let base = SessionLayer::new(MemoryStore::new(), SessionConfig::default()).unwrap();
    let clone = base.clone();
    let admin = base.admin();
    let a = Recorder::default();
    let with_a = a.attach(base);
    let mut browser = Client::new(routes::routes().layer(clone));
    browser.post("/incr").await;
    browser.post("/login?user=ada").await;
    assert_eq!(admin.revoke_all("ada").await.unwrap(), 1);
    let kinds: Vec<EventKind> = a.take(3).await.iter().map(|e| e.kind).collect();
    assert!(
        matches!(
            kinds[..],
            [EventKind::Created, EventKind::Login, EventKind::Revoked(_)]
        ),
        "the clone's requests and the admin handle's revocation reach the hook: {kinds:?}"
    );
    // A second hook replaces the first for every handle.
    let b = Recorder::default();
    let _with_b = b.attach(with_a);
    browser.post("/incr").await;
    assert_eq!(b.take(1).await[0].kind, EventKind::Created);
    assert!(a.take(0).await.is_empty());
}
