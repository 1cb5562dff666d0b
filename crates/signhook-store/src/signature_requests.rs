//! Signature requests: the aggregate of signhook-core's lifecycle (request,
//! signers, approvers) with its documents and audit trail.
//!
//! A transition is computed in signhook-core from a loaded record and
//! written by [`Store::apply_transition`] in one transaction with the events
//! it emits and their deliveries (the transactional outbox of DESIGN §3.1).
//! The write is guarded by the request's `sequence`: if another node or task
//! changed the request since it was loaded, nothing is written and
//! [`StoreError::Stale`] tells the caller to load again and recompute. That
//! one rule is what makes every time-driven step (expiry, reminders, purges)
//! happen once across nodes: the second node's write finds the sequence
//! moved on.

use crate::db::{json_strings, DbRow, Dialects, Fetch, Row, Sql};
use crate::events::{Event, Idempotency};
use crate::{Page, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use serde_json::Value;
use signhook_core::filter::Scope;
use signhook_core::ids::{ApproverId, DocumentId, EventId, SignatureRequestId, SignerId, TenantId, WorkspaceId};
use signhook_core::lifecycle::{
    Approver, ApproverStatus, Emitted, RequestStatus, SignatureRequest, Signer, SignerStatus, Subject,
};
use signhook_core::time::{from_millis, to_millis};
use std::collections::HashMap;

/// Where an act came from: the IP and user agent of the HTTP request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The client's IP address.
    pub ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
}

/// Who did something to a request, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Act {
    /// `API key key_…`, `Ada Lovelace <ada@example.com>`, `scheduler`.
    pub actor: String,
    /// Where the act came from.
    pub origin: Origin,
}

impl Act {
    /// An act of Signhook itself (expiry, scheduled reminders, purges).
    pub fn scheduler() -> Self {
        Act {
            actor: "scheduler".into(),
            origin: Origin::default(),
        }
    }
}

/// An uploaded document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// `doc_…`
    pub id: DocumentId,
    /// The file name given at upload.
    pub filename: String,
    /// Its size in bytes.
    pub size: i64,
    /// SHA-256 of its bytes, lower-case hex.
    pub sha256: String,
    /// Its page count.
    pub pages: i64,
    /// When it was uploaded.
    pub created_at: DateTime<Utc>,
}

/// One line of a request's audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailEntry {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened: an event type, or `signature_request.created`, `document.added`.
    pub action: String,
    /// Who did it.
    pub actor: String,
    /// Where it came from.
    pub origin: Origin,
    /// Whom it concerned, the reason of a decline, the file added.
    pub detail: Option<String>,
    /// The event this step emitted, when it is one (rows written before
    /// Signhook kept it have none).
    pub event_id: Option<EventId>,
    /// That event's `sequence` in the request.
    pub sequence: Option<i64>,
}

/// A signature request as stored: the lifecycle aggregate and what the API
/// shows beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureRequestRecord {
    /// The aggregate the state machine works on.
    pub request: SignatureRequest,
    /// The owner.
    pub tenant_id: TenantId,
    /// Whether it lives in the sandbox (made with a `sk_test_` key).
    pub sandbox: bool,
    /// Its workspace.
    pub workspace_id: WorkspaceId,
    /// Where it began.
    pub scope: Scope,
    /// The caller's JSON object, echoed in every event.
    pub metadata: Value,
    /// How often unsigned signers are reminded, in milliseconds.
    pub reminder_interval_ms: Option<i64>,
    /// When the next scheduled reminder is due.
    pub next_reminder_at: Option<DateTime<Utc>>,
    /// Uploaded documents, in upload order.
    pub documents: Vec<Document>,
    /// For each signer (same order), where their sign or decline came from.
    pub signer_origins: Vec<Origin>,
    /// SHA-256 of the signed PDF, once the request is done.
    pub signed_pdf_sha256: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it first went out for signature.
    pub activated_at: Option<DateTime<Utc>>,
    /// When the last signer signed.
    pub completed_at: Option<DateTime<Utc>>,
    /// When it was deleted.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// What creating a request needs besides the draft itself.
#[derive(Debug, Clone)]
pub struct NewSignatureRequest {
    /// The draft (from [`SignatureRequest::draft`]).
    pub request: SignatureRequest,
    /// The owner.
    pub tenant_id: TenantId,
    /// The key's environment.
    pub sandbox: bool,
    /// The workspace, already known to belong to the tenant.
    pub workspace_id: WorkspaceId,
    /// Where it began.
    pub scope: Scope,
    /// The caller's metadata object.
    pub metadata: Value,
    /// Reminder interval in milliseconds.
    pub reminder_interval_ms: Option<i64>,
    /// The `Idempotency-Key` with the hash of the request it came with.
    pub idempotency: Option<Idempotency>,
}

