//! The dashboard's Team page, for admins only: the tenant's users (their
//! address, role, whether they have set a password yet, when they were
//! invited); inviting someone by e-mail with a role — the one-time link
//! e-mailed when SMTP is configured, or shown to hand over when not (the
//! page says which); re-sending an invitation (a fresh link; the older ones
//! stop working); changing a role; removing a user after a confirmation;
//! and, on the admin's own row, "log out everywhere".
//!
//! Every change holds from the user's next request: a session reads its
//! user's role from the database on each request, and a removed user's
//! sessions are deleted with them. No change leaves the tenant without an
//! admin, and an admin cannot remove themself; the page says why when it
//! refuses.

use crate::error::ApiError;
use crate::mail::{InvitationFailure, TeamInvitation};
use crate::pages::frame::{Choice, Nav};
use crate::pages::session::{CsrfForm, PageRefusal, SignedIn};
use crate::pages::{dashboard_page, see_other};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use signhook_core::auth::{Role, UserEmail};
use signhook_core::ids::UserId;
use signhook_core::time::readable;
use signhook_store::users::{CreatedUser, Member, Reinvitation, TeamChange};
use signhook_store::StoreError;

/// How long an invitation's one-time link works (`signhook admin
/// create-user` gives its links as long).
pub const INVITATION_VALIDITY: chrono::Duration = chrono::Duration::days(7);

/// The roles, in the order the menus offer them.
const ROLES: [&str; 2] = ["viewer", "admin"];

#[derive(Template)]
#[template(path = "team.html")]
struct TeamPage {
    nav: Nav,
    rows: Vec<MemberRow>,
    /// The invitation form as typed (after a refusal).
    email: String,
    email_error: Option<String>,
    roles: Vec<Choice>,
    /// What an invitation just did.
    invited: Option<Invited>,
    notice: Option<&'static str>,
    /// Why the change asked for was refused.
    refused: Option<String>,
}

struct MemberRow {
    id: String,
    email: String,
    roles: Vec<Choice>,
    you: bool,
    has_password: bool,
    /// Whether they have set a password, or how their invitation stands.
    password: String,
    created: String,
}

fn row(member: &Member, me: &UserId, now: DateTime<Utc>) -> MemberRow {
    let password = match (member.has_password, member.link_expires_at) {
        (true, _) => "Set".to_owned(),
        (false, Some(until)) if until > now => format!("Not yet: invited, the link works until {}", readable(until)),
        (false, _) => "Not yet: the invitation link has expired; re-send it".to_owned(),
    };
    MemberRow {
        id: member.user.id.to_string(),
        email: member.user.email.clone(),
        roles: Choice::list(ROLES, member.user.role.as_str()),
        you: &member.user.id == me,
        has_password: member.has_password,
        password,
        created: readable(member.created_at),
    }
}

/// What inviting someone did: e-mailed the link, or hands it to the admin.
struct Invited {
    email: String,
    /// The link went out by e-mail.
    emailed: bool,
    /// The link, to hand over when it was not e-mailed.
    link: Option<String>,
    /// Why the e-mail could not be sent, when SMTP is configured.
    mail_error: Option<String>,
    until: String,
}

/// What the page shows besides the list.
#[derive(Default)]
struct Extras {
    email: String,
    role: Option<Role>,
    email_error: Option<String>,
    invited: Option<Invited>,
    notice: Option<&'static str>,
    refused: Option<String>,
}

async fn team_page(
    state: &AppState,
    signed_in: &SignedIn,
    status: StatusCode,
    extras: Extras,
) -> Result<Response, PageRefusal> {
    let members = state.store.list_members(&signed_in.tenant_id).await?;
    let now = state.clock.now();
    let me = &signed_in.require_user()?.id;
    let page = TeamPage {
        nav: Nav::new(signed_in, "team", "Team"),
        rows: members.iter().map(|m| row(m, me, now)).collect(),
        email: extras.email,
        email_error: extras.email_error,
        roles: Choice::list(ROLES, extras.role.unwrap_or(Role::Viewer).as_str()),
        invited: extras.invited,
        notice: extras.notice,
        refused: extras.refused,
    };
    Ok(dashboard_page(status, &page))
}

