//! The routes people reach without an API key, where the link itself is the
//! credential (see [`links`](crate::links)):
//!
//! - a signer's `signing_url`: `GET` opens it (`signer.link_opened` the
//!   first time), `POST …/sign` signs, `POST …/decline {"reason"}` declines,
//!   `GET …/documents/{id}` downloads a document to read;
//! - an approver's `approval_url`: `GET`, `POST …/approve`,
//!   `POST …/reject {"reason"}`;
//! - the 30-minute file links of a done request, 410 once expired.
//!
//! A token that is not genuine is a 404, like a link that never existed.
//!
//! A person's link serves the original documents only while the request
//! is being decided (`approval`, `ongoing`). Once it is done, declined,
//! canceled or expired the link shows the outcome — for `done`, with the
//! signed PDF through a fresh 30-minute file link — and a document
//! download answers 410; a deleted request's links answer 410 outright.

use crate::error::ApiError;
use crate::extract::{is_form, ApiQuery, Client, Submitted};
use crate::lifecycle::document_key;
use crate::lifecycle::LifecycleError;
use crate::links::{FileKind, LinkRefusal};
use crate::pages::person::{Person, PersonPage};
use crate::pages::{self, Face};
use crate::routes::path_id;
use crate::routes::signature_requests::check_reason;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use signhook_core::ids::{ApproverId, DocumentId, SignatureRequestId, SignerId};
use signhook_core::lifecycle::{approver_json, signer_json, Action, RequestStatus, Signature, SignerStatus};
use signhook_core::time::rfc3339;
use signhook_store::signature_requests::{Act, SignatureRequestRecord};
use utoipa::ToSchema;

/// Declining or rejecting.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decline {
    /// Why, 1 to 1000 characters; sent in the events.
    pub reason: Option<String>,
}

/// What a signer or approver sees behind their link.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    /// The request: id, name, status, deadline.
    #[schema(value_type = Object)]
    pub signature_request: Value,
    /// The signer (on a signing link).
    #[schema(value_type = Object)]
    pub signer: Option<Value>,
    /// The approver (on an approval link).
    #[schema(value_type = Object)]
    pub approver: Option<Value>,
    /// The documents to read, each with a download `url`.
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<Value>,
    /// What this person can do now, as `{"sign": url, "decline": url}` or
    /// `{"approve": url, "reject": url}`; empty when nothing.
    #[schema(value_type = Object)]
    pub actions: Value,
    /// Once the request is done: `{"url", "expires_at"}` of a fresh link to
    /// the signed PDF.
    #[schema(value_type = Option<Object>)]
    pub signed_pdf: Option<Value>,
}

/// Whether a request's original documents may still be read through a
/// person's link: only while it is being decided.
fn documents_readable(status: RequestStatus) -> bool {
    matches!(status, RequestStatus::Approval | RequestStatus::Ongoing)
}

/// What a person's link shows of the request's files: the documents while
/// it is decided, the signed PDF once it is done, nothing otherwise.
fn files_json(state: &AppState, record: &SignatureRequestRecord, base: Option<&str>) -> (Vec<Value>, Option<Value>) {
    let status = record.request.status;
    let documents = if documents_readable(status) {
        documents_json(record, base)
    } else {
        Vec::new()
    };
    let signed_pdf = (status == RequestStatus::Done).then(|| {
        state
            .lifecycle
            .links()
            .file_link(&record.request.id, FileKind::SignedPdf, state.clock.now())
    });
    (documents, signed_pdf)
}

/// A deleted request's links serve nothing.
fn withdrawn(record: SignatureRequestRecord) -> Result<SignatureRequestRecord, ApiError> {
    match record.request.status {
        RequestStatus::Deleted | RequestStatus::PermanentlyDeleted => Err(ApiError::Gone(
            "this signature request was withdrawn by its sender; nothing is available through this link".into(),
        )),
        _ => Ok(record),
    }
}

fn request_summary(record: &SignatureRequestRecord) -> Value {
    let r = &record.request;
    json!({
        "id": r.id,
        "name": r.name,
        "status": r.status.as_str(),
        "expires_at": rfc3339(r.expires_at),
        "ordered_signers": r.ordered_signers,
    })
}

