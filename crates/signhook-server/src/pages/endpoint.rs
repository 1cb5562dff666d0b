//! One endpoint's dashboard page and its buttons: its settings and state;
//! its signing secret (admins: reveal, rotate); a test event of a chosen
//! type with the payload it carries; enable, disable, delete; "recover
//! everything that failed since …" with the jobs' progress; and its
//! delivery log, filtered by status, event type, time and event id, page
//! by page.
//!
//! Every button is a form `POST` that calls what the matching `/v1` route
//! calls, so the page refuses and writes exactly what the API would, and
//! answers with a redirect back to the page (`?done=…` names what
//! happened, from a fixed list: no text from the request is shown back).

use crate::error::ApiError;
use crate::extract::Auth;
use crate::pages::frame::{Choice, Fields, Nav};
use crate::pages::health::Health;
use crate::pages::session::{CsrfForm, PageRefusal, SignedIn};
use crate::pages::{dashboard_page, see_other};
use crate::routes::deliveries::DeliveryParams;
use crate::routes::recoveries::{start_recovery, StartRecovery};
use crate::routes::webhooks::{queue_test_event, update_subscription, UpdateWebhook};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use signhook_core::catalog::{EventOrigin, EventTypeInfo, CATALOG};
use signhook_core::endpoint::SignatureScheme;
use signhook_core::ids::{DeliveryId, SubscriptionId};
use signhook_core::ordering::Ordering;
use signhook_core::time::readable;
use signhook_store::subscriptions::Subscription;

/// How many deliveries one page of the log lists.
const LOG_PAGE: u32 = 25;
/// How many recovery jobs the page shows.
const RECENT_RECOVERIES: u32 = 5;
/// Blocked keys the page lists; the API lists more.
const BLOCKED_KEYS_SHOWN: u32 = 20;

/// The types a test event may take: every type a tenant's events can have
/// (not the operational ones only Signhook raises about itself).
pub fn test_types() -> impl Iterator<Item = &'static EventTypeInfo> {
    CATALOG.iter().filter(|t| t.origin != EventOrigin::Operational)
}

/// The endpoint's state in words, and its colour.
pub fn state_of(subscription: &Subscription) -> (String, &'static str) {
    use signhook_core::policy::DisabledReason;
    match (
        subscription.enabled,
        subscription.disabled_reason,
        subscription.failing_since,
    ) {
        (false, Some(DisabledReason::Gone), _) => ("Disabled: the endpoint answered 410 Gone".to_owned(), "disabled"),
        (false, Some(DisabledReason::Failing), _) => ("Disabled: it kept failing".to_owned(), "disabled"),
        (false, _, _) => ("Disabled by its owner".to_owned(), "disabled"),
        (true, _, Some(since)) => (
            format!(
                "Failing since {} ({} failures)",
                readable(since),
                subscription.failure_count
            ),
            "failing",
        ),
        (true, _, None) => ("Enabled".to_owned(), "enabled"),
    }
}

/// The tenant's endpoint `id` in the environment shown; a 404 page for
/// another tenant's (as through the API) or the other environment's.
pub async fn endpoint(state: &AppState, signed_in: &SignedIn, id: &str) -> Result<Subscription, PageRefusal> {
    let not_found = || PageRefusal::Error(ApiError::not_found("webhook", id));
    let sub_id = SubscriptionId::parse(id).map_err(|_| not_found())?;
    state
        .store
        .get_subscription(&signed_in.tenant_id, signed_in.sandbox(), &sub_id)
        .await?
        .ok_or_else(not_found)
}

/// The endpoint a button of its page acts on: the form is this session's,
/// the user an admin, the endpoint the tenant's.
async fn admin_action(
    state: &AppState,
    signed_in: &SignedIn,
    id: &str,
    form: &CsrfForm,
) -> Result<Subscription, PageRefusal> {
    signed_in.check_admin_form(&form.csrf)?;
    endpoint(state, signed_in, id).await
}

/// What the page's address may carry: the log's filters and cursor, the
/// test type to preview, and what a button just did.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    status: Option<String>,
    event_type: Option<String>,
    event_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    test_type: Option<String>,
    done: Option<String>,
}

