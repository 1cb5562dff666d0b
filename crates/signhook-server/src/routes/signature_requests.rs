//! The e-signature lifecycle through the API (DESIGN §7):
//! `POST/GET /v1/signature_requests`, `GET/DELETE …/{id}`, documents,
//! `activate`, `cancel`, `remind`, `reactivate` and fresh file `links`.
//! Every step goes through [`Lifecycle`](crate::lifecycle::Lifecycle), which
//! writes the change and its events in one transaction.

use crate::error::ApiError;
use crate::extract::{idempotency_key, instant, optional_json, page_limit, ApiJson, ApiQuery, Auth, Client};
use crate::links::Links;
use crate::routes::{list_type, path_id};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use signhook_core::duration::{format_duration, parse_duration};
use signhook_core::filter::Scope;
use signhook_core::ids::{SignatureRequestId, SignerId, WorkspaceId};
use signhook_core::lifecycle::{Action, Approver, RequestStatus, SignatureRequest, Signer};
use signhook_core::time::rfc3339;
use signhook_store::events::Idempotency;
use signhook_store::signature_requests::{Act, Document, NewSignatureRequest, SignatureRequestRecord};
use utoipa::ToSchema;

/// The largest document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 25 * 1024 * 1024;
/// Room for a multipart envelope around the largest document.
pub const MAX_UPLOAD_BODY: usize = MAX_DOCUMENT_BYTES + 64 * 1024;
/// The most signers of one request.
pub const MAX_SIGNERS: usize = 50;
/// The most approvers of one request.
pub const MAX_APPROVERS: usize = 10;
/// The most documents of one request.
pub const MAX_DOCUMENTS: usize = 20;
/// The longest name of a request or a person.
pub const MAX_NAME_LEN: usize = 255;
/// The longest decline, reject or cancel reason.
pub const MAX_REASON_LEN: usize = 1000;
/// The largest `metadata` object, serialized.
pub const MAX_METADATA_BYTES: usize = 4096;
/// The shortest scheduled reminder interval.
const MIN_REMINDER: std::time::Duration = std::time::Duration::from_secs(60);
/// The deadline of a request that does not give one.
const DEFAULT_LIFETIME_DAYS: i64 = 30;

/// A signer or approver to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonInput {
    /// Full name, 1 to 255 characters.
    pub name: Option<String>,
    /// E-mail address the invitation goes to.
    pub email: Option<String>,
}

/// Creating a signature request (a draft).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSignatureRequest {
    /// Shown to signers and in every event; 1 to 255 characters.
    pub name: String,
    /// The workspace (`ws_…`); the tenant's default when absent.
    pub workspace_id: Option<String>,
    /// The signing deadline (RFC 3339, in the future); 30 days from now when absent.
    pub expires_at: Option<String>,
    /// Signers sign one after the other, in list order (default: in parallel).
    #[serde(default)]
    pub ordered_signers: bool,
    /// Remind unsigned signers this often while the request is ongoing (`3d`, `12h`; at least `1m`).
    pub reminder_interval: Option<String>,
    /// 1 to 50 signers.
    pub signers: Vec<PersonInput>,
    /// Up to 10 approvers; all must approve before the request goes out.
    #[serde(default)]
    pub approvers: Vec<PersonInput>,
    /// Your own JSON object (up to 4 KiB), echoed in every event of this request.
    #[schema(value_type = Object)]
    pub metadata: Option<Value>,
}

/// Canceling a request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelSignatureRequest {
    /// Why, up to 1000 characters; shown in the event.
    pub reason: Option<String>,
}

/// Reopening an expired request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReactivateSignatureRequest {
    /// The new deadline (RFC 3339, in the future).
    pub expires_at: String,
}

/// A signer as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignerView {
    /// `sg_…`
    pub id: String,
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// `pending`, `notified`, `link_opened`, `done` or `declined`.
    pub status: String,
    /// The personal signing link (once the request went out). Give it to this signer only; it never appears in webhooks.
    pub signing_url: Option<String>,
    /// When last invited or reminded.
    pub notified_at: Option<String>,
    /// When the link was first opened.
    pub link_opened_at: Option<String>,
    /// When they signed.
    pub signed_at: Option<String>,
    /// When they declined.
    pub declined_at: Option<String>,
    /// Why they declined.
    pub decline_reason: Option<String>,
}

