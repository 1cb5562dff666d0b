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
        crate::routes::event_types::get,
        crate::routes::event_types::create,
        crate::routes::event_types::update,
        crate::routes::tenant::get,
        crate::routes::tenant::update,
        crate::routes::workspaces::create,
        crate::routes::workspaces::list,
        crate::routes::api_keys::create,
        crate::routes::api_keys::list,
        crate::routes::api_keys::revoke,
        crate::routes::portal::create_session,
        crate::routes::portal::get_theme,
        crate::routes::portal::put_theme,
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
        crate::routes::ordering::blocked_keys,
        crate::routes::ordering::skip,
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
        crate::routes::signing::signed_pdf,
        crate::routes::signing::open_approval,
        crate::routes::signing::approve,
        crate::routes::signing::reject,
        crate::routes::signing::file,
        crate::routes::health::healthz,
        crate::routes::health::readyz,
        crate::routes::listen::listen,
    ),
    modifiers(&BearerAuth, &CommonAnswers),
    tags(
        (name = "webhooks", description = "Subscriptions: where, what and how to deliver"),
        (name = "events", description = "Publishing, the catalog and the reconciliation feed"),
        (name = "deliveries", description = "The delivery log"),
        (name = "workspaces", description = "Partitions of a tenant's documents"),
        (name = "api_keys", description = "A tenant's own API keys: make, name, revoke"),
        (name = "portal", description = "The embeddable portal: one-time links to the webhook pages, and their look"),
        (name = "signature_requests", description = "The e-signature lifecycle: documents out for signature"),
        (name = "signing", description = "What signers and approvers reach through their links (no API key)"),
        (name = "tenant", description = "Your tenant's settings"),
        (name = "health", description = "Liveness and readiness"),
        (name = "listen", description = "The relay of `signhook listen`: a tenant's test events to a developer's machine over a WebSocket")
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

/// Adds to every operation the answers every route of its kind can give,
/// each with the error body, so that the document lists every status the
/// server answers: 401 and 429 where an API key is required; 400 (not
/// JSON), 408 (the body stopped arriving), 413, 415 and 422 where a body is
/// read; 422 where a parameter is read and 404 where one is in the path;
/// 500 and 503 (the database unreachable) everywhere. A route's own
/// descriptions of these, where it has one, are kept.
struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let mut answers: Vec<(&str, &str)> = Vec::new();
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    answers.push(("401", "No API key, or one that is not valid"));
                    answers.push(("429", "This API key sent more than its rate allows; see `Retry-After`"));
                }
                if operation.request_body.is_some() {
                    answers.push(("400", "The body is not valid JSON, or a header is malformed"));
                    answers.push(("408", "The body stopped arriving before it was complete"));
                    answers.push(("413", "The body is larger than allowed"));
                    answers.push(("415", "The body is not of a type this route reads"));
                    answers.push(("422", "A value is not acceptable; `field` names it"));
                }
                let parameters = operation.parameters.as_deref().unwrap_or_default();
                if !parameters.is_empty() {
                    answers.push(("422", "A parameter is not acceptable; `field` names it"));
                }
                if parameters.iter().any(|p| p.parameter_in == ParameterIn::Path) {
                    answers.push(("404", "Nothing of this id (or link) exists"));
                }
                answers.push(("500", "A failure the client cannot act on; details are logged"));
                answers.push(("503", "The database cannot be reached right now; retry shortly"));
                for (status, description) in answers {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error_answer(description));
                }
            }
        }
    }
}

/// A response carrying [`ErrorBody`](crate::error::ErrorBody).
fn error_answer(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
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