const REQUEST_COLUMNS: &str = "id, tenant_id, sandbox, workspace_id, scope, name, status, sequence, \
    ordered_signers, expires_at, reminder_interval_ms, next_reminder_at, metadata, reason, status_before_delete, \
    signed_pdf_sha256, created_at, updated_at, activated_at, completed_at, deleted_at";

fn parse_status<T>(column: &str, text: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    parse(text).ok_or_else(|| StoreError::corrupt(format_args!("{column} `{text}`")))
}

fn opt_time(row: &impl DbRow, column: &str) -> Result<Option<DateTime<Utc>>> {
    Ok(row.opt_int(column)?.map(from_millis))
}

fn signer_from_row(row: &impl DbRow) -> Result<(Signer, Origin)> {
    let signer = Signer {
        id: SignerId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
        name: row.text("name")?,
        email: row.text("email")?,
        status: parse_status("signers.status", &row.text("status")?, SignerStatus::parse)?,
        notified_at: opt_time(row, "notified_at")?,
        link_opened_at: opt_time(row, "link_opened_at")?,
        signed_at: opt_time(row, "signed_at")?,
        declined_at: opt_time(row, "declined_at")?,
        decline_reason: row.opt_text("decline_reason")?,
        typed_name: row.opt_text("typed_name")?,
        link_version: u32::try_from(row.int("link_version")?).map_err(StoreError::corrupt)?,
    };
    let origin = Origin {
        ip: row.opt_text("acted_ip")?,
        user_agent: row.opt_text("acted_user_agent")?,
    };
    Ok((signer, origin))
}

fn approver_from_row(row: &impl DbRow) -> Result<Approver> {
    Ok(Approver {
        id: ApproverId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
        name: row.text("name")?,
        email: row.text("email")?,
        status: parse_status("approvers.status", &row.text("status")?, ApproverStatus::parse)?,
        notified_at: opt_time(row, "notified_at")?,
        acted_at: opt_time(row, "acted_at")?,
        reject_reason: row.opt_text("reject_reason")?,
    })
}

fn document_from_row(row: &impl DbRow) -> Result<Document> {
    Ok(Document {
        id: DocumentId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
        filename: row.text("filename")?,
        size: row.int("size")?,
        sha256: row.text("sha256")?,
        pages: row.int("pages")?,
        created_at: from_millis(row.int("created_at")?),
    })
}

/// The request row, before its people and documents are attached.
fn record_from_row(row: &impl DbRow) -> Result<SignatureRequestRecord> {
    let scope = row.text("scope")?;
    let status_before_delete = row
        .opt_text("status_before_delete")?
        .map(|s| parse_status("status_before_delete", &s, RequestStatus::parse))
        .transpose()?;
    Ok(SignatureRequestRecord {
        request: SignatureRequest {
            id: SignatureRequestId::parse(&row.text("id")?).map_err(StoreError::corrupt)?,
            name: row.text("name")?,
            status: parse_status("status", &row.text("status")?, RequestStatus::parse)?,
            sequence: row.int("sequence")?,
            ordered_signers: row.flag("ordered_signers")?,
            document_count: 0,
            expires_at: from_millis(row.int("expires_at")?),
            signers: Vec::new(),
            approvers: Vec::new(),
            reason: row.opt_text("reason")?,
            status_before_delete,
        },
        tenant_id: TenantId::parse(&row.text("tenant_id")?).map_err(StoreError::corrupt)?,
        sandbox: row.flag("sandbox")?,
        workspace_id: WorkspaceId::parse(&row.text("workspace_id")?).map_err(StoreError::corrupt)?,
        scope: Scope::parse(&scope).ok_or_else(|| StoreError::corrupt(format_args!("scope {scope}")))?,
        metadata: crate::from_json("metadata", &row.text("metadata")?)?,
        reminder_interval_ms: row.opt_int("reminder_interval_ms")?,
        next_reminder_at: opt_time(row, "next_reminder_at")?,
        documents: Vec::new(),
        signer_origins: Vec::new(),
        signed_pdf_sha256: row.opt_text("signed_pdf_sha256")?,
        created_at: from_millis(row.int("created_at")?),
        updated_at: from_millis(row.int("updated_at")?),
        activated_at: opt_time(row, "activated_at")?,
        completed_at: opt_time(row, "completed_at")?,
        deleted_at: opt_time(row, "deleted_at")?,
    })
}

