//! Unit tests for your handlers: a [`Session`] without an HTTP server.
//!
//! [`SessionTester`] plays the part of the layer and of a browser's cookie jar: it
//! hands out the session the next request would get, and after your handler ran, it
//! writes the session back exactly as the layer does and keeps the cookie the response
//! would have set.
//!
//! ```
//! use tower_redis_session::testing::{Finished, SessionTester};
//! use tower_redis_session::{MemoryStore, Session, SessionConfig, SessionError, SessionLayer};
//!
//! async fn visit(session: Session) -> Result<String, SessionError> {
//!     let n: u64 = session.get("visits").await?.unwrap_or(0) + 1;
//!     session.insert("visits", n).await?;
//!     Ok(format!("visit {n}"))
//! }
//!
//! # tokio_test_block_on(async {
//! let layer = SessionLayer::new(MemoryStore::new(), SessionConfig::default()).unwrap();
//! let mut browser = SessionTester::new(layer);
//!
//! let session = browser.session();
//! assert_eq!(visit(session.clone()).await.unwrap(), "visit 1");
//! assert!(matches!(browser.finish(session).await, Finished::CookieSet { .. }));
//!
//! let session = browser.session();
//! assert_eq!(visit(session.clone()).await.unwrap(), "visit 2");
//! browser.finish(session).await;
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```
//!
//! To drive a whole `Router` (its layers, extractors and routes), give the tester the
//! same layer and [`send`](SessionTester::send) requests through the app: the tester
//! adds the session cookie to each and keeps what the response sets.
//!
//! ```
//! use axum::{Router, body::Body, http::Request, routing::post};
//! use tower_redis_session::testing::SessionTester;
//! use tower_redis_session::{MemoryStore, Session, SessionConfig, SessionLayer};
//!
//! # tokio_test_block_on(async {
//! let layer = SessionLayer::new(MemoryStore::new(), SessionConfig::default()).unwrap();
//! let app = Router::new()
//!     .route("/login", post(|s: Session| async move { s.login("ada").await.unwrap() }))
//!     .layer(layer.clone());
//! let mut browser = SessionTester::new(layer);
//! let req = Request::post("/login").body(Body::empty()).unwrap();
//! browser.send(app.clone(), req).await;
//! assert!(browser.cookie().is_some());
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};

use crate::context::RequestMeta;
use crate::cookie;
use crate::error::StoreError;
use crate::layer::SessionLayer;
use crate::session::{Commit, CookieAction, Session};

/// A browser's cookie jar and the layer's write-back, for calling handlers directly.
#[derive(Debug)]
pub struct SessionTester {
    layer: SessionLayer,
    /// The session cookie's value, as a browser would send it.
    cookie: Option<String>,
}

/// What finishing a session did, as the response would show it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Finished {
    /// No `Set-Cookie`: the cookie (if any) stays as it was.
    CookieKept,
    /// A new cookie value was set (kept in the tester); `max_age` for a persistent one.
    CookieSet {
        /// The cookie's `Max-Age`, `None` for a browser-session cookie.
        max_age: Option<Duration>,
    },
    /// The cookie was removed (logout, or a session that no longer exists).
    CookieRemoved,
    /// The store failed: the layer would answer with its store-error response (503).
    StoreFailed(Arc<StoreError>),
    /// Concurrent writes would take the session past its size limit: nothing was
    /// written, the layer would answer 413.
    TooLarge,
}

impl SessionTester {
    /// A tester with an empty cookie jar.
    pub fn new(layer: SessionLayer) -> Self {
        Self {
            layer,
            cookie: None,
        }
    }

    /// The session the next request gets: the one the current cookie names (checked
    /// as the layer checks it), or a new anonymous one.
    pub fn session(&self) -> Session {
        let ctx = &self.layer.ctx;
        let mut headers = HeaderMap::new();
        if let Some(value) = &self.cookie
            && let Ok(v) = HeaderValue::from_str(&format!("{}={value}", ctx.config.cookie.name))
        {
            headers.insert(header::COOKIE, v);
        }
        let incoming = cookie::extract(
            &headers,
            &ctx.config.cookie.name,
            ctx.store.namespace(),
            &self.layer.codec,
        );
        Session::new(ctx.clone(), incoming, RequestMeta::default())
    }

    /// Writes `session` back as the layer does after a handler, and keeps the cookie
    /// the response would set. Call it once per session, after the handler returned.
    pub async fn finish(&mut self, session: Session) -> Finished {
        match session.commit().await {
            Commit::Cookie(CookieAction::Keep) => Finished::CookieKept,
            Commit::Cookie(CookieAction::Remove) => {
                self.cookie = None;
                Finished::CookieRemoved
            }
            Commit::Cookie(CookieAction::Set { id, max_age }) => {
                self.cookie = self.layer.cookie_value(&id);
                Finished::CookieSet { max_age }
            }
            Commit::Failed(e) => Finished::StoreFailed(e),
            Commit::TooLarge => Finished::TooLarge,
        }
    }