/// The Team page saying why a change was refused (409).
async fn refused(state: &AppState, signed_in: &SignedIn, why: impl Into<String>) -> Result<Response, PageRefusal> {
    let extras = Extras {
        refused: Some(why.into()),
        ..Extras::default()
    };
    team_page(state, signed_in, StatusCode::CONFLICT, extras).await
}

/// What the page's address may carry: what a button just did.
#[derive(Debug, Deserialize)]
pub struct TeamQuery {
    done: Option<String>,
}

/// `GET /team`.
pub async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<TeamQuery>,
) -> Result<Response, PageRefusal> {
    signed_in.require_admin()?;
    let notice = match query.done.as_deref() {
        Some("role") => Some("Role changed: it applies from their next page or request."),
        Some("removed") => Some("User removed: their sessions have ended and they can no longer log in."),
        _ => None,
    };
    let extras = Extras {
        notice,
        ..Extras::default()
    };
    team_page(&state, &signed_in, StatusCode::OK, extras).await
}

/// The tenant's user `id`; a 404 page for another tenant's, or no one's.
async fn member(state: &AppState, signed_in: &SignedIn, id: &str) -> Result<Member, PageRefusal> {
    let not_found = || PageRefusal::Error(ApiError::not_found("user", id));
    let user_id = UserId::parse(id).map_err(|_| not_found())?;
    state
        .store
        .member(&signed_in.tenant_id, &user_id)
        .await?
        .ok_or_else(not_found)
}

/// A role as a form names it.
fn role_named(text: &str) -> Result<Role, PageRefusal> {
    Role::parse(text)
        .ok_or_else(|| PageRefusal::Error(ApiError::validation("role", "role must be `admin` or `viewer`")))
}

/// The invitation form.
#[derive(Debug, Deserialize)]
pub struct InviteForm {
    csrf: String,
    email: String,
    role: String,
}

