//! The API's routes, one module per resource (DESIGN §7).

pub mod api_keys;
pub mod deliveries;
pub mod event_types;
pub mod events;
pub mod health;
pub mod listen;
pub mod ordering;
pub mod portal;
pub mod recoveries;
pub mod signature_requests;
pub mod signing;
pub mod tenant;
pub mod webhooks;
pub mod workspaces;

use crate::error::ApiError;
use crate::extract::MAX_JSON_BODY;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

/// The whole API and the pages, with the embeddable portal in front.
pub fn router(state: AppState) -> Router {
    let frame_ancestors = state.api.portal_frame_ancestors.clone();
    crate::pages::portal::serve(routes(state), frame_ancestors)
}

/// Every route.
fn routes(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/event_types", get(event_types::list).post(event_types::create))
        .route("/event_types/{name}", get(event_types::get).patch(event_types::update))
        .route("/tenant", get(tenant::get).patch(tenant::update))
        .route("/workspaces", post(workspaces::create).get(workspaces::list))
        .route("/portal_sessions", post(portal::create_session))
        .route("/portal_theme", get(portal::get_theme).put(portal::put_theme))
        .route("/api_keys", post(api_keys::create).get(api_keys::list))
        .route("/api_keys/{id}", delete(api_keys::revoke))
        .route("/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/webhooks/{id}",
            get(webhooks::get).patch(webhooks::update).delete(webhooks::delete),
        )
        .route("/webhooks/{id}/secret", get(webhooks::reveal_secret))
        .route("/webhooks/{id}/rotate_secret", post(webhooks::rotate_secret))
        .route("/webhooks/{id}/promote_secret", post(webhooks::promote_secret))
        .route("/webhooks/{id}/test", post(webhooks::send_test))
        .route("/webhooks/{id}/deliveries", get(deliveries::list_for_webhook))
        .route("/webhooks/{id}/recover", post(recoveries::start))
        .route("/recoveries/{id}", get(recoveries::get))
        .route("/deliveries/{id}", get(deliveries::get))
        .route("/deliveries/{id}/resend", post(deliveries::resend))
        .route("/deliveries/{id}/skip", post(ordering::skip))
        .route("/webhooks/{id}/blocked_keys", get(ordering::blocked_keys))
        .route("/events", post(events::publish).get(events::list))
        .route("/events/{id}", get(events::get))
        .route("/events/{id}/resend", post(events::resend))
        .route("/listen", get(listen::listen))
        .route(
            "/signature_requests",
            post(signature_requests::create).get(signature_requests::list),
        )
        .route(
            "/signature_requests/{id}",
            get(signature_requests::get).delete(signature_requests::delete),
        )
        .route(
            "/signature_requests/{id}/documents",
            post(signature_requests::add_document).layer(DefaultBodyLimit::max(signature_requests::MAX_UPLOAD_BODY)),
        )
        .route("/signature_requests/{id}/activate", post(signature_requests::activate))
        .route("/signature_requests/{id}/cancel", post(signature_requests::cancel))
        .route("/signature_requests/{id}/remind", post(signature_requests::remind))
        .route(
            "/signature_requests/{id}/reactivate",
            post(signature_requests::reactivate),
        )
        .route("/signature_requests/{id}/links", get(signature_requests::links))
        .route(
            "/signature_requests/{id}/signers/{signer_id}/renew_link",
            post(signature_requests::renew_signer_link),
        );
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(crate::openapi::serve))
        .route("/signing/{token}", get(signing::open))
        .route("/signing/{token}/sign", post(signing::sign))
        .route("/signing/{token}/decline", post(signing::decline))
        .route("/signing/{token}/documents/{id}", get(signing::document))
        .route("/signing/{token}/signed.pdf", get(signing::signed_pdf))
        .route("/assets/signhook.css", get(crate::pages::stylesheet))
        .route("/assets/theme.css", get(crate::pages::portal::theme_stylesheet))
        .route("/portal/{link}", get(crate::pages::portal::open))
        .route(
            "/portal_settings",
            get(crate::pages::portal::settings).post(crate::pages::portal::save_theme),
        )
        .route("/portal_settings/preview", post(crate::pages::portal::preview))
        .route("/", get(crate::pages::account::home))
        .route(
            "/login",
            get(crate::pages::account::login_page).post(crate::pages::account::login),
        )
        .route("/logout", post(crate::pages::account::logout))
        .route("/logout/everywhere", post(crate::pages::account::logout_everywhere))
        .route("/environment", post(crate::pages::frame::switch))
        .route(
            "/password/{token}",
            get(crate::pages::account::password_page).post(crate::pages::account::set_password),
        )
        .route("/webhooks", get(crate::pages::webhooks::list))
        .route(
            "/webhooks/new",
            get(crate::pages::webhooks::new_form).post(crate::pages::webhooks::create),
        )
        .route("/webhooks/{id}", get(crate::pages::endpoint::show))
        .route(
            "/webhooks/{id}/edit",
            get(crate::pages::webhooks::edit_form).post(crate::pages::webhooks::update),
        )
        .route("/webhooks/{id}/secret", post(crate::pages::endpoint::reveal_secret))
        .route("/webhooks/{id}/rotate", post(crate::pages::endpoint::rotate_secret))
        .route("/webhooks/{id}/test", post(crate::pages::endpoint::send_test))
        .route("/webhooks/{id}/enable", post(crate::pages::endpoint::enable))
        .route("/webhooks/{id}/disable", post(crate::pages::endpoint::disable))
        .route("/webhooks/{id}/delete", post(crate::pages::endpoint::delete))
        .route("/webhooks/{id}/recover", post(crate::pages::endpoint::recover))
        .route(
            "/webhooks/{id}/blocked/resend",
            post(crate::pages::endpoint::resend_blocked),
        )
        .route(
            "/webhooks/{id}/blocked/skip",
            post(crate::pages::endpoint::skip_blocked),
        )
        .route(
            "/api_keys",
            get(crate::pages::api_keys::list).post(crate::pages::api_keys::create),
        )
        .route(
            "/api_keys/{id}/revoke",
            get(crate::pages::api_keys::confirm_revoke).post(crate::pages::api_keys::revoke),
        )
        .route("/team", get(crate::pages::team::show))
        .route("/team/invite", post(crate::pages::team::invite))
        .route("/team/{id}/resend", post(crate::pages::team::resend))
        .route("/team/{id}/role", post(crate::pages::team::change_role))
        .route(
            "/team/{id}/remove",
            get(crate::pages::team::confirm_remove).post(crate::pages::team::remove),
        )
        .route("/deliveries/{id}", get(crate::pages::deliveries::show))
        .route("/deliveries/{id}/resend", post(crate::pages::deliveries::resend))
        .route("/event_types", get(crate::pages::events::catalog))
        .route("/events", get(crate::pages::events::feed))
        .route("/events/{id}", get(crate::pages::events::show))
        .route("/events/{id}/resend", post(crate::pages::events::resend))
        .route("/signature_requests", get(crate::pages::signature_requests::list))
        .route("/signature_requests/{id}", get(crate::pages::signature_requests::show))
        .route(
            "/signature_requests/{id}/cancel",
            post(crate::pages::signature_requests::cancel),
        )
        .route(
            "/signature_requests/{id}/remind",
            post(crate::pages::signature_requests::remind),
        )
        .route(
            "/signature_requests/{id}/reactivate",
            post(crate::pages::signature_requests::reactivate),
        )
        .route("/approvals/{token}", get(signing::open_approval))
        .route("/approvals/{token}/approve", post(signing::approve))
        .route("/approvals/{token}/reject", post(signing::reject))
        .route("/files/{id}/{file}", get(signing::file))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), watch_storage))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// Tells the storage watch about every answer a refused write produced.
