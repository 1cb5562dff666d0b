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

use crate::events::{insert_event_and_fan_out, Event, Idempotency};
use crate::{is_unique_violation, with_pool, DbRow, Page, Result, Store, StoreError};
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

/// Loads the whole records whose request rows `$sql` (a full SELECT of
/// [`REQUEST_COLUMNS`] with parameters bound by `$bind`) returns, in its
/// order, from `$pool`: their people and documents come in one query per
/// table for all of them, not per record. Evaluates to
/// `Result<Vec<SignatureRequestRecord>>`.
macro_rules! load_records {
    ($pool:expr, $dialect:ident, $sql:expr, |$query:ident| $bind:expr) => {
        async {
            let $query = sqlx::query($sql);
            let mut records = $bind
                .fetch_all($pool)
                .await?
                .iter()
                .map(record_from_row)
                .collect::<Result<Vec<SignatureRequestRecord>>>()?;
            if records.is_empty() {
                return Result::<Vec<SignatureRequestRecord>>::Ok(records);
            }
            let index: HashMap<String, usize> = records
                .iter()
                .enumerate()
                .map(|(i, r)| (r.request.id.to_string(), i))
                .collect();
            let ids = crate::json_strings(records.iter().map(|r| r.request.id.as_str()));
            let of = |table: &str, order: &str| {
                format!(
                    "SELECT * FROM {table} WHERE signature_request_id IN ({}) ORDER BY signature_request_id, {order}",
                    $dialect.list_param(1)
                )
            };
            let owner = |id: String| -> Result<usize> {
                index
                    .get(&id)
                    .copied()
                    .ok_or_else(|| StoreError::corrupt(format_args!("row of unknown request {id}")))
            };
            for row in sqlx::query(&of("signers", "position")).bind(&ids).fetch_all($pool).await? {
                let i = owner(row.text("signature_request_id")?)?;
                let (signer, origin) = signer_from_row(&row)?;
                records[i].request.signers.push(signer);
                records[i].signer_origins.push(origin);
            }
            for row in sqlx::query(&of("approvers", "position")).bind(&ids).fetch_all($pool).await? {
                let i = owner(row.text("signature_request_id")?)?;
                records[i].request.approvers.push(approver_from_row(&row)?);
            }
            for row in sqlx::query(&of("documents", "id")).bind(&ids).fetch_all($pool).await? {
                let i = owner(row.text("signature_request_id")?)?;
                records[i].documents.push(document_from_row(&row)?);
            }
            for record in &mut records {
                record.request.document_count = record.documents.len();
            }
            Ok(records)
        }
        .await
    };
}

/// Loads the one whole record whose request row matches `$condition` (SQL
/// with one parameter, `$1`, bound to `$value`). Evaluates to
/// `Result<Option<SignatureRequestRecord>>`.
macro_rules! load_record {
    ($pool:expr, $dialect:ident, $condition:expr, $value:expr) => {{
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM signature_requests WHERE {}", $condition);
        load_records!($pool, $dialect, &sql, |query| query.bind($value)).map(|records| records.into_iter().next())
    }};
}

