//! Acceptance: the real example binaries, driven over HTTP by an external client;
//! `bench_server` is also checked against the real Redis it writes to.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::RedisServer;
use redis::AsyncCommands;
use reqwest::header::{COOKIE, SET_COOKIE};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an example on a free port and returns it with the lines it printed up to
/// and including the `listening on` line.
fn start(name: &str, redis_url: Option<&str>) -> (Server, Vec<String>) {
    let env: Vec<(&str, String)> = redis_url
        .map(|u| ("REDIS_URL", u.to_owned()))
        .into_iter()
        .collect();
    start_with_env(name, &env)
}

/// Starts example `name` with environment variables `env` (and no inherited Redis
/// settings) and waits until it listens.
fn start_with_env(name: &str, env: &[(&str, String)]) -> (Server, Vec<String>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(common::example_binary(name));
    cmd.env("PORT", port.to_string());
    for var in [
        "REDIS_URL",
        "REDIS_CA_FILE",
        "REDIS_CLIENT_CERT_FILE",
        "REDIS_CLIENT_KEY_FILE",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "{name} exited: {lines:?}"
        );
        lines.push(line.trim().to_owned());
        if line.starts_with("listening on") {
            break;
        }
    }
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    (server, lines)
}

struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
    /// Sends `Origin` with each POST, as browsers do (the demo's CsrfLayer checks it).
    origin: bool,
}

