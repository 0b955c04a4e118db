//! Guarantees that need a real Redis to observe: command budgets (`INFO commandstats`),
//! what a dump or `MONITOR` stream reveals, and behaviour while Redis is down.

mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Client, RedisServer};
use redis::AsyncCommands;
use sha2::{Digest, Sha256};
use tower_redis_session::{RedisStore, SessionConfig, SessionLayer};

fn app(url: &str, config: SessionConfig) -> axum::Router {
    let store = RedisStore::builder(url)
        .wait_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    routes::routes().layer(SessionLayer::new(store, config).unwrap())
}

fn calls(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for (k, v) in pairs {
        *m.entry(k.to_string()).or_insert(0) += v;
    }
    m
}

/// What one run of `write.lua` executes inside Redis, besides the `EVALSHA` itself:
/// the condition check, the field writes (`hset` for the data, one more for `m:s`/`m:e`),
/// reading the TTL inputs, and the `PEXPIRE`. Counted by `INFO commandstats` too, but
/// all in the same single round trip.
const WRITE_SCRIPT: &[(&str, u64)] = &[
    ("evalsha", 1),
    ("exists", 1),
    ("hset", 2),
    ("hmget", 1),
    ("pexpire", 1),
];

/// `write.lua` with no field to write (a TTL refresh): one `hset` (for `m:s`/`m:e`).
const TOUCH_SCRIPT: &[(&str, u64)] = &[
    ("evalsha", 1),
    ("exists", 1),
    ("hset", 1),
    ("hmget", 1),
    ("pexpire", 1),
];

/// `write.lua` rotating: the target is created by `RENAMENX` from the current key.
const ROTATE_SCRIPT: &[(&str, u64)] = &[
    ("evalsha", 1),
    ("exists", 1),
    ("renamenx", 1),
    ("hset", 2),
    ("hmget", 1),
    ("pexpire", 1),
];

fn with(base: &[(&str, u64)], extra: &[(&str, u64)]) -> HashMap<String, u64> {
    calls(&[base, extra].concat())
}

