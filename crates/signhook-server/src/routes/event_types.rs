//! The event catalog and the tenant's own types (DESIGN §10):
//! `GET /v1/event_types` lists the built-in types and the tenant's,
//! `POST /v1/event_types` registers one, `GET`/`PATCH
//! /v1/event_types/{name}` read and change one. Every schema is checked
//! against the draft 2020-12 meta-schema and every example against its
//! schema here, at the edge; the store keeps what passed.

use crate::error::ApiError;
use crate::extract::{ApiJson, Auth};
use crate::routes::list_type;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use signhook_core::catalog::{self, EventTypeInfo, CATALOG};
use signhook_core::event_types::{EventSchema, Provenance, TenantTypeName, MAX_DESCRIPTION_LEN, MAX_DOCUMENT_LEN};
use signhook_core::time::rfc3339;
use signhook_store::event_types::{EventTypeChanges, NewEventType, TenantEventType};
use utoipa::ToSchema;

/// One event type.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeView {
    /// The type's name, such as `signer.done` or `invoice.paid`.
    pub name: String,
    /// When it fires.
    pub description: String,
    /// `builtin` (Signhook's catalog) or `tenant` (registered by you).
    pub source: &'static str,
    /// Who produces events of the type: `lifecycle` (Signhook's signature
    /// requests; also publishable with `POST /v1/events`), `test`,
    /// `operational` (emitted by Signhook only), or `tenant` (your own
    /// type, published with `POST /v1/events`).
    pub origin: &'static str,
    /// The JSON Schema (draft 2020-12) every event's `data` satisfies.
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
    /// An example of a delivery's body for this type (its `data` is the
    /// type's example).
    #[schema(value_type = Object)]
    pub example: serde_json::Value,
    /// Still publishable, but on its way out.
    pub deprecated: bool,
    /// Takes no new publishes; its events stay.
    pub archived: bool,
    /// When you registered it (your own types only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When it last changed (your own types only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

list_type!(EventTypeList, EventTypeView, "The event catalog and your own types.");

/// Registering a type.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEventType {
    /// Lower-case dotted segments such as `invoice.paid`, outside the
    /// reserved namespaces `signature_request.`, `signer.`, `approver.`,
    /// `webhook.` and `delivery.`.
    pub name: String,
    /// What it means (at most 500 characters).
    pub description: Option<String>,
    /// A JSON Schema (draft 2020-12) for the events' `data`. A `$ref` may
    /// only point inside the schema: remote references are never fetched.
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
    /// An example `data`; it must satisfy the schema.
    #[schema(value_type = Object)]
    pub example: serde_json::Value,
}

/// Changing a type; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEventType {
    /// A new description.
    pub description: Option<String>,
    /// A new schema; the example (the new one if given, else the stored
    /// one) must satisfy it.
    #[schema(value_type = Option<Object>)]
    pub schema: Option<serde_json::Value>,
    /// A new example; it must satisfy the schema (the new one if given).
    #[schema(value_type = Option<Object>)]
    pub example: Option<serde_json::Value>,
    /// Mark it deprecated (still publishable) or not.
    pub deprecated: Option<bool>,
    /// Archive it (no new publishes; history stays) or bring it back.
    pub archived: Option<bool>,
}

/// An example of a delivery's body of type `name` with `data`, as the API
/// and the dashboard show it.
pub(crate) fn example_envelope(name: &str, data: serde_json::Value, origin: Provenance) -> serde_json::Value {
    serde_json::json!({
        "id": "evt_01936f0e7c4a7b2e9d1f0a3b5c6d7e94",
        "type": name,
        "created_at": "2026-11-22T10:04:05.123Z",
        "sandbox": false,
        "scope": "public_api",
        "workspace_id": "ws_01936f0e7c4a7b2e9d1f0a3b5c6d7e95",
        "origin": origin.as_str(),
        "subscription": {"id": "wh_01936f0e7c4a7b2e9d1f0a3b5c6d7e92", "description": "CRM sync"},
        "data": data,
    })
}

/// An example of a delivery's body for the built-in type `info`.
pub(crate) fn example(info: &EventTypeInfo) -> serde_json::Value {
    let origin = match info.origin {
        catalog::EventOrigin::Lifecycle => Provenance::Lifecycle,
        catalog::EventOrigin::Test | catalog::EventOrigin::Operational => Provenance::System,
    };
    example_envelope(info.name, info.example_data(), origin)
}