/// The request's documents; with a link's `base`, each with the `url` that
/// downloads it through that link.
fn documents_json(record: &SignatureRequestRecord, base: Option<&str>) -> Vec<Value> {
    record
        .documents
        .iter()
        .map(|d| {
            let mut document = json!({"id": d.id, "filename": d.filename, "pages": d.pages, "sha256": d.sha256});
            if let Some(base) = base {
                document["url"] = json!(format!("{base}/documents/{}", d.id));
            }
            document
        })
        .collect()
}

fn invalid_link() -> ApiError {
    ApiError::NotFound("this link is not valid".into())
}

fn person_act(name: &str, email: &str, client: &Client) -> Act {
    Act {
        actor: format!("{name} <{email}>"),
        origin: client.origin(),
    }
}

async fn signer_record(state: &AppState, token: &str) -> Result<(SignerId, SignatureRequestRecord), ApiError> {
    let (signer, version) = state.lifecycle.links().signer_of(token).ok_or_else(invalid_link)?;
    let record = state
        .store
        .signature_request_of_signer(&signer)
        .await?
        .ok_or_else(invalid_link)?;
    let current = record
        .request
        .signers
        .iter()
        .find(|s| s.id == signer)
        .map(|s| s.link_version);
    if current != Some(version) {
        return Err(ApiError::Gone(
            "this link was replaced by a newer one; use the latest invitation, or ask the sender for a new link".into(),
        ));
    }
    Ok((signer, withdrawn(record)?))
}

fn signer_view(state: &AppState, signer: &SignerId, record: &SignatureRequestRecord) -> LinkView {
    let index = record
        .request
        .signer_index(signer)
        .expect("the record was loaded by this signer");
    let person = &record.request.signers[index];
    let base = state.lifecycle.links().signing_url(person);
    let actions = if record.request.status == RequestStatus::Ongoing && person.can_act() {
        json!({"sign": format!("{base}/sign"), "decline": format!("{base}/decline")})
    } else {
        json!({})
    };
    let (documents, signed_pdf) = files_json(state, record, Some(&base));
    LinkView {
        signature_request: request_summary(record),
        signer: Some(signer_json(person)),
        approver: None,
        documents,
        actions,
        signed_pdf,
    }
}

/// Applies the action `make` builds for the token's signer, as that signer.
async fn act_as_signer(
    state: &AppState,
    client: &Client,
    token: &str,
    make: impl FnOnce(SignerId) -> Action,
) -> Result<(SignerId, SignatureRequestRecord), ApiError> {
    let (signer, record) = signer_record(state, token).await?;
    let index = record.request.signer_index(&signer).ok_or_else(invalid_link)?;
    let person = &record.request.signers[index];
    let act = person_act(&person.name, &person.email, client);
    let record = state
        .lifecycle
        .apply(&record.request.id, make(signer.clone()), &act)
        .await?;
    Ok((signer, record))
}

/// Applies the action `make` builds for the token's approver, as that approver.
async fn act_as_approver(
    state: &AppState,
    client: &Client,
    token: &str,
    make: impl FnOnce(ApproverId) -> Action,
) -> Result<(ApproverId, SignatureRequestRecord), ApiError> {
    let (approver, record) = approver_record(state, token).await?;
    let index = record.request.approver_index(&approver).ok_or_else(invalid_link)?;
    let person = &record.request.approvers[index];
    let act = person_act(&person.name, &person.email, client);
    let record = state
        .lifecycle
        .apply(&record.request.id, make(approver.clone()), &act)
        .await?;
    Ok((approver, record))
}

/// Whose link a page is for.
#[derive(Debug, Clone, Copy)]
enum LinkKind {
    Signing,
    Approval,
}

