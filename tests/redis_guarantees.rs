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
        .with_wait_timeout(Duration::from_millis(300))
        .with_connect_timeout(Duration::from_millis(300))
        .with_response_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    routes::routes()
        .merge(common::session_routes::per_user())
        .layer(SessionLayer::new(store, config).unwrap())
}

fn calls(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for (k, v) in pairs {
        *m.entry(k.to_string()).or_insert(0) += v;
    }
    m
}

// What each request runs. `INFO commandstats` counts the commands a script runs inside
// Redis too; those are listed after the `evalsha` (the first, `TIME`, is the clock every
// session and token script checks the caller's against), and all of one script is one
// round trip.

/// A read: the record and, in the same round trip, whether the user's handle map still
/// holds it (a logged-in session without its entry fails closed; for an anonymous
/// session the map does not exist).
const READ: &[(&str, u64)] = &[("hgetall", 1), ("hexists", 1)];
/// `write.lua` creating an anonymous session: condition check, one `HSET` (data and
/// `m:s`/`m:e`), `PEXPIRE`.
const CREATE: &[(&str, u64)] = &[
    ("evalsha", 1),
    ("time", 1),
    ("exists", 1),
    ("hset", 1),
    ("pexpire", 1),
];
/// `update.lua` updating a session: one `HMGET` (existence and TTL inputs), `HSET`,
/// `PEXPIRE`. A logged-in session's index entry was written with slack at login, so
/// the update leaves the index alone.
const UPDATE: &[(&str, u64)] = &[
    ("evalsha", 1),
    ("time", 1),
    ("hmget", 1),
    ("hset", 1),
    ("pexpire", 1),
];
/// ... of a logged-in session: also checks that its handle-map entry is still there.
const UPDATE_INDEXED: &[(&str, u64)] = &[
    ("evalsha", 1),
    ("time", 1),
    ("hmget", 1),
    ("hexists", 1),
    ("hset", 1),
    ("pexpire", 1),
];
/// `update.lua` refreshing a logged-in session past its index score: re-indexes it
/// (`ZADD`, `PTTL`, `PEXPIRE` of the index and its handle map).
const TOUCH_INDEXED: &[(&str, u64)] = &[
    ("evalsha", 1),
    ("time", 1),
    ("hmget", 1),
    ("hexists", 1),
    ("hset", 1),
    ("pexpire", 3),
    ("zadd", 1),
    ("pttl", 1),
];
/// `take.lua`: delete the anonymous session a login moved into the user's slot (its
/// last round trip, after the read of the current session and the login's write).
const TAKE: &[(&str, u64)] = &[("evalsha", 1), ("hgetall", 1), ("del", 1)];
/// `write.lua` logging in (the round trip after the read of the current session): look for expired index entries (at
/// most 100, none here, so no `ZREM`), read the index for the session limit (default
/// 100; the user has no other session here, so no `HGET` of one), create, index it,
/// record its handle for expiry reports.
const LOGIN: &[(&str, u64)] = &[
    ("evalsha", 1),
    ("time", 1),
    ("exists", 1),
    ("zrangebyscore", 1),
    ("zrange", 1),
    ("hset", 2),
    ("pexpire", 3),
    ("zadd", 1),
    ("pttl", 1),
];
/// `write.lua` rotating a logged-in session's id (`cycle_id`): one `HMGET` of the
/// current key (existence, TTL inputs, data size), its handle-map entry (`HEXISTS`), `RENAMENX` within the slot, the old
/// member out of the index and handle map, the record stamped, re-indexed with its
/// handle-map entries.
const ROTATE: &[(&str, u64)] = &[
    ("evalsha", 1),
    ("time", 1),
    ("hmget", 1),
    ("hexists", 1),
    ("renamenx", 1),
    ("zrem", 1),
    ("hdel", 1),
    ("zadd", 1),
    ("pttl", 1),
    ("hset", 2),
    ("pexpire", 3),
];
/// `write.lua` logging the same user in again: a rotation (the session keeps its data,
/// handle and token families) with the login's metadata; no session limit to check.
const RELOGIN: &[(&str, u64)] = ROTATE;
/// `delete.lua`: logout of a logged-in session (handle and user for the event, the
/// key, its index entry, and its two handle-map entries: member -> handle, and
/// handle -> member after checking it still names this member).
const DELETE: &[(&str, u64)] = &[
    ("evalsha", 1),
    ("time", 1),
    ("hmget", 1),
    ("del", 1),
    ("zrem", 1),
    ("hget", 1),
    ("hdel", 2),
];

