//! The seal: a PDF digital signature made with the platform's certificate,
//! so that any reader can tell that a signed PDF or an audit certificate is
//! the one Signhook produced, unmodified.
//!
//! [`seal`] appends the signature to a finished PDF as an incremental update
//! (the original bytes stay, byte for byte, at the start of the sealed
//! file). The signature is PAdES baseline B-B (ETSI EN 319 142-1): subfilter
//! `/ETSI.CAdES.detached`, a CMS SignedData over SHA-256 (SHA-384 for P-384
//! keys) of every byte but the signature value, with the signer's
//! certificate bound by an ESS signing-certificate-v2 attribute and the
//! signing time in `/M`. There is no timestamp (that would be B-T): the
//! time is the server's word.
//!
//! # Layout
//!
//! - [`Sealer`] (`keys`): the key and certificate chain, from PEM or
//!   PKCS#12 (`pfx`) or made self-signed.
//! - `signed_data`: the CMS structure.
//! - `update`: the incremental update and its placeholders.
//!
//! ```
//! use signhook_documents::{seal, Sealer};
//! let now = chrono::Utc::now();
//! let sealer = Sealer::self_signed("Signhook seal (self-signed)", "Example", now)?;
//! let fonts = signhook_documents::Fonts::builtin();
//! let pdf = signhook_documents::audit_certificate(&fonts, &signhook_documents::AuditCertificate {
//!     request_id: "req_1".into(),
//!     request_name: "NDA".into(),
//!     completed_at: "2025-01-02 03:04:05 UTC".into(),
//!     documents: vec![],
//!     signed_pdf_sha256: "00".repeat(32),
//!     signers: vec![],
//!     trail: vec![],
//! })?;
//! let sealed = seal(&pdf, &sealer, now)?;
//! assert!(sealed.starts_with(&pdf), "an incremental update keeps the original bytes");
//! assert_eq!(signhook_documents::inspect(&sealed)?.pages, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod keys;
mod pfx;
mod signed_data;
mod update;

pub use keys::{SealKeyError, Sealer};

use crate::DocumentError;
use chrono::{DateTime, Utc};

/// The `/Reason` of every seal.
pub const SEAL_REASON: &str =
    "Sealed by Signhook: this document has not changed since it was produced if this signature is valid";

/// Seals `pdf` with `sealer`'s key, stating `signing_time` as the time of
/// signing. `pdf` must pass [`crate::inspect`]. The result is `pdf` followed
/// by the update that carries the signature.
///
/// ECDSA signatures are randomized: sealing the same bytes twice gives two
/// different files, both valid. Hash what you store, not what you expect.
pub fn seal(pdf: &[u8], sealer: &Sealer, signing_time: DateTime<Utc>) -> Result<Vec<u8>, DocumentError> {
    let (doc, pages) = crate::load(pdf)?;
    let info = update::SignatureInfo {
        time: signing_time.format("D:%Y%m%d%H%M%S+00'00'").to_string(),
        name: sealer.signer_name(),
        reason: SEAL_REASON.to_owned(),
        capacity: contents_capacity(sealer),
    };
    let mut prepared = update::prepare(pdf, &doc, pages[0], &info)?;
    let covered = update::fill_byte_range(&mut prepared)?;
    let mut digest = ring::digest::Context::new(sealer.digest().ring());
    for range in covered {
        digest.update(&prepared.bytes[range]);
    }
    let cms = signed_data::signed_data(sealer, digest.finish().as_ref())
        .map_err(|e| DocumentError::Render(format!("sealing the PDF failed: {e}")))?;
    // The hex digits sit between the placeholder's < and >.
    let digits = prepared.contents.start + 1..prepared.contents.end - 1;
    let hex: Vec<u8> = cms.iter().flat_map(|b| format!("{b:02X}").into_bytes()).collect();
    if hex.len() > digits.len() {
        return Err(DocumentError::Render(format!(
            "sealing the PDF failed: the signature takes {} bytes, {} were reserved",
            cms.len(),
            digits.len() / 2
        )));
    }
    // What is left of the placeholder stays zeros, which DER ignores.
    prepared.bytes[digits.start..digits.start + hex.len()].copy_from_slice(&hex);
    Ok(prepared.bytes)
}

/// The room `/Contents` gets: the certificates and the signature, which
/// vary, and a margin for the fixed structure around them (about 400
/// bytes with the attributes).
fn contents_capacity(sealer: &Sealer) -> usize {
    let certificates: usize = sealer
        .chain()
        .iter()
        .map(|c| der::Encode::encoded_len(c).map_or(4096, |len| usize::try_from(u32::from(len)).unwrap_or(4096)))
        .sum();
    certificates + sealer.max_signature_len() + 2048
}
