//! `GET /v1/event_types`: the catalog, with an example payload per type.

use crate::extract::Auth;
use crate::routes::list_type;
use axum::Json;
use serde::Serialize;
use signhook_core::catalog::{EventOrigin, EventTypeInfo, CATALOG};
use utoipa::ToSchema;

/// One event type.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeView {
    /// The type's name, such as `signer.done`.
    pub name: &'static str,
    /// When it fires.
    pub description: &'static str,
    /// `lifecycle` (also publishable with `POST /v1/events`), `test` or
    /// `operational` (emitted by Signhook only).
    #[schema(value_type = String)]
    pub origin: EventOrigin,
    /// An example of a delivery's body for this type.
    pub example: serde_json::Value,
}

list_type!(EventTypeList, EventTypeView, "The event catalog.");

/// An example of a delivery's body for the type `info` (the API's
/// catalog and the dashboard's show the same).
pub(crate) fn example(info: &EventTypeInfo) -> serde_json::Value {
    serde_json::json!({
        "id": "evt_01936f0e7c4a7b2e9d1f0a3b5c6d7e94",
        "type": info.name,
        "created_at": "2026-11-22T10:04:05.123Z",
        "sandbox": false,
        "scope": "public_api",
        "workspace_id": "ws_01936f0e7c4a7b2e9d1f0a3b5c6d7e95",
        "subscription": {"id": "wh_01936f0e7c4a7b2e9d1f0a3b5c6d7e92", "description": "CRM sync"},
        "data": info.example_data(),
    })
}

/// The event catalog.
#[utoipa::path(
    get, path = "/v1/event_types", tag = "events", security(("api_key" = [])),
    responses((status = 200, body = EventTypeList), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn list(_auth: Auth) -> Json<EventTypeList> {
    let data = CATALOG
        .iter()
        .map(|info| EventTypeView {
            name: info.name,
            description: info.description,
            origin: info.origin,
            example: example(info),
        })
        .collect();
    Json(EventTypeList {
        data,
        has_more: false,
        next_cursor: None,
    })
}
