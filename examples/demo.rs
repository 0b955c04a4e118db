//! A small login app: login form, a page showing the session, a counter, logout, a
//! "your sessions" page (every device the user is logged in on, named as the user chose
//! at login, with revoke buttons and "sign out everywhere"), and an "activity" page (the user's session events: logins,
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
//! on `http://localhost`. Every form is protected against cross-site request forgery
//! (`CsrfLayer`, with a `CsrfToken` in each form).

#[path = "shared/redis_env.rs"]
mod redis_env;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Extension, Form, Query};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_redis_session::events::SessionEvent;
use tower_redis_session::{
    CsrfLayer, CsrfToken, Expiry, LimitPolicy, MemoryStore, RedisStore, Session, SessionConfig,
    SessionDetails, SessionError, SessionHandle, SessionLayer,
};

#[derive(Deserialize)]
struct Revoke {
    handle: String,
}

#[derive(Deserialize)]
struct Login {
    user: String,
    remember: Option<String>,
    /// A name for this device, shown on the sessions page (a session detail).
    device: Option<String>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn home(
    session: Session,
    csrf: CsrfToken,
    Query(done): Query<Done>,
) -> Result<Html<String>, SessionError> {
    let t = hidden(&csrf);
    let user = session.user_id().await?;
    let count: u64 = session.get("count").await?.unwrap_or(0);
    let body = match user {
        Some(user) => format!(
            "<p>Signed in as <b>{}</b>.</p>\
             <p>Session handle (public, safe to show): <code>{}</code></p>\
             <p>Counter: {count}</p>\
             <form method=post action=/count>{t}<button>Count</button></form>\
             <p><a href=/sessions>Your sessions</a> · <a href=/activity>Activity</a></p>\
             <form method=post action=/logout>{t}<button>Log out</button></form>",
            escape(&user),
            session.handle().await?,
        ),
        None => format!(
            "{}<p>Not signed in. Counter: {count}</p>\
             <form method=post action=/count>{t}<button>Count anonymously</button></form>\
             <form method=post action=/login>{t}\
             <input name=user placeholder=name required maxlength=64> \
             <input name=device placeholder=\"device name (optional)\" maxlength=64> \
             <label><input type=checkbox name=remember> remember me (30 days)</label> \
             <button>Log in</button></form>",
            notice(&done, "session")
        ),
    };
    Ok(page(&body))
}

/// The CSRF token field every form carries: CsrfLayer checks it where a browser sends
/// neither fetch metadata nor `Origin`.
fn hidden(csrf: &CsrfToken) -> String {
    format!(
        "<input type=hidden name=csrf_token value={}>",
        csrf.as_str()
    )
}

fn page(body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>tower-redis-session demo</title><link rel=stylesheet href=/style.css>\
         <header><a href=/>tower-redis-session demo</a></header><main>{body}</main>"
    ))
}

/// The demo's stylesheet, served by the demo itself (no external assets).
const STYLE: &str = "\
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1d2430;background:#f5f6f8}\
header{background:#1d2430;padding:.8rem 1.5rem}header a{color:#fff;font-weight:600;text-decoration:none}\
main{max-width:56rem;margin:1.5rem auto;padding:0 1.5rem}\
table{border-collapse:collapse;width:100%;background:#fff;border-radius:6px;overflow:hidden}\
th,td{padding:.5rem .7rem;text-align:left;border-bottom:1px solid #e3e6ea;vertical-align:middle}\
th{background:#eef0f3;font-weight:600;font-size:.9rem}\
code{font-size:.8rem;color:#5a6472}\
button{white-space:nowrap;background:#2f6fde;color:#fff;border:0;border-radius:4px;padding:.4rem .9rem;cursor:pointer;margin:.2rem 0}\
button.quiet{background:#e3e6ea;color:#1d2430}\
input[name=user]{padding:.35rem;border:1px solid #c5cad3;border-radius:4px}\
.badge{display:inline-block;white-space:nowrap;background:#1f9d55;color:#fff;border-radius:10px;padding:0 .5rem;font-size:.8rem}\
.notice{background:#e6f4ea;border:1px solid #b7dfc3;padding:.6rem .9rem;border-radius:4px}\
form{display:inline-block;margin-right:.5rem}";

async fn style() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/css")], STYLE)
}

