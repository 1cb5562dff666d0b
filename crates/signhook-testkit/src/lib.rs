//! Test-only helpers shared by the store and API suites.
//!
//! - [`PgServer`]: a real PostgreSQL, started by the tests themselves with the
//!   machine's `initdb` and `pg_ctl`, data in a temp dir, reached through a
//!   Unix socket in that dir (no TCP port to find free and hope to keep), run
//!   as the `postgres` user when the tests run as root.
//!   [`PgServer::shared`] is one server per test process (each test gets its
//!   own database in it); [`PgServer::start`] a private one a test may stop
//!   and restart.
//! - [`on_both_backends!`]: writes a test once and runs it on SQLite and on
//!   PostgreSQL.
//! - [`s3::S3Server`]: a real S3-compatible server (moto) for blob tests.
//! - [`browser::Browser`]: a real headless Chromium through chromedriver,
//!   for the tests of the pages.
//! - [`poppler`]: a PDF's text and fonts as poppler's `pdftotext` and
//!   `pdffonts` read them.
//! - [`execute_sql`]: raw SQL against a test database, for tests that inject
//!   a failure (a trigger that refuses a write).
//! - [`eventually`]: the one way a test waits for something to happen
//!   ([`eventually_within`] when how soon is the point).
//!
//! There is no silent skip: without PostgreSQL's server binaries the
//! PostgreSQL half of every test fails, saying what to install.
#![deny(missing_docs)]

pub mod browser;
pub mod poppler;
pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Runs raw SQL (several statements allowed) against a test database:
/// PostgreSQL at `postgres_url` when given, else the SQLite file
/// `sqlite_file`.
pub async fn execute_sql(postgres_url: Option<&str>, sqlite_file: &Path, sql: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    match postgres_url {
        Some(url) => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::raw_sql(sql).execute(&mut conn).await?;
            conn.close().await
        }
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(sqlite_file);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
            sqlx::raw_sql(sql).execute(&mut conn).await?;
            conn.close().await
        }
    }
}

/// The first column, as text, of every row `sql` selects from a test
/// database (as [`execute_sql`] reaches it): to inspect what is stored.
pub async fn query_texts(
    postgres_url: Option<&str>,
    sqlite_file: &Path,
    sql: &str,
) -> Result<Vec<String>, sqlx::Error> {
    use sqlx::Connection;
    match postgres_url {
        Some(url) => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let texts = sqlx::query_scalar(sql).fetch_all(&mut conn).await?;
            conn.close().await?;
            Ok(texts)
        }
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(sqlite_file);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
            let texts = sqlx::query_scalar(sql).fetch_all(&mut conn).await?;
            conn.close().await?;
            Ok(texts)
        }
    }
}

/// The backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temp dir.
    Sqlite,
    /// A fresh database on the shared test PostgreSQL.
    Postgres,
}

/// Writes each test once and runs it on both backends: every
/// `async fn name(backend: Backend) { … }` becomes a module `name` with the
/// tests `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($(#[$meta:meta])* async fn $name:ident($backend:ident : Backend) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($backend: $crate::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run($crate::Backend::Postgres).await
            }
        }
    )*};
}

/// A PostgreSQL server run by the tests.
#[derive(Debug)]
pub struct PgServer {
    bin_dir: PathBuf,
    /// Its files, and the directory of its socket.
    root: PathBuf,
    as_postgres_user: bool,
    // Removes the data directory when a private server is dropped.
    _dir: Option<tempfile::TempDir>,
}

/// The role the tests connect as.
const SUPERUSER: &str = "signhook";

/// The port in the name of the server's socket (`.s.PGSQL.5432`). It opens
/// no TCP port: the socket lives in the server's own directory, so any
/// number is free there, and stays free across a restart.
const SOCKET_PORT: u16 = 5432;

