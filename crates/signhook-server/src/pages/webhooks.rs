//! The dashboard's Webhooks page: every endpoint of the tenant in one
//! environment, with its state — enabled, failing since when, or disabled
//! and why.

use crate::pages::dashboard_page;
use crate::pages::session::{PageRefusal, SignedIn};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use signhook_core::policy::DisabledReason;
use signhook_core::time::readable;
use signhook_store::subscriptions::Subscription;

/// What every dashboard page's frame shows.
pub struct Nav {
    /// The page's title.
    pub title: String,
    /// Which section of the navigation is current.
    pub section: &'static str,
    /// Who is signed in.
    pub email: String,
    /// Their role.
    pub role: &'static str,
    /// Their forms' token.
    pub csrf: String,
}

impl Nav {
    /// The frame of `section`'s page titled `title` for `signed_in`.
    pub fn new(signed_in: &SignedIn, section: &'static str, title: impl Into<String>) -> Self {
        Nav {
            title: title.into(),
            section,
            email: signed_in.session.user.email.clone(),
            role: signed_in.session.user.role.as_str(),
            csrf: signed_in.session.csrf.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    nav: Nav,
    environment: &'static str,
    other_environment: &'static str,
    rows: Vec<Row>,
}

struct Row {
    url: String,
    description: String,
    events: String,
    state: String,
    tone: &'static str,
}

fn row(subscription: &Subscription) -> Row {
    let (state, tone) = match (
        subscription.enabled,
        subscription.disabled_reason,
        subscription.failing_since,
    ) {
        (false, Some(DisabledReason::Gone), _) => ("Disabled: the endpoint answered 410 Gone".to_owned(), "disabled"),
        (false, Some(DisabledReason::Failing), _) => ("Disabled: it kept failing".to_owned(), "disabled"),
        (false, _, _) => ("Disabled by its owner".to_owned(), "disabled"),
        (true, _, Some(since)) => (
            format!(
                "Failing since {} ({} failures)",
                readable(since),
                subscription.failure_count
            ),
            "failing",
        ),
        (true, _, None) => ("Enabled".to_owned(), "enabled"),
    };
    Row {
        url: subscription.url.as_str().to_owned(),
        description: subscription.description.clone(),
        events: subscription.filter.events.to_texts().join(", "),
        state,
        tone,
    }
}

/// The page's query.
#[derive(Debug, Deserialize)]
pub struct EnvironmentQuery {
    /// `live` (the default) or `sandbox`.
    environment: Option<String>,
}

/// How many endpoints one page lists.
const PAGE_SIZE: u32 = 200;

/// `GET /webhooks`.
pub async fn list(
    State(state): State<AppState>,
    signed_in: SignedIn,
    axum::extract::Query(query): axum::extract::Query<EnvironmentQuery>,
) -> Result<Response, PageRefusal> {
    let sandbox = query.environment.as_deref() == Some("sandbox");
    let tenant = &signed_in.session.user.tenant_id;
    let subscriptions = state.store.list_subscriptions(tenant, sandbox, None, PAGE_SIZE).await?;
    let (environment, other_environment) = if sandbox {
        ("sandbox", "live")
    } else {
        ("live", "sandbox")
    };
    let page_view = WebhooksPage {
        nav: Nav::new(&signed_in, "webhooks", "Webhooks"),
        environment,
        other_environment,
        rows: subscriptions.items.iter().map(row).collect(),
    };
    Ok(dashboard_page(StatusCode::OK, &page_view))
}
