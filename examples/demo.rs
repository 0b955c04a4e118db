//! A small login app: login form, a page showing the session, a counter, logout, a
//! "your sessions" page (every device the user is logged in on, with revoke buttons and
//! "sign out everywhere"), and an "activity" page (the user's session events: logins,
//! logouts, revocations, expiries). At most 5 sessions per user; a 6th login signs out
//! the least recently active one.
//!
//! On Redis the activity comes from the durable event stream (`<ns>:events`, written by
//! the same script as each change, expiries reported by keyspace notifications); on the
//! in-memory store, from the event hook.
//!
//! ```text
//! cargo run --example demo                                  # in-memory store
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example demo # Redis
//! ```
//!
//! `REDIS_URL` may be `rediss://` (TLS); `REDIS_CA_FILE`, `REDIS_CLIENT_CERT_FILE` and
//! `REDIS_CLIENT_KEY_FILE` name PEM files for a private CA and a client certificate.
//!
//! Open <http://localhost:3000>. The session cookie keeps the secure defaults
//! (`Secure`, `HttpOnly`, `SameSite=Lax`); Chrome and Firefox accept `Secure` cookies
//! on `http://localhost`.

#[path = "shared/redis_env.rs"]
mod redis_env;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Extension, Form};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_redis_session::events::SessionEvent;
use tower_redis_session::{
    Expiry, LimitPolicy, MemoryStore, Session, SessionConfig, SessionError, SessionHandle,
    SessionLayer,
};

#[derive(Deserialize)]
struct Revoke {
    handle: String,
}

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
    let user = session.user_id().await?;
    let count: u64 = session.get("count").await?.unwrap_or(0);
    let body = match user {
        Some(user) => format!(
            "<p>Signed in as <b>{}</b>.</p>\
             <p>Session handle (public, safe to show): <code>{}</code></p>\
             <p>Counter: {count}</p>\
             <form method=post action=/count><button>Count</button></form>\
             <p><a href=/sessions>Your sessions</a> · <a href=/activity>Activity</a></p>\
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
    Ok(page(&body))
}

fn page(body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><title>tower-redis-session demo</title>\
         <h1>tower-redis-session demo</h1>{body}"
    ))
}

fn ago(t: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
        .as_secs();
    format!("{secs} s ago")
}

async fn sessions(session: Session) -> Result<Response, SessionError> {
    if session.user_id().await?.is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    let mut rows = String::new();
    for s in session.user_sessions().await? {
        let action = if s.is_current() {
            "this device".to_owned()
        } else {
            format!(
                "<form method=post action=/sessions/revoke>\
                 <input type=hidden name=handle value={}><button>Sign out</button></form>",
                s.handle()
            )
        };
        rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            s.handle(),
            ago(s.created()),
            ago(s.last_active()),
            escape(s.ip().unwrap_or("?")),
            escape(s.user_agent().unwrap_or("?")),
        ));
    }
    Ok(page(&format!(
        "<h2>Your sessions</h2><table border=1 cellpadding=4>\
         <tr><th>handle</th><th>created</th><th>last active</th><th>IP</th><th>device</th><th></th></tr>\
         {rows}</table>\
         <form method=post action=/sessions/others><button>Sign out all other devices</button></form>\
         <form method=post action=/sessions/everywhere><button>Sign out everywhere</button></form>\
         <p><a href=/>Back</a></p>"
    ))
    .into_response())
}

/// Where the activity page reads events from.
#[derive(Clone)]
enum Activity {
    /// The last events seen by the event hook (in-memory store).
    Recent(Arc<Mutex<VecDeque<SessionEvent>>>),
    /// The namespace's durable event stream.
    Stream {
        conn: redis::aio::MultiplexedConnection,
        key: String,
    },
}

/// One line of the activity page: when (Unix ms), what, why, which session, from where.
struct Line {
    at_ms: u64,
    kind: String,
    reason: String,
    handle: String,
    ip: String,
}

