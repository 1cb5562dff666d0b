//! Events: `POST /v1/events` publishes (event and deliveries in one
//! transaction), `GET /v1/events` is the reconciliation feed, oldest first
//! after a cursor, and `GET /v1/events/{id}` reads one.

use crate::error::ApiError;
use crate::extract::{idempotency_key, page_limit, ApiJson, ApiQuery, Auth};
use crate::routes::{list_type, path_id};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use signhook_core::catalog::{self, EventOrigin};
use signhook_core::event_types::EventSchema;
use signhook_core::filter::Scope;
use signhook_core::ids::{EventId, WorkspaceId};
use signhook_core::ordering::OrderingKey;
use signhook_core::time::rfc3339;
use signhook_store::events::{Event, Idempotency, NewEvent};
use utoipa::{IntoParams, ToSchema};

/// Publishing an event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishEvent {
    /// A lifecycle type of the catalog or one of your own types (see
    /// `GET /v1/event_types`); `data` must satisfy its schema.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's data: a JSON object.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The workspace (`ws_…`); the tenant's default workspace when absent.
    pub workspace_id: Option<String>,
    /// For subscriptions with `"ordering": "key"`: the events of one key
    /// reach each such subscription one at a time, in publish order. 1 to
    /// 200 characters, no control characters; echoed in the envelope.
    pub ordering_key: Option<String>,
}

/// An event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// `evt_…`; the `webhook-id` of its deliveries.
    pub id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened.
    pub created_at: String,
    /// Whether it happened in the sandbox.
    pub sandbox: bool,
    /// `public_api` or `app`.
    pub scope: String,
    /// Its workspace.
    pub workspace_id: String,
    /// Where it came from: `lifecycle` (one of Signhook's signature
    /// requests), `api` (published with `POST /v1/events`) or `system`
    /// (`webhook.test` and the operational events).
    pub origin: &'static str,
    /// The key it was published with for ordered delivery, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    /// Its data.
    #[schema(value_type = Object)]
    pub data: Box<serde_json::value::RawValue>,
}

impl TryFrom<Event> for EventView {
    type Error = ApiError;

    fn try_from(e: Event) -> Result<Self, ApiError> {
        let data = serde_json::value::RawValue::from_string(e.data)
            .map_err(|err| ApiError::Internal(format!("event {} holds invalid JSON: {err}", e.id).into()))?;
        Ok(Self {
            id: e.id.to_string(),
            event_type: e.event_type,
            created_at: rfc3339(e.created_at),
            sandbox: e.sandbox,
            scope: e.scope.as_str().to_owned(),
            workspace_id: e.workspace_id.to_string(),
            origin: e.origin.as_str(),
            ordering_key: e.ordering_key,
            data,
        })
    }
}

/// A published event and how many deliveries it started.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishedEvent {
    #[serde(flatten)]
    #[schema(inline)]
    event: EventView,
    /// Deliveries created (one per matching, enabled subscription).
    pub deliveries: usize,
}

list_type!(EventList, EventView, "A page of events, oldest first.");

/// Event listing parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Only events after this one (`evt_…`, typically the last one you saw).
    pub after: Option<String>,
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<u32>,
}

