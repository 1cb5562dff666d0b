//! Who is looking at a dashboard page: the session cookie, read into a
//! [`SignedIn`] (or a redirect to the login page), and the checks every
//! form post passes — its CSRF token, and, when the browser says where the
//! form came from, that it came from here.
//!
//! The cookie holds a random token whose SHA-256 finds the session in the
//! database (see `signhook_store::users`): `HttpOnly`, `SameSite=Lax`,
//! `Secure` behind https, `Path=/`. A session ends after `--session-idle`
//! unused, at logout, or when its user's password is set again.
//!
//! The embeddable portal's visitors are signed in too, by the session
//! token in the portal's path (see [`crate::pages::portal`]): they are no
//! user of the tenant, and may do what their link's capabilities allow in
//! the one environment it was made for.

use crate::error::ApiError;
use crate::pages::{protect, see_other};
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use signhook_core::auth::{Environment, Role};
use signhook_core::ids::TenantId;
use signhook_store::portal::PortalTheme;
use signhook_store::tenants::Principal;
use signhook_store::users::User;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "signhook_session";
/// The cookie that remembers which environment the dashboard shows
/// (`sandbox`; absent for live). Not a credential: both environments are
/// the tenant's own.
pub const ENVIRONMENT_COOKIE: &str = "signhook_environment";

/// Who is looking at a dashboard page.
#[derive(Debug, Clone)]
pub enum Visitor {
    /// A dashboard user of the tenant.
    User(User),
    /// Someone holding a portal link: the tenant's customer, in the
    /// platform's app.
    Portal {
        /// Whether the link gave `write` (change endpoints, see secrets).
        can_write: bool,
        /// How the tenant wants the portal to look.
        theme: PortalTheme,
    },
}

/// A signed-in visitor of the dashboard's pages.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// Whose pages.
    pub tenant_id: TenantId,
    /// Who is looking.
    pub visitor: Visitor,
    /// The token every form of this session must carry.
    pub csrf: String,
    /// The session's token (the cookie's, or the portal path's).
    pub token: String,
    /// The environment the pages show: live, or the sandbox.
    pub environment: Environment,
}

impl SignedIn {
    /// Whether they may change things and see secrets: an admin, or a
    /// portal link with `write`.
    pub fn is_admin(&self) -> bool {
        match &self.visitor {
            Visitor::User(user) => user.role == Role::Admin,
            Visitor::Portal { can_write, .. } => *can_write,
        }
    }

    /// The dashboard user, when it is one (not a portal visitor).
    pub fn user(&self) -> Option<&User> {
        match &self.visitor {
            Visitor::User(user) => Some(user),
            Visitor::Portal { .. } => None,
        }
    }

    /// The dashboard user, or a refusal for a portal visitor (team, keys,
    /// logging out are a user's).
    pub fn require_user(&self) -> Result<&User, PageRefusal> {
        self.user()
            .ok_or(PageRefusal::Forbidden("the portal shows webhooks only"))
    }

    /// Whether this is a portal visitor.
    pub fn is_portal(&self) -> bool {
        matches!(self.visitor, Visitor::Portal { .. })
    }

    /// Who did something, for the logs: a user id, or `portal`.
    pub fn actor(&self) -> String {
        match &self.visitor {
            Visitor::User(user) => user.id.to_string(),
            Visitor::Portal { .. } => "portal".to_owned(),
        }
    }

    /// Refuses a user who may only look.
    pub fn require_admin(&self) -> Result<(), PageRefusal> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(PageRefusal::Forbidden(
                "only an admin of this team can change things here or see secrets",
            ))
        }
    }

    /// Whether the pages show the sandbox.
    pub fn sandbox(&self) -> bool {
        self.environment.is_sandbox()
    }

    /// Who the pages act as when they call the API's own functions: this
    /// user's tenant, in the environment shown.
    pub fn principal(&self) -> Principal {
        Principal {
            tenant_id: self.tenant_id.clone(),
            environment: self.environment,
        }
    }

    /// Refuses a form that changes something unless it is this session's
    /// (its CSRF token) and the visitor may change things (an admin, or a
    /// portal link with `write`): the check of every admin's button.
    pub fn check_admin_form(&self, sent: &str) -> Result<(), PageRefusal> {
        self.check_csrf(sent)?;
        self.require_admin()
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, sent: &str) -> Result<(), PageRefusal> {
        if bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(PageRefusal::Forbidden(
                "this form has expired (its security token does not match your session); reload the page and try again",
            ))
        }
    }
}

