//! Test harness: real `redis-server` processes on free loopback ports, an in-process
//! HTTP client with a cookie jar, and store helpers.
#![allow(dead_code, missing_docs)] // each test binary uses a different part of it

pub mod client;
pub mod redis_server;
pub mod stores;

pub use client::Client;
pub use redis_server::RedisServer;
#[allow(unused_imports)] // not every test binary uses it
pub use stores::TestStore;