/// A form field left empty means "no filter".
fn given(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// A time typed into a form (`2026-12-06 10:04`, `2026-12-06T10:04:05`
/// or just `2026-12-06`, read as UTC) or an RFC 3339 instant, as RFC 3339
/// for the API's parser, which names the field if it still is not one.
pub fn form_instant(text: &str) -> String {
    let text = text.trim();
    let mut instant = text.to_owned();
    if instant.len() > 10 && instant.as_bytes()[10] == b' ' {
        instant.replace_range(10..11, "T");
    }
    let has_zone = instant.ends_with(['Z', 'z']) || instant.get(10..).is_some_and(|time| time.contains(['+', '-']));
    match instant.len() {
        10 => format!("{instant}T00:00:00Z"),
        16 if !has_zone => format!("{instant}:00Z"),
        19 if !has_zone => format!("{instant}Z"),
        _ => instant,
    }
}

impl PageQuery {
    /// The log's filters as the API's parameters.
    fn params(&self) -> DeliveryParams {
        DeliveryParams {
            status: given(&self.status),
            event_type: given(&self.event_type),
            event_id: given(&self.event_id),
            since: given(&self.since).map(|t| form_instant(&t)),
            until: given(&self.until).map(|t| form_instant(&t)),
            cursor: given(&self.cursor),
            limit: None,
        }
    }

    /// The address of the next page: the same filters, the given cursor.
    fn with_cursor(&self, id: &str, cursor: &str) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("status", &self.status),
            ("event_type", &self.event_type),
            ("event_id", &self.event_id),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(value) = given(value) {
                query.append_pair(name, &value);
            }
        }
        query.append_pair("cursor", cursor);
        format!("/webhooks/{id}?{}#deliveries", query.finish())
    }
}

/// What a button did, said on the page it leads back to.
fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "test_sent" => "Test event queued: it is in the log below.",
        "rotated" => "Secret rotated. The previous one keeps signing beside it until the overlap ends.",
        "enabled" => "Endpoint enabled: deliveries resume.",
        "disabled" => "Endpoint disabled: nothing is sent to it until it is enabled again.",
        "recovering" => "Recovery started: its progress is below.",
        "saved" => "Changes saved.",
        "key_resent" => "Sent again: its key moves on once it succeeds.",
        "key_skipped" => "Skipped: the next delivery of its key leaves now.",
        _ => return None,
    })
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct EndpointPage {
    nav: Nav,
    id: String,
    admin: bool,
    url: String,
    description: String,
    enabled: bool,
    state: String,
    tone: &'static str,
    events: String,
    scheme: &'static str,
    rate_limit: Option<u32>,
    auto_retry: bool,
    headers: String,
    endpoint_health: Health,
    notice: Option<&'static str>,
    secret: Option<Secret>,
    test_types: Vec<Choice>,
    test_type: &'static str,
    test_example: String,
    recover_error: Option<String>,
    recoveries: Vec<RecoveryRow>,
    ordering: String,
    blocked: Vec<BlockedRow>,
    more_blocked: bool,
    filters: Filters,
    filter_error: Option<String>,
    log_types: Vec<Choice>,
    statuses: Vec<Choice>,
    deliveries: Vec<DeliveryRow>,
    older: Option<String>,
}

/// The secret, when an admin asked to see it.
struct Secret {
    current: String,
    previous_until: Option<String>,
}

/// The log filters as typed, to fill the form again.
struct Filters {
    event_id: String,
    since: String,
    until: String,
    any: bool,
}

struct RecoveryRow {
    id: String,
    window: String,
    status: &'static str,
    resent: u64,
    total: u64,
}

/// A key waiting behind a failed delivery (ordered delivery).
struct BlockedRow {
    key: String,
    delivery_id: String,
    status: &'static str,
    failed: bool,
    attempts: u32,
    waiting: u64,
    since: String,
}

struct DeliveryRow {
    id: String,
    event_id: String,
    event_type: String,
    status: &'static str,
    attempts: u32,
    created: String,
    last_attempt: String,
}

/// The page, with what a handler adds (a revealed secret, a refused
/// recovery).
#[derive(Default)]
struct Extras {
    secret: Option<Secret>,
    recover_error: Option<String>,
}

