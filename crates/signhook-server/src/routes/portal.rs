//! The embeddable portal's API: `POST /v1/portal_sessions` makes the
//! one-time link a platform hands its customer (the pages themselves are
//! [`crate::pages::portal`]), `GET/PUT /v1/portal_theme` the tenant's look
//! for it.

use crate::error::ApiError;
use crate::extract::{ApiJson, Auth};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use signhook_core::time::rfc3339;
use signhook_store::portal::PortalTheme;
use utoipa::ToSchema;

/// How long a link stays valid when the request names no `ttl`.
pub const DEFAULT_TTL_SECONDS: u32 = 600;
/// The shortest and longest `ttl`.
pub const TTL_SECONDS: std::ops::RangeInclusive<u32> = 60..=3600;
/// The longest product name.
pub const MAX_PRODUCT_NAME: usize = 60;
/// The longest logo URL.
pub const MAX_LOGO_URL: usize = 2000;

/// Asking for a portal link.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePortalSession {
    /// `["read"]` (the default: see endpoints and their deliveries) or
    /// `["read", "write"]` (also add, change and delete endpoints, see and
    /// rotate secrets, resend and recover).
    pub capabilities: Option<Vec<String>>,
    /// How many seconds the link may wait to be opened, 60 to 3600 (default
    /// 600). It opens once; the session it starts ends after the
    /// dashboard's idle time.
    pub ttl: Option<u32>,
}

/// A portal link.
#[derive(Debug, Serialize, ToSchema)]
pub struct PortalSessionView {
    /// The link: put it in an iframe (or open it) for your customer. It
    /// works once.
    pub url: String,
    /// Until when it can be opened (RFC 3339).
    pub expires_at: String,
    /// What its holder may do.
    pub capabilities: Vec<String>,
    /// `live` or `test`: the API key's environment, the only one it shows.
    pub environment: String,
}

/// Makes a one-time link to the webhook pages of the key's tenant and
/// environment, for a platform to show its own customer in an iframe.
#[utoipa::path(
    post, path = "/v1/portal_sessions", tag = "portal", security(("api_key" = [])),
    request_body = CreatePortalSession,
    responses((status = 201, body = PortalSessionView), (status = 422, body = crate::error::ErrorBody))
)]
pub async fn create_session(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body, _): ApiJson<CreatePortalSession>,
) -> Result<(StatusCode, Json<PortalSessionView>), ApiError> {
    let capabilities = body.capabilities.unwrap_or_else(|| vec!["read".to_owned()]);
    let mut can_write = false;
    for (i, capability) in capabilities.iter().enumerate() {
        match capability.as_str() {
            "read" => {}
            "write" => can_write = true,
            other => {
                return Err(ApiError::validation(
                    format!("capabilities[{i}]"),
                    format!("capabilities[{i}]: `{other}` is not a capability; use `read` or `write`"),
                ))
            }
        }
    }
    if !capabilities.iter().any(|c| c == "read") {
        return Err(ApiError::validation(
            "capabilities",
            "capabilities must include `read`: [\"read\"] or [\"read\", \"write\"]",
        ));
    }
    let ttl = body.ttl.unwrap_or(DEFAULT_TTL_SECONDS);
    if !TTL_SECONDS.contains(&ttl) {
        return Err(ApiError::validation(
            "ttl",
            format!("ttl must be {} to {} seconds", TTL_SECONDS.start(), TTL_SECONDS.end()),
        ));
    }
    let now = state.clock.now();
    let expires_at = now + chrono::Duration::seconds(i64::from(ttl));
    let token = state
        .store
        .create_portal_link(auth.tenant(), auth.sandbox(), can_write, expires_at, now)
        .await?;
    let url = state
        .api
        .public_url
        .join(&format!("portal/{token}"))
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let mut granted = vec!["read".to_owned()];
    if can_write {
        granted.push("write".to_owned());
    }
    Ok((
        StatusCode::CREATED,
        Json(PortalSessionView {
            url: url.to_string(),
            expires_at: rfc3339(expires_at),
            capabilities: granted,
            environment: if auth.sandbox() { "test" } else { "live" }.to_owned(),
        }),
    ))
}

/// How the portal looks; null parts are Signhook's own.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalThemeView {
    /// The name in the portal's header, 1 to 60 characters ("Webhooks"
    /// when null).
    pub product_name: Option<String>,
    /// An `https://` image shown beside the name.
    pub logo_url: Option<String>,
    /// Buttons' and links' colour, `#rrggbb`.
    pub accent_color: Option<String>,
}

impl From<PortalTheme> for PortalThemeView {
    fn from(t: PortalTheme) -> Self {
        Self {
            product_name: t.product_name,
            logo_url: t.logo_url,
            accent_color: t.accent_color,
        }
    }
}

/// Checks a theme as the API and the dashboard take it.
pub(crate) fn parse_theme(state: &AppState, view: PortalThemeView) -> Result<PortalTheme, ApiError> {
    let product_name = view.product_name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if product_name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_PRODUCT_NAME)
    {
        return Err(ApiError::validation(
            "product_name",
            format!("product_name must be at most {MAX_PRODUCT_NAME} characters"),
        ));
    }
    let logo_url = view.logo_url.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty());
    if let Some(logo) = &logo_url {
        let parsed = url::Url::parse(logo).ok().filter(|u| u.has_host());
        let allowed = match parsed.as_ref().map(url::Url::scheme) {
            Some("https") => true,
            Some("http") => state.api.dev,
            _ => false,
        };
        if !allowed || logo.len() > MAX_LOGO_URL || logo.contains(['"', '<', '>', ' ']) {
            return Err(ApiError::validation(
                "logo_url",
                "logo_url must be an https:// URL of an image (http:// only with --dev)",
            ));
        }
    }
    let accent_color = view
        .accent_color
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty());
    if accent_color
        .as_deref()
        .is_some_and(|c| !crate::pages::portal::is_colour(c))
    {
        return Err(ApiError::validation(
            "accent_color",
            "accent_color must be `#` and six hex digits, such as #1d4ed8",
        ));
    }
    Ok(PortalTheme {
        product_name,
        logo_url,
        accent_color,
    })
}

/// The tenant's portal theme.
#[utoipa::path(
    get, path = "/v1/portal_theme", tag = "portal", security(("api_key" = [])),
    responses((status = 200, body = PortalThemeView))
)]
pub async fn get_theme(State(state): State<AppState>, auth: Auth) -> Result<Json<PortalThemeView>, ApiError> {
    Ok(Json(state.store.portal_theme(auth.tenant()).await?.into()))
}

/// Replaces the tenant's portal theme (for both environments).
#[utoipa::path(
    put, path = "/v1/portal_theme", tag = "portal", security(("api_key" = [])),
    request_body = PortalThemeView,
    responses((status = 200, body = PortalThemeView), (status = 422, body = crate::error::ErrorBody))
)]
pub async fn put_theme(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body, _): ApiJson<PortalThemeView>,
) -> Result<Json<PortalThemeView>, ApiError> {
    let theme = parse_theme(&state, body)?;
    state
        .store
        .set_portal_theme(auth.tenant(), &theme, state.clock.now())
        .await?;
    Ok(Json(theme.into()))
}
