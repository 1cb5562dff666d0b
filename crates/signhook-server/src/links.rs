//! Links that are credentials: a signer's signing link, an approver's
//! approval link, and the 30-minute links to a finished request's files.
//!
//! All are HMAC-SHA256 over what they grant, keyed by the cluster's link key
//! (kept in the database so every node signs and checks alike). Nothing is
//! stored per link: a signing token is the signer's id (and, once renewed,
//! its link version) and a MAC of it, so a token can be recomputed to show
//! it again to the API caller, and cannot be forged or moved to another
//! signer. Renewing a signer's link bumps the version kept in the
//! database; a token for an older version is genuine but no longer opens. File links also carry their expiry in
//! the MAC, so a link's lifetime cannot be stretched by editing the URL.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use signhook_core::ids::{ApproverId, SignatureRequestId, SignerId};
use signhook_core::lifecycle::Signer;
use signhook_core::time::{from_millis, rfc3339, to_millis};
use subtle::ConstantTimeEq;
use url::Url;

/// The two files of a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The documents with the signature page appended.
    SignedPdf,
    /// Who signed, when, from where, with the documents' hashes.
    AuditCertificate,
}

impl FileKind {
    /// The file's name in URLs and in the blob store.
    pub fn file_name(self) -> &'static str {
        match self {
            FileKind::SignedPdf => "signed.pdf",
            FileKind::AuditCertificate => "audit_certificate.pdf",
        }
    }

    /// Parses a file name of a link.
    pub fn parse(name: &str) -> Option<Self> {
        [FileKind::SignedPdf, FileKind::AuditCertificate]
            .into_iter()
            .find(|kind| kind.file_name() == name)
    }

    /// Where the file lives in the blob store.
    pub fn blob_key(self, request: &SignatureRequestId) -> String {
        format!("{request}/{}", self.file_name())
    }
}

/// Why a file link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// Not a link we made (or edited): answered like a missing file.
    Invalid,
    /// A genuine link past its expiry: 410 Gone.
    Expired,
}

