//! The dashboard's Events pages: the event catalog (what `GET
//! /v1/event_types` answers, grouped by namespace, each type with its
//! description and example payload); the feed of the tenant's events in
//! the environment shown, newest first, page by page, filtered by type,
//! with a search for an event id; and one event — its envelope, its `data`,
//! every delivery of it, and for admins a button that sends it again to
//! every endpoint it went to (`POST /v1/events/{id}/resend`, once per
//! endpoint).

use crate::error::ApiError;
use crate::extract::Auth;
use crate::pages::frame::{Choice, Nav};
use crate::pages::session::{CsrfForm, PageRefusal, SignedIn};
use crate::pages::{dashboard_page, see_other};
use crate::routes::event_types::{example, tenant_view};
use crate::routes::events::{listed_type, resend_to};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use signhook_core::catalog::{EventOrigin, CATALOG, NAMESPACES};
use signhook_core::ids::EventId;
use signhook_core::time::{readable, rfc3339};
use signhook_store::events::Event;
use std::collections::BTreeSet;

/// How many events one page of the feed lists.
const FEED_PAGE: u32 = 25;
/// The most deliveries one event's page lists (an event fans out to at most
/// this many endpoints on the page; the rest are said to exist).
const EVENT_DELIVERIES: u32 = 200;

/// A form field left empty means "no filter".
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

#[derive(Template)]
#[template(path = "event_types.html")]
struct EventTypesPage {
    nav: Nav,
    namespaces: Vec<NamespaceView>,
    /// The tenant's own types (`POST /v1/event_types`), by name.
    own: Vec<OwnTypeView>,
}

/// One of the tenant's own types: what it means, where it stands, its
/// schema and an example of a delivery's body.
struct OwnTypeView {
    name: String,
    description: String,
    /// `deprecated`, `archived`, or empty.
    standing: &'static str,
    schema: String,
    example: String,
}

struct NamespaceView {
    namespace: &'static str,
    types: Vec<TypeView>,
}

struct TypeView {
    name: &'static str,
    description: &'static str,
    origin: &'static str,
    example: String,
}

/// What each origin means to someone reading the catalog.
fn origin_words(origin: EventOrigin) -> &'static str {
    match origin {
        EventOrigin::Lifecycle => "lifecycle: also publishable with POST /v1/events",
        EventOrigin::Test => "test: sent by the “send a test event” button",
        EventOrigin::Operational => "operational: raised by Signhook about your endpoints",
    }
}

