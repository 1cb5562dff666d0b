//! The documents of an e-signature request: checking uploaded PDFs, producing
//! the signed PDF and the audit certificate.
//!
//! Everything here is a pure function from bytes to bytes: no I/O, no async,
//! no clock. Hashing (SHA-256 of uploads and of the signed PDF) is done by
//! the caller, who stores the hashes anyway; this crate only prints them.
//!
//! # Layout
//!
//! - [`inspect`] accepts or refuses an upload ([`DocumentError`] says why in
//!   words a user can act on) and counts its pages.
//! - [`signed_pdf`] merges a request's documents, in order, and appends one
//!   signature page listing every [`SignatureLine`].
//! - [`audit_certificate`] renders an [`AuditCertificate`] (documents and
//!   their hashes, signers and how they were authenticated, the
//!   chronological trail in sentences) as a standalone PDF.
//! - [`seal`] signs a finished PDF with a [`Sealer`]'s key (a PAdES
//!   signature in an incremental update), so that readers can tell it is
//!   unmodified.
//! - [`Fonts`] are what those two pages are set in: the built-in DejaVu Sans
//!   and Droid Sans Fallback (Latin, Greek, Cyrillic, Arabic, Hebrew,
//!   Chinese, Japanese),
//!   after any [`FontFile`] the operator prefers. Only the glyphs used are
//!   embedded, with a ToUnicode map, so names in any script print, and can
//!   be searched and copied.
//! - `layout` (private) typesets lines of text onto A4 pages with krilla:
//!   bidi ordering, per-character font fallback, shaping with rustybuzz; it
//!   is not a general layout engine. `trail` (private) turns each audit-trail
//!   action into a sentence.
//! - lopdf reads uploads and merges them with the signature page.
//!
//! ```
//! use signhook_documents::{audit_certificate, inspect, AuditCertificate, Fonts};
//! let pdf = audit_certificate(&Fonts::builtin(), &AuditCertificate {
//!     request_id: "req_1".into(),
//!     request_name: "Umowa — Łódź 合同".into(),
//!     completed_at: "2025-01-02 03:04:05 UTC".into(),
//!     documents: vec![],
//!     signed_pdf_sha256: "00".repeat(32),
//!     signers: vec![],
//!     trail: vec![],
//! })?;
//! assert_eq!(inspect(&pdf)?.pages, 1);
//! # Ok::<(), signhook_documents::DocumentError>(())
//! ```

#![deny(missing_docs)]

mod fonts;
mod layout;
mod seal;
mod trail;

use std::collections::HashSet;

pub use fonts::{FontError, FontFile, Fonts};
use layout::{Block, Typesetter, Weight};
use lopdf::{dictionary, Dictionary, Document, Object, ObjectId};
pub use seal::{seal, SealKeyError, Sealer, SEAL_REASON};
pub use trail::{tell, Told};

/// What an uploaded file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PdfInfo {
    /// Number of pages, at least 1.
    pub pages: u32,
}

/// Why a PDF was refused or could not be produced.
///
/// The messages are written for the person who uploaded the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// The bytes are not a PDF at all.
    #[error("the file is not a PDF (it does not start with %PDF-)")]
    NotPdf,
    /// The file claims to be a PDF but does not parse, or has no pages.
    #[error("the PDF cannot be read: {0}")]
    Unreadable(String),
    /// Encrypted (password-protected) PDFs are refused: we cannot append a
    /// signature page to them.
    #[error("the PDF is encrypted; remove its password protection and upload it again")]
    Encrypted,
    /// Reading the PDF unpacks far more than the file holds (a
    /// decompression bomb, or a file that would swell every copy of it).
    #[error(
        "the PDF expands too much once decompressed: {expanded_mib} MiB from a {file_mib} MiB file \
         (at most {limit_mib} MiB)"
    )]
    TooExpanded {
        /// What reading it unpacked, in MiB.
        expanded_mib: usize,
        /// The file's size, in MiB.
        file_mib: usize,
        /// The most a file of this size may unpack to, in MiB.
        limit_mib: usize,
    },
    /// Producing an output failed. This should not happen for inputs that
    /// passed [`inspect`].
    #[error("the PDF could not be produced: {0}")]
    Render(String),
}

