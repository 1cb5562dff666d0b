//! The embeddable portal: the dashboard's webhook pages, for a platform to
//! put in its own app (an iframe) for its own customers (DESIGN §9).
//!
//! The platform's server asks `POST /v1/portal_sessions` (API key) for a
//! one-time link; `GET /portal/{link}` opens it once and sends the browser
//! to `/portal/{session}/webhooks`. From there on every page of the portal
//! is an ordinary dashboard page served under `/portal/{session}/`:
//!
//! - [`serve`] stands in front of the router. A request under
//!   `/portal/{session}/…` is let through only to the sections the portal
//!   shows ([`Section::in_portal`](crate::pages::frame::Section), and the
//!   assets), with its path rewritten to the dashboard's and the session's
//!   [`PortalToken`] attached; [`SignedIn`] reads the session from it, never
//!   from cookies. The answer's own links (`href`, `action`, `src` and
//!   redirects, which our pages write as `/…`) are put back under
//!   `/portal/{session}/`.
//! - The session token travels in the path, not in a cookie: a cookie set
//!   inside an iframe of another site is a third-party cookie, which some
//!   browsers always refuse. Pages send no referrer to other sites, and
//!   the token is left out of the logs.
//! - Portal pages may be framed by the operator's `--portal-frame-ancestors`
//!   (CSP `frame-ancestors`; none when not set); every other page refuses
//!   framing.

use crate::error::ApiError;
use crate::pages::frame::SECTIONS;
use crate::pages::session::{PageRefusal, SignedIn, Visitor};
use crate::pages::{problem, see_other};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use tower_service::Service;

/// The session token of a portal page, from its path.
#[derive(Debug, Clone)]
pub struct PortalToken(pub String);

/// The biggest page the portal rewrites links in; ours are far smaller.
const MAX_PAGE: usize = 4 * 1024 * 1024;

/// The router, with the portal in front of it.
pub fn serve(router: Router, frame_ancestors: Option<String>) -> Router {
    let frame_ancestors = frame_ancestors.unwrap_or_else(|| "'none'".to_owned());
    Router::new().fallback(move |request: Request| {
        let mut router = router.clone();
        let frame_ancestors = frame_ancestors.clone();
        async move {
            let Some(rest) = request.uri().path().strip_prefix("/portal/") else {
                return call(&mut router, request).await;
            };
            let response = match rest.split_once('/') {
                // `/portal/{link}`: opening a link, an ordinary route.
                None => call(&mut router, request).await,
                Some((token, path)) => {
                    let (token, path) = (token.to_owned(), path.to_owned());
                    inside(&mut router, request, token, &path).await
                }
            };
            framable(response, &frame_ancestors)
        }
    })
}

/// The router's answer to `request` (a router never fails).
async fn call(router: &mut Router, request: Request) -> Response<Body> {
    match router.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Whether the portal lets `path` (below `/portal/{session}/`) through.
fn allowed(path: &str) -> bool {
    let first = path.split(['/', '?']).next().unwrap_or("");
    first == "assets" || SECTIONS.iter().any(|s| s.in_portal && s.path.trim_start_matches('/') == first)
        // One delivery's page belongs to the webhooks section.
        || first == "deliveries"
}

/// A request under `/portal/{token}/`: the dashboard's page for `path`, as
/// this portal session, with its links kept in the portal.
async fn inside(router: &mut Router, mut request: Request, token: String, path: &str) -> Response<Body> {
    if token.is_empty() || !allowed(path) {
        return problem(ApiError::NotFound("the portal shows webhooks only".into()));
    }
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let Ok(uri) = format!("/{path}{query}").parse() else {
        return problem(ApiError::NotFound("no such page".into()));
    };
    *request.uri_mut() = uri;
    let base = format!("/portal/{token}");
    request.extensions_mut().insert(PortalToken(token));
    let response = call(router, request).await;
    keep_inside(response, &base).await
}

/// `response` with its own links (`/…`) put under `base`.
async fn keep_inside(response: Response<Body>, base: &str) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    if let Some(location) = parts.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) {
        if location.starts_with('/') && !location.starts_with("//") {
            if let Ok(value) = HeaderValue::from_str(&format!("{base}{location}")) {
                parts.headers.insert(header::LOCATION, value);
            }
        }
    }
    let html = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    if !html {
        return Response::from_parts(parts, body);
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_PAGE).await else {
        return problem(ApiError::Internal("a page was too large to serve in the portal".into()));
    };
    // Our templates write every link of their own as `="/…"`; text from
    // users is escaped (a quote becomes `&#34;`), so it never matches.
    let page = String::from_utf8_lossy(&bytes);
    let mut rewritten = page.into_owned();
    for attribute in ["href", "action", "src"] {
        rewritten = rewritten.replace(&format!("{attribute}=\"/"), &format!("{attribute}=\"{base}/"));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(rewritten))
}

