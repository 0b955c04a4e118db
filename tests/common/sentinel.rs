//! A Sentinel deployment on loopback: one master, one replica and three
//! `redis-server --sentinel` processes watching it (quorum 2, a master is down after
//! 1 s without answers).

use std::time::{Duration, Instant};

use super::RedisServer;

pub struct Sentinels {
    pub name: String,
    /// The master and the replica as started (roles swap after a failover).
    pub nodes: Vec<RedisServer>,
    pub sentinels: Vec<RedisServer>,
}

fn wait(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Sentinels {
    pub fn start(name: &str) -> Sentinels {
        let sync = ["--repl-diskless-sync-delay", "0"];
        let master = RedisServer::start_with(&sync);
        let port = master.port.to_string();
        let replica = RedisServer::start_with(&[
            "--replicaof",
            "127.0.0.1",
            &port,
            "--repl-diskless-sync-delay",
            "0",
        ]);
        wait("the replica in sync", Duration::from_secs(20), || {
            master
                .raw("INFO replication")
                .is_some_and(|i| i.contains("state=online"))
        });
        let conf = vec![
            format!("sentinel monitor {name} 127.0.0.1 {port} 2"),
            format!("sentinel down-after-milliseconds {name} 1000"),
            format!("sentinel failover-timeout {name} 10000"),
        ];
        let sentinels: Vec<_> = (0..3).map(|_| RedisServer::start_sentinel(&conf)).collect();
        // Each sentinel must know the replica and the two other sentinels before it
        // can elect a leader and promote.
        for s in &sentinels {
            wait(
                "sentinels discover each other",
                Duration::from_secs(20),
                || {
                    let others = s
                        .raw(&format!("SENTINEL SENTINELS {name}"))
                        .unwrap_or_default();
                    let replicas = s
                        .raw(&format!("SENTINEL REPLICAS {name}"))
                        .unwrap_or_default();
                    others.starts_with("*2") && replicas.starts_with("*1")
                },
            );
        }
        Sentinels {
            name: name.to_owned(),
            nodes: vec![master, replica],
            sentinels,
        }
    }

    /// `redis+sentinel://…/<name>`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), self.name)
    }

    /// The sentinels as `redis://` URLs.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// Plain URLs of the data nodes (for inspection).
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The node that is master now.
    pub fn master(&mut self) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.raw("ROLE").is_some_and(|r| r.contains("master")))
            .expect("a master")
    }
}
