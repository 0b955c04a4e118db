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
//! (`CsrfLayer`, with a `CsrfToken` in each form). Pages are askama templates
//! (`examples/templates/`, escaped by default); notices are flash messages kept in the
//! session until shown (`Messages`). "Sign out everywhere" needs a sign-in within the
//! last 5 minutes (`Session::require_recent_auth`; `RECENT_AUTH_SECS` changes it), else
//! it asks the user to sign in again.

#[path = "shared/redis_env.rs"]
mod redis_env;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use askama::Template;
use axum::Router;
use axum::extract::{Extension, Form};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_redis_session::events::SessionEvent;
use tower_redis_session::messages::{Message, Messages};
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
    /// Where to go after signing in (only the demo's own pages).
    next: Option<String>,
}

/// A page rendered (askama escapes every value), or a 500 that says only that.
fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The home page. Every page shows the flash messages waiting for it, and every form
/// carries the CSRF token (`templates/csrf.html`), which `CsrfLayer` checks where a
/// browser sends neither fetch metadata nor `Origin`.
#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    messages: Vec<Message>,
    csrf: CsrfToken,
    user: Option<String>,
    handle: String,
    count: u64,
}

async fn home(
    session: Session,
    csrf: CsrfToken,
    messages: Messages,
) -> Result<Response, SessionError> {
    let user = session.user_id().await?;
    let handle = match user {
        Some(_) => session.handle().await?.to_string(),
        None => String::new(),
    };
    Ok(render(Home {
        messages: messages.collect(),
        csrf,
        user,
        handle,
        count: session.get("count").await?.unwrap_or(0),
    }))
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
.notice.warning,.notice.error{background:#fdf1e2;border-color:#f0c990}\
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

/// "Signed out 1 other device.", "Signed out 3 sessions."
fn signed_out(n: usize, what: &str) -> String {
    format!("Signed out {n} {what}{}.", if n == 1 { "" } else { "s" })
}

/// One device on the sessions page.
struct Row {
    handle: String,
    /// The name the user gave this device at login (a session detail), if any.
    name: Option<String>,
    device: String,
    user_agent: String,
    ip: String,
    signed_in: String,
    last_active: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct Sessions {
    messages: Vec<Message>,
    csrf: CsrfToken,
    rows: Vec<Row>,
}

async fn sessions(
    session: Session,
    csrf: CsrfToken,
    messages: Messages,
) -> Result<Response, SessionError> {
    if session.user_id().await?.is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    let rows = session
        .user_sessions()
        .await?
        .into_iter()
        .map(|s| {
            let ua = s.user_agent.unwrap_or_else(|| "unknown".to_owned());
            Row {
                handle: s.handle.to_string(),
                name: s.details.get("device").map(str::to_owned),
                device: device(&ua),
                user_agent: ua,
                ip: s.ip.unwrap_or_else(|| "?".to_owned()),
                signed_in: ago(s.created),
                last_active: ago(s.last_active),
                current: s.current,
            }
        })
        .collect();
    Ok(render(Sessions {
        messages: messages.collect(),
        csrf,
        rows,
    }))
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

/// One event on the activity page.
struct Event {
    when: String,
    event: &'static str,
    reason: &'static str,
    handle: String,
    ip: String,
}

#[derive(Template)]
#[template(path = "activity.html")]
struct ActivityPage {
    messages: Vec<Message>,
    user: String,
    rows: Vec<Event>,
}

async fn activity(
    session: Session,
    messages: Messages,
    Extension(activity): Extension<Activity>,
) -> Result<Response, SessionError> {
    let Some(user) = session.user_id().await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let rows = activity
        .of(&user)
        .await
        .into_iter()
        .take(50)
        .map(|e| Event {
            when: ago(e.at),
            event: e.kind.name(),
            reason: e.kind.reason().unwrap_or(""),
            handle: e.handle.map(|h| h.to_string()).unwrap_or_default(),
            ip: e.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        })
        .collect();
    Ok(render(ActivityPage {
        messages: messages.collect(),
        user,
        rows,
    }))
}

async fn revoke(
    session: Session,
    messages: Messages,
    Form(form): Form<Revoke>,
) -> Result<Redirect, SessionError> {
    let mut n = 0;
    if let Ok(handle) = form.handle.parse::<SessionHandle>() {
        n = usize::from(session.revoke(handle).await?);
    }
    messages.success(signed_out(n, "other device"));
    Ok(Redirect::to("/sessions"))
}

async fn revoke_others(session: Session, messages: Messages) -> Result<Redirect, SessionError> {
    let n = session.revoke_other_sessions().await?;
    messages.success(signed_out(n, "other device"));
    Ok(Redirect::to("/sessions"))
}

/// How recent a sign-in "sign out everywhere" needs (`RECENT_AUTH_SECS`, default 300).
#[derive(Clone, Copy)]
struct RecentAuth(Duration);

async fn everywhere(
    session: Session,
    messages: Messages,
    Extension(RecentAuth(max_age)): Extension<RecentAuth>,
) -> Result<Redirect, SessionError> {
    match session.require_recent_auth(max_age).await {
        Ok(()) => {}
        // Signed in too long ago: ask again, then come back.
        Err(SessionError::StaleAuthentication { .. }) => {
            messages.warning("Sign in again to sign out everywhere.");
            return Ok(Redirect::to("/reauth"));
        }
        Err(e) => return Err(e),
    }
    let n = session.logout_everywhere().await?;
    messages.success(signed_out(n, "session"));
    Ok(Redirect::to("/"))
}

#[derive(Template)]
#[template(path = "reauth.html")]
struct Reauth {
    messages: Vec<Message>,
    csrf: CsrfToken,
    user: String,
    max_age: String,
}

async fn reauth(
    session: Session,
    csrf: CsrfToken,
    messages: Messages,
    Extension(RecentAuth(max_age)): Extension<RecentAuth>,
) -> Result<Response, SessionError> {
    let Some(user) = session.user_id().await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let secs = max_age.as_secs();
    let max_age = match secs {
        60.. => format!("{} minutes", secs / 60),
        _ => format!("{secs} seconds"),
    };
    Ok(render(Reauth {
        messages: messages.collect(),
        csrf,
        user,
        max_age,
    }))
}

async fn login(
    session: Session,
    messages: Messages,
    Form(form): Form<Login>,
) -> Result<Response, SessionError> {
    let user = form.user.trim();
    if user.is_empty() || user.len() > 64 {
        messages.error("Give a name of 1 to 64 characters.");
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
        .and_then(|d| {
            let mut details = SessionDetails::default();
            details.insert("device", d).ok().map(|()| details)
        });
    if let Some(details) = named {
        session.set_details(details).await?;
    }
    // Moves the session (and its counter) to a new id in the user's slot: an id
    // planted before login is useless after it.
    session.login(user).await?;
    // Only the demo's own pages: a `next` from the form is never an open redirect.
    let next = match form.next.as_deref() {
        Some("/sessions") => "/sessions",
        _ => "/",
    };
    Ok(Redirect::to(next).into_response())
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
    let recent_auth = std::env::var("RECENT_AUTH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(300), Duration::from_secs);
    let routes = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/count", post(count))
        .route("/logout", post(logout))
        .route("/sessions", get(sessions))
        .route("/sessions/revoke", post(revoke))
        .route("/sessions/others", post(revoke_others))
        .route("/sessions/everywhere", post(everywhere))
        .route("/reauth", get(reauth))
        .route("/activity", get(activity))
        .route("/style.css", get(style))
        // Refuses state changes from other origins (a page on another port, a sibling
        // subdomain), which SameSite=Lax lets the cookie reach.
        .layer(CsrfLayer::new())
        .layer(Extension(RecentAuth(recent_auth)));
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