impl Browser {
    fn new(server: &Server) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: server.base.clone(),
            cookie: None,
            origin: true,
        }
    }

    async fn send(&mut self, method: reqwest::Method, path: &str) -> (u16, String) {
        self.send_form(method, path, None).await
    }

    async fn send_form(
        &mut self,
        method: reqwest::Method,
        path: &str,
        form: Option<&str>,
    ) -> (u16, String) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = form {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.to_owned());
        }
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, format!("__Host-id={c}"));
        }
        if self.origin {
            req = req.header("origin", &self.base);
        }
        let res = req.send().await.unwrap();
        if let Some(sc) = res.headers().get(SET_COOKIE) {
            let sc = sc.to_str().unwrap();
            assert!(sc.contains("HttpOnly") && sc.contains("Secure"), "{sc}");
            let value = sc
                .split(';')
                .next()
                .unwrap()
                .trim_start_matches("__Host-id=");
            self.cookie = (!value.is_empty()).then(|| value.to_owned());
        }
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn get(&mut self, path: &str) -> (u16, String) {
        self.send(reqwest::Method::GET, path).await
    }

    async fn post(&mut self, path: &str) -> (u16, String) {
        self.send(reqwest::Method::POST, path).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_contract_over_http_against_real_redis() {
    let redis = RedisServer::start();
    let (server, lines) = start("bench_server", Some(&redis.url()));
    let port = server.base.rsplit(':').next().unwrap();
    assert_eq!(lines, [format!("listening on 127.0.0.1:{port}")]);
    let mut b = Browser::new(&server);
    let mut conn = common::stores::redis_conn(&redis.url()).await;
    let keys = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let k: Vec<String> = conn.keys("session:{*}:s:*").await.unwrap();
            k
        }
    };

    assert_eq!(b.get("/plain").await, (200, "ok".into()));
    assert!(b.cookie.is_none());
    assert_eq!(b.get("/read").await.0, 401);
    assert!(
        keys(&mut conn).await.is_empty(),
        "an empty session is never written"
    );

    assert_eq!(b.post("/incr").await, (200, "1".into()));
    assert_eq!(b.post("/incr").await, (200, "2".into()));
    let anonymous = b.cookie.clone().unwrap();

    assert_eq!(b.post("/login?user=alice").await.0, 200);
    assert_ne!(b.cookie.as_ref(), Some(&anonymous), "id rotated at login");
    assert_eq!(b.get("/read").await, (200, "alice".into()));
    assert_eq!(
        b.post("/incr").await,
        (200, "3".into()),
        "data kept across login"
    );

    assert_eq!(b.post("/set?key=color&value=blue").await.0, 200);
    assert_eq!(b.get("/get?key=color").await, (200, "blue".into()));
    assert_eq!(b.get("/get?key=missing").await.0, 404);

    let stored = keys(&mut conn).await;
    assert_eq!(stored.len(), 1);
    let fields: std::collections::HashMap<String, String> = conn.hgetall(&stored[0]).await.unwrap();
    assert_eq!(
        fields["m:u"], "alice",
        "the user id is server-side metadata"
    );
    assert_eq!(fields["d:counter"], "3");
    assert_eq!(fields["d:color"], "\"blue\"");
    let pttl: i64 = conn.pttl(&stored[0]).await.unwrap();
    assert!(pttl > 29 * 60 * 1000 && pttl <= 30 * 60 * 1000, "{pttl}");

    assert_eq!(b.post("/logout").await.0, 200);
    assert!(b.cookie.is_none(), "removal cookie");
    assert!(keys(&mut conn).await.is_empty(), "deleted in Redis");
    let indexes: Vec<String> = conn.keys("session:{*}:u").await.unwrap();
    assert!(
        indexes.is_empty(),
        "the user index went with its last session"
    );
    assert_eq!(b.get("/read").await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_on_the_memory_store_without_redis_url() {
    let (server, lines) = start("demo", None);
    assert!(
        lines.iter().any(|l| l.contains("in-memory")),
        "the demo says which store it uses: {lines:?}"
    );
    let mut b = Browser::new(&server);
    let (status, page) = b.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("Not signed in"), "{page}");
    // The page's forms carry a CSRF token, whose secret lives in a new session.
    assert!(b.cookie.is_some());

    let post = reqwest::Method::POST;
    // CSRF: a POST from another origin is refused, and one with neither fetch metadata
    // nor Origin needs the form's token.
    let mut req = reqwest::Client::new()
        .post(format!("{}/count", server.base))
        .header("origin", "http://127.0.0.1:1")
        .send()
        .await
        .unwrap();
    assert_eq!(req.status().as_u16(), 403);
    b.origin = false;
    assert_eq!(b.send_form(post.clone(), "/count", Some("")).await.0, 403);
    let (_, page) = b.get("/").await;
    let token = page
        .split("name=csrf_token value=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .expect("a token in the form")
        .to_owned();
    let form = format!("csrf_token={token}");
    assert_eq!(
        b.send_form(post.clone(), "/count", Some(&form)).await.0,
        303
    );
    b.origin = true;
    req = reqwest::Client::new()
        .post(format!("{}/count", server.base))
        .header("cookie", format!("__Host-id={}", b.cookie.clone().unwrap()))
        .body(format!(
            "csrf_token={}{}",
            &token[..token.len() - 1],
            if token.ends_with('A') { 'B' } else { 'A' }
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(req.status().as_u16(), 403, "a forged token");
    let anonymous = b.cookie.clone().expect("session after counting");
    let (status, _) = b
        .send_form(
            post.clone(),
            "/login",
            Some("user=%3Cb%3Ealice&remember=on&device=%3Ci%3Edesk"),
        )
        .await;
    assert_eq!(status, 303);
    assert_ne!(b.cookie.as_ref(), Some(&anonymous), "id rotated at login");
    let (_, page) = b.get("/").await;
    assert!(
        page.contains("Signed in as <b>&lt;b&gt;alice</b>"),
        "escaped: {page}"
    );
    assert!(
        page.contains("Counter: 1"),
        "data kept across login: {page}"
    );

    // A second device, then the sessions page of the first lists both and revokes it.
    let mut other = Browser::new(&server);
    other
        .send_form(post.clone(), "/login", Some("user=%3Cb%3Ealice"))
        .await;
    let (_, page) = b.get("/sessions").await;
    assert_eq!(page.matches("<tr><td>").count(), 2, "{page}");
    assert!(
        page.contains("127.0.0.1"),
        "client IP from ConnectInfo: {page}"
    );
    assert!(page.contains("this device"));
    assert!(
        page.contains("<b>&lt;i&gt;desk</b> · "),
        "the device name, escaped: {page}"
    );
    let (status, _) = b
        .send_form(post.clone(), "/sessions/others", Some(""))
        .await;
    assert_eq!(status, 303);
    assert!(other.get("/").await.1.contains("Not signed in"), "revoked");
    let (_, page) = b.get("/sessions").await;
    assert_eq!(page.matches("<tr><td>").count(), 1, "{page}");
    // The activity page, from the event hook: both logins and the revocation.
    let mut page = String::new();
    for _ in 0..50 {
        page = b.get("/activity").await.1;
        if page.contains("revoke_others") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(page.matches("<td>login</td>").count(), 2, "{page}");
    assert!(
        page.contains("<td>revoked</td><td>revoke_others</td>"),
        "{page}"
    );
    assert!(page.contains("&lt;b&gt;alice"), "escaped: {page}");

    let signed_in = b.cookie.clone();
    assert_eq!(
        b.send_form(post.clone(), "/sessions/everywhere", Some(""))
            .await
            .0,
        303
    );
    // The session ended; the flash message telling so lives in a new, anonymous one.
    assert_ne!(b.cookie, signed_in, "the signed-in cookie is replaced");
    let (_, page) = b.get("/").await;
    assert!(page.contains("Not signed in"), "{page}");
    assert!(
        page.contains("Signed out 1 session."),
        "a flash message: {page}"
    );
    let (_, page) = b.get("/").await;
    assert!(!page.contains("Signed out"), "shown once: {page}");
    b.cookie = signed_in;
    assert!(
        b.get("/").await.1.contains("Not signed in"),
        "the old cookie is no login"
    );
    assert_eq!(b.send_form(post, "/logout", Some("")).await.0, 303);
}

/// "Sign out everywhere" needs a recent sign-in: after `RECENT_AUTH_SECS` the demo asks
/// the user to sign in again (a flash message on the confirmation page) and signs out
/// nothing; signing in again (the same user: the id rotates, the data stays) lets it
/// through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_asks_for_a_fresh_sign_in_to_sign_out_everywhere() {
    let (server, _) = start_with_env("demo", &[("RECENT_AUTH_SECS", "1".to_owned())]);
    let mut b = Browser::new(&server);
    let post = reqwest::Method::POST;
    b.get("/").await;
    assert_eq!(
        b.send_form(post.clone(), "/login", Some("user=ada"))
            .await
            .0,
        303
    );
    b.send_form(post.clone(), "/count", Some("")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = b
        .send_form(post.clone(), "/sessions/everywhere", Some(""))
        .await;
    assert_eq!(status, 303);
    let (_, page) = b.get("/reauth").await;
    assert!(
        page.contains("Sign in again to sign out everywhere."),
        "{page}"
    );
    assert!(page.contains("within the last 1 seconds"), "{page}");
    let (_, page) = b.get("/").await;
    assert!(
        page.contains("Signed in as <b>ada</b>"),
        "nothing signed out: {page}"
    );
    let before = b.cookie.clone();
    let (status, _) = b
        .send_form(post.clone(), "/login", Some("user=ada&next=%2Fsessions"))
        .await;
    assert_eq!(status, 303);
    assert_ne!(b.cookie, before, "a new id at the new sign-in");
    assert!(b.get("/").await.1.contains("Counter: 1"), "the data stays");
    assert_eq!(
        b.send_form(post.clone(), "/sessions/everywhere", Some(""))
            .await
            .0,
        303
    );
    let (_, page) = b.get("/").await;
    assert!(page.contains("Signed out 1 session."), "{page}");
    assert!(page.contains("Not signed in"), "{page}");
    drop(server);
}

/// The demo on Redis: its activity page reads the durable event stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_activity_page_reads_the_redis_event_stream() {
    let redis = RedisServer::start();
    let (server, lines) = start("demo", Some(&redis.url()));
    assert!(lines.iter().any(|l| l.contains("Redis")), "{lines:?}");
    let post = reqwest::Method::POST;
    let mut b = Browser::new(&server);
    b.send_form(post.clone(), "/login", Some("user=grace"))
        .await;
    let mut other = Browser::new(&server);
    other
        .send_form(post.clone(), "/login", Some("user=grace"))
        .await;
    other.send_form(post.clone(), "/logout", Some("")).await;
    let (status, page) = b.get("/activity").await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("<td>login</td>").count(), 2, "{page}");
    assert_eq!(page.matches("<td>logout</td>").count(), 1, "{page}");
    let mut conn = common::stores::redis_conn(&redis.url()).await;
    let len: usize = redis::cmd("XLEN")
        .arg("session:events")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 5, "created + login twice, and a logout");
}

/// The demo and the load server on a Redis that accepts only mutual TLS, configured
/// from the environment; a wrong CA stops them at start-up with the reason.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_reach_redis_over_mutual_tls() {
    let dir = std::env::temp_dir().join(format!("trs-example-certs-{}", std::process::id()));
    let certs = common::tls::Certs::generate(&dir);
    let redis = RedisServer::start_tls(&certs, "yes", &[]);
    let env = |ca: &str| {
        vec![
            ("REDIS_URL", redis.tls_url()),
            ("REDIS_CA_FILE", certs.path(ca)),
            ("REDIS_CLIENT_CERT_FILE", certs.path("client.crt")),
            ("REDIS_CLIENT_KEY_FILE", certs.path("client.key")),
        ]
    };
    let (server, lines) = start_with_env("demo", &env("ca.crt"));
    assert!(lines.iter().any(|l| l.contains("Redis")), "{lines:?}");
    let mut b = Browser::new(&server);
    b.send_form(reqwest::Method::POST, "/login", Some("user=tess"))
        .await;
    let (status, page) = b.get("/activity").await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("<td>login</td>").count(), 1, "{page}");
    drop(server);

    let (server, _) = start_with_env("bench_server", &env("ca.crt"));
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/login?user=tess", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(server);

    for name in ["demo", "bench_server"] {
        let out = Command::new(common::example_binary(name))
            .env_remove("REDIS_URL")
            .envs(env("other-ca.crt"))
            .env("PORT", "0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name} started with a wrong CA");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Connect {") && stderr.contains("UnknownIssuer"),
            "{name}: {stderr}"
        );
    }
}

