//! Bearer tokens for an API client (mobile app, single-page app): log in, call a
//! protected route, refresh (rotation with reuse detection), revoke, log out
//! everywhere.
//!
//! ```text
//! cargo run --example api_tokens                                  # in-memory store
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example api_tokens # Redis
//! ```
//!
//! Then, with `curl` (the password is `demo`):
//!
//! ```text
//! curl -s -d 'username=alice&password=demo' localhost:3001/login
//! curl -s -H "Authorization: Bearer $ACCESS" localhost:3001/me
//! curl -s -d "grant_type=refresh_token&refresh_token=$REFRESH" localhost:3001/token
//! curl -s -d "token=$REFRESH" localhost:3001/revoke
//! curl -s -X POST -H "Authorization: Bearer $ACCESS" localhost:3001/logout-everywhere
//! ```

use axum::extract::{Extension, Form};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tower_redis_session::tokens::{Bearer, TokenConfig, TokenError, TokenPair, Tokens};
use tower_redis_session::{MemoryStore, RedisStore};

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

/// RFC 6749 §6: `grant_type=refresh_token&refresh_token=...`.
#[derive(Deserialize)]
struct RefreshGrant {
    grant_type: String,
    refresh_token: String,
}

/// RFC 7009: `token=...`.
#[derive(Deserialize)]
struct Revoke {
    token: String,
}

async fn login(
    Extension(tokens): Extension<Tokens>,
    Form(f): Form<Login>,
) -> Result<Response, TokenError> {
    // A real app checks a password hash here.
    if f.username.is_empty() || f.password != "demo" {
        return Ok((StatusCode::UNAUTHORIZED, "wrong username or password").into_response());
    }
    Ok(Json(tokens.issue(&f.username).await?).into_response())
}

async fn me(Bearer(claims): Bearer) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "user": claims.user_id(),
        "family": claims.family().to_string(),
        "expires_at": claims
            .expires_at()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    }))
}

async fn token(
    Extension(tokens): Extension<Tokens>,
    Form(f): Form<RefreshGrant>,
) -> Result<Response, TokenError> {
    if f.grant_type != "refresh_token" {
        let body = r#"{"error":"unsupported_grant_type"}"#;
        return Ok((StatusCode::BAD_REQUEST, body).into_response());
    }
    let pair: TokenPair = tokens.refresh(&f.refresh_token).await?;
    Ok(Json(pair).into_response())
}

async fn revoke(
    Extension(tokens): Extension<Tokens>,
    Form(f): Form<Revoke>,
) -> Result<StatusCode, TokenError> {
    tokens.revoke(&f.token).await?;
    Ok(StatusCode::OK)
}

async fn logout_everywhere(
    Extension(tokens): Extension<Tokens>,
    Bearer(claims): Bearer,
) -> Result<Json<serde_json::Value>, TokenError> {
    let families = tokens.revoke_all(claims.user_id()).await?;
    Ok(Json(serde_json::json!({ "revoked_families": families })))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let config = TokenConfig::default();
    let tokens = match std::env::var("REDIS_URL") {
        Ok(url) => {
            println!("token store: Redis (REDIS_URL)");
            Tokens::new(RedisStore::from_url(&url)?, config)?
        }
        Err(_) => {
            println!("token store: in-memory (set REDIS_URL to use Redis)");
            Tokens::new(MemoryStore::new(), config)?
        }
    };
    let app = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .route("/logout-everywhere", post(logout_everywhere))
        .layer(tokens.layer());
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://localhost:{port}");
    axum::serve(listener, app).await?;
    Ok(())
}
