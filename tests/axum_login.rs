//! axum-login's traits on our sessions: a backend written for axum-login logs in,
//! guards routes (`login_required!`, `permission_required!`), logs out, and a changed
//! auth hash (a new password) ends every device's session; on the in-memory store and
//! a real Redis. axum-login's own sqlite example runs on it too:
//! tests/fixtures/axum-login-sqlite.
#![cfg(all(feature = "axum-login", feature = "messages"))]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::Form;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_login::{AuthUser, AuthnBackend, AuthzBackend, UserId};
use common::Client;
use serde::Deserialize;
use tower_redis_session::axum_login::{self as auth, AuthError, AuthSession};
use tower_redis_session::{
    LimitPolicy, MemoryStore, RedisStore, Session, SessionConfig, SessionLayer, SessionStore,
    login_required, permission_required,
};

#[derive(Clone)]
struct User {
    id: i64,
    name: String,
    password: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("id", &self.id).finish()
    }
}

impl AuthUser for User {
    type Id = i64;
    fn id(&self) -> i64 {
        self.id
    }
    fn session_auth_hash(&self) -> &[u8] {
        self.password.as_bytes()
    }
}

#[derive(Clone, Deserialize)]
struct Credentials {
    name: String,
    password: String,
}

#[derive(Debug, thiserror::Error)]
#[error("the user table is down")]
struct Down;

/// Users by id, shared so a test can change a password; `down` fails every lookup.
#[derive(Clone, Default)]
struct Backend {
    users: Arc<RwLock<HashMap<i64, User>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Backend {
    fn with_users() -> Self {
        let b = Self::default();
        for (id, name) in [(1, "ferris"), (2, "corro")] {
            let user = User {
                id,
                name: name.to_owned(),
                password: "hunter42".to_owned(),
            };
            b.users.write().unwrap().insert(id, user);
        }
        b
    }

    fn set_password(&self, id: i64, password: &str) {
        self.users.write().unwrap().get_mut(&id).unwrap().password = password.to_owned();
    }

    fn check(&self) -> Result<(), Down> {
        match self.down.load(std::sync::atomic::Ordering::Relaxed) {
            true => Err(Down),
            false => Ok(()),
        }
    }
}

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = Credentials;
    type Error = Down;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<User>, Down> {
        self.check()?;
        let users = self.users.read().unwrap();
        Ok(users
            .values()
            .find(|u| u.name == creds.name && u.password == creds.password)
            .cloned())
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, Down> {
        self.check()?;
        Ok(self.users.read().unwrap().get(id).cloned())
    }
}

impl AuthzBackend for Backend {
    type Permission = String;