/// `examples/api_tokens.rs` over HTTP against real Redis: login, protected route,
/// rotation, reuse detection, RFC 7009 revocation, log out everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_over_http_against_real_redis() {
    let redis = RedisServer::start();
    let (server, lines) = start("api_tokens", Some(&redis.url()));
    assert_eq!(lines[0], "token store: Redis (REDIS_URL)");
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let form = |path: &str, body: String| {
        http.post(format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let login = || async {
        let r = form("/login", "username=alice&password=demo".into())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<serde_json::Value>().await.unwrap()
    };
    let me = |access: &serde_json::Value| {
        http.get(format!("{base}/me"))
            .bearer_auth(access["access_token"].as_str().unwrap())
            .send()
    };
    let refresh = |pair: &serde_json::Value| {
        let r = pair["refresh_token"].as_str().unwrap();
        form(
            "/token",
            format!("grant_type=refresh_token&refresh_token={r}"),
        )
    };

    // Every error of the token endpoints is an RFC 6749 §5.2 JSON error.
    for (path, body, status, error) in [
        (
            "/login",
            "username=alice&password=nope",
            400,
            "invalid_grant",
        ),
        ("/login", "username=alice", 400, "invalid_request"),
        ("/token", "refresh_token=x", 400, "invalid_request"),
        ("/token", "grant_type=refresh_token", 400, "invalid_request"),
        (
            "/token",
            "grant_type=password&username=a",
            400,
            "unsupported_grant_type",
        ),
        (
            "/token",
            "grant_type=refresh_token&refresh_token=rt.x",
            400,
            "invalid_grant",
        ),
        (
            "/login",
            "username=alice&password=demo&scope=openid",
            400,
            "invalid_request",
        ),
        (
            "/id-token",
            "id_token=a.b.c&client_id=app",
            401,
            "invalid_token",
        ),
    ] {
        let r = form(path, body.into()).await.unwrap();
        assert_eq!(r.status(), status, "{path} {body}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path} {body}");
        let json: serde_json::Value = r.json().await.expect("a JSON error");
        assert_eq!(json["error"], error, "{path} {body}: {json}");
        assert!(json["error_description"].is_string(), "{json}");
    }
    let r = http
        .post(format!("{base}/token"))
        .header("content-type", "text/plain")
        .body("grant_type=refresh_token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_request"
    );

    // OpenID Connect: an ID token for scope openid, verified against the served key set.
    let r = form(
        "/login",
        "username=alice&password=demo&scope=openid%20profile&client_id=my-app&nonce=n-0S6".into(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let oidc: serde_json::Value = r.json().await.unwrap();
    let id_token = oidc["id_token"].as_str().expect("an id_token");
    let jwks: serde_json::Value = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256", "{jwks}");
    assert!(jwks["keys"][0].get("d").is_none(), "public only");
    let r = form("/id-token", format!("id_token={id_token}&client_id=my-app"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let checked: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (checked["sub"].as_str(), checked["nonce"].as_str()),
        (Some("alice"), Some("n-0S6"))
    );
    let r = form("/id-token", format!("id_token={id_token}&client_id=other"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "wrong audience");
    // The family was issued to my-app: no other client (nor none) refreshes or revokes it.
    let rt = oidc["refresh_token"].as_str().unwrap();
    for body in [
        format!("grant_type=refresh_token&refresh_token={rt}"),
        format!("grant_type=refresh_token&refresh_token={rt}&client_id=other"),
        format!("token={rt}&client_id=other"),
    ] {
        let path = if body.starts_with("grant") {
            "/token"
        } else {
            "/revoke"
        };
        let r = form(path, body).await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_grant");
    }
    let r = form("/revoke", format!("token={rt}&client_id=my-app"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = form("/id-token", format!("id_token={id_token}&client_id=my-app"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "ended with its family");
    let p1 = login().await;
    assert_eq!(p1["token_type"], "Bearer");
    assert_eq!(p1["expires_in"], 3600);
    let r = me(&p1).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["user"],
        "alice"
    );
    let anonymous = http.get(format!("{base}/me")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");

    // Rotation, then a replay of the first refresh token: the family dies.
    let p2: serde_json::Value = refresh(&p1).await.unwrap().json().await.unwrap();
    let p3: serde_json::Value = refresh(&p2).await.unwrap().json().await.unwrap();
    assert_eq!(me(&p3).await.unwrap().status(), 200);
    let replay = refresh(&p1).await.unwrap();
    assert_eq!(replay.status(), 400);
    assert_eq!(
        replay.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let dead = me(&p3).await.unwrap();
    assert_eq!(dead.status(), 401);
    assert!(
        dead.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // RFC 7009: revoking a refresh token ends its family; unknown tokens are fine.
    let q = login().await;
    let rt = q["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        form("/revoke", format!("token={rt}"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        form("/revoke", "token=whatever".into())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(me(&q).await.unwrap().status(), 401);

    // Log out everywhere: every family of alice ends.
    let a = login().await;
    let b = login().await;
    let r = http
        .post(format!("{base}/logout-everywhere"))
        .bearer_auth(a["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["revoked_families"],
        2
    );
    assert_eq!(me(&a).await.unwrap().status(), 401);
    assert_eq!(me(&b).await.unwrap().status(), 401);

    // Redis keeps nothing of the dead families but the tombstones of consumed refresh
    // tokens (which expire by themselves), and never a token.
    let mut conn = common::stores::redis_conn(&redis.url()).await;
    let keys: Vec<String> = conn.keys("session:{*}:*").await.unwrap();
    let live: Vec<_> = keys
        .iter()
        .filter(|k| k.contains("}:a:") || k.contains("}:t:") || k.contains("}:i:"))
        .collect();
    assert!(live.is_empty(), "{live:?}");
    for k in keys.iter().filter(|k| k.contains("}:r:")) {
        let state: Option<String> = conn.hget(k, "s").await.unwrap();
        assert_eq!(state.as_deref(), Some("c"), "{k} is a consumed token");
        let ttl: i64 = conn.pttl(k).await.unwrap();
        assert!(ttl > 0, "{k} expires by itself");
    }
    for pair in [&p1, &p2, &p3, &q, &a, &b] {
        let secret = pair["access_token"]
            .as_str()
            .unwrap()
            .rsplit_once('.')
            .unwrap()
            .1;
        assert!(keys.iter().all(|k| !k.contains(secret)));
    }
}

/// The demo in a real headless Chromium (two profiles: two devices): anonymous counter,
/// login with "remember me" and a device name (the cookie is persistent, HttpOnly and
/// Secure), the
/// sessions page listing both devices, "sign out other devices", the other device
/// signed out on its next page, the activity page, logout. Screenshots go to
/// `target/browser-artifacts/`. Skipped, saying why, only where no browser is installed
/// (`scripts/test.sh` installs Debian's `chromium` and `chromium-driver`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_in_a_real_browser() {
    let driver = match common::webdriver::Driver::start().await {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED demo_in_a_real_browser: {why}");
            return;
        }
    };
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("browser-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = |name: &str| artifacts.join(format!("{name}.png"));
    let (server, _) = start("demo", None);
    // Chromium treats http://localhost as a secure context: the Secure cookie works.
    let base = server.base.replace("127.0.0.1", "localhost");
    let profiles = tempdir("browser-profiles");

    let laptop = driver.browser(&profiles.join("laptop")).await;
    laptop.goto(&format!("{base}/")).await;
    laptop.wait_text("Not signed in. Counter: 0").await;
    laptop.click_button("Count anonymously").await;
    laptop.wait_text("Counter: 1").await;
    laptop.click_button("Count anonymously").await;
    laptop.wait_text("Counter: 2").await;
    laptop.screenshot(&shot("1-anonymous-counter")).await;

    // Login with "remember me": the counter moves with the session.
    let user = laptop.find("input[name=user]").await;
    laptop.type_into(&user, "grace").await;
    let device = laptop.find("input[name=device]").await;
    laptop.type_into(&device, "Grace's laptop").await;
    let remember = laptop.find("input[name=remember]").await;
    laptop.click(&remember).await;
    laptop.click_button("Log in").await;
    let text = laptop.wait_text("Signed in as grace").await;
    assert!(
        text.contains("Counter: 2"),
        "the counter moved with the login: {text}"
    );
    let cookies = laptop.cookies().await;
    let id = cookies
        .iter()
        .find(|c| c["name"] == "__Host-id")
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert_eq!(id["httpOnly"], true, "{id}");
    assert_eq!(id["secure"], true, "{id}");
    assert!(
        id["expiry"].as_u64().is_some(),
        "remember me: persistent: {id}"
    );
    laptop.screenshot(&shot("2-signed-in")).await;

    // A second device.
    let phone = driver.browser(&profiles.join("phone")).await;
    phone.goto(&format!("{base}/")).await;
    let user = phone.find("input[name=user]").await;
    phone.type_into(&user, "grace").await;
    phone.click_button("Log in").await;
    phone.wait_text("Signed in as grace").await;

    laptop.goto(&format!("{base}/sessions")).await;
    laptop.wait_text("Your sessions").await;
    let page = laptop.source().await;
    assert_eq!(page.matches("<tr><td><code>").count(), 2, "{page}");
    assert_eq!(page.matches("this device").count(), 1, "{page}");
    // Readable devices (the raw user agent in a tooltip) and relative times.
    let text = laptop.text().await;
    assert_eq!(
        text.matches("Chrome (headless) on Linux").count(),
        2,
        "{text}"
    );
    assert!(page.contains("title=\"Mozilla/5.0"), "{page}");
    assert!(text.contains("just now"), "{text}");
    // The laptop's name, given at login (a session detail); the phone has none.
    assert_eq!(text.matches("Grace's laptop").count(), 1, "{text}");
    assert!(
        page.contains("<b>Grace's laptop</b> · Chrome (headless) on Linux"),
        "{page}"
    );
    laptop.screenshot(&shot("3-two-devices")).await;

    laptop.click_button("Sign out all other devices").await;
    laptop.wait_text("Signed out 1 other device.").await;
    assert_eq!(laptop.source().await.matches("<tr><td><code>").count(), 1);
    phone.goto(&format!("{base}/")).await;
    // The phone was signed out.
    phone.wait_text("Not signed in").await;
    phone.screenshot(&shot("4-other-device-signed-out")).await;

    laptop.goto(&format!("{base}/activity")).await;
    laptop.wait_text("Activity of grace").await;
    let activity = laptop.source().await;
    assert_eq!(activity.matches("<td>login</td>").count(), 2, "{activity}");
    assert!(activity.contains("revoke_others"), "{activity}");
    laptop.screenshot(&shot("5-activity")).await;

    // Another origin of the same site (another port of localhost) posts a form to
    // "sign out everywhere": SameSite=Lax sends the cookie along, so only the CSRF
    // check stands in the way. The user stays signed in.
    let attack = attack_page(&format!("{base}/sessions/everywhere")).await;
    laptop.goto(&attack).await;
    let start = std::time::Instant::now();
    while laptop.text().await.contains("attack page") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the form never left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = laptop.wait_text("refused").await;
    assert!(refused.contains("cross-origin"), "{refused}");
    laptop
        .screenshot(&shot("6-cross-origin-post-refused"))
        .await;
    laptop.goto(&format!("{base}/")).await;
    laptop.wait_text("Signed in as grace").await;
    laptop.goto(&format!("{base}/sessions")).await;
    laptop.wait_text("Your sessions").await;
    assert_eq!(laptop.source().await.matches("<tr><td><code>").count(), 1);

    laptop.goto(&format!("{base}/")).await;
    laptop.wait_text("Signed in as grace").await;
    let signed_in = laptop.cookies().await;
    let value = |cookies: &[serde_json::Value]| {
        cookies
            .iter()
            .find(|c| c["name"] == "__Host-id")
            .map(|c| c["value"].clone())
    };
    laptop.click_button("Log out").await;
    laptop.wait_text("Not signed in").await;
    // The home page's forms start a new anonymous session (for their CSRF token).
    assert_ne!(
        value(&laptop.cookies().await),
        value(&signed_in),
        "the signed-in cookie is gone"
    );
    laptop.screenshot(&shot("7-logged-out")).await;
    laptop.quit().await;
    phone.quit().await;
    drop(server);
}

/// Serves, on another port of localhost (another origin, the same site), a page that
/// submits a form to `target` as soon as it loads; returns its URL.
async fn attack_page(target: &str) -> String {
    let html = format!(
        "<!doctype html><p>attack page</p>\
         <form id=f method=post action=\"{target}\"></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(html) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://localhost:{port}/")
}

/// A fresh directory under the system temp dir.
fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("trs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