/// The people and documents of the requests listed in `$1`, per table.
const PARTS: [(&str, Dialects); 3] = [
    (
        "signers",
        Dialects {
            sqlite: "SELECT * FROM signers WHERE signature_request_id IN (SELECT value FROM json_each($1)) \
                     ORDER BY signature_request_id, position",
            postgres: "SELECT * FROM signers \
                       WHERE signature_request_id IN (SELECT json_array_elements_text(CAST($1 AS json))) \
                       ORDER BY signature_request_id, position",
        },
    ),
    (
        "approvers",
        Dialects {
            sqlite: "SELECT * FROM approvers WHERE signature_request_id IN (SELECT value FROM json_each($1)) \
                     ORDER BY signature_request_id, position",
            postgres: "SELECT * FROM approvers \
                       WHERE signature_request_id IN (SELECT json_array_elements_text(CAST($1 AS json))) \
                       ORDER BY signature_request_id, position",
        },
    ),
    (
        "documents",
        Dialects {
            sqlite: "SELECT * FROM documents WHERE signature_request_id IN (SELECT value FROM json_each($1)) \
                     ORDER BY signature_request_id, id",
            postgres: "SELECT * FROM documents \
                       WHERE signature_request_id IN (SELECT json_array_elements_text(CAST($1 AS json))) \
                       ORDER BY signature_request_id, id",
        },
    ),
];

/// The whole records whose request rows `requests` (a SELECT of
/// [`REQUEST_COLUMNS`]) returns, in its order: their people and documents
/// come in one query per table for all of them, not per record.
async fn load_records(db: &mut impl Fetch, requests: Sql) -> Result<Vec<SignatureRequestRecord>> {
    let mut records = db
        .fetch_all(requests)
        .await?
        .iter()
        .map(record_from_row)
        .collect::<Result<Vec<SignatureRequestRecord>>>()?;
    if records.is_empty() {
        return Ok(records);
    }
    let index: HashMap<String, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.request.id.to_string(), i))
        .collect();
    let ids = json_strings(records.iter().map(|r| r.request.id.as_str()));
    let owner = |row: &Row| -> Result<usize> {
        let id = row.text("signature_request_id")?;
        index
            .get(&id)
            .copied()
            .ok_or_else(|| StoreError::corrupt(format_args!("row of unknown request {id}")))
    };
    for (table, sql) in PARTS {
        for row in db.fetch_all(Sql::new(db.kind().pick(sql)).bind(&ids)).await? {
            let record = &mut records[owner(&row)?];
            match table {
                "signers" => {
                    let (signer, origin) = signer_from_row(&row)?;
                    record.request.signers.push(signer);
                    record.signer_origins.push(origin);
                }
                "approvers" => record.request.approvers.push(approver_from_row(&row)?),
                _ => record.documents.push(document_from_row(&row)?),
            }
        }
    }
    for record in &mut records {
        record.request.document_count = record.documents.len();
    }
    Ok(records)
}

/// The one whole record whose request row matches `condition` (SQL with one
/// parameter, `$1`, bound to `value`).
async fn load_record(db: &mut impl Fetch, condition: &str, value: &str) -> Result<Option<SignatureRequestRecord>> {
    let sql = Sql::new(format!(
        "SELECT {REQUEST_COLUMNS} FROM signature_requests WHERE {condition}"
    ))
    .bind(value);
    Ok(load_records(db, sql).await?.into_iter().next())
}

/// One audit-trail row of a step that emits no event.
fn trail(request: &SignatureRequestId, at: i64, action: &str, act: &Act, detail: Option<String>) -> Sql {
    trail_row(request, at, action, act, detail, None)
}