/// An approver as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApproverView {
    /// `ap_…`
    pub id: String,
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// `pending`, `notified`, `approved` or `rejected`.
    pub status: String,
    /// The personal approval link (once asked).
    pub approval_url: Option<String>,
    /// When asked.
    pub notified_at: Option<String>,
    /// When they approved or rejected.
    pub acted_at: Option<String>,
    /// Why they rejected.
    pub reject_reason: Option<String>,
}

/// An uploaded document.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    /// `doc_…`
    pub id: String,
    /// The file name given at upload.
    pub filename: String,
    /// Size in bytes.
    pub size: i64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Page count.
    pub pages: i64,
    /// When it was uploaded.
    pub created_at: String,
}

impl From<&Document> for DocumentView {
    fn from(d: &Document) -> Self {
        Self {
            id: d.id.to_string(),
            filename: d.filename.clone(),
            size: d.size,
            sha256: d.sha256.clone(),
            pages: d.pages,
            created_at: rfc3339(d.created_at),
        }
    }
}

/// A signature request.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignatureRequestView {
    /// `sr_…`
    pub id: String,
    /// Its name.
    pub name: String,
    /// `draft`, `approval`, `ongoing`, `done`, `declined`, `canceled`, `expired`, `deleted` or `permanently_deleted`.
    pub status: String,
    /// Grows with every event of this request.
    pub sequence: i64,
    /// Made with a `sk_test_` key.
    pub sandbox: bool,
    /// `public_api` or `app`.
    pub scope: String,
    /// `ws_…`
    pub workspace_id: String,
    /// Whether signers sign in order.
    pub ordered_signers: bool,
    /// The deadline.
    pub expires_at: String,
    /// How often unsigned signers are reminded.
    pub reminder_interval: Option<String>,
    /// When the next scheduled reminder goes out.
    pub next_reminder_at: Option<String>,
    /// Your metadata.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Why it was declined or canceled.
    pub reason: Option<String>,
    /// The documents, in upload order.
    pub documents: Vec<DocumentView>,
    /// The signers, in order.
    pub signers: Vec<SignerView>,
    /// The approvers.
    pub approvers: Vec<ApproverView>,
    /// When it was created.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When it first went out.
    pub activated_at: Option<String>,
    /// When the last signer signed.
    pub completed_at: Option<String>,
    /// When it was deleted.
    pub deleted_at: Option<String>,
}

impl SignatureRequestView {
    /// The view of a record; links are shown while they can be used.
    pub fn new(record: &SignatureRequestRecord, links: &Links) -> Self {
        let request = &record.request;
        let out = !matches!(
            request.status,
            RequestStatus::Draft | RequestStatus::Deleted | RequestStatus::PermanentlyDeleted
        );
        Self {
            id: request.id.to_string(),
            name: request.name.clone(),
            status: request.status.to_string(),
            sequence: request.sequence,
            sandbox: record.sandbox,
            scope: record.scope.as_str().to_owned(),
            workspace_id: record.workspace_id.to_string(),
            ordered_signers: request.ordered_signers,
            expires_at: rfc3339(request.expires_at),
            reminder_interval: record
                .reminder_interval_ms
                .map(|ms| format_duration(std::time::Duration::from_millis(ms as u64))),
            next_reminder_at: record.next_reminder_at.map(rfc3339),
            metadata: record.metadata.clone(),
            reason: request.reason.clone(),
            documents: record.documents.iter().map(DocumentView::from).collect(),
            signers: request
                .signers
                .iter()
                .map(|s| SignerView {
                    id: s.id.to_string(),
                    name: s.name.clone(),
                    email: s.email.clone(),
                    status: s.status.to_string(),
                    signing_url: out.then(|| links.signing_url(s)),
                    notified_at: s.notified_at.map(rfc3339),
                    link_opened_at: s.link_opened_at.map(rfc3339),
                    signed_at: s.signed_at.map(rfc3339),
                    declined_at: s.declined_at.map(rfc3339),
                    decline_reason: s.decline_reason.clone(),
                })
                .collect(),
            approvers: request
                .approvers
                .iter()
                .map(|a| ApproverView {
                    id: a.id.to_string(),
                    name: a.name.clone(),
                    email: a.email.clone(),
                    status: a.status.to_string(),
                    approval_url: (out && a.notified_at.is_some()).then(|| links.approval_url(&a.id)),
                    notified_at: a.notified_at.map(rfc3339),
                    acted_at: a.acted_at.map(rfc3339),
                    reject_reason: a.reject_reason.clone(),
                })
                .collect(),
            created_at: rfc3339(record.created_at),
            updated_at: rfc3339(record.updated_at),
            activated_at: record.activated_at.map(rfc3339),
            completed_at: record.completed_at.map(rfc3339),
            deleted_at: record.deleted_at.map(rfc3339),
        }
    }
}

