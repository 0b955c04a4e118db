//! The audit writer as a process: copies a namespace's session event stream from
//! Redis into the PostgreSQL table `session_audit`, exactly once per event.
//!
//! ```text
//! DATABASE_URL='host=127.0.0.1 user=postgres dbname=app' \
//! REDIS_URL=redis://127.0.0.1:6379 SESSION_NAMESPACE=session \
//!   cargo run --example audit_writer
//! ```
//!
//! `AUDIT_CONSUMER` (default `audit-1`) names this instance in the consumer group:
//! keep it stable across restarts so it resumes its unacknowledged entries.
//! `AUDIT_BATCH` (default 100) is the most events per transaction.
//! `DATABASE_CA_FILE` (a PEM file) turns on TLS to PostgreSQL, verified with that CA;
//! add `sslmode=require` to `DATABASE_URL` so that a server without TLS is refused.
//! For Redis, `REDIS_URL` may be `rediss://`, with `REDIS_CA_FILE`,
//! `REDIS_CLIENT_CERT_FILE` and `REDIS_CLIENT_KEY_FILE` for a private CA and a client
//! certificate, as for the other examples.

#[path = "shared/redis_env.rs"]
mod redis_env;

use tower_redis_session::TlsConfig;
use tower_redis_session_audit::AuditWriter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let database = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL to a PostgreSQL connection string")?;
    let namespace = env("SESSION_NAMESPACE", "session");
    let batch: usize = env("AUDIT_BATCH", "100").parse()?;
    let redis = env("REDIS_URL", "redis://127.0.0.1:6379");
    let database_tls = std::env::var("DATABASE_CA_FILE")
        .ok()
        .map(|ca| TlsConfig::default().with_ca_file(ca));
    let writer = match (redis_env::tls(), &database_tls) {
        (Some(redis_tls), pg) => {
            AuditWriter::connect_with_tls(&redis, &redis_tls, &namespace, &database, pg.as_ref())
                .await?
        }
        (None, Some(tls)) => AuditWriter::connect_tls(&redis, &namespace, &database, tls).await?,
        (None, None) => AuditWriter::connect(&redis, &namespace, &database).await?,
    };
    let mut writer = writer
        .with_consumer(env("AUDIT_CONSUMER", "audit-1"))
        .with_batch(batch);
    println!("audit writer: {namespace}:events -> session_audit");
    loop {
        let n = writer.step().await?;
        if n > 0 {
            println!("committed {n}");
        }
    }
}
