//! PDF work in worker processes.
//!
//! Uploaded PDFs are hostile input, and the parser (lopdf) recurses on
//! nested arrays and dictionaries and decompresses object streams without a
//! bound: in the server's own process, one small file could overflow a
//! tokio worker's stack — which aborts the whole server — or expand to
//! gigabytes, and a slow one would hold an async worker for seconds. A byte
//! scan before parsing cannot bound that recursion soundly (the
//! cross-reference table may point the parser into any bytes), so every
//! parse — checking an upload, producing the signed PDF and the audit
//! certificate — runs in a child process, `signhook pdf-worker`, under
//! limits the kernel enforces:
//!
//! - address space in proportion to the input ([`memory_limit`]): a
//!   decompression bomb fails its allocation and dies;
//! - the main thread's 8 MiB stack: a nesting bomb overflows it and dies;
//! - CPU time, and a wall-clock deadline after which it is killed;
//! - a lower scheduling priority, so the API and the deliveries keep the
//!   cores while a large document is read.
//!
//! Whatever goes wrong in there costs one child process; the caller gets a
//! [`PdfError`] that names the limit. At most `concurrency` workers run at
//! once. The API's own threads never parse.
//!
//! # The protocol
//!
//! One job per process. The request on stdin is one line of JSON (a
//! [`Request`], whose `parts` gives the length of each byte part), then the
//! parts back to back: the documents. The answer on stdout has the same
//! shape (a [`Response`], then the signed PDF and the audit certificate
//! for a signing job). A signing job carries the seal's key and chain
//! ([`SealKey`]): the worker seals both files before it answers, and the
//! audit certificate states the hash of the sealed signed PDF. The key
//! travels through the pipe only, never in arguments or the environment.
//! [`serve`] is the worker's side: a function from the request's bytes to
//! the answer's, which `signhook pdf-worker` runs between stdin and stdout.
//! Its one read is of the operator's fonts (`--pdf-font`),
//! which a signing job names by path: the server checked them when it
//! started ([`PdfFonts::load`]), and a worker that cannot read them answers
//! [`Response::Invalid`].

use chrono::{DateTime, Utc};
use signhook_documents::{
    AuditCertificate, AuditDocument, DocumentError, FontError, FontFile, Fonts, PdfInfo, SealKeyError, Sealer,
    SignatureLine, TrailEntry,
};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// The job of one worker process.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Request {
    /// Check one upload ([`signhook_documents::inspect`]); one part, the PDF.
    Inspect {
        /// The length of each part.
        parts: Vec<usize>,
    },
    /// Produce the signed PDF and the audit certificate of a completed
    /// request; one part per document, in order.
    Sign {
        /// What to sign and certify.
        #[serde(flatten)]
        signing: Signing,
        /// The operator's fonts, tried before the built-in ones.
        fonts: Vec<PathBuf>,
        /// The length of each part.
        parts: Vec<usize>,
    },
}

/// What the signed PDF and the audit certificate of a completed request
/// say, and the seal they carry. Times to print are already formatted for
/// reading, with their zone (`2026-12-01 10:04:05 UTC`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Signing {
    /// The signature request's id.
    pub request_id: String,
    /// Its name.
    pub request_name: String,
    /// When it completed.
    pub completed_at: String,
    /// Every signer, in signing order.
    pub signatures: Vec<SignatureLine>,
    /// The documents as listed on the certificate.
    pub documents: Vec<AuditDocument>,
    /// The audit trail, oldest first.
    pub trail: Vec<TrailEntry>,
    /// The key and chain that seal both files.
    pub seal: SealKey,
    /// The time the seals state (their `/M`).
    pub sealed_at: DateTime<Utc>,
}

/// The seal's private key and certificate chain as PEM, as a signing job
/// carries it to the worker. Cheap to clone; `Debug` hides it.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SealKey(std::sync::Arc<str>);

impl SealKey {
    /// The PEM [`Sealer::to_pem`] writes.
    pub fn from_pem(pem: String) -> Self {
        Self(pem.into())
    }