list_type!(
    SignatureRequestList,
    SignatureRequestView,
    "A page of signature requests, oldest first."
);

/// Fresh links to a done request's files.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileLinks {
    /// The signed PDF: `{url, expires_at}`.
    #[schema(value_type = Object)]
    pub signed_pdf: Value,
    /// The audit certificate: `{url, expires_at}`.
    #[schema(value_type = Object)]
    pub audit_certificate: Value,
}

/// Listing parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Return requests after this id (the previous page's `next_cursor`).
    pub after: Option<String>,
    /// Only requests in this status.
    pub status: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<u32>,
}

/// Deletion parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// Purge at once (documents, files, people) instead of after the retention period.
    #[serde(default)]
    pub permanently: bool,
}

/// Upload parameters for a raw `application/pdf` body.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// The file's name (default `document.pdf`).
    pub filename: Option<String>,
}

pub(crate) fn future(field: &str, text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let t = instant(field, text)?;
    if t <= now {
        return Err(ApiError::validation(field, format!("{field} must be in the future")));
    }
    Ok(t)
}

fn text_field(field: &str, value: Option<&str>, max: usize) -> Result<String, ApiError> {
    let value = value.map(str::trim).unwrap_or("");
    if value.is_empty() || value.chars().count() > max {
        return Err(ApiError::validation(
            field,
            format!("{field} is required: 1 to {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

fn people(field: &str, input: &[PersonInput]) -> Result<Vec<(String, String)>, ApiError> {
    let mut seen = std::collections::HashSet::new();
    input
        .iter()
        .enumerate()
        .map(|(i, person)| {
            let name = text_field(&format!("{field}[{i}].name"), person.name.as_deref(), MAX_NAME_LEN)?;
            let email_field = format!("{field}[{i}].email");
            let email = person.email.as_deref().map(str::trim).unwrap_or("");
            if email.is_empty() {
                return Err(ApiError::validation(
                    email_field,
                    format!("{field}[{i}].email is required"),
                ));
            }
            if email.parse::<lettre::Address>().is_err() || email.len() > 254 {
                return Err(ApiError::validation(
                    email_field,
                    format!("`{email}` is not an e-mail address"),
                ));
            }
            if !seen.insert(email.to_ascii_lowercase()) {
                return Err(ApiError::validation(
                    email_field,
                    format!("{email} is listed twice among the {field}"),
                ));
            }
            Ok((name, email.to_owned()))
        })
        .collect()
}

pub(crate) fn check_reason(field: &str, value: Option<&str>, required: bool) -> Result<Option<String>, ApiError> {
    match value.map(str::trim).filter(|r| !r.is_empty()) {
        None if required => Err(ApiError::validation(
            field,
            format!("{field} is required: say why, up to {MAX_REASON_LEN} characters"),
        )),
        None => Ok(None),
        Some(r) if r.chars().count() > MAX_REASON_LEN => Err(ApiError::validation(
            field,
            format!("{field} must be at most {MAX_REASON_LEN} characters"),
        )),
        Some(r) => Ok(Some(r.to_owned())),
    }
}

/// The caller's request `id`; a 404 for another tenant's, another
/// environment's or a malformed id.
pub(crate) async fn load(state: &AppState, auth: &Auth, id: &str) -> Result<SignatureRequestRecord, ApiError> {
    let parsed = path_id(id, "signature request", SignatureRequestId::parse)?;
    state
        .store
        .get_signature_request(auth.tenant(), auth.sandbox(), &parsed)
        .await?
        .ok_or_else(|| ApiError::not_found("signature request", id))
}

fn api_act(auth: &Auth, client: &Client) -> Act {
    Act {
        actor: format!("API ({} key)", if auth.sandbox() { "sandbox" } else { "live" }),
        origin: client.origin(),
    }
}

/// Creates a draft signature request with its signers and approvers. Upload
/// documents next, then activate it.
#[utoipa::path(
    post, path = "/v1/signature_requests", tag = "signature_requests", security(("api_key" = [])),
    request_body = CreateSignatureRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe creation")),
    responses(
        (status = 201, body = SignatureRequestView),
        (status = 409, description = "The Idempotency-Key was used for another body", body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    client: Client,
    headers: HeaderMap,
    ApiJson(body, raw): ApiJson<CreateSignatureRequest>,
) -> Result<(StatusCode, Json<SignatureRequestView>), ApiError> {
    let now = state.clock.now();
    let name = text_field("name", Some(&body.name), MAX_NAME_LEN)?;
    let workspace_id = match &body.workspace_id {
        Some(text) => {
            let id = WorkspaceId::parse(text).map_err(|e| ApiError::validation("workspace_id", e.to_string()))?;
            let known = state.store.list_workspaces(auth.tenant()).await?;
            if !known.iter().any(|w| w.id == id) {
                return Err(ApiError::validation(
                    "workspace_id",
                    format!("no workspace `{text}` exists"),
                ));
            }
            id
        }
        None => state.caches.default_workspace(&state.store, auth.tenant()).await?,
    };
    let expires_at = match &body.expires_at {
        Some(text) => future("expires_at", text, now)?,
        None => now + chrono::Duration::days(DEFAULT_LIFETIME_DAYS),
    };
    let reminder_interval_ms = match &body.reminder_interval {
        Some(text) => {
            let interval = parse_duration(text)
                .ok()
                .filter(|d| *d >= MIN_REMINDER)
                .ok_or_else(|| {
                    ApiError::validation(
                        "reminder_interval",
                        "reminder_interval must be a duration of at least 1m, such as 12h or 3d",
                    )
                })?;
            Some(interval.as_millis() as i64)
        }
        None => None,
    };
    if body.signers.is_empty() || body.signers.len() > MAX_SIGNERS {
        return Err(ApiError::validation(
            "signers",
            format!("signers must list 1 to {MAX_SIGNERS} people"),
        ));
    }
    if body.approvers.len() > MAX_APPROVERS {
        return Err(ApiError::validation(
            "approvers",
            format!("approvers may list up to {MAX_APPROVERS} people"),
        ));
    }
    let signers = people("signers", &body.signers)?;
    let approvers = people("approvers", &body.approvers)?;
    let metadata = body.metadata.unwrap_or_else(|| Value::Object(Default::default()));
    if !metadata.is_object() {
        return Err(ApiError::validation("metadata", "metadata must be a JSON object"));
    }
    if metadata.to_string().len() > MAX_METADATA_BYTES {
        return Err(ApiError::validation(
            "metadata",
            format!("metadata must be at most {MAX_METADATA_BYTES} bytes of JSON"),
        ));
    }
    let request = SignatureRequest::draft(
        name,
        expires_at,
        body.ordered_signers,
        signers.into_iter().map(|(n, e)| Signer::new(n, e)).collect(),
        approvers.into_iter().map(|(n, e)| Approver::new(n, e)).collect(),
    );
    let idempotency = idempotency_key(&headers)?.map(|key| Idempotency {
        key,
        request_hash: Sha256::digest(&raw).into(),
    });
    let new = NewSignatureRequest {
        request,
        tenant_id: auth.tenant().clone(),
        sandbox: auth.sandbox(),
        workspace_id,
        scope: Scope::PublicApi,
        metadata,
        reminder_interval_ms,
        idempotency,
    };
    let (record, replayed) = state
        .store
        .create_signature_request(new, &api_act(&auth, &client), now)
        .await?;
    let status = if replayed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((
        status,
        Json(SignatureRequestView::new(&record, state.lifecycle.links())),
    ))
}

/// Lists the environment's signature requests, oldest first, with a cursor.
#[utoipa::path(
    get, path = "/v1/signature_requests", tag = "signature_requests", security(("api_key" = [])),
    params(ListParams),
    responses((status = 200, body = SignatureRequestList), (status = 422, body = crate::error::ErrorBody))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<SignatureRequestList>, ApiError> {
    let limit = page_limit(params.limit)?;
    let after = params
        .after
        .as_deref()
        .map(|a| SignatureRequestId::parse(a).map_err(|e| ApiError::validation("after", e.to_string())))
        .transpose()?;
    let status = params.status.as_deref().map(listed_status).transpose()?;
    let page = state
        .store
        .list_signature_requests(auth.tenant(), auth.sandbox(), after.as_ref(), status, limit)
        .await?;
    let links = state.lifecycle.links();
    Ok(Json(SignatureRequestList {
        next_cursor: page
            .has_more
            .then(|| page.items.last().map(|r| r.request.id.to_string()))
            .flatten(),
        has_more: page.has_more,
        data: page.items.iter().map(|r| SignatureRequestView::new(r, links)).collect(),
    }))
}

/// The status a list is filtered by (the API's `?status=` and the
/// dashboard's list alike).
pub(crate) fn listed_status(text: &str) -> Result<RequestStatus, ApiError> {
    RequestStatus::parse(text).ok_or_else(|| {
        let all: Vec<_> = RequestStatus::ALL.iter().map(|s| s.as_str()).collect();
        ApiError::validation("status", format!("status must be one of {}", all.join(", ")))
    })
}

/// One signature request, with its documents, signers (and their signing links) and approvers.
#[utoipa::path(
    get, path = "/v1/signature_requests/{id}", tag = "signature_requests", security(("api_key" = [])),
    params(("id" = String, Path, description = "`sr_…`")),
    responses((status = 200, body = SignatureRequestView), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<SignatureRequestView>, ApiError> {
    let record = load(&state, &auth, &id).await?;
    Ok(Json(SignatureRequestView::new(&record, state.lifecycle.links())))
}

/// Adds a PDF to a draft: the raw file as `application/pdf` (name in
/// `?filename=`), or `multipart/form-data` with the file in a part named
/// `file`. Anything that is not a readable PDF is refused; 25 MiB at most.
#[utoipa::path(
    post, path = "/v1/signature_requests/{id}/documents", tag = "signature_requests", security(("api_key" = [])),
    params(("id" = String, Path, description = "`sr_…`"), UploadParams),
    request_body(content(
        (crate::routes::PdfFile = "application/pdf"),
        (crate::routes::PdfUpload = "multipart/form-data"),
    )),
    responses(
        (status = 201, body = DocumentView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "The request is no longer a draft", body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody),
        (status = 415, body = crate::error::ErrorBody),
        (status = 422, description = "Not a readable PDF", body = crate::error::ErrorBody)
    )
)]
pub async fn add_document(
    State(state): State<AppState>,
    auth: Auth,
    client: Client,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<UploadParams>,
    request: Request,
) -> Result<(StatusCode, Json<DocumentView>), ApiError> {
    let record = load(&state, &auth, &id).await?;
    if record.documents.len() >= MAX_DOCUMENTS {
        return Err(ApiError::validation(
            "file",
            format!("a signature request holds at most {MAX_DOCUMENTS} documents"),
        ));
    }
    let (filename, bytes) = read_upload(request, &state, params.filename).await?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    // Checked in a worker process under limits: an upload is hostile input.
    let info = state.lifecycle.pdf().inspect(&bytes).await.map_err(|e| {
        if e.is_the_document() {
            ApiError::validation("file", e.to_string())
        } else {
            ApiError::Internal(Box::new(e))
        }
    })?;
    let document = state
        .lifecycle
        .add_document(&record, filename, bytes.to_vec(), info.pages, &api_act(&auth, &client))
        .await?;
    Ok((StatusCode::CREATED, Json(DocumentView::from(&document))))
}

/// The uploaded file's name and bytes, from a raw or a multipart body.
async fn read_upload(
    request: Request,
    state: &AppState,
    filename: Option<String>,
) -> Result<(String, Bytes), ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let too_large = || ApiError::PayloadTooLarge {
        limit: MAX_DOCUMENT_BYTES,
    };
    let (name, bytes) = match content_type.as_str() {
        "application/pdf" => {
            let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
                ApiError::unreadable_body(rejection.status(), &rejection, rejection.body_text(), too_large)
            })?;
            (filename, bytes)
        }
        "multipart/form-data" => {
            let mut multipart =
                Multipart::from_request(request, state)
                    .await
                    .map_err(|rejection| ApiError::BadRequest {
                        code: "unreadable_body",
                        message: rejection.body_text(),
                    })?;
            let mut found = None;
            loop {
                let field = multipart
                    .next_field()
                    .await
                    .map_err(|e| multipart_error(e, too_large))?;
                let Some(field) = field else { break };
                if field.name() != Some("file") {
                    continue;
                }
                let name = field.file_name().map(str::to_owned).or(filename.clone());
                let bytes = field.bytes().await.map_err(|e| multipart_error(e, too_large))?;
                found = Some((name, bytes));
                break;
            }
            found.ok_or_else(|| ApiError::validation("file", "the multipart body has no part named `file`"))?
        }
        _ => return Err(ApiError::UnsupportedMediaType {
            expected:
                "a PDF with `content-type: application/pdf`, or multipart/form-data with the PDF in a part named `file`",
        }),
    };
    let name = name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "document.pdf".into());
    if name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "filename",
            format!("filename must be 1 to {MAX_NAME_LEN} printable characters"),
        ));
    }
    Ok((name, bytes))
}

