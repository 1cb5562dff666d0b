//! The dashboard's Signature requests pages: the tenant's requests in the
//! environment shown, newest first, page by page, filtered by status (as
//! `GET /v1/signature_requests`); and one request — its state and
//! deadline, its signers and approvers, its documents, its timeline (every
//! event of the request by `sequence`, said in words as the audit
//! certificate says it), once done the signed PDF and the audit
//! certificate, and for admins the buttons that cancel it, remind its
//! signers or reopen it once expired.
//!
//! Every button calls what the matching `/v1` route calls
//! ([`apply_action`]), so the page refuses and writes exactly what the API
//! would; a refusal is said on the page in the API's words. No signing or
//! approval link is ever shown here: those are the signers' credentials.

use crate::error::ApiError;
use crate::extract::{Auth, Client};
use crate::pages::endpoint::form_instant;
use crate::pages::frame::{Choice, Nav};
use crate::pages::session::{CsrfForm, PageRefusal, SignedIn};
use crate::pages::{dashboard_page, see_other};
use crate::routes::signature_requests::{apply_action, check_reason, future, listed_status, load};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use signhook_core::ids::SignatureRequestId;
use signhook_core::lifecycle::{Action, RequestStatus, SignerStatus};
use signhook_core::time::readable;
use signhook_store::signature_requests::{Act, SignatureRequestRecord, TrailEntry};

/// How many requests one page of the list shows.
const LIST_PAGE: u32 = 25;

/// The statuses the list filters by, in lifecycle order.
const FILTER_STATUSES: &[&str] = &[
    "draft", "approval", "ongoing", "done", "declined", "canceled", "expired", "deleted",
];

/// A form field left empty means "no filter".
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// What the list's address may carry: the status filter and the cursor.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    before: Option<String>,
}

#[derive(Template)]
#[template(path = "signature_requests.html")]
struct ListPage {
    nav: Nav,
    statuses: Vec<Choice>,
    filtered: bool,
    filter_error: Option<String>,
    rows: Vec<Row>,
    older: Option<String>,
}

struct Row {
    id: String,
    name: String,
    status: &'static str,
    signed: String,
    deadline: String,
    created: String,
}

/// How far the signing went: "1 of 2 signed".
fn signed_count(record: &SignatureRequestRecord) -> String {
    let signers = &record.request.signers;
    let done = signers.iter().filter(|s| s.status == SignerStatus::Done).count();
    format!("{done} of {} signed", signers.len())
}

/// `GET /signature_requests`.
pub async fn list(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageRefusal> {
    let (filter_error, status) = match given(&query.status).map(listed_status).transpose() {
        Ok(status) => (None, status),
        Err(ApiError::Validation { message, .. }) => (Some(message), None),
        Err(e) => return Err(e.into()),
    };
    let (rows, older) = if filter_error.is_some() {
        (Vec::new(), None)
    } else {
        // A cursor that is not a request id names no page: the first one.
        let before = given(&query.before).and_then(|b| SignatureRequestId::parse(b).ok());
        let page = state
            .store
            .recent_signature_requests(
                &signed_in.tenant_id,
                signed_in.sandbox(),
                before.as_ref(),
                status,
                LIST_PAGE,
            )
            .await?;
        let older = page
            .has_more
            .then(|| page.items.last().map(|r| list_href(status, r.request.id.as_str())))
            .flatten();
        let rows = page
            .items
            .iter()
            .map(|r| Row {
                id: r.request.id.to_string(),
                name: r.request.name.clone(),
                status: r.request.status.as_str(),
                signed: signed_count(r),
                deadline: readable(r.request.expires_at),
                created: readable(r.created_at),
            })
            .collect();
        (rows, older)
    };
    let http_status = if filter_error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page_view = ListPage {
        nav: Nav::new(&signed_in, "signature_requests", "Signature requests"),
        statuses: Choice::list(
            FILTER_STATUSES.iter().copied(),
            status.map_or("", RequestStatus::as_str),
        ),
        filtered: status.is_some(),
        filter_error,
        rows,
        older,
    };
    Ok(dashboard_page(http_status, &page_view))
}

/// The list's address with `status` (if any) and `before`.
fn list_href(status: Option<RequestStatus>, before: &str) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(status) = status {
        query.append_pair("status", status.as_str());
    }
    query.append_pair("before", before);
    format!("/signature_requests?{}", query.finish())
}