async fn render(
    state: &AppState,
    signed_in: &SignedIn,
    sub: &Subscription,
    query: &PageQuery,
    extras: Extras,
    status: StatusCode,
) -> Result<Response, PageRefusal> {
    let (filter_error, deliveries, older) = match query.params().query() {
        Ok(log_query) => {
            let page = state.store.list_deliveries(&sub.id, &log_query, LOG_PAGE).await?;
            let older = page
                .has_more
                .then(|| {
                    page.items
                        .last()
                        .map(|d| query.with_cursor(sub.id.as_str(), d.id.as_str()))
                })
                .flatten();
            let rows = page
                .items
                .into_iter()
                .map(|d| DeliveryRow {
                    id: d.id.to_string(),
                    event_id: d.event_id.to_string(),
                    event_type: d.event_type,
                    status: d.status.as_str(),
                    attempts: d.attempt_count,
                    created: readable(d.created_at),
                    last_attempt: d.last_attempt_at.map(readable).unwrap_or_else(|| "—".into()),
                })
                .collect();
            (None, rows, older)
        }
        Err(ApiError::Validation { message, .. }) => (Some(message), Vec::new(), None),
        Err(e) => return Err(e.into()),
    };
    let recoveries = state
        .store
        .list_recoveries(&sub.id, RECENT_RECOVERIES)
        .await?
        .into_iter()
        .map(|r| RecoveryRow {
            id: r.id.to_string(),
            window: match r.until {
                Some(until) => format!("{} to {}", readable(r.since), readable(until)),
                None => format!("since {}", readable(r.since)),
            },
            status: r.status.as_str(),
            resent: r.resent,
            total: r.total,
        })
        .collect();
    let blocked = state.store.blocked_keys(&sub.id, BLOCKED_KEYS_SHOWN).await?;
    let more_blocked = blocked.has_more;
    let blocked = blocked
        .items
        .into_iter()
        .map(|b| BlockedRow {
            key: b.key,
            delivery_id: b.blocking_delivery_id.to_string(),
            status: b.blocking_status.as_str(),
            failed: b.blocking_status == signhook_core::delivery::DeliveryStatus::Failed,
            attempts: b.blocking_attempts,
            waiting: b.waiting,
            since: readable(b.since),
        })
        .collect();
    let test = query
        .test_type
        .as_deref()
        .and_then(|name| test_types().find(|t| t.name == name))
        .or_else(|| test_types().find(|t| t.name == "webhook.test"))
        .expect("webhook.test is in the catalog");
    let now = state.clock.now();
    let mut hours = state
        .store
        .endpoint_health(std::slice::from_ref(&sub.id), Health::since(now))
        .await?;
    let endpoint_health = Health::new(&hours.remove(&sub.id).unwrap_or_default(), now);
    let (state_text, tone) = state_of(sub);
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let page_view = EndpointPage {
        nav: Nav::new(signed_in, "webhooks", "Endpoint"),
        id: sub.id.to_string(),
        admin: signed_in.is_admin(),
        url: sub.destination().to_owned(),
        description: sub.description.clone(),
        enabled: sub.enabled,
        state: state_text,
        tone,
        events: sub.filter.events.to_texts().join(", "),
        scheme: match sub.signature_scheme {
            SignatureScheme::Standard => "Standard Webhooks",
            SignatureScheme::HmacSha256Hex => "hex HMAC-SHA256 (X-Signature)",
        },
        rate_limit: sub.rate_limit_per_second,
        auto_retry: sub.auto_retry,
        headers: sub.headers.iter().map(|(name, _)| name).collect::<Vec<_>>().join(", "),
        endpoint_health,
        notice: notice(query.done.as_deref()),
        secret: extras.secret,
        test_types: Choice::list(test_types().map(|t| t.name), test.name),
        test_type: test.name,
        test_example: serde_json::to_string_pretty(&test.example_data()).unwrap_or_default(),
        recover_error: extras.recover_error,
        recoveries,
        ordering: match (sub.ordering, sub.ordering_on_failure) {
            (Ordering::None, _) => "none".to_owned(),
            (ordering, on_failure) => format!("{} (on a dead letter: {})", ordering.as_str(), on_failure.as_str()),
        },
        blocked,
        more_blocked,
        filters: Filters {
            event_id: text(&query.event_id),
            since: text(&query.since),
            until: text(&query.until),
            any: [
                &query.status,
                &query.event_type,
                &query.event_id,
                &query.since,
                &query.until,
            ]
            .into_iter()
            .any(|v| given(v).is_some()),
        },
        filter_error,
        log_types: Choice::list(
            CATALOG.iter().map(|t| t.name),
            query.event_type.as_deref().unwrap_or(""),
        ),
        statuses: {
            let mut statuses = Choice::list(
                ["pending", "succeeded", "failed", "canceled"],
                query.status.as_deref().unwrap_or(""),
            );
            statuses[2].label = "failed (dead letters)".to_owned();
            statuses
        },
        deliveries,
        older,
    };
    Ok(dashboard_page(status, &page_view))
}