/// Makes and checks links.
#[derive(Clone)]
pub struct Links {
    key: Vec<u8>,
    public_url: Url,
    ttl: std::time::Duration,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("key", &"[redacted]")
            .field("public_url", &self.public_url.as_str())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Links {
    /// Links under `public_url`, file links valid for `ttl`.
    pub fn new(key: Vec<u8>, public_url: Url, ttl: std::time::Duration) -> Self {
        Self { key, public_url, ttl }
    }

    fn mac(&self, purpose: &str, subject: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(purpose.as_bytes());
        mac.update(b"\n");
        mac.update(subject.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn check(&self, purpose: &str, subject: &str, given: &str) -> bool {
        bool::from(self.mac(purpose, subject).as_bytes().ct_eq(given.as_bytes()))
    }

    fn url(&self, path: &str) -> String {
        let base = self.public_url.as_str().trim_end_matches('/');
        format!("{base}{path}")
    }

    /// A signer's token for link version `version`: `{id}.{mac}` for the
    /// first link (as made before links could be renewed), then
    /// `{id}.{version}.{mac}`.
    fn signer_token(&self, signer: &SignerId, version: u32) -> String {
        if version == 0 {
            format!("{signer}.{}", self.mac("signer", signer.as_str()))
        } else {
            let subject = format!("{signer}.{version}");
            format!("{subject}.{}", self.mac("signer", &subject))
        }
    }

    /// The signer's current signing link.
    pub fn signing_url(&self, signer: &Signer) -> String {
        self.url(&format!(
            "/signing/{}",
            self.signer_token(&signer.id, signer.link_version)
        ))
    }

    /// The signer a token stands for and the link version it was made for,
    /// if it is genuine.
    pub fn signer_of(&self, token: &str) -> Option<(SignerId, u32)> {
        let (subject, mac) = token.rsplit_once('.')?;
        let (id, version) = match subject.split_once('.') {
            None => (subject, 0),
            Some((id, version)) => (id, version.parse().ok().filter(|v| *v > 0)?),
        };
        let id = SignerId::parse(id).ok()?;
        self.check("signer", subject, mac).then_some((id, version))
    }

    /// The approver's approval link.
    pub fn approval_url(&self, approver: &ApproverId) -> String {
        let token = format!("{approver}.{}", self.mac("approver", approver.as_str()));
        self.url(&format!("/approvals/{token}"))
    }

    /// The approver a token stands for, if it is genuine.
    pub fn approver_of(&self, token: &str) -> Option<ApproverId> {
        let (id, mac) = token.split_once('.')?;
        let id = ApproverId::parse(id).ok()?;
        self.check("approver", id.as_str(), mac).then_some(id)
    }

    fn file_path(request: &SignatureRequestId, kind: FileKind) -> String {
        format!("/files/{request}/{}", kind.file_name())
    }

    /// A fresh link to a file, valid for the link TTL from `now`: `{url, expires_at}`.
    pub fn file_link(&self, request: &SignatureRequestId, kind: FileKind, now: DateTime<Utc>) -> serde_json::Value {
        let expires_at = now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
        let expires = to_millis(expires_at);
        let path = Self::file_path(request, kind);
        let token = self.mac("file", &format!("{path}?expires={expires}"));
        serde_json::json!({
            "url": self.url(&format!("{path}?expires={expires}&token={token}")),
            "expires_at": rfc3339(from_millis(expires)),
        })
    }

    /// Both files' links, as `links` of a `done` payload.
    pub fn file_links(&self, request: &SignatureRequestId, now: DateTime<Utc>) -> serde_json::Value {
        serde_json::json!({
            "signed_pdf": self.file_link(request, FileKind::SignedPdf, now),
            "audit_certificate": self.file_link(request, FileKind::AuditCertificate, now),
        })
    }

    /// Checks a file link's `expires` and `token` at `now`.
    pub fn check_file_link(
        &self,
        request: &SignatureRequestId,
        kind: FileKind,
        expires: i64,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LinkRefusal> {
        let path = Self::file_path(request, kind);
        if !self.check("file", &format!("{path}?expires={expires}"), token) {
            return Err(LinkRefusal::Invalid);
        }
        if to_millis(now) >= expires {
            return Err(LinkRefusal::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Links {
        Links::new(
            b"k".repeat(32),
            Url::parse("https://sign.example.com/").unwrap(),
            std::time::Duration::from_secs(1800),
        )
    }

    #[test]
    fn signing_tokens_are_bound_to_their_signer_and_version() {
        let links = links();
        let (a, b) = (SignerId::generate(), SignerId::generate());
        let token = links.signer_token(&a, 0);
        assert_eq!(links.signer_of(&token), Some((a.clone(), 0)));
        // Another signer's id with this MAC, or a tampered MAC, is nobody.
        let (_, mac) = token.split_once('.').unwrap();
        assert_eq!(links.signer_of(&format!("{b}.{mac}")), None);
        assert_eq!(links.signer_of(&format!("{a}.{}x", &mac[1..])), None);
        // A renewed link names its version, which cannot be edited.
        let renewed = links.signer_token(&a, 2);
        assert_eq!(links.signer_of(&renewed), Some((a.clone(), 2)));
        let (_, renewed_mac) = renewed.rsplit_once('.').unwrap();
        for forged in [
            format!("{a}.3.{renewed_mac}"),
            format!("{a}.1.{renewed_mac}"),
            format!("{a}.0.{mac}"),
            format!("{a}.2.{mac}"),
            format!("{a}.{renewed_mac}"),
        ] {
            assert_eq!(links.signer_of(&forged), None, "{forged}");
        }
        let mut signer = signhook_core::lifecycle::Signer::new("Ada".into(), "ada@example.com".into());
        signer.link_version = 2;
        assert!(links
            .signing_url(&signer)
            .starts_with(&format!("https://sign.example.com/signing/{}.2.", signer.id)));
        // A signer token is not an approver token.
        assert_eq!(links.approver_of(&token), None);
    }

    #[test]
    fn file_links_expire_and_cannot_be_stretched() {
        let links = links();
        let request = SignatureRequestId::generate();
        let now: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
        let link = links.file_link(&request, FileKind::SignedPdf, now);
        let url = Url::parse(link["url"].as_str().unwrap()).unwrap();
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        let expires: i64 = query["expires"].parse().unwrap();
        let token = &query["token"];
        assert_eq!(link["expires_at"], "2026-11-22T10:30:00.000Z");
        let kind = FileKind::SignedPdf;
        assert_eq!(links.check_file_link(&request, kind, expires, token, now), Ok(()));
        let late = now + chrono::Duration::minutes(30);
        assert_eq!(
            links.check_file_link(&request, kind, expires, token, late),
            Err(LinkRefusal::Expired)
        );
        let stretched = expires + 3_600_000;
        assert_eq!(
            links.check_file_link(&request, kind, stretched, token, now),
            Err(LinkRefusal::Invalid)
        );
        let other = FileKind::AuditCertificate;
        assert_eq!(
            links.check_file_link(&request, other, expires, token, now),
            Err(LinkRefusal::Invalid)
        );
    }
}