fn builtin_view(info: &EventTypeInfo) -> EventTypeView {
    EventTypeView {
        name: info.name.to_owned(),
        description: info.description.to_owned(),
        source: "builtin",
        origin: match info.origin {
            catalog::EventOrigin::Lifecycle => "lifecycle",
            catalog::EventOrigin::Test => "test",
            catalog::EventOrigin::Operational => "operational",
        },
        schema: info.schema_document(),
        example: example(info),
        deprecated: false,
        archived: false,
        created_at: None,
        updated_at: None,
    }
}

/// The view of a tenant's type (its stored JSON parses: the API wrote it).
pub(crate) fn tenant_view(t: &TenantEventType) -> Result<EventTypeView, ApiError> {
    let parse = |what: &str, text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| ApiError::Internal(format!("event type {} holds an invalid {what}: {e}", t.name).into()))
    };
    Ok(EventTypeView {
        name: t.name.to_string(),
        description: t.description.clone(),
        source: "tenant",
        origin: "tenant",
        schema: parse("schema", &t.schema)?,
        example: example_envelope(t.name.as_str(), parse("example", &t.example)?, Provenance::Api),
        deprecated: t.deprecated,
        archived: t.archived,
        created_at: Some(rfc3339(t.created_at)),
        updated_at: Some(rfc3339(t.updated_at)),
    })
}