    /// The sealer it describes (the worker's side).
    pub fn sealer(&self) -> Result<Sealer, SealKeyError> {
        Sealer::load(self.0.as_bytes(), None)
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

/// The operator's fonts for the generated PDFs (`--pdf-font`), checked.
#[derive(Debug, Clone, Default)]
pub struct PdfFonts {
    paths: Vec<PathBuf>,
}

/// Why an operator's font cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PdfFontError {
    /// The file cannot be read.
    #[error("cannot read the PDF font {}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a usable font.
    #[error("the PDF font {} cannot be used", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: FontError,
    },
}

impl PdfFonts {
    /// Reads and checks each font, so that a missing or broken file stops
    /// the server at start rather than failing every signed PDF. The paths
    /// are made absolute: workers read them again for each job.
    pub fn load(paths: &[PathBuf]) -> Result<Self, PdfFontError> {
        let mut checked = Vec::with_capacity(paths.len());
        for path in paths {
            read_font(path)?;
            let absolute = std::path::absolute(path).map_err(|source| PdfFontError::Unreadable {
                path: path.clone(),
                source,
            })?;
            checked.push(absolute);
        }
        Ok(Self { paths: checked })
    }
}

/// Reads and checks one font file.
fn read_font(path: &Path) -> Result<FontFile, PdfFontError> {
    let bytes = std::fs::read(path).map_err(|source| PdfFontError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    FontFile::parse(bytes).map_err(|source| PdfFontError::Invalid {
        path: path.to_owned(),
        source,
    })
}

/// What a worker answers.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Response {
    /// The upload is a readable PDF.
    Inspected {
        /// What it is.
        info: PdfInfo,
    },
    /// The signed PDF and the audit certificate follow, in that order.
    Signed {
        /// The length of each part.
        parts: Vec<usize>,
    },
    /// The document itself is refused: the message is for its uploader.
    Refused {
        /// Why, in words the uploader can act on.
        message: String,
    },
    /// The request could not be read (a bug, never the document's fault).
    Invalid {
        /// What was wrong with it.
        message: String,
    },
}

impl Request {
    fn parts(&self) -> &[usize] {
        match self {
            Request::Inspect { parts } | Request::Sign { parts, .. } => parts,
        }
    }
}

/// Why PDF work did not produce a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PdfError {
    /// The document is not acceptable (not a PDF, damaged, encrypted, …).
    #[error("{0}")]
    Refused(String),
    /// Reading it overflowed the worker's stack: arrays or dictionaries
    /// nested too deeply.
    #[error("the PDF is nested too deeply to be read safely (arrays or dictionaries within each other)")]
    TooDeep,
    /// Reading it needed more memory than its size allows.
    #[error("the PDF needs more than {limit_mib} MiB of memory to be read: it expands too much once decompressed")]
    TooLarge {
        /// The worker's memory limit, in MiB.
        limit_mib: u64,
    },
    /// Reading it took longer than the limit.
    #[error("reading the PDF took longer than {} s", .0.as_secs())]
    TooSlow(Duration),
    /// The worker could not be run, or answered nonsense: our fault, not
    /// the document's.
    #[error("the PDF worker failed: {0}")]
    Worker(String),
}

impl PdfError {
    /// Whether the document is at fault (the uploader is told why) rather
    /// than the server.
    pub fn is_the_document(&self) -> bool {
        !matches!(self, PdfError::Worker(_))
    }
}

/// Runs PDF jobs in worker processes, a few at a time. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PdfWorkers {
    /// The `signhook` binary, run as `signhook pdf-worker`.
    program: Arc<PathBuf>,
    permits: Arc<Semaphore>,
    timeout: Duration,
    fonts: Arc<PdfFonts>,
}

impl PdfWorkers {
    /// Workers started from `program` (the `signhook` binary), at most
    /// `concurrency` at once, each killed after `timeout`, setting the
    /// generated PDFs in `fonts` before the built-in ones.
    pub fn new(program: PathBuf, concurrency: usize, timeout: Duration, fonts: PdfFonts) -> Self {
        Self {
            program: Arc::new(program),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            timeout,
            fonts: Arc::new(fonts),
        }
    }

    /// Checks an upload: see [`signhook_documents::inspect`].
    pub async fn inspect(&self, pdf: &[u8]) -> Result<PdfInfo, PdfError> {
        let request = Request::Inspect { parts: vec![pdf.len()] };
        match self.run(&request, &[pdf]).await? {
            (Response::Inspected { info }, _) => Ok(info),
            (other, _) => Err(unexpected(other)),
        }
    }

