//! Getting into the dashboard and out of it: logging in, setting a password
//! from a one-time link (`signhook admin create-user` prints one), logging
//! out here or everywhere.
//!
//! Passwords are hashed with argon2id, off the async threads. A login that
//! names no account costs as much as one with a wrong password, so timing
//! does not tell which addresses have accounts; after
//! [`MAX_FAILURES_PER_ACCOUNT`] failures for an address, or
//! [`MAX_FAILURES_PER_CLIENT`] from one IP, within [`FAILURE_WINDOW`],
//! logins are refused with a 429 until the window moves on — counted in
//! the database, so on every node alike.

use crate::error::ApiError;
use crate::extract::Client;
use crate::pages::session::{redirect_with_cookie, same_origin, CsrfForm, PageRefusal, SignedIn};
use crate::pages::{dashboard_page, page, see_other};
use crate::state::AppState;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use signhook_store::users::User;
use std::sync::OnceLock;
use std::time::Duration;

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The longest password accepted (argon2 takes any length; this bounds the work).
pub const MAX_PASSWORD_CHARS: usize = 1000;
/// Failed logins for one address, within [`FAILURE_WINDOW`], before the
/// next are refused.
pub const MAX_FAILURES_PER_ACCOUNT: u64 = 5;
/// Failed logins from one IP address, within [`FAILURE_WINDOW`], before the
/// next are refused.
pub const MAX_FAILURES_PER_CLIENT: u64 = 30;
/// How far back failed logins count.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    email: String,
    error: Option<String>,
}

/// `GET /`: the dashboard's front door.
pub async fn home(signed_in: Result<SignedIn, PageRefusal>) -> Response {
    match signed_in {
        Ok(_) => see_other("/webhooks"),
        Err(_) => see_other("/login"),
    }
}

/// `GET /login`.
pub async fn login_page(signed_in: Result<SignedIn, PageRefusal>) -> Response {
    if signed_in.is_ok() {
        return see_other("/webhooks");
    }
    dashboard_page(
        StatusCode::OK,
        &LoginPage {
            email: String::new(),
            error: None,
        },
    )
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
}

/// A hash to verify against when the address has no account (or no
/// password yet), so that the answer takes as long either way.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"no account has this password")
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    })
}

/// Whether `password` matches the argon2 `hash`, computed off the async threads.
async fn verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return PageRefusal::Forbidden("this form was sent from another site").into_response();
    }
    let refused = |status: StatusCode, message: &str, email: &str| {
        dashboard_page(
            status,
            &LoginPage {
                email: email.to_owned(),
                error: Some(message.to_owned()),
            },
        )
    };
    let now = state.clock.now();
    let ip = client.ip.map(|ip| ip.to_string()).unwrap_or_default();
    let since = now - chrono::Duration::from_std(FAILURE_WINDOW).unwrap_or_default();
    let failures = match state.store.login_failures(&form.email, &ip, since).await {
        Ok(failures) => failures,
        Err(e) => return crate::pages::problem(e.into()),
    };
    if failures.account >= MAX_FAILURES_PER_ACCOUNT || failures.address >= MAX_FAILURES_PER_CLIENT {
        let mut response = refused(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed logins: wait 15 minutes before trying again.",
            &form.email,
        );
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, FAILURE_WINDOW.as_secs().into());
        return response;
    }
    let account = match state.store.user_by_email(&form.email).await {
        Ok(account) => account,
        Err(e) => return crate::pages::problem(e.into()),
    };
    let (user, hash) = match account {
        Some((user, Some(hash))) => (Some(user), hash),
        _ => (None, decoy_hash().to_owned()),
    };
    let matches = verify(form.password, hash).await;
    let Some(user) = user.filter(|_| matches) else {
        let forget = now - chrono::Duration::days(1);
        if let Err(e) = state.store.record_login_failure(&form.email, &ip, now, forget).await {
            return crate::pages::problem(e.into());
        }
        return refused(
            StatusCode::UNAUTHORIZED,
            "Wrong e-mail address or password.",
            &form.email,
        );
    };
    open_session(&state, &client, &user).await
}