fn with(base: &[(&str, u64)], extra: &[(&str, u64)]) -> HashMap<String, u64> {
    calls(&[base, extra].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_command_budget_per_request() {
    let server = RedisServer::start();
    let config = SessionConfig::default()
        .with_idle_timeout(Duration::from_millis(1500))
        .with_refresh_threshold(Duration::from_millis(1000));
    let app = app(&server.url(), config);
    // Warm up: open the pooled connection, load the scripts, read the user-tag salt.
    let mut warm = Client::new(app.clone());
    warm.post("/incr").await;
    warm.post("/incr").await;
    warm.post("/login?user=w").await;
    warm.post("/logout").await;

    let mut c = Client::new(app.clone());
    let step = |name: &'static str, expected: HashMap<String, u64>| {
        let before = server.command_calls();
        (before, name, expected)
    };
    macro_rules! check {
        ($name:expr, $req:expr, $expected:expr) => {{
            let (before, name, expected) = step($name, $expected);
            $req;
            let got = RedisServer::delta(&before, &server.command_calls());
            eprintln!("{name}: {got:?}");
            assert_eq!(got, expected, "{name}");
        }};
    }
    check!("no cookie, untouched", c.get("/plain").await, calls(&[]));
    check!("new session", c.post("/incr").await, calls(CREATE));
    check!("cookie, untouched", c.get("/plain").await, calls(&[]));
    check!("read", c.get("/get?key=counter").await, calls(READ));
    check!(
        "read-modify-write",
        c.post("/incr").await,
        with(UPDATE, READ)
    );
    check!(
        "login",
        c.post("/login?user=alice").await,
        calls(&[LOGIN, TAKE, READ].concat())
    );
    check!("read (logged in)", c.get("/read").await, calls(READ));
    check!(
        "read-modify-write (logged in)",
        c.post("/incr").await,
        with(UPDATE_INDEXED, READ)
    );
    check!(
        "login again",
        c.post("/login?user=alice").await,
        with(RELOGIN, READ)
    );
    check!("cycle_id", c.post("/cycle").await, with(ROTATE, READ));
    tokio::time::sleep(Duration::from_millis(600)).await;
    check!(
        "refresh (within the index slack)",
        c.get("/read").await,
        with(UPDATE_INDEXED, READ)
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    check!(
        "refresh (past the index score: re-index)",
        c.get("/read").await,
        with(TOUCH_INDEXED, READ)
    );
    check!("logout", c.post("/logout").await, calls(DELETE));

    for value in [
        "AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "x*?[",
        "",
    ] {
        let mut f = Client::new(app.clone());
        f.cookie = Some(value.to_owned());
        // What "untouched" costs with any cookie: nothing. (A forged signed or private
        // cookie that a handler reads costs nothing either: tests/hostile.rs.)
        check!(
            "cookie present, handler ignores the session",
            f.get("/plain").await,
            calls(&[])
        );
    }
    for value in ["x*?[", "", "\\r\\nFLUSHALL", &"A".repeat(9000)] {
        let mut f = Client::new(app.clone());
        f.cookie = Some(value.to_owned());
        check!(
            "malformed, read",
            assert_eq!(f.get("/read").await.status, 401),
            calls(&[])
        );
    }
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

    /// Waits until the stream shows a command sent after it started.
    fn ready(&self, server: &RedisServer) {
        let start = Instant::now();
        while !String::from_utf8_lossy(&self.buf.lock().unwrap()).contains("\"PING\"") {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "MONITOR never started"
            );
            server.raw("PING");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything the stream showed up to a marker command sent now, so every command
    /// sent before the call is in it.
    fn finish(self, server: &RedisServer) -> String {
        server.raw("ECHO monitor-finished");
        let start = Instant::now();
        while !String::from_utf8_lossy(&self.buf.lock().unwrap()).contains("monitor-finished") {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "MONITOR never showed the marker"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
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
    monitor.ready(&server);
    let app = app(&server.url(), SessionConfig::default());
    let mut cookies = Vec::new();
    for i in 0..5 {
        let mut c = Client::new(app.clone());
        c.post(&format!("/login?user=user-number-{i}")).await;
        c.post("/incr").await;
        c.get("/read").await;
        cookies.push(c.cookie.clone().unwrap());
    }
    let monitored = monitor.finish(&server);
    assert!(monitored.contains("HGETALL"), "MONITOR saw nothing");

    let mut conn = common::stores::redis_conn(&server.url()).await;
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    let sessions = keys.iter().filter(|k| k.contains("}:s:")).count();
    assert_eq!(sessions, 5);
    assert!(keys.contains(&"session:salt".to_owned()));
    // Every key, whatever its type: sessions, user indexes, the salt.
    let dump = common::stores::dump(&mut conn, &keys).await;
    // The user id appears in no key name, in the dump or in the MONITOR stream (it is
    // stored inside the records, where listing and events need it, by design).
    assert!(keys.iter().all(|k| !k.contains("user-number")), "{keys:?}");
    for line in monitored.lines().filter(|l| l.contains("user-number")) {
        // A command names its key right after the command; EVALSHA names its keys
        // after the script and their count. No key holds the id.
        let args: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        let keys: &[&str] = match args.first().map(|c| c.to_ascii_uppercase()).as_deref() {
            Some("EVALSHA" | "EVAL") => {
                let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
                args.get(3..3 + n).unwrap_or(&[])
            }
            _ => args.get(1..2).unwrap_or(&[]),
        };
        for key in keys {
            assert!(
                !key.contains("user-number"),
                "a key name holds the user id: {line}"
            );
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
        .with_wait_timeout(Duration::from_millis(200))
        .with_connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let layer = SessionLayer::new(store, SessionConfig::default())
        .unwrap()
        .with_store_error_response(|e| {
            assert!(
                matches!(e, tower_redis_session::StoreError::Connect { .. }),
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
    let logs = common::logs::Logs::capture();

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

    let logs = logs.text();
    assert!(logs.contains("session store unavailable"), "{logs}");
    assert!(logs.contains("rejected session cookie"), "{logs}");
    let secret = cookie.split_once('.').unwrap().1;
    assert!(
        !logs.contains(secret) && !logs.contains("evil*value"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_index_never_leaks() {
    let server = RedisServer::start();
    let short = SessionConfig::default().with_idle_timeout(Duration::from_secs(1));
    let store = RedisStore::from_url(&server.url()).unwrap();
    let layer = SessionLayer::new(store, short).unwrap();
    let users = layer.admin();
    let app = routes::routes()
        .route(
            "/remember",
            axum::routing::post(|s: tower_redis_session::Session| async move {
                s.set_expiry(tower_redis_session::Expiry::idle(Duration::from_secs(60)))
                    .await?;
                s.login("carol").await?;
                Ok::<_, tower_redis_session::SessionError>("ok")
            }),
        )
        .layer(layer);
    let mut conn = common::stores::redis_conn(&server.url()).await;
    for _ in 0..2 {
        Client::new(app.clone()).post("/login?user=carol").await;
    }
    let mut long = Client::new(app.clone());
    long.post("/remember").await;
    let index: Vec<String> = conn.keys("session:{*}:u").await.unwrap();
    assert_eq!(index.len(), 1, "one index per user");
    let idx = &index[0];
    let idx_ttl: i64 = conn.pttl(idx).await.unwrap();
    assert!(
        idx_ttl > 59_000,
        "the index outlives its longest session: {idx_ttl}"
    );
    assert_eq!(conn.zcard::<_, i64>(idx).await.unwrap(), 3);

    // The two short sessions expire silently (Redis TTL)...
    tokio::time::sleep(Duration::from_millis(600)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let sessions: Vec<String> = conn.keys("session:{*}:s:*").await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        conn.zcard::<_, i64>(idx).await.unwrap(),
        3,
        "not pruned yet"
    );
    // ...and the next per-user operation prunes them.
    assert_eq!(users.list("carol").await.unwrap().len(), 1);
    assert_eq!(conn.zcard::<_, i64>(idx).await.unwrap(), 1, "pruned");

    // Once the last session is gone, so is the index.
    assert_eq!(long.post("/logout").await.status, 200);
    let left: Vec<String> = conn.keys("session:{*}:*").await.unwrap();
    assert!(left.is_empty(), "{left:?}");

    // And an index whose sessions all expire expires with them.
    Client::new(app.clone()).post("/login?user=dora").await;
    let index: Vec<String> = conn.keys("session:{*}:u").await.unwrap();
    let ttl: i64 = conn.pttl(&index[0]).await.unwrap();
    assert!(
        ttl > 1000 && ttl <= 1500,
        "index TTL follows its session, plus half a TTL of slack: {ttl}"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sessions: Vec<String> = conn.keys("session:{*}:s:*").await.unwrap();
    assert!(sessions.is_empty(), "{sessions:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left: Vec<String> = conn.keys("session:{*}:*").await.unwrap();
    assert!(left.is_empty(), "index expired with its sessions: {left:?}");
}

/// The longest lifetimes a configuration accepts (10 years) work end to end in the
/// scripts: no overflow, no float that `PEXPIRE` refuses. Longer ones are refused when
/// the layer is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_lifetimes_work_and_longer_are_refused() {
    let server = RedisServer::shared();
    let ten_years = Duration::from_secs(10 * 365 * 86_400);
    let config = SessionConfig::default()
        .with_idle_timeout(ten_years)
        .with_absolute_lifetime(Some(ten_years));
    let store = RedisStore::from_url(&server.url())
        .unwrap()
        .with_namespace("longest")
        .unwrap();
    let mut c = Client::new(routes::routes().layer(SessionLayer::new(store, config).unwrap()));
    assert_eq!(c.post("/login?user=max").await.status, 200);
    assert_eq!(c.post("/incr").await.status, 200);
    assert_eq!(c.get("/read").await.body, "max");
    let mut conn = common::stores::redis_conn(&server.url()).await;
    let keys: Vec<String> = conn.keys("longest:*:s:*").await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = conn.pttl(&keys[0]).await.unwrap();
    let want = i64::try_from(ten_years.as_millis()).unwrap();
    assert!((want - 60_000..=want).contains(&ttl), "{ttl}");

    for config in [
        SessionConfig::default().with_idle_timeout(Duration::MAX),
        SessionConfig::default().with_absolute_lifetime(Some(ten_years * 2)),
    ] {
        let store = RedisStore::from_url(&server.url()).unwrap();
        assert!(SessionLayer::new(store, config).is_err());
    }
}

/// Per script call in a `MONITOR` stream: how many commands the script ran inside
/// Redis, and how many of them were `name`.
#[cfg(feature = "tokens")]
fn per_script_call(monitored: &str, name: &str) -> Vec<(usize, usize)> {
    let quoted = format!("\"{name}\"");
    let mut calls = Vec::new();
    for line in monitored.lines() {
        let upper = line.to_ascii_uppercase();
        if !line.contains(" lua] ") && (upper.contains("\"EVALSHA\"") || upper.contains("\"EVAL\""))
        {
            calls.push((0, 0));
        } else if line.contains(" lua] ")
            && let Some(last) = calls.last_mut()
        {
            last.0 += 1;
            if upper.contains(&quoted) {
                last.1 += 1;
            }
        }
    }
    calls
}

/// With 250 sessions and 250 token families of one user (no limits), listing goes in
/// pages of 100 and revoking in steps that each read at most 100 index entries or
/// families; every session and family still ends.
#[cfg(feature = "tokens")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_work_goes_in_bounded_steps() {
    use tower_redis_session::ListCursor;
    use tower_redis_session::tokens::{TokenConfig, Tokens};

    let server = RedisServer::start();
    let store = RedisStore::from_url(&server.url())
        .unwrap()
        .with_namespace("bounded")
        .unwrap();
    let layer = SessionLayer::new(
        store.clone(),
        SessionConfig::default().without_session_limit(),
    )
    .unwrap();
    let app = routes::routes()
        .merge(common::session_routes::per_user())
        .layer(layer.clone());
    let tokens = Tokens::new(store, TokenConfig::default().without_family_limit()).unwrap();
    let mut web = Vec::new();
    for _ in 0..250 {
        let mut c = Client::new(app.clone());
        assert_eq!(c.post("/login?user=alice").await.status, 200);
        web.push(c);
    }
    let mut api = Vec::new();
    for _ in 0..250 {
        api.push(tokens.issue("alice").await.unwrap());
    }

    // Pages of 100: every session once.
    let users = layer.admin();
    let mut seen = std::collections::HashSet::new();
    let mut cursor = Some(ListCursor::default());
    let mut pages = 0;
    while let Some(c) = cursor {
        let page = users.list_page("alice", c).await.unwrap();
        assert!(page.sessions.len() <= 100);
        seen.extend(page.sessions.iter().map(|s| s.handle));
        cursor = page.next;
        pages += 1;
    }
    assert_eq!((seen.len(), pages), (250, 3));
    assert_eq!(
        users.list("alice").await.unwrap().len(),
        100,
        "the first page"
    );
    assert_eq!(tokens.list("alice").await.unwrap().len(), 250);

    let monitor = Monitor::start(server.port);
    monitor.ready(&server);
    assert_eq!(web[0].post("/revoke_others").await.body, "249");
    assert_eq!(web[0].post("/everywhere").await.body, "1");
    let monitored = monitor.finish(&server);
    // Each step reads (HMGET) at most 100 index entries and, for log out everywhere
    // once the sessions are done, at most 100 token families.
    let calls = per_script_call(&monitored, "HMGET");
    assert!(calls.len() >= 3 + 3, "steps: {calls:?}");
    for (commands, reads) in &calls {
        assert!(
            *reads <= 2 * 100,
            "one call read {reads} entries: {calls:?}"
        );
        assert!(
            *commands <= 1300,
            "one call ran {commands} commands: {calls:?}"
        );
    }
    let families = per_script_call(&monitored, "HGET");
    assert!(
        families.iter().all(|(_, n)| *n <= 2 * 100 + 1),
        "{families:?}"
    );

    for c in &mut web {
        assert_eq!(c.get("/read").await.status, 401);
    }
    for p in &api {
        assert!(tokens.authenticate(&p.access_token).await.is_err());
    }
    let mut conn = common::stores::redis_conn(&server.url()).await;
    let left: Vec<String> = conn.keys("bounded:{*}:[ust]*").await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// Revoke others walks the user's index in steps; the kept session may be re-scored
/// (a threshold refresh moves it to the end) between two steps. Every other session is
/// still visited: deleted, counted and reported, none skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_others_visits_every_session_when_the_kept_one_moves() {
    let server = RedisServer::shared();
    let url = server.url();
    let index: Arc<Mutex<Option<String>>> = Arc::default();
    let (idx, pause_url) = (index.clone(), url.clone());
    let store = common::stores::redis_store_on(&url, "rescored").with_step_pause(move || {
        let (idx, url) = (idx.clone(), pause_url.clone());
        async move {
            let Some(index) = idx.lock().unwrap().clone() else {
                return;
            };
            // After the first step the handle map holds only the kept session: move it
            // to the end of the index, as its threshold refresh would.
            let mut conn = common::stores::redis_conn(&url).await;
            let map: HashMap<String, String> = conn.hgetall(format!("{index}h")).await.unwrap();
            let kept = map.keys().find(|k| !k.starts_with('#')).unwrap().clone();
            let last: Vec<(String, f64)> = conn.zrange_withscores(&index, -1, -1).await.unwrap();
            let _: () = redis::cmd("ZADD")
                .arg(&index)
                .arg("XX")
                .arg(last[0].1 + 60_000.0)
                .arg(&kept)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    });
    let app = routes::routes()
        .merge(common::session_routes::per_user())
        .layer(SessionLayer::new(store, SessionConfig::default().without_session_limit()).unwrap());
    let mut web = Vec::new();
    for _ in 0..150 {
        let mut c = Client::new(app.clone());
        assert_eq!(c.post("/login?user=alice").await.status, 200);
        web.push(c);
    }
    let tag = web[0]
        .cookie
        .as_deref()
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    *index.lock().unwrap() = Some(format!("rescored:{{{tag}}}:u"));
    assert_eq!(web[0].post("/revoke_others").await.body, "149");
    let mut conn = common::stores::redis_conn(&url).await;
    let left: Vec<String> = conn.keys(format!("rescored:{{{tag}}}:s:*")).await.unwrap();
    assert_eq!(left.len(), 1, "only the kept session's record is left");
    assert_eq!(web[0].get("/read").await.body, "alice");
}

/// Every write keeps the data size in the record (third value of `m:t`), so the size
/// limit holds after concurrent writes merge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_size_is_kept_with_the_record() {
    let server = RedisServer::shared();
    let store = RedisStore::from_url(&server.url())
        .unwrap()
        .with_namespace("sized")
        .unwrap();
    let app = routes::routes().layer(
        SessionLayer::new(store, SessionConfig::default().with_max_session_size(100)).unwrap(),
    );
    let mut c = Client::new(app);
    c.post("/set?key=a&value=12345").await; // "a" + "\"12345\"" = 8
    let mut conn = common::stores::redis_conn(&server.url()).await;
    let keys: Vec<String> = conn.keys("sized:*:s:*").await.unwrap();
    let size = |conn: &mut redis::aio::MultiplexedConnection| {
        let key = keys[0].clone();
        let mut conn = conn.clone();
        async move {
            let times: String = conn.hget(&key, "m:t").await.unwrap();
            times.split(',').nth(2).unwrap().to_owned()
        }
    };
    assert_eq!(size(&mut conn).await, "8");
    c.post("/set?key=b&value=1").await; // + "b" + "\"1\"" = 4
    assert_eq!(size(&mut conn).await, "12");
    c.post(&format!("/set?key=a&value={}", "9".repeat(80)))
        .await; // a: 8 -> 83
    assert_eq!(size(&mut conn).await, "87");
    let r = c
        .post(&format!("/set?key=c&value={}", "9".repeat(20)))
        .await;
    assert_eq!(
        r.status, 413,
        "87 + 23 > 100: refused by the request's own check"
    );
    assert_eq!(size(&mut conn).await, "87", "nothing written");
}

/// Redis keeps a hash in its compact listpack encoding only while every value is at
/// most 64 bytes (`hash-max-listpack-value`); past that each field costs ~40 bytes more.
/// Every packed field of the record stays under it, and the user agent is stored in
/// pieces of 64 bytes, so a logged-in browser session with short values stays compact:
/// also with "remember me" (an idle override, a deadline and a persistent cookie all
/// set) and after hundreds of writes. The earlier layout packed all eight numbers into
/// one field (72 bytes and more with "remember me") and kept the user agent whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_with_short_values_stays_compact() {
    use axum::routing::post;
    use tower_redis_session::{Expiry, Session};
    let server = RedisServer::shared();
    let store = RedisStore::from_url(&server.url())
        .unwrap()
        .with_namespace("compact")
        .unwrap();
    let app = routes::routes()
        .route(
            "/remember",
            post(|session: Session| async move {
                session
                    .set_expiry(Expiry::remember_me(Duration::from_secs(30 * 86_400)))
                    .await
                    .map(|()| "ok")
            }),
        )
        .layer(SessionLayer::new(store, SessionConfig::default()).unwrap());
    let mut c = Client::new(app);
    // A browser's user agent, 111 bytes: stored in two pieces.
    c.headers = vec![(
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/131.0.0.0 Safari/537.36"
            .to_owned(),
    )];
    assert_eq!(c.post("/login?user=alice").await.status, 200);
    assert_eq!(c.post("/remember").await.status, 200);
    for _ in 0..120 {
        assert_eq!(c.post("/incr").await.status, 200);
    }
    let mut conn = common::stores::redis_conn(&server.url()).await;
    let keys: Vec<String> = conn.keys("compact:*:s:*").await.unwrap();
    assert_eq!(keys.len(), 1);
    let fields: HashMap<String, String> = conn.hgetall(&keys[0]).await.unwrap();
    for (field, value) in &fields {
        assert!(
            value.len() <= 64,
            "{field} is {} bytes: {value}",
            value.len()
        );
    }
    let encoding: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(encoding, "listpack", "{fields:?}");
    assert_eq!(c.get("/read").await.body, "alice");
}

/// The record layout changed in 0.2 (packed metadata; see CHANGELOG): a record in the
/// 0.1 layout is no session. The request gets a fresh one and nothing fails; the old
/// record is left to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_in_the_old_layout_is_no_session() {
    let server = RedisServer::shared();
    let store = RedisStore::from_url(&server.url())
        .unwrap()
        .with_namespace("layout01")
        .unwrap();
    let app = routes::routes().layer(SessionLayer::new(store, SessionConfig::default()).unwrap());
    let mut c = Client::new(app);
    assert_eq!(c.post("/set?key=a&value=1").await.status, 200);
    let mut conn = common::stores::redis_conn(&server.url()).await;
    let keys: Vec<String> = conn.keys("layout01:*:s:*").await.unwrap();
    assert_eq!(keys.len(), 1);
    let old = &keys[0];
    // The same session as 0.1 stored it: one field per metadata value.
    let times: String = conn.hget(old, "m:t").await.unwrap();
    let identity: String = conn.hget(old, "m:n").await.unwrap();
    let t: Vec<&str> = times.split(',').collect();
    let (created, handle) = identity.split_once(',').unwrap();
    let _: () = conn.hdel(old, &["m:t", "m:n"]).await.unwrap();
    let _: () = conn
        .hset_multiple(
            old,
            &[
                ("m:e", t[0]),
                ("m:s", t[1]),
                ("m:z", t[2]),
                ("m:c", created),
                ("m:h", handle),
            ],
        )
        .await
        .unwrap();

    assert_eq!(c.get("/get?key=a").await.status, 404, "not read");
    assert_eq!(c.post("/set?key=b&value=2").await.status, 200);
    assert_eq!(
        c.get("/get?key=b").await.status,
        200,
        "a fresh session works"
    );
    let mut now: Vec<String> = conn.keys("layout01:*:s:*").await.unwrap();
    now.sort();
    assert_eq!(
        now.len(),
        2,
        "a new key; the old record is untouched: {now:?}"
    );
    let left: HashMap<String, String> = conn.hgetall(old).await.unwrap();
    assert_eq!(left.get("d:a").map(String::as_str), Some("\"1\""));
    assert!(!left.contains_key("m:t"));
}

/// A record whose limits field (`m:l`: idle override, deadline, persistence) is gone,
/// as in the layout before it existed, is no session: read as none rather than as a
/// session without a deadline, and never written to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_without_its_limits_is_no_session() {
    let server = RedisServer::shared();
    let store = RedisStore::from_url(&server.url())
        .unwrap()
        .with_namespace("nolimits")
        .unwrap();
    let app = routes::routes().layer(SessionLayer::new(store, SessionConfig::default()).unwrap());
    let mut c = Client::new(app);
    assert_eq!(c.post("/login?user=alice").await.status, 200);
    assert_eq!(c.post("/set?key=a&value=1").await.status, 200);
    let mut conn = common::stores::redis_conn(&server.url()).await;
    let keys: Vec<String> = conn.keys("nolimits:*:s:*").await.unwrap();
    assert_eq!(keys.len(), 1);
    let _: () = conn.hdel(&keys[0], "m:l").await.unwrap();
    let before: HashMap<String, String> = conn.hgetall(&keys[0]).await.unwrap();
    assert_eq!(c.get("/read").await.status, 401, "no session");
    let after: HashMap<String, String> = conn.hgetall(&keys[0]).await.unwrap();
    assert_eq!(before, after, "never written to");
}

/// A session whose TTL is capped by its absolute deadline gains nothing from a
/// refresh: reads below the threshold send no write (only the `HGETALL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_refresh_when_it_gains_nothing() {
    let server = RedisServer::start();
    // Idle 10 s, refresh below 5 s; but the deadline leaves 3 s at most.
    let config = SessionConfig::default()
        .with_idle_timeout(Duration::from_secs(10))
        .with_absolute_lifetime(Some(Duration::from_secs(3)));
    let mut c = Client::new(app(&server.url(), config));
    c.post("/set?key=k&value=v").await;
    for _ in 0..3 {
        let before = server.command_calls();
        assert_eq!(c.get("/get?key=k").await.body, "v");
        let got = RedisServer::delta(&before, &server.command_calls());
        assert_eq!(got, calls(READ), "below the threshold, nothing to gain");
    }
}
