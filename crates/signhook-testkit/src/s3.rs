//! [`S3Server`]: a real S3-compatible server for the blob-store tests —
//! moto's `moto_server` (Python, `pip install 'moto[server]'`), started by
//! the test itself on 127.0.0.1 with an empty bucket, and stopped when
//! dropped. moto binds a port of the kernel's choosing and says which; no
//! port is chosen free beforehand and hoped to stay so.
//!
//! moto rather than MinIO: one `pip install`, no daemon to configure, and it
//! starts in about a second. It keeps everything in memory, so each server is
//! a clean slate.
//!
//! Like [`PgServer`](crate::PgServer), there is no silent skip: without
//! moto the test fails, saying what to install. (A skip would be silent in
//! practice: libtest hides a passing test's stderr.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

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
}

impl S3Server {
    /// Starts a server and creates an empty bucket in it. Blocks until the
    /// server says where it listens (about a second; at most 30 s).
    ///
    /// # Panics
    ///
    /// When `moto_server` is not installed (the message says how to install
    /// it) or does not start.
    pub fn start() -> S3Server {
        let (mut child, output, port) = spawn_moto();
        let port = match port.recv_timeout(START_TIMEOUT) {
            Ok(port) => port,
            // Its output ended: it exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("the state of moto_server");
                let output = output.lock().unwrap().clone();
                if output.contains("No module named") {
                    not_installed(&output);
                }
                panic!("moto_server exited ({status}) before serving; its output:\n{output}");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "moto_server did not say where it listens within {START_TIMEOUT:?}; its output:\n{}",
                    output.lock().unwrap()
                );
            }
        };
        let server = S3Server {
            child,
            port,
            bucket: format!("signhook-{}", uuid::Uuid::now_v7().simple()),
        };
        server.create_bucket();
        server
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

/// Starts moto on a port the kernel picks: `moto_server`, or `python3 -m
/// moto.server` when that script is not on the `PATH`. Returns the child,
/// its output so far (kept by a thread that reads it for the server's whole
/// life, so it never blocks on a full pipe), and where the port arrives once
/// moto says it (`Running on http://127.0.0.1:PORT`); that channel closes
/// if moto's output ends first.
fn spawn_moto() -> (Child, Arc<Mutex<String>>, mpsc::Receiver<u16>) {
    let candidates: [&[&str]; 2] = [&["moto_server"], &["python3", "-m", "moto.server"]];
    for candidate in candidates {
        let spawned = Command::new(candidate[0])
            .args(&candidate[1..])
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("cannot run {}: {e}", candidate.join(" ")),
        };
        let stderr = child.stderr.take().expect("moto's stderr is piped");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, port) = mpsc::channel();
        let kept = output.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) = listening_port(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(port);
                    }
                }
                let mut kept = kept.lock().unwrap();
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        return (child, output, port);
    }
    not_installed("")
}

/// The port in werkzeug's ` * Running on http://127.0.0.1:PORT` line.
fn listening_port(line: &str) -> Option<u16> {
    let after = line.split("Running on http://127.0.0.1:").nth(1)?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn not_installed(output: &str) -> ! {
    panic!(
        "moto_server not found; .ci/run installs it with pip: \
         `python3 -m pip install 'moto[server]'`.\n{output}"
    );
}
