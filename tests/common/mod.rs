//! Test harness: real `redis-server` processes on free loopback ports, an in-process
//! HTTP client with a cookie jar, and store helpers.
#![allow(dead_code, unused_imports, unused_macros, missing_docs)] // each test binary uses a different part of it

/// One `#[tokio::test]` per case in a module per store:
/// `store_cases!(redis_store, common::stores::redis_store; case_a, case_b)` runs
/// `cases::case_a(store)` on a store made for namespace `redis_store-case_a`.
/// (`#[macro_use] mod common;` brings it into a test binary.)
macro_rules! store_cases {
    ($store:ident, $make:path; $($case:ident),* $(,)?) => {
        mod $store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let ns = concat!(stringify!($store), "-", stringify!($case));
                    super::cases::$case($make(ns)).await;
                }
            )*
        }
    };
}

pub mod client;
pub mod cluster;
pub mod example_bin;
pub mod logs;
pub mod postgres;
pub mod redis_server;
pub mod sentinel;
pub mod session_routes;
pub mod stores;
pub mod tls;
pub mod webdriver;

pub use client::Client;
pub use cluster::RedisCluster;
pub use example_bin::example_binary;
pub use postgres::Postgres;
pub use redis_server::RedisServer;
pub use sentinel::Sentinels;
pub use stores::TestStore;