/// Runs `f` and returns the Redis commands it caused.
async fn commands_of<F: std::future::Future<Output = ()>>(
    server: &RedisServer,
    f: F,
) -> HashMap<String, u64> {
    let before = server.command_calls();
    f.await;
    RedisServer::delta(&before, &server.command_calls())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_command_budget_per_request() {
    let server = RedisServer::start();
    let config = SessionConfig::default()
        .with_idle_timeout(Duration::from_millis(1500))
        .with_refresh_threshold(Duration::from_millis(1000));
    let app = app(&server.url(), config);
    // Warm up: open the pooled connection and load the script once.
    let mut warm = Client::new(app.clone());
    warm.post("/login?user=w").await;
    warm.post("/logout").await;

    let mut c = Client::new(app.clone());
    let none = commands_of(&server, async {
        c.get("/plain").await;
    });
    assert_eq!(none.await, calls(&[]), "no cookie, untouched");

    let login = commands_of(&server, async {
        c.post("/login?user=alice").await;
    });
    assert_eq!(login.await, calls(WRITE_SCRIPT), "new session: one create");

    let untouched = commands_of(&server, async {
        c.get("/plain").await;
    });
    assert_eq!(untouched.await, calls(&[]), "cookie, untouched");

    let read = commands_of(&server, async {
        assert_eq!(c.get("/read").await.body, "alice");
    });
    assert_eq!(read.await, calls(&[("hgetall", 1)]), "read above threshold");

    let rmw = commands_of(&server, async {
        c.post("/incr").await;
    });
    assert_eq!(
        rmw.await,
        with(WRITE_SCRIPT, &[("hgetall", 1)]),
        "read-modify-write"
    );

    let relogin = commands_of(&server, async {
        c.post("/login?user=alice2").await;
    });
    assert_eq!(
        relogin.await,
        with(ROTATE_SCRIPT, &[("hgetall", 1)]),
        "rotation: load + one rotate script"
    );

    tokio::time::sleep(Duration::from_millis(600)).await;
    let refresh = commands_of(&server, async {
        c.get("/read").await;
    });
    assert_eq!(
        refresh.await,
        with(TOUCH_SCRIPT, &[("hgetall", 1)]),
        "refresh"
    );

    for forged in [
        "AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "x*?[",
        "",
    ] {
        let mut f = Client::new(app.clone());
        f.cookie = Some(forged.to_owned());
        let cmds = commands_of(&server, async {
            f.get("/plain").await;
        });
        assert_eq!(cmds.await, calls(&[]), "{forged:?} untouched");
    }
    for malformed in ["x*?[", "", "\\r\\nFLUSHALL", &"A".repeat(9000)] {
        let mut f = Client::new(app.clone());
        f.cookie = Some(malformed.to_owned());
        let cmds = commands_of(&server, async {
            assert_eq!(f.get("/read").await.status, 401);
        });
        assert_eq!(
            cmds.await,
            calls(&[]),
            "{malformed:?} must never reach Redis"
        );
    }

    let logout = commands_of(&server, async {
        c.post("/logout").await;
    });
    assert_eq!(logout.await, calls(&[("del", 1)]), "logout");
}

/// A `MONITOR` stream read in the background until `finish`.
struct Monitor {
    buf: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    reader: std::thread::JoinHandle<()>,
}

impl Monitor {
    fn start(port: u16) -> Self {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"MONITOR\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let (b, st) = (buf.clone(), stop.clone());
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match s.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => b.lock().unwrap().extend_from_slice(&chunk[..n]),
                    Err(_) if st.load(Ordering::SeqCst) => break,
                    Err(_) => {}
                }
            }
        });
        Self { buf, stop, reader }
    }

    fn finish(self) -> String {
        self.stop.store(true, Ordering::SeqCst);
        self.reader.join().unwrap();
        let bytes = self.buf.lock().unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_and_monitor_reveal_no_cookie_secret() {
    let server = RedisServer::start();
    let monitor = Monitor::start(server.port);
    std::thread::sleep(Duration::from_millis(50));
    let app = app(&server.url(), SessionConfig::default());
    let mut cookies = Vec::new();
    for i in 0..5 {
        let mut c = Client::new(app.clone());
        c.post(&format!("/login?user=u{i}")).await;
        c.post("/incr").await;
        c.get("/read").await;
        cookies.push(c.cookie.clone().unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let monitored = monitor.finish();
    assert!(monitored.contains("HGETALL"), "MONITOR saw nothing");

    let mut conn = common::stores::redis_conn(&server.url()).await;
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    assert_eq!(keys.len(), 5);
    let mut dump = String::new();
    for k in &keys {
        let fields: HashMap<String, String> = conn.hgetall(k).await.unwrap();
        dump.push_str(k);
        for (f, v) in fields {
            dump.push_str(&f);
            dump.push_str(&v);
        }
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for cookie in &cookies {
        let (tag, secret) = cookie.split_once('.').unwrap();
        let raw = b64.decode(secret).unwrap();
        let std_b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        for needle in [secret, std_b64.as_str(), hex.as_str(), cookie.as_str()] {
            assert!(!dump.contains(needle), "dump holds the cookie secret");
            assert!(
                !monitored.contains(needle),
                "MONITOR shows the cookie secret"
            );
        }
        // The key is the documented one: <ns>:{<tag>}:s:<base64url(sha256(secret))>.
        let expected = format!("session:{{{tag}}}:s:{}", b64.encode(Sha256::digest(&raw)));
        assert!(keys.contains(&expected), "{expected} not in {keys:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_503_and_recovers() {
    let mut server = RedisServer::start();
    let app = app(&server.url(), SessionConfig::default());
    let mut c = Client::new(app.clone());
    assert_eq!(c.post("/incr").await.body, "1");

    server.stop();
    let r = c.get("/plain").await;
    assert_eq!(
        r.status, 200,
        "requests that never touch the session are unaffected"
    );
    for _ in 0..3 {
        let r = c.post("/incr").await;
        assert_eq!(r.status, 503);
        assert_eq!(r.headers["retry-after"], "1");
        assert!(
            r.set_cookie.is_none(),
            "no cookie change while the store is down"
        );
    }
    let mut fresh = Client::new(app.clone());
    assert_eq!(fresh.post("/incr").await.status, 503);

    server.restart();
    let start = Instant::now();
    let mut status = 0;
    while start.elapsed() < Duration::from_secs(2) {
        status = fresh.post("/incr").await.status.as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "did not recover without a restart");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "recovery took {:?}",
        start.elapsed()
    );
    assert_eq!(fresh.post("/incr").await.body, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_error_response_is_configurable() {
    let mut server = RedisServer::start();
    let store = RedisStore::builder(server.url())
        .wait_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let layer = SessionLayer::new(store, SessionConfig::default())
        .unwrap()
        .with_store_error_response(|e| {
            assert!(
                matches!(e, tower_redis_session::StoreError::Pool(_)),
                "the real error reaches the callback: {e:?}"
            );
            let mut res = axum::http::Response::new(());
            *res.status_mut() = axum::http::StatusCode::BAD_GATEWAY;
            res.headers_mut()
                .insert("x-session", axum::http::HeaderValue::from_static("down"));
            res
        });
    let mut c = Client::new(routes::routes().layer(layer));
    server.stop();
    let r = c.post("/incr").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.headers["x-session"], "down");
}

/// Logs capture: a store failure is logged, and no cookie value ever appears in logs.
#[tokio::test(flavor = "current_thread")]
async fn failures_are_logged_without_secrets() {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut server = RedisServer::start();
    let app = app(&server.url(), SessionConfig::default());
    let mut c = Client::new(app.clone());
    c.post("/login?user=alice").await;
    let cookie = c.cookie.clone().unwrap();
    let mut forged = Client::new(app.clone());
    forged.cookie = Some("evil*value".into());
    forged.get("/read").await;
    server.stop();
    assert_eq!(c.get("/read").await.status, 503);

    let logs = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    assert!(logs.contains("session store unavailable"), "{logs}");
    assert!(logs.contains("rejected session cookie"), "{logs}");
    let secret = cookie.split_once('.').unwrap().1;
    assert!(
        !logs.contains(secret) && !logs.contains("evil*value"),
        "{logs}"
    );
}