/// The page of the person behind `token`, as `record` stands, served at
/// the link itself or (`at_action`) at one of its actions.
async fn person_page(
    state: &AppState,
    kind: LinkKind,
    token: &str,
    at_action: bool,
    record: &SignatureRequestRecord,
) -> Result<PersonPage, ApiError> {
    let base = if at_action { String::new() } else { format!("{token}/") };
    let sender = state
        .store
        .tenant_name(&record.tenant_id)
        .await?
        .unwrap_or_else(|| "The sender".into());
    let mailed = state.lifecycle.mails();
    let page = match kind {
        LinkKind::Signing => {
            let (signer, _) = state.lifecycle.links().signer_of(token).ok_or_else(invalid_link)?;
            let index = record.request.signer_index(&signer).ok_or_else(invalid_link)?;
            let signed_pdf = Some(format!("{base}signed.pdf"));
            PersonPage::new(record, Person::Signer(index), &sender, &base, signed_pdf, mailed)
        }
        LinkKind::Approval => {
            let approver = state.lifecycle.links().approver_of(token).ok_or_else(invalid_link)?;
            let index = record.request.approver_index(&approver).ok_or_else(invalid_link)?;
            let signed_pdf = files_json(state, record, None)
                .1
                .and_then(|link| link["url"].as_str().map(str::to_owned));
            PersonPage::new(record, Person::Approver(index), &sender, &base, signed_pdf, mailed)
        }
    };
    Ok(page)
}

/// Loads the record behind a person's link.
async fn link_record(state: &AppState, kind: LinkKind, token: &str) -> Result<SignatureRequestRecord, ApiError> {
    Ok(match kind {
        LinkKind::Signing => signer_record(state, token).await?.1,
        LinkKind::Approval => approver_record(state, token).await?.1,
    })
}

/// What a person's link answers after `result`: JSON as it always did, or
/// for a browser the page — a form that worked is redirected to it (so a
/// reload does not post again), a refused one shows it again with the
/// message beside the field and what was typed kept.
async fn answer(
    state: &AppState,
    face: Face,
    kind: LinkKind,
    token: &str,
    result: Result<LinkView, ApiError>,
    typed_name: Option<String>,
    acted: bool,
) -> Response {
    let error = match (face, result) {
        (Face::Json, Ok(view)) => return Json(view).into_response(),
        (Face::Json, Err(error)) => return error.into_response(),
        // From `…/{token}/sign`, `../{token}` is the page.
        (Face::Page, Ok(_)) if acted => return pages::see_other(&format!("../{token}")),
        (Face::Page, Ok(_)) => None,
        (Face::Page, Err(error)) => Some(error),
    };
    // Only a refusal about this request (a field, a state) is shown on its
    // page; an invalid, replaced or withdrawn link gets the problem page.
    let error = match error {
        Some(e) if !matches!(e, ApiError::Validation { .. } | ApiError::Conflict { .. }) => return pages::problem(e),
        other => other,
    };
    let record = match link_record(state, kind, token).await {
        Ok(record) => record,
        Err(e) => return pages::problem(e),
    };
    let page = match person_page(state, kind, token, acted, &record).await {
        Ok(page) => page,
        Err(e) => return pages::problem(e),
    };
    match error {
        None => pages::page(StatusCode::OK, &page),
        Some(error) => {
            let field = match &error {
                ApiError::Validation { field, .. } => Some(field.as_str()),
                _ => None,
            };
            let page = page.refused(field, error.to_string(), typed_name);
            pages::page(error.status(), &page)
        }
    }
}

/// Opens a signing link: the request, the signer and the documents — as
/// JSON, or as the signer's page for a browser (`Accept: text/html`). The
/// first opening fires `signer.link_opened`.
#[utoipa::path(
    get, path = "/signing/{token}", tag = "signing",
    params(("token" = String, Path, description = "The token of a `signing_url`")),
    responses((status = 200, body = LinkView), (status = 404, body = crate::error::ErrorBody), (status = 410, description = "The request was deleted (or, for a document, is no longer being decided)", body = crate::error::ErrorBody))
)]
pub async fn open(State(state): State<AppState>, client: Client, face: Face, Path(token): Path<String>) -> Response {
    let result = open_signing(&state, &client, &token).await;
    answer(&state, face, LinkKind::Signing, &token, result, None, false).await
}

