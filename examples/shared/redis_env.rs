//! Redis connection settings from the environment, shared by the examples:
//! `REDIS_URL` (`redis://` or `rediss://`), and for TLS with a private CA or client
//! certificates `REDIS_CA_FILE`, `REDIS_CLIENT_CERT_FILE` and `REDIS_CLIENT_KEY_FILE`
//! (PEM files).

#![allow(dead_code)] // each example uses a different part

use tower_redis_session::RedisStoreBuilder;
use tower_redis_session::TlsConfig;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The TLS settings the environment asks for, if any.
pub fn tls() -> Option<TlsConfig> {
    let ca = var("REDIS_CA_FILE");
    let client = var("REDIS_CLIENT_CERT_FILE").zip(var("REDIS_CLIENT_KEY_FILE"));
    if ca.is_none() && client.is_none() {
        return None;
    }
    let mut tls = TlsConfig::default();
    if let Some(ca) = ca {
        tls = tls.with_ca_file(ca);
    }
    if let Some((cert, key)) = client {
        tls = tls.with_client_cert_files(cert, key);
    }
    Some(tls)
}

/// A store builder for `url` with the environment's TLS settings.
pub fn store_builder(url: &str) -> RedisStoreBuilder {
    let builder = tower_redis_session::RedisStore::builder(url);
    match tls() {
        Some(tls) => builder.with_tls(tls),
        None => builder,
    }
}
