//! Routes over the per-user `Session` API that several suites drive, beside the route
//! contract of `examples/shared/routes.rs`: `GET /handle`, `POST /cycle`,
//! `POST /revoke?handle=H`, `POST /revoke_others`, `POST /everywhere`.

use axum::Router;
use axum::extract::Query;
use axum::routing::{get, post};
use tower_redis_session::{Session, SessionError, SessionHandle};

#[derive(serde::Deserialize)]
struct HandleParam {
    handle: String,
}

pub fn per_user() -> Router {
    Router::new()
        .route(
            "/handle",
            get(|s: Session| async move { Ok::<_, SessionError>(s.handle().await?.to_string()) }),
        )
        .route(
            "/cycle",
            post(|s: Session| async move {
                s.cycle_id().await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/revoke",
            post(|s: Session, Query(q): Query<HandleParam>| async move {
                let h = q.handle.parse::<SessionHandle>().unwrap();
                Ok::<_, SessionError>(s.revoke(h).await?.to_string())
            }),
        )
        .route(
            "/revoke_others",
            post(|s: Session| async move {
                Ok::<_, SessionError>(s.revoke_other_sessions().await?.to_string())
            }),
        )
        .route(
            "/everywhere",
            post(|s: Session| async move {
                Ok::<_, SessionError>(s.logout_everywhere().await?.to_string())
            }),
        )
}