/// `response` (of a page under `/portal/`) framable by `frame_ancestors`,
/// and showing the tenant's logo from wherever it is.
fn framable(mut response: Response<Body>, frame_ancestors: &str) -> Response<Body> {
    let headers = response.headers_mut();
    headers.remove(header::X_FRAME_OPTIONS);
    if let Some(policy) = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
    {
        let policy = policy
            .replace("frame-ancestors 'none'", &format!("frame-ancestors {frame_ancestors}"))
            .replace("default-src 'none';", "default-src 'none'; img-src https: http:;");
        if let Ok(value) = HeaderValue::from_str(&policy) {
            headers.insert(header::CONTENT_SECURITY_POLICY, value);
        }
    }
    response
}

/// `GET /portal/{link}`: opens a one-time link, once; a used or expired
/// one is refused.
pub async fn open(State(state): State<AppState>, Path(link): Path<String>) -> Response<Body> {
    match state.store.open_portal_link(&link, state.clock.now()).await {
        Ok(Some(opened)) => see_other(&format!("/portal/{}/webhooks", opened.token)),
        Ok(None) => crate::pages::problem_with(
            StatusCode::GONE,
            "This link no longer works",
            "A portal link opens once, within minutes of being made. Open the webhooks page again from the app \
             you came from."
                .to_owned(),
        ),
        Err(e) => problem(e.into()),
    }
}

/// `GET /assets/theme.css` in the portal: the tenant's accent colour.
pub async fn theme_stylesheet(signed_in: SignedIn) -> Result<Response<Body>, PageRefusal> {
    let Visitor::Portal { theme, .. } = &signed_in.visitor else {
        return Err(PageRefusal::Forbidden("the theme is the portal's"));
    };
    // Checked as `#rrggbb` when set: nothing else reaches the stylesheet.
    let css = match theme.accent_color.as_deref().filter(|c| is_colour(c)) {
        Some(colour) => format!(":root {{ --accent: {colour}; }}\n"),
        None => String::new(),
    };
    let mut response = css.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(response)
}