impl Activity {
    async fn of(&self, user: &str) -> Vec<Line> {
        match self {
            Self::Recent(events) => {
                let events = events.lock().unwrap_or_else(|p| p.into_inner());
                events
                    .iter()
                    .rev()
                    .filter(|e| e.user_id.as_deref() == Some(user))
                    .map(|e| Line {
                        at_ms: e
                            .at
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64),
                        kind: e.kind.name().to_owned(),
                        reason: e.kind.reason().unwrap_or("").to_owned(),
                        handle: e.handle.map(|h| h.to_string()).unwrap_or_default(),
                        ip: e.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    })
                    .collect()
            }
            Self::Stream { conn, key } => {
                let mut conn = conn.clone();
                let entries: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
                    .arg(key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                entries
                    .into_iter()
                    .map(|(_, flat)| {
                        let field = |name: &str| {
                            flat.chunks_exact(2)
                                .find(|kv| kv[0] == name)
                                .map(|kv| kv[1].clone())
                                .unwrap_or_default()
                        };
                        (
                            field("user"),
                            Line {
                                at_ms: field("at").parse().unwrap_or(0),
                                kind: field("kind"),
                                reason: field("reason"),
                                handle: field("handle"),
                                ip: field("ip"),
                            },
                        )
                    })
                    .filter(|(u, _)| u == user)
                    .map(|(_, line)| line)
                    .collect()
            }
        }
    }
}

async fn activity(
    session: Session,
    Extension(activity): Extension<Activity>,
) -> Result<Response, SessionError> {
    let Some(user) = session.user_id().await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let mut rows = String::new();
    for line in activity.of(&user).await.into_iter().take(50) {
        let at = UNIX_EPOCH + Duration::from_millis(line.at_ms);
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            ago(at),
            escape(&line.kind),
            escape(&line.reason),
            escape(&line.handle),
            escape(&line.ip),
        ));
    }
    Ok(page(&format!(
        "<h2>Activity of {}</h2><table border=1 cellpadding=4>\
         <tr><th>when</th><th>event</th><th>reason</th><th>session</th><th>IP</th></tr>\
         {rows}</table><p><a href=/>Back</a></p>",
        escape(&user)
    ))
    .into_response())
}

async fn revoke(session: Session, Form(form): Form<Revoke>) -> Result<Redirect, SessionError> {
    if let Some(handle) = SessionHandle::parse(&form.handle) {
        session.revoke(handle).await?;
    }
    Ok(Redirect::to("/sessions"))
}

async fn revoke_others(session: Session) -> Result<Redirect, SessionError> {
    session.revoke_other_sessions().await?;
    Ok(Redirect::to("/sessions"))
}

async fn everywhere(session: Session) -> Result<Redirect, SessionError> {
    session.logout_everywhere().await?;
    Ok(Redirect::to("/"))
}

async fn login(session: Session, Form(form): Form<Login>) -> Result<Response, SessionError> {
    let user = form.user.trim();
    if user.is_empty() || user.len() > 64 {
        return Ok(Redirect::to("/").into_response());
    }
    if form.remember.is_some() {
        session
            .set_expiry(Expiry::remember_me(Duration::from_secs(30 * 86_400)))
            .await?;
    }
    // Moves the session (and its counter) to a new id in the user's slot: an id
    // planted before login is useless after it.
    session.login(user).await?;
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
    let config = SessionConfig::default().with_max_sessions_per_user(5, LimitPolicy::EvictOldest);
    let routes = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/count", post(count))
        .route("/logout", post(logout))
        .route("/sessions", get(sessions))
        .route("/sessions/revoke", post(revoke))
        .route("/sessions/others", post(revoke_others))
        .route("/sessions/everywhere", post(everywhere))
        .route("/activity", get(activity));
    let app = match std::env::var("REDIS_URL") {
        Ok(url) => {
            println!("session store: Redis (REDIS_URL)");
            let store = redis_env::store_builder(&url)
                .build()?
                .with_event_stream(100_000)?;
            // Fail at start-up, with the reason, if Redis cannot be reached or used.
            store.check().await?;
            let layer = SessionLayer::new(store.clone(), config)?;
            // Expired sessions produce events too (keyspace notifications).
            store.watch_expired(&layer)?;
            let conn = redis_env::client(&url)?
                .get_multiplexed_async_connection()
                .await?;
            let key = store.event_stream_key();
            routes
                .layer(layer)
                .layer(Extension(Activity::Stream { conn, key }))
        }
        Err(_) => {
            println!("session store: in-memory (set REDIS_URL to use Redis)");
            let recent = Arc::new(Mutex::new(VecDeque::new()));
            let sink = recent.clone();
            let layer = SessionLayer::new(MemoryStore::new(), config)?.with_events(
                move |e: &SessionEvent| {
                    let mut events = sink.lock().unwrap_or_else(|p| p.into_inner());
                    if events.len() == 1000 {
                        events.pop_front();
                    }
                    events.push_back(e.clone());
                },
            );
            routes
                .layer(layer)
                .layer(Extension(Activity::Recent(recent)))
        }
    };
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://localhost:{port}");
    // ConnectInfo gives the layer the client IP shown on the sessions page.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