/// Opens a session for `user` and sends them to the dashboard with its cookie.
async fn open_session(state: &AppState, client: &Client, user: &User) -> Response {
    let ip = client.ip.map(|ip| ip.to_string());
    let opened = state
        .store
        .open_session(user, ip.as_deref(), client.user_agent.as_deref(), state.clock.now())
        .await;
    match opened {
        Ok(opened) => redirect_with_cookie("/webhooks", Some(&opened.token), state.api.secure_cookies),
        Err(e) => crate::pages::problem(e.into()),
    }
}

/// `POST /logout`: ends this session.
pub async fn logout(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    signed_in.check_csrf(&form.csrf)?;
    state.store.revoke_session(&signed_in.token, state.clock.now()).await?;
    Ok(redirect_with_cookie("/login", None, state.api.secure_cookies))
}

/// `POST /logout/everywhere`: ends every session of this user, on every
/// device.
pub async fn logout_everywhere(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    signed_in.check_csrf(&form.csrf)?;
    let user = signed_in.require_user()?;
    state.store.revoke_sessions_of(&user.id, state.clock.now()).await?;
    Ok(redirect_with_cookie("/login", None, state.api.secure_cookies))
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    token: String,
    email: String,
    min: usize,
    password_error: Option<String>,
    confirm_error: Option<String>,
}

fn link_gone() -> Response {
    crate::pages::problem(ApiError::Gone(
        "this link was used already or has expired; ask your team's admin (or the operator) for a new one".into(),
    ))
}

/// `GET /password/{token}`: the form of a one-time link.
pub async fn password_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.store.user_of_link(&token, state.clock.now()).await {
        Ok(Some(user)) => page(
            StatusCode::OK,
            &PasswordPage {
                token,
                email: user.email,
                min: MIN_PASSWORD_CHARS,
                password_error: None,
                confirm_error: None,
            },
        ),
        Ok(None) => link_gone(),
        Err(e) => crate::pages::problem(e.into()),
    }
}

/// The set-password form.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    password: String,
    confirm: String,
}

/// What is wrong with a new password, as (field, message).
fn password_problem(form: &PasswordForm) -> Option<(&'static str, String)> {
    let chars = form.password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        return Some((
            "password",
            format!("The password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long."),
        ));
    }
    if form.password != form.confirm {
        return Some(("confirm", "The two passwords differ.".into()));
    }
    None
}

/// `POST /password/{token}`: sets the password, uses up the link, logs in.
pub async fn set_password(
    State(state): State<AppState>,
    client: Client,
    Path(token): Path<String>,
    Form(form): Form<PasswordForm>,
) -> Response {
    // No `Origin` check here: the page is served with no referrer (its
    // address is the credential), so browsers send `Origin: null`; a site
    // that does not know the link cannot post to it.
    let now = state.clock.now();
    let user = match state.store.user_of_link(&token, now).await {
        Ok(Some(user)) => user,
        Ok(None) => return link_gone(),
        Err(e) => return crate::pages::problem(e.into()),
    };
    if let Some((field, message)) = password_problem(&form) {
        let (password_error, confirm_error) = match field {
            "password" => (Some(message), None),
            _ => (None, Some(message)),
        };
        let form = PasswordPage {
            token,
            email: user.email,
            min: MIN_PASSWORD_CHARS,
            password_error,
            confirm_error,
        };
        return page(StatusCode::UNPROCESSABLE_ENTITY, &form);
    }
    let password = form.password;
    let hashed = tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
    })
    .await;
    let hash = match hashed {
        Ok(Ok(hash)) => hash,
        Ok(Err(e)) => return crate::pages::problem(ApiError::Internal(e.to_string().into())),
        Err(e) => return crate::pages::problem(ApiError::Internal(Box::new(e))),
    };
    match state.store.set_password_by_link(&token, &hash, now).await {
        Ok(Some(user)) => open_session(&state, &client, &user).await,
        Ok(None) => link_gone(),
        Err(e) => crate::pages::problem(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_password_is_long_enough_and_typed_twice() {
        let form = |p: &str, c: &str| PasswordForm {
            password: p.into(),
            confirm: c.into(),
        };
        assert_eq!(password_problem(&form("short", "short")).unwrap().0, "password");
        assert_eq!(
            password_problem(&form("long enough!", "long enough?")).unwrap().0,
            "confirm"
        );
        assert!(password_problem(&form("long enough!", "long enough!")).is_none());
    }
}
