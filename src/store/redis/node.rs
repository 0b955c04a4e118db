//! Connection settings of one node, derived from another's: the same credentials, TLS
//! and database at another address (a node a sentinel or a cluster names), or the same
//! settings speaking RESP3.

use redis::{ConnectionAddr, ConnectionInfo};

/// The same connection settings, speaking RESP3 (for client-side caching's pushes).
pub(super) fn resp3(info: ConnectionInfo) -> ConnectionInfo {
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    info.set_redis_settings(settings)
}

/// `seed`'s connection settings (credentials, TLS, database) for another node.
pub(super) fn at(seed: &ConnectionInfo, host: &str, port: u16) -> ConnectionInfo {
    let addr = match seed.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host.to_owned(), port),
    };
    seed.clone().set_addr(addr)
}
