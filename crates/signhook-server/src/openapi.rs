//! The OpenAPI document, generated from the handlers' annotations and served
//! at `/openapi.json`. `docs/openapi.json` is a committed copy; a test fails
//! when the two differ (regenerate with `signhook openapi > docs/openapi.json`).

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API's document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Signhook API", description = "Webhooks for an e-signature platform: subscriptions, events, signed deliveries."),
    paths(
        crate::routes::event_types::list,
        crate::routes::workspaces::create,
        crate::routes::workspaces::list,
        crate::routes::webhooks::create,
        crate::routes::webhooks::list,
        crate::routes::webhooks::get,
        crate::routes::webhooks::update,
        crate::routes::webhooks::delete,
        crate::routes::webhooks::reveal_secret,
        crate::routes::webhooks::rotate_secret,
        crate::routes::webhooks::promote_secret,
        crate::routes::webhooks::send_test,
        crate::routes::deliveries::list_for_webhook,
        crate::routes::deliveries::get,
        crate::routes::deliveries::resend,
        crate::routes::recoveries::start,
        crate::routes::recoveries::get,
        crate::routes::events::resend,
        crate::routes::health::metrics,
        crate::routes::events::publish,
        crate::routes::events::list,
        crate::routes::events::get,
        crate::routes::signature_requests::create,
        crate::routes::signature_requests::list,
        crate::routes::signature_requests::get,
        crate::routes::signature_requests::add_document,
        crate::routes::signature_requests::activate,
        crate::routes::signature_requests::cancel,
        crate::routes::signature_requests::remind,
        crate::routes::signature_requests::reactivate,
        crate::routes::signature_requests::delete,
        crate::routes::signature_requests::links,
        crate::routes::signature_requests::renew_signer_link,
        crate::routes::signing::open,
        crate::routes::signing::sign,
        crate::routes::signing::decline,
        crate::routes::signing::document,
        crate::routes::signing::open_approval,
        crate::routes::signing::approve,
        crate::routes::signing::reject,
        crate::routes::signing::file,
        crate::routes::health::healthz,
        crate::routes::health::readyz,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "webhooks", description = "Subscriptions: where, what and how to deliver"),
        (name = "events", description = "Publishing, the catalog and the reconciliation feed"),
        (name = "deliveries", description = "The delivery log"),
        (name = "workspaces", description = "Partitions of a tenant's documents"),
        (name = "signature_requests", description = "The e-signature lifecycle: documents out for signature"),
        (name = "signing", description = "What signers and approvers reach through their links (no API key)"),
        (name = "health", description = "Liveness and readiness")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key: `sk_live_…` for live data, `sk_test_…` for the sandbox",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as pretty JSON, exactly as committed in `docs/openapi.json`.
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