    /// Produces the signed PDF and the audit certificate (whose hash of the
    /// signed PDF the worker fills in): see
    /// [`signhook_documents::signed_pdf`] and
    /// [`signhook_documents::audit_certificate`].
    pub async fn sign(&self, signing: Signing, documents: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>), PdfError> {
        let request = Request::Sign {
            signing,
            fonts: self.fonts.paths.clone(),
            parts: documents.iter().map(|d| d.len()).collect(),
        };
        match self.run(&request, documents).await? {
            (Response::Signed { .. }, mut parts) if parts.len() == 2 => {
                let certificate = parts.pop().expect("two parts");
                let signed = parts.pop().expect("two parts");
                Ok((signed, certificate))
            }
            (other, _) => Err(unexpected(other)),
        }
    }

    /// Runs one job in a fresh worker process.
    async fn run(&self, request: &Request, parts: &[&[u8]]) -> Result<(Response, Vec<Vec<u8>>), PdfError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PdfError::Worker("the worker pool is closed".into()))?;
        let input = encode(request, parts)?;
        let memory = memory_limit(input.len());
        let cpu_seconds = self.timeout.as_secs().max(1) + 1;
        let mut command = tokio::process::Command::new(self.program.as_ref());
        command
            .arg("pdf-worker")
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: between fork and exec only async-signal-safe calls are
        // allowed; `limit_self` makes three system calls and allocates
        // nothing.
        unsafe {
            command.pre_exec(move || limit_self(memory, cpu_seconds));
        }
        let mut child = command
            .spawn()
            .map_err(|e| PdfError::Worker(format!("cannot start {}: {e}", self.program.display())))?;
        let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(PdfError::Worker("the worker's pipes are missing".into()));
        };
        let talk = async {
            let write = async {
                // A worker that died early closes its end: its exit says why.
                let _ = stdin.write_all(&input).await;
                drop(stdin);
            };
            let mut answer = Vec::new();
            let mut errors = Vec::new();
            let read = stdout.read_to_end(&mut answer);
            // The start of the worker's complaints says why it died; the
            // rest is drained so that it never blocks on a full pipe.
            let complaints = async {
                let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut errors).await;
                let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
            };
            let ((), read, ()) = tokio::join!(write, read, complaints);
            let status = child.wait().await;
            (
                read.map(|_| answer),
                String::from_utf8_lossy(&errors).into_owned(),
                status,
            )
        };
        let (answer, complaints, status) = match tokio::time::timeout(self.timeout, talk).await {
            Ok(done) => done,
            Err(_) => {
                // Dropping the child kills it too; this says so at once.
                let _ = child.start_kill();
                return Err(PdfError::TooSlow(self.timeout));
            }
        };
        let status = status.map_err(|e| PdfError::Worker(format!("waiting for the worker: {e}")))?;
        if !status.success() {
            return Err(why_it_died(status, &complaints, memory, self.timeout));
        }
        let answer = answer.map_err(|e| PdfError::Worker(format!("reading the worker's answer: {e}")))?;
        let (response, parts) = decode::<Response>(&answer).map_err(PdfError::Worker)?;
        match response {
            Response::Refused { message } => Err(PdfError::Refused(message)),
            Response::Invalid { message } => Err(PdfError::Worker(message)),
            response => Ok((response, parts)),
        }
    }
}

/// The address space a worker may use: room for the program and the input,
/// and eight times the input for what parsing builds — far more than a
/// genuine document needs, far less than a decompression bomb takes.
pub fn memory_limit(input_len: usize) -> u64 {
    const BASE: u64 = 512 * 1024 * 1024;
    const CAP: u64 = 6 * 1024 * 1024 * 1024;
    (BASE + 8 * input_len as u64).min(CAP)
}