/// `GET /event_types`: the catalog, then the tenant's own types.
pub async fn catalog(State(state): State<AppState>, signed_in: SignedIn) -> Result<Response, PageRefusal> {
    let namespaces = NAMESPACES
        .iter()
        .map(|&namespace| NamespaceView {
            namespace,
            types: CATALOG
                .iter()
                .filter(|info| info.name.split_once('.').is_some_and(|(ns, _)| ns == namespace))
                .map(|info| TypeView {
                    name: info.name,
                    description: info.description,
                    origin: origin_words(info.origin),
                    example: serde_json::to_string_pretty(&example(info)).unwrap_or_default(),
                })
                .collect(),
        })
        .collect();
    let own = state
        .store
        .list_event_types(&signed_in.tenant_id)
        .await?
        .iter()
        .map(|t| {
            let view = tenant_view(t)?;
            Ok(OwnTypeView {
                name: view.name,
                description: view.description,
                standing: if view.archived {
                    "archived"
                } else if view.deprecated {
                    "deprecated"
                } else {
                    ""
                },
                schema: serde_json::to_string_pretty(&view.schema).unwrap_or_default(),
                example: serde_json::to_string_pretty(&view.example).unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let page_view = EventTypesPage {
        nav: Nav::new(&signed_in, "event_types", "Event types"),
        namespaces,
        own,
    };
    Ok(dashboard_page(StatusCode::OK, &page_view))
}

/// What the feed's address may carry: the type filter, the cursor, an
/// event id to open.
#[derive(Debug, Default, Deserialize)]
pub struct FeedQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    before: Option<String>,
    id: Option<String>,
}

#[derive(Template)]
#[template(path = "events.html")]
struct FeedPage {
    nav: Nav,
    types: Vec<Choice>,
    filtered: bool,
    search: String,
    search_error: Option<String>,
    filter_error: Option<String>,
    rows: Vec<EventRow>,
    older: Option<String>,
}

struct EventRow {
    id: String,
    event_type: String,
    created: String,
}

/// The feed's address with `event_type` (if any) and `before`.
fn feed_href(event_type: Option<&str>, before: &str) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(t) = event_type {
        query.append_pair("type", t);
    }
    query.append_pair("before", before);
    format!("/events?{}", query.finish())
}

/// `GET /events`: the feed; with `?id=`, the event of that id (or the feed
/// saying there is none).
pub async fn feed(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<FeedQuery>,
) -> Result<Response, PageRefusal> {
    let tenant = &signed_in.tenant_id;
    let sandbox = signed_in.sandbox();
    let mut search_error = None;
    if let Some(id) = given(&query.id) {
        let found = match EventId::parse(id) {
            Ok(event_id) => state.store.get_event(tenant, sandbox, &event_id).await?,
            Err(_) => None,
        };
        match found {
            Some(event) => return Ok(see_other(&format!("/events/{}", event.id))),
            None => search_error = Some(ApiError::not_found("event", id).to_string()),
        }
    }
    let listed = match given(&query.event_type) {
        Some(text) => listed_type(&state, tenant, text).await.map(Some),
        None => Ok(None),
    };
    let (filter_error, event_type) = match listed {
        Ok(t) => (None, t),
        Err(ApiError::Validation { message, .. }) => (Some(message), None),
        Err(e) => return Err(e.into()),
    };
    let (rows, older) = if filter_error.is_some() {
        (Vec::new(), None)
    } else {
        // A cursor that is not an event id names no page: the first one.
        let before = given(&query.before).and_then(|b| EventId::parse(b).ok());
        let page = state
            .store
            .recent_events(tenant, sandbox, before.as_ref(), event_type.as_deref(), FEED_PAGE)
            .await?;
        let older = page
            .has_more
            .then(|| {
                page.items
                    .last()
                    .map(|e| feed_href(event_type.as_deref(), e.id.as_str()))
            })
            .flatten();
        let rows = page
            .items
            .into_iter()
            .map(|e| EventRow {
                id: e.id.to_string(),
                event_type: e.event_type,
                created: readable(e.created_at),
            })
            .collect();
        (rows, older)
    };
    let status = if search_error.is_some() {
        StatusCode::NOT_FOUND
    } else if filter_error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page_view = FeedPage {
        nav: Nav::new(&signed_in, "events", "Events"),
        types: Choice::list(CATALOG.iter().map(|t| t.name), event_type.as_deref().unwrap_or("")),
        filtered: event_type.is_some(),
        search: given(&query.id).unwrap_or("").to_owned(),
        search_error,
        filter_error,
        rows,
        older,
    };
    Ok(dashboard_page(status, &page_view))
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    nav: Nav,
    admin: bool,
    id: String,
    event_type: String,
    created: String,
    created_rfc3339: String,
    scope: &'static str,
    workspace_id: String,
    data: String,
    deliveries: Vec<DeliveryRow>,
    more_deliveries: bool,
    /// The endpoints a resend goes to.
    endpoints: usize,
    notice: Option<String>,
    refusals: Vec<String>,
}

struct DeliveryRow {
    id: String,
    webhook_id: String,
    webhook_url: String,
    webhook_deleted: bool,
    status: &'static str,
    attempts: u32,
    created: String,
    last_attempt: String,
}

/// The tenant's event `id` in the environment shown; a 404 page for
/// another tenant's (as through the API) or the other environment's.
async fn event(state: &AppState, signed_in: &SignedIn, id: &str) -> Result<Event, PageRefusal> {
    let not_found = || PageRefusal::Error(ApiError::not_found("event", id));
    let event_id = EventId::parse(id).map_err(|_| not_found())?;
    state
        .store
        .get_event(&signed_in.tenant_id, signed_in.sandbox(), &event_id)
        .await?
        .ok_or_else(not_found)
}

/// What the event's address may carry: how many endpoints a resend went to.
#[derive(Debug, Default, Deserialize)]
pub struct EventQuery {
    resent: Option<u32>,
}

/// How many endpoints, in words.
fn endpoints_in_words(n: usize) -> String {
    match n {
        1 => "1 endpoint".to_owned(),
        n => format!("{n} endpoints"),
    }
}

async fn render(
    state: &AppState,
    signed_in: &SignedIn,
    event: Event,
    notice: Option<String>,
    refusals: Vec<String>,
    status: StatusCode,
) -> Result<Response, PageRefusal> {
    let tenant = &signed_in.tenant_id;
    let page = state
        .store
        .event_deliveries(tenant, signed_in.sandbox(), &event.id, EVENT_DELIVERIES)
        .await?;
    let endpoints = page
        .items
        .iter()
        .filter(|d| !d.webhook_deleted)
        .map(|d| &d.delivery.subscription_id)
        .collect::<BTreeSet<_>>()
        .len();
    let deliveries = page
        .items
        .iter()
        .map(|d| DeliveryRow {
            id: d.delivery.id.to_string(),
            webhook_id: d.delivery.subscription_id.to_string(),
            webhook_url: d.webhook_url.clone(),
            webhook_deleted: d.webhook_deleted,
            status: d.delivery.status.as_str(),
            attempts: d.delivery.attempt_count,
            created: readable(d.delivery.created_at),
            last_attempt: d.delivery.last_attempt_at.map(readable).unwrap_or_else(|| "—".into()),
        })
        .collect();
    let data = serde_json::from_str::<serde_json::Value>(&event.data)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| event.data.clone());
    let page_view = EventPage {
        nav: Nav::new(signed_in, "events", "Event"),
        admin: signed_in.is_admin(),
        id: event.id.to_string(),
        event_type: event.event_type,
        created: readable(event.created_at),
        created_rfc3339: rfc3339(event.created_at),
        scope: event.scope.as_str(),
        workspace_id: event.workspace_id.to_string(),
        data,
        deliveries,
        more_deliveries: page.has_more,
        endpoints,
        notice,
        refusals,
    };
    Ok(dashboard_page(status, &page_view))
}

/// `GET /events/{id}`.
pub async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Query(query): Query<EventQuery>,
) -> Result<Response, PageRefusal> {
    let event = event(&state, &signed_in, &id).await?;
    let notice = query.resent.map(|n| {
        format!(
            "Sent again to {}: the new deliveries are below.",
            endpoints_in_words(n as usize)
        )
    });
    render(&state, &signed_in, event, notice, Vec::new(), StatusCode::OK).await
}

