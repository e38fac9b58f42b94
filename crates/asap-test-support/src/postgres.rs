//! A PostgreSQL server of the test's own: Debian's `postgresql` binaries, a cluster made
//! by `initdb` in a temporary directory, listening on a Unix socket in that directory
//! only (no TCP port, so nothing to guess or collide with), stopped when dropped.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, the cluster belongs
//! to the `postgres` user the Debian package creates, and the programs run as that user.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A running PostgreSQL server; stopped (fast shutdown) and deleted when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    server: Option<Child>,
}

/// The directory of `initdb`, `postgres` and friends: `ASAP_PG_BINDIR`, else the
/// newest `/usr/lib/postgresql/<version>/bin` (where Debian puts them), else `PATH`.
pub fn bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("ASAP_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| PathBuf::from(""))
}

fn is_root() -> bool {
    // The effective user id, without unsafe code: `id -u`, asked once per process.
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

impl Postgres {
    /// Starts a server tuned for tests (no fsync: a crash of the machine loses the
    /// cluster, which is a temporary directory anyway).
    pub fn start() -> Self {
        Self::start_with(&[
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ])
    }

    /// Starts a server with these `name=value` settings (`-c`), on top of
    /// `listen_addresses=''` and the socket directory.
    pub fn start_with(settings: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("asap-pg-")
            .tempdir()
            .expect("a temporary directory");
        let bin = bindir();
        let root = is_root();
        if root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown of the cluster directory failed");
        }
        let mut pg = Self {
            dir,
            bin,
            server: None,
        };
        let data = pg.data();
        let out = pg
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "asap",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap_or_else(|e| panic!("initdb did not run ({}): {e}", pg.bin.display()));
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = pg.command("postgres");
        server
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(pg.socket_dir())
            .args(["-c", "listen_addresses="])
            .args(["-c", "max_connections=200"]);
        for setting in settings {
            server.args(["-c", setting]);
        }
        let log = std::fs::File::create(pg.socket_dir().join("server.log")).expect("a log file");
        let child = server
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        pg.server = Some(child);
        pg.wait_ready();
        pg
    }

    /// A program of the PostgreSQL installation, run as the cluster's owner. `setpriv`
    /// executes it in place (no intermediate process), so the server's process id is
    /// the child's and signals reach it.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut command = Command::new("setpriv");
            command
                .args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory holding the server's socket (`.s.PGSQL.5432`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let ready = self
                .command("pg_isready")
                .arg("-h")
                .arg(self.socket_dir())
                .arg("-q")
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(Ok(Some(status))) = self.server.as_mut().map(Child::try_wait) {
                panic!("postgres exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within {START_DEADLINE:?}: {}",
                self.log()
            );
            // pg_isready has no wait-for-socket mode; poll at a short, bounded interval.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.socket_dir().join("server.log")).unwrap_or_default()
    }

    /// Creates the database `name` and returns its URL.
    pub fn database(&self, name: &str) -> String {
        let out = self
            .command("createdb")
            .arg("-h")
            .arg(self.socket_dir())
            .args(["-U", "asap", name])
            .output()
            .expect("createdb runs");
        assert!(
            out.status.success(),
            "createdb {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(name)
    }

    /// The URL of database `name` (through the socket).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://asap@localhost/{name}?host={}",
            self.socket_dir().display()
        )
    }

    /// Stops the server (fast shutdown: sessions are ended, nothing committed is lost).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
