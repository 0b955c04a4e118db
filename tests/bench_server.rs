//! Acceptance: the real `bench_server` binary, driven over HTTP by an external client
//! and checked against the real Redis it writes to.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
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

/// `target/<profile>/examples/bench_server`, built on demand.
fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("examples").join("bench_server");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "bench_server"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    bin
}

fn start(redis_url: &str) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(binary())
        .env("PORT", port.to_string())
        .env("REDIS_URL", redis_url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), format!("listening on 127.0.0.1:{port}"));
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    async fn send(&mut self, method: reqwest::Method, path: &str) -> (u16, String) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, format!("id={c}"));
        }
        let res = req.send().await.unwrap();
        if let Some(sc) = res.headers().get(SET_COOKIE) {
            let sc = sc.to_str().unwrap();
            assert!(sc.contains("HttpOnly") && sc.contains("Secure"), "{sc}");
            let value = sc.split(';').next().unwrap().trim_start_matches("id=");
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
    let server = start(&redis.url());
    let mut b = Browser {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
        base: server.base.clone(),
        cookie: None,
    };
    let mut conn = common::stores::redis_conn(&redis.url()).await;
    let keys = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let k: Vec<String> = conn.keys("session:*").await.unwrap();
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
    assert_eq!(fields["d:user"], "\"alice\"");
    assert_eq!(fields["d:counter"], "3");
    assert_eq!(fields["d:color"], "\"blue\"");
    let pttl: i64 = conn.pttl(&stored[0]).await.unwrap();
    assert!(pttl > 29 * 60 * 1000 && pttl <= 30 * 60 * 1000, "{pttl}");

    assert_eq!(b.post("/logout").await.0, 200);
    assert!(b.cookie.is_none(), "removal cookie");
    assert!(keys(&mut conn).await.is_empty(), "deleted in Redis");
    assert_eq!(b.get("/read").await.0, 401);
}
