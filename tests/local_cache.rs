//! The local session cache (`RedisStoreBuilder::local_cache`) against a real Redis:
//! repeat reads cost no round trip, changes made through another instance (another
//! connection) are seen once Redis's invalidation arrives, and an instance cut off
//! from Redis serves cached reads for at most the configured staleness.

mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use common::{Client, RedisServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_redis_session::{LocalCache, RedisStore, SessionConfig, SessionLayer};

fn cached(url: &str, ns: &str, cache: LocalCache) -> RedisStore {
    RedisStore::builder(url)
        .with_local_cache(cache)
        .with_response_timeout(Duration::from_millis(200))
        .with_timeout(Duration::from_millis(400))
        .build()
        .unwrap()
        .with_namespace(ns)
        .unwrap()
}

fn app(store: RedisStore) -> Router {
    routes::routes().layer(SessionLayer::new(store, SessionConfig::default()).unwrap())
}

/// Two instances of one app: `a` with the cache, `b` another process's layer (its own
/// connection), and a client of each holding the same session cookie.
async fn two_instances(url: &str, ns: &str, cache: LocalCache) -> (RedisStore, Client, Client) {
    let store = cached(url, ns, cache);
    let mut a = Client::new(app(store.clone()));
    let other = RedisStore::from_url(url)
        .unwrap()
        .with_namespace(ns)
        .unwrap();
    assert_eq!(a.post("/set?key=x&value=0").await.status, 200);
    let mut b = Client::new(app(other));
    b.cookie = a.cookie.clone();
    (store, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_reads_and_writes_skip_the_read() {
    let server = RedisServer::start();
    let store = cached(&server.url(), "rep", LocalCache::default());
    let mut c = Client::new(app(store.clone()));
    assert_eq!(c.post("/set?key=x&value=1").await.status, 200);
    assert_eq!(c.post("/incr").await.body, "1", "loads the update script");
    let before = server.command_calls();
    for _ in 0..20 {
        assert_eq!(c.get("/get?key=x").await.body, "1");
    }
    for i in 2..=21 {
        assert_eq!(c.post("/incr").await.body, i.to_string());
    }
    let sent = RedisServer::delta(&before, &server.command_calls());
    // The first increment's read filled the cache; everything after is local, and
    // each increment costs only its write.
    assert_eq!(sent.get("hgetall").copied().unwrap_or(0), 0, "{sent:?}");
    assert_eq!(sent.get("evalsha").copied().unwrap_or(0), 20, "{sent:?}");
    let stats = store.cache_stats().unwrap();
    assert!(stats.enabled && stats.hits >= 40, "{stats:?}");
    assert_eq!(stats.entries, 1);
}

/// Coherence: a change made through another instance is seen by this one once Redis's
/// invalidation arrives. Prints the delay (from the other instance's answer to the
/// first read here that shows the change) over 200 changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_another_instance_are_seen() {
    let server = RedisServer::shared();
    // Entries could live 5 s; each change must be seen well before that, through its
    // invalidation.
    let cache = LocalCache::default().with_max_staleness(Duration::from_secs(5));
    let bound = Duration::from_secs(2);
    let (store, mut a, mut b) = two_instances(&server.url(), "coh", cache).await;
    let mut delays = Vec::new();
    for i in 1..=200 {
        assert_eq!(
            a.get("/get?key=x").await.body,
            (i - 1).to_string(),
            "cached"
        );
        assert_eq!(b.post(&format!("/set?key=x&value={i}")).await.status, 200);
        let changed = Instant::now();
        loop {
            if a.get("/get?key=x").await.body == i.to_string() {
                break;
            }
            assert!(
                changed.elapsed() < bound,
                "change {i} not seen within {bound:?}"
            );
            tokio::task::yield_now().await;
        }
        delays.push(changed.elapsed());
    }
    delays.sort();
    let pct = |p: usize| delays[delays.len() * p / 100 - 1];
    println!(
        "invalidation delay over {} changes: p50 {:?}, p99 {:?}, max {:?}",
        delays.len(),
        pct(50),
        pct(99),
        delays[delays.len() - 1]
    );
    let stats = store.cache_stats().unwrap();
    assert!(stats.invalidations >= 200, "{stats:?}");

    // After a write of its own (applied locally, and tracked again by Redis), a change
    // through the other instance still reaches this one.
    for i in 1..=20 {
        assert_eq!(a.post(&format!("/set?key=y&value=a{i}")).await.status, 200);
        assert_eq!(a.get("/get?key=y").await.body, format!("a{i}"));
        assert_eq!(b.post(&format!("/set?key=y&value=b{i}")).await.status, 200);
        let changed = Instant::now();
        while a.get("/get?key=y").await.body != format!("b{i}") {
            assert!(changed.elapsed() < bound, "change b{i} not seen");
            tokio::task::yield_now().await;
        }
    }

    // Logout through the other instance: the session is gone here too.
    assert_eq!(b.post("/logout").await.status, 200);
    let out = Instant::now();
    while a.get("/get?key=x").await.status != 404 {
        assert!(out.elapsed() < bound, "logout not seen");
        tokio::task::yield_now().await;
    }
}

/// A revocation (log out everywhere) through another instance ends the cached session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_through_another_instance_is_seen() {
    let server = RedisServer::shared();
    let (_, mut a, mut b) = two_instances(&server.url(), "rev", LocalCache::default()).await;
    assert_eq!(a.post("/login?user=ann").await.status, 200);
    b.cookie = a.cookie.clone();
    assert_eq!(a.get("/read").await.body, "ann");
    assert_eq!(a.get("/read").await.body, "ann", "served from the cache");
    let other = RedisStore::from_url(&server.url())
        .unwrap()
        .with_namespace("rev")
        .unwrap();
    let admin = SessionLayer::new(other, SessionConfig::default()).unwrap();
    assert_eq!(admin.admin().revoke_all("ann").await.unwrap(), 1);
    let at = Instant::now();
    while a.get("/read").await.status != 401 {
        assert!(at.elapsed() < Duration::from_secs(1), "revocation not seen");
        tokio::task::yield_now().await;
    }
}

/// Our own logout and revocation drop the entry at once (Redis does not tell the
/// connection that made a change: `NOLOOP`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_logout_and_revocation_are_seen_at_once() {
    let server = RedisServer::shared();
    let store = cached(&server.url(), "own", LocalCache::default());
    let layer = SessionLayer::new(store.clone(), SessionConfig::default()).unwrap();
    let app = routes::routes().layer(layer.clone());
    let mut c = Client::new(app.clone());
    assert_eq!(c.post("/login?user=bo").await.status, 200);
    assert_eq!(c.get("/read").await.body, "bo");
    let copy = c.cookie.clone();
    assert_eq!(c.post("/logout").await.status, 200);
    let mut stale = Client::new(app.clone());
    stale.cookie = copy;
    assert_eq!(stale.get("/read").await.status, 401, "logged out here");

    let mut c = Client::new(app.clone());
    assert_eq!(c.post("/login?user=bo").await.status, 200);
    assert_eq!(c.get("/read").await.body, "bo");
    layer.admin().revoke_all("bo").await.unwrap();
    assert_eq!(c.get("/read").await.status, 401, "revoked here");
}