/// `POST /team/invite`: makes the user and hands out their one-time link —
/// by e-mail when SMTP is configured, else on the page that answers.
pub async fn invite(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Form(form): Form<InviteForm>,
) -> Result<Response, PageRefusal> {
    signed_in.check_admin_form(&form.csrf)?;
    let role = role_named(&form.role)?;
    let refuse = |message: String| Extras {
        email: form.email.clone(),
        role: Some(role),
        email_error: Some(message),
        ..Extras::default()
    };
    let email = match UserEmail::parse(&form.email) {
        Ok(email) => email,
        Err(message) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return team_page(&state, &signed_in, status, refuse(message.to_owned())).await;
        }
    };
    let now = state.clock.now();
    let tenant = &signed_in.tenant_id;
    let created = match state
        .store
        .create_user(tenant, email.as_str(), role, now, now + INVITATION_VALIDITY)
        .await
    {
        Ok(Some(created)) => created,
        Ok(None) => return Err(ApiError::Internal("the signed-in user's tenant is gone".into()).into()),
        Err(StoreError::Conflict { .. }) => {
            let message = format!("{email} already has a Signhook dashboard account (on this team or another)");
            return team_page(&state, &signed_in, StatusCode::CONFLICT, refuse(message)).await;
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(user = %created.user.id, role = role.as_str(), "user invited");
    hand_out(&state, &signed_in, &created, now).await
}

/// Sends `created`'s link by e-mail, or shows it to hand over, and says on
/// the Team page which happened.
async fn hand_out(
    state: &AppState,
    signed_in: &SignedIn,
    created: &CreatedUser,
    now: DateTime<Utc>,
) -> Result<Response, PageRefusal> {
    let link = state
        .api
        .public_url
        .join(&format!("password/{}", created.link_token))
        .map_err(|e| ApiError::Internal(Box::new(e)))?
        .to_string();
    let expires_at = now + INVITATION_VALIDITY;
    let (emailed, mail_error) = match &state.lifecycle.mailer {
        None => (false, None),
        Some(mailer) => {
            let team = state
                .store
                .tenant_name(&created.user.tenant_id)
                .await?
                .unwrap_or_else(|| "your team".to_owned());
            let letter = TeamInvitation {
                email: created.user.email.clone(),
                team,
                invited_by: signed_in.require_user()?.email.clone(),
                role: created.user.role.as_str(),
                url: link.clone(),
                expires_at,
            };
            match mailer.send_team_invitation(&letter).await {
                Ok(_) => (true, None),
                Err(InvitationFailure::Undeliverable(why) | InvitationFailure::Failed(why)) => {
                    tracing::warn!(user = %created.user.id, error = %why, "the invitation could not be e-mailed");
                    (false, Some(why))
                }
            }
        }
    };
    let invited = Invited {
        email: created.user.email.clone(),
        emailed,
        link: (!emailed).then_some(link),
        mail_error,
        until: readable(expires_at),
    };
    let extras = Extras {
        invited: Some(invited),
        ..Extras::default()
    };
    team_page(state, signed_in, StatusCode::OK, extras).await
}

/// `POST /team/{id}/resend`: a fresh link for a user who has not set a
/// password yet; their older links stop working.
pub async fn resend(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    signed_in.check_admin_form(&form.csrf)?;
    let member = member(&state, &signed_in, &id).await?;
    let now = state.clock.now();
    let tenant = &signed_in.tenant_id;
    match state
        .store
        .reinvite(tenant, &member.user.id, now, now + INVITATION_VALIDITY)
        .await?
    {
        Reinvitation::Sent(created) => hand_out(&state, &signed_in, &created, now).await,
        Reinvitation::HasPassword => {
            let why = format!(
                "{} has set a password already: there is no invitation to re-send.",
                member.user.email
            );
            refused(&state, &signed_in, why).await
        }
        Reinvitation::NotFound => Err(ApiError::not_found("user", &id).into()),
    }
}

/// The role form.
#[derive(Debug, Deserialize)]
pub struct RoleForm {
    csrf: String,
    role: String,
}

/// Why the tenant's last admin stays one.
const LAST_ADMIN: &str =
    "is the team's only admin: make someone else an admin first, so the team is never left without one.";

/// `POST /team/{id}/role`.
pub async fn change_role(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<RoleForm>,
) -> Result<Response, PageRefusal> {
    signed_in.check_admin_form(&form.csrf)?;
    let role = role_named(&form.role)?;
    let member = member(&state, &signed_in, &id).await?;
    let tenant = &signed_in.tenant_id;
    match state.store.change_role(tenant, &member.user.id, role).await? {
        TeamChange::Done(user) => {
            tracing::info!(user = %user.id, role = role.as_str(), "role changed");
            if user.id == signed_in.require_user()?.id && role != Role::Admin {
                // They no longer see this page.
                return Ok(see_other("/webhooks"));
            }
            Ok(see_other("/team?done=role"))
        }
        TeamChange::LastAdmin => refused(&state, &signed_in, format!("{} {LAST_ADMIN}", member.user.email)).await,
        TeamChange::NotFound => Err(ApiError::not_found("user", &id).into()),
    }
}

#[derive(Template)]
#[template(path = "team_remove.html")]
struct RemovePage {
    nav: Nav,
    id: String,
    email: String,
    role: &'static str,
}

/// Why an admin cannot remove themself.
const NOT_YOURSELF: &str =
    "You cannot remove yourself: another admin can. To leave this browser, log out (or log out everywhere).";

/// `GET /team/{id}/remove`: asks to confirm.
pub async fn confirm_remove(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, PageRefusal> {
    signed_in.require_admin()?;
    let member = member(&state, &signed_in, &id).await?;
    if member.user.id == signed_in.require_user()?.id {
        return refused(&state, &signed_in, NOT_YOURSELF).await;
    }
    let page = RemovePage {
        nav: Nav::new(&signed_in, "team", format!("Remove {}", member.user.email)),
        id: member.user.id.to_string(),
        email: member.user.email,
        role: member.user.role.as_str(),
    };
    Ok(dashboard_page(StatusCode::OK, &page))
}

/// `POST /team/{id}/remove`: the user, their sessions and links are gone;
/// they are logged out wherever they are on their next request.
pub async fn remove(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    signed_in.check_admin_form(&form.csrf)?;
    let member = member(&state, &signed_in, &id).await?;
    if member.user.id == signed_in.require_user()?.id {
        return refused(&state, &signed_in, NOT_YOURSELF).await;
    }
    let tenant = &signed_in.tenant_id;
    match state.store.remove_user(tenant, &member.user.id).await? {
        TeamChange::Done(user) => {
            tracing::info!(user = %user.id, "user removed");
            Ok(see_other("/team?done=removed"))
        }
        TeamChange::LastAdmin => refused(&state, &signed_in, format!("{} {LAST_ADMIN}", member.user.email)).await,
        TeamChange::NotFound => Err(ApiError::not_found("user", &id).into()),
    }
}