async fn open_signing(state: &AppState, client: &Client, token: &str) -> Result<LinkView, ApiError> {
    let (signer, record) = signer_record(state, token).await?;
    let index = record.request.signer_index(&signer).ok_or_else(invalid_link)?;
    let person = &record.request.signers[index];
    // Only a signer who can sign "opens" the request; a pending one (their
    // turn has not come) or one who already acted just looks.
    let record = if record.request.status == RequestStatus::Ongoing && person.status == SignerStatus::Notified {
        let act = person_act(&person.name, &person.email, client);
        state
            .lifecycle
            .apply(&record.request.id, Action::OpenLink(signer.clone()), &act)
            .await?
    } else {
        record
    };
    Ok(signer_view(state, &signer, &record))
}

/// Signing: the signer's consent and their typed name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignBody {
    /// Must be `true`: the signer agrees to sign electronically.
    pub consent: Option<bool>,
    /// The signer's full name, typed as their signature: 1 to 200
    /// characters. Kept in the audit trail with the time, IP address and
    /// user agent.
    pub typed_name: Option<String>,
}

/// Signs as the link's signer, who agrees to sign electronically and types
/// their name. When this is the last signature, the signed PDF and the
/// audit certificate are made before `signature_request.done` is emitted.
/// A signer who never opened the link is opened first (`signer.link_opened`
/// precedes `signer.done`).
#[utoipa::path(
    post, path = "/signing/{token}/sign", tag = "signing",
    params(("token" = String, Path, description = "The token of a `signing_url`")),
    request_body = SignBody,
    responses(
        (status = 200, body = LinkView),
        (status = 404, body = crate::error::ErrorBody), (status = 410, description = "The request was deleted (or, for a document, is no longer being decided)", body = crate::error::ErrorBody),
        (status = 409, description = "Already signed, declined, not their turn, or the request is not ongoing", body = crate::error::ErrorBody),
        (status = 422, description = "No consent, or no typed name", body = crate::error::ErrorBody)
    )
)]
pub async fn sign(
    State(state): State<AppState>,
    client: Client,
    Path(token): Path<String>,
    body: Submitted<SignBody>,
) -> Response {
    let face = body.face();
    let body = body.into_inner();
    let result = match Signature::new(body.consent, body.typed_name.as_deref()) {
        Ok(signature) => act_as_signer(&state, &client, &token, |signer| Action::Sign(signer, signature))
            .await
            .map(|(signer, record)| signer_view(&state, &signer, &record)),
        Err(refusal) => Err(LifecycleError::from(refusal).into()),
    };
    answer(&state, face, LinkKind::Signing, &token, result, body.typed_name, true).await
}

/// Declines as the link's signer, with a reason: the whole request is declined.
#[utoipa::path(
    post, path = "/signing/{token}/decline", tag = "signing",
    params(("token" = String, Path, description = "The token of a `signing_url`")),
    request_body = Decline,
    responses(
        (status = 200, body = LinkView),
        (status = 404, body = crate::error::ErrorBody), (status = 410, description = "The request was deleted (or, for a document, is no longer being decided)", body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
        (status = 422, description = "No reason", body = crate::error::ErrorBody)
    )
)]
pub async fn decline(
    State(state): State<AppState>,
    client: Client,
    Path(token): Path<String>,
    body: Submitted<Decline>,
) -> Response {
    let face = body.face();
    let body = body.into_inner();
    let result = async {
        let reason = check_reason("reason", body.reason.as_deref(), true)?.unwrap_or_default();
        let (signer, record) = act_as_signer(&state, &client, &token, |signer| Action::Decline(signer, reason)).await?;
        Ok(signer_view(&state, &signer, &record))
    }
    .await;
    answer(&state, face, LinkKind::Signing, &token, result, None, true).await
}