/// The entry carries its session's expiry: it ends on time, and threshold refreshes
/// still happen (and keep the session alive) when reads come from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_sessions_expire_and_refresh_on_time() {
    let server = RedisServer::start();
    let store = cached(&server.url(), "exp", LocalCache::default());
    let config = SessionConfig::default()
        .with_idle_timeout(Duration::from_secs(1))
        .with_refresh_threshold(Duration::from_millis(900));
    let mut c = Client::new(
        routes::routes().layer(SessionLayer::new(store.clone(), config.clone()).unwrap()),
    );
    assert_eq!(c.post("/set?key=x&value=1").await.status, 200);
    // Read every 300 ms for 2 s: each read is below the threshold and refreshes.
    let before = server.command_calls();
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(c.get("/get?key=x").await.body, "1", "kept alive");
    }
    let sent = RedisServer::delta(&before, &server.command_calls());
    assert!(
        sent.get("evalsha").copied().unwrap_or(0) >= 6,
        "refreshed: {sent:?}"
    );
    // Entries are read again once older than the 1 s staleness bound.
    assert!(
        store.cache_stats().unwrap().hits >= 3,
        "{:?}",
        store.cache_stats()
    );
    // Then idle: gone after its TTL.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.get("/get?key=x").await.status, 404, "expired");
}

