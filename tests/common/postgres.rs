//! Starts a throwaway PostgreSQL from Debian's packages (`apt-get install postgresql`):
//! `initdb` into a temp directory and `postgres` on a free loopback port, as the
//! `postgres` user when the tests run as root. A watchdog shell stops it when the test
//! process exits, however it exits; it also stops on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    watchdog: Option<Child>,
    /// Extra `postgres -c` settings.
    settings: Vec<String>,
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`, or whatever is on PATH.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let on_path = Command::new("sh")
        .args(["-c", "dirname \"$(command -v initdb)\""])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s != ".");
    match on_path {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "PostgreSQL is not installed. Install it with \
             `apt-get update && apt-get install -y postgresql` (or run scripts/test.sh, \
             which does) and run the tests again."
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A command run as the `postgres` user when we are root (initdb refuses root).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        Self::start_with(None)
    }

    /// A server that accepts only TLS connections (`hostssl` in `pg_hba.conf`), with
    /// the server certificate of `certs`.
    pub fn start_tls(certs: &super::tls::Certs) -> Postgres {
        Self::start_with(Some(certs))
    }

    fn start_with(certs: Option<&super::tls::Certs>) -> Postgres {
        let bin = bin_dir();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free loopback port");
        let dir = std::env::temp_dir().join(format!("trs-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown of the PostgreSQL temp dir failed");
        }
        let data = dir.join("data");
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut settings = Vec::new();
        if let Some(certs) = certs {
            for name in ["server.crt", "server.key", "ca.crt"] {
                std::fs::copy(certs.path(name), data.join(name)).expect("copy certificate");
            }
            let owned = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "chmod 600 '{d}/server.key' && {{ [ \"$(id -u)\" != 0 ] || chown postgres:postgres '{d}/server.crt' '{d}/server.key' '{d}/ca.crt'; }}",
                    d = data.display()
                ))
                .status()
                .is_ok_and(|s| s.success());
            assert!(owned, "could not hand the certificates to postgres");
            std::fs::write(
                data.join("pg_hba.conf"),
                "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\nlocal all all trust\n",
            )
            .expect("pg_hba.conf");
            for setting in [
                "ssl=on",
                "ssl_cert_file=server.crt",
                "ssl_key_file=server.key",
                "ssl_ca_file=ca.crt",
            ] {
                settings.push(setting.to_owned());
            }
        }
        let mut pg = Postgres {
            port,
            dir,
            bin,
            watchdog: None,
            settings,
        };
        pg.spawn();
        pg
    }

    fn spawn(&mut self) {
        // The shell runs postgres and stops it once this test process is gone.
        let script = format!(
            "\"$0\" \"$@\" & p=$!; \
             while [ -d /proc/{parent} ] && kill -0 $p 2>/dev/null; do sleep 0.2; done; \
             kill -QUIT $p 2>/dev/null",
            parent = std::process::id()
        );
        let data = self.dir.join("data");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c"]);
            c
        } else {
            let mut c = Command::new("sh");
            c.arg("-c");
            c
        };
        let child = cmd
            .arg(script)
            .arg(self.bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn postgres");
        self.watchdog = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("postgres on port {} did not start", self.port);
    }

    /// A connection string over the local socket (allowed without TLS), for tests to
    /// inspect a TLS-only server.
    pub fn socket_conn_str(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.display(),
            self.port
        )
    }

    /// A `tokio_postgres` connection string.
    pub fn conn_str(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