fn multipart_error(e: axum::extract::multipart::MultipartError, too_large: impl Fn() -> ApiError) -> ApiError {
    ApiError::unreadable_body(e.status(), &e, e.body_text(), too_large)
}

async fn step(
    state: &AppState,
    auth: &Auth,
    client: &Client,
    id: &str,
    action: Action,
) -> Result<Json<SignatureRequestView>, ApiError> {
    let after = apply_action(state, auth, id, action, &api_act(auth, client)).await?;
    Ok(Json(SignatureRequestView::new(&after, state.lifecycle.links())))
}

/// Applies `action` to the caller's request `id` as `act` (the routes'
/// `activate`, `cancel`, `remind`, `reactivate`, and the dashboard's
/// buttons): the request afterwards, or the lifecycle's refusal as the
/// API says it.
pub(crate) async fn apply_action(
    state: &AppState,
    auth: &Auth,
    id: &str,
    action: Action,
    act: &Act,
) -> Result<SignatureRequestRecord, ApiError> {
    let record = load(state, auth, id).await?;
    Ok(state.lifecycle.apply(&record.request.id, action, act).await?)
}

/// Sends a draft out: to its approvers first when it has any, otherwise to
/// its signers (all at once, or the first one when `ordered_signers`). The
/// response carries each signer's `signing_url`.
#[utoipa::path(
    post, path = "/v1/signature_requests/{id}/activate", tag = "signature_requests", security(("api_key" = [])),
    params(("id" = String, Path, description = "`sr_…`")),
    responses(
        (status = 200, body = SignatureRequestView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "Not a draft", body = crate::error::ErrorBody),
        (status = 422, description = "No document, or the deadline has passed", body = crate::error::ErrorBody)
    )
)]
pub async fn activate(
    State(state): State<AppState>,
    auth: Auth,
    client: Client,
    Path(id): Path<String>,
) -> Result<Json<SignatureRequestView>, ApiError> {
    step(&state, &auth, &client, &id, Action::Activate).await
}