/// A TCP proxy in front of Redis that can stop forwarding (an instance cut off from
/// Redis without its connection closing) or cut every connection.
struct Proxy {
    addr: SocketAddr,
    forwarding: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(to: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let forwarding = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (f, c) = (forwarding.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                for (r, w) in [(cr, sw), (sr, cw)].map(|(r, w)| (Box::new(r), Box::new(w))) {
                    let f = f.clone();
                    let task = tokio::spawn(pipe(r, w, f));
                    c.lock().unwrap().push(task.abort_handle());
                }
            }
        });
        Proxy {
            addr,
            forwarding,
            conns,
        }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

async fn pipe(
    mut r: Box<impl AsyncReadExt + Unpin>,
    mut w: Box<impl AsyncWriteExt + Unpin>,
    forwarding: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while !forwarding.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Cut off from Redis (the connection stays open, nothing gets through), an instance
/// serves a session from its cache for at most the staleness bound, even one revoked
/// meanwhile, then answers as the store-down policy says (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_serves_at_most_the_staleness_bound() {
    let server = RedisServer::shared();
    let proxy = Proxy::start(server.port).await;
    let bound = Duration::from_millis(300);
    let cache = LocalCache::default().with_max_staleness(bound);
    let (store, mut a, mut b) = two_instances(&proxy.url(), "cut", cache).await;
    // Through the proxy; `b` then reaches Redis directly.
    let direct = RedisStore::from_url(&server.url())
        .unwrap()
        .with_namespace("cut")
        .unwrap();
    b.app = app(direct);
    assert_eq!(a.get("/get?key=x").await.body, "0");
    let fetched = Instant::now(); // the entry was read before this instant
    proxy.forwarding.store(false, Ordering::Relaxed);
    assert_eq!(b.post("/logout").await.status, 200, "revoked meanwhile");
    let mut served = 0;
    loop {
        let asked = Instant::now();
        let r = a.get("/get?key=x").await;
        match r.status.as_u16() {
            200 => {
                assert!(
                    asked < fetched + bound,
                    "served {:?} after the read",
                    asked - fetched
                );
                served += 1;
            }
            503 => break,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(served > 0, "served from the cache while cut off");
    assert_eq!(a.get("/get?key=x").await.status, 503);
    proxy.forwarding.store(true, Ordering::Relaxed);
    let _ = store;
}

/// A lost connection empties the cache: nothing read before it is served after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_empties_the_cache() {
    let server = RedisServer::shared();
    let proxy = Proxy::start(server.port).await;
    let (store, mut a, _) = two_instances(&proxy.url(), "lost", LocalCache::default()).await;
    assert_eq!(a.get("/get?key=x").await.body, "0");
    assert_eq!(store.cache_stats().unwrap().entries, 1);
    proxy.cut();
    let at = Instant::now();
    while store.cache_stats().unwrap().entries > 0 {
        assert!(at.elapsed() < Duration::from_secs(1), "not emptied");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A new connection, tracked again: reads work and are cached again.
    let at = Instant::now();
    while a.get("/get?key=x").await.status != 200 {
        assert!(at.elapsed() < Duration::from_secs(3), "no reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.get("/get?key=x").await.body, "0");
    assert_eq!(store.cache_stats().unwrap().entries, 1);
}

/// Many distinct sessions: the cache stays within its entry and byte bounds, oldest
/// first out. Prints what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_under_many_sessions() {
    let server = RedisServer::shared();
    let cache = LocalCache::default()
        .with_max_entries(500)
        .with_max_bytes(256 << 10);
    let store = cached(&server.url(), "many", cache);
    let app = app(store.clone());
    let mut clients = Vec::new();
    for i in 0..3000 {
        let mut c = Client::new(app.clone());
        assert_eq!(c.post(&format!("/set?key=k&value={i}")).await.status, 200);
        assert_eq!(c.get("/get?key=k").await.body, i.to_string());
        let s = store.cache_stats().unwrap();
        assert!(s.entries <= 500 && s.bytes <= 256 << 10, "{s:?}");
        clients.push(c);
    }
    let s = store.cache_stats().unwrap();
    println!(
        "3000 sessions read: {} cached, {} bytes ({} bytes each)",
        s.entries,
        s.bytes,
        s.bytes / s.entries.max(1)
    );
    // The newest are served locally, the oldest were dropped and come from Redis.
    let hits = s.hits;
    assert_eq!(clients[2999].get("/get?key=k").await.body, "2999");
    assert_eq!(store.cache_stats().unwrap().hits, hits + 1);
    assert_eq!(clients[0].get("/get?key=k").await.body, "0");
    assert_eq!(store.cache_stats().unwrap().hits, hits + 1);
}

/// Where the server refuses `CLIENT TRACKING`, the store reads from Redis as without a
/// cache, and says so once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_without_tracking() {
    let logs = common::logs::Logs::capture();
    let server = RedisServer::shared();
    let rules = cached(&server.url(), "notrack", LocalCache::default()).acl_rules();
    assert!(
        rules.contains("+client|tracking") && rules.contains("+hello"),
        "{rules}"
    );
    // The store's rules without `client|tracking` (which a cached store's rules add).
    let rules = rules.replace(" +client|tracking", "");
    let reply = server
        .raw(&format!("ACL SETUSER notrack on >pw {rules}"))
        .unwrap_or_default();
    assert!(reply.starts_with("+OK"), "{reply}");
    let url = format!("redis://notrack:pw@127.0.0.1:{}", server.port);
    let store = cached(&url, "notrack", LocalCache::default());
    let mut c = Client::new(app(store.clone()));
    assert_eq!(c.post("/set?key=x&value=1").await.status, 200);
    assert_eq!(c.get("/get?key=x").await.body, "1");
    assert_eq!(c.get("/get?key=x").await.body, "1");
    let stats = store.cache_stats().unwrap();
    assert!(
        !stats.enabled && stats.hits == 0 && stats.entries == 0,
        "{stats:?}"
    );
    let text = logs.text();
    assert_eq!(
        text.matches("local session cache disabled").count(),
        1,
        "{text}"
    );
    assert!(text.contains("CLIENT TRACKING refused"), "{text}");
}

/// On a Redis Cluster every node connection that reads a session tracks it (the read
/// pipelines `CLIENT TRACKING`), so changes through another instance reach this one
/// from whichever master holds the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_a_cluster() {
    let cluster = common::RedisCluster::shared();
    let store = RedisStore::cluster_builder(cluster.urls())
        .with_local_cache(LocalCache::default().with_max_staleness(Duration::from_secs(5)))
        .build()
        .unwrap()
        .with_namespace("clcache")
        .unwrap();
    let other = RedisStore::cluster_builder(cluster.urls())
        .build()
        .unwrap()
        .with_namespace("clcache")
        .unwrap();
    let (a_app, b_app) = (app(store.clone()), app(other));
    // Sessions with random tags: spread over the masters.
    for i in 0..12 {
        let mut a = Client::new(a_app.clone());
        assert_eq!(a.post(&format!("/set?key=x&value={i}")).await.status, 200);
        for _ in 0..3 {
            assert_eq!(a.get("/get?key=x").await.body, i.to_string());
        }
        let mut b = Client::new(b_app.clone());
        b.cookie = a.cookie.clone();
        assert_eq!(b.post("/set?key=x&value=changed").await.status, 200);
        let at = Instant::now();
        while a.get("/get?key=x").await.body != "changed" {
            assert!(
                at.elapsed() < Duration::from_secs(2),
                "session {i}: not seen"
            );
            tokio::task::yield_now().await;
        }
        // This instance's own writes: the next read comes from Redis, then is cached.
        assert_eq!(a.post("/incr").await.body, "1");
        assert_eq!(a.post("/incr").await.body, "2");
    }
    let stats = store.cache_stats().unwrap();
    assert!(stats.enabled && stats.hits >= 24, "{stats:?}");
    assert!(stats.invalidations >= 12, "{stats:?}");
}

/// Behind Sentinel the master connections are tracked as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_behind_sentinel() {
    let sentinels = &*common::stores::SENTINELS;
    let store = RedisStore::builder(sentinels.url())
        .with_local_cache(LocalCache::default())
        .build()
        .unwrap()
        .with_namespace("sentcache")
        .unwrap();
    store.check().await.unwrap();
    let mut c = Client::new(app(store.clone()));
    assert_eq!(c.post("/set?key=x&value=1").await.status, 200);
    for _ in 0..5 {
        assert_eq!(c.get("/get?key=x").await.body, "1");
    }
    let stats = store.cache_stats().unwrap();
    assert!(stats.enabled && stats.hits >= 4, "{stats:?}");
    // A change made directly on the master is pushed to us.
    let master = sentinels
        .nodes
        .iter()
        .find(|n| n.raw("ROLE").is_some_and(|r| r.contains("master")))
        .expect("a master")
        .url();
    let other = RedisStore::from_url(&master)
        .unwrap()
        .with_namespace("sentcache")
        .unwrap();
    let mut b = Client::new(app(other));
    b.cookie = c.cookie.clone();
    assert_eq!(b.post("/set?key=x&value=2").await.status, 200);
    let at = Instant::now();
    while c.get("/get?key=x").await.body != "2" {
        assert!(at.elapsed() < Duration::from_secs(1), "not seen");
        tokio::task::yield_now().await;
    }
}