/// `GET /webhooks/{id}`.
pub async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageRefusal> {
    let sub = endpoint(&state, &signed_in, &id).await?;
    render(&state, &signed_in, &sub, &query, Extras::default(), StatusCode::OK).await
}

/// `POST /webhooks/{id}/secret`: the page with the secret shown (admins).
pub async fn reveal_secret(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    let sub = admin_action(&state, &signed_in, &id, &form).await?;
    tracing::info!(webhook = %sub.id, by = %signed_in.actor(), "secret revealed in the dashboard");
    let now = state.clock.now();
    let secret = Secret {
        current: sub.secret.expose(),
        previous_until: sub
            .previous_secret
            .as_ref()
            .filter(|(_, until)| *until > now)
            .map(|(_, until)| readable(*until)),
    };
    let extras = Extras {
        secret: Some(secret),
        ..Extras::default()
    };
    render(&state, &signed_in, &sub, &PageQuery::default(), extras, StatusCode::OK).await
}

/// `POST /webhooks/{id}/rotate`: a new secret; the old one keeps signing
/// beside it for the overlap, as `POST /v1/webhooks/{id}/rotate_secret`.
pub async fn rotate_secret(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    let sub = admin_action(&state, &signed_in, &id, &form).await?;
    let auth = Auth(signed_in.principal());
    let _secret = crate::routes::webhooks::rotate_secret(State(state), auth, Path(sub.id.to_string())).await?;
    Ok(see_other(&format!("/webhooks/{}?done=rotated", sub.id)))
}

