//! One delivery's dashboard page: the event it carries and the endpoint it
//! goes to, the request body every attempt sends, each attempt (when it was
//! due and when it left, the request's headers as sent, the answer's status
//! and the start of its body, how long it took, the kind of failure, the
//! node) — and, for admins, a button that sends it again.

use crate::error::ApiError;
use crate::extract::Auth;
use crate::pages::frame::Nav;
use crate::pages::session::{CsrfForm, PageRefusal, SignedIn};
use crate::pages::{dashboard_page, see_other};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use signhook_core::ids::DeliveryId;
use signhook_core::time::readable;
use signhook_delivery::payload::Envelope;
use signhook_store::deliveries::{Attempt, Delivery};

#[derive(Template)]
#[template(path = "delivery.html")]
struct DeliveryPage {
    nav: Nav,
    admin: bool,
    id: String,
    event_id: String,
    event_type: String,
    webhook_id: String,
    webhook_url: Option<String>,
    status: &'static str,
    created: String,
    next_attempt: Option<String>,
    body: Option<String>,
    attempts: Vec<AttemptRow>,
    notice: Option<&'static str>,
    refusal: Option<String>,
}

struct AttemptRow {
    number: u32,
    scheduled: String,
    started: String,
    duration_ms: u64,
    status_code: String,
    outcome_tone: &'static str,
    error: Option<String>,
    response_body: Option<String>,
    location: Option<String>,
    node: String,
    /// The request's headers as sent, a `name: value` line each.
    request_headers: String,
}

fn attempt_row(a: Attempt) -> AttemptRow {
    let ok = a.status_code.is_some_and(|c| (200..300).contains(&c));
    AttemptRow {
        number: a.attempt_number,
        scheduled: a.scheduled_at.map(readable).unwrap_or_else(|| "—".into()),
        started: readable(a.started_at),
        duration_ms: a.duration_ms,
        status_code: a
            .status_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "no answer".into()),
        outcome_tone: if ok { "succeeded" } else { "failed" },
        error: match (a.error_kind, a.error_message) {
            (Some(kind), Some(message)) => Some(format!("{}: {message}", kind.as_str())),
            (Some(kind), None) => Some(kind.as_str().to_owned()),
            (None, message) => message,
        },
        response_body: a.response_body.filter(|b| !b.is_empty()),
        location: a.location,
        node: a.node_id,
        request_headers: a
            .request_headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}"))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// What the page's address may carry: what a button just did.
#[derive(Debug, Deserialize)]
pub struct DeliveryQuery {
    done: Option<String>,
}

/// The tenant's delivery `id` in the environment shown, with its attempts.
async fn load(state: &AppState, signed_in: &SignedIn, id: &str) -> Result<(Delivery, Vec<Attempt>), PageRefusal> {
    let not_found = || PageRefusal::Error(ApiError::not_found("delivery", id));
    let delivery_id = DeliveryId::parse(id).map_err(|_| not_found())?;
    state
        .store
        .get_delivery(&signed_in.tenant_id, signed_in.sandbox(), &delivery_id)
        .await?
        .ok_or_else(not_found)
}

async fn render(
    state: &AppState,
    signed_in: &SignedIn,
    id: &str,
    notice: Option<&'static str>,
    refusal: Option<ApiError>,
) -> Result<Response, PageRefusal> {
    let (delivery, attempts) = load(state, signed_in, id).await?;
    let tenant = &signed_in.tenant_id;
    let sandbox = signed_in.sandbox();
    let sub = state
        .store
        .get_subscription(tenant, sandbox, &delivery.subscription_id)
        .await?;
    let event = state.store.get_event(tenant, sandbox, &delivery.event_id).await?;
    // The body every attempt sends: the envelope of the event addressed to
    // the endpoint, built by the same code the sender uses. Gone once the
    // event has passed the retention period or the endpoint was deleted.
    let body = match (&event, &sub) {
        // The envelope's fields one per line, in the order they are sent;
        // `data` exactly as stored and sent.
        (Some(event), Some(sub)) => Envelope::new(event, Some(sub))
            .ok()
            .and_then(|envelope| serde_json::to_string_pretty(&envelope).ok()),
        _ => None,
    };
    let status = if refusal.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    let page_view = DeliveryPage {
        nav: Nav::new(signed_in, "webhooks", "Delivery"),
        admin: signed_in.is_admin(),
        id: delivery.id.to_string(),
        event_id: delivery.event_id.to_string(),
        event_type: delivery.event_type,
        webhook_id: delivery.subscription_id.to_string(),
        webhook_url: sub.map(|s| s.destination().to_owned()),
        status: delivery.status.as_str(),
        created: readable(delivery.created_at),
        next_attempt: delivery
            .next_attempt_at
            .filter(|_| delivery.status == signhook_core::delivery::DeliveryStatus::Pending)
            .map(readable),
        body,
        attempts: attempts.into_iter().map(attempt_row).collect(),
        notice,
        refusal: refusal.map(|e| e.to_string()),
    };
    Ok(dashboard_page(status, &page_view))
}

/// `GET /deliveries/{id}`.
pub async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Response, PageRefusal> {
    let notice = match query.done.as_deref() {
        Some("resent") => Some("Sent again: the new attempt appears below once it is made."),
        _ => None,
    };
    render(&state, &signed_in, &id, notice, None).await
}

/// `POST /deliveries/{id}/resend`: as `POST /v1/deliveries/{id}/resend`;
/// a refusal (still pending, endpoint disabled) is said on the page.
pub async fn resend(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    signed_in.check_admin_form(&form.csrf)?;
    let (delivery, _) = load(&state, &signed_in, &id).await?;
    let id = delivery.id.to_string();
    let auth = Auth(signed_in.principal());
    match crate::routes::deliveries::resend(State(state.clone()), auth, Path(id.clone())).await {
        Ok(_) => Ok(see_other(&format!("/deliveries/{id}?done=resent"))),
        Err(e @ ApiError::Conflict { .. }) => render(&state, &signed_in, &id, None, Some(e)).await,
        Err(e) => Err(e.into()),
    }
}