/// Concurrent read-modify-writes on one session (16 at a time): this process's own
/// writes are applied in the order Redis ran them, so the entry stays exact and
/// nothing is read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_keep_the_entry_exact() {
    let server = RedisServer::start();
    let store = cached(&server.url(), "hot", LocalCache::default());
    let app = app(store.clone());
    let mut first = Client::new(app.clone());
    assert_eq!(first.post("/incr").await.body, "1");
    assert_eq!(
        first.post("/incr").await.body,
        "2",
        "the update script is loaded"
    );
    let before = server.command_calls();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let mut c = first.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    assert_eq!(c.post("/incr").await.status, 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let sent = RedisServer::delta(&before, &server.command_calls());
    assert_eq!(sent.get("evalsha").copied(), Some(320), "{sent:?}");
    assert_eq!(sent.get("hgetall").copied().unwrap_or(0), 0, "{sent:?}");
    // What the cache serves is what Redis holds.
    let cached_value = first.get("/get?key=counter").await.body;
    let direct = RedisStore::from_url(&server.url())
        .unwrap()
        .with_namespace("hot")
        .unwrap();
    let mut b = Client::new(
        routes::routes().layer(SessionLayer::new(direct, SessionConfig::default()).unwrap()),
    );
    b.cookie = first.cookie.clone();
    assert_eq!(b.get("/get?key=counter").await.body, cached_value);
}

