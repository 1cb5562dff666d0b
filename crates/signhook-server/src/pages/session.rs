//! Who is looking at a dashboard page: the session cookie, read into a
//! [`SignedIn`] (or a redirect to the login page), and the checks every
//! form post passes — its CSRF token, and, when the browser says where the
//! form came from, that it came from here.
//!
//! The cookie holds a random token whose SHA-256 finds the session in the
//! database (see `signhook_store::users`): `HttpOnly`, `SameSite=Lax`,
//! `Secure` behind https, `Path=/`. A session ends after `--session-idle`
//! unused, at logout, or when its user's password is set again.

use crate::error::ApiError;
use crate::pages::{protect, see_other};
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use signhook_core::auth::{Environment, Role};
use signhook_store::tenants::Principal;
use signhook_store::users::Session;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "signhook_session";
/// The cookie that remembers which environment the dashboard shows
/// (`sandbox`; absent for live). Not a credential: both environments are
/// the tenant's own.
pub const ENVIRONMENT_COOKIE: &str = "signhook_environment";

/// A signed-in dashboard user.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// Their session (user, tenant, role, CSRF token).
    pub session: Session,
    /// The cookie's token, to log this session out.
    pub token: String,
    /// The environment the pages show: live, or the sandbox.
    pub environment: Environment,
}

impl SignedIn {
    /// Whether they may change things and see secrets.
    pub fn is_admin(&self) -> bool {
        self.session.user.role == Role::Admin
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
            tenant_id: self.session.user.tenant_id.clone(),
            environment: self.environment,
        }
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, sent: &str) -> Result<(), PageRefusal> {
        if bool::from(sent.as_bytes().ct_eq(self.session.csrf.as_bytes())) {
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
        let token = session_token(&parts.headers).ok_or(PageRefusal::SignIn)?;
        let session = state
            .store
            .session(&token, state.clock.now(), state.api.session_idle)
            .await?
            .ok_or(PageRefusal::SignIn)?;
        Ok(SignedIn {
            session,
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
