//! The other contenders of the load benchmark, on the same routes as
//! `examples/bench_server.rs`: `GET /plain`, `POST /login?user=ID`, `GET /read`,
//! `POST /incr`.
//!
//! `CONTENDER=tower-sessions | tower-sessions-always-save | floor`, `PORT`, `REDIS_URL`.
//! `floor` is the least any Redis-backed session can cost: `/read` does one `GET` on a
//! shared multiplexed connection, without cookies, parsing or serialization. For
//! diagnosis it also serves `/read_hash` (`HGETALL` of a 7-field session-like hash) and
//! `/read_packed` (`HGETALL` of a 1-field hash): the same round trip, other reply shapes.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};

#[derive(Deserialize)]
struct UserParam {
    user: String,
}

async fn login(session: Session, Query(q): Query<UserParam>) -> Response {
    if session.insert("user", &q.user).await.is_err() || session.cycle_id().await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    "ok".into_response()
}

async fn read(session: Session) -> Response {
    match session.get::<String>("user").await {
        Ok(Some(user)) => user.into_response(),
        Ok(None) => StatusCode::UNAUTHORIZED.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn incr(session: Session) -> Response {
    let n = match session.get::<u64>("counter").await {
        Ok(n) => n.unwrap_or(0) + 1,
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    match session.insert("counter", n).await {
        Ok(()) => n.to_string().into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn tower_sessions_app(url: &str, always_save: bool) -> Router {
    let pool = Pool::new(
        Config::from_url(url).expect("REDIS_URL"),
        None,
        None,
        None,
        8,
    )
    .expect("fred pool");
    pool.init().await.expect("connect to Redis");
    let layer = SessionManagerLayer::new(RedisStore::new(pool))
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30)))
        .with_always_save(always_save);
    Router::new()
        .route("/plain", get(|| async { "ok" }))
        .route("/login", post(login))
        .route("/read", get(read))
        .route("/incr", post(incr))
        .layer(layer)
}

async fn floor_app(url: &str) -> Router {
    let client = redis::Client::open(url).expect("REDIS_URL");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let mut setup = conn.clone();
    let _: () = redis::cmd("SET")
        .arg("floor:user")
        .arg("bench")
        .query_async(&mut setup)
        .await
        .expect("SET");
    async fn floor_read(State(mut conn): State<redis::aio::MultiplexedConnection>) -> Response {
        match redis::cmd("GET")
            .arg("floor:user")
            .query_async::<Option<String>>(&mut conn)
            .await
        {
            Ok(Some(user)) => user.into_response(),
            Ok(None) => StatusCode::UNAUTHORIZED.into_response(),
            Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    let _: () = redis::cmd("HSET")
        .arg("floor:hash")
        .arg(&[
            ("m:h", "5b0f5c1e-3f7a-4d1e-9a0b-6c2d8e4f1a3b"),
            ("m:c", "1763793600000"),
            ("m:s", "1763793600000"),
            ("m:e", "1763795400000"),
            ("m:u", "bench"),
            ("m:x", "1763796300000"),
            ("m:d", "1763880000000"),
        ])
        .query_async(&mut setup)
        .await
        .expect("HSET");
    let _: () = redis::cmd("HSET")
        .arg("floor:packed")
        .arg("m")
        .arg("5b0f5c1e-3f7a-4d1e-9a0b-6c2d8e4f1a3b 1763793600000 1763793600000 1763795400000 1763796300000 1763880000000 bench")
        .query_async(&mut setup)
        .await
        .expect("HSET");
    async fn floor_read_packed(
        State(mut conn): State<redis::aio::MultiplexedConnection>,
    ) -> Response {
        match redis::cmd("HGETALL")
            .arg("floor:packed")
            .query_async::<std::collections::HashMap<String, String>>(&mut conn)
            .await
        {
            Ok(m) => match m.get("m").and_then(|v| v.rsplit(' ').next()) {
                Some(user) => user.to_owned().into_response(),
                None => StatusCode::UNAUTHORIZED.into_response(),
            },
            Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    // The same round trip with a session-sized hash reply: what parsing ~14 elements
    // costs against one bulk string.
    async fn floor_read_hash(
        State(mut conn): State<redis::aio::MultiplexedConnection>,
    ) -> Response {
        match redis::cmd("HGETALL")
            .arg("floor:hash")
            .query_async::<std::collections::HashMap<String, String>>(&mut conn)
            .await
        {
            Ok(m) => match m.get("m:u") {
                Some(user) => user.clone().into_response(),
                None => StatusCode::UNAUTHORIZED.into_response(),
            },
            Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    Router::new()
        .route("/plain", get(|| async { "ok" }))
        .route("/login", post(|| async { "ok" }))
        .route("/read", get(floor_read))
        .route("/read_hash", get(floor_read_hash))
        .route("/read_packed", get(floor_read_packed))
        .with_state(conn)
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let contender = std::env::var("CONTENDER").unwrap_or_else(|_| "tower-sessions".into());
    let app = match contender.as_str() {
        "tower-sessions" => tower_sessions_app(&url, false).await,
        "tower-sessions-always-save" => tower_sessions_app(&url, true).await,
        "floor" => floor_app(&url).await,
        other => panic!("unknown CONTENDER {other}"),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    println!("listening on 127.0.0.1:{port}");
    axum::serve(listener, app).await.expect("serve");
}