/// "just now", "5 minutes ago", "3 days ago".
fn ago(t: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
        .as_secs();
    let (n, unit) = match secs {
        0..10 => return "just now".to_owned(),
        10..60 => (secs, "second"),
        60..3600 => (secs / 60, "minute"),
        3600..86_400 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// A readable device from a user agent: "Chrome on Linux", "Safari on iPhone".
fn device(ua: &str) -> String {
    let browser = if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("HeadlessChrome") {
        "Chrome (headless)"
    } else if ua.contains("Chrome/") || ua.contains("Chromium/") {
        "Chrome"
    } else if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("Safari/") {
        "Safari"
    } else if ua.starts_with("curl/") {
        "curl"
    } else {
        "A browser"
    };
    let os = if ua.contains("iPhone") {
        "iPhone"
    } else if ua.contains("iPad") {
        "iPad"
    } else if ua.contains("Android") {
        "Android"
    } else if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        "macOS"
    } else if ua.contains("Linux") || ua.contains("X11") {
        "Linux"
    } else {
        return browser.to_owned();
    };
    format!("{browser} on {os}")
}

/// `?signed_out=N`: how many sessions the last action signed out.
#[derive(Deserialize)]
struct Done {
    signed_out: Option<usize>,
}

fn notice(done: &Done, what: &str) -> String {
    match done.signed_out {
        Some(n) => format!(
            "<p class=notice>Signed out {n} {what}{}.</p>",
            if n == 1 { "" } else { "s" }
        ),
        None => String::new(),
    }
}

async fn sessions(
    session: Session,
    csrf: CsrfToken,
    Query(done): Query<Done>,
) -> Result<Response, SessionError> {
    let t = hidden(&csrf);
    if session.user_id().await?.is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    let mut rows = String::new();
    for s in session.user_sessions().await? {
        let action = if s.current {
            "<span class=badge>this device</span>".to_owned()
        } else {
            format!(
                "<form method=post action=/sessions/revoke>{t}\
                 <input type=hidden name=handle value={}><button class=quiet>Sign out</button></form>",
                s.handle
            )
        };
        let ua = s.user_agent.as_deref().unwrap_or("unknown");
        // The name the user gave this device at login (a session detail), if any.
        let named = s
            .details
            .get("device")
            .map(|name| format!("<b>{}</b> · ", escape(name)))
            .unwrap_or_default();
        rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td title=\"{}\">{named}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            s.handle,
            escape(ua),
            escape(&device(ua)),
            escape(s.ip.as_deref().unwrap_or("?")),
            ago(s.created),
            ago(s.last_active),
        ));
    }
    Ok(page(&format!(
        "<h2>Your sessions</h2>{}<table>\
         <tr><th>session</th><th>device</th><th>IP</th><th>signed in</th><th>last active</th><th></th></tr>\
         {rows}</table>\
         <p><form method=post action=/sessions/others>{t}<button>Sign out all other devices</button></form>\
         <form method=post action=/sessions/everywhere>{t}<button class=quiet>Sign out everywhere</button></form></p>\
         <p><a href=/>Back</a></p>",
        notice(&done, "other device")
    ))
    .into_response())
}

/// Where the activity page reads events from.
#[derive(Clone)]
enum Activity {
    /// The last events seen by the event hook (in-memory store).
    Recent(Arc<Mutex<VecDeque<SessionEvent>>>),
    /// The namespace's durable event stream, read through the store.
    Stream(RedisStore),
}

impl Activity {
    /// The user's recent events, newest first (an unreadable stream shows none).
    async fn of(&self, user: &str) -> Vec<SessionEvent> {
        let events = match self {
            Self::Recent(events) => {
                let events = events.lock().unwrap_or_else(|p| p.into_inner());
                events.iter().rev().cloned().collect()
            }
            Self::Stream(store) => store.recent_events(1000).await.unwrap_or_default(),
        };
        events
            .into_iter()
            .filter(|e| e.user_id.as_deref() == Some(user))
            .collect()
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
    for e in activity.of(&user).await.into_iter().take(50) {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            ago(e.at),
            escape(e.kind.name()),
            escape(e.kind.reason().unwrap_or("")),
            e.handle.map(|h| h.to_string()).unwrap_or_default(),
            e.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        ));
    }
    Ok(page(&format!(
        "<h2>Activity of {}</h2><table>\
         <tr><th>when</th><th>event</th><th>reason</th><th>session</th><th>IP</th></tr>\
         {rows}</table><p><a href=/>Back</a></p>",
        escape(&user)
    ))
    .into_response())
}

async fn revoke(session: Session, Form(form): Form<Revoke>) -> Result<Redirect, SessionError> {
    let mut n = 0;
    if let Ok(handle) = form.handle.parse::<SessionHandle>() {
        n = usize::from(session.revoke(handle).await?);
    }
    Ok(Redirect::to(&format!("/sessions?signed_out={n}")))
}

async fn revoke_others(session: Session) -> Result<Redirect, SessionError> {
    let n = session.revoke_other_sessions().await?;
    Ok(Redirect::to(&format!("/sessions?signed_out={n}")))
}

async fn everywhere(session: Session) -> Result<Redirect, SessionError> {
    let n = session.logout_everywhere().await?;
    Ok(Redirect::to(&format!("/?signed_out={n}")))
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
    // Display only: a name that breaks the detail limits is simply not kept.
    let named = form
        .device
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .and_then(|d| SessionDetails::default().with("device", d).ok());
    if let Some(details) = named {
        session.set_details(details).await?;
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
        .route("/activity", get(activity))
        .route("/style.css", get(style))
        // Refuses state changes from other origins (a page on another port, a sibling
        // subdomain), which SameSite=Lax lets the cookie reach.
        .layer(CsrfLayer::new());
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
            routes
                .layer(layer)
                .layer(Extension(Activity::Stream(store)))
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