/// Checks a publish of `text` with `data` for the tenant: a lifecycle type
/// of the catalog (unless the tenant's setting refuses them) or one of its
/// own types that is not archived, and `data` satisfying the type's schema.
/// Returns the type's name.
async fn check_publish(
    state: &AppState,
    auth: &Auth,
    text: &str,
    data: &serde_json::Value,
) -> Result<String, ApiError> {
    let rules = state.caches.publish_rules(&state.store, auth.tenant(), text).await?;
    let schema: std::sync::Arc<EventSchema>;
    let (name, schema): (String, &EventSchema) = match (catalog::lookup(text), &rules.tenant_type) {
        (Some(info), _) if info.origin != EventOrigin::Lifecycle => {
            return Err(ApiError::validation(
                "type",
                format!(
                    "`{text}` is emitted by Signhook itself and cannot be published; publishable types are: {}",
                    publishable(state, auth).await?
                ),
            ))
        }
        (Some(_), _) if !rules.allow_lifecycle_publishes => {
            return Err(ApiError::validation(
                "type",
                format!(
                    "`{text}` is a built-in lifecycle type, and your tenant runs its documents through Signhook \
                     (`allow_lifecycle_publishes` is false, see PATCH /v1/tenant): only Signhook's own signature \
                     requests emit it. Publish one of your own types instead"
                ),
            ))
        }
        (Some(info), _) => (info.name.to_owned(), info.schema()),
        (None, Some(t)) if t.archived => {
            return Err(ApiError::validation(
                "type",
                format!("`{text}` is archived and takes no new events; un-archive it with PATCH /v1/event_types/{text}"),
            ))
        }
        (None, Some(t)) => {
            schema = state
                .caches
                .tenant_schema(auth.tenant(), t)
                .map_err(|e| ApiError::Internal(e.into()))?;
            (t.name.to_string(), &schema)
        }
        (None, None) => {
            return Err(ApiError::validation(
                "type",
                format!(
                    "`{}` is not a known event type; publishable types are: {} (register your own with POST /v1/event_types)",
                    text.chars().take(100).collect::<String>(),
                    publishable(state, auth).await?
                ),
            ))
        }
    };
    if !data.is_object() {
        return Err(ApiError::validation("data", "data must be a JSON object"));
    }
    schema.check(data).map_err(|v| {
        ApiError::validation(
            v.path.clone(),
            format!("{v} (the schema of `{name}`, see GET /v1/event_types/{name})"),
        )
    })?;
    Ok(name)
}

/// The types the tenant may publish, for an error message: the catalog's
/// lifecycle types (unless its setting refuses them) and its own types
/// that are not archived.
async fn publishable(state: &AppState, auth: &Auth) -> Result<String, ApiError> {
    let mut names: Vec<String> = if state.store.allow_lifecycle_publishes(auth.tenant()).await? {
        catalog::publishable_names().into_iter().map(str::to_owned).collect()
    } else {
        Vec::new()
    };
    for t in state.store.list_event_types(auth.tenant()).await? {
        if !t.archived {
            names.push(t.name.to_string());
        }
    }
    Ok(if names.is_empty() {
        "none yet".to_owned()
    } else {
        names.join(", ")
    })
}

