//! The figures of the sizing guide (`docs/sizing.md`), measured on a real Redis:
//! bytes per session, per user index entry and per token family (`MEMORY USAGE`), and
//! Redis commands and CPU per request kind (`INFO commandstats` and the server
//! process's CPU time). Prints them (`--no-capture`); asserts the record stays compact.
//!
//! `cargo nextest run --all-features --test sizing --no-capture`

mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use common::{Client, RedisServer};
use tower_redis_session::tokens::{TokenConfig, Tokens};
use tower_redis_session::{RedisStore, SessionConfig, SessionLayer, SessionStore};

const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

fn usage(server: &RedisServer, key: &str) -> u64 {
    let reply = server
        .raw(&format!("MEMORY USAGE {key}"))
        .unwrap_or_default();
    reply.trim_start_matches(':').trim().parse().unwrap_or(0)
}

fn keys(server: &RedisServer, pattern: &str) -> Vec<String> {
    let reply = server.raw(&format!("KEYS {pattern}")).unwrap_or_default();
    // *n, then $len / key pairs.
    reply
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with('$'))
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

fn encoding(server: &RedisServer, key: &str) -> String {
    server
        .raw(&format!("OBJECT ENCODING {key}"))
        .unwrap_or_default()
        .lines()
        .last()
        .unwrap_or("")
        .to_owned()
}