/// One signer's line on the signature page and in the audit certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignatureLine {
    /// The signer's name as they gave it.
    pub name: String,
    /// The signer's e-mail address.
    pub email: String,
    /// When they signed, already formatted for reading, with its zone:
    /// `2026-12-01 10:04:05 UTC`.
    pub signed_at: String,
    /// The IP address they signed from.
    pub ip: String,
    /// The browser's `User-Agent` when they signed.
    pub user_agent: String,
}

/// Everything the audit certificate states about a completed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCertificate {
    /// The signature request's id.
    pub request_id: String,
    /// The signature request's name.
    pub request_name: String,
    /// When the last signer signed, formatted like
    /// [`SignatureLine::signed_at`].
    pub completed_at: String,
    /// The original uploads, in request order.
    pub documents: Vec<AuditDocument>,
    /// SHA-256 (lowercase hex) of the PDF returned by [`signed_pdf`].
    pub signed_pdf_sha256: String,
    /// Every signer, in signing order.
    pub signers: Vec<SignatureLine>,
    /// The request's events, oldest first.
    pub trail: Vec<TrailEntry>,
}

/// One original upload as listed on the audit certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditDocument {
    /// The file name as uploaded.
    pub name: String,
    /// SHA-256 (lowercase hex) of the uploaded bytes.
    pub sha256: String,
    /// Page count, as reported by [`inspect`].
    pub pages: u32,
}

/// One event of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrailEntry {
    /// When it happened, formatted like [`SignatureLine::signed_at`].
    pub at: String,
    /// What happened, e.g. `signer.done`: an event type of the catalog, or
    /// another step the store records (`signature_request.created`,
    /// `document.added`, …). The certificate says it in a sentence; an
    /// action it has no sentence for is printed as it is, with the detail.
    pub action: String,
    /// Who did it: `Ada Lovelace <ada@example.com>`, `API (live key)`,
    /// `scheduler`, `mailer`.
    pub actor: String,
    /// The actor's IP address, when the event came from a browser.
    pub ip: Option<String>,
    /// The actor's `User-Agent`, when the event came from a browser.
    pub user_agent: Option<String>,
    /// Anything else worth recording, in plain words. Whom a step concerns
    /// comes first, as `signer Ada Lovelace <ada@example.com>` (or
    /// `approver …`), then `: ` and the reason of a decline or rejection.
    pub detail: Option<String>,
}

/// Checks an upload: it must start with `%PDF-`, parse, not be encrypted,
/// have at least one page, and not unpack to much more than its own size
/// ([`expansion_limit`]).
///
/// The parser recurses on nested arrays and dictionaries without a bound:
/// run this where a stack overflow costs only the caller's process (the
/// server runs it in a worker process with kernel limits).
pub fn inspect(bytes: &[u8]) -> Result<PdfInfo, DocumentError> {
    let (_, pages) = load(bytes)?;
    let pages =
        u32::try_from(pages.len()).map_err(|_| DocumentError::Unreadable("the PDF has too many pages".into()))?;
    Ok(PdfInfo { pages })
}

