//! A real Redis Cluster from `redis-server` processes on free loopback ports, joined
//! with `redis-cli --cluster create`. One 3-master cluster per test binary
//! (`RedisCluster::shared()`), or a dedicated one (with replicas for failover tests).

use std::process::Command;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use super::RedisServer;

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

static SHARED: LazyLock<RedisCluster> = LazyLock::new(|| RedisCluster::start(3, 0));

impl RedisCluster {
    pub fn shared() -> &'static RedisCluster {
        &SHARED
    }

    /// `masters` masters, each with `replicas` replicas.
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        Self::start_on(masters, replicas, None)
    }

    /// A cluster whose clients, bus and replication use TLS with `certs` (the plain
    /// ports stay open for the harness; a client sees the ports of its own kind).
    pub fn start_tls(masters: usize, certs: &super::tls::Certs) -> RedisCluster {
        Self::start_on(masters, 0, Some(certs))
    }

    fn start_on(
        masters: usize,
        replicas: usize,
        certs: Option<&super::tls::Certs>,
    ) -> RedisCluster {
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
            // Redis 7 waits 5 s by default before a replica's first (diskless) sync.
            "--repl-diskless-sync-delay",
            "0",
        ];
        if certs.is_some() {
            args.extend(["--tls-cluster", "yes", "--tls-replication", "yes"]);
        }
        let nodes: Vec<_> = (0..masters * (1 + replicas))
            .map(|_| match certs {
                Some(certs) => RedisServer::start_tls(certs, "optional", &args),
                None => RedisServer::start_with(&args),
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.tls_port.unwrap_or(n.port)))
            .collect();
        let tls_args = match certs {
            Some(certs) => vec![
                "--tls".to_owned(),
                "--cacert".to_owned(),
                certs.path("ca.crt"),
            ],
            None => Vec::new(),
        };
        let out = Command::new("redis-cli")
            .args(&tls_args)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli (package redis-tools, installed with redis-server)");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster.wait_replicas_online(replicas);
        cluster
    }

    /// Waits until every master has `replicas` replicas in sync (`state=online`).
    fn wait_replicas_online(&self, replicas: usize) {
        if replicas == 0 {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let masters = self.masters();
            let online = masters.iter().all(|m| {
                m.raw("INFO replication")
                    .is_some_and(|i| i.matches("state=online").count() == replicas)
            });
            if online && !masters.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "replicas did not come online");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every live node reports `cluster_state:ok` and knows every node.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self.nodes.iter().all(|n| {
                n.raw("CLUSTER INFO").is_some_and(|i| {
                    i.contains("cluster_state:ok") && i.contains("cluster_slots_ok:16384")
                })
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `rediss://` URLs of a TLS cluster.
    pub fn tls_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::tls_url).collect()
    }

    /// Nodes that are masters right now.
    pub fn masters(&self) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .filter(|n| n.raw("ROLE").is_some_and(|r| r.contains("master")))
            .collect()
    }

    /// The node that currently serves `key` as master.
    pub fn master_of(&self, key: &str) -> &RedisServer {
        self.masters()
            .into_iter()
            .find(|n| {
                n.raw(&format!("EXISTS {key}"))
                    .is_some_and(|r| r.starts_with(':'))
            })
            .expect("a master serves the key's slot")
    }
}