/// `POST /webhooks/{id}/test`: queues a test event of the chosen type
/// (`webhook.test` by default) with that type's example payload.
pub async fn send_test(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, PageRefusal> {
    let fields = Fields::parse(&body);
    let sub = admin_action(&state, &signed_in, &id, &fields.csrf()).await?;
    let chosen = fields.one("event_type");
    let chosen = if chosen.is_empty() {
        "webhook.test".to_owned()
    } else {
        chosen
    };
    let Some(info) = test_types().find(|t| t.name == chosen) else {
        return Err(ApiError::validation(
            "event_type",
            format!("event_type `{chosen}` cannot be sent as a test; choose a type from the list"),
        )
        .into());
    };
    queue_test_event(&state, &sub, info).await?;
    Ok(see_other(&format!(
        "/webhooks/{}?done=test_sent&test_type={}#deliveries",
        sub.id, info.name
    )))
}

/// `POST /webhooks/{id}/enable` and `…/disable`.
async fn set_enabled(
    state: AppState,
    signed_in: SignedIn,
    id: String,
    form: CsrfForm,
    enabled: bool,
) -> Result<Response, PageRefusal> {
    let sub = admin_action(&state, &signed_in, &id, &form).await?;
    let change = UpdateWebhook {
        enabled: Some(enabled),
        ..UpdateWebhook::default()
    };
    update_subscription(&state, &Auth(signed_in.principal()), sub.id.as_str(), change).await?;
    let done = if enabled { "enabled" } else { "disabled" };
    Ok(see_other(&format!("/webhooks/{}?done={done}", sub.id)))
}

/// `POST /webhooks/{id}/enable`: deliveries resume.
pub async fn enable(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    set_enabled(state, signed_in, id, form, true).await
}

/// `POST /webhooks/{id}/disable`: nothing is sent until it is enabled.
pub async fn disable(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    set_enabled(state, signed_in, id, form, false).await
}

/// `POST /webhooks/{id}/delete`: as `DELETE /v1/webhooks/{id}`; back to
/// the list.
pub async fn delete(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    let sub = admin_action(&state, &signed_in, &id, &form).await?;
    crate::routes::webhooks::delete(State(state), Auth(signed_in.principal()), Path(sub.id.to_string())).await?;
    Ok(see_other("/webhooks?done=deleted"))
}

/// The recovery form.
#[derive(Debug, Deserialize)]
pub struct RecoverForm {
    csrf: String,
    since: String,
    #[serde(default)]
    until: String,
}

/// `POST /webhooks/{id}/recover`: resend everything that failed since a
/// time, as a durable job whose progress the page shows.
pub async fn recover(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<RecoverForm>,
) -> Result<Response, PageRefusal> {
    let csrf = CsrfForm {
        csrf: form.csrf.clone(),
    };
    let sub = admin_action(&state, &signed_in, &id, &csrf).await?;
    let body = StartRecovery {
        since: form_instant(&form.since),
        until: Some(form.until.trim()).filter(|u| !u.is_empty()).map(form_instant),
    };
    match start_recovery(&state, &Auth(signed_in.principal()), sub.id.as_str(), &body).await {
        Ok(_) => Ok(see_other(&format!("/webhooks/{}?done=recovering#recover", sub.id))),
        Err(e @ (ApiError::Validation { .. } | ApiError::Conflict { .. })) => {
            let extras = Extras {
                recover_error: Some(e.to_string()),
                ..Extras::default()
            };
            let status = e.status();
            render(&state, &signed_in, &sub, &PageQuery::default(), extras, status).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The blocked-key buttons: the delivery holding the key.
#[derive(Debug, Deserialize)]
pub struct BlockedForm {
    csrf: String,
    delivery: String,
}

/// `POST /webhooks/{id}/blocked/resend`: resends the delivery holding a
/// key, as `POST /v1/deliveries/{id}/resend`; back to the endpoint.
pub async fn resend_blocked(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<BlockedForm>,
) -> Result<Response, PageRefusal> {
    let csrf = CsrfForm { csrf: form.csrf };
    let sub = admin_action(&state, &signed_in, &id, &csrf).await?;
    let auth = Auth(signed_in.principal());
    let _resent = crate::routes::deliveries::resend(State(state.clone()), auth, Path(form.delivery)).await?;
    Ok(see_other(&format!("/webhooks/{}?done=key_resent#blocked", sub.id)))
}

/// `POST /webhooks/{id}/blocked/skip`: skips the dead letter holding a
/// key, as `POST /v1/deliveries/{id}/skip`; back to the endpoint.
pub async fn skip_blocked(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<BlockedForm>,
) -> Result<Response, PageRefusal> {
    let csrf = CsrfForm { csrf: form.csrf };
    let sub = admin_action(&state, &signed_in, &id, &csrf).await?;
    let delivery = DeliveryId::parse(&form.delivery)
        .map_err(|_| PageRefusal::Error(ApiError::not_found("delivery", &form.delivery)))?;
    crate::routes::ordering::skip_delivery(&state, &Auth(signed_in.principal()), &delivery).await?;
    Ok(see_other(&format!("/webhooks/{}?done=key_skipped#blocked", sub.id)))
}

#[cfg(test)]
mod tests {
    use super::form_instant;

    #[test]
    fn times_from_the_form_are_utc_instants() {
        assert_eq!(form_instant("2026-12-06T10:04"), "2026-12-06T10:04:00Z");
        assert_eq!(form_instant(" 2026-12-06T10:04:05 "), "2026-12-06T10:04:05Z");
        assert_eq!(form_instant("2026-12-06T10:04:05+01:00"), "2026-12-06T10:04:05+01:00");
        assert_eq!(form_instant("2026-12-06T10:04:05.5Z"), "2026-12-06T10:04:05.5Z");
        assert_eq!(form_instant("2026-12-06 10:04"), "2026-12-06T10:04:00Z");
        assert_eq!(form_instant("2026-12-06"), "2026-12-06T00:00:00Z");
        assert_eq!(form_instant("yesterday"), "yesterday");
        assert_eq!(form_instant("Łódź, wtorek"), "Łódź, wtorek");
    }
}
