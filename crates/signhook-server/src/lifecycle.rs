//! The e-signature lifecycle as a service: loads a request, asks
//! signhook-core's state machine what an action does, produces the signed
//! PDF and the audit certificate when the action completes the request, and
//! has the store write the change with its events in one transaction.
//!
//! Order matters for `done` (DESIGN §3.1): both files are in the blob store
//! *before* the transaction that marks the request done and emits
//! `signature_request.done` commits. A crash in between leaves files nobody
//! links to and a request that is still ongoing (the signer signs again);
//! it can never leave a `done` whose links point at nothing.
//!
//! Invitations, reminders and signed copies go out after the commit, in the
//! background, each recorded in the audit trail as it went (e-mailed with
//! the SMTP server's answer, or handed to the API caller),
//! through SMTP when configured (a permanently refused address fires
//! `signer.invite_undelivered`) or to the log otherwise.

use crate::links::{FileKind, Links};
use crate::mail::{Invitation, InvitationFailure, Letter, Mailer};
use crate::pdf::{PdfWorkers, Signing};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use signhook_core::error_chain;
use signhook_core::ids::{SignatureRequestId, SignerId};
use signhook_core::lifecycle::{Action, Refusal, RequestStatus, Transition};
use signhook_core::time::{readable, Clock};
use signhook_documents::{AuditDocument, SignatureLine, TrailEntry};
use signhook_store::blobs::{BlobError, BlobStore};
use signhook_store::signature_requests::{Act, Document, SignatureRequestRecord};
use signhook_store::{Store, StoreError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// How often a transition is recomputed when the request changed between
/// loading and writing it before the caller is told to retry.
const MAX_TRIES: usize = 8;

/// Why a lifecycle step did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No such request (or it is not the caller's).
    #[error("no such signature request")]
    NotFound,
    /// The state machine refuses the action now.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The request kept changing under us.
    #[error("the signature request is changing too fast; retry")]
    Busy,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blob store failed.
    #[error("the document store failed")]
    Blob(#[from] BlobError),
    /// The signed PDF or the audit certificate could not be produced.
    #[error("a PDF could not be produced")]
    Pdf(#[from] crate::pdf::PdfError),
}

/// The lifecycle service. Cheap to share behind an `Arc`.
pub struct Lifecycle {
    pub(crate) store: Store,
    pub(crate) blobs: BlobStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) links: Links,
    pub(crate) mailer: Option<Mailer>,
    pub(crate) pdf: PdfWorkers,
    /// The key and chain the PDF workers seal with.
    pub(crate) seal: crate::pdf::SealKey,
}

/// SHA-256 (lowercase hex) of the files a completed request produced.
struct FileHashes {
    signed_pdf: String,
    audit_certificate: String,
}

impl Lifecycle {
    /// The link maker.
    pub fn links(&self) -> &Links {
        &self.links
    }

    /// The blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Whether invitations, reminders and signed copies are e-mailed (SMTP
    /// is configured) rather than handed over by the API's caller.
    pub fn mails(&self) -> bool {
        self.mailer.is_some()
    }

    /// The PDF workers (every parse of an upload runs in one).
    pub fn pdf(&self) -> &PdfWorkers {
        &self.pdf
    }

    /// Applies `action` to request `id` as `act`: recomputed from a fresh
    /// load whenever another writer got there first. Returns the request
    /// afterwards (unchanged when the action changed nothing, such as a
    /// second opening of a link).
    ///
    /// The future is boxed because applying can spawn work (an undelivered
    /// invitation) that applies again.
    pub fn apply<'a>(
        self: &'a Arc<Self>,
        id: &'a SignatureRequestId,
        action: Action,
        act: &'a Act,
    ) -> Pin<Box<dyn Future<Output = Result<SignatureRequestRecord, LifecycleError>> + Send + 'a>> {
        Box::pin(self.apply_now(id, action, act))
    }

    async fn apply_now(
        self: &Arc<Self>,
        id: &SignatureRequestId,
        action: Action,
        act: &Act,
    ) -> Result<SignatureRequestRecord, LifecycleError> {
        for _ in 0..MAX_TRIES {
            let before = self
                .store
                .load_signature_request(id)
                .await?
                .ok_or(LifecycleError::NotFound)?;
            let now = self.clock.now();
            let transition = before.request.transition(action.clone(), now)?;
            if !transition.is_change() {
                return Ok(before);
            }
            let mut after = before.clone();
            after.request = transition.request.clone();
            after.next_reminder_at = next_reminder(&before, &after, &action, now);
            let links = if after.request.status == RequestStatus::Done {
                let signing = match &action {
                    Action::Sign(signer, _) => after.request.signer_index(signer),
                    _ => None,
                };
                let hashes = self.produce_files(&after, &transition, signing, act, now).await?;
                let mut links = self.links.file_links(id, now);
                // What `done` links to, hashed as stored: a receiver can
                // check what it downloads.
                links["signed_pdf"]["sha256"] = Value::from(hashes.signed_pdf.as_str());
                links["audit_certificate"]["sha256"] = Value::from(hashes.audit_certificate);
                after.signed_pdf_sha256 = Some(hashes.signed_pdf);
                Some(links)
            } else {
                None
            };
            let events: Vec<_> = transition
                .events
                .iter()
                .map(|e| (e.clone(), after.request.event_data(e, &after.metadata, links.as_ref())))
                .collect();
            match self.store.apply_transition(&before, &after, &events, act, now).await {
                Ok(written) => {
                    tracing::info!(
                        signature_request = %id,
                        action = action.name(),
                        status = %after.request.status,
                        events = written.len(),
                        "signature request changed"
                    );
                    self.after_commit(&after, &transition).await;
                    return Ok(after);
                }
                Err(StoreError::Stale) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(LifecycleError::Busy)
    }

    /// Stores an uploaded PDF (already inspected) and records it on a draft.
    pub async fn add_document(
        &self,
        record: &SignatureRequestRecord,
        filename: String,
        bytes: Vec<u8>,
        pages: u32,
        act: &Act,
    ) -> Result<Document, LifecycleError> {
        let now = self.clock.now();
        let document = Document {
            id: signhook_core::ids::DocumentId::generate(),
            filename,
            size: bytes.len() as i64,
            sha256: hex_sha256(&bytes),
            pages: i64::from(pages),
            created_at: now,
        };
        // The bytes first: a row never names a file that is not there.
        self.blobs
            .put(&document_key(&record.request.id, &document), bytes)
            .await?;
        match self.store.add_document(&record.request.id, &document, act, now).await {
            Ok(()) => Ok(document),
            Err(StoreError::Stale) => {
                // No longer a draft: say which state it is in.
                let current = self
                    .store
                    .load_signature_request(&record.request.id)
                    .await?
                    .ok_or(LifecycleError::NotFound)?;
                Err(Refusal::RequestState {
                    action: "add a document to",
                    current: current.request.status,
                }
                .into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Fresh links to a done request's files.
    pub fn fresh_links(&self, record: &SignatureRequestRecord) -> Result<Value, Refusal> {
        if record.request.status != RequestStatus::Done {
            return Err(Refusal::RequestState {
                action: "link the files of",
                current: record.request.status,
            });
        }
        Ok(self.links.file_links(&record.request.id, self.clock.now()))
    }

    /// The signed PDF and the audit certificate, both sealed, written to
    /// the blob store. Returns their SHA-256s, of the bytes stored.
    /// CPU-heavy work runs off the async threads.
    async fn produce_files(
        &self,
        after: &SignatureRequestRecord,
        transition: &Transition,
        signing: Option<usize>,
        act: &Act,
        now: DateTime<Utc>,
    ) -> Result<FileHashes, LifecycleError> {
        let request = &after.request;
        let mut originals = Vec::with_capacity(after.documents.len());
        for document in &after.documents {
            originals.push(self.blobs.get(&document_key(&request.id, document)).await?);
        }
        let signatures: Vec<SignatureLine> = request
            .signers
            .iter()
            .zip(&after.signer_origins)
            .enumerate()
            .map(|(i, (signer, origin))| {
                // The signer signing now acts from this request's origin;
                // the others' were stored when they signed.
                let origin = if signing == Some(i) { &act.origin } else { origin };
                SignatureLine {
                    name: signer.name.clone(),
                    email: signer.email.clone(),
                    signed_at: signer.signed_at.map(readable).unwrap_or_default(),
                    ip: origin.ip.clone().unwrap_or_else(|| "unknown".into()),
                    user_agent: origin.user_agent.clone().unwrap_or_else(|| "unknown".into()),
                }
            })
            .collect();
        let mut trail: Vec<TrailEntry> = self
            .store
            .audit_trail(&request.id)
            .await?
            .into_iter()
            .map(|entry| TrailEntry {
                at: readable(entry.at),
                action: entry.action,
                actor: entry.actor,
                ip: entry.origin.ip,
                user_agent: entry.origin.user_agent,
                detail: entry.detail,
            })
            .collect();
        // This transition's own steps are written with it; print them too,
        // as they will be stored (the last signer's consent and typed name).
        for emitted in &transition.events {
            let detail = signhook_store::signature_requests::trail_detail(request, emitted);
            trail.push(TrailEntry {
                at: readable(now),
                action: emitted.event_type.to_owned(),
                actor: act.actor.clone(),
                ip: act.origin.ip.clone(),
                user_agent: act.origin.user_agent.clone(),
                detail,
            });
        }
        let documents: Vec<AuditDocument> = after
            .documents
            .iter()
            .map(|d| AuditDocument {
                name: d.filename.clone(),
                sha256: d.sha256.clone(),
                pages: u32::try_from(d.pages).unwrap_or(0),
            })
            .collect();
        // Parsed in a worker process, under limits (see `pdf`): the
        // documents are uploads.
        let signing = Signing {
            request_id: request.id.to_string(),
            request_name: request.name.clone(),
            completed_at: readable(now),
            signatures,
            documents,
            trail,
            seal: self.seal.clone(),
            sealed_at: now,
        };
        let refs: Vec<&[u8]> = originals.iter().map(Vec::as_slice).collect();
        let (signed, certificate) = self.pdf.sign(signing, &refs).await?;
        let hashes = FileHashes {
            signed_pdf: hex_sha256(&signed),
            audit_certificate: hex_sha256(&certificate),
        };
        self.blobs
            .put(&FileKind::SignedPdf.blob_key(&request.id), signed)
            .await?;
        self.blobs
            .put(&FileKind::AuditCertificate.blob_key(&request.id), certificate)
            .await?;
        Ok(hashes)
    }

    /// What follows a committed change: invitations and reminders, and
    /// removing a purged request's files.
    async fn after_commit(self: &Arc<Self>, after: &SignatureRequestRecord, transition: &Transition) {
        let request = &after.request;
        if request.status == RequestStatus::PermanentlyDeleted {
            match self.blobs.delete_prefix(&format!("{}/", request.id)).await {
                Ok(n) => tracing::info!(signature_request = %request.id, files = n, "purged files"),
                Err(e) => {
                    tracing::error!(signature_request = %request.id, error = %error_chain(&e), "purging files failed")
                }
            }
            return;
        }
        let happened = |event_type: &str| transition.events.iter().any(|e| e.event_type == event_type);
        let letter = if happened("signature_request.reminder_executed") {
            Letter::Reminder
        } else {
            Letter::Invitation
        };
        let done = happened("signature_request.done");
        if transition.invite_signers.is_empty() && transition.invite_approvers.is_empty() && !done {
            return;
        }
        let sender = match self.store.tenant_name(&after.tenant_id).await {
            Ok(Some(name)) => name,
            Ok(None) => "Signhook".to_owned(),
            Err(e) => {
                tracing::warn!(signature_request = %request.id, error = %error_chain(&e), "sender's name not read");
                "Signhook".to_owned()
            }
        };
        let write = |letter, name: &str, email: &str, url, approver| Invitation {
            letter,
            sender: sender.clone(),
            name: name.to_owned(),
            email: email.to_owned(),
            request_name: request.name.clone(),
            url,
            approver,
            expires_at: request.expires_at,
        };
        // The people written to: the invited (or reminded) signers and
        // approvers, and once the request is done every signer, with their
        // signed copy.
        let mut letters: Vec<(Option<SignerId>, Invitation)> = Vec::new();
        for &i in &transition.invite_signers {
            let signer = &request.signers[i];
            let url = self.links.signing_url(signer);
            letters.push((
                Some(signer.id.clone()),
                write(letter, &signer.name, &signer.email, url, false),
            ));
        }
        for &i in &transition.invite_approvers {
            let approver = &request.approvers[i];
            let url = self.links.approval_url(&approver.id);
            letters.push((None, write(letter, &approver.name, &approver.email, url, true)));
        }
        if done {
            for signer in &request.signers {
                let url = self.links.signing_url(signer);
                letters.push((None, write(Letter::SignedCopy, &signer.name, &signer.email, url, false)));
            }
        }
        let this = self.clone();
        let id = request.id.clone();
        // SMTP can be slow; the API answers without waiting for it.
        tokio::spawn(async move { this.send_invitations(id, letters).await });
    }

    /// Sends each letter (or, without SMTP, says the link was handed to the
    /// API's caller) and writes how it went into the request's audit trail:
    /// `signer.invitation_emailed` with the SMTP server's answer,
    /// `signer.invitation_handed_over`, `…_not_emailed`,
    /// `…_undeliverable` (which also fires `signer.invite_undelivered`).
    async fn send_invitations(self: Arc<Self>, id: SignatureRequestId, letters: Vec<(Option<SignerId>, Invitation)>) {
        for (signer, invitation) in letters {
            let role = if invitation.approver { "approver" } else { "signer" };
            let kind = invitation.letter.trail_name();
            let whom = format!("{} <{}>", invitation.name, invitation.email);
            let (outcome, detail) = match &self.mailer {
                // Without SMTP the operator (or the developer trying it out)
                // passes the link on by hand, from the API's answer: a link
                // is a credential, so it is never logged.
                None if invitation.letter == Letter::Invitation => (
                    "handed_over",
                    format!(
                        "not e-mailed (no SMTP server is configured): the link for {whom} was handed to the API caller"
                    ),
                ),
                None => (
                    "not_emailed",
                    format!("not e-mailed to {whom}: no SMTP server is configured"),
                ),
                Some(mailer) => match mailer.send_invitation(&invitation).await {
                    Ok(answer) => (
                        "emailed",
                        format!("e-mailed to {whom}; the SMTP server accepted it: {answer}"),
                    ),
                    Err(InvitationFailure::Failed(e)) => {
                        ("not_emailed", format!("could not be e-mailed to {whom}: {e}"))
                    }
                    Err(InvitationFailure::Undeliverable(e)) => (
                        "undeliverable",
                        format!("refused for good when e-mailed to {whom}: {e}"),
                    ),
                },
            };
            let action = format!("{role}.{kind}_{outcome}");
            tracing::info!(signature_request = %id, to = %invitation.email, %action, "letter");
            let act = Act {
                actor: "Signhook".into(),
                origin: Default::default(),
            };
            if let Err(e) = self
                .store
                .append_trail(&id, self.clock.now(), &action, &act, Some(detail))
                .await
            {
                tracing::warn!(signature_request = %id, error = %error_chain(&e), "letter not recorded in the audit trail");
            }
            if let (Some(signer), "undeliverable", Letter::Invitation | Letter::Reminder) =
                (signer, outcome, invitation.letter)
            {
                let act = Act {
                    actor: "mailer".into(),
                    origin: Default::default(),
                };
                let result = self.apply(&id, Action::InviteUndelivered(signer), &act).await;
                if let Err(e) = result {
                    tracing::warn!(signature_request = %id, error = %error_chain(&e), "signer.invite_undelivered not recorded");
                }
            }
        }
    }
}

/// When the next scheduled reminder is due after a change.
fn next_reminder(
    before: &SignatureRequestRecord,
    after: &SignatureRequestRecord,
    action: &Action,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let interval = chrono::Duration::milliseconds(after.reminder_interval_ms?);
    if after.request.status != RequestStatus::Ongoing {
        return None;
    }
    // Going out, coming back, or a reminder just sent: the next one is a
    // full interval away. Other steps leave the schedule alone.
    let restart = before.request.status != RequestStatus::Ongoing || matches!(action, Action::Remind);
    if restart {
        Some(now + interval)
    } else {
        before.next_reminder_at
    }
}

/// Where an uploaded document lives in the blob store.
pub fn document_key(request: &SignatureRequestId, document: &Document) -> String {
    format!("{request}/documents/{}.pdf", document.id)
}

/// SHA-256 as lower-case hex.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
