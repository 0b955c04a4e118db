//! The route contract of `bench_server`, shared with the integration tests.

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_redis_session::{Session, SessionError};

#[derive(Deserialize)]
pub struct UserParam {
    pub user: String,
}

#[derive(Deserialize)]
pub struct KeyParam {
    pub key: String,
}

#[derive(Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// `GET /plain`, `POST /login?user=ID`, `GET /read`, `POST /incr`,
/// `POST /set?key=K&value=V`, `GET /get?key=K`, `POST /logout`.
pub fn routes() -> Router {
    Router::new()
        .route("/plain", get(|| async { "ok" }))
        .route("/login", post(login))
        .route("/read", get(read))
        .route("/incr", post(incr))
        .route("/set", post(set))
        .route("/get", get(get_key))
        .route("/logout", post(logout))
}

async fn login(session: Session, Query(q): Query<UserParam>) -> Result<&'static str, SessionError> {
    session.login(&q.user).await?;
    Ok("ok")
}

async fn read(session: Session) -> Result<Response, SessionError> {
    Ok(match session.user_id().await? {
        Some(user) => user.into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    })
}

async fn incr(session: Session) -> Result<String, SessionError> {
    let n = session.get::<u64>("counter").await?.unwrap_or(0) + 1;
    session.insert("counter", n).await?;
    Ok(n.to_string())
}

async fn set(session: Session, Query(q): Query<KeyValue>) -> Result<&'static str, SessionError> {
    session.insert(&q.key, q.value).await?;
    Ok("ok")
}

async fn get_key(session: Session, Query(q): Query<KeyParam>) -> Result<Response, SessionError> {
    Ok(match session.get::<String>(&q.key).await? {
        Some(v) => v.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

async fn logout(session: Session) -> Result<&'static str, SessionError> {
    session.destroy().await?;
    Ok("ok")
}
