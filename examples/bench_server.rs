//! The session layer on Redis behind a fixed route contract, for load tools and
//! acceptance tests.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 PORT=3000 cargo run --release --example bench_server
//! ```
//!
//! `REDIS_URL` may be `rediss://` (TLS); `REDIS_CA_FILE`, `REDIS_CLIENT_CERT_FILE` and
//! `REDIS_CLIENT_KEY_FILE` name PEM files for a private CA and a client certificate.
//!
//! Routes: `GET /plain` (never touches the session), `POST /login?user=ID`, `GET /read`
//! (user id or 401), `POST /incr`, `POST /set?key=K&value=V`, `GET /get?key=K` (value or
//! 404), `POST /logout`. Default (secure) cookie settings.

#[path = "shared/redis_env.rs"]
mod redis_env;
#[path = "shared/routes.rs"]
mod routes;

use tower_redis_session::{SessionConfig, SessionLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // REDIS_CONNECTIONS: pool size (multiplexed connections shared by all requests);
    // the store's default (1) when unset.
    let mut store = redis_env::store_builder(&url);
    if let Some(n) = std::env::var("REDIS_CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        store = store.with_max_connections(n);
    }
    // LOCAL_CACHE=1: the local session cache, kept coherent by Redis client tracking.
    if std::env::var("LOCAL_CACHE").is_ok_and(|v| v == "1") {
        store = store.with_local_cache(tower_redis_session::LocalCache::default());
    }
    let store = store.build()?;
    // Fail at start-up, with the reason, if Redis cannot be reached or used.
    store.check().await?;
    let app = routes::routes().layer(SessionLayer::new(store, SessionConfig::default())?);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on 127.0.0.1:{port}");
    axum::serve(listener, app).await?;
    Ok(())
}
