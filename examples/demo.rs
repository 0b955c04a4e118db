//! A small login app: login form, a page showing the session, a counter, logout.
//!
//! ```text
//! cargo run --example demo                                  # in-memory store
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example demo # Redis
//! ```
//!
//! Open <http://localhost:3000>. The session cookie keeps the secure defaults
//! (`Secure`, `HttpOnly`, `SameSite=Lax`); Chrome and Firefox accept `Secure` cookies
//! on `http://localhost`.

use std::time::Duration;

use axum::Router;
use axum::extract::Form;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_redis_session::{
    Expiry, MemoryStore, RedisStore, Session, SessionConfig, SessionError, SessionLayer,
};

#[derive(Deserialize)]
struct Login {
    user: String,
    remember: Option<String>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn home(session: Session) -> Result<Html<String>, SessionError> {
    let user: Option<String> = session.get("user").await?;
    let count: u64 = session.get("count").await?.unwrap_or(0);
    let body = match user {
        Some(user) => format!(
            "<p>Signed in as <b>{}</b>.</p>\
             <p>Session handle (public, safe to show): <code>{}</code></p>\
             <p>Counter: {count}</p>\
             <form method=post action=/count><button>Count</button></form>\
             <form method=post action=/logout><button>Log out</button></form>",
            escape(&user),
            session.handle().await?,
        ),
        None => format!(
            "<p>Not signed in. Counter: {count}</p>\
             <form method=post action=/count><button>Count anonymously</button></form>\
             <form method=post action=/login>\
             <input name=user placeholder=name required maxlength=64> \
             <label><input type=checkbox name=remember> remember me (30 days)</label> \
             <button>Log in</button></form>"
        ),
    };
    Ok(Html(format!(
        "<!doctype html><title>tower-redis-session demo</title>\
         <h1>tower-redis-session demo</h1>{body}"
    )))
}

async fn login(session: Session, Form(form): Form<Login>) -> Result<Response, SessionError> {
    let user = form.user.trim();
    if user.is_empty() || user.len() > 64 {
        return Ok(Redirect::to("/").into_response());
    }
    session.insert("user", user).await?;
    if form.remember.is_some() {
        session
            .set_expiry(Expiry::remember_me(Duration::from_secs(30 * 86_400)))
            .await?;
    }
    // New id at login: an id planted before login is useless after it.
    session.cycle_id().await?;
    Ok(Redirect::to("/").into_response())
}

async fn count(session: Session) -> Result<Redirect, SessionError> {
    let n: u64 = session.get("count").await?.unwrap_or(0);
    session.insert("count", n + 1).await?;
    Ok(Redirect::to("/"))
}

async fn logout(session: Session) -> Result<Redirect, SessionError> {
    session.destroy().await?;
    Ok(Redirect::to("/"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = SessionConfig::default();
    let routes = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/count", post(count))
        .route("/logout", post(logout));
    let app = match std::env::var("REDIS_URL") {
        Ok(url) => {
            println!("session store: Redis (REDIS_URL)");
            routes.layer(SessionLayer::new(RedisStore::from_url(&url)?, config)?)
        }
        Err(_) => {
            println!("session store: in-memory (set REDIS_URL to use Redis)");
            routes.layer(SessionLayer::new(MemoryStore::new(), config)?)
        }
    };
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://localhost:{port}");
    axum::serve(listener, app).await?;
    Ok(())
}