/// Downloads one of the request's documents, to read before signing.
#[utoipa::path(
    get, path = "/signing/{token}/documents/{id}", tag = "signing",
    params(("token" = String, Path, description = "The token of a `signing_url`"), ("id" = String, Path, description = "`doc_…`")),
    responses((status = 200, content_type = "application/pdf", body = crate::routes::PdfFile), (status = 404, body = crate::error::ErrorBody), (status = 410, description = "The request was deleted (or, for a document, is no longer being decided)", body = crate::error::ErrorBody))
)]
pub async fn document(
    State(state): State<AppState>,
    Path((token, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (_, record) = signer_record(&state, &token).await?;
    let status = record.request.status;
    if !documents_readable(status) {
        let after = if status == RequestStatus::Done {
            "; the signed PDF is linked from the signing link"
        } else {
            ""
        };
        return Err(ApiError::Gone(format!(
            "this signature request is {}: its documents are no longer served through this link{after}",
            status.as_str()
        )));
    }
    let doc_id = path_id(&id, "document", DocumentId::parse)?;
    let document = record
        .documents
        .iter()
        .find(|d| d.id == doc_id)
        .ok_or_else(|| ApiError::not_found("document", &id))?;
    let bytes = state
        .lifecycle
        .blobs()
        .get(&document_key(&record.request.id, document))
        .await
        .map_err(crate::lifecycle::LifecycleError::from)?;
    Ok(pdf_response(bytes, &document.filename))
}

async fn approver_record(state: &AppState, token: &str) -> Result<(ApproverId, SignatureRequestRecord), ApiError> {
    let approver = state.lifecycle.links().approver_of(token).ok_or_else(invalid_link)?;
    let record = state
        .store
        .signature_request_of_approver(&approver)
        .await?
        .ok_or_else(invalid_link)?;
    Ok((approver, withdrawn(record)?))
}

fn approver_view(state: &AppState, approver: &ApproverId, record: &SignatureRequestRecord) -> LinkView {
    let base = state.lifecycle.links().approval_url(approver);
    let index = record
        .request
        .approver_index(approver)
        .expect("the record was loaded by this approver");
    let person = &record.request.approvers[index];
    let can_act = record.request.status == RequestStatus::Approval
        && person.status == signhook_core::lifecycle::ApproverStatus::Notified;
    let (documents, signed_pdf) = files_json(state, record, None);
    LinkView {
        signature_request: request_summary(record),
        signer: None,
        approver: Some(approver_json(person)),
        documents,
        signed_pdf,
        actions: if can_act {
            json!({"approve": format!("{base}/approve"), "reject": format!("{base}/reject")})
        } else {
            json!({})
        },
    }
}

/// Opens an approval link.
#[utoipa::path(
    get, path = "/approvals/{token}", tag = "signing",
    params(("token" = String, Path, description = "The token of an `approval_url`")),
    responses((status = 200, body = LinkView), (status = 404, body = crate::error::ErrorBody), (status = 410, description = "The request was deleted (or, for a document, is no longer being decided)", body = crate::error::ErrorBody))
)]
pub async fn open_approval(State(state): State<AppState>, face: Face, Path(token): Path<String>) -> Response {
    let result = approver_record(&state, &token)
        .await
        .map(|(approver, record)| approver_view(&state, &approver, &record));
    answer(&state, face, LinkKind::Approval, &token, result, None, false).await
}

/// Approves as the link's approver; the last approval sends the request out.
#[utoipa::path(
    post, path = "/approvals/{token}/approve", tag = "signing",
    params(("token" = String, Path, description = "The token of an `approval_url`")),
    responses(
        (status = 200, body = LinkView),
        (status = 404, body = crate::error::ErrorBody), (status = 410, description = "The request was deleted (or, for a document, is no longer being decided)", body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)
    )
)]
pub async fn approve(
    State(state): State<AppState>,
    client: Client,
    face: Face,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    // The page's form posts with no fields; it is a form all the same.
    let face = if is_form(&headers) { Face::Page } else { face };
    let result = act_as_approver(&state, &client, &token, Action::Approve)
        .await
        .map(|(approver, record)| approver_view(&state, &approver, &record));
    answer(&state, face, LinkKind::Approval, &token, result, None, true).await
}

/// Rejects as the link's approver, with a reason: the request is declined.
#[utoipa::path(
    post, path = "/approvals/{token}/reject", tag = "signing",
    params(("token" = String, Path, description = "The token of an `approval_url`")),
    request_body = Decline,
    responses(
        (status = 200, body = LinkView),
        (status = 404, body = crate::error::ErrorBody), (status = 410, description = "The request was deleted (or, for a document, is no longer being decided)", body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)
    )
)]
pub async fn reject(
    State(state): State<AppState>,
    client: Client,
    Path(token): Path<String>,
    body: Submitted<Decline>,
) -> Response {
    let face = body.face();
    let body = body.into_inner();
    let result = async {
        let reason = check_reason("reason", body.reason.as_deref(), true)?.unwrap_or_default();
        let (approver, record) =
            act_as_approver(&state, &client, &token, |approver| Action::Reject(approver, reason)).await?;
        Ok(approver_view(&state, &approver, &record))
    }
    .await;
    answer(&state, face, LinkKind::Approval, &token, result, None, true).await
}

