//! Test harness: real `redis-server` processes on free loopback ports, an in-process
//! HTTP client with a cookie jar, and store helpers.
#![allow(dead_code, unused_imports, missing_docs)] // each test binary uses a different part of it

pub mod client;
pub mod cluster;
pub mod postgres;
pub mod redis_server;
pub mod session_routes;
pub mod stores;

pub use client::Client;
pub use cluster::RedisCluster;
pub use postgres::Postgres;
pub use redis_server::RedisServer;
pub use stores::TestStore;