/// The Redis server process's CPU time so far (user + system, from its own rusage in
/// `INFO cpu`), in µs: command execution and network I/O.
fn redis_cpu(server: &RedisServer) -> u64 {
    let info = server.raw("INFO cpu").unwrap_or_default();
    let seconds = |k: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    ((seconds("used_cpu_sys:") + seconds("used_cpu_user:")) * 1e6) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizing_figures() {
    let server = RedisServer::start();
    let store = RedisStore::from_url(&server.url())
        .unwrap()
        .with_namespace("size")
        .unwrap();
    let layer = SessionLayer::new(store.clone(), SessionConfig::default()).unwrap();
    let app = routes::routes().layer(layer.clone());
    let new_session = |ua: Option<&str>| {
        let mut c = Client::new(app.clone());
        if let Some(ua) = ua {
            c.headers.push(("user-agent", ua.to_owned()));
        }
        c
    };
    let only_new = |before: &[String], now: Vec<String>| -> Vec<String> {
        now.into_iter().filter(|k| !before.contains(k)).collect()
    };

    println!("| record | bytes (MEMORY USAGE) | encoding |");
    println!("|---|---|---|");
    let (mut compact, mut browser) = (0, 0);
    for (i, (title, ua, login)) in [
        ("anonymous, one small value, no user agent", None, false),
        (
            "anonymous, one small value, browser user agent",
            Some(BROWSER_UA),
            false,
        ),
        (
            "logged in, one small value, browser user agent",
            Some(BROWSER_UA),
            true,
        ),
        ("logged in, one small value, no user agent", None, true),
    ]
    .into_iter()
    .enumerate()
    {
        let before = keys(&server, "size:*:s:*");
        let mut c = new_session(ua);
        assert_eq!(c.post("/set?key=cart&value=3-items").await.status, 200);
        if login {
            assert_eq!(c.post(&format!("/login?user=record-{i}")).await.status, 200);
        }
        let key = only_new(&before, keys(&server, "size:*:s:*")).remove(0);
        let bytes = usage(&server, &key);
        let enc = encoding(&server, &key);
        println!("| session: {title} | {bytes} | {enc} |");
        // Every value stays at most 64 bytes, the user agent in pieces.
        assert_eq!(enc, "listpack", "{title}: the record's values stay short");
        if ua.is_none() && !login {
            compact = bytes;
        }
        if ua.is_some() && login {
            browser = bytes;
        }
    }
    assert!(
        compact <= 300,
        "an anonymous session with small values takes {compact} bytes"
    );
    assert!(
        browser <= 450,
        "a logged-in browser session with a small value takes {browser} bytes"
    );

    // A user's index and handle map, by the number of their sessions.
    for n in [1usize, 10, 100] {
        let user = format!("indexed-{n}");
        for _ in 0..n {
            let mut c = new_session(None);
            assert_eq!(c.post(&format!("/login?user={user}")).await.status, 200);
        }
        let tag = store.user_tag(&user).await.unwrap();
        let index = usage(&server, &format!("size:{{{tag}}}:u"));
        let map = usage(&server, &format!("size:{{{tag}}}:uh"));
        println!(
            "| user index + handle map, {n} session(s) | {} ({} per session) | {} + {} |",
            index + map,
            (index + map) / n as u64,
            encoding(&server, &format!("size:{{{tag}}}:u")),
            encoding(&server, &format!("size:{{{tag}}}:uh"))
        );
    }

    // A token family: its record, index entry and live tokens.
    let tokens = Tokens::new(store.clone(), TokenConfig::default()).unwrap();
    let before = keys(&server, "size:*");
    let mut pair = tokens.issue("token-user").await.unwrap();
    let slot = only_new(&before, keys(&server, "size:*"));
    let total: u64 = slot.iter().map(|k| usage(&server, k)).sum();
    println!(
        "| token family with one access + one refresh token ({} keys) | {total} | |",
        slot.len()
    );
    for _ in 0..5 {
        pair = tokens.refresh(&pair.refresh_token).await.unwrap();
    }
    let slot = only_new(&before, keys(&server, "size:*"));
    let total: u64 = slot.iter().map(|k| usage(&server, k)).sum();
    println!(
        "| the same family after 5 refreshes ({} keys: live tokens, consumed refresh tombstones) | {total} | |",
        slot.len()
    );

    // Redis CPU per request kind: 2000 of each from 16 concurrent clients (their
    // commands pipelined on the store's connection, as under load), on this server
    // alone: the server process's CPU time, network I/O included.
    println!();
    println!("| request (16 concurrent clients) | Redis process CPU µs per request |");
    println!("|---|---|");
    const N: usize = 2000;
    const CLIENTS: usize = 16;
    let mut users: Vec<Client> = (0..N).map(|_| new_session(Some(BROWSER_UA))).collect();
    let mut pairs = Vec::new();
    for i in 0..N {
        pairs.push(tokens.issue(&format!("cpu-{i}")).await.unwrap());
    }
    for kind in [
        "login",
        "read",
        "read-modify-write",
        "logout",
        "token authenticate",
        "token refresh",
    ] {
        let before = redis_cpu(&server);
        let chunks: Vec<Vec<(usize, Client)>> = {
            let mut chunks: Vec<Vec<(usize, Client)>> = (0..CLIENTS).map(|_| Vec::new()).collect();
            for (i, c) in users.drain(..).enumerate() {
                chunks[i % CLIENTS].push((i, c));
            }
            chunks
        };
        let tasks: Vec<_> = chunks
            .into_iter()
            .map(|mut chunk| {
                let tokens = tokens.clone();
                let pairs: Vec<(String, String)> = chunk
                    .iter()
                    .map(|(i, _)| {
                        (
                            pairs[*i].access_token.clone(),
                            pairs[*i].refresh_token.clone(),
                        )
                    })
                    .collect();
                tokio::spawn(async move {
                    for ((i, c), (access, refresh)) in chunk.iter_mut().zip(&pairs) {
                        let ok = match kind {
                            "login" => c.post(&format!("/login?user=cpu-{i}")).await.status == 200,
                            "read" => c.get("/read").await.status == 200,
                            "read-modify-write" => c.post("/incr").await.status == 200,
                            "logout" => c.post("/logout").await.status == 200,
                            "token authenticate" => tokens.authenticate(access).await.is_ok(),
                            _ => tokens.refresh(refresh).await.is_ok(),
                        };
                        assert!(ok, "{kind}");
                    }
                    chunk
                })
            })
            .collect();
        let mut back: Vec<(usize, Client)> = Vec::new();
        for t in tasks {
            back.extend(t.await.unwrap());
        }
        back.sort_by_key(|(i, _)| *i);
        users = back.into_iter().map(|(_, c)| c).collect();
        let after = redis_cpu(&server);
        println!("| {kind} | {:.1} |", (after - before) as f64 / N as f64);
    }
}
