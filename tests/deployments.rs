//! Deployments as people run them, against real servers started here: TLS (server
//! verification, mutual TLS, a cluster over TLS) and what every misconfiguration does
//! (a typed error at start-up, never a panic or a hang, no secret in it).
#![cfg(feature = "tls")]

#[macro_use]
mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::time::{Duration, Instant};

use common::stores::{TLS, TLS_CLUSTER, client_tls};
use common::{Client, RedisServer};
use tower_redis_session::TlsConfig;
use tower_redis_session::events::{EventKind, SessionEvent};
use tower_redis_session::{ConfigError, RedisStore, SessionConfig, SessionLayer};

/// A builder with short timeouts, so a failure shows quickly.
fn quick(url: String) -> tower_redis_session::RedisStoreBuilder {
    RedisStore::builder(url)
        .with_connect_timeout(Duration::from_secs(1))
        .with_response_timeout(Duration::from_secs(1))
        .with_wait_timeout(Duration::from_secs(1))
}

/// `check()` on a store built from `builder`: its error text, or "ok"; it must answer
/// within a few seconds (no hang).
async fn check(builder: tower_redis_session::RedisStoreBuilder) -> String {
    let store = builder.build().unwrap();
    let start = Instant::now();
    let result = store.check().await;
    assert!(start.elapsed() < Duration::from_secs(4), "check hung");
    match result {
        Ok(()) => "ok".into(),
        Err(e) => format!("{e} / {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_is_verified_both_ways() {
    let (certs, server) = &*TLS;
    // The right CA and client certificate.
    assert_eq!(
        check(quick(server.tls_url()).with_tls(client_tls(certs))).await,
        "ok"
    );
    // The same from files.
    let files = TlsConfig::default()
        .with_ca_file(certs.path("ca.crt"))
        .with_client_cert_files(certs.path("client.crt"), certs.path("client.key"));
    assert_eq!(check(quick(server.tls_url()).with_tls(files)).await, "ok");

    // A CA that did not sign the server's certificate.
    let wrong_ca = TlsConfig::default()
        .with_ca_pem(certs.other_ca_pem.clone())
        .with_client_cert_pem(certs.client_cert_pem.clone(), certs.client_key_pem.clone());
    let e = check(quick(server.tls_url()).with_tls(wrong_ca)).await;
    assert!(
        e.starts_with("cannot connect to Redis") && e.contains("UnknownIssuer"),
        "{e}"
    );
    // No CA given: the system trust store does not know the test CA either.
    let e = check(quick(server.tls_url())).await;
    assert!(e.contains("UnknownIssuer"), "{e}");
    // The server requires a client certificate.
    let e = check(
        quick(server.tls_url()).with_tls(TlsConfig::default().with_ca_pem(certs.ca_pem.clone())),
    )
    .await;
    assert!(e.starts_with("cannot connect to Redis"), "{e}");
    // A plaintext URL on the TLS port.
    let plain = server.tls_url().replace("rediss://", "redis://");
    let e = check(quick(plain)).await;
    assert!(e.starts_with("cannot connect to Redis"), "{e}");
    // Skipping verification only when the URL asks for it (the client certificate is
    // still presented).
    let insecure = TlsConfig::default()
        .with_client_cert_pem(certs.client_cert_pem.clone(), certs.client_key_pem.clone());
    let url = format!("{}/#insecure", server.tls_url());
    assert_eq!(check(quick(url).with_tls(insecure)).await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_url_without_settings_needs_a_trusted_server() {
    // A server that does not ask for client certificates: `rediss://#insecure` alone
    // connects, plain `rediss://` refuses the unknown issuer.
    let dir = std::env::temp_dir().join(format!("trs-certs-plain-{}", std::process::id()));
    let certs = common::tls::Certs::generate(&dir);
    let server = RedisServer::start_tls(&certs, "no", &[]);
    let e = check(quick(server.tls_url())).await;
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert_eq!(
        check(quick(format!("{}/#insecure", server.tls_url()))).await,
        "ok"
    );
    assert_eq!(
        check(
            quick(server.tls_url())
                .with_tls(TlsConfig::default().with_ca_pem(certs.ca_pem.clone()))
        )
        .await,
        "ok"
    );
}

/// A CA or client certificate with a plain `redis://` URL would be ignored (the app
/// would talk plaintext believing it verifies the server): refused at build.
#[test]
fn tls_settings_need_a_tls_url() {
    let certs = &TLS.0;
    for url in [
        "redis://127.0.0.1:1",
        "redis+sentinel://127.0.0.1:1/mymaster",
    ] {
        let built = RedisStore::builder(url)
            .with_tls(TlsConfig::default().with_ca_pem(certs.ca_pem.clone()))
            .build();
        match built {
            Err(e @ ConfigError::Tls(_)) => {
                assert!(e.to_string().contains("rediss://"), "{e}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    let cluster = RedisStore::cluster_builder(vec!["redis://127.0.0.1:1".to_owned()])
        .with_tls(TlsConfig::default().with_ca_pem(certs.ca_pem.clone()))
        .build();
    assert!(matches!(cluster, Err(ConfigError::Tls(_))), "{cluster:?}");
    // The same settings with a TLS URL build.
    RedisStore::builder("rediss://127.0.0.1:1")
        .with_tls(TlsConfig::default().with_ca_pem(certs.ca_pem.clone()))
        .build()
        .expect("rediss:// takes TLS settings");
}

#[test]
fn bad_tls_settings_are_config_errors_at_build() {
    let missing = RedisStore::builder("rediss://127.0.0.1:1")
        .with_tls(TlsConfig::default().with_ca_file("/nonexistent/ca.crt"))
        .build();
    match missing {
        Err(ConfigError::TlsFile { path, .. }) => {
            assert_eq!(path, std::path::Path::new("/nonexistent/ca.crt"))
        }
        other => panic!("{other:?}"),
    }
    let key =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n";
    let garbage = RedisStore::builder("rediss://127.0.0.1:1")
        .with_tls(TlsConfig::default().with_client_cert_pem("not a certificate", key))
        .build();
    match garbage {
        Err(e @ ConfigError::Tls(_)) => {
            let text = format!("{e} {e:?}");
            assert!(
                !text.contains("c2VjcmV0"),
                "key material in the error: {text}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Debug names what is configured, never the key.
    let tls = TlsConfig::default()
        .with_ca_file("/etc/ca.crt")
        .with_client_cert_pem("cert", key);
    let debug = format!("{tls:?}");
    assert!(debug.contains("/etc/ca.crt"), "{debug}");
    assert!(!debug.contains("c2VjcmV0"), "{debug}");
    let builder = format!(
        "{:?}",
        RedisStore::builder("rediss://:hunter2@127.0.0.1:1").with_tls(tls)
    );
    assert!(
        !builder.contains("hunter2") && !builder.contains("c2VjcmV0"),
        "{builder}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_store_that_cannot_connect_answers_503_and_never_panics() {
    let (certs, server) = &*TLS;
    let wrong_ca = TlsConfig::default()
        .with_ca_pem(certs.other_ca_pem.clone())
        .with_client_cert_pem(certs.client_cert_pem.clone(), certs.client_key_pem.clone());
    let store = quick(server.tls_url()).with_tls(wrong_ca).build().unwrap();
    let app = routes::routes().layer(SessionLayer::new(store, SessionConfig::default()).unwrap());
    let mut c = Client::new(app);
    assert_eq!(c.post("/incr").await.status, 503);
    assert_eq!(
        c.get("/plain").await.status,
        200,
        "a route without the session"
    );
}

/// The expiry watcher and the stream sink reach every master of a TLS cluster with
/// the store's certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_watcher_and_stream_sink_over_tls_on_a_cluster() {
    let (certs, cluster) = &*TLS_CLUSTER;
    let store = RedisStore::cluster_builder(cluster.tls_urls())
        .with_tls(TlsConfig::default().with_ca_pem(certs.ca_pem.clone()))
        .build()
        .unwrap()
        .with_namespace("tls-watched")
        .unwrap();
    common::stores::register("tls-watched", cluster.urls());
    store.check().await.unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<SessionEvent>::new()));
    let sink = seen.clone();
    let config = SessionConfig::default().with_idle_timeout(Duration::from_secs(1));
    let layer = SessionLayer::new(store.clone(), config)
        .unwrap()
        .with_events((
            store.event_stream_sink(1000).unwrap(),
            move |e: &SessionEvent| sink.lock().unwrap().push(e.clone()),
        ));
    let watcher = store.watch_expired(&layer).unwrap();
    tokio::time::timeout(Duration::from_secs(10), watcher.subscribed())
        .await
        .expect("the watcher subscribes on every master over TLS");
    let app = routes::routes().layer(layer.clone());
    let users = ["ann", "bo", "cy", "di"];
    for user in users {
        Client::new(app.clone())
            .post(&format!("/login?user={user}"))
            .await;
    }
    let expired = || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind == EventKind::Expired)
            .count()
    };
    let start = Instant::now();
    while expired() < users.len() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watcher.abort();
    layer.flush_events().await;
    // The sink wrote every event into the stream, over TLS.
    let mut conn = redis::cluster::ClusterClient::new(cluster.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let len: usize = redis::cmd("XLEN")
        .arg(store.event_stream_key())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, seen.lock().unwrap().len());
}