fn parse_description(text: String) -> Result<String, ApiError> {
    if text.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(ApiError::validation(
            "description",
            format!("description must be at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    Ok(text)
}

fn parse_schema(document: serde_json::Value) -> Result<EventSchema, ApiError> {
    if document.to_string().len() > MAX_DOCUMENT_LEN {
        return Err(ApiError::validation(
            "schema",
            format!("schema must be at most {MAX_DOCUMENT_LEN} bytes of JSON"),
        ));
    }
    EventSchema::parse(document).map_err(|e| ApiError::validation("schema", e.to_string()))
}

/// Checks `example` against `schema`; `because` says which schema when it
/// is the stored one.
fn check_example(schema: &EventSchema, example: &serde_json::Value, because: &str) -> Result<(), ApiError> {
    if example.to_string().len() > MAX_DOCUMENT_LEN {
        return Err(ApiError::validation(
            "example",
            format!("example must be at most {MAX_DOCUMENT_LEN} bytes of JSON"),
        ));
    }
    if !example.is_object() {
        return Err(ApiError::validation(
            "example",
            "example must be a JSON object, as `data` is",
        ));
    }
    schema.check(example).map_err(|v| {
        let path = v.path.replacen("data", "example", 1);
        ApiError::validation(
            "example",
            format!("example does not satisfy {because}: {path} {}", v.rule),
        )
    })
}

/// The name of a built-in type or the tenant's in a path: the API's 404 for
/// what is neither (another tenant's types included).
fn unknown(name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no event type `{}` exists",
        name.chars().take(100).collect::<String>()
    ))
}

/// The catalog: the built-in types, then yours, by name.
#[utoipa::path(
    get, path = "/v1/event_types", tag = "events", security(("api_key" = [])),
    responses((status = 200, body = EventTypeList), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn list(State(state): State<AppState>, auth: Auth) -> Result<Json<EventTypeList>, ApiError> {
    let mut data: Vec<EventTypeView> = CATALOG.iter().map(builtin_view).collect();
    for t in state.store.list_event_types(auth.tenant()).await? {
        data.push(tenant_view(&t)?);
    }
    Ok(Json(EventTypeList {
        data,
        has_more: false,
        next_cursor: None,
    }))
}

/// One type: built-in or yours.
#[utoipa::path(
    get, path = "/v1/event_types/{name}", tag = "events", security(("api_key" = [])),
    params(("name" = String, Path, description = "`signer.done`, `invoice.paid`, …")),
    responses((status = 200, body = EventTypeView), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> Result<Json<EventTypeView>, ApiError> {
    if let Some(info) = catalog::lookup(&name) {
        return Ok(Json(builtin_view(info)));
    }
    let found = state.store.get_event_type(auth.tenant(), &name).await?;
    Ok(Json(tenant_view(&found.ok_or_else(|| unknown(&name))?)?))
}

/// Registers one of your own types. Its schema must be a valid JSON Schema
/// (draft 2020-12) and its example must satisfy it; from then on
/// `POST /v1/events` checks every event of the type against the schema,
/// and subscriptions may name it (or its namespace, `invoice.*`).
#[utoipa::path(
    post, path = "/v1/event_types", tag = "events", security(("api_key" = [])),
    request_body = CreateEventType,
    responses(
        (status = 201, body = EventTypeView),
        (status = 400, body = crate::error::ErrorBody),
        (status = 409, description = "You already have a type of that name", body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody),
        (status = 422, description = "A field is invalid; `field` names it", body = crate::error::ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body, _): ApiJson<CreateEventType>,
) -> Result<(StatusCode, Json<EventTypeView>), ApiError> {
    let created = register(&state, &auth, body).await?;
    Ok((StatusCode::CREATED, Json(tenant_view(&created)?)))
}

/// Checks `body` as the API does (the first refused field is the error) and
/// registers the type for `auth`'s tenant.
pub(crate) async fn register(
    state: &AppState,
    auth: &Auth,
    body: CreateEventType,
) -> Result<TenantEventType, ApiError> {
    let name = TenantTypeName::parse(&body.name).map_err(|e| ApiError::validation("name", format!("name: {e}")))?;
    let description = parse_description(body.description.unwrap_or_default())?;
    let schema = parse_schema(body.schema)?;
    check_example(&schema, &body.example, "the schema")?;
    let new = NewEventType {
        name,
        description,
        schema: schema.document().to_string(),
        example: body.example.to_string(),
    };
    let created = state
        .store
        .create_event_type(auth.tenant(), new, state.clock.now())
        .await;
    state.caches.forget_publish_rules(auth.tenant());
    created.map_err(|e| match e {
        signhook_store::StoreError::Conflict { .. } => ApiError::Conflict {
            code: "conflict",
            message: format!("you already have an event type `{}`; change it with PATCH", body.name),
            field: Some("name".into()),
        },
        other => other.into(),
    })
}

/// Changes one of your types: its description, schema or example, or
/// marks it deprecated or archived. A new schema must accept the example
/// the type will have. Built-in types cannot be changed.
#[utoipa::path(
    patch, path = "/v1/event_types/{name}", tag = "events", security(("api_key" = [])),
    params(("name" = String, Path, description = "One of your types, such as `invoice.paid`")),
    request_body = UpdateEventType,
    responses(
        (status = 200, body = EventTypeView),
        (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "A built-in type, or the type changed meanwhile", body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)
    )
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    ApiJson(body, _): ApiJson<UpdateEventType>,
) -> Result<Json<EventTypeView>, ApiError> {
    if catalog::lookup(&name).is_some() {
        return Err(ApiError::Conflict {
            code: "builtin_event_type",
            message: format!(
                "`{name}` is a built-in type of Signhook's catalog and cannot be changed; only your own types can"
            ),
            field: Some("name".into()),
        });
    }
    let current = state
        .store
        .get_event_type(auth.tenant(), &name)
        .await?
        .ok_or_else(|| unknown(&name))?;
    let description = body.description.map(parse_description).transpose()?;
    let schema = body.schema.map(parse_schema).transpose()?;
    if schema.is_some() || body.example.is_some() {
        let stored_schema;
        let (schema, because) = match &schema {
            Some(schema) => (schema, "the new schema"),
            None => {
                let document = serde_json::from_str(&current.schema).map_err(|e| {
                    ApiError::Internal(format!("event type {name} holds an invalid schema: {e}").into())
                })?;
                stored_schema = EventSchema::parse(document).map_err(|e| {
                    ApiError::Internal(format!("event type {name} holds an invalid schema: {e}").into())
                })?;
                (&stored_schema, "the type's schema")
            }
        };
        match &body.example {
            Some(example) => check_example(schema, example, because)?,
            None => {
                let stored: serde_json::Value = serde_json::from_str(&current.example).map_err(|e| {
                    ApiError::Internal(format!("event type {name} holds an invalid example: {e}").into())
                })?;
                schema.check(&stored).map_err(|v| {
                    ApiError::validation(
                        "schema",
                        format!(
                            "the new schema does not accept the type's example ({} {}); send a new example with it",
                            v.path.replacen("data", "example", 1),
                            v.rule
                        ),
                    )
                })?;
            }
        }
    }
    let changes = EventTypeChanges {
        description,
        schema: schema.map(|s| s.document().to_string()),
        example: body.example.map(|e| e.to_string()),
        deprecated: body.deprecated,
        archived: body.archived,
    };
    let updated = state
        .store
        .update_event_type(auth.tenant(), &name, current.revision, changes, state.clock.now())
        .await;
    state.caches.forget_publish_rules(auth.tenant());
    let updated = updated
        .map_err(|e| match e {
            signhook_store::StoreError::Stale => ApiError::Conflict {
                code: "changed_meanwhile",
                message: format!("`{name}` changed while this request was checked; read it again and retry"),
                field: None,
            },
            other => other.into(),
        })?
        .ok_or_else(|| unknown(&name))?;
    Ok(Json(tenant_view(&updated)?))
}
