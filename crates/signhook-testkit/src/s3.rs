//! [`S3Server`]: a real S3-compatible server for the blob-store tests —
//! moto's `moto_server` (Python, `pip install 'moto[server]'`), started by
//! the test itself on a free port on 127.0.0.1 with an empty bucket, and
//! stopped when dropped.
//!
//! moto rather than MinIO: one `pip install`, no daemon to configure, and it
//! starts in about a second. It keeps everything in memory, so each server is
//! a clean slate.
//!
//! Like [`PgServer`](crate::PgServer), there is no silent skip: without
//! moto the test fails, saying what to install. (A skip would be silent in
//! practice: libtest hides a passing test's stderr.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The region the server's bucket is in (moto's default).
pub const REGION: &str = "us-east-1";

/// The credentials the tests sign with; moto accepts any.
const ACCESS_KEY_ID: &str = "testing";
const SECRET_ACCESS_KEY: &str = "testing";

/// How long moto gets to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A moto S3 server with one empty bucket, killed when dropped.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    port: u16,
    bucket: String,
    // Holds moto's log; removed with the server.
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server on a free port and creates an empty bucket in it.
    /// Blocks until the server answers (about a second; at most 30 s).
    ///
    /// # Panics
    ///
    /// When `moto_server` is not installed (the message says how to install
    /// it) or does not start.
    pub fn start() -> S3Server {
        let dir = tempfile::Builder::new()
            .prefix("signhook-s3-")
            .tempdir()
            .expect("a temp dir for moto");
        let log = dir.path().join("moto.log");
        // A few tries: the free port may be taken between choosing it and
        // moto binding it.
        for _ in 0..5 {
            let port = crate::free_port();
            let mut child = spawn_moto(port, &log);
            match wait_until_listening(&mut child, port) {
                Ok(()) => {
                    let server = S3Server {
                        child,
                        port,
                        bucket: format!("signhook-{}", uuid::Uuid::now_v7().simple()),
                        _dir: dir,
                    };
                    server.create_bucket();
                    return server;
                }
                Err(Stopped::Exited(status)) => {
                    let output = read_log(&log);
                    if status.code() == Some(127) || output.contains("No module named") {
                        not_installed(&output);
                    }
                }
                Err(Stopped::TimedOut) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "moto_server did not answer on port {port} within {START_TIMEOUT:?}; its log:\n{}",
                        read_log(&log)
                    );
                }
            }
        }
        panic!("moto_server did not start; its last log:\n{}", read_log(&log));
    }

    /// The server's URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The name of the server's bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `s3://BUCKET`, for `--blob-url` or `BlobStore::s3` (append
    /// `/prefix` to put keys under a prefix).
    pub fn bucket_url(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    /// The client settings for this server, by `object_store`'s names:
    /// what `BlobStore::s3` takes.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint", self.endpoint()),
            ("aws_allow_http", "true".to_owned()),
            ("aws_region", REGION.to_owned()),
            ("aws_access_key_id", ACCESS_KEY_ID.to_owned()),
            ("aws_secret_access_key", SECRET_ACCESS_KEY.to_owned()),
        ]
    }

    /// The same settings as environment variables (`AWS_ENDPOINT`,
    /// `AWS_ALLOW_HTTP`, …: the option names in upper case, which is how
    /// `BlobStore::open` reads them), for a `signhook` process started with
    /// `--blob-url s3://…`. Set them on that child's [`Command`], never on
    /// the test process: tests run in parallel threads.
    pub fn env(&self) -> Vec<(String, String)> {
        self.options()
            .into_iter()
            .map(|(name, value)| (name.to_ascii_uppercase(), value))
            .collect()
    }

    /// Creates the bucket with a plain HTTP request (moto accepts unsigned
    /// ones), so the testkit needs no HTTP client.
    fn create_bucket(&self) {
        let name = &self.bucket;
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).unwrap_or_else(|e| panic!("cannot reach moto_server: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        let request = format!(
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            port = self.port
        );
        stream
            .write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("cannot send CreateBucket to moto_server: {e}"));
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .unwrap_or_else(|e| panic!("no answer to CreateBucket from moto_server: {e}"));
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "moto_server refused to create bucket {name}:\n{response}"
        );
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto on `port`, its output going to `log`: `moto_server`, or
/// `python3 -m moto.server` when that script is not on the `PATH`.
fn spawn_moto(port: u16, log: &Path) -> Child {
    let port = port.to_string();
    let candidates: [&[&str]; 2] = [&["moto_server"], &["python3", "-m", "moto.server"]];
    for candidate in candidates {
        let out = std::fs::File::create(log).expect("moto's log file");
        let err = out.try_clone().expect("moto's log file, twice");
        let spawned = Command::new(candidate[0])
            .args(&candidate[1..])
            .args(["-H", "127.0.0.1", "-p", &port])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn();
        match spawned {
            Ok(child) => return child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("cannot run {}: {e}", candidate.join(" ")),
        }
    }
    not_installed("")
}

enum Stopped {
    Exited(ExitStatus),
    TimedOut,
}

/// Waits until something accepts connections on `port`, or the child exits.
fn wait_until_listening(child: &mut Child, port: u16) -> Result<(), Stopped> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("the state of moto_server") {
            return Err(Stopped::Exited(status));
        }
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Stopped::TimedOut)
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

fn not_installed(output: &str) -> ! {
    panic!(
        "moto_server not found; .ci/run installs it with pip: \
         `python3 -m pip install 'moto[server]'`.\n{output}"
    );
}