/// `POST /events/{id}/resend`: sends the event again to every endpoint it
/// was delivered to that still exists, each as `POST
/// /v1/events/{id}/resend {"webhook_id"}` would; an endpoint the API
/// refuses (disabled) is said on the page with the API's message.
pub async fn resend(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    signed_in.check_admin_form(&form.csrf)?;
    let event = event(&state, &signed_in, &id).await?;
    let tenant = &signed_in.tenant_id;
    let targets: BTreeSet<(String, String)> = state
        .store
        .event_deliveries(tenant, signed_in.sandbox(), &event.id, EVENT_DELIVERIES)
        .await?
        .items
        .into_iter()
        .filter(|d| !d.webhook_deleted)
        .map(|d| (d.delivery.subscription_id.to_string(), d.webhook_url))
        .collect();
    let auth = Auth(signed_in.principal());
    let mut sent = 0;
    let mut refusals = Vec::new();
    for (webhook_id, url) in &targets {
        match resend_to(&state, &auth, event.id.as_str(), webhook_id).await {
            Ok(_) => sent += 1,
            Err(e @ (ApiError::Conflict { .. } | ApiError::NotFound(_))) => refusals.push(format!("{url}: {e}")),
            Err(e) => return Err(e.into()),
        }
    }
    if refusals.is_empty() {
        return Ok(see_other(&format!("/events/{}?resent={sent}#deliveries", event.id)));
    }
    let notice = (sent > 0).then(|| format!("Sent again to {}.", endpoints_in_words(sent)));
    let status = if sent > 0 { StatusCode::OK } else { StatusCode::CONFLICT };
    render(&state, &signed_in, event, notice, refusals, status).await
}