/// Binds one audit-trail row.
macro_rules! insert_trail {
    ($tx:ident, $request:expr, $at:expr, $action:expr, $act:expr, $detail:expr) => {{
        let act: &Act = $act;
        let detail: Option<String> = $detail;
        sqlx::query(
            "INSERT INTO audit_trail (id, signature_request_id, at, action, actor, ip, user_agent, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(uuid_text())
        .bind($request.as_str())
        .bind($at)
        .bind($action)
        .bind(&act.actor)
        .bind(act.origin.ip.as_deref())
        .bind(act.origin.user_agent.as_deref())
        .bind(detail)
        .execute(&mut *$tx)
        .await?;
    }};
}

fn uuid_text() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Whom an emitted event is about, and why, for the audit trail.
fn trail_detail(request: &SignatureRequest, emitted: &Emitted) -> Option<String> {
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
        with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            if let Some(idempotency) = &new.idempotency {
                let earlier = sqlx::query(
                    "SELECT id, request_hash FROM signature_requests \
                     WHERE tenant_id = $1 AND sandbox = $2 AND idempotency_key = $3",
                )
                .bind(new.tenant_id.as_str())
                .bind(new.sandbox)
                .bind(&idempotency.key)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = earlier {
                    if row.opt_bytes("request_hash")?.as_deref() != Some(idempotency.request_hash.as_slice()) {
                        return Err(StoreError::IdempotencyMismatch);
                    }
                    let id = row.text("id")?;
                    let record = load_record!(&mut *tx, dialect, "id = $1", id.as_str())?
                        .ok_or_else(|| StoreError::corrupt("idempotent request vanished"))?;
                    return Ok((record, true));
                }
            }
            let sql = format!(
                "INSERT INTO signature_requests ({REQUEST_COLUMNS}, idempotency_key, request_hash) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, NULL, $14, $14, NULL, NULL, NULL, $15, $16)"
            );
            sqlx::query(&sql)
                .bind(id.as_str())
                .bind(new.tenant_id.as_str())
                .bind(new.sandbox)
                .bind(new.workspace_id.as_str())
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
                .bind(new.idempotency.as_ref().map(|i| i.request_hash.as_slice()))
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Conflict {
                            field: "Idempotency-Key",
                        }
                    } else {
                        e.into()
                    }
                })?;
            for (position, signer) in request.signers.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO signers (id, signature_request_id, position, name, email, status) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(signer.id.as_str())
                .bind(id.as_str())
                .bind(position as i64)
                .bind(&signer.name)
                .bind(&signer.email)
                .bind(signer.status.as_str())
                .execute(&mut *tx)
                .await?;
            }
            for (position, approver) in request.approvers.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO approvers (id, signature_request_id, position, name, email, status) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(approver.id.as_str())
                .bind(id.as_str())
                .bind(position as i64)
                .bind(&approver.name)
                .bind(&approver.email)
                .bind(approver.status.as_str())
                .execute(&mut *tx)
                .await?;
            }
            insert_trail!(tx, id, now_ms, "signature_request.created", act, None);
            let record = load_record!(&mut *tx, dialect, "id = $1", id.as_str())?
                .ok_or_else(|| StoreError::corrupt("new request vanished"))?;
            tx.commit().await?;
            Ok((record, false))
        })
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
        with_pool!(self, reader, |pool, dialect| load_record!(
            pool,
            dialect,
            "id = $1",
            id.as_str()
        ))
    }

    /// The request a signer belongs to.
    pub async fn signature_request_of_signer(&self, signer: &SignerId) -> Result<Option<SignatureRequestRecord>> {
        with_pool!(self, reader, |pool, dialect| load_record!(
            pool,
            dialect,
            "id = (SELECT signature_request_id FROM signers WHERE id = $1)",
            signer.as_str()
        ))
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
        let at = to_millis(now);
        let renewed = with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            let bumped = sqlx::query(
                "UPDATE signers SET link_version = link_version + 1 \
                 WHERE id = $1 AND signature_request_id = $2 AND signature_request_id IN \
                 (SELECT id FROM signature_requests WHERE id = $2 AND tenant_id = $3 AND sandbox = $4 \
                  AND status NOT IN ('deleted', 'permanently_deleted'))",
            )
            .bind(signer.as_str())
            .bind(request.as_str())
            .bind(tenant.as_str())
            .bind(sandbox)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if bumped {
                let detail = Some(format!("signer {signer}: earlier links no longer work"));
                insert_trail!(tx, request, at, "signer.link_renewed", act, detail);
                tx.commit().await?;
            }
            bumped
        });
        if !renewed {
            return Ok(None);
        }
        self.load_signature_request(request).await
    }

    /// The request an approver belongs to.
    pub async fn signature_request_of_approver(&self, approver: &ApproverId) -> Result<Option<SignatureRequestRecord>> {
        with_pool!(self, reader, |pool, dialect| load_record!(
            pool,
            dialect,
            "id = (SELECT signature_request_id FROM approvers WHERE id = $1)",
            approver.as_str()
        ))
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
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM signature_requests WHERE tenant_id = $1 AND sandbox = $2 AND id > $3 \
             AND (CAST($4 AS TEXT) IS NULL OR status = $4) ORDER BY id LIMIT $5"
        );
        let items = with_pool!(self, reader, |pool, dialect| load_records!(
            pool,
            dialect,
            &sql,
            |query| query
                .bind(tenant.as_str())
                .bind(sandbox)
                .bind(after.map_or("", SignatureRequestId::as_str))
                .bind(status.map(RequestStatus::as_str))
                .bind(i64::from(limit) + 1)
        ))?;
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
        with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            let updated =
                sqlx::query("UPDATE signature_requests SET updated_at = $1 WHERE id = $2 AND status = 'draft'")
                    .bind(now_ms)
                    .bind(request.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if updated == 0 {
                return Err(StoreError::Stale);
            }
            sqlx::query(
                "INSERT INTO documents (id, signature_request_id, filename, size, sha256, pages, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(document.id.as_str())
            .bind(request.as_str())
            .bind(&document.filename)
            .bind(document.size)
            .bind(&document.sha256)
            .bind(document.pages)
            .bind(to_millis(document.created_at))
            .execute(&mut *tx)
            .await?;
            let detail = format!(
                "{} ({} pages, sha256 {})",
                document.filename, document.pages, document.sha256
            );
            insert_trail!(tx, request, now_ms, "document.added", act, Some(detail));
            tx.commit().await?;
        });
        Ok(())
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
        let (old, new) = (&before.request, &after.request);
        let id = &new.id;
        let events: Vec<(Event, Option<String>)> = events
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
                };
                (event, trail_detail(new, emitted))
            })
            .collect();
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
        with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE signature_requests SET status = $1, sequence = $2, expires_at = $3, reason = $4, \
                 status_before_delete = $5, next_reminder_at = $6, signed_pdf_sha256 = $7, updated_at = $8, \
                 activated_at = COALESCE(activated_at, $9), completed_at = $10, deleted_at = $11 \
                 WHERE id = $12 AND sequence = $13",
            )
            .bind(new.status.as_str())
            .bind(new.sequence)
            .bind(to_millis(new.expires_at))
            .bind(new.reason.as_deref())
            .bind(new.status_before_delete.map(RequestStatus::as_str))
            .bind(millis(after.next_reminder_at))
            .bind(after.signed_pdf_sha256.as_deref())
            .bind(now_ms)
            .bind(activated_at)
            .bind(completed_at)
            .bind(deleted_at)
            .bind(id.as_str())
            .bind(old.sequence)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::Stale);
            }
            for (i, signer) in new.signers.iter().enumerate() {
                if old.signers.get(i) == Some(signer) {
                    continue;
                }
                // The origin of the act that signed or declined is kept on
                // the signer for the signature page.
                let acted = matches!(signer.status, SignerStatus::Done | SignerStatus::Declined)
                    && old.signers[i].status != signer.status;
                let origin = if acted { &act.origin } else { &before.signer_origins[i] };
                sqlx::query(
                    "UPDATE signers SET status = $1, notified_at = $2, link_opened_at = $3, signed_at = $4, \
                     declined_at = $5, decline_reason = $6, acted_ip = $7, acted_user_agent = $8 WHERE id = $9",
                )
                .bind(signer.status.as_str())
                .bind(millis(signer.notified_at))
                .bind(millis(signer.link_opened_at))
                .bind(millis(signer.signed_at))
                .bind(millis(signer.declined_at))
                .bind(signer.decline_reason.as_deref())
                .bind(origin.ip.as_deref())
                .bind(origin.user_agent.as_deref())
                .bind(signer.id.as_str())
                .execute(&mut *tx)
                .await?;
            }
            for (i, approver) in new.approvers.iter().enumerate() {
                if old.approvers.get(i) == Some(approver) {
                    continue;
                }
                sqlx::query(
                    "UPDATE approvers SET status = $1, notified_at = $2, acted_at = $3, reject_reason = $4 \
                     WHERE id = $5",
                )
                .bind(approver.status.as_str())
                .bind(millis(approver.notified_at))
                .bind(millis(approver.acted_at))
                .bind(approver.reject_reason.as_deref())
                .bind(approver.id.as_str())
                .execute(&mut *tx)
                .await?;
            }
            for (event, detail) in &events {
                insert_trail!(tx, id, now_ms, event.event_type.as_str(), act, detail.clone());
                insert_event_and_fan_out!(tx, dialect, event, None, now_ms, &self.keys);
            }
            if new.status == RequestStatus::PermanentlyDeleted {
                for table in ["documents", "signers", "approvers", "audit_trail"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE signature_request_id = $1"))
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("UPDATE signature_requests SET name = '', metadata = '{}', reason = NULL WHERE id = $1")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        if !events.is_empty() {
            self.work.due_at(now);
        }
        Ok(events.into_iter().map(|(event, _)| event).collect())
    }

    /// The request's audit trail, oldest first.
    pub async fn audit_trail(&self, request: &SignatureRequestId) -> Result<Vec<TrailEntry>> {
        with_pool!(self, reader, |pool, dialect| {
            sqlx::query("SELECT * FROM audit_trail WHERE signature_request_id = $1 ORDER BY id")
                .bind(request.as_str())
                .fetch_all(pool)
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
                    })
                })
                .collect()
        })
    }

    /// Ongoing requests whose deadline has passed, oldest deadline first.
    pub async fn due_expirations(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<SignatureRequestId>> {
        self.due_ids("ongoing", "expires_at", to_millis(now), limit).await
    }

    /// Ongoing requests whose scheduled reminder is due.
    pub async fn due_reminders(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<SignatureRequestId>> {
        self.due_ids("ongoing", "next_reminder_at", to_millis(now), limit).await
    }

    /// Deleted requests whose deletion is older than `deleted_before`.
    pub async fn due_purges(&self, deleted_before: DateTime<Utc>, limit: u32) -> Result<Vec<SignatureRequestId>> {
        self.due_ids("deleted", "deleted_at", to_millis(deleted_before), limit)
            .await
    }

    /// Requests in `status` whose `column` (a time) is at or before `at`,
    /// earliest first.
    async fn due_ids(&self, status: &str, column: &str, at: i64, limit: u32) -> Result<Vec<SignatureRequestId>> {
        let sql = format!(
            "SELECT id FROM signature_requests WHERE status = $3 AND {column} <= $1 ORDER BY {column} LIMIT $2"
        );
        with_pool!(self, reader, |pool, dialect| {
            sqlx::query(&sql)
                .bind(at)
                .bind(i64::from(limit))
                .bind(status)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| SignatureRequestId::parse(&row.text("id")?).map_err(StoreError::corrupt))
                .collect()
        })
    }

    /// The key that signs signing links and file links: made once, by
    /// whichever node asks first, and the same for every node after. Kept
    /// sealed with the master key.
    pub async fn link_key(&self, now: DateTime<Utc>) -> Result<Vec<u8>> {
        let fresh: [u8; 32] = rand::random();
        let sealed = self.keys.seal(crate::sealing::LINK_KEY_AT, &fresh);
        let stored = with_pool!(self, writer, |pool, dialect| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO link_keys (id, secret, created_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
            )
            .bind(sealed.as_bytes())
            .bind(to_millis(now))
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query("SELECT secret FROM link_keys WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            row.opt_bytes("secret")?
                .ok_or_else(|| StoreError::corrupt("link key is NULL"))?
        });
        crate::sealing::open_link_key(&self.keys, &stored)
    }
}
