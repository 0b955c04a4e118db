//! The durable event log: lifecycle events in a Redis Stream, written by the same
//! script as the change; expiry found by index pruning and by keyspace notifications
//! (standalone and cluster).

mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use common::{Client, RedisServer};
use redis::AsyncCommands as _;
use tower_redis_session::events::{EventKind, SessionEvent};
use tower_redis_session::{LimitPolicy, RedisStore, SessionConfig, SessionLayer};

type Entry = HashMap<String, String>;

/// All entries of a stream, oldest first.
async fn entries(url: &str, stream: &str) -> Vec<Entry> {
    common::stores::stream_entries(url, stream)
        .await
        .into_iter()
        .map(|(_, fields)| fields)
        .collect()
}

fn kinds(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match e["reason"].as_str() {
            "" => e["kind"].clone(),
            r => format!("{}:{r}", e["kind"]),
        })
        .collect()
}

fn app(store: RedisStore, config: SessionConfig) -> (Router, SessionLayer) {
    let layer = SessionLayer::new(store, config).unwrap();
    let app = routes::routes()
        .merge(common::session_routes::per_user())
        .layer(layer.clone());
    (app, layer)
}

fn store(url: &str, ns: &str) -> RedisStore {
    RedisStore::from_url(url)
        .unwrap()
        .with_namespace(ns)
        .unwrap()
        .with_event_stream(10_000)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_in_the_stream_once_and_nothing_else() {
    let url = RedisServer::shared().url();
    // However slow the machine, no request refreshes a TTL (60 s idle, refreshed only
    // below 1 s) except the one sent through `refresher` on the same store, whose
    // threshold is the whole idle timeout: any read there refreshes.
    let config = SessionConfig::default()
        .with_idle_timeout(Duration::from_secs(60))
        .with_refresh_threshold(Duration::from_secs(1))
        .with_max_sessions_per_user(2, LimitPolicy::EvictOldest);
    let s = store(&url, "stream-all");
    let stream = s.event_stream_key();
    assert_eq!(stream, "stream-all:events");
    let (refresher, _) = app(
        s.clone(),
        config
            .clone()
            .with_refresh_threshold(Duration::from_secs(60)),
    );
    let (app, _) = app(s, config);
    let mut a = Client::new(app.clone());
    a.headers = vec![("user-agent", "agent-a".into())];
    a.get("/plain").await;
    a.post("/incr").await; // created
    a.post("/incr").await; // an update: no event
    a.post("/login?user=alice").await; // login (moves the session)
    let handle_a = a.get("/handle").await.body;
    a.post("/cycle").await; // id_rotated
    tokio::time::sleep(Duration::from_millis(5)).await; // so that a refresh gains
    let mut a_refresh = Client {
        app: refresher,
        ..a.clone()
    };
    assert_eq!(a_refresh.get("/read").await.body, "alice"); // refreshed
    // Last-seen times are in ms: b must be seen after a for the eviction order.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut b = Client::new(app.clone());
    b.post("/login?user=alice").await; // created + login
    let handle_b = b.get("/handle").await.body;
    let mut c = Client::new(app.clone());
    c.post("/login?user=alice").await; // evicts a (least recently active), created + login
    let revoked = c.post(&format!("/revoke?handle={handle_b}")).await.body;
    assert_eq!(
        revoked,
        "true",
        "{handle_b}: {:?}",
        entries(&url, &stream).await
    );
    c.post("/logout").await; // logout
    let mut d = Client::new(app.clone());
    d.post("/login?user=bob").await;
    let mut e = Client::new(app.clone());
    e.post("/login?user=bob").await;
    let handle_e = e.get("/handle").await.body;
    d.post("/revoke_others").await;
    d.post("/everywhere").await;

    let got = entries(&url, &stream).await;
    assert_eq!(
        kinds(&got),
        [
            "created",
            "login",
            "id_rotated",
            "refreshed",
            "created",
            "login",
            "revoked:evicted_by_cap",
            "created",
            "login",
            "revoked:revoke",
            "logout",
            "created",
            "login",
            "created",
            "login",
            "revoked:revoke_others",
            "revoked:logout_everywhere",
        ]
        .map(String::from)
    );
    assert_eq!(got[0]["handle"], handle_a);
    assert_eq!(got[0]["user"], "");
    assert_eq!(got[0]["ua"], "agent-a");
    assert_eq!(
        (got[1]["handle"].as_str(), got[1]["user"].as_str()),
        (handle_a.as_str(), "alice")
    );
    assert_eq!(got[6]["handle"], handle_a, "the evicted session");
    assert_eq!(got[9]["handle"], handle_b);
    assert_eq!(got[15]["handle"], handle_e, "the other device");
    assert_eq!(got[16]["user"], "bob");
    for e in &got {
        assert!(e["at"].parse::<u64>().unwrap() > 1_600_000_000_000);
    }
    // No cookie secret anywhere in the stream.
    let dump = format!("{got:?}");
    for cookie in [&a.cookie, &b.cookie, &c.cookie, &d.cookie]
        .into_iter()
        .flatten()
    {
        assert!(!dump.contains(cookie.split_once('.').unwrap().1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_that_did_not_happen_are_not_recorded() {
    let url = RedisServer::shared().url();
    let config = SessionConfig::default().with_max_sessions_per_user(1, LimitPolicy::Reject);
    let s = store(&url, "stream-none");
    let stream = s.event_stream_key();
    let (app, _) = app(s, config);
    let mut a = Client::new(app.clone());
    a.post("/login?user=alice").await;
    let before = entries(&url, &stream).await.len();
    // Refused by the cap: no login, no created.
    let mut b = Client::new(app.clone());
    b.post("/incr").await;
    let r = b.post("/login?user=alice").await;
    assert_eq!(r.status, 409);
    // A logout of a session that is already gone.
    let stale = a.clone();
    a.post("/logout").await;
    let mut stale = stale;
    stale.post("/logout").await;
    let got = entries(&url, &stream).await;
    assert_eq!(
        kinds(&got[before..]),
        ["created", "logout"].map(String::from)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_pruning_reports_each_expiry_once() {
    let url = RedisServer::shared().url();
    let config = SessionConfig::default().with_idle_timeout(Duration::from_secs(1));
    let s = store(&url, "stream-prune");
    let stream = s.event_stream_key();
    let (app, layer) = app(s, config);
    let mut a = Client::new(app.clone());
    a.post("/login?user=erin").await;
    let handle = a.get("/handle").await.body;
    // Wait (in short steps) until Redis expired the session; nothing reported it yet.
    let mut conn = common::stores::redis_conn(&url).await;
    for _ in 0..60 {
        let left: Vec<String> = conn.keys("stream-prune:{*}:s:*").await.unwrap();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Listing the user's sessions prunes the index and reports the expiry.
    assert!(layer.admin().list("erin").await.unwrap().is_empty());
    assert!(layer.admin().list("erin").await.unwrap().is_empty());
    let mut b = Client::new(app.clone());
    b.post("/login?user=erin").await;
    let got = entries(&url, &stream).await;
    let expired: Vec<_> = got.iter().filter(|e| e["kind"] == "expired").collect();
    assert_eq!(expired.len(), 1, "{got:?}");
    assert_eq!(
        (expired[0]["handle"].as_str(), expired[0]["user"].as_str()),
        (handle.as_str(), "erin")
    );
}

/// Collects events delivered to a hook.
fn recorder() -> (
    Arc<Mutex<Vec<SessionEvent>>>,
    impl Fn(&SessionEvent) + Send + Sync,
) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (events, move |e: &SessionEvent| {
        sink.lock().unwrap().push(e.clone())
    })
}

async fn wait_for_expired(events: &Mutex<Vec<SessionEvent>>, n: usize) -> Vec<SessionEvent> {
    for _ in 0..100 {
        let got: Vec<_> = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind == EventKind::Expired)
            .cloned()
            .collect();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no expired event within 10 s");
}

/// Waits until `watcher` listens on every master.
async fn subscribed(watcher: &tower_redis_session::ExpiryWatcher) {
    tokio::time::timeout(Duration::from_secs(10), watcher.subscribed())
        .await
        .expect("the watcher subscribes");
}

/// An app on `s` (1 s idle timeout) whose expiries a watcher reports to a recorder.
async fn watched(
    s: &RedisStore,
) -> (
    Router,
    Arc<Mutex<Vec<SessionEvent>>>,
    tower_redis_session::ExpiryWatcher,
) {
    let (events, hook) = recorder();
    let config = SessionConfig::default().with_idle_timeout(Duration::from_secs(1));
    let (app, layer) = app(s.clone(), config);
    let layer = layer.with_events(hook);
    let watcher = s.watch_expired(&layer).unwrap();
    subscribed(&watcher).await;
    (app, events, watcher)
}

/// Logs `n` users in (spread over the slots, so over every master of a cluster) and
/// waits until the expiry of each is reported, once.
async fn logins_expire_and_are_reported_once(
    app: &Router,
    events: &Mutex<Vec<SessionEvent>>,
    n: usize,
) {
    let mut handles = Vec::new();
    for i in 0..n {
        let mut c = Client::new(app.clone());
        c.post(&format!("/login?user=user-{i}")).await;
        handles.push(c.get("/handle").await.body);
    }
    let got = wait_for_expired(events, n).await;
    let mut reported: Vec<_> = got.iter().map(|e| e.handle.unwrap().to_string()).collect();
    reported.sort();
    handles.sort();
    assert_eq!(reported, handles, "each expiry once, from every master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_notifications_report_expiry() {
    let server = RedisServer::start();
    let url = server.url();
    let s = RedisStore::builder(&url)
        .build()
        .unwrap()
        .with_namespace("watched")
        .unwrap()
        .with_event_stream(1000)
        .unwrap();
    let (events, hook) = recorder();
    let config = SessionConfig::default().with_idle_timeout(Duration::from_secs(1));
    let (app, layer) = app(s.clone(), config);
    let layer = layer.with_events(hook);
    let watcher = s.watch_expired(&layer).unwrap();
    // A store on a user's pool does not know the node addresses: a clear error.
    let pool = deadpool_redis::Config::from_url(url.clone())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    assert!(matches!(
        RedisStore::from_pool(pool).watch_expired(&layer),
        Err(tower_redis_session::ConfigError::UnknownNodes)
    ));
    subscribed(&watcher).await;
    let mut a = Client::new(app.clone());
    a.post("/login?user=frank").await;
    let handle = a.get("/handle").await.body;
    let got = wait_for_expired(&events, 1).await;
    assert_eq!(got[0].handle.unwrap().to_string(), handle);
    assert_eq!(got[0].user_id.as_deref(), Some("frank"));
    // Reported once: pruning afterwards finds it already reported.
    assert!(layer.admin().list("frank").await.unwrap().is_empty());
    let stream: Vec<_> = entries(&url, &s.event_stream_key())
        .await
        .into_iter()
        .filter(|e| e["kind"] == "expired")
        .collect();
    assert_eq!(stream.len(), 1);
    // The index and handle map went with the last session.
    let mut conn = common::stores::redis_conn(&url).await;
    let left: Vec<String> = conn.keys("watched:{*}:u*").await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    watcher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_notifications_on_a_cluster() {
    let cluster = common::RedisCluster::shared();
    let s = RedisStore::cluster_builder(cluster.urls())
        .build()
        .unwrap()
        .with_namespace("watched-cluster")
        .unwrap();
    assert!(matches!(
        s.clone().with_event_stream(10),
        Err(tower_redis_session::ConfigError::EventStreamOnCluster)
    ));
    let (app, events, watcher) = watched(&s).await;
    logins_expire_and_are_reported_once(&app, &events, 6).await;
    watcher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_notifications_on_a_password_cluster() {
    let cluster = common::RedisCluster::start(3, 0);
    for node in cluster.masters() {
        let reply = node
            .raw("CONFIG SET requirepass s3cret")
            .unwrap_or_default();
        assert!(reply.starts_with("+OK"), "{reply}");
    }
    let with_password = |password: &str| -> Vec<String> {
        cluster
            .urls()
            .iter()
            .map(|u| u.replace("redis://", &format!("redis://:{password}@")))
            .collect()
    };
    let s = RedisStore::cluster_builder(with_password("s3cret"))
        .build()
        .unwrap()
        .with_namespace("watched-auth")
        .unwrap();
    let (app, events, watcher) = watched(&s).await;
    // Every master reached with the credentials.
    logins_expire_and_are_reported_once(&app, &events, 4).await;
    watcher.abort();

    // A watcher that can never subscribe says so through the hook, once.
    let wrong = RedisStore::cluster_builder(with_password("wrong"))
        .build()
        .unwrap()
        .with_namespace("watched-auth")
        .unwrap();
    let (events, hook) = recorder();
    let layer = SessionLayer::new(wrong.clone(), SessionConfig::default())
        .unwrap()
        .with_events(hook);
    let watcher = wrong.watch_expired(&layer).unwrap();
    let unavailable = || {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind == EventKind::StoreUnavailable)
            .count()
    };
    for _ in 0..100 {
        if unavailable() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(unavailable(), 1, "a persistent failure is reported");
    watcher.abort();
}

/// `RedisStore::recent_events` reads the stream back as events, newest first, bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_events_read_the_stream_back() {
    let url = RedisServer::shared().url();
    let s = store(&url, "recent-events");
    let none = s.recent_events(10).await.unwrap();
    assert!(none.is_empty(), "no stream yet: {none:?}");
    let (app, _) = app(s.clone(), SessionConfig::default());
    let mut laptop = Client::new(app.clone());
    laptop.headers = vec![("user-agent", "laptop".to_owned())];
    assert_eq!(laptop.post("/login?user=erin").await.status, 200);
    let mut phone = Client::new(app.clone());
    // Longer than one stored piece (64 bytes): the events carry it whole.
    let phone_ua = format!("phone/{}", "0123456789".repeat(20));
    phone.headers = vec![("user-agent", phone_ua.clone())];
    assert_eq!(phone.post("/login?user=erin").await.status, 200);
    let handle = phone.get("/handle").await.body;
    assert_eq!(laptop.post("/revoke_others").await.body, "1");

    let events = s.recent_events(100).await.unwrap();
    let names: Vec<String> = events
        .iter()
        .map(|e| match e.kind.reason() {
            Some(r) => format!("{}:{r}", e.kind.name()),
            None => e.kind.name().to_owned(),
        })
        .collect();
    assert_eq!(
        names,
        [
            "revoked:revoke_others",
            "login",
            "created",
            "login",
            "created"
        ]
    );
    let revoked = &events[0];
    assert_eq!(revoked.handle.map(|h| h.to_string()), Some(handle));
    assert_eq!(revoked.user_id.as_deref(), Some("erin"));
    assert_eq!(revoked.namespace, "recent-events");
    assert!(revoked.at > std::time::UNIX_EPOCH);
    assert_eq!(events[3].user_agent.as_deref(), Some("laptop"));
    assert_eq!(revoked.user_agent.as_deref(), Some(phone_ua.as_str()));
    assert_eq!(events[1].user_agent.as_deref(), Some(phone_ua.as_str()));
    // Bounded by the count asked for (and by 1000: `RECENT_EVENTS_MAX`, a unit test).
    assert_eq!(s.recent_events(2).await.unwrap().len(), 2);
    assert_eq!(s.recent_events(0).await.unwrap().len(), 1);
}