/// Produces the signed PDF: every document, in order, merged into one PDF,
/// followed by one signature page titled "Signatures — {request_name}" that
/// lists each signer (name, e-mail, time, IP, user agent) and the request id,
/// set in `fonts`.
///
/// The result has exactly one page more than the documents together. The
/// signature page shrinks its text, down to about half size, to fit many
/// signers (about 9 fit at full size, at least 20 at the smallest); beyond that the last
/// signers are left out and a line points to the audit certificate, which
/// lists them all.
///
/// Each document must pass [`inspect`]; its error is returned otherwise.
/// The output is deterministic: the same inputs give the same bytes, so its
/// hash can be recomputed.
pub fn signed_pdf(
    fonts: &Fonts,
    request_id: &str,
    request_name: &str,
    documents: &[&[u8]],
    signatures: &[SignatureLine],
) -> Result<Vec<u8>, DocumentError> {
    let typesetter = Typesetter::new(fonts);
    let page = signature_page(&typesetter, request_id, request_name, signatures);
    let footer = |_, _| format!("Signed with Signhook. Request {request_id}.");
    let page = typesetter.render(&format!("Signatures — {request_name}"), &[page], footer)?;

    let mut merged = Document::with_version("1.7");
    let pages_id = merged.new_object_id();
    let mut kids = Vec::new();
    let mut next_id = pages_id.0 + 1;
    for bytes in documents.iter().copied().chain([page.as_slice()]) {
        let (mut doc, _) = load(bytes)?;
        // Give this document's objects ids that no earlier document uses.
        doc.renumber_objects_with(next_id);
        next_id = doc.max_id + 1;
        let page_ids: Vec<ObjectId> = doc.page_iter().collect();
        let pages: HashSet<ObjectId> = page_ids.iter().copied().collect();
        for &id in &page_ids {
            let mut page = with_inherited_attributes(&doc, id)?;
            page.set("Parent", pages_id);
            merged.objects.insert(id, Object::Dictionary(page));
            kids.push(id);
        }
        // Everything but the old page tree and catalog comes along; what is
        // no longer reachable (outlines, metadata) is pruned below.
        for (id, object) in doc.objects {
            let is_tree = matches!(object.type_name(), Ok(b"Catalog" | b"Pages"));
            if !pages.contains(&id) && !is_tree {
                merged.objects.insert(id, object);
            }
        }
    }
    merged.max_id = next_id - 1;
    finish(merged, pages_id, kids)
}

/// How the certificate says each signer was authenticated.
const AUTHENTICATION: &str = "Authenticated by possession of the personal signing link sent to their e-mail address.";

/// Renders the audit certificate as a standalone PDF of one or more pages,
/// set in `fonts`.
///
/// Every page carries the request id and its page number in the footer.
/// Like [`signed_pdf`], the output is deterministic.
pub fn audit_certificate(fonts: &Fonts, cert: &AuditCertificate) -> Result<Vec<u8>, DocumentError> {
    let mut blocks = vec![Block::new(0.0)
        .text(Weight::Bold, 18.0, 0.0, "Audit certificate")
        .text(Weight::Regular, 10.0, 0.0, &format!("Request: {}", cert.request_name))
        .text(Weight::Regular, 10.0, 0.0, &format!("Request id: {}", cert.request_id))
        .text(
            Weight::Regular,
            10.0,
            0.0,
            &format!("Completed at: {}", cert.completed_at),
        )];

    let documents = cert.documents.iter().enumerate().map(|(i, document)| {
        let pages = if document.pages == 1 { "page" } else { "pages" };
        Block::new(6.0)
            .text(
                Weight::Bold,
                10.0,
                0.0,
                &format!("{}. {} ({} {pages})", i + 1, document.name, document.pages),
            )
            .text(Weight::Regular, 9.0, 12.0, &format!("SHA-256: {}", document.sha256))
    });
    let signed = Block::new(6.0)
        .text(
            Weight::Bold,
            10.0,
            0.0,
            "Signed PDF (the documents above and the signature page)",
        )
        .text(
            Weight::Regular,
            9.0,
            12.0,
            &format!("SHA-256: {}", cert.signed_pdf_sha256),
        );
    section(&mut blocks, "Documents", documents.chain([signed]).collect());

    let signers = cert
        .signers
        .iter()
        .enumerate()
        .map(|(i, signer)| signer_block(i, signer, 1.0).text(Weight::Regular, 9.0, 12.0, AUTHENTICATION))
        .collect();
    section(&mut blocks, "Signers", signers);

    let trail = cert.trail.iter().map(|entry| {
        let told = trail::tell(entry);
        let mut block = Block::new(4.0).text(Weight::Regular, 9.0, 0.0, &format!("{} — {}", entry.at, told.sentence));
        let origin = match (&entry.ip, &entry.user_agent) {
            (Some(ip), Some(agent)) => Some(format!("From IP {ip}, user agent {agent}")),
            (Some(ip), None) => Some(format!("From IP {ip}")),
            (None, Some(agent)) => Some(format!("User agent {agent}")),
            (None, None) => None,
        };
        for line in told.rest.iter().chain(&origin) {
            block = block.text(Weight::Regular, 8.0, 12.0, line);
        }
        block
    });
    section(&mut blocks, "Audit trail", trail.collect());

    let typesetter = Typesetter::new(fonts);
    let pages = typesetter.paginate(&blocks);
    let footer = |page: usize, count: usize| {
        format!(
            "Audit certificate for request {}. Page {} of {count}.",
            cert.request_id,
            page + 1
        )
    };
    typesetter.render(&format!("Audit certificate — {}", cert.request_name), &pages, footer)
}

