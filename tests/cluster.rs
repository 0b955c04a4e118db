//! Redis Cluster specifics: keys spread over every master, per-user scripts stay in one
//! slot (no CROSSSLOT anywhere), and a master failover under the layer.
//! (The whole conformance suite also runs on a cluster: `tests/conformance.rs`.)

mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::time::{Duration, Instant};

use common::{Client, RedisCluster};
use tower_redis_session::{RedisStore, SessionConfig, SessionLayer};

/// A counter from an `INFO` line like `cmdstat_evalsha:calls=3,failed_calls=0`.
fn stat<'a>(info: &'a str, line: &'a str) -> impl Fn(&str) -> u64 + 'a {
    move |field| {
        info.lines()
            .find_map(|l| l.strip_prefix(line)?.strip_prefix(':'))
            .and_then(|kv| {
                kv.split(',')
                    .find_map(|p| p.trim().strip_prefix(field)?.strip_prefix('='))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

fn errorstats(node: &common::RedisServer) -> String {
    node.raw("INFO errorstats").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_many_users_spread_over_all_masters_without_crossslot() {
    let cluster = RedisCluster::start(3, 0);
    let store = RedisStore::cluster_builder(cluster.urls())
        .build()
        .unwrap()
        .with_namespace("spread")
        .unwrap();
    // INFO memory reaches the nodes: a cluster of noeviction nodes passes.
    store.check().await.unwrap();
    let layer = SessionLayer::new(store, SessionConfig::default()).unwrap();
    let users = layer.admin();
    let app = routes::routes().layer(layer);
    let mut clients = Vec::new();
    for i in 0..60 {
        let mut c = Client::new(app.clone());
        c.post("/incr").await; // anonymous first: the login moves it across slots
        c.post(&format!("/login?user=user{i}")).await;
        c.post(&format!("/login?user=user{i}")).await; // rotation inside the user slot
        assert_eq!(c.get("/read").await.body, format!("user{i}"));
        assert_eq!(c.post("/incr").await.body, "2", "data moved with the login");
        clients.push(c);
    }
    for i in 0..60 {
        assert_eq!(users.list(&format!("user{i}")).await.unwrap().len(), 1);
    }
    assert_eq!(users.revoke_all("user0").await.unwrap(), 1);
    clients[1].post("/logout").await;

    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    for m in &masters {
        let keys = m.raw("DBSIZE").unwrap_or_default();
        let n: i64 = keys.trim_start_matches(':').trim().parse().unwrap();
        assert!(n > 5, "master {} holds only {n} keys: not spread", m.port);
    }
    // No script was rejected (CROSSSLOT is a rejection) and every failed EVALSHA was a
    // script-cache miss that the client answered by loading the script. (Each node also
    // counts 2 `ERR`s from the client's connection handshake, `CLIENT SETINFO`, which
    // Redis 7.0 does not know.)
    for node in &cluster.nodes {
        let errors = errorstats(node);
        assert!(!errors.contains("CROSSSLOT"), "{errors}");
        let stats = node.raw("INFO commandstats").unwrap_or_default();
        let evalsha = stat(&stats, "cmdstat_evalsha");
        assert_eq!(evalsha("rejected_calls"), 0, "{stats}");
        assert_eq!(
            evalsha("failed_calls"),
            stat(&errors, "errorstat_NOSCRIPT")("count")
        );
    }
}

/// Waits until every replica has the master's replication offset.
fn wait_replicated(master: &common::RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let info = master.raw("INFO replication").unwrap_or_default();
        let offset = info
            .lines()
            .find_map(|l| l.strip_prefix("master_repl_offset:"))
            .unwrap_or("x")
            .trim()
            .to_owned();
        let caught_up = info
            .lines()
            .filter(|l| l.starts_with("slave"))
            .all(|l| l.contains(&format!("offset={offset},")));
        if info.contains("connected_slaves:1") && caught_up {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica did not catch up:\n{info}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_failover_keeps_sessions_and_the_layer_recovers() {
    let mut cluster = RedisCluster::start(3, 1);
    let store = RedisStore::cluster_builder(cluster.urls())
        .with_connect_timeout(Duration::from_millis(300))
        .with_response_timeout(Duration::from_millis(300))
        .with_wait_timeout(Duration::from_millis(300))
        .with_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let app = routes::routes().layer(SessionLayer::new(store, SessionConfig::default()).unwrap());
    let mut c = Client::new(app.clone());
    // Set-up, before any fault: on a loaded machine the first requests of a cold cluster
    // connection may pass the tight timeouts above (503); a login that did not happen
    // would leave an anonymous session and the checks below would test nothing, so each
    // step must end in 200.
    for path in ["/login?user=alice", "/set?key=color&value=blue"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = c.post(path).await;
            if r.status == 200 {
                break;
            }
            assert_eq!(r.status, 503, "{path}: {r:?}");
            assert!(Instant::now() < deadline, "{path} never succeeded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let cookie = c.cookie.clone().unwrap();
    let key = tower_redis_session::SessionKey::from_cookie_value(&cookie).unwrap();
    let redis_key = format!("session:{{{}}}:s:{}", key.tag(), key.hash());

    let port = cluster.master_of(&redis_key).port;
    let idx = cluster.nodes.iter().position(|n| n.port == port).unwrap();
    wait_replicated(&cluster.nodes[idx]);
    let replica = cluster
        .nodes
        .iter()
        .position(|n| {
            n.raw("INFO replication")
                .is_some_and(|i| i.contains(&format!("master_port:{port}\r\n")))
        })
        .expect("the master's replica");
    // SIGKILL: a crash, not a shutdown. Then the replica takes over at once, as an
    // operator (or the cluster after cluster-node-timeout) would: a failover that does
    // not wait on elections, so a loaded machine's late heartbeats cannot stretch it
    // past the test's bound.
    cluster.nodes[idx].kill();
    let reply = cluster.nodes[replica]
        .raw("CLUSTER FAILOVER TAKEOVER")
        .unwrap_or_default();
    assert!(reply.starts_with("+OK"), "{reply}");

    // During the failover: the configured store-unavailable response or success, never
    // a panic or a hang; afterwards the session written before the failover loads.
    let start = Instant::now();
    let mut statuses = Vec::new();
    loop {
        let r = c.get("/get?key=color").await;
        statuses.push(r.status.as_u16());
        if r.status == 200 {
            assert_eq!(r.body, "blue");
            break;
        }
        assert_eq!(r.status, 503, "only 503 while failing over: {r:?}");
        assert!(r.set_cookie.is_none(), "the cookie survives the failover");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no recovery: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another read may still meet the failover for a moment (a connection to the old
    // master not yet dropped): again only the store-unavailable response.
    let user = loop {
        let r = c.get("/read").await;
        if r.status == 200 {
            break r.body;
        }
        assert_eq!(r.status, 503, "only 503 while failing over: {r:?}");
        assert!(start.elapsed() < Duration::from_secs(20), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(user, "alice");
    // Writes may trail reads by a moment while the new master settles; until then they
    // too get only the store-unavailable response.
    loop {
        let r = c.post("/incr").await;
        statuses.push(r.status.as_u16());
        if r.status == 200 {
            assert_eq!(r.body, "1", "writes work after the failover");
            break;
        }
        assert_eq!(r.status, 503, "only 503 while failing over: {r:?}");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no recovery: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unavailable = statuses.iter().filter(|s| **s == 503).count();
    eprintln!(
        "failover: recovered after {:?}, {unavailable} requests answered 503",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_own_cluster_pool_works() {
    let cluster = RedisCluster::shared();
    let mut cfg = deadpool_redis::cluster::Config::from_urls(cluster.urls());
    cfg.pool = Some(common::stores::user_pool_config());
    let pool = cfg
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    let store = RedisStore::from_cluster_pool(pool)
        .with_namespace("own-pool")
        .unwrap();
    let layer = SessionLayer::new(store, SessionConfig::default()).unwrap();
    let users = layer.admin();
    let mut c = Client::new(routes::routes().layer(layer));
    c.post("/incr").await;
    c.post("/login?user=zoe").await;
    assert_eq!(c.post("/incr").await.body, "2");
    assert_eq!(users.list("zoe").await.unwrap().len(), 1);
    c.post("/logout").await;
    assert!(users.list("zoe").await.unwrap().is_empty());
}