/// Cancels a request that is a draft, waiting for approval or ongoing.
#[utoipa::path(
    post, path = "/v1/signature_requests/{id}/cancel", tag = "signature_requests", security(("api_key" = [])),
    params(("id" = String, Path, description = "`sr_…`")),
    request_body = CancelSignatureRequest,
    responses(
        (status = 200, body = SignatureRequestView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    client: Client,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SignatureRequestView>, ApiError> {
    let body: CancelSignatureRequest = optional_json(&headers, &body)?;
    let reason = check_reason("reason", body.reason.as_deref(), false)?;
    step(&state, &auth, &client, &id, Action::Cancel(reason)).await
}

/// Reminds every invited signer who has not signed yet.
#[utoipa::path(
    post, path = "/v1/signature_requests/{id}/remind", tag = "signature_requests", security(("api_key" = [])),
    params(("id" = String, Path, description = "`sr_…`")),
    responses(
        (status = 200, body = SignatureRequestView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "Not ongoing", body = crate::error::ErrorBody)
    )
)]
pub async fn remind(
    State(state): State<AppState>,
    auth: Auth,
    client: Client,
    Path(id): Path<String>,
) -> Result<Json<SignatureRequestView>, ApiError> {
    step(&state, &auth, &client, &id, Action::Remind).await
}