/// The most that reading a file of `file_len` bytes may unpack: object
/// streams are kept decompressed once read (other streams stay as they
/// are), so a genuine file holds barely more than its own size; twice that
/// and 16 MiB more leaves room for any real one.
pub fn expansion_limit(file_len: usize) -> usize {
    file_len.saturating_mul(2).saturating_add(16 * 1024 * 1024)
}

/// Parses `bytes` with the checks of [`inspect`], returning the document and
/// its page ids in reading order.
fn load(bytes: &[u8]) -> Result<(Document, Vec<ObjectId>), DocumentError> {
    // lopdf tolerates junk before the header; an upload must not have any,
    // since it is sent on as-is and other readers are stricter.
    if !bytes.starts_with(b"%PDF-") {
        return Err(DocumentError::NotPdf);
    }
    let doc = Document::load_mem(bytes)
        .map_err(|e| DocumentError::Unreadable(format!("it is damaged or incomplete ({e})")))?;
    // lopdf opens files encrypted with an empty user password by decrypting
    // them, so the trailer is the only reliable sign of encryption.
    if doc.trailer.has(b"Encrypt") {
        return Err(DocumentError::Encrypted);
    }
    // What the parser unpacked stays in the document, and in every copy
    // made from it (the signed PDF): refuse a file that swells.
    let expanded: usize = doc
        .objects
        .values()
        .filter_map(|object| object.as_stream().ok())
        .map(|stream| stream.content.len())
        .sum();
    let limit = expansion_limit(bytes.len());
    if expanded > limit {
        const MIB: usize = 1024 * 1024;
        return Err(DocumentError::TooExpanded {
            expanded_mib: expanded / MIB,
            file_mib: bytes.len().div_ceil(MIB),
            limit_mib: limit / MIB,
        });
    }
    if doc.catalog().is_err() {
        return Err(DocumentError::Unreadable("it has no document catalog".into()));
    }
    let pages: Vec<ObjectId> = doc.page_iter().collect();
    if pages.is_empty() {
        return Err(DocumentError::Unreadable("it has no pages".into()));
    }
    Ok((doc, pages))
}

/// The page attributes a page may inherit from its ancestors in the page
/// tree (ISO 32000-1, 7.7.3.4).
const INHERITABLE: [&[u8]; 4] = [b"Resources", b"MediaBox", b"CropBox", b"Rotate"];

/// A copy of the page dictionary with the inheritable attributes it lacks
/// copied from its ancestors, so that it keeps its size and fonts once it
/// hangs from a new, flat page tree.
fn with_inherited_attributes(doc: &Document, page_id: ObjectId) -> Result<Dictionary, DocumentError> {
    let mut page = doc
        .get_dictionary(page_id)
        .map_err(|e| DocumentError::Render(format!("a page went missing while merging ({e})")))?
        .clone();
    let mut parent = page.get(b"Parent").and_then(Object::as_reference).ok();
    // The depth bound guards against a Parent cycle in a malformed file.
    for _ in 0..64 {
        let Some(node) = parent.and_then(|id| doc.get_dictionary(id).ok()) else {
            break;
        };
        for key in INHERITABLE {
            if let (false, Ok(value)) = (page.has(key), node.get(key)) {
                page.set(key, value.clone());
            }
        }
        parent = node.get(b"Parent").and_then(Object::as_reference).ok();
    }
    Ok(page)
}