/// A form that carries only its CSRF token (a button).
#[derive(Debug, serde::Deserialize)]
pub struct CsrfForm {
    /// The session's token, from the form's hidden field.
    pub csrf: String,
}

/// The value of the cookie `name` in a request's cookies.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// The session token in a request's cookies.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, COOKIE)
}

/// The environment a request's cookie chose (live unless it says sandbox).
pub fn chosen_environment(headers: &HeaderMap) -> Environment {
    match cookie_value(headers, ENVIRONMENT_COOKIE).as_deref() {
        Some("sandbox") => Environment::Test,
        _ => Environment::Live,
    }
}

/// Why a dashboard page is not shown.
#[derive(Debug)]
pub enum PageRefusal {
    /// Not signed in (or the session ended): to the login page.
    SignIn,
    /// A portal session that ended (idle too long): ask the platform for
    /// a new link.
    PortalEnded,
    /// Signed in, but this is not theirs to do (403).
    Forbidden(&'static str),
    /// Anything else, as a problem page.
    Error(ApiError),
}

impl From<ApiError> for PageRefusal {
    fn from(e: ApiError) -> Self {
        PageRefusal::Error(e)
    }
}

impl From<signhook_store::StoreError> for PageRefusal {
    fn from(e: signhook_store::StoreError) -> Self {
        PageRefusal::Error(e.into())
    }
}

impl IntoResponse for PageRefusal {
    fn into_response(self) -> Response {
        match self {
            PageRefusal::SignIn => see_other("/login"),
            PageRefusal::PortalEnded => crate::pages::problem_with(
                axum::http::StatusCode::UNAUTHORIZED,
                "This session has ended",
                "Open the webhooks page again from the app you came from.".to_owned(),
            ),
            PageRefusal::Forbidden(message) => crate::pages::problem_with(
                axum::http::StatusCode::FORBIDDEN,
                "This is not yours to do",
                message.to_owned(),
            ),
            PageRefusal::Error(e) => crate::pages::problem(e),
        }
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = PageRefusal;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageRefusal> {
        // A form posted from another site is refused whatever it carries.
        if parts.method != axum::http::Method::GET && !same_origin(&parts.headers) {
            return Err(PageRefusal::Forbidden("this form was sent from another site"));
        }
        // A portal page is the portal session's, whatever cookies the
        // browser also holds.
        if let Some(portal) = parts.extensions.get::<crate::pages::portal::PortalToken>() {
            let token = portal.0.clone();
            let session = state
                .store
                .portal_session(&token, state.clock.now(), state.api.session_idle)
                .await?
                .ok_or(PageRefusal::PortalEnded)?;
            let theme = state.store.portal_theme(&session.tenant_id).await?;
            return Ok(SignedIn {
                tenant_id: session.tenant_id,
                visitor: Visitor::Portal {
                    can_write: session.can_write,
                    theme,
                },
                csrf: session.csrf,
                token,
                environment: if session.sandbox {
                    Environment::Test
                } else {
                    Environment::Live
                },
            });
        }
        let token = session_token(&parts.headers).ok_or(PageRefusal::SignIn)?;
        let session = state
            .store
            .session(&token, state.clock.now(), state.api.session_idle)
            .await?
            .ok_or(PageRefusal::SignIn)?;
        Ok(SignedIn {
            tenant_id: session.user.tenant_id.clone(),
            visitor: Visitor::User(session.user),
            csrf: session.csrf,
            token,
            environment: chosen_environment(&parts.headers),
        })
    }
}

/// Whether a request's `Origin` (when the browser sends one) is this
/// server's own address.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// The cookie that holds `token` (or, with `None`, removes it).
pub fn cookie(token: Option<&str>, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = match token {
        Some(token) => format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{secure}"),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&value).expect("a token is URL-safe text")
}

/// The cookie that makes the pages show `environment`.
pub fn environment_cookie(environment: Environment, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = match environment {
        Environment::Test => format!("{ENVIRONMENT_COOKIE}=sandbox; Path=/; HttpOnly; SameSite=Lax{secure}"),
        Environment::Live => format!("{ENVIRONMENT_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&value).expect("the cookie is ASCII text")
}

/// A redirect to `location` that also sets (or clears) the session cookie.
pub fn redirect_with_cookie(location: &str, token: Option<&str>, secure: bool) -> Response {
    let mut response = see_other(location);
    response.headers_mut().insert(header::SET_COOKIE, cookie(token, secure));
    protect(response.headers_mut());
    response
}