/// Publishes an event: when this answers 2xx, the event is stored and a
/// delivery exists for every matching subscription. With an
/// `Idempotency-Key`, repeating the request returns the same event (200,
/// `Idempotent-Replayed: true`) instead of publishing twice.
#[utoipa::path(
    post, path = "/v1/events", tag = "events", security(("api_key" = [])),
    request_body = PublishEvent,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key returns the same event")),
    responses(
        (status = 201, body = PublishedEvent),
        (status = 200, description = "Replayed for a repeated Idempotency-Key", body = PublishedEvent),
        (status = 400, body = crate::error::ErrorBody),
        (status = 409, description = "The Idempotency-Key was used for a different request", body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)
    )
)]
pub async fn publish(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiJson(body, raw): ApiJson<PublishEvent>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let event_type = check_publish(&state, &auth, &body.event_type, &body.data).await?;
    let ordering_key = body
        .ordering_key
        .as_deref()
        .map(OrderingKey::parse)
        .transpose()
        .map_err(|e| ApiError::validation("ordering_key", format!("ordering_key {e}")))?;
    let workspace_id = match body.workspace_id.as_deref() {
        None => state.caches.default_workspace(&state.store, auth.tenant()).await?,
        Some(text) => {
            let id = WorkspaceId::parse(text).map_err(|e| ApiError::validation("workspace_id", e.to_string()))?;
            if !state
                .store
                .unknown_workspaces(auth.tenant(), std::slice::from_ref(&id))
                .await?
                .is_empty()
            {
                return Err(ApiError::validation(
                    "workspace_id",
                    format!("`{id}` is not one of your workspaces"),
                ));
            }
            id
        }
    };
    let new = NewEvent {
        tenant_id: auth.tenant().clone(),
        sandbox: auth.sandbox(),
        event_type,
        scope: Scope::PublicApi,
        workspace_id,
        data: body.data.to_string(),
        idempotency: key.map(|key| Idempotency {
            key,
            request_hash: Sha256::digest(&raw).into(),
        }),
        ordering_key: ordering_key.map(OrderingKey::into_string),
    };
    // Its deliveries go straight to this node's dispatcher.
    let published = state.publisher.publish(new).await?;
    let status = if published.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut response = (
        status,
        Json(PublishedEvent {
            event: published.event.try_into()?,
            deliveries: published.deliveries,
        }),
    )
        .into_response();
    if published.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The reconciliation feed: events of the key's environment in the order
/// they happened, after a cursor.
#[utoipa::path(
    get, path = "/v1/events", tag = "events", security(("api_key" = [])),
    params(EventParams),
    responses((status = 200, body = EventList), (status = 422, body = crate::error::ErrorBody))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Result<Json<EventList>, ApiError> {
    let limit = page_limit(params.limit)?;
    let after = params
        .after
        .as_deref()
        .map(|a| EventId::parse(a).map_err(|e| ApiError::validation("after", e.to_string())))
        .transpose()?;
    let event_type = match params.event_type.as_deref() {
        Some(text) => Some(listed_type(&state, auth.tenant(), text).await?),
        None => None,
    };
    let page = state
        .store
        .list_events(
            auth.tenant(),
            auth.sandbox(),
            after.as_ref(),
            event_type.as_deref(),
            limit,
        )
        .await?;
    let next_cursor = page.items.last().map(|e| e.id.to_string());
    let has_more = page.has_more;
    let data = page
        .items
        .into_iter()
        .map(EventView::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    // The cursor is returned even on the last page: a reconciling client
    // stores it and asks again later for what happened since.
    Ok(Json(EventList {
        data,
        has_more,
        next_cursor,
    }))
}

/// The type a feed is filtered by: any type of the catalog (the API's
/// `?type=` and the dashboard's feed alike).
pub(crate) async fn listed_type(
    state: &AppState,
    tenant: &signhook_core::ids::TenantId,
    text: &str,
) -> Result<String, ApiError> {
    if let Some(info) = catalog::lookup(text) {
        return Ok(info.name.to_owned());
    }
    let own = state.store.event_type_names(tenant).await?;
    if own.iter().any(|name| name == text) {
        return Ok(text.to_owned());
    }
    let mut known: Vec<&str> = catalog::all_names();
    known.extend(own.iter().map(String::as_str));
    Err(ApiError::validation(
        "type",
        format!(
            "`{}` is not a known event type; known types are: {}",
            text.chars().take(100).collect::<String>(),
            known.join(", ")
        ),
    ))
}

/// One event.
#[utoipa::path(
    get, path = "/v1/events/{id}", tag = "events", security(("api_key" = [])),
    params(("id" = String, Path, description = "`evt_…`")),
    responses((status = 200, body = EventView), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    let event_id = path_id(&id, "event", EventId::parse)?;
    let event = state
        .store
        .get_event(auth.tenant(), auth.sandbox(), &event_id)
        .await?
        .ok_or_else(|| ApiError::not_found("event", &id))?;
    Ok(Json(event.try_into()?))
}

/// Where to send an event again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendEvent {
    /// The subscription (`wh_…`); it receives the event whatever it
    /// subscribes to.
    pub webhook_id: String,
}

/// Sends an event (again) to one subscription: a new delivery, attempted at
/// once, signed like any other, with the event's id as `webhook-id`.
#[utoipa::path(
    post, path = "/v1/events/{id}/resend", tag = "events", security(("api_key" = [])),
    params(("id" = String, Path, description = "`evt_…`")),
    request_body = ResendEvent,
    responses(
        (status = 202, body = crate::routes::deliveries::DeliveryView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "The webhook is disabled", body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)
    )
)]
pub async fn resend(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(body, _): ApiJson<ResendEvent>,
) -> Result<(StatusCode, Json<crate::routes::deliveries::DeliveryView>), ApiError> {
    let delivery = resend_to(&state, &auth, &id, &body.webhook_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(crate::routes::deliveries::view(&state, &auth, &delivery).await?),
    ))
}

/// Sends event `id` (again) to webhook `webhook_id`: the new delivery, due
/// now — or the API's refusal (a 404 for what is not the caller's, a 409
/// for a disabled webhook).
pub(crate) async fn resend_to(
    state: &AppState,
    auth: &Auth,
    id: &str,
    webhook_id: &str,
) -> Result<signhook_core::ids::DeliveryId, ApiError> {
    let event_id = path_id(id, "event", EventId::parse)?;
    let sub_id = signhook_core::ids::SubscriptionId::parse(webhook_id)
        .map_err(|e| ApiError::validation("webhook_id", e.to_string()))?;
    state
        .store
        .redeliver_event(auth.tenant(), auth.sandbox(), &event_id, &sub_id, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no event `{id}` or webhook `{webhook_id}` exists")))?
        .map_err(crate::routes::deliveries::refusal)
}
