//! The dashboard's Webhooks pages: every endpoint of the tenant in one
//! environment with its state (enabled, failing since when, or disabled
//! and why); adding one, checked exactly as the API checks it; and one
//! endpoint with its settings, its secret (admins), a test event and its
//! recent deliveries.

use crate::error::ApiError;
use crate::extract::Auth;
use crate::pages::session::{CsrfForm, PageRefusal, SignedIn};
use crate::pages::{dashboard_page, see_other};
use crate::routes::webhooks::{create_subscription, queue_test_event, CreateWebhook};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use signhook_core::auth::Environment;
use signhook_core::ids::SubscriptionId;
use signhook_core::policy::DisabledReason;
use signhook_core::time::readable;
use signhook_store::subscriptions::Subscription;
use signhook_store::tenants::Principal;

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
    admin: bool,
    environment: &'static str,
    other_environment: &'static str,
    rows: Vec<Row>,
}

struct Row {
    id: String,
    url: String,
    description: String,
    events: String,
    state: String,
    tone: &'static str,
}

/// An endpoint's state in words, and its colour.
fn state_of(subscription: &Subscription) -> (String, &'static str) {
    match (
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
    }
}

fn row(subscription: &Subscription) -> Row {
    let (state, tone) = state_of(subscription);
    Row {
        id: subscription.id.to_string(),
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

fn is_sandbox(query: &EnvironmentQuery) -> bool {
    query.environment.as_deref() == Some("sandbox")
}

fn environment_name(sandbox: bool) -> &'static str {
    if sandbox {
        "sandbox"
    } else {
        "live"
    }
}

/// How many endpoints one page lists.
const PAGE_SIZE: u32 = 200;

/// `GET /webhooks`.
pub async fn list(
    State(state): State<AppState>,
    signed_in: SignedIn,
    axum::extract::Query(query): axum::extract::Query<EnvironmentQuery>,
) -> Result<Response, PageRefusal> {
    let sandbox = is_sandbox(&query);
    let tenant = &signed_in.session.user.tenant_id;
    let subscriptions = state.store.list_subscriptions(tenant, sandbox, None, PAGE_SIZE).await?;
    let (environment, other_environment) = if sandbox {
        ("sandbox", "live")
    } else {
        ("live", "sandbox")
    };
    let page_view = WebhooksPage {
        nav: Nav::new(&signed_in, "webhooks", "Webhooks"),
        admin: signed_in.is_admin(),
        environment,
        other_environment,
        rows: subscriptions.items.iter().map(row).collect(),
    };
    Ok(dashboard_page(StatusCode::OK, &page_view))
}

/// A form's fields, as the browser sent them (a checkbox list repeats its
/// name, which serde's form reader does not take).
struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(body: &[u8]) -> Self {
        Fields(url::form_urlencoded::parse(body).into_owned().collect())
    }

    fn one(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// What the "Add endpoint" form holds.
#[derive(Default)]
struct EndpointForm {
    url: String,
    description: String,
    events: Vec<String>,
    signature_scheme: String,
    rate_limit: String,
    headers: String,
}

impl EndpointForm {
    fn has_event(&self, name: &str) -> bool {
        self.events.iter().any(|e| e == name)
    }
}

/// The messages beside the fields of a refused form.
#[derive(Default)]
struct FieldErrors {
    url: Option<String>,
    description: Option<String>,
    events: Option<String>,
    signature_scheme: Option<String>,
    rate_limit: Option<String>,
    headers: Option<String>,
    other: Option<String>,
}

impl FieldErrors {
    /// `message` beside the field the API names `field`.
    fn at(field: &str, message: String) -> Self {
        let mut errors = FieldErrors::default();
        let slot = match field.split(['[', '.']).next().unwrap_or(field) {
            "url" => &mut errors.url,
            "description" => &mut errors.description,
            "subscribed_events" => &mut errors.events,
            "signature_scheme" => &mut errors.signature_scheme,
            "rate_limit_per_second" => &mut errors.rate_limit,
            "headers" => &mut errors.headers,
            _ => &mut errors.other,
        };
        *slot = Some(message);
        errors
    }
}

/// The catalog grouped by namespace, for the event checkboxes.
struct Namespace {
    namespace: &'static str,
    wildcard: String,
    types: Vec<&'static signhook_core::catalog::EventTypeInfo>,
}

fn catalog_groups() -> Vec<Namespace> {
    signhook_core::catalog::NAMESPACES
        .iter()
        .map(|&namespace| Namespace {
            namespace,
            wildcard: format!("{namespace}.*"),
            types: signhook_core::catalog::CATALOG
                .iter()
                .filter(|info| info.name.split_once('.').is_some_and(|(ns, _)| ns == namespace))
                .collect(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "webhook_new.html")]
struct NewWebhookPage {
    nav: Nav,
    environment: &'static str,
    catalog: Vec<Namespace>,
    form: EndpointForm,
    errors: FieldErrors,
}

fn admin_only(signed_in: &SignedIn) -> Result<(), PageRefusal> {
    if signed_in.is_admin() {
        Ok(())
    } else {
        Err(PageRefusal::Forbidden(
            "only an admin of this team can change endpoints or see secrets",
        ))
    }
}

/// `GET /webhooks/new`.
pub async fn new_form(
    signed_in: SignedIn,
    axum::extract::Query(query): axum::extract::Query<EnvironmentQuery>,
) -> Result<Response, PageRefusal> {
    admin_only(&signed_in)?;
    let page_view = NewWebhookPage {
        nav: Nav::new(&signed_in, "webhooks", "Add an endpoint"),
        environment: environment_name(is_sandbox(&query)),
        catalog: catalog_groups(),
        form: EndpointForm {
            events: vec!["*".into()],
            ..EndpointForm::default()
        },
        errors: FieldErrors::default(),
    };
    Ok(dashboard_page(StatusCode::OK, &page_view))
}

/// `POST /webhooks/new`: creates the endpoint as `POST /v1/webhooks` would,
/// or shows the form again with the API's message beside the field.
pub async fn create(
    State(state): State<AppState>,
    signed_in: SignedIn,
    axum::extract::Query(query): axum::extract::Query<EnvironmentQuery>,
    body: axum::body::Bytes,
) -> Result<Response, PageRefusal> {
    let fields = Fields::parse(&body);
    signed_in.check_csrf(&fields.one("csrf"))?;
    admin_only(&signed_in)?;
    let sandbox = is_sandbox(&query);
    let form = EndpointForm {
        url: fields.one("url"),
        description: fields.one("description"),
        events: fields.all("subscribed_events"),
        signature_scheme: fields.one("signature_scheme"),
        rate_limit: fields.one("rate_limit_per_second").trim().to_owned(),
        headers: fields.one("headers"),
    };
    let refused = |form: EndpointForm, errors: FieldErrors| {
        let page_view = NewWebhookPage {
            nav: Nav::new(&signed_in, "webhooks", "Add an endpoint"),
            environment: environment_name(sandbox),
            catalog: catalog_groups(),
            form,
            errors,
        };
        Ok(dashboard_page(StatusCode::UNPROCESSABLE_ENTITY, &page_view))
    };
    let rate_limit = if form.rate_limit.is_empty() {
        None
    } else {
        match form.rate_limit.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                let message = "rate_limit_per_second must be a whole number from 1 to 10000".to_owned();
                return refused(form, FieldErrors::at("rate_limit_per_second", message));
            }
        }
    };
    let mut headers = std::collections::BTreeMap::new();
    for line in form.headers.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            let message = format!("headers: `{line}` is not `Name: value`");
            return refused(form, FieldErrors::at("headers", message));
        };
        headers.insert(name.trim().to_owned(), value.trim().to_owned());
    }
    if form.events.is_empty() {
        let message = "subscribed_events: tick at least one event (or every event)".to_owned();
        return refused(form, FieldErrors::at("subscribed_events", message));
    }
    let environment = if sandbox { Environment::Test } else { Environment::Live };
    let auth = Auth(Principal {
        tenant_id: signed_in.session.user.tenant_id.clone(),
        environment,
    });
    let body = CreateWebhook {
        url: form.url.clone(),
        description: Some(form.description.clone()),
        sandbox: None,
        enabled: None,
        auto_retry: None,
        subscribed_events: Some(form.events.clone()),
        scopes: None,
        workspaces: None,
        headers: Some(headers),
        signature_scheme: Some(form.signature_scheme.clone()).filter(|s| !s.is_empty()),
        rate_limit_per_second: rate_limit,
    };
    match create_subscription(&state, &auth, body).await {
        Ok(sub) => Ok(see_other(&format!("/webhooks/{}", sub.id))),
        Err(ApiError::Validation { field, message }) => refused(form, FieldErrors::at(&field, message)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct WebhookPage {
    nav: Nav,
    id: String,
    admin: bool,
    url: String,
    description: String,
    environment: &'static str,
    state: String,
    tone: &'static str,
    events: String,
    scheme: &'static str,
    rate_limit: Option<u32>,
    headers: String,
    secret: Option<String>,
    deliveries: Vec<DeliveryRow>,
}

struct DeliveryRow {
    id: String,
    event_type: String,
    status: &'static str,
    attempts: u32,
    last_attempt: String,
}

/// How many deliveries the endpoint's page lists.
const RECENT_DELIVERIES: u32 = 50;

/// The tenant's endpoint `id`, in whichever environment it is; a 404 page
/// for another tenant's (as through the API).
async fn endpoint(state: &AppState, signed_in: &SignedIn, id: &str) -> Result<Subscription, PageRefusal> {
    let tenant = &signed_in.session.user.tenant_id;
    let not_found = || PageRefusal::Error(ApiError::not_found("webhook", id));
    let sub_id = SubscriptionId::parse(id).map_err(|_| not_found())?;
    for sandbox in [false, true] {
        if let Some(sub) = state.store.get_subscription(tenant, sandbox, &sub_id).await? {
            return Ok(sub);
        }
    }
    Err(not_found())
}

async fn endpoint_page(
    state: &AppState,
    signed_in: &SignedIn,
    sub: &Subscription,
    secret: Option<String>,
) -> Result<Response, PageRefusal> {
    let deliveries = state
        .store
        .list_deliveries(&sub.id, None, None, RECENT_DELIVERIES)
        .await?
        .items
        .into_iter()
        .map(|d| DeliveryRow {
            id: d.id.to_string(),
            event_type: d.event_type,
            status: d.status.as_str(),
            attempts: d.attempt_count,
            last_attempt: d.last_attempt_at.map(readable).unwrap_or_else(|| "—".into()),
        })
        .collect();
    let (state_text, tone) = state_of(sub);
    let page_view = WebhookPage {
        nav: Nav::new(signed_in, "webhooks", "Endpoint"),
        id: sub.id.to_string(),
        admin: signed_in.is_admin(),
        url: sub.url.as_str().to_owned(),
        description: sub.description.clone(),
        environment: environment_name(sub.filter.sandbox),
        state: state_text,
        tone,
        events: sub.filter.events.to_texts().join(", "),
        scheme: match sub.signature_scheme {
            signhook_core::endpoint::SignatureScheme::Standard => "Standard Webhooks",
            signhook_core::endpoint::SignatureScheme::HmacSha256Hex => "hex HMAC-SHA256 (X-Signature)",
        },
        rate_limit: sub.rate_limit_per_second,
        headers: sub.headers.iter().map(|(name, _)| name).collect::<Vec<_>>().join(", "),
        secret,
        deliveries,
    };
    Ok(dashboard_page(StatusCode::OK, &page_view))
}

/// `GET /webhooks/{id}`.
pub async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, PageRefusal> {
    let sub = endpoint(&state, &signed_in, &id).await?;
    endpoint_page(&state, &signed_in, &sub, None).await
}

/// `POST /webhooks/{id}/secret`: the page with the secret shown (admins).
pub async fn reveal_secret(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    let sub = admin_action(&state, &signed_in, &id, &form).await?;
    tracing::info!(webhook = %sub.id, user = %signed_in.session.user.id, "secret revealed in the dashboard");
    let secret = sub.secret.expose();
    endpoint_page(&state, &signed_in, &sub, Some(secret)).await
}

/// `POST /webhooks/{id}/test`: queues a `webhook.test` and shows the page.
pub async fn send_test(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageRefusal> {
    let sub = admin_action(&state, &signed_in, &id, &form).await?;
    queue_test_event(&state, &sub).await?;
    Ok(see_other(&format!("/webhooks/{}", sub.id)))
}

/// The endpoint a button of its page acts on: the form is this session's,
/// the user an admin, the endpoint the tenant's.
async fn admin_action(
    state: &AppState,
    signed_in: &SignedIn,
    id: &str,
    form: &CsrfForm,
) -> Result<Subscription, PageRefusal> {
    signed_in.check_csrf(&form.csrf)?;
    admin_only(signed_in)?;
    endpoint(state, signed_in, id).await
}