/// In the worker, before it runs: the kernel's limits. Async-signal-safe.
fn limit_self(memory: u64, cpu_seconds: u64) -> std::io::Result<()> {
    let limit = |resource, value: u64| {
        let bound = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: `bound` is a valid rlimit for the duration of the call.
        if unsafe { libc::setrlimit(resource, &bound) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    limit(libc::RLIMIT_AS, memory)?;
    limit(libc::RLIMIT_CPU, cpu_seconds)?;
    limit(libc::RLIMIT_STACK, 8 * 1024 * 1024)?;
    // A nice worker: the server's own threads come first. Failing to lower
    // the priority is harmless.
    // SAFETY: a plain system call on this process.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
    Ok(())
}

/// Names the limit a worker that died ran into, from how it died.
fn why_it_died(status: std::process::ExitStatus, complaints: &str, memory: u64, timeout: Duration) -> PdfError {
    use std::os::unix::process::ExitStatusExt;
    if complaints.contains("has overflowed its stack") {
        return PdfError::TooDeep;
    }
    if complaints.contains("memory allocation of") || complaints.contains("capacity overflow") {
        return PdfError::TooLarge {
            limit_mib: memory / (1024 * 1024),
        };
    }
    if matches!(status.signal(), Some(libc::SIGXCPU | libc::SIGKILL)) {
        return PdfError::TooSlow(timeout);
    }
    let tail: String = complaints
        .chars()
        .rev()
        .take(500)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    PdfError::Worker(format!("the worker exited with {status}: {}", tail.trim()))
}

fn unexpected(response: Response) -> PdfError {
    PdfError::Worker(format!("unexpected answer from the worker: {response:?}"))
}

/// A header line and its parts, as the protocol sends them.
fn encode<T: serde::Serialize>(header: &T, parts: &[&[u8]]) -> Result<Vec<u8>, PdfError> {
    let mut out = serde_json::to_vec(header).map_err(|e| PdfError::Worker(format!("encoding the request: {e}")))?;
    out.push(b'\n');
    for part in parts {
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// Splits a message into its header and parts. The header names the parts'
/// lengths, which must add up to the rest exactly.
fn decode<T: serde::de::DeserializeOwned + HasParts>(bytes: &[u8]) -> Result<(T, Vec<Vec<u8>>), String> {
    let newline = bytes.iter().position(|b| *b == b'\n').ok_or("no header line")?;
    let header: T = serde_json::from_slice(&bytes[..newline]).map_err(|e| format!("a bad header: {e}"))?;
    let mut rest = &bytes[newline + 1..];
    let mut parts = Vec::with_capacity(header.lengths().len());
    for &length in header.lengths() {
        if length > rest.len() {
            return Err(format!("a part of {length} bytes, but only {} follow", rest.len()));
        }
        let (part, after) = rest.split_at(length);
        parts.push(part.to_vec());
        rest = after;
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after the last part", rest.len()));
    }
    Ok((header, parts))
}

/// A message whose header lists its parts' lengths.
trait HasParts {
    fn lengths(&self) -> &[usize];
}

impl HasParts for Request {
    fn lengths(&self) -> &[usize] {
        self.parts()
    }
}

impl HasParts for Response {
    fn lengths(&self) -> &[usize] {
        match self {
            Response::Signed { parts } => parts,
            _ => &[],
        }
    }
}

/// The worker's side: the answer to the request in `input`, both in the
/// protocol's form. Pure: `signhook pdf-worker` feeds it stdin and writes
/// what it returns to stdout. A document that breaks the parser does not
/// return at all — the process dies, within its limits, and the pool says
/// why.
pub fn serve(input: &[u8]) -> Vec<u8> {
    let (response, parts) = match decode::<Request>(input) {
        Ok((request, documents)) => answer(request, documents),
        Err(message) => (Response::Invalid { message }, Vec::new()),
    };
    let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    encode(&response, &parts)
        .unwrap_or_else(|e| format!("{{\"outcome\":\"invalid\",\"message\":\"{e}\"}}\n").into_bytes())
}

fn answer(request: Request, documents: Vec<Vec<u8>>) -> (Response, Vec<Vec<u8>>) {
    let refused = |e: DocumentError| (Response::Refused { message: e.to_string() }, Vec::new());
    match request {
        Request::Inspect { .. } => match documents.as_slice() {
            [pdf] => match signhook_documents::inspect(pdf) {
                Ok(info) => (Response::Inspected { info }, Vec::new()),
                Err(e) => refused(e),
            },
            _ => (
                Response::Invalid {
                    message: format!("inspect takes one document, not {}", documents.len()),
                },
                Vec::new(),
            ),
        },
        Request::Sign { signing, fonts, .. } => {
            // A font or a seal that fails is our fault, never the documents'.
            let invalid = |message: String| (Response::Invalid { message }, Vec::new());
            let fonts = match fonts.iter().map(|path| read_font(path)).collect::<Result<Vec<_>, _>>() {
                Ok(preferred) => Fonts::preferring(preferred),
                Err(e) => return invalid(signhook_core::error_chain(&e)),
            };
            let sealer = match signing.seal.sealer() {
                Ok(sealer) => sealer,
                Err(e) => return invalid(format!("the seal key cannot seal: {e}")),
            };
            let refs: Vec<&[u8]> = documents.iter().map(Vec::as_slice).collect();
            let signed = signhook_documents::signed_pdf(
                &fonts,
                &signing.request_id,
                &signing.request_name,
                &refs,
                &signing.signatures,
            );
            let signed = match signed {
                Ok(signed) => signed,
                Err(e) => return refused(e),
            };
            let signed = match signhook_documents::seal(&signed, &sealer, signing.sealed_at) {
                Ok(sealed) => sealed,
                Err(e) => return invalid(format!("sealing the signed PDF: {e}")),
            };
            let certificate = signhook_documents::audit_certificate(
                &fonts,
                &AuditCertificate {
                    request_id: signing.request_id,
                    request_name: signing.request_name,
                    completed_at: signing.completed_at,
                    documents: signing.documents,
                    // The hash of the file as served: sealed.
                    signed_pdf_sha256: crate::lifecycle::hex_sha256(&signed),
                    signers: signing.signatures,
                    trail: signing.trail,
                },
            );
            let certificate = match certificate {
                Ok(certificate) => certificate,
                Err(e) => return refused(e),
            };
            match signhook_documents::seal(&certificate, &sealer, signing.sealed_at) {
                Ok(certificate) => (
                    Response::Signed {
                        parts: vec![signed.len(), certificate.len()],
                    },
                    vec![signed, certificate],
                ),
                Err(e) => invalid(format!("sealing the audit certificate: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PDF: &[u8] = include_bytes!("../../signhook/tests/fixtures/contract.pdf");

    #[test]
    fn a_request_and_its_parts_survive_the_trip() {
        let request = Request::Inspect { parts: vec![PDF.len()] };
        let bytes = encode(&request, &[PDF]).unwrap();
        let (decoded, parts) = decode::<Request>(&bytes).unwrap();
        assert!(matches!(decoded, Request::Inspect { .. }));
        assert_eq!(parts, [PDF.to_vec()]);
    }

    #[test]
    fn a_message_whose_parts_do_not_add_up_is_invalid() {
        let mut bytes = encode(&Request::Inspect { parts: vec![10] }, &[b"12345"]).unwrap();
        assert!(decode::<Request>(&bytes).unwrap_err().contains("only 5 follow"));
        bytes.extend_from_slice(b"123456");
        assert!(decode::<Request>(&bytes).unwrap_err().contains("after the last part"));
        assert!(decode::<Request>(b"{}").unwrap_err().contains("no header"));
    }

    #[test]
    fn the_worker_answers_an_inspection_and_refuses_a_non_pdf() {
        let answer = serve(&encode(&Request::Inspect { parts: vec![PDF.len()] }, &[PDF]).unwrap());
        let (response, _) = decode::<Response>(&answer).unwrap();
        assert!(
            matches!(response, Response::Inspected { info } if info.pages >= 1),
            "{response:?}"
        );
        let answer = serve(&encode(&Request::Inspect { parts: vec![5] }, &[b"hello"]).unwrap());
        let (response, _) = decode::<Response>(&answer).unwrap();
        assert!(
            matches!(response, Response::Refused { ref message } if message.contains("not a PDF")),
            "{response:?}"
        );
    }

    fn signing(request_name: &str) -> Signing {
        Signing {
            request_id: "sr_1".into(),
            request_name: request_name.into(),
            completed_at: "2026-12-02 10:00:00 UTC".into(),
            signatures: vec![SignatureLine {
                name: "Ada Lovelace".into(),
                email: "ada@example.com".into(),
                signed_at: "2026-12-02 10:00:00 UTC".into(),
                ip: "127.0.0.1".into(),
                user_agent: "test".into(),
            }],
            documents: vec![],
            trail: vec![],
            seal: SealKey::from_pem(self_signed().to_pem().unwrap()),
            sealed_at: now(),
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    fn self_signed() -> Sealer {
        Sealer::self_signed("Signhook seal (self-signed)", "Test", now()).unwrap()
    }

    fn sign_job(signing: Signing, fonts: Vec<PathBuf>) -> (Response, Vec<Vec<u8>>) {
        let request = Request::Sign {
            signing,
            fonts,
            parts: vec![PDF.len()],
        };
        decode::<Response>(&serve(&encode(&request, &[PDF]).unwrap())).unwrap()
    }

    /// One of the built-in fonts, as an operator's font file.
    fn droid_sans_fallback() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../signhook-documents/fonts/DroidSansFallbackFull.ttf")
    }

    #[test]
    fn the_worker_signs_seals_and_certifies() {
        let signing = signing("MSA");
        let request = Request::Sign {
            signing: signing.clone(),
            fonts: vec![],
            parts: vec![PDF.len()],
        };
        assert!(!format!("{request:?}").contains("PRIVATE KEY"), "the key never prints");
        let (response, parts) = sign_job(signing, vec![]);
        assert!(matches!(response, Response::Signed { .. }), "{response:?}");
        let text = signhook_testkit::poppler::pdf_text(&parts[1]);
        assert!(
            text.contains(&crate::lifecycle::hex_sha256(&parts[0])),
            "the certificate holds the sealed signed PDF's hash: {text}"
        );
        for part in &parts {
            let seals = part.windows(20).filter(|w| w == b"/ETSI.CAdES.detached").count();
            assert_eq!(seals, 1, "each file is sealed once");
        }
    }

    #[test]
    fn a_seal_key_that_cannot_seal_is_the_servers_fault() {
        let mut signing = signing("MSA");
        signing.seal = SealKey::from_pem("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n".into());
        let (response, _) = sign_job(signing, vec![]);
        assert!(
            matches!(response, Response::Invalid { ref message } if message.contains("seal")),
            "{response:?}"
        );
    }

    #[test]
    fn the_worker_sets_the_pdfs_in_the_operators_fonts_first() {
        // The baht sign is in both built-in fonts; DejaVu Sans, first,
        // sets it unless Droid Sans Fallback is the operator's font.
        let (_, parts) = sign_job(signing("Rent ฿"), vec![]);
        assert!(!signhook_testkit::poppler::pdf_fonts(&parts[1]).contains("DroidSansFallback"));
        let (response, parts) = sign_job(signing("Rent ฿"), vec![droid_sans_fallback()]);
        assert!(matches!(response, Response::Signed { .. }), "{response:?}");
        for pdf in &parts {
            let fonts = signhook_testkit::poppler::pdf_fonts(pdf);
            assert!(fonts.contains("+DroidSansFallback"), "{fonts}");
        }
    }

    #[test]
    fn a_worker_that_cannot_read_a_font_says_which() {
        let (response, _) = sign_job(signing("MSA"), vec!["/nonexistent/brand.ttf".into()]);
        assert!(
            matches!(&response, Response::Invalid { message }
                if message.starts_with("cannot read the PDF font /nonexistent/brand.ttf: ")),
            "{response:?}"
        );
    }

    #[test]
    fn fonts_are_checked_when_loaded() {
        let fonts = PdfFonts::load(&[droid_sans_fallback()]).unwrap();
        assert!(fonts.paths[0].is_absolute());
        let missing = PdfFonts::load(&["/nonexistent/brand.ttf".into()]).unwrap_err();
        assert_eq!(missing.to_string(), "cannot read the PDF font /nonexistent/brand.ttf");
        let not_a_font = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let error = PdfFonts::load(std::slice::from_ref(&not_a_font)).unwrap_err();
        assert_eq!(
            signhook_core::error_chain(&error),
            format!(
                "the PDF font {} cannot be used: it is not a TrueType or OpenType font \
                 (.ttf, .otf, or the first font of a .ttc)",
                not_a_font.display()
            )
        );
    }

    #[test]
    fn memory_grows_with_the_input_up_to_a_cap() {
        assert_eq!(memory_limit(0), 512 * 1024 * 1024);
        assert_eq!(memory_limit(1024 * 1024), 520 * 1024 * 1024);
        assert_eq!(memory_limit(usize::MAX / 16), 6 * 1024 * 1024 * 1024);
    }
}
