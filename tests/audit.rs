//! The audit writer against a throwaway PostgreSQL and a real Redis: one row per event
//! with the right fields, and exactly once across a writer killed mid-batch.
#![cfg(feature = "tls")]

mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Client, Postgres, RedisServer};
use tower_redis_session::{RedisStore, SessionConfig, SessionLayer};
use tower_redis_session_audit::AuditWriter;

async fn pg(pg: &Postgres) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg.conn_str(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

fn app(url: &str, ns: &str) -> axum::Router {
    let store = RedisStore::from_url(url)
        .unwrap()
        .with_namespace(ns)
        .unwrap()
        .with_event_stream(100_000)
        .unwrap();
    let config =
        SessionConfig::default().with_client_ip_header(http::HeaderName::from_static("x-real-ip"));
    routes::routes().layer(SessionLayer::new(store, config).unwrap())
}

/// `n` logins and logouts: 3 events each (created, login, logout).
async fn traffic(app: &axum::Router, n: usize) {
    for i in 0..n {
        let mut c = Client::new(app.clone());
        c.headers = vec![
            ("x-real-ip", format!("10.1.0.{}", i % 250)),
            ("user-agent", format!("agent {i}")),
        ];
        c.post(&format!("/login?user=user-{i}")).await;
        c.post("/logout").await;
    }
}

/// Steps `writer` until `ns` has at least `n` rows (events a stream sink appends from
/// its own thread arrive a little later), at most 100 steps; returns the row ids.
async fn steps_until(
    writer: &mut AuditWriter,
    db: &tokio_postgres::Client,
    ns: &str,
    n: usize,
) -> Vec<String> {
    let mut rows = Vec::new();
    for _ in 0..100 {
        writer.step().await.unwrap();
        rows = row_ids(db, ns).await;
        if rows.len() >= n {
            break;
        }
    }
    rows
}

async fn stream_ids(url: &str, stream: &str) -> Vec<String> {
    common::stores::stream_entries(url, stream)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// The event ids in the audit table; none while the writer has not created it yet.
/// Any other SQL error fails the test.
async fn row_ids(db: &tokio_postgres::Client, ns: &str) -> Vec<String> {
    match db
        .query(
            "SELECT event_id FROM session_audit WHERE namespace = $1",
            &[&ns],
        )
        .await
    {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Vec::new(),
        Err(e) => panic!("audit table query failed: {e}"),
    }
}

/// A session's details (`Session::set_details`) travel with its events: into the stream
/// entry written by the same script, then into the audit row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_details_reach_the_stream_and_the_table() {
    use axum::routing::post;
    use tower_redis_session::{Session, SessionDetails, SessionError};
    let redis = RedisServer::start();
    let postgres = Postgres::start();
    let store = RedisStore::from_url(&redis.url())
        .unwrap()
        .with_namespace("audit-details")
        .unwrap()
        .with_event_stream(1000)
        .unwrap();
    let app = routes::routes()
        .route(
            "/named",
            post(|session: Session| async move {
                let mut details = SessionDetails::default();
                details.insert("device", "desk").unwrap();
                session.set_details(details).await?;
                session.login("dora").await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .layer(SessionLayer::new(store, SessionConfig::default()).unwrap());
    let mut c = Client::new(app.clone());
    assert_eq!(c.post("/named").await.status, 200);
    assert_eq!(c.post("/logout").await.status, 200);
    let entries = common::stores::stream_entries(&redis.url(), "audit-details:events").await;
    let with_details = entries
        .iter()
        .filter(|(_, f)| f.get("details").map(String::as_str) == Some(r#"{"device":"desk"}"#))
        .count();
    assert_eq!(with_details, 3, "created, login, logout: {entries:?}");

    let mut writer = AuditWriter::connect(&redis.url(), "audit-details", &postgres.conn_str())
        .await
        .unwrap()
        .with_block(Duration::from_millis(50));
    while writer.step().await.unwrap() > 0 {}
    let db = pg(&postgres).await;
    let rows = db
        .query(
            "SELECT kind, details FROM session_audit WHERE namespace = 'audit-details' \
             ORDER BY event_id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let desk = Some(r#"{"device":"desk"}"#.to_owned());
    assert_eq!(
        got,
        [
            ("created".to_owned(), desk.clone()),
            ("login".to_owned(), desk.clone()),
            ("logout".to_owned(), desk),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_row_per_event_with_its_fields() {
    let redis = RedisServer::start();
    let postgres = Postgres::start();
    let app = app(&redis.url(), "audit-fields");
    traffic(&app, 2).await;
    let mut writer = AuditWriter::connect(&redis.url(), "audit-fields", &postgres.conn_str())
        .await
        .unwrap()
        .with_block(Duration::from_millis(50));
    let mut total = 0;
    loop {
        let n = writer.step().await.unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 6);
    let db = pg(&postgres).await;
    let rows = db
        .query(
            "SELECT kind, reason, user_id, handle, ip, user_agent, \
             extract(epoch from at)::float8 FROM session_audit ORDER BY event_id",
            &[],
        )
        .await
        .unwrap();
    let kinds: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        kinds,
        ["created", "login", "logout", "created", "login", "logout"]
    );
    let first_user: Option<String> = rows[1].get(2);
    assert_eq!(first_user.as_deref(), Some("user-0"));
    let handle: Option<String> = rows[1].get(3);
    assert_eq!(handle.as_ref().map(String::len), Some(36), "a UUID");
    let same_handle: Option<String> = rows[2].get(3);
    assert_eq!(handle, same_handle, "login and logout of one session");
    let ip: Option<String> = rows[1].get(4);
    assert_eq!(ip.as_deref(), Some("10.1.0.0"));
    let ua: Option<String> = rows[4].get(5);
    assert_eq!(ua.as_deref(), Some("agent 1"));
    let reason: Option<String> = rows[0].get(1);
    assert_eq!(reason, None);
    let at: f64 = rows[0].get(6);
    assert!(at > 1_600_000_000.0);
    // Nothing left pending: everything was acknowledged after the commit.
    let mut conn = common::stores::redis_conn(&redis.url()).await;
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg("audit-fields:events")
        .arg("audit-postgres")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending[0], redis::Value::Int(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_committed_but_not_acknowledged_is_not_inserted_twice() {
    let redis = RedisServer::start();
    let postgres = Postgres::start();
    let app = app(&redis.url(), "audit-crash");
    traffic(&app, 4).await; // 12 events
    // A first writer ran one step; then, as if killed between the PostgreSQL commit
    // and the XACK of its next batch, its entries stay pending although half of them
    // were committed.
    let mut first = AuditWriter::connect(&redis.url(), "audit-crash", &postgres.conn_str())
        .await
        .unwrap()
        .with_batch(4)
        .with_block(Duration::from_millis(50));
    assert_eq!(first.step().await.unwrap(), 4);
    drop(first);
    let mut conn = common::stores::redis_conn(&redis.url()).await;
    let read: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("audit-postgres")
        .arg("audit-1")
        .arg("COUNT")
        .arg(4)
        .arg("STREAMS")
        .arg("audit-crash:events")
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(matches!(read, redis::Value::Array(_)));
    let ids = stream_ids(&redis.url(), "audit-crash:events").await;
    let db = pg(&postgres).await;
    for id in &ids[4..6] {
        db.execute(
            "INSERT INTO session_audit (namespace, event_id, at, kind) \
             VALUES ('audit-crash', $1, now(), 'created')",
            &[id],
        )
        .await
        .unwrap();
    }
    // The restarted writer (same consumer name) resumes its pending entries first.
    let mut second = AuditWriter::connect(&redis.url(), "audit-crash", &postgres.conn_str())
        .await
        .unwrap()
        .with_batch(4)
        .with_block(Duration::from_millis(50));
    while second.step().await.unwrap() > 0 {}
    let rows = row_ids(&db, "audit-crash").await;
    assert_eq!(rows.len(), 12, "every event exactly once");
    assert_eq!(
        rows.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>()
    );
}

fn spawn_writer(redis: &str, postgres: &Postgres, ns: &str) -> Child {
    let bin = common::example_binary("audit_writer");
    Command::new(bin)
        .env("REDIS_URL", redis)
        .env("SESSION_NAMESPACE", ns)
        .env("DATABASE_URL", postgres.conn_str())
        // Small batches: 300 events take ~100 transactions, so a kill lands mid-stream.
        .env("AUDIT_BATCH", "3")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_process_killed_mid_stream_resumes_exactly_once() {
    let redis = RedisServer::start();
    let postgres = Postgres::start();
    let ns = "audit-kill";
    let app = app(&redis.url(), ns);
    traffic(&app, 100).await; // 300 events
    let db = pg(&postgres).await;
    let mut writer = spawn_writer(&redis.url(), &postgres, ns);
    // Kill it (SIGKILL) while it is copying: some rows in, not all.
    let mut seen = 0;
    for _ in 0..400 {
        seen = row_ids(&db, ns).await.len();
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert!(seen > 0, "the writer never started copying");
    // It really was killed mid-stream: some batches committed, not all.
    let at_kill = row_ids(&db, ns).await.len();
    assert!(
        (1..300).contains(&at_kill),
        "{at_kill} of 300 events copied when the writer was killed"
    );
    traffic(&app, 20).await; // 60 more while it is down
    let mut writer = spawn_writer(&redis.url(), &postgres, ns);
    let ids = stream_ids(&redis.url(), &format!("{ns}:events")).await;
    assert_eq!(ids.len(), 360);
    let mut rows = Vec::new();
    for _ in 0..600 {
        rows = row_ids(&db, ns).await;
        if rows.len() >= ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert_eq!(rows.len(), ids.len(), "every event exactly once");
    assert_eq!(
        rows.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>()
    );
}

/// On a Redis Cluster the stream is written by the event thread (`StreamSink`), and the
/// writer reads it through a cluster connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_events_reach_postgres_through_the_stream_sink() {
    let cluster = common::RedisCluster::start(3, 0);
    let postgres = Postgres::start();
    let ns = "audit-cluster";
    let store = RedisStore::cluster_builder(cluster.urls())
        .build()
        .unwrap()
        .with_namespace(ns)
        .unwrap();
    let sink = store.event_stream_sink(10_000).unwrap();
    let layer = SessionLayer::new(store, SessionConfig::default())
        .unwrap()
        .with_events(sink);
    let app = routes::routes().layer(layer);
    traffic(&app, 3).await; // 9 events, appended by the event thread
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    let mut writer = AuditWriter::connect_cluster(&nodes, ns, &postgres.conn_str())
        .await
        .unwrap()
        .with_block(Duration::from_millis(50));
    let db = pg(&postgres).await;
    assert_eq!(steps_until(&mut writer, &db, ns, 9).await.len(), 9);
    let kinds: Vec<String> = db
        .query(
            "SELECT kind FROM session_audit WHERE namespace = $1 ORDER BY event_id",
            &[&ns],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        kinds,
        ["created", "login", "logout"].repeat(3),
        "in order, exactly once"
    );
}

/// Token activity reaches the audit table too: `Tokens::with_events(store.event_stream_sink(..))`.
#[cfg(feature = "tokens")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_activity_is_audited() {
    use tower_redis_session::tokens::{TokenConfig, TokenError, Tokens};
    let redis = RedisServer::start();
    let postgres = Postgres::start();
    let ns = "audit-tokens";
    let store = common::stores::redis_store_on(&redis.url(), ns);
    let sink = store.event_stream_sink(10_000).unwrap();
    let t = Tokens::new(
        store,
        TokenConfig::default().with_reuse_grace(Duration::ZERO),
    )
    .unwrap()
    .with_events(sink);
    let p1 = t.issue("kim").await.unwrap();
    t.refresh(&p1.refresh_token).await.unwrap();
    assert!(matches!(
        t.refresh(&p1.refresh_token).await,
        Err(TokenError::Reused { .. })
    ));
    let mut writer = AuditWriter::connect(&redis.url(), ns, &postgres.conn_str())
        .await
        .unwrap()
        .with_block(Duration::from_millis(50));
    let db = pg(&postgres).await;
    let mut rows = Vec::new();
    for _ in 0..100 {
        writer.step().await.unwrap();
        rows = db
            .query(
                "SELECT kind, user_id, family FROM session_audit ORDER BY event_id",
                &[],
            )
            .await
            .unwrap();
        if rows.len() >= 3 {
            break;
        }
    }
    let got: Vec<(String, Option<String>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let family = Some(p1.family.to_string());
    let kim = Some("kim".to_owned());
    assert_eq!(
        got,
        [
            ("token_issued".to_owned(), kim.clone(), family.clone()),
            ("token_refreshed".to_owned(), kim.clone(), family.clone()),
            ("token_reused".to_owned(), kim, family),
        ]
    );
}

/// Appends an event to a namespace's stream the way another writer (or an older
/// version) could: fields as given.
async fn xadd(url: &str, ns: &str, fields: &[(&str, &str)]) -> String {
    let mut conn = common::stores::redis_conn(url).await;
    let mut cmd = redis::cmd("XADD");
    cmd.arg(format!("{ns}:events")).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query_async(&mut conn).await.unwrap()
}

/// Steps the writer until it finds nothing new; returns the events it copied.
async fn drain(writer: &mut AuditWriter) -> usize {
    let mut total = 0;
    loop {
        let n = writer.step().await.unwrap();
        if n == 0 {
            return total;
        }
        total += n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_goes_to_the_dead_letters_and_the_writer_keeps_going() {
    let redis = RedisServer::start();
    let postgres = Postgres::start();
    let url = redis.url();
    let ns = "audit-dead";
    // A 10 kB user id that does not compress: too large for the user index's row.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let huge: String = (0..10_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let good1 = xadd(
        &url,
        ns,
        &[("kind", "login"), ("user", "ann"), ("at", "1700000000000")],
    )
    .await;
    let nul = xadd(
        &url,
        ns,
        &[("kind", "login"), ("user", "a\0b"), ("at", "1700000000001")],
    )
    .await;
    let long = xadd(
        &url,
        ns,
        &[("kind", "login"), ("user", &huge), ("at", "1700000000002")],
    )
    .await;
    let good2 = xadd(
        &url,
        ns,
        &[("kind", "logout"), ("user", "ann"), ("at", "1700000000003")],
    )
    .await;
    let mut writer = AuditWriter::connect(&url, ns, &postgres.conn_str())
        .await
        .unwrap()
        .with_block(Duration::from_millis(50));
    assert_eq!(
        drain(&mut writer).await,
        4,
        "one batch, committed and acknowledged"
    );
    let db = pg(&postgres).await;
    let mut rows = row_ids(&db, ns).await;
    rows.sort();
    assert_eq!(rows, [good1, good2.clone()]);
    let dead = db
        .query(
            "SELECT event_id, error, entry FROM session_audit_dead WHERE namespace = $1 \
             ORDER BY event_id",
            &[&ns],
        )
        .await
        .unwrap();
    let ids: Vec<String> = dead.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [nul, long]);
    let errors: Vec<String> = dead.iter().map(|r| r.get(1)).collect();
    assert!(
        errors[0].contains("0x00") && errors[0].contains("22021"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("index row") && errors[1].contains("54000"),
        "{errors:?}"
    );
    let entry: String = dead[0].get(2);
    assert!(
        entry.contains(r"a\0b"),
        "the refused fields, escaped: {entry}"
    );
    let mut conn = common::stores::redis_conn(&url).await;
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(format!("{ns}:events"))
        .arg("audit-postgres")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending[0], redis::Value::Int(0), "nothing left pending");
    // It keeps going, and a restarted writer does not redo anything.
    let later = xadd(&url, ns, &[("kind", "created"), ("at", "1700000000004")]).await;
    assert_eq!(drain(&mut writer).await, 1);
    assert!(row_ids(&db, ns).await.contains(&later));
    assert_eq!(writer.missed(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_trimmed_before_they_were_read_are_counted_once() {
    let redis = RedisServer::start();
    let postgres = Postgres::start();
    let url = redis.url();
    let ns = "audit-gap";
    for i in 0..5 {
        xadd(
            &url,
            ns,
            &[("kind", "created"), ("at", &format!("17000000000{i:02}"))],
        )
        .await;
    }
    let mut writer = AuditWriter::connect(&url, ns, &postgres.conn_str())
        .await
        .unwrap()
        .with_block(Duration::from_millis(50));
    assert_eq!(drain(&mut writer).await, 5);
    assert_eq!(writer.missed(), 0, "nothing trimmed yet");
    // 20 more events, of which the stream keeps the last 5 (MAXLEN) before the writer
    // reads again.
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            xadd(
                &url,
                ns,
                &[("kind", "login"), ("at", &format!("17000000001{i:02}"))],
            )
            .await,
        );
    }
    let mut conn = common::stores::redis_conn(&url).await;
    let _: u64 = redis::cmd("XTRIM")
        .arg(format!("{ns}:events"))
        .arg("MAXLEN")
        .arg(5)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(drain(&mut writer).await, 5);
    assert_eq!(writer.missed(), 15);
    let db = pg(&postgres).await;
    let gaps = db
        .query(
            "SELECT before_event, missing FROM session_audit_gaps WHERE namespace = $1",
            &[&ns],
        )
        .await
        .unwrap();
    assert_eq!(gaps.len(), 1);
    assert_eq!(
        gaps[0].get::<_, String>(0),
        ids[15],
        "the gap ends where reading resumed"
    );
    assert_eq!(gaps[0].get::<_, i64>(1), 15);
    // Reported once: more traffic without trimming adds no gap, and a restarted writer
    // knows the total.
    xadd(&url, ns, &[("kind", "logout"), ("at", "1700000000200")]).await;
    assert_eq!(drain(&mut writer).await, 1);
    let mut restarted = AuditWriter::connect(&url, ns, &postgres.conn_str())
        .await
        .unwrap()
        .with_block(Duration::from_millis(50));
    assert_eq!(drain(&mut restarted).await, 0);
    assert_eq!((writer.missed(), restarted.missed()), (15, 15));
    let n: i64 = db
        .query_one("SELECT count(*) FROM session_audit_gaps", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// Reads an entry of `ns`'s stream as `consumer` of the writer's group, leaving it
/// pending (as a writer that crashed before its XACK would).
async fn read_as(url: &str, ns: &str, consumer: &str, count: usize) {
    let mut conn = common::stores::redis_conn(url).await;
    let read: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("audit-postgres")
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(format!("{ns}:events"))
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(matches!(read, redis::Value::Array(_)));
}

async fn trim_all(url: &str, ns: &str) {
    let mut conn = common::stores::redis_conn(url).await;
    let _: u64 = redis::cmd("XTRIM")
        .arg(format!("{ns}:events"))
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
}

async fn dead_ids(db: &tokio_postgres::Client, ns: &str) -> Vec<String> {
    db.query(
        "SELECT event_id FROM session_audit_dead WHERE namespace = $1 ORDER BY event_id",
        &[&ns],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// What the stream loses while entries are pending is accounted for exactly: entries a
/// stalled consumer held and that were trimmed (`XAUTOCLAIM` reports them deleted) go
/// to the dead letters; entries this consumer committed before a crash and that were
/// trimmed before its XACK are not reported lost; a value that is not UTF-8 does not
/// shift the fields after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_entries_lost_to_trimming_are_accounted_exactly() {
    let redis = RedisServer::start();
    let postgres = Postgres::start();
    let url = redis.url();
    let ns = "audit-pending";
    let at = [("kind", "created"), ("at", "1700000000000")];
    let first = xadd(&url, ns, &at).await;
    let mut writer = AuditWriter::connect(&url, ns, &postgres.conn_str())
        .await
        .unwrap()
        .with_block(Duration::from_millis(50))
        .with_claim_after(Duration::from_millis(1));
    assert_eq!(drain(&mut writer).await, 1);
    let db = pg(&postgres).await;

    // A stalled consumer holds two entries; they are trimmed before anyone copied them.
    let held = [xadd(&url, ns, &at).await, xadd(&url, ns, &at).await];
    read_as(&url, ns, "stalled", 2).await;
    // This consumer committed one more before it crashed, unacknowledged.
    let committed = xadd(&url, ns, &at).await;
    read_as(&url, ns, "audit-1", 1).await;
    db.execute(
        "INSERT INTO session_audit (namespace, event_id, at, kind) VALUES ($1, $2, now(), 'created')",
        &[&ns, &committed],
    )
    .await
    .unwrap();
    trim_all(&url, ns).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    drain(&mut writer).await;
    let mut expected = held.to_vec();
    expected.sort();
    assert_eq!(
        dead_ids(&db, ns).await,
        expected,
        "the stalled consumer's entries"
    );
    assert_eq!(
        row_ids(&db, ns).await.len(),
        2,
        "the committed entry is kept once"
    );
    assert!(!held.contains(&first));

    // A user agent that is not UTF-8, between other fields.
    let mut conn = common::stores::redis_conn(&url).await;
    let odd: String = redis::cmd("XADD")
        .arg(format!("{ns}:events"))
        .arg("*")
        .arg("kind")
        .arg("login")
        .arg("ua")
        .arg(&b"agent \xff\xfe"[..])
        .arg("user")
        .arg("bob")
        .arg("at")
        .arg("1700000000500")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(drain(&mut writer).await, 1);
    let row = db
        .query_one(
            "SELECT kind, user_id, user_agent, (extract(epoch from at) * 1000)::bigint \
             FROM session_audit WHERE namespace = $1 AND event_id = $2",
            &[&ns, &odd],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "login");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("bob"));
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("agent \u{fffd}\u{fffd}")
    );
    assert_eq!(row.get::<_, i64>(3), 1_700_000_000_500);
}

/// TLS to PostgreSQL: a server that accepts only TLS, the writer verifying it with the
/// CA that signed its certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_reaches_postgres_over_tls_with_the_right_ca_only() {
    use tower_redis_session::TlsConfig;
    use tower_redis_session_audit::AuditError;
    let redis = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("trs-pg-certs-{}", std::process::id()));
    let certs = common::tls::Certs::generate(&dir);
    let postgres = Postgres::start_tls(&certs);
    let ns = "audit-tls";
    let app = app(&redis.url(), ns);
    traffic(&app, 5).await; // 15 events
    let tls_conn = format!("{} sslmode=require", postgres.conn_str());

    // Without TLS the server refuses the connection.
    assert!(matches!(
        AuditWriter::connect(&redis.url(), ns, &postgres.conn_str()).await,
        Err(AuditError::Postgres(_))
    ));
    // A CA that did not sign the server's certificate: refused by the writer.
    let wrong = TlsConfig::default().with_ca_pem(certs.other_ca_pem.clone());
    match AuditWriter::connect_tls(&redis.url(), ns, &tls_conn, &wrong).await {
        Err(AuditError::Postgres(e)) => {
            let chain = format!("{e:?}");
            assert!(chain.contains("UnknownIssuer"), "{chain}");
        }
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("connected with a wrong CA"),
    }
    // No CA given: the system trust store does not know the test CA.
    assert!(matches!(
        AuditWriter::connect_tls(&redis.url(), ns, &tls_conn, &TlsConfig::default()).await,
        Err(AuditError::Postgres(_))
    ));
    // A missing CA file is a configuration error.
    let missing = TlsConfig::default().with_ca_file("/nonexistent/ca.crt");
    assert!(matches!(
        AuditWriter::connect_tls(&redis.url(), ns, &tls_conn, &missing).await,
        Err(AuditError::Config(_))
    ));

    // The right CA: every event arrives, over TLS.
    let right = TlsConfig::default().with_ca_file(certs.path("ca.crt"));
    let mut writer = AuditWriter::connect_tls(&redis.url(), ns, &tls_conn, &right)
        .await
        .unwrap()
        .with_block(Duration::from_millis(50));
    assert_eq!(drain(&mut writer).await, 15);
    let (db, conn) = tokio_postgres::connect(&postgres.socket_conn_str(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(row_ids(&db, ns).await.len(), 15);
    // The writer's own session is encrypted: PostgreSQL says so.
    let ssl: Vec<bool> = db
        .query(
            "SELECT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE client_addr IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!ssl.is_empty() && ssl.iter().all(|s| *s), "{ssl:?}");
}

/// Over TLS to Redis (a module of its own: the Valkey pass skips `tls::`, its server
/// being built without TLS).
mod tls {
    use super::*;

    /// The cluster writer takes TLS settings like the standalone one: it copies the
    /// events of a TLS-only cluster, and a wrong CA is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cluster_writer_reaches_a_tls_cluster() {
        use tower_redis_session::TlsConfig;
        let (certs, cluster) = &*common::stores::TLS_CLUSTER;
        let postgres = Postgres::start();
        let ns = "audit-cluster-tls";
        let store = RedisStore::cluster_builder(cluster.tls_urls())
            .with_tls(TlsConfig::default().with_ca_pem(certs.ca_pem.clone()))
            .build()
            .unwrap()
            .with_namespace(ns)
            .unwrap();
        let layer = SessionLayer::new(store.clone(), SessionConfig::default())
            .unwrap()
            .with_events(store.event_stream_sink(1000).unwrap());
        traffic(&routes::routes().layer(layer), 2).await; // 6 events
        let urls = cluster.tls_urls();
        let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
        let wrong = TlsConfig::default().with_ca_pem(certs.other_ca_pem.clone());
        assert!(
            AuditWriter::connect_cluster_with_tls(&nodes, &wrong, ns, &postgres.conn_str(), None)
                .await
                .is_err()
        );
        let right = TlsConfig::default().with_ca_pem(certs.ca_pem.clone());
        let mut writer =
            AuditWriter::connect_cluster_with_tls(&nodes, &right, ns, &postgres.conn_str(), None)
                .await
                .unwrap()
                .with_block(Duration::from_millis(50));
        let db = pg(&postgres).await;
        assert_eq!(steps_until(&mut writer, &db, ns, 6).await.len(), 6);
    }

    /// The writer reaches a mutual-TLS Redis with a private CA and a client certificate,
    /// as the store does; a CA that did not sign the server's certificate is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_reaches_redis_over_mutual_tls() {
        use tower_redis_session::TlsConfig;
        use tower_redis_session_audit::AuditError;
        let (certs, server) = &*common::stores::TLS;
        let postgres = Postgres::start();
        let ns = "audit-redis-tls";
        let store = RedisStore::builder(server.tls_url())
            .with_tls(common::stores::client_tls(certs))
            .build()
            .unwrap()
            .with_namespace(ns)
            .unwrap()
            .with_event_stream(1000)
            .unwrap();
        let app =
            routes::routes().layer(SessionLayer::new(store, SessionConfig::default()).unwrap());
        traffic(&app, 2).await; // 6 events

        let wrong = TlsConfig::default()
            .with_ca_pem(certs.other_ca_pem.clone())
            .with_client_cert_pem(certs.client_cert_pem.clone(), certs.client_key_pem.clone());
        assert!(matches!(
            AuditWriter::connect_with_tls(
                &server.tls_url(),
                &wrong,
                ns,
                &postgres.conn_str(),
                None
            )
            .await,
            Err(AuditError::Redis(_))
        ));
        let missing = TlsConfig::default().with_ca_file("/nonexistent/ca.crt");
        assert!(matches!(
            AuditWriter::connect_with_tls(
                &server.tls_url(),
                &missing,
                ns,
                &postgres.conn_str(),
                None
            )
            .await,
            Err(AuditError::Config(_))
        ));
        let mut writer = AuditWriter::connect_with_tls(
            &server.tls_url(),
            &common::stores::client_tls(certs),
            ns,
            &postgres.conn_str(),
            None,
        )
        .await
        .unwrap()
        .with_block(Duration::from_millis(50));
        assert_eq!(drain(&mut writer).await, 6);
        let db = pg(&postgres).await;
        assert_eq!(row_ids(&db, ns).await.len(), 6);
    }
}