/// A connection the pool drops after a failure (here a reply timeout while Redis is
/// paused) takes its tracking with it: Redis will push no more invalidations for what
/// was read through it, so the cache forgets everything it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_for_a_timeout_empties_the_cache() {
    let server = RedisServer::start();
    let store = RedisStore::builder(server.url())
        .with_max_connections(1)
        .with_response_timeout(Duration::from_millis(200))
        .with_timeout(Duration::from_secs(1))
        .with_local_cache(LocalCache::default().with_max_staleness(Duration::from_secs(30)))
        .build()
        .unwrap();
    let app = app(store.clone());
    let mut c = Client::new(app.clone());
    assert_eq!(c.post("/set?key=x&value=1").await.status, 200);
    for _ in 0..2 {
        assert_eq!(c.get("/get?key=x").await.body, "1");
    }
    let stats = store.cache_stats().unwrap();
    assert!(stats.hits >= 1 && stats.entries == 1, "{stats:?}");
    let reply = server.raw("CLIENT PAUSE 600 ALL").unwrap_or_default();
    assert!(reply.starts_with("+OK"), "{reply}");
    let mut other = Client::new(app.clone());
    assert_eq!(other.post("/incr").await.status, 503, "the reply timed out");
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The next operation replaces the connection; the cache holds nothing from before.
    assert_eq!(other.post("/incr").await.status, 200);
    let misses = store.cache_stats().unwrap().misses;
    assert_eq!(c.get("/get?key=x").await.body, "1");
    assert_eq!(
        store.cache_stats().unwrap().misses,
        misses + 1,
        "read from Redis again"
    );
}