/// Downloads the signed PDF of a done request through the signer's own
/// link: the address the page and the "signed copy" e-mail give, which
/// lasts as long as the link (the file links of the API last 30 minutes).
#[utoipa::path(
    get, path = "/signing/{token}/signed.pdf", tag = "signing",
    params(("token" = String, Path, description = "The token of a `signing_url`")),
    responses(
        (status = 200, content_type = "application/pdf", body = crate::routes::PdfFile),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "The request is not done", body = crate::error::ErrorBody),
        (status = 410, description = "The request was deleted", body = crate::error::ErrorBody)
    )
)]
pub async fn signed_pdf(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, ApiError> {
    let (_, record) = signer_record(&state, &token).await?;
    if record.request.status != RequestStatus::Done {
        return Err(ApiError::Conflict {
            code: "invalid_state",
            message: format!(
                "this signature request is {}: the signed PDF exists once everyone has signed",
                record.request.status.as_str()
            ),
            field: None,
        });
    }
    let bytes = state
        .lifecycle
        .blobs()
        .get(&FileKind::SignedPdf.blob_key(&record.request.id))
        .await
        .map_err(crate::lifecycle::LifecycleError::from)?;
    Ok(pdf_response(bytes, &format!("{}-signed.pdf", record.request.id)))
}

/// A file link's query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileParams {
    /// When the link expires (milliseconds since the epoch).
    pub expires: i64,
    /// The link's MAC.
    pub token: String,
}

/// Downloads a done request's signed PDF or audit certificate through a
/// link from a `done` event or from `GET /v1/signature_requests/{id}/links`.
/// An expired link answers 410; ask the API for a fresh one.
#[utoipa::path(
    get, path = "/files/{id}/{file}", tag = "signing",
    params(
        ("id" = String, Path, description = "`sr_…`"),
        ("file" = String, Path, description = "`signed.pdf` or `audit_certificate.pdf`"),
        FileParams
    ),
    responses(
        (status = 200, content_type = "application/pdf", body = crate::routes::PdfFile),
        (status = 404, body = crate::error::ErrorBody),
        (status = 410, description = "The link expired", body = crate::error::ErrorBody)
    )
)]
pub async fn file(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<FileParams>,
) -> Result<Response, ApiError> {
    let request = SignatureRequestId::parse(&id).map_err(|_| invalid_link())?;
    let kind = FileKind::parse(&file).ok_or_else(invalid_link)?;
    match state
        .lifecycle
        .links()
        .check_file_link(&request, kind, params.expires, &params.token, state.clock.now())
    {
        Ok(()) => {}
        Err(LinkRefusal::Invalid) => return Err(invalid_link()),
        Err(LinkRefusal::Expired) => {
            return Err(ApiError::Gone(
                "this link has expired; get a fresh one from GET /v1/signature_requests/{id}/links".into(),
            ))
        }
    }
    // A deleted request's files are no longer served, even by a live link.
    let record = state.store.load_signature_request(&request).await?;
    if !record.is_some_and(|r| r.request.status == RequestStatus::Done) {
        return Err(ApiError::not_found("file", &file));
    }
    let bytes = state
        .lifecycle
        .blobs()
        .get(&kind.blob_key(&request))
        .await
        .map_err(crate::lifecycle::LifecycleError::from)?;
    Ok(pdf_response(bytes, &format!("{id}-{file}")))
}

fn pdf_response(bytes: Vec<u8>, filename: &str) -> Response {
    let disposition = format!(
        "inline; filename=\"{}\"",
        filename.replace(
            |c: char| c == '"' || c == '\\' || !c.is_ascii() || c.is_ascii_control(),
            "_"
        )
    );
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    pages::protect(headers);
    // Shown inside the signer's page, and nowhere else.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'self'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    response
}
