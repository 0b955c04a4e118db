//! Redis behind Sentinel: one master, one replica and three sentinels on loopback.
//! The conformance suite runs on such a deployment (`conformance.rs`, module
//! `sentinel`); here the master is killed under load, and misconfigurations are typed
//! errors.

mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, RedisServer, Sentinels};
use tower_redis_session::events::{EventKind, SessionEvent};
use tower_redis_session::{ConfigError, RedisStore, SessionConfig, SessionLayer, StoreError};

/// Waits until the replica has every write the master has.
fn replica_caught_up(set: &mut Sentinels) {
    let offset = |info: String, key: &str| -> Option<u64> {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
    };
    let start = Instant::now();
    loop {
        let master = set.nodes[0].raw("INFO replication").unwrap_or_default();
        let replica = set.nodes[1].raw("INFO replication").unwrap_or_default();
        let (m, r) = (
            offset(master, "master_repl_offset:"),
            offset(replica, "slave_repl_offset:"),
        );
        if m.is_some() && m == r {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "replica behind");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_killed_under_load_fails_over_without_a_restart() {
    let mut set = Sentinels::start("failover");
    let store = RedisStore::sentinel_builder(set.sentinel_urls(), "failover")
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_millis(500))
        .with_wait_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    store.check().await.unwrap();
    let app =
        routes::routes().layer(SessionLayer::new(store.clone(), SessionConfig::default()).unwrap());

    // An expiry watcher on a second layer (1 s idle) follows the master too.
    let events: Arc<Mutex<Vec<SessionEvent>>> = Arc::default();
    let sink = events.clone();
    let short = SessionLayer::new(
        store.clone(),
        SessionConfig::default().with_idle_timeout(Duration::from_secs(1)),
    )
    .unwrap()
    .with_events(move |e: &SessionEvent| sink.lock().unwrap().push(e.clone()));
    let watcher = store.watch_expired(&short).unwrap();
    tokio::time::timeout(Duration::from_secs(10), watcher.subscribed())
        .await
        .expect("subscribed on the master");

    let mut c = Client::new(app.clone());
    c.post("/login?user=alice").await;
    assert_eq!(c.post("/set?key=color&value=blue").await.status, 200);
    // Written more than 1 s before the kill, and replicated.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    replica_caught_up(&mut set);

    // Load: four clients writing their own sessions without pause.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // (client, when, status) of every load request.
    let seen: Arc<Mutex<Vec<(usize, Instant, u16)>>> = Arc::default();
    let load: Vec<_> = (0..4)
        .map(|i| {
            let (app, stop, seen) = (app.clone(), stop.clone(), seen.clone());
            tokio::spawn(async move {
                let mut c = Client::new(app);
                c.post(&format!("/login?user=load{i}")).await;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = c.post("/incr").await;
                    seen.lock()
                        .unwrap()
                        .push((i, Instant::now(), r.status.as_u16()));
                    if r.status != 200 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    set.nodes[0].kill(); // SIGKILL
    let killed = Instant::now();
    let mut statuses = Vec::new();
    let recovered = loop {
        let r = c.get("/get?key=color").await;
        statuses.push(r.status.as_u16());
        if r.status == 200 {
            assert_eq!(r.body, "blue", "the session written before the kill");
            break killed.elapsed();
        }
        assert_eq!(r.status, 503, "only 503 while failing over: {r:?}");
        assert!(r.set_cookie.is_none(), "the cookie survives the failover");
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no recovery: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Writes work on the new master.
    let write = loop {
        let r = c.post("/set?key=color&value=green").await;
        if r.status == 200 {
            break killed.elapsed();
        }
        assert_eq!(r.status, 503);
        assert!(killed.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(c.get("/get?key=color").await.body, "green");
    // Every load client gets a 200 after the recovery (one may still be answering a
    // request it sent before).
    let recovered_at = Instant::now();
    while !(0..4).all(|i| {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(c, t, s)| *c == i && *t > recovered_at && *s == 200)
    }) {
        assert!(
            recovered_at.elapsed() < Duration::from_secs(10),
            "the load did not recover"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let seen: Vec<u16> = seen.lock().unwrap().iter().map(|(_, _, s)| *s).collect();
    assert!(
        seen.iter().all(|s| *s == 200 || *s == 503),
        "only 200 and 503 under load: {seen:?}"
    );
    let unavailable = seen.iter().filter(|s| **s == 503).count();
    assert!(unavailable > 0, "the load saw the failover");
    eprintln!(
        "sentinel failover: reads back after {recovered:?}, writes after {write:?}; \
         {unavailable} of {} load requests answered 503",
        seen.len()
    );

    // The watcher re-subscribed on the new master: an expiry there is reported.
    tokio::time::timeout(Duration::from_secs(10), watcher.subscribed())
        .await
        .expect("subscribed again");
    let mut short_client = Client::new(routes::routes().layer(short.clone()));
    short_client.post("/login?user=after").await;
    let start = Instant::now();
    loop {
        let expired = events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.kind == EventKind::Expired && e.user_id.as_deref() == Some("after"));
        if expired {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no expiry reported after the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watcher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_misconfigurations_are_typed_errors() {
    let set = &*common::stores::SENTINELS;
    // A master name the sentinels do not monitor.
    let store = RedisStore::sentinel_builder(set.sentinel_urls(), "nosuchmaster")
        .build()
        .unwrap();
    let start = Instant::now();
    match store.check().await {
        Err(StoreError::Connect { source: e, .. }) => {
            assert!(
                e.to_string().contains("no sentinel knows the master"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(3));
    // No sentinel reachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = RedisStore::from_url(&format!("redis+sentinel://127.0.0.1:{port}/shared")).unwrap();
    assert!(matches!(
        store.check().await,
        Err(StoreError::Connect { .. })
    ));
    let app = routes::routes().layer(SessionLayer::new(store, SessionConfig::default()).unwrap());
    assert_eq!(Client::new(app).post("/incr").await.status, 503);
    // Malformed URL forms and empty settings.
    for url in [
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel:///shared",
    ] {
        assert!(
            matches!(RedisStore::from_url(url), Err(ConfigError::Sentinel(_))),
            "{url}"
        );
    }
    assert!(matches!(
        RedisStore::sentinel_builder(Vec::<String>::new(), "m").build(),
        Err(ConfigError::Sentinel(_))
    ));
    // The master's password is checked, and never shown.
    let store = RedisStore::sentinel_builder(set.sentinel_urls(), "shared")
        .with_master_auth(None, "hunter2", 0)
        .build()
        .unwrap();
    let e = store.check().await.unwrap_err();
    let debug = format!(
        "{e} {e:?} {store:?} {:?}",
        RedisStore::sentinel_builder(set.sentinel_urls(), "shared").with_master_auth(
            Some("app"),
            "hunter2",
            0
        )
    );
    assert!(matches!(e, StoreError::Connect { .. }), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_and_the_url_form_reach_the_same_master() {
    let set = &*common::stores::SENTINELS;
    let by_url = RedisStore::from_url(&set.url())
        .unwrap()
        .with_namespace("sentinel-forms")
        .unwrap();
    let by_builder = RedisStore::sentinel_builder(set.sentinel_urls(), "shared")
        .build()
        .unwrap()
        .with_namespace("sentinel-forms")
        .unwrap();
    by_builder.check().await.unwrap();
    let mut c = Client::new(
        routes::routes().layer(SessionLayer::new(by_url, SessionConfig::default()).unwrap()),
    );
    c.post("/login?user=ivy").await;
    c.app =
        routes::routes().layer(SessionLayer::new(by_builder, SessionConfig::default()).unwrap());
    assert_eq!(c.get("/read").await.body, "ivy");
}

/// Sentinel is not trusted on one voice: every sentinel is asked, at least the quorum
/// (2 by default) must name the master, and one that names another master (a decoy
/// here, monitored under the same name) makes the store refuse instead of following it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_that_names_another_master_is_refused() {
    let set = &*common::stores::SENTINELS;
    let decoy = RedisServer::start();
    let liar = RedisServer::start_sentinel(&[format!(
        "sentinel monitor {} 127.0.0.1 {} 1",
        set.name, decoy.port
    )]);
    let liar_url = format!("redis://127.0.0.1:{}", liar.port);
    let good = set.sentinel_urls();
    // The liar first, as a lone first answer would have been trusted.
    let mut mixed = vec![liar_url.clone()];
    mixed.extend(good.iter().cloned());
    let store = RedisStore::sentinel_builder(mixed, set.name.as_str())
        .build()
        .unwrap();
    match store.check().await {
        Err(StoreError::Connect { source: e, .. }) => {
            assert!(e.to_string().contains("disagree"), "{e}")
        }
        other => panic!("followed a lone sentinel to another master: {other:?}"),
    }
    let app = routes::routes().layer(SessionLayer::new(store, SessionConfig::default()).unwrap());
    assert_eq!(Client::new(app).post("/incr").await.status, 503);
    assert_eq!(
        decoy.raw("DBSIZE").unwrap_or_default().trim(),
        ":0",
        "nothing reached the decoy"
    );
    // The honest sentinels agree, with the default quorum of 2 and with all three.
    for quorum in [2, 3] {
        RedisStore::sentinel_builder(good.clone(), set.name.as_str())
            .with_sentinel_quorum(quorum)
            .build()
            .unwrap()
            .check()
            .await
            .unwrap();
    }
    // A quorum larger than the sentinels given is a configuration error.
    assert!(matches!(
        RedisStore::sentinel_builder(good, set.name.as_str())
            .with_sentinel_quorum(4)
            .build(),
        Err(ConfigError::Sentinel(_))
    ));
}

mod tls {
    use super::*;

    /// `rediss+sentinel://`: TLS to the sentinels and to the master they name, whose
    /// certificate is checked against the configured CA. A master (or a sentinel) whose
    /// certificate that CA did not sign is refused, so a sentinel cannot send the
    /// sessions to a node of its choosing without a certificate from your CA.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_sentinels_and_master_are_checked_against_the_ca() {
        use tower_redis_session::TlsConfig;
        let dir = std::env::temp_dir().join(format!("trs-sentinel-certs-{}", std::process::id()));
        let certs = common::tls::Certs::generate(&dir);
        let master = RedisServer::start_tls(&certs, "no", &[]);
        let tls_port = common::redis_server::free_port();
        let mut conf = vec![
            format!(
                "sentinel monitor tlsmaster 127.0.0.1 {} 1",
                master.tls_port.unwrap()
            ),
            "tls-replication yes".to_owned(),
            format!("tls-port {tls_port}"),
            "tls-auth-clients no".to_owned(),
        ];
        for (k, f) in [
            ("tls-cert-file", "server.crt"),
            ("tls-key-file", "server.key"),
            ("tls-ca-cert-file", "ca.crt"),
        ] {
            conf.push(format!("{k} {}", certs.path(f)));
        }
        let _sentinel = RedisServer::start_sentinel(&conf);
        let url = format!("rediss+sentinel://127.0.0.1:{tls_port}/tlsmaster");
        let store = |ca: &str| {
            RedisStore::builder(&url)
                .with_tls(TlsConfig::default().with_ca_pem(ca.to_owned()))
                .with_connect_timeout(Duration::from_secs(2))
                .build()
                .unwrap()
                .with_namespace("sentinel-tls")
                .unwrap()
        };
        let start = Instant::now();
        let good = store(&certs.ca_pem);
        while let Err(e) = good.check().await {
            assert!(start.elapsed() < Duration::from_secs(10), "{e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let app =
            routes::routes().layer(SessionLayer::new(good, SessionConfig::default()).unwrap());
        assert_eq!(Client::new(app).post("/incr").await.status, 200);
        assert!(matches!(
            store(&certs.other_ca_pem).check().await,
            Err(StoreError::Connect { .. })
        ));
    }
}