    async fn get_user_permissions(&self, user: &User) -> Result<HashSet<String>, Down> {
        Ok(match user.id {
            1 => HashSet::from(["admin.read".to_owned()]),
            _ => HashSet::new(),
        })
    }
}

type Auth = AuthSession<Backend>;

async fn login(mut auth: Auth, Form(creds): Form<Credentials>) -> Response {
    let user = match auth.authenticate(creds).await {
        Ok(Some(user)) => user,
        Ok(None) => return (axum::http::StatusCode::UNAUTHORIZED, "wrong").into_response(),
        Err(e) => return e.into_response(),
    };
    match auth.login(&user).await {
        Ok(()) => Redirect::to("/me").into_response(),
        Err(e) => e.into_response(),
    }
}

fn app<S: SessionStore>(store: S, backend: Backend, config: SessionConfig) -> Router {
    Router::new()
        .route(
            "/me",
            get(|auth: Auth| async move { auth.user().await.map(|u| u.name).unwrap_or_default() }),
        )
        .route_layer(login_required!(Backend, login_url = "/login"))
        .route(
            "/api/me",
            get(|auth: Auth| async move { auth.user().await.map(|u| u.name).unwrap_or_default() })
                .route_layer(login_required!(Backend)),
        )
        .route(
            "/admin",
            get(|| async { "admin" }).route_layer(permission_required!(Backend, "admin.read")),
        )
        .route("/login", post(login))
        .route(
            "/logout",
            post(|mut auth: Auth| async move {
                auth.logout()
                    .await
                    .map(|u| u.map(|u| u.name).unwrap_or_default())
            }),
        )
        .route(
            "/devices",
            get(|s: Session| async move { s.user_sessions().await.map(|l| l.len().to_string()) }),
        )
        // What a handler could plant under the login's key without logging in: the
        // right check of ferris' auth hash, or a wrong one.
        .route(
            "/plant",
            post(|s: Session| async move {
                let check = planted_check(b"hunter42");
                s.insert("__auth", serde_json::json!({"id": 1, "check": check}))
                    .await
            }),
        )
        .route(
            "/plant-wrong",
            post(|s: Session| async move {
                let check = planted_check(b"hunter43");
                s.insert("__auth", serde_json::json!({"id": 1, "check": check}))
                    .await
            }),
        )
        .layer(auth::layer(backend))
        .layer(SessionLayer::new(store, config).unwrap())
}

/// The check the crate stores for `auth_hash` (its documented HMAC-SHA-256).
fn planted_check(auth_hash: &[u8]) -> String {
    use base64::Engine;
    use hmac::Mac;
    let key = b"tower-redis-session axum-login session_auth_hash";
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(auth_hash);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn config() -> SessionConfig {
    SessionConfig::default()
}

async fn log_in(c: &mut Client, name: &str, password: &str) -> u16 {
    let form = format!("name={name}&password={password}");
    c.post_form("/login", &form).await.status.as_u16()
}

async fn a_backend_for_axum_login_logs_in_and_out(store: impl SessionStore) {
    let backend = Backend::with_users();
    let app = app(store, backend, config());
    let mut c = Client::new(app);
    // The guard: a redirect for pages, 401 for the API, 403 without the permission.
    let r = c.get("/me?tab=1").await;
    assert_eq!(r.status, 307);
    assert_eq!(r.headers["location"], "/login?next=%2Fme%3Ftab%3D1");
    assert_eq!(c.get("/api/me").await.status, 401);
    assert_eq!(c.get("/admin").await.status, 403);
    // A wrong password, then the right one.
    assert_eq!(log_in(&mut c, "ferris", "hunter43").await, 401);
    assert!(c.cookie.is_none(), "a failed login starts no session");
    assert_eq!(log_in(&mut c, "ferris", "hunter42").await, 303);
    assert_eq!(c.get("/me").await.body, "ferris");
    assert_eq!(c.get("/api/me").await.body, "ferris");
    assert_eq!(c.get("/admin").await.body, "admin");
    assert_eq!(
        c.get("/devices").await.body,
        "1",
        "our device list, for its user"
    );
    // Another user on the same browser: that user, and not the first one's permission.
    assert_eq!(log_in(&mut c, "corro", "hunter42").await, 303);
    assert_eq!(c.get("/me").await.body, "corro");
    assert_eq!(c.get("/admin").await.status, 403);
    // Logout ends the session.
    let r = c.post("/logout").await;
    assert_eq!(r.body, "corro");
    assert!(c.cookie.is_none());
    assert_eq!(c.get("/me").await.status, 307);
}

#[tokio::test]
async fn logs_in_and_out_on_the_memory_store() {
    a_backend_for_axum_login_logs_in_and_out(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_in_and_out_on_redis() {
    let store: RedisStore = common::stores::redis_store("axum-login-flow");
    a_backend_for_axum_login_logs_in_and_out(store).await;
}

async fn a_new_password_logs_out_every_device(store: impl SessionStore) {
    let backend = Backend::with_users();
    let app = app(store, backend.clone(), config());
    let (mut phone, mut laptop) = (Client::new(app.clone()), Client::new(app));
    assert_eq!(log_in(&mut phone, "ferris", "hunter42").await, 303);
    assert_eq!(log_in(&mut laptop, "ferris", "hunter42").await, 303);
    assert_eq!(laptop.get("/devices").await.body, "2");
    backend.set_password(1, "correct horse");
    for device in [&mut phone, &mut laptop] {
        let r = device.get("/api/me").await;
        assert_eq!(r.status, 401, "the old auth hash is no login");
        assert!(device.cookie.is_none(), "and the session ended");
    }
    // Ended in the store, not only for these cookies: a new login is the only one.
    assert_eq!(log_in(&mut phone, "ferris", "correct horse").await, 303);
    assert_eq!(phone.get("/devices").await.body, "1");
}

#[tokio::test]
async fn a_new_password_logs_out_every_device_on_the_memory_store() {
    a_new_password_logs_out_every_device(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_logs_out_every_device_on_redis() {
    let store: RedisStore = common::stores::redis_store("axum-login-password");
    a_new_password_logs_out_every_device(store).await;
}

#[tokio::test]
async fn what_is_not_a_login_reads_as_none() {
    let backend = Backend::with_users();
    let mut c = Client::new(app(MemoryStore::new(), backend, config()));
    // A login's value on an anonymous session, check and all: no user, as the session
    // is not logged in as that user.
    c.post("/plant").await;
    assert!(c.cookie.is_some());
    assert_eq!(c.get("/api/me").await.status, 401);
    // On another user's session: no user either.
    assert_eq!(log_in(&mut c, "corro", "hunter42").await, 303);
    c.post("/plant").await;
    assert_eq!(c.get("/api/me").await.status, 401);
    // A wrong check on the user's own session: the session ends.
    assert_eq!(log_in(&mut c, "ferris", "hunter42").await, 303);
    c.post("/plant-wrong").await;
    assert_eq!(c.get("/api/me").await.status, 401);
    assert!(c.cookie.is_none());
}

#[tokio::test]
async fn a_refused_login_leaves_the_session_logged_out() {
    let backend = Backend::with_users();
    let config = config().with_max_sessions_per_user(1, LimitPolicy::Reject);
    let app = app(MemoryStore::new(), backend, config);
    let (mut first, mut second) = (Client::new(app.clone()), Client::new(app));
    assert_eq!(log_in(&mut first, "ferris", "hunter42").await, 303);
    second.post("/plant").await;
    assert_eq!(log_in(&mut second, "ferris", "hunter42").await, 409);
    assert_eq!(second.get("/api/me").await.status, 401);
    assert_eq!(first.get("/api/me").await.body, "ferris");
}

#[tokio::test]
async fn a_failing_backend_is_a_500_without_its_text() {
    let backend = Backend::with_users();
    let mut c = Client::new(app(MemoryStore::new(), backend.clone(), config()));
    assert_eq!(log_in(&mut c, "ferris", "hunter42").await, 303);
    backend
        .down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let r = c.get("/api/me").await;
    assert_eq!(r.status, 500);
    assert!(!r.body.contains("user table"), "{}", r.body);
    // Nothing was ended: the user is back when the backend is.
    backend
        .down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(c.get("/api/me").await.body, "ferris");
}

#[tokio::test]
async fn without_the_layer_the_rejection_says_so() {
    let app = Router::new()
        .route("/me", get(|_: Auth| async { "never" }))
        .layer(SessionLayer::new(MemoryStore::new(), config()).unwrap());
    let r = Client::new(app).get("/me").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("axum_login::layer"), "{}", r.body);
    let e: AuthError<Backend> = AuthError::MissingLayer;
    assert!(format!("{e:?}").contains("MissingLayer"));
}
