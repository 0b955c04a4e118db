//! Benchmark: the slowest single Redis command (`SLOWLOG`, every command logged) during
//! each per-user operation, for one user with 20,000 sessions and 2,000 token families
//! (no caps: the worst case the bounds must hold for).
//!
//! ```text
//! python3 bench/user_bounds.py                  # starts its own redis-server
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example user_bounds
//! ```
//! `SESSIONS` and `FAMILIES` change the sizes. It flushes nothing, but writes under the
//! namespace `user-bounds` and changes `slowlog-*` settings: use a scratch Redis.

#[path = "shared/routes.rs"]
mod routes;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use tower::ServiceExt as _;
use tower_redis_session::tokens::{TokenConfig, Tokens};
use tower_redis_session::{
    ListCursor, RedisStore, Session, SessionConfig, SessionError, SessionLayer,
};

const USER: &str = "heavy-user";

async fn cmd<T: redis::FromRedisValue>(
    conn: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(conn).await.expect("redis command")
}

/// Logs in a new session of `user`; returns its cookie.
async fn login_as(app: &Router, user: &str) -> String {
    let req = Request::post(format!("/login?user={user}"))
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert!(res.status().is_success(), "login: {}", res.status());
    let set = res.headers()[header::SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// Logs in a new session of `USER`; returns its cookie.
async fn login(app: &Router) -> String {
    login_as(app, USER).await
}

async fn post(app: &Router, path: &str, cookie: &str) {
    let req = Request::post(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
}

/// Commands Redis ran so far (INFO commandstats, inside scripts included), less the
/// benchmark's own INFO, SLOWLOG and CONFIG calls.
async fn commands(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = cmd(conn, &["INFO", "commandstats"]).await;
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter(|l| {
            !["info:", "slowlog", "config"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// The slowest command since the last call (SLOWLOG logs every command of 50 µs or
/// more), then resets the log.
async fn slowest(conn: &mut redis::aio::MultiplexedConnection) -> (u64, String) {
    let entries: Vec<redis::Value> = cmd(conn, &["SLOWLOG", "GET", "100000"]).await;
    let _: () = cmd(conn, &["SLOWLOG", "RESET"]).await;
    let mut worst = (0, "-".to_owned());
    for e in entries {
        let redis::Value::Array(fields) = e else {
            continue;
        };
        let (Some(redis::Value::Int(us)), Some(redis::Value::Array(args))) =
            (fields.get(2), fields.get(3))
        else {
            continue;
        };
        let name = match args.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).to_uppercase(),
            _ => String::new(),
        };
        let us = u64::try_from(*us).unwrap_or(0);
        if !["SLOWLOG", "CONFIG", "INFO"].contains(&name.as_str()) && us > worst.0 {
            worst = (us, name);
        }
    }
    worst
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let sessions: usize = std::env::var("SESSIONS").map_or(20_000, |v| v.parse().unwrap());
    let families: usize = std::env::var("FAMILIES").map_or(2_000, |v| v.parse().unwrap());
    let store = RedisStore::from_url(&url)
        .and_then(|s| s.with_namespace("user-bounds"))
        .expect("store");
    let layer = SessionLayer::new(
        store.clone(),
        SessionConfig::default().without_session_limit(),
    )
    .expect("layer");
    let app = routes::routes()
        .route(
            "/revoke_others",
            axum::routing::post(|s: Session| async move {
                Ok::<_, SessionError>(s.revoke_other_sessions().await?.to_string())
            }),
        )
        .layer(layer.clone());
    let layer_store = store.clone();
    let tokens = Tokens::new(store, TokenConfig::default().without_family_limit()).expect("tokens");
    let mut conn = redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");

    eprintln!("populating {sessions} sessions and {families} token families of one user...");
    let mut cookie = String::new();
    for _ in 0..sessions {
        cookie = login(&app).await;
    }
    for _ in 0..families {
        tokens.issue(USER).await.expect("issue");
    }
    // Load every script once, so no SCRIPT LOAD is measured.
    let probe = layer.admin();
    probe.list(USER).await.expect("list");
    let gone = "00000000-0000-4000-8000-000000000000"
        .parse::<tower_redis_session::SessionHandle>()
        .expect("handle");
    probe.revoke(USER, gone).await.expect("revoke");
    probe.revoke_all("nobody").await.expect("revoke all");
    let _: () = cmd(
        &mut conn,
        &["CONFIG", "SET", "slowlog-log-slower-than", "50"],
    )
    .await;
    let _: () = cmd(&mut conn, &["CONFIG", "SET", "slowlog-max-len", "100000"]).await;
    let _: () = cmd(&mut conn, &["SLOWLOG", "RESET"]).await;

    let users = layer.admin();
    let mut rows = Vec::new();
    macro_rules! measure {
        ($name:expr, $op:expr) => {{
            let before = commands(&mut conn).await;
            let _ = slowest(&mut conn).await;
            let out = $op;
            let after = commands(&mut conn).await;
            let slowest = match slowest(&mut conn).await {
                (0, _) => "< 50 µs".to_owned(),
                (us, name) => format!("{us} µs ({name})"),
            };
            rows.push(format!("| {} | {} | {slowest} |", $name, after - before));
            out
        }};
    }
    measure!("login", login(&app).await);
    // A user at the default cap (100 sessions): the login reads the index to evict.
    let capped = routes::routes()
        .layer(SessionLayer::new(layer_store.clone(), SessionConfig::default()).expect("layer"));
    for _ in 0..100 {
        login_as(&capped, "capped-user").await;
    }
    measure!(
        "login at the default cap (100, evicts 1)",
        login_as(&capped, "capped-user").await
    );
    let page = measure!(
        "list (first page of 100)",
        users
            .list_page(USER, ListCursor::default())
            .await
            .expect("list")
    );
    let handle = page.sessions[0].handle;
    measure!(
        "revoke one",
        assert!(users.revoke(USER, handle).await.expect("revoke"))
    );
    measure!("token issue", tokens.issue(USER).await.expect("issue"));
    measure!(
        format!("revoke others ({} of {sessions} sessions)", sessions - 1),
        post(&app, "/revoke_others", &cookie).await
    );
    // Back to `sessions` sessions (and `families` + 1 families) for log out everywhere.
    for _ in 1..sessions {
        login(&app).await;
    }
    let ended = measure!(
        format!(
            "log out everywhere ({sessions} sessions, {} families)",
            families + 1
        ),
        users.revoke_all(USER).await.expect("revoke all")
    );
    assert_eq!(ended, sessions);
    let _: () = cmd(
        &mut conn,
        &["CONFIG", "SET", "slowlog-log-slower-than", "10000"],
    )
    .await;
    let version: String = cmd(&mut conn, &["INFO", "server"]).await;
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned();
    println!(
        "Redis {version}; {sessions} sessions and {families} token families of one user, no caps"
    );
    println!();
    println!("| operation | Redis commands (incl. inside scripts) | slowest single command |");
    println!("|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