#[derive(Template)]
#[template(path = "signature_request.html")]
struct RequestPage {
    nav: Nav,
    admin: bool,
    id: String,
    status: &'static str,
    deadline: String,
    created: String,
    activated: Option<String>,
    completed: Option<String>,
    ordered: bool,
    reason: Option<String>,
    workspace_id: String,
    signers: Vec<PersonRow>,
    approvers: Vec<PersonRow>,
    documents: Vec<DocumentRow>,
    timeline: Vec<Step>,
    files: Option<Files>,
    can_cancel: bool,
    can_remind: bool,
    can_reactivate: bool,
    notice: Option<&'static str>,
    refusal: Option<String>,
    errors: FieldErrors,
}

struct PersonRow {
    name: String,
    email: String,
    status: &'static str,
    /// When they signed (signers) or acted (approvers).
    acted: String,
    /// Why they declined or rejected.
    reason: Option<String>,
}

struct DocumentRow {
    id: String,
    filename: String,
    pages: i64,
    size: String,
    sha256: String,
}

/// One event of the request, as the timeline shows it.
struct Step {
    sequence: Option<i64>,
    at: String,
    event_type: String,
    sentence: String,
    rest: Option<String>,
    event_id: Option<String>,
}

/// Fresh links to a done request's files.
struct Files {
    signed_pdf: String,
    audit_certificate: String,
    until: String,
}

/// The messages beside the fields of a refused form.
#[derive(Default)]
struct FieldErrors {
    reason: Option<String>,
    expires_at: Option<String>,
}

/// What a button did, said on the page it leads back to.
fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "canceled" => "Request canceled: its signers can no longer sign.",
        "reminded" => "Reminder sent to every signer who has not signed yet.",
        "reactivated" => "Request reopened with the new deadline: its signers can sign again.",
        _ => return None,
    })
}

/// A size in bytes, for people.
fn size_in_words(bytes: i64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} bytes"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// The request's events from its audit trail, by `sequence`, each said in
/// the words of the audit certificate. Trail rows written before the trail
/// kept sequence numbers come first, in the order they were written (which
/// is the order they happened).
fn timeline(trail: Vec<TrailEntry>) -> Vec<Step> {
    let mut events: Vec<TrailEntry> = trail
        .into_iter()
        .filter(|entry| entry.sequence.is_some() || signhook_core::catalog::lookup(&entry.action).is_some())
        .collect();
    // Stable: rows without a sequence keep their trail order.
    events.sort_by_key(|entry| entry.sequence);
    events
        .into_iter()
        .map(|entry| {
            let at = readable(entry.at);
            let told = signhook_documents::tell(&signhook_documents::TrailEntry {
                at: at.clone(),
                action: entry.action.clone(),
                actor: entry.actor,
                ip: entry.origin.ip,
                user_agent: entry.origin.user_agent,
                detail: entry.detail,
            });
            Step {
                sequence: entry.sequence,
                at,
                event_type: entry.action,
                sentence: told.sentence,
                rest: told.rest,
                event_id: entry.event_id.map(|id| id.to_string()),
            }
        })
        .collect()
}

/// The tenant's request `id` in the environment shown; a 404 page for
/// another tenant's (as through the API) or the other environment's.
async fn request(state: &AppState, signed_in: &SignedIn, id: &str) -> Result<SignatureRequestRecord, PageRefusal> {
    Ok(load(state, &Auth(signed_in.principal()), id).await?)
}

/// What the page adds after a refused button.
#[derive(Default)]
struct Extras {
    notice: Option<&'static str>,
    refusal: Option<String>,
    errors: FieldErrors,
}