    /// Sends `req` through `app` as a browser with this tester's cookie jar would:
    /// with the session cookie added to its `Cookie` header, keeping the session
    /// cookie the response sets or removes. `app` must carry this tester's layer (a
    /// clone of it), as an axum `Router` with `.layer(layer.clone())` does.
    pub async fn send<S, B, R>(
        &mut self,
        mut app: S,
        mut req: http::Request<B>,
    ) -> http::Response<R>
    where
        S: tower_service::Service<
                http::Request<B>,
                Response = http::Response<R>,
                Error = Infallible,
            >,
    {
        let name = &self.layer.ctx.config.cookie.name;
        if let Some(value) = &self.cookie {
            let mut all = format!("{name}={value}");
            if let Some(other) = req
                .headers()
                .get(header::COOKIE)
                .and_then(|v| v.to_str().ok())
            {
                all = format!("{other}; {all}");
            }
            if let Ok(v) = HeaderValue::from_str(&all) {
                req.headers_mut().insert(header::COOKIE, v);
            }
        }
        let Ok(()) = std::future::poll_fn(|cx| app.poll_ready(cx)).await;
        let Ok(res) = app.call(req).await;
        for set in res.headers().get_all(header::SET_COOKIE) {
            let Some(c) = set
                .to_str()
                .ok()
                .and_then(|v| ::cookie::Cookie::parse(v).ok())
            else {
                continue;
            };
            if c.name() == name {
                let removed = c.value().is_empty() || c.max_age().is_some_and(|a| a.is_zero());
                self.cookie = (!removed).then(|| c.value().to_owned());
            }
        }
        res
    }

    /// The session cookie's current value (what the browser would send).
    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// Replaces the cookie (e.g. `None` to play a new browser, or a forged value).
    pub fn set_cookie(&mut self, value: Option<String>) {
        self.cookie = value;
    }
}

#[cfg(feature = "test-redis")]
pub use self::server::TestRedis;

/// A real Redis for your tests (feature `test-redis`).
#[cfg(feature = "test-redis")]
mod server {
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use crate::error::ConfigError;
    use crate::store::RedisStore;

    /// A Redis for one test, in a namespace of its own: the server at `REDIS_URL` when
    /// that is set (a CI service or a container), else a throwaway `redis-server` on a
    /// free loopback port (it must be on `PATH`). Dropping it deletes the namespace's
    /// keys, or stops the throwaway server and removes its directory.
    ///
    /// ```no_run
    /// use tower_redis_session::testing::{SessionTester, TestRedis};
    /// use tower_redis_session::{SessionConfig, SessionLayer};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let redis = TestRedis::start()?;
    /// let layer = SessionLayer::new(redis.store()?, SessionConfig::default())?;
    /// let mut browser = SessionTester::new(layer);
    /// let session = browser.session();
    /// session.insert("k", 1).await?;
    /// browser.finish(session).await;
    /// # Ok(()) }
    /// ```
    #[derive(Debug)]
    pub struct TestRedis {
        url: String,
        namespace: String,
        server: Option<(Child, PathBuf)>,
    }

    /// `redis-server` could not be started (not installed, or it failed): why, and
    /// what to do.
    fn cannot_start(e: std::io::Error) -> std::io::Error {
        std::io::Error::new(
            e.kind(),
            format!("cannot start redis-server (install it, or set REDIS_URL): {e}"),
        )
    }

    static NEXT: AtomicU64 = AtomicU64::new(0);

    /// `test-<pid>-<n>`: unique per `TestRedis` of the process.
    fn next_namespace() -> String {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("test-{}-{n}", std::process::id())
    }

    impl TestRedis {
        /// A Redis at `REDIS_URL`, or a throwaway `redis-server`.
        ///
        /// # Errors
        /// An I/O error if `redis-server` could not be started (not installed, or it
        /// failed) or did not answer `PING` within 10 s.
        pub fn start() -> Result<Self, std::io::Error> {
            if let Ok(url) = std::env::var("REDIS_URL") {
                return Ok(Self::on(url));
            }
            let namespace = next_namespace();
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(cannot_start)?
                .port();
            let dir =
                std::env::temp_dir().join(format!("test-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(cannot_start)?;
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(cannot_start)?;
            let redis = Self {
                url: format!("redis://127.0.0.1:{port}"),
                namespace,
                server: Some((child, dir)),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while !ping(port) {
                if Instant::now() > deadline {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "redis-server did not answer within 10 s",
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(redis)
        }

        /// A namespace of its own on the server at `url` (e.g. a container your test
        /// harness started); dropping it deletes the namespace's keys.
        pub fn on(url: impl Into<String>) -> Self {
            Self {
                url: url.into(),
                namespace: next_namespace(),
                server: None,
            }
        }

        /// The server's URL.
        pub fn url(&self) -> &str {
            &self.url
        }

        /// This test's namespace (unique per `TestRedis` in the process).
        pub fn namespace(&self) -> &str {
            &self.namespace
        }

        /// A store on this Redis, in this test's namespace.
        ///
        /// # Errors
        /// [`ConfigError`] if the URL does not parse.
        pub fn store(&self) -> Result<RedisStore, ConfigError> {
            RedisStore::from_url(&self.url)?.with_namespace(&self.namespace)
        }

        /// Deletes every key of the namespace (on a shared server).
        fn clean(&self) -> redis::RedisResult<()> {
            let client = redis::Client::open(self.url.as_str())?;
            let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
            let pattern = format!("{}:*", self.namespace);
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(&mut conn)?;
                if !keys.is_empty() {
                    redis::cmd("DEL").arg(&keys).query::<()>(&mut conn)?;
                }
                if next == 0 {
                    return Ok(());
                }
                cursor = next;
            }
        }
    }

    /// Whether a server answers `PING` on `port`.
    fn ping(port: u16) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    impl Drop for TestRedis {
        fn drop(&mut self) {
            match self.server.take() {
                Some((mut child, dir)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = std::fs::remove_dir_all(dir);
                }
                None => {
                    if let Err(e) = self.clean() {
                        tracing::warn!(
                            error = &e as &dyn std::error::Error,
                            "test namespace not cleaned up"
                        );
                    }
                }
            }
        }
    }
}

#[cfg(feature = "store-internals")]
#[doc(hidden)]
pub use crate::time::set_clock_skew;
