//! Benchmark: Redis time per token refresh along one long rotation chain. Each
//! refresh must cost the same whatever the family's history; this prints the Redis
//! time of the refresh script (`INFO commandstats`, `evalsha`; in Redis 7 a script's
//! time includes the commands it runs) per batch of refreshes.
//!
//! ```text
//! python3 bench/refresh_chain.py     # starts its own redis-server
//! REDIS_URL=redis://127.0.0.1:6379 CHAIN=20000 cargo run --release --example refresh_chain
//! ```

use std::time::Duration;

use tower_redis_session::RedisStore;
use tower_redis_session::tokens::{TokenConfig, Tokens};

/// `evalsha` calls and microseconds so far.
async fn evalsha(conn: &mut redis::aio::MultiplexedConnection) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .map_or((0, 0), |l| {
            let field = |name: &str| -> u64 {
                l.split(',')
                    .find_map(|kv| kv.strip_prefix(name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            (field("calls="), field("usec="))
        })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let chain: usize = std::env::var("CHAIN").map_or(20_000, |v| v.parse().expect("CHAIN"));
    let batch: usize = std::env::var("BATCH").map_or(1_000, |v| v.parse().expect("BATCH"));
    let store = RedisStore::from_url(&url)
        .and_then(|s| s.with_namespace("refresh-chain"))
        .expect("store");
    let config = TokenConfig::default().with_reuse_grace(Duration::ZERO);
    let tokens = Tokens::new(store, config).expect("tokens");
    let mut conn = redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let mut pair = tokens.issue("chain-user").await.expect("issue");
    let mut per_batch = Vec::new();
    println!("| refreshes | Redis µs per refresh (evalsha) |");
    println!("|---|---|");
    for b in 0..chain / batch {
        let (calls0, usec0) = evalsha(&mut conn).await;
        for _ in 0..batch {
            pair = tokens.refresh(&pair.refresh_token).await.expect("refresh");
        }
        let (calls1, usec1) = evalsha(&mut conn).await;
        let per = (usec1 - usec0) as f64 / (calls1 - calls0).max(1) as f64;
        per_batch.push(per);
        println!("| {}–{} | {per:.1} |", b * batch + 1, (b + 1) * batch);
    }
    if let (Some(first), Some(last)) = (per_batch.first(), per_batch.last()) {
        println!(
            "\nlast batch / first batch: {:.2}x (target <= 1.5x)",
            last / first
        );
    }
}
