//! Arbitrary `Cookie` headers through a real `SessionLayer` (plain and signed cookies)
//! on an empty `MemoryStore`: every request must answer "no session" (401), never panic.
//!
//! ```text
//! cargo install cargo-fuzz
//! cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run cookie_header -- -max_total_time=60
//! ```
#![no_main]

use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::routing::get;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use tower_redis_session::{Key, MemoryStore, Session, SessionConfig, SessionLayer};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
});

fn app(signed: bool) -> Router {
    let layer = SessionLayer::new(MemoryStore::new(), SessionConfig::default()).expect("config");
    let routes = Router::new().route(
        "/",
        get(|session: Session| async move {
            match session.get::<String>("user").await {
                Ok(Some(_)) => StatusCode::OK,
                Ok(None) => StatusCode::UNAUTHORIZED,
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
            }
        }),
    );
    if signed {
        routes.layer(layer.with_signed(Key::from(&[42u8; 64])))
    } else {
        routes.layer(layer)
    }
}

static PLAIN: LazyLock<Router> = LazyLock::new(|| app(false));
static SIGNED: LazyLock<Router> = LazyLock::new(|| app(true));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut req = Request::get("/").body(Body::empty()).expect("request");
    // NUL separates `Cookie` headers; each may be any bytes a header value allows.
    for part in rest.split(|b| *b == 0) {
        if let Ok(v) = HeaderValue::from_bytes(part) {
            req.headers_mut().append(header::COOKIE, v);
        }
    }
    let app = if mode & 1 == 0 { &*PLAIN } else { &*SIGNED };
    let res = RUNTIME
        .block_on(app.clone().oneshot(req))
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
});