/// One audit-trail row; for an emitted event, with the event and its
/// sequence number (the request page's timeline reads them).
fn trail_row(
    request: &SignatureRequestId,
    at: i64,
    action: &str,
    act: &Act,
    detail: Option<String>,
    event: Option<(&EventId, i64)>,
) -> Sql {
    Sql::new(
        "INSERT INTO audit_trail (id, signature_request_id, at, action, actor, ip, user_agent, detail, \
         event_id, sequence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(uuid_text())
    .bind(request)
    .bind(at)
    .bind(action)
    .bind(&act.actor)
    .bind(act.origin.ip.as_ref())
    .bind(act.origin.user_agent.as_ref())
    .bind(detail)
    .bind(event.map(|(id, _)| id.as_str()))
    .bind(event.map(|(_, sequence)| sequence))
}

fn uuid_text() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Whom an emitted event is about, and why, for the audit trail: what the
/// trail row of `emitted` holds as its detail once the transition is
/// written. (The audit certificate, made before that write, prints the
/// transition's own steps with it.)
pub fn trail_detail(request: &SignatureRequest, emitted: &Emitted) -> Option<String> {
    let person = match emitted.subject {
        Subject::Request => None,
        Subject::Signer(i) => Some(format!(
            "signer {} <{}>",
            request.signers[i].name, request.signers[i].email
        )),
        Subject::Approver(i) => Some(format!(
            "approver {} <{}>",
            request.approvers[i].name, request.approvers[i].email
        )),
    };
    let reason = match (emitted.event_type, emitted.subject) {
        ("signer.declined" | "signature_request.declined", Subject::Signer(i)) => {
            request.signers[i].decline_reason.clone()
        }
        ("approver.rejected" | "signature_request.declined", Subject::Approver(i)) => {
            request.approvers[i].reject_reason.clone()
        }
        ("signature_request.canceled", _) => request.reason.clone(),
        ("signer.done", Subject::Signer(i)) => request.signers[i]
            .typed_name
            .as_ref()
            .map(|name| format!("agreed to sign electronically and typed the name \u{201c}{name}\u{201d}")),
        _ => None,
    };
    match (person, reason) {
        (Some(p), Some(r)) => Some(format!("{p}: {r}")),
        (None, Some(r)) => Some(r),
        (p, None) => p,
    }
}

fn millis(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(to_millis)
}

impl Store {
    /// Creates a draft with its signers and approvers. With an
    /// `Idempotency-Key` already used for the same body, returns the request
    /// made then (`true` in the pair); for a different body,
    /// [`StoreError::IdempotencyMismatch`].
    pub async fn create_signature_request(
        &self,
        new: NewSignatureRequest,
        act: &Act,
        now: DateTime<Utc>,
    ) -> Result<(SignatureRequestRecord, bool)> {
        let now_ms = to_millis(now);
        let request = &new.request;
        let id = request.id.clone();
        let mut tx = self.begin().await?;
        if let Some(idempotency) = &new.idempotency {
            let earlier = Sql::new(
                "SELECT id, request_hash FROM signature_requests \
                 WHERE tenant_id = $1 AND sandbox = $2 AND idempotency_key = $3",
            )
            .bind(&new.tenant_id)
            .bind(new.sandbox)
            .bind(&idempotency.key);
            if let Some(row) = tx.fetch_optional(earlier).await? {
                if row.opt_bytes("request_hash")?.as_deref() != Some(idempotency.request_hash.as_slice()) {
                    return Err(StoreError::IdempotencyMismatch);
                }
                let record = load_record(&mut tx, "id = $1", &row.text("id")?)
                    .await?
                    .ok_or_else(|| StoreError::corrupt("idempotent request vanished"))?;
                return Ok((record, true));
            }
        }
        let insert = Sql::new(format!(
            "INSERT INTO signature_requests ({REQUEST_COLUMNS}, idempotency_key, request_hash) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, NULL, $14, $14, NULL, NULL, NULL, $15, $16)"
        ))
        .bind(&id)
        .bind(&new.tenant_id)
        .bind(new.sandbox)
        .bind(&new.workspace_id)
        .bind(new.scope.as_str())
        .bind(&request.name)
        .bind(request.status.as_str())
        .bind(request.sequence)
        .bind(request.ordered_signers)
        .bind(to_millis(request.expires_at))
        .bind(new.reminder_interval_ms)
        .bind(None::<i64>)
        .bind(new.metadata.to_string())
        .bind(now_ms)
        .bind(new.idempotency.as_ref().map(|i| i.key.as_str()))
        .bind(new.idempotency.as_ref().map(|i| i.request_hash.to_vec()));
        tx.execute(insert)
            .await
            .map_err(StoreError::conflict_on("Idempotency-Key"))?;
        for insert in people_inserts(request) {
            tx.gather(insert).await?;
        }
        tx.gather(trail(&id, now_ms, "signature_request.created", act, None))
            .await?;
        let record = load_record(&mut tx, "id = $1", id.as_str())
            .await?
            .ok_or_else(|| StoreError::corrupt("new request vanished"))?;
        tx.commit().await?;
        Ok((record, false))
    }

    /// One request of the tenant's environment.
    pub async fn get_signature_request(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        id: &SignatureRequestId,
    ) -> Result<Option<SignatureRequestRecord>> {
        let record = self.load_signature_request(id).await?;
        Ok(record.filter(|r| &r.tenant_id == tenant && r.sandbox == sandbox))
    }

    /// One request by id, whoever owns it (for schedulers and links).
    pub async fn load_signature_request(&self, id: &SignatureRequestId) -> Result<Option<SignatureRequestRecord>> {
        let mut reader = self.reader();
        load_record(&mut reader, "id = $1", id.as_str()).await
    }

    /// The request a signer belongs to.
    pub async fn signature_request_of_signer(&self, signer: &SignerId) -> Result<Option<SignatureRequestRecord>> {
        let mut reader = self.reader();
        let condition = "id = (SELECT signature_request_id FROM signers WHERE id = $1)";
        load_record(&mut reader, condition, signer.as_str()).await
    }

    /// Replaces `signer`'s signing link: its link version goes up, so every
    /// link made before stops working, and the renewal is in the audit
    /// trail. `None` unless the signer belongs to one of the tenant's
    /// requests that is not deleted.
    pub async fn renew_signer_link(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        request: &SignatureRequestId,
        signer: &SignerId,
        act: &Act,
        now: DateTime<Utc>,
    ) -> Result<Option<SignatureRequestRecord>> {
        let mut tx = self.begin().await?;
        let bump = Sql::new(
            "UPDATE signers SET link_version = link_version + 1 \
             WHERE id = $1 AND signature_request_id = $2 AND signature_request_id IN \
             (SELECT id FROM signature_requests WHERE id = $2 AND tenant_id = $3 AND sandbox = $4 \
              AND status NOT IN ('deleted', 'permanently_deleted'))",
        )
        .bind(signer)
        .bind(request)
        .bind(tenant)
        .bind(sandbox);
        if tx.execute(bump).await? != 1 {
            return Ok(None);
        }
        let detail = Some(format!("signer {signer}: earlier links no longer work"));
        tx.gather(trail(request, to_millis(now), "signer.link_renewed", act, detail))
            .await?;
        tx.commit().await?;
        self.load_signature_request(request).await
    }

    /// The request an approver belongs to.
    pub async fn signature_request_of_approver(&self, approver: &ApproverId) -> Result<Option<SignatureRequestRecord>> {
        let mut reader = self.reader();
        let condition = "id = (SELECT signature_request_id FROM approvers WHERE id = $1)";
        load_record(&mut reader, condition, approver.as_str()).await
    }

    /// The tenant's requests of one environment, oldest first, after a cursor,
    /// optionally of one status.
    pub async fn list_signature_requests(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        after: Option<&SignatureRequestId>,
        status: Option<RequestStatus>,
        limit: u32,
    ) -> Result<Page<SignatureRequestRecord>> {
        let sql = Sql::new(format!(
            "SELECT {REQUEST_COLUMNS} FROM signature_requests WHERE tenant_id = $1 AND sandbox = $2 AND id > $3 \
             AND (CAST($4 AS TEXT) IS NULL OR status = $4) ORDER BY id LIMIT $5"
        ))
        .bind(tenant)
        .bind(sandbox)
        .bind(after.map_or("", SignatureRequestId::as_str))
        .bind(status.map(RequestStatus::as_str))
        .bind(i64::from(limit) + 1);
        let mut reader = self.reader();
        let items = load_records(&mut reader, sql).await?;
        Ok(Page::from_rows(items, limit))
    }

    /// The tenant's requests of one environment, newest first, before a
    /// cursor (the last id of the previous page), optionally of one status:
    /// the dashboard's list.
    pub async fn recent_signature_requests(
        &self,
        tenant: &TenantId,
        sandbox: bool,
        before: Option<&SignatureRequestId>,
        status: Option<RequestStatus>,
        limit: u32,
    ) -> Result<Page<SignatureRequestRecord>> {
        // The status and the cursor bound the index scan (`signature_requests_by_tenant`,
        // or by status, read backwards) only when they are in the SQL
        // itself, not behind an `OR` on a parameter.
        let status_is = crate::db::optional_filter(status.is_some(), "status = $3", "$3", "TEXT");
        let cursor = crate::db::optional_filter(before.is_some(), "id < $4", "$4", "TEXT");
        let sql = Sql::new(format!(
            "SELECT {REQUEST_COLUMNS} FROM signature_requests WHERE tenant_id = $1 AND sandbox = $2 \
             AND {status_is} AND {cursor} ORDER BY id DESC LIMIT $5"
        ))
        .bind(tenant)
        .bind(sandbox)
        .bind(status.map(RequestStatus::as_str))
        .bind(before.map(SignatureRequestId::as_str))
        .bind(i64::from(limit) + 1);
        let mut reader = self.reader();
        let items = load_records(&mut reader, sql).await?;
        Ok(Page::from_rows(items, limit))
    }

    /// Records an uploaded document (its bytes are already in the blob
    /// store). Only a draft takes documents: otherwise [`StoreError::Stale`],
    /// and the caller reloads to say which state the request is in.
    pub async fn add_document(
        &self,
        request: &SignatureRequestId,
        document: &Document,
        act: &Act,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let now_ms = to_millis(now);
        let mut tx = self.begin().await?;
        let touched = Sql::new("UPDATE signature_requests SET updated_at = $1 WHERE id = $2 AND status = 'draft'")
            .bind(now_ms)
            .bind(request);
        if tx.execute(touched).await? == 0 {
            return Err(StoreError::Stale);
        }
        tx.gather(
            Sql::new(
                "INSERT INTO documents (id, signature_request_id, filename, size, sha256, pages, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&document.id)
            .bind(request)
            .bind(&document.filename)
            .bind(document.size)
            .bind(&document.sha256)
            .bind(document.pages)
            .bind(to_millis(document.created_at)),
        )
        .await?;
        let detail = format!(
            "{} ({} pages, sha256 {})",
            document.filename, document.pages, document.sha256
        );
        tx.gather(trail(request, now_ms, "document.added", act, Some(detail)))
            .await?;
        tx.commit().await
    }

    /// Writes a transition computed from `before`: the request, signers and
    /// approvers as in `after`, one audit-trail row and one event (with its
    /// deliveries) per emitted event, `data` given by the caller — all in
    /// one transaction, and only if the request's sequence is still the one
    /// `before` was loaded with ([`StoreError::Stale`] otherwise). A purge
    /// also removes the request's people, documents and trail. Returns the
    /// events written.
    pub async fn apply_transition(
        &self,
        before: &SignatureRequestRecord,
        after: &SignatureRequestRecord,
        events: &[(Emitted, Value)],
        act: &Act,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>> {
        let now_ms = to_millis(now);
        let new = &after.request;
        let id = &new.id;
        let events: Vec<(Event, Option<String>, i64)> = events
            .iter()
            .map(|(emitted, data)| {
                let event = Event {
                    id: EventId::generate(),
                    tenant_id: after.tenant_id.clone(),
                    sandbox: after.sandbox,
                    event_type: emitted.event_type.to_owned(),
                    scope: after.scope,
                    workspace_id: after.workspace_id.clone(),
                    created_at: now,
                    data: data.to_string(),
                    origin: signhook_core::event_types::Provenance::Lifecycle,
                    ordering_key: None,
                };
                (event, trail_detail(new, emitted), emitted.sequence)
            })
            .collect();
        let mut tx = self.begin().await?;
        if tx.execute(request_update(before, after, now)).await? == 0 {
            return Err(StoreError::Stale);
        }
        for update in people_updates(before, after, act) {
            tx.gather(update).await?;
        }
        for (event, detail, sequence) in &events {
            let emitted = Some((&event.id, *sequence));
            tx.gather(trail_row(id, now_ms, &event.event_type, act, detail.clone(), emitted))
                .await?;
            self.outbox().publish_one(&mut tx, event, None).await?;
        }
        if new.status == RequestStatus::PermanentlyDeleted {
            for purge in [
                "DELETE FROM documents WHERE signature_request_id = $1",
                "DELETE FROM signers WHERE signature_request_id = $1",
                "DELETE FROM approvers WHERE signature_request_id = $1",
                "DELETE FROM audit_trail WHERE signature_request_id = $1",
                "UPDATE signature_requests SET name = '', metadata = '{}', reason = NULL WHERE id = $1",
            ] {
                tx.gather(Sql::new(purge).bind(id)).await?;
            }
        }
        tx.commit().await?;
        Ok(events.into_iter().map(|(event, _, _)| event).collect())
    }

    /// Adds a line to a request's audit trail for something that happened
    /// outside a transition: how an invitation went out (e-mailed, with the
    /// SMTP server's answer, or handed to the API caller), a signed copy
    /// e-mailed. A purged request keeps no trail, so nothing is added to one.
    pub async fn append_trail(
        &self,
        request: &SignatureRequestId,
        at: DateTime<Utc>,
        action: &str,
        act: &Act,
        detail: Option<String>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let live = tx
            .fetch_optional(
                Sql::new("SELECT status FROM signature_requests WHERE id = $1 AND status <> 'permanently_deleted'")
                    .bind(request),
            )
            .await?;
        if live.is_some() {
            tx.gather(trail(request, to_millis(at), action, act, detail)).await?;
        }
        tx.commit().await
    }

    /// The request's audit trail, oldest first.
    pub async fn audit_trail(&self, request: &SignatureRequestId) -> Result<Vec<TrailEntry>> {
        let sql = Sql::new("SELECT * FROM audit_trail WHERE signature_request_id = $1 ORDER BY id").bind(request);
        self.reader()
            .fetch_all(sql)
            .await?
            .iter()
            .map(|row| {
                Ok(TrailEntry {
                    at: from_millis(row.int("at")?),
                    action: row.text("action")?,
                    actor: row.text("actor")?,
                    origin: Origin {
                        ip: row.opt_text("ip")?,
                        user_agent: row.opt_text("user_agent")?,
                    },
                    detail: row.opt_text("detail")?,
                    event_id: row
                        .opt_text("event_id")?
                        .map(|id| EventId::parse(&id).map_err(StoreError::corrupt))
                        .transpose()?,
                    sequence: row.opt_int("sequence")?,
                })
            })
            .collect()
    }

    /// Ongoing requests whose deadline has passed, oldest deadline first.
    pub async fn due_expirations(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<SignatureRequestId>> {
        let sql = "SELECT id FROM signature_requests WHERE status = 'ongoing' AND expires_at <= $1 \
                   ORDER BY expires_at LIMIT $2";
        self.due_ids(sql, to_millis(now), limit).await
    }

    /// Ongoing requests whose scheduled reminder is due.
    pub async fn due_reminders(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<SignatureRequestId>> {
        let sql = "SELECT id FROM signature_requests WHERE status = 'ongoing' AND next_reminder_at <= $1 \
                   ORDER BY next_reminder_at LIMIT $2";
        self.due_ids(sql, to_millis(now), limit).await
    }

    /// Deleted requests whose deletion is older than `deleted_before`.
    pub async fn due_purges(&self, deleted_before: DateTime<Utc>, limit: u32) -> Result<Vec<SignatureRequestId>> {
        let sql = "SELECT id FROM signature_requests WHERE status = 'deleted' AND deleted_at <= $1 \
                   ORDER BY deleted_at LIMIT $2";
        self.due_ids(sql, to_millis(deleted_before), limit).await
    }

    /// The ids `sql` selects with `$1` the instant and `$2` the limit.
    async fn due_ids(&self, sql: &'static str, at: i64, limit: u32) -> Result<Vec<SignatureRequestId>> {
        self.reader()
            .fetch_all(Sql::new(sql).bind(at).bind(i64::from(limit)))
            .await?
            .iter()
            .map(|row| SignatureRequestId::parse(&row.text("id")?).map_err(StoreError::corrupt))
            .collect()
    }

    /// The key that signs signing links and file links: made once, by
    /// whichever node asks first, and the same for every node after. Kept
    /// sealed with the master key.
    pub async fn link_key(&self, now: DateTime<Utc>) -> Result<Vec<u8>> {
        let fresh: [u8; 32] = rand::random();
        let sealed = self.keys.seal(crate::sealing::LINK_KEY_AT, &fresh);
        let mut tx = self.begin().await?;
        tx.gather(
            Sql::new("INSERT INTO link_keys (id, secret, created_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING")
                .bind(sealed.into_bytes())
                .bind(to_millis(now)),
        )
        .await?;
        let row = tx
            .fetch_one(Sql::new("SELECT secret FROM link_keys WHERE id = 1"))
            .await?;
        tx.commit().await?;
        let stored = row
            .opt_bytes("secret")?
            .ok_or_else(|| StoreError::corrupt("link key is NULL"))?;
        crate::sealing::open_link_key(&self.keys, &stored)
    }
}

/// The rows of a new request's signers and approvers.
fn people_inserts(request: &SignatureRequest) -> Vec<Sql> {
    let signers = request.signers.iter().enumerate().map(|(position, signer)| {
        Sql::new(
            "INSERT INTO signers (id, signature_request_id, position, name, email, status) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&signer.id)
        .bind(&request.id)
        .bind(position as i64)
        .bind(&signer.name)
        .bind(&signer.email)
        .bind(signer.status.as_str())
    });
    let approvers = request.approvers.iter().enumerate().map(|(position, approver)| {
        Sql::new(
            "INSERT INTO approvers (id, signature_request_id, position, name, email, status) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&approver.id)
        .bind(&request.id)
        .bind(position as i64)
        .bind(&approver.name)
        .bind(&approver.email)
        .bind(approver.status.as_str())
    });
    signers.chain(approvers).collect()
}

/// The signers and approvers that changed from `before` to `after`,
/// written back. The origin of the act that signed or declined is kept on
/// the signer for the signature page.
fn people_updates(before: &SignatureRequestRecord, after: &SignatureRequestRecord, act: &Act) -> Vec<Sql> {
    let (old, new) = (&before.request, &after.request);
    let signers = new
        .signers
        .iter()
        .enumerate()
        .filter(|(i, signer)| old.signers.get(*i) != Some(signer));
    let signers = signers.map(|(i, signer)| {
        let acted = matches!(signer.status, SignerStatus::Done | SignerStatus::Declined)
            && old.signers[i].status != signer.status;
        let origin = if acted { &act.origin } else { &before.signer_origins[i] };
        Sql::new(
            "UPDATE signers SET status = $1, notified_at = $2, link_opened_at = $3, signed_at = $4, \
             declined_at = $5, decline_reason = $6, acted_ip = $7, acted_user_agent = $8, typed_name = $9 \
             WHERE id = $10",
        )
        .bind(signer.status.as_str())
        .bind(millis(signer.notified_at))
        .bind(millis(signer.link_opened_at))
        .bind(millis(signer.signed_at))
        .bind(millis(signer.declined_at))
        .bind(signer.decline_reason.as_ref())
        .bind(origin.ip.as_ref())
        .bind(origin.user_agent.as_ref())
        .bind(signer.typed_name.as_ref())
        .bind(&signer.id)
    });
    let approvers = new
        .approvers
        .iter()
        .enumerate()
        .filter(|(i, a)| old.approvers.get(*i) != Some(a));
    let approvers = approvers.map(|(_, approver)| {
        Sql::new("UPDATE approvers SET status = $1, notified_at = $2, acted_at = $3, reject_reason = $4 WHERE id = $5")
            .bind(approver.status.as_str())
            .bind(millis(approver.notified_at))
            .bind(millis(approver.acted_at))
            .bind(approver.reject_reason.as_ref())
            .bind(&approver.id)
    });
    signers.chain(approvers).collect()
}

/// The request row as in `after`, only if its sequence is still the one
/// `before` was loaded with.
fn request_update(before: &SignatureRequestRecord, after: &SignatureRequestRecord, now: DateTime<Utc>) -> Sql {
    let now_ms = to_millis(now);
    let (old, new) = (&before.request, &after.request);
    let activated_at = (new.status == RequestStatus::Ongoing).then_some(now_ms);
    let completed_at = if new.status == RequestStatus::Done && old.status != RequestStatus::Done {
        Some(now_ms)
    } else {
        millis(before.completed_at)
    };
    let deleted_at = if new.status == RequestStatus::Deleted && old.status != RequestStatus::Deleted {
        Some(now_ms)
    } else {
        millis(before.deleted_at)
    };
    Sql::new(
        "UPDATE signature_requests SET status = $1, sequence = $2, expires_at = $3, reason = $4, \
         status_before_delete = $5, next_reminder_at = $6, signed_pdf_sha256 = $7, updated_at = $8, \
         activated_at = COALESCE(activated_at, $9), completed_at = $10, deleted_at = $11 \
         WHERE id = $12 AND sequence = $13",
    )
    .bind(new.status.as_str())
    .bind(new.sequence)
    .bind(to_millis(new.expires_at))
    .bind(new.reason.as_ref())
    .bind(new.status_before_delete.map(RequestStatus::as_str))
    .bind(millis(after.next_reminder_at))
    .bind(after.signed_pdf_sha256.as_ref())
    .bind(now_ms)
    .bind(activated_at)
    .bind(completed_at)
    .bind(deleted_at)
    .bind(&new.id)
    .bind(old.sequence)
}