impl PgServer {
    /// The server shared by every test of this process, started on first
    /// use. A watchdog stops it and removes its files when the process exits,
    /// however it exits.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mut server = PgServer::start();
            let dir = server._dir.take().expect("a fresh server owns its directory").keep();
            server.spawn_watchdog(&dir);
            server
        })
    }

    /// A private server, stopped and removed when dropped.
    pub fn start() -> PgServer {
        let bin_dir = find_bin_dir();
        let as_postgres_user = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("signhook-pg-")
            .tempdir()
            .expect("a temp dir for PostgreSQL");
        let root = dir.path().to_owned();
        if as_postgres_user {
            // initdb refuses to run as root; the postgres user owns the files.
            run(
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(&root),
                "chown",
            );
        }
        let server = PgServer {
            bin_dir,
            root,
            as_postgres_user,
            _dir: Some(dir),
        };
        let data = server.data_dir();
        server.run_pg(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            server.try_start(),
            "PostgreSQL did not start; see {}",
            server.root.join("log").display()
        );
        server
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn try_start(&self) -> bool {
        let options = format!(
            "-p {SOCKET_PORT} -c listen_addresses='' -k {} -c fsync=off -c synchronous_commit=off -c max_connections=300",
            self.root.display()
        );
        let log = self.root.join("log");
        let data = self.data_dir();
        self.pg_command(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop(&self) {
        let data = self.data_dir();
        self.run_pg("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"]);
    }

    /// Starts a stopped server again, at the same URLs.
    pub fn restart(&self) {
        assert!(
            self.try_start(),
            "PostgreSQL did not restart; see {}",
            self.root.join("log").display()
        );
    }

    /// The URL of database `name`: through the server's socket, named by
    /// the `host` parameter (which sqlx and libpq both read as a socket's
    /// directory when it is a path).
    pub fn url(&self, name: &str) -> String {
        let socket_dir: String = self
            .root
            .to_str()
            .expect("a UTF-8 temp dir")
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        format!("postgres://{SUPERUSER}@localhost:{SOCKET_PORT}/{name}?host={socket_dir}")
    }

    /// Creates a fresh, empty database and returns its URL.
    pub async fn create_database(&self) -> String {
        self.create_database_named(&format!("t_{}", uuid::Uuid::now_v7().simple()))
            .await
    }

    /// Creates database `name` (letters, digits, `_`) and returns its URL.
    pub async fn create_database_named(&self, name: &str) -> String {
        use sqlx::Connection;
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "a plain database name"
        );
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("the test PostgreSQL answers");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        conn.close().await.ok();
        self.url(name)
    }

    /// Runs `psql` with `sql` on the database at `url` and returns its
    /// unaligned, tuples-only output.
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let out = Command::new(self.bin_dir.join("psql"))
            .args(["-X", "-A", "-t", "-d", url, "-c", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("psql prints UTF-8")
    }

    fn pg_command(&self, tool: &str, args: &[&str]) -> Command {
        let program = self.bin_dir.join(tool);
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program).args(args);
            command
        } else {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
    }

    fn run_pg(&self, tool: &str, args: &[&str]) {
        run(self.pg_command(tool, args).stdout(Stdio::null()), tool);
    }

    fn spawn_watchdog(&self, dir: &Path) {
        let stop = self.pg_command(
            "pg_ctl",
            &["-D", self.data_dir().to_str().unwrap(), "-m", "immediate", "stop"],
        );
        let stop_line = std::iter::once(stop.get_program())
            .chain(stop.get_args())
            .map(|part| format!("'{}'", part.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop_line} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = dir.display()
        );
        // Deliberately never waited for: it must outlive this process.
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the watchdog starts");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self._dir.is_some() {
            let data = self.data_dir();
            let _ = self
                .pg_command("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn run(command: &mut Command, what: &str) {
    let status = command.status().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Finds PostgreSQL's server binaries: `SIGNHOOK_TEST_PG_BIN`, else the
/// newest `/usr/lib/postgresql/*/bin` (Debian's layout), else `pg_config
/// --bindir`.
fn find_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SIGNHOOK_TEST_PG_BIN") {
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
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    panic!(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found. Install them \
         (`apt-get install -y postgresql-15` on Debian) or set SIGNHOOK_TEST_PG_BIN."
    );
}

/// How long a test waits for something that should happen within
/// milliseconds before it declares failure. Generous, so that a loaded
/// 2-core machine never fails a correct build; never a timing assertion.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until `check` returns `Ok`, looking again every 10 ms, for at
/// most [`PATIENCE`]; then panics naming `what` and what the last look
/// found (the `Err`). The one way the suites wait for something to happen:
/// never a `sleep` standing in for it, never a hand-written poll loop.
///
/// Both the pause between looks and the deadline are on tokio's clock, so
/// a test on a paused clock waits in virtual time.
pub async fn eventually<T, E, F, Fut>(what: impl std::fmt::Display, check: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    eventually_within(PATIENCE, what, check).await
}

/// [`eventually`] with a deadline of its own, for a test whose point is
/// that something happens *sooner* than a known delay (a lease, a
/// schedule's step): give it a deadline well under that delay and still far
/// above what a loaded machine needs, so that the code without the promptness
/// fails and the code with it never does.
pub async fn eventually_within<T, E, F, Fut>(
    deadline: std::time::Duration,
    what: impl std::fmt::Display,
    mut check: F,
) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        let found = match check().await {
            Ok(done) => return done,
            Err(found) => found,
        };
        assert!(
            tokio::time::Instant::now() < give_up,
            "waited {deadline:?} in vain for {what}; the last look found {found:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// For [`eventually`]: `Ok(value)` when `done`, else `Err` with what was
/// found instead.
pub fn done_when<T: std::fmt::Debug>(done: bool, found: T) -> Result<T, T> {
    if done {
        Ok(found)
    } else {
        Err(found)
    }
}