async fn render(
    state: &AppState,
    signed_in: &SignedIn,
    record: SignatureRequestRecord,
    extras: Extras,
    status: StatusCode,
) -> Result<Response, PageRefusal> {
    let trail = state.store.audit_trail(&record.request.id).await?;
    let request = &record.request;
    let files = state.lifecycle.fresh_links(&record).ok().map(|links| Files {
        signed_pdf: links["signed_pdf"]["url"].as_str().unwrap_or_default().to_owned(),
        audit_certificate: links["audit_certificate"]["url"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        until: links["signed_pdf"]["expires_at"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    });
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(readable).unwrap_or_else(|| "—".into());
    let page_view = RequestPage {
        nav: Nav::new(signed_in, "signature_requests", request.name.clone()),
        admin: signed_in.is_admin(),
        id: request.id.to_string(),
        status: request.status.as_str(),
        deadline: readable(request.expires_at),
        created: readable(record.created_at),
        activated: record.activated_at.map(readable),
        completed: record.completed_at.map(readable),
        ordered: request.ordered_signers,
        reason: request.reason.clone(),
        workspace_id: record.workspace_id.to_string(),
        signers: request
            .signers
            .iter()
            .map(|s| PersonRow {
                name: s.name.clone(),
                email: s.email.clone(),
                status: s.status.as_str(),
                acted: when(s.signed_at.or(s.declined_at)),
                reason: s.decline_reason.clone(),
            })
            .collect(),
        approvers: request
            .approvers
            .iter()
            .map(|a| PersonRow {
                name: a.name.clone(),
                email: a.email.clone(),
                status: a.status.as_str(),
                acted: when(a.acted_at),
                reason: a.reject_reason.clone(),
            })
            .collect(),
        documents: record
            .documents
            .iter()
            .map(|d| DocumentRow {
                id: d.id.to_string(),
                filename: d.filename.clone(),
                pages: d.pages,
                size: size_in_words(d.size),
                sha256: d.sha256.clone(),
            })
            .collect(),
        timeline: timeline(trail),
        files,
        can_cancel: matches!(
            request.status,
            RequestStatus::Draft | RequestStatus::Approval | RequestStatus::Ongoing
        ),
        can_remind: request.status == RequestStatus::Ongoing,
        can_reactivate: request.status == RequestStatus::Expired,
        notice: extras.notice,
        refusal: extras.refusal,
        errors: extras.errors,
    };
    Ok(dashboard_page(status, &page_view))
}

/// What the request page's address may carry: what a button just did.
#[derive(Debug, Default, Deserialize)]
pub struct RequestQuery {
    done: Option<String>,
}

/// `GET /signature_requests/{id}`.
pub async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Query(query): Query<RequestQuery>,
) -> Result<Response, PageRefusal> {
    let record = request(&state, &signed_in, &id).await?;
    let extras = Extras {
        notice: notice(query.done.as_deref()),
        ..Extras::default()
    };
    render(&state, &signed_in, record, extras, StatusCode::OK).await
}

/// Who acts when a dashboard user presses a button, for the audit trail.
fn dashboard_act(signed_in: &SignedIn, client: &Client) -> Act {
    Act {
        // These pages are not in the portal; were they, its visitor acts as itself.
        actor: match signed_in.user() {
            Some(user) => format!("{} in the dashboard", user.email),
            None => "the embeddable portal".to_owned(),
        },
        origin: client.origin(),
    }
}

/// Runs a button's action: back to the page saying `done`, or the page
/// again with the API's refusal (beside its field when it names one).
async fn act_on(
    state: &AppState,
    signed_in: &SignedIn,
    client: &Client,
    id: &str,
    action: Result<Action, ApiError>,
    done: &str,
) -> Result<Response, PageRefusal> {
    signed_in.require_admin()?;
    let record = request(state, signed_in, id).await?;
    let id = record.request.id.to_string();
    let auth = Auth(signed_in.principal());
    let outcome = match action {
        Ok(action) => apply_action(state, &auth, &id, action, &dashboard_act(signed_in, client)).await,
        Err(e) => Err(e),
    };
    let refused = match outcome {
        Ok(_) => return Ok(see_other(&format!("/signature_requests/{id}?done={done}"))),
        Err(e @ (ApiError::Validation { .. } | ApiError::Conflict { .. })) => e,
        Err(e) => return Err(e.into()),
    };
    let status = refused.status();
    let mut extras = Extras::default();
    match refused {
        ApiError::Validation { field, message } if field == "reason" => extras.errors.reason = Some(message),
        ApiError::Validation { field, message } if field == "expires_at" => extras.errors.expires_at = Some(message),
        other => extras.refusal = Some(other.to_string()),
    }
    // Shown as it is now: the refusal may come from a change made elsewhere.
    let record = request(state, signed_in, &id).await?;
    render(state, signed_in, record, extras, status).await
}

/// The cancel form.
#[derive(Debug, Deserialize)]
pub struct CancelForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /signature_requests/{id}/cancel`: as `POST
/// /v1/signature_requests/{id}/cancel {"reason"}`.
pub async fn cancel(
    State(state): State<AppState>,
    signed_in: SignedIn,
    client: Client,
    Path(id): Path<String>,
    Form(form): Form<CancelForm>,
) -> Result<Response, PageRefusal> {
    signed_in.check_csrf(&form.csrf)?;
    let action = check_reason("reason", Some(&form.reason), false).map(Action::Cancel);
    act_on(&state, &signed_in, &client, &id, action, "canceled").await
}

/// `POST /signature_requests/{id}/remind`: as `POST
/// /v1/signature_requests/{id}/remind`.
pub async fn remind(
    State(state): State<AppState>,
    signed_in: SignedIn,
    client: Client,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    signed_in.check_csrf(&form.csrf)?;
    act_on(&state, &signed_in, &client, &id, Ok(Action::Remind), "reminded").await
}

/// The reactivate form.
#[derive(Debug, Deserialize)]
pub struct ReactivateForm {
    csrf: String,
    #[serde(default)]
    expires_at: String,
}

/// `POST /signature_requests/{id}/reactivate`: as `POST
/// /v1/signature_requests/{id}/reactivate {"expires_at"}`, the deadline
/// typed in UTC.
pub async fn reactivate(
    State(state): State<AppState>,
    signed_in: SignedIn,
    client: Client,
    Path(id): Path<String>,
    Form(form): Form<ReactivateForm>,
) -> Result<Response, PageRefusal> {
    signed_in.check_csrf(&form.csrf)?;
    let action = future("expires_at", &form_instant(&form.expires_at), state.clock.now()).map(Action::Reactivate);
    act_on(&state, &signed_in, &client, &id, action, "reactivated").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use signhook_store::signature_requests::Origin;

    fn entry(action: &str, sequence: Option<i64>) -> TrailEntry {
        TrailEntry {
            at: Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
            action: action.into(),
            actor: "API (live key)".into(),
            origin: Origin::default(),
            detail: None,
            event_id: None,
            sequence,
        }
    }

    #[test]
    fn the_timeline_holds_the_events_by_sequence() {
        let trail = vec![
            entry("signature_request.created", None),
            entry("document.added", None),
            // Written by another node a moment apart: out of sequence in the trail.
            entry("signer.notified", Some(2)),
            entry("signature_request.activated", Some(1)),
            entry("signer.invitation_handed_over", None),
            entry("signer.done", Some(3)),
        ];
        let steps = timeline(trail);
        let order: Vec<_> = steps.iter().map(|s| (s.sequence, s.event_type.as_str())).collect();
        assert_eq!(
            order,
            [
                (Some(1), "signature_request.activated"),
                (Some(2), "signer.notified"),
                (Some(3), "signer.done")
            ]
        );
        assert_eq!(
            steps[0].sentence,
            "The request was sent for signature through the API (live key)"
        );
    }

    #[test]
    fn rows_from_before_sequences_keep_their_order_first() {
        let steps = timeline(vec![
            entry("signature_request.activated", None),
            entry("signer.notified", None),
            entry("signature_request.canceled", Some(3)),
        ]);
        let order: Vec<_> = steps.iter().map(|s| s.event_type.as_str()).collect();
        assert_eq!(
            order,
            [
                "signature_request.activated",
                "signer.notified",
                "signature_request.canceled"
            ]
        );
    }
}