async fn watch_storage(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    if response.extensions().get::<crate::error::StorageRefusal>().is_some() {
        state.storage.refused();
    }
    response
}

/// The span of one request: its method and its path with every credential
/// left out — no query (file links carry their token there) and no
/// signing or approval token — so logs at any level hold no link that works.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!("request", method = %request.method(), path = %loggable_path(request.uri().path()))
}

/// `path` with the token of a signing or approval link replaced by
/// `{token}`.
fn loggable_path(path: &str) -> String {
    for prefix in ["/signing/", "/approvals/", "/portal/"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            let after = rest.find('/').map_or("", |i| &rest[i..]);
            return format!("{prefix}{{token}}{after}");
        }
    }
    path.to_owned()
}

/// A PDF file, as raw bytes (for the API document).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct PdfFile(pub Vec<u8>);

/// A PDF sent as a form (for the API document).
#[derive(utoipa::ToSchema)]
pub struct PdfUpload {
    /// The PDF.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; see /openapi.json for the API".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Parses a path id of type `T`; a malformed one is a 404 like an unknown
/// one, since to the caller both name nothing that exists.
pub(crate) fn path_id<T>(
    text: &str,
    what: &str,
    parse: impl Fn(&str) -> Result<T, signhook_core::ids::IdError>,
) -> Result<T, ApiError> {
    parse(text).map_err(|_| ApiError::not_found(what, text))
}

macro_rules! list_type {
    ($name:ident, $item:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, serde::Serialize, utoipa::ToSchema)]
        pub struct $name {
            /// The items of this page.
            pub data: Vec<$item>,
            /// Whether more items follow.
            pub has_more: bool,
            /// Pass this as the cursor to get the next page; null on the last page.
            pub next_cursor: Option<String>,
        }
    };
}
pub(crate) use list_type;

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn logged_paths_hold_no_link_token() {
        assert_eq!(loggable_path("/signing/sg_1.mac/sign"), "/signing/{token}/sign");
        assert_eq!(loggable_path("/signing/sg_1.2.mac"), "/signing/{token}");
        assert_eq!(
            loggable_path("/approvals/ap_1.mac/approve"),
            "/approvals/{token}/approve"
        );
        assert_eq!(loggable_path("/portal/abc123"), "/portal/{token}");
        assert_eq!(loggable_path("/v1/webhooks/wh_1"), "/v1/webhooks/wh_1");
    }
}