/// The signature page's lines, shrunk until they fit on one page and cut
/// short (with a pointer to the audit certificate) if even that is not
/// enough.
fn signature_page(
    typesetter: &Typesetter,
    request_id: &str,
    request_name: &str,
    signatures: &[SignatureLine],
) -> Vec<layout::Line> {
    let build = |scale: f32, shown: usize| {
        let mut blocks = vec![Block::new(0.0)
            .text(Weight::Bold, 16.0 * scale, 0.0, &format!("Signatures — {request_name}"))
            .text(Weight::Regular, 10.0 * scale, 0.0, &format!("Request id: {request_id}"))
            .text(
                Weight::Regular,
                10.0 * scale,
                0.0,
                "The people below signed the documents above electronically. \
                 The audit certificate of this request records every step.",
            )];
        blocks.extend(
            signatures[..shown]
                .iter()
                .enumerate()
                .map(|(i, s)| signer_block(i, s, scale)),
        );
        if shown < signatures.len() {
            let note = format!(
                "… and {} more signers, listed in the audit certificate of this request.",
                signatures.len() - shown
            );
            blocks.push(Block::new(8.0 * scale).text(Weight::Bold, 10.0 * scale, 0.0, &note));
        }
        typesetter.paginate(&blocks)
    };

    const SMALLEST: f32 = 0.55;
    for scale in [1.0, 0.85, 0.7, SMALLEST] {
        let pages = build(scale, signatures.len());
        if pages.len() == 1 {
            return pages.into_iter().next().unwrap_or_default();
        }
    }
    // Binary search for the most signers that fit with the note, so that a
    // request with thousands of signers costs a dozen layouts, not thousands.
    // Invariant: `fits` signers fit (0 always does), `too_many` do not.
    let (mut fits, mut too_many) = (0, signatures.len());
    while too_many - fits > 1 {
        let middle = (fits + too_many) / 2;
        if build(SMALLEST, middle).len() == 1 {
            fits = middle;
        } else {
            too_many = middle;
        }
    }
    build(SMALLEST, fits).swap_remove(0)
}

/// One signer as shown on the signature page and the audit certificate.
fn signer_block(index: usize, signer: &SignatureLine, scale: f32) -> Block {
    Block::new(10.0 * scale)
        .text(
            Weight::Bold,
            11.0 * scale,
            0.0,
            &format!("{}. {}", index + 1, signer.name),
        )
        .text(
            Weight::Regular,
            10.0 * scale,
            12.0,
            &format!("E-mail: {}", signer.email),
        )
        .text(
            Weight::Regular,
            10.0 * scale,
            12.0,
            &format!("Signed at {} from IP {}", signer.signed_at, signer.ip),
        )
        .text(
            Weight::Regular,
            8.0 * scale,
            12.0,
            &format!("User agent: {}", signer.user_agent),
        )
}

/// Appends a section heading and its blocks; the heading joins the first
/// block so that it never ends a page alone.
fn section(blocks: &mut Vec<Block>, title: &str, mut content: Vec<Block>) {
    let heading = Block::new(16.0).text(Weight::Bold, 13.0, 0.0, title);
    if content.is_empty() {
        blocks.push(heading.text(Weight::Regular, 10.0, 0.0, "None."));
        return;
    }
    let first = content.remove(0);
    blocks.push(heading.append(first));
    blocks.extend(content);
}

/// Links `kids` under a new page tree root and catalog, drops unreachable
/// objects and serialises the document.
fn finish(mut doc: Document, pages_id: ObjectId, kids: Vec<ObjectId>) -> Result<Vec<u8>, DocumentError> {
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids.into_iter().map(Object::Reference).collect::<Vec<_>>(),
            "Count" => count,
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer = dictionary! { "Root" => catalog };
    doc.prune_objects();
    let mut out = Vec::new();
    doc.save_to(&mut out)
        .map_err(|e| DocumentError::Render(format!("writing the PDF failed: {e}")))?;
    Ok(out)
}