/// Reopens an expired request with a new deadline.
#[utoipa::path(
    post, path = "/v1/signature_requests/{id}/reactivate", tag = "signature_requests", security(("api_key" = [])),
    params(("id" = String, Path, description = "`sr_…`")),
    request_body = ReactivateSignatureRequest,
    responses(
        (status = 200, body = SignatureRequestView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "Not expired", body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)
    )
)]
pub async fn reactivate(
    State(state): State<AppState>,
    auth: Auth,
    client: Client,
    Path(id): Path<String>,
    ApiJson(body, _): ApiJson<ReactivateSignatureRequest>,
) -> Result<Json<SignatureRequestView>, ApiError> {
    let expires_at = future("expires_at", &body.expires_at, state.clock.now())?;
    step(&state, &auth, &client, &id, Action::Reactivate(expires_at)).await
}

/// Deletes a request: it stays readable (status `deleted`) until the
/// retention period purges it; `?permanently=true` purges it at once.
#[utoipa::path(
    delete, path = "/v1/signature_requests/{id}", tag = "signature_requests", security(("api_key" = [])),
    params(("id" = String, Path, description = "`sr_…`"), DeleteParams),
    responses(
        (status = 200, body = SignatureRequestView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "Already deleted", body = crate::error::ErrorBody)
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    client: Client,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<DeleteParams>,
) -> Result<Json<SignatureRequestView>, ApiError> {
    let record = load(&state, &auth, &id).await?;
    let act = api_act(&auth, &client);
    let mut after = record.clone();
    if record.request.status != RequestStatus::Deleted || !params.permanently {
        after = state.lifecycle.apply(&record.request.id, Action::Delete, &act).await?;
    }
    if params.permanently {
        after = state
            .lifecycle
            .apply(&record.request.id, Action::PurgePermanently, &act)
            .await?;
    }
    Ok(Json(SignatureRequestView::new(&after, state.lifecycle.links())))
}

