//! Starts `redis-server` on a free loopback port.
//!
//! `RedisServer::shared()` is one server per test binary (tests use their own key
//! namespace); `RedisServer::start()` is a dedicated server for tests that count
//! commands or kill Redis. Every server runs under a watchdog shell that kills it when
//! the test process exits, however it exits; dedicated servers also stop on drop.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    /// The TLS port of a server started with `start_tls` (the plain port stays open
    /// for the harness).
    pub tls_port: Option<u16>,
    /// For a sentinel: its configuration lines (written to `sentinel.conf`).
    sentinel: Option<Vec<String>>,
    dir: PathBuf,
    watchdog: Option<Child>,
    extra: Vec<String>,
}

static SHARED: LazyLock<RedisServer> = LazyLock::new(RedisServer::start);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn require_redis_server() {
    if Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        panic!(
            "redis-server is not on PATH. Install it with \
             `apt-get update && apt-get install -y redis-server` (or run scripts/test.sh, \
             which does) and run the tests again."
        );
    }
}

impl RedisServer {
    /// The server shared by all tests of this binary.
    pub fn shared() -> &'static RedisServer {
        &SHARED
    }

    /// A dedicated server, stopped on drop.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// A dedicated server with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        Self::start_on_free_ports(|| (extra.iter().map(|s| s.to_string()).collect(), None))
    }

    /// A dedicated server that also listens with TLS on `tls_port`, with the
    /// certificates of `certs`; `clients` is `tls-auth-clients` (`no`, `optional`,
    /// `yes`).
    pub fn start_tls(certs: &super::tls::Certs, clients: &str, extra: &[&str]) -> RedisServer {
        Self::start_on_free_ports(|| {
            let tls_port = free_port();
            let mut args = certs.server_args(tls_port, clients);
            args.extend(extra.iter().map(|s| s.to_string()));
            (args, Some(tls_port))
        })
    }

    /// Starts a server on free ports (`args` gives its extra arguments and TLS port),
    /// and on other ports when one was taken between the probe and Redis's bind:
    /// other test processes start servers at the same time.
    fn start_on_free_ports(args: impl Fn() -> (Vec<String>, Option<u16>)) -> RedisServer {
        require_redis_server();
        for attempt in 1.. {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!("trs-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let (extra, tls_port) = args();
            let mut server = RedisServer {
                port,
                tls_port,
                sentinel: None,
                dir,
                watchdog: None,
                extra,
            };
            match server.try_spawn() {
                Ok(()) => return server,
                Err(log) if attempt < 5 && log.contains("Address already in use") => {
                    // Not ours to shut down: the port belongs to someone else now.
                    if let Some(mut c) = server.watchdog.take() {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    let _ = std::fs::remove_dir_all(&server.dir);
                    std::mem::forget(server);
                }
                Err(log) => panic!("redis-server on port {port} did not start:\n{log}"),
            }
        }
        unreachable!()
    }

    /// A `redis-server --sentinel` with configuration `conf` (e.g. `sentinel monitor …`
    /// lines), stopped on drop.
    pub fn start_sentinel(conf: &[String]) -> RedisServer {
        require_redis_server();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("trs-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = RedisServer {
            port,
            tls_port: None,
            sentinel: Some(conf.to_vec()),
            dir,
            watchdog: None,
            extra: Vec::new(),
        };
        server.spawn();
        server
    }

    /// `rediss://` on the TLS port.
    pub fn tls_url(&self) -> String {
        format!(
            "rediss://127.0.0.1:{}",
            self.tls_port.expect("a TLS server")
        )
    }

    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("redis-server on port {} did not start:\n{log}", self.port);
        }
    }

    /// Starts the process; the server's log if it does not answer within 10 s.
    fn try_spawn(&mut self) -> Result<(), String> {
        // The shell starts redis-server and kills it once this test process is gone.
        // Once the test process is gone, its data directory goes too (not when only
        // Redis stopped: restart tests reuse it).
        let script = format!(
            "redis-server \"$@\" & r=$!; \
             while kill -0 {parent} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.2; done; \
             kill $r 2>/dev/null; \
             if ! kill -0 {parent} 2>/dev/null; then sleep 0.5; rm -rf '{dir}'; fi",
            parent = std::process::id(),
            dir = self.dir.display()
        );
        let port = self.port.to_string();
        let dir = self.dir.to_string_lossy().into_owned();
        let log = self.dir.join("redis.log").to_string_lossy().into_owned();
        let pidfile = self.dir.join("redis.pid").to_string_lossy().into_owned();
        let mut args: Vec<String> = if let Some(conf) = &self.sentinel {
            // Sentinel rewrites its configuration file, so it gets one of its own.
            let path = self.dir.join("sentinel.conf");
            let mut text = format!(
                "port {}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\npidfile {pidfile}\n",
                self.port
            );
            for line in conf {
                text.push_str(line);
                text.push('\n');
            }
            std::fs::write(&path, text).expect("sentinel.conf");
            vec![path.to_string_lossy().into_owned(), "--sentinel".into()]
        } else {
            [
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &dir,
                "--logfile",
                &log,
                "--daemonize",
                "no",
                "--pidfile",
                &pidfile,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        args.extend(self.extra.iter().cloned());
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.watchdog = Some(child);
        self.wait_ready()
    }

    /// Whether the server on our port is the process we started (its pid file), not
    /// another test's server that took the port.
    fn answers_as_ours(&self) -> bool {
        let Ok(pid) = std::fs::read_to_string(self.dir.join("redis.pid")) else {
            return false;
        };
        self.raw("INFO server")
            .is_some_and(|info| info.contains(&format!("process_id:{}\r\n", pid.trim())))
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // Our process exited (e.g. its port was taken): no need to wait longer.
            let exited = self
                .watchdog
                .as_mut()
                .is_some_and(|w| w.try_wait().ok().flatten().is_some());
            if exited {
                break;
            }
            if self.raw("PING").is_some_and(|r| r.starts_with("+PONG")) && self.answers_as_ours() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default())
    }

    /// Sends one inline command and returns the raw reply (blocking, for the harness).
    pub fn raw(&self, command: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut buf = vec![0u8; 1 << 16];
        let mut out = Vec::new();
        loop {
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            // Bulk replies start with $len; stop once the whole body arrived.
            if complete(&out) {
                break;
            }
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (it can be restarted on the same port).
    pub fn stop(&mut self) {
        // A server that refuses (a test set a password) is killed instead.
        if self
            .raw("SHUTDOWN NOSAVE")
            .is_some_and(|reply| reply.starts_with('-'))
        {
            return self.kill();
        }
        if let Some(mut c) = self.watchdog.take() {
            let _ = c.wait();
        }
    }

    /// Kills the server with SIGKILL: a crash, no shutdown save.
    pub fn kill(&mut self) {
        let pid = std::fs::read_to_string(self.dir.join("redis.pid")).expect("pidfile");
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
        if let Some(mut c) = self.watchdog.take() {
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("redis.pid"));
    }

    /// Starts the server again on the same port and directory (an append-only file
    /// there is reloaded). Call after `stop` or `kill`.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Calls per command from `INFO commandstats` (e.g. `"hgetall" -> 3`).
    pub fn command_calls(&self) -> HashMap<String, u64> {
        let info = self.raw("INFO commandstats").unwrap_or_default();
        info.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.trim().parse().ok()?))
            })
            .collect()
    }

    /// Commands run between two `command_calls` snapshots, without `info` itself.
    pub fn delta(
        before: &HashMap<String, u64>,
        after: &HashMap<String, u64>,
    ) -> HashMap<String, u64> {
        after
            .iter()
            .filter(|(k, _)| k.as_str() != "info")
            .filter_map(|(k, v)| {
                let d = v - before.get(k).copied().unwrap_or(0);
                (d > 0).then(|| (k.clone(), d))
            })
            .collect()
    }
}

fn complete(reply: &[u8]) -> bool {
    let text = String::from_utf8_lossy(reply);
    match text.as_bytes().first() {
        Some(b'$') => {
            let Some((len, body)) = text[1..].split_once("\r\n") else {
                return false;
            };
            match len.parse::<i64>() {
                Ok(n) if n >= 0 => body.len() >= n as usize + 2,
                _ => true,
            }
        }
        Some(_) => text.ends_with("\r\n"),
        None => false,
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