/// Whether `text` is a colour as the theme takes it: `#` and six hex digits.
pub fn is_colour(text: &str) -> bool {
    text.len() == 7 && text.starts_with('#') && text[1..].chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portal_lets_through_its_sections_only() {
        for path in [
            "webhooks",
            "webhooks/wh_1?x=1",
            "deliveries/dlv_1",
            "assets/signhook.css",
        ] {
            assert!(allowed(path), "{path}");
        }
        for path in [
            "team",
            "api_keys",
            "login",
            "logout",
            "environment",
            "../team",
            "%74eam",
            "",
            "v1/webhooks",
        ] {
            assert!(!allowed(path), "{path}");
        }
    }

    #[test]
    fn frame_ancestors_are_origins_only() {
        assert_eq!(
            parse_frame_ancestors(" https://app.example.com  'self' http://localhost:3000 ").unwrap(),
            "https://app.example.com 'self' http://localhost:3000"
        );
        assert!(parse_frame_ancestors("https://*.example.com").is_ok());
        for bad in [
            "",
            "*",
            "https://a.example; script-src *",
            "javascript:x",
            "app.example.com",
            "https://",
        ] {
            assert!(parse_frame_ancestors(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn colours_are_six_hex_digits() {
        assert!(is_colour("#1d4ed8"));
        for bad in ["1d4ed8", "#1d4ed", "#1d4ed8;", "red", "#ggg000", "#1d4ed8 }"] {
            assert!(!is_colour(bad), "{bad}");
        }
    }
}

/// The dashboard's Portal page (admins): the theme, and a link to see the
/// portal as a customer does.
#[derive(askama::Template)]
#[template(path = "portal_settings.html")]
struct SettingsPage {
    nav: crate::pages::frame::Nav,
    product_name: String,
    logo_url: String,
    accent_color: String,
    saved: bool,
    error_field: Option<String>,
    error: Option<String>,
    frame_ancestors: Option<String>,
}

/// What the settings page's address may carry: what a button just did.
#[derive(Debug, serde::Deserialize)]
pub struct SettingsQuery {
    done: Option<String>,
}

fn settings_page(
    state: &AppState,
    signed_in: &SignedIn,
    theme: crate::routes::portal::PortalThemeView,
    saved: bool,
    refused: Option<(String, String)>,
) -> Response<Body> {
    let status = if refused.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let (error_field, error) = refused.map_or((None, None), |(f, m)| (Some(f), Some(m)));
    let page_view = SettingsPage {
        nav: crate::pages::frame::Nav::new(signed_in, "portal", "Portal"),
        product_name: theme.product_name.unwrap_or_default(),
        logo_url: theme.logo_url.unwrap_or_default(),
        accent_color: theme.accent_color.unwrap_or_default(),
        saved,
        error_field,
        error,
        frame_ancestors: state.api.portal_frame_ancestors.clone(),
    };
    crate::pages::dashboard_page(status, &page_view)
}

/// `GET /portal_settings`.
pub async fn settings(
    State(state): State<AppState>,
    signed_in: SignedIn,
    axum::extract::Query(query): axum::extract::Query<SettingsQuery>,
) -> Result<Response<Body>, PageRefusal> {
    signed_in.require_user()?;
    signed_in.require_admin()?;
    let theme = state.store.portal_theme(&signed_in.tenant_id).await?;
    let saved = query.done.as_deref() == Some("saved");
    Ok(settings_page(&state, &signed_in, theme.into(), saved, None))
}

/// The theme form.
#[derive(Debug, serde::Deserialize)]
pub struct ThemeForm {
    csrf: String,
    #[serde(default)]
    product_name: String,
    #[serde(default)]
    logo_url: String,
    #[serde(default)]
    accent_color: String,
}

/// `POST /portal_settings`: saves the theme as `PUT /v1/portal_theme`.
pub async fn save_theme(
    State(state): State<AppState>,
    signed_in: SignedIn,
    axum::Form(form): axum::Form<ThemeForm>,
) -> Result<Response<Body>, PageRefusal> {
    signed_in.check_admin_form(&form.csrf)?;
    signed_in.require_user()?;
    let view = crate::routes::portal::PortalThemeView {
        product_name: Some(form.product_name),
        logo_url: Some(form.logo_url),
        accent_color: Some(form.accent_color),
    };
    match crate::routes::portal::parse_theme(&state, view.clone()) {
        Ok(theme) => {
            state
                .store
                .set_portal_theme(&signed_in.tenant_id, &theme, state.clock.now())
                .await?;
            Ok(see_other("/portal_settings?done=saved"))
        }
        Err(ApiError::Validation { field, message }) => {
            Ok(settings_page(&state, &signed_in, view, false, Some((field, message))))
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /portal_settings/preview`: opens the portal of the environment
/// shown, with both capabilities, as a customer would see it.
pub async fn preview(
    State(state): State<AppState>,
    signed_in: SignedIn,
    axum::Form(form): axum::Form<crate::pages::session::CsrfForm>,
) -> Result<Response<Body>, PageRefusal> {
    signed_in.check_admin_form(&form.csrf)?;
    signed_in.require_user()?;
    let now = state.clock.now();
    let token = state
        .store
        .create_portal_link(
            &signed_in.tenant_id,
            signed_in.sandbox(),
            true,
            now + chrono::Duration::minutes(1),
            now,
        )
        .await?;
    Ok(see_other(&format!("/portal/{token}")))
}

/// Checks `--portal-frame-ancestors`: space-separated CSP sources, each
/// `'self'` or an origin (`https://app.example.com`, `https://*.example.com`,
/// with a port if needed). Anything else could change the policy itself.
pub fn parse_frame_ancestors(text: &str) -> Result<String, String> {
    let sources: Vec<&str> = text.split_whitespace().collect();
    if sources.is_empty() {
        return Err("--portal-frame-ancestors needs at least one origin, such as https://app.example.com".into());
    }
    for source in &sources {
        let origin_like = ["https://", "http://"].iter().any(|scheme| {
            source.strip_prefix(scheme).is_some_and(|host| {
                !host.is_empty()
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*' | '[' | ']'))
            })
        });
        if *source != "'self'" && !origin_like {
            return Err(format!(
                "--portal-frame-ancestors: `{source}` is not an origin (https://app.example.com) or 'self'"
            ));
        }
    }
    Ok(sources.join(" "))
}