/// Replaces one signer's signing link, for an invitation that leaked or
/// went to the wrong person: every link given out before answers 410 at
/// once, on every node, and the answer carries the new `signing_url`
/// (`…/remind` e-mails it). Recorded in the audit trail.
#[utoipa::path(
    post, path = "/v1/signature_requests/{id}/signers/{signer_id}/renew_link", tag = "signature_requests", security(("api_key" = [])),
    params(("id" = String, Path, description = "`sr_…`"), ("signer_id" = String, Path, description = "`sg_…`")),
    responses(
        (status = 200, body = SignatureRequestView),
        (status = 404, description = "No such request or signer, or the request is deleted", body = crate::error::ErrorBody)
    )
)]
pub async fn renew_signer_link(
    State(state): State<AppState>,
    auth: Auth,
    client: Client,
    Path((id, signer_id)): Path<(String, String)>,
) -> Result<Json<SignatureRequestView>, ApiError> {
    let request = path_id(&id, "signature request", SignatureRequestId::parse)?;
    let signer = path_id(&signer_id, "signer", SignerId::parse)?;
    let record = state
        .store
        .renew_signer_link(
            auth.tenant(),
            auth.sandbox(),
            &request,
            &signer,
            &api_act(&auth, &client),
            state.clock.now(),
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no signer `{signer_id}` of a signature request `{id}` exists")))?;
    tracing::info!(signature_request = %request, %signer, "signing link renewed");
    Ok(Json(SignatureRequestView::new(&record, state.lifecycle.links())))
}

/// Fresh links to a done request's signed PDF and audit certificate, each
/// valid for the link TTL (30 minutes by default).
#[utoipa::path(
    get, path = "/v1/signature_requests/{id}/links", tag = "signature_requests", security(("api_key" = [])),
    params(("id" = String, Path, description = "`sr_…`")),
    responses(
        (status = 200, body = FileLinks),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "Not done", body = crate::error::ErrorBody)
    )
)]
pub async fn links(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<FileLinks>, ApiError> {
    let record = load(&state, &auth, &id).await?;
    let links = state
        .lifecycle
        .fresh_links(&record)
        .map_err(crate::lifecycle::LifecycleError::from)?;
    Ok(Json(FileLinks {
        signed_pdf: links["signed_pdf"].clone(),
        audit_certificate: links["audit_certificate"].clone(),
    }))
}
