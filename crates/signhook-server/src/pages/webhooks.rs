//! The dashboard's Webhooks pages: every endpoint of the tenant in the
//! environment shown with its state (enabled, failing since when, or
//! disabled and why) and its health; and the form that adds or edits one,
//! checked exactly as the API checks it, with the API's message beside the
//! refused field and nothing written. One endpoint's own page is
//! [`endpoint`](crate::pages::endpoint).

use crate::error::ApiError;
use crate::extract::Auth;
use crate::pages::endpoint::{endpoint, state_of};
use crate::pages::frame::{Fields, Nav};
use crate::pages::health::Health;
use crate::pages::session::{PageRefusal, SignedIn};
use crate::pages::{dashboard_page, see_other};
use crate::routes::webhooks::{create_subscription, update_subscription, CreateWebhook, UpdateWebhook};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use signhook_store::subscriptions::Subscription;
use std::collections::BTreeMap;

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    nav: Nav,
    admin: bool,
    rows: Vec<Row>,
    deleted: bool,
}

struct Row {
    id: String,
    url: String,
    description: String,
    events: String,
    state: String,
    tone: &'static str,
    health: Health,
}

fn row(subscription: &Subscription, health: Health) -> Row {
    let (state, tone) = state_of(subscription);
    Row {
        id: subscription.id.to_string(),
        url: subscription.destination().to_owned(),
        description: subscription.description.clone(),
        events: subscription.filter.events.to_texts().join(", "),
        state,
        tone,
        health,
    }
}

/// What the list's address may carry: what a button just did.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    done: Option<String>,
}

/// How many endpoints one page lists.
const PAGE_SIZE: u32 = 200;

/// `GET /webhooks`.
pub async fn list(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageRefusal> {
    let tenant = &signed_in.tenant_id;
    let subscriptions = state
        .store
        .list_subscriptions(tenant, signed_in.sandbox(), None, PAGE_SIZE)
        .await?;
    let now = state.clock.now();
    let ids: Vec<_> = subscriptions.items.iter().map(|s| s.id.clone()).collect();
    let hours = state.store.endpoint_health(&ids, Health::since(now)).await?;
    let page_view = WebhooksPage {
        nav: Nav::new(&signed_in, "webhooks", "Webhooks"),
        admin: signed_in.is_admin(),
        rows: subscriptions
            .items
            .iter()
            .map(|sub| row(sub, Health::new(hours.get(&sub.id).map_or(&[], Vec::as_slice), now)))
            .collect(),
        deleted: query.done.as_deref() == Some("deleted"),
    };
    Ok(dashboard_page(StatusCode::OK, &page_view))
}

/// What the endpoint form holds, as typed.
#[derive(Default)]
struct EndpointForm {
    url: String,
    description: String,
    events: Vec<String>,
    scopes: Vec<String>,
    workspaces: Vec<String>,
    auto_retry: bool,
    signature_scheme: String,
    rate_limit: String,
    headers: String,
    ordering: String,
    ordering_on_failure: String,
}

impl EndpointForm {
    fn has_event(&self, name: &str) -> bool {
        self.events.iter().any(|e| e == name)
    }

    fn has_scope(&self, name: &str) -> bool {
        self.scopes.iter().any(|e| e == name)
    }

    fn has_workspace(&self, id: &str) -> bool {
        self.workspaces.iter().any(|e| e == id)
    }

    /// The form as a browser sent it.
    fn read(fields: &Fields) -> Self {
        EndpointForm {
            url: fields.one("url"),
            description: fields.one("description"),
            events: fields.all("subscribed_events"),
            scopes: fields.all("scopes"),
            workspaces: fields.all("workspaces"),
            auto_retry: fields.one("auto_retry") == "true",
            signature_scheme: fields.one("signature_scheme"),
            rate_limit: fields.one("rate_limit_per_second").trim().to_owned(),
            headers: fields.one("headers"),
            ordering: fields.one("ordering"),
            ordering_on_failure: fields.one("ordering_on_failure"),
        }
    }

    /// The form filled with an endpoint's settings, to edit them.
    fn of(sub: &Subscription) -> Self {
        EndpointForm {
            url: sub.url.as_str().to_owned(),
            description: sub.description.clone(),
            events: sub.filter.events.to_texts(),
            scopes: sub.filter.scopes.to_texts(),
            workspaces: sub.filter.workspaces.to_texts(),
            auto_retry: sub.auto_retry,
            signature_scheme: sub.signature_scheme.as_str().to_owned(),
            rate_limit: sub.rate_limit_per_second.map(|r| r.to_string()).unwrap_or_default(),
            headers: sub
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: {value}"))
                .collect::<Vec<_>>()
                .join("\n"),
            ordering: sub.ordering.as_str().to_owned(),
            ordering_on_failure: sub.ordering_on_failure.as_str().to_owned(),
        }
    }

    /// What the form asks for, in the API's own terms — or the field the
    /// form itself cannot read (the API checks everything else).
    fn settings(&self) -> Result<Settings, ApiError> {
        let rate_limit = if self.rate_limit.is_empty() {
            None
        } else {
            Some(self.rate_limit.parse::<u32>().map_err(|_| {
                ApiError::validation(
                    "rate_limit_per_second",
                    "rate_limit_per_second must be a whole number from 1 to 10000",
                )
            })?)
        };
        let mut headers = BTreeMap::new();
        for line in self.headers.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                return Err(ApiError::validation(
                    "headers",
                    format!("headers: `{line}` is not `Name: value`"),
                ));
            };
            headers.insert(name.trim().to_owned(), value.trim().to_owned());
        }
        let ticked = |list: &[String], field: &str, what: &str| {
            if list.is_empty() {
                Err(ApiError::validation(
                    field,
                    format!("{field}: tick at least one {what} (or all)"),
                ))
            } else {
                Ok(list.to_vec())
            }
        };
        Ok(Settings {
            events: ticked(&self.events, "subscribed_events", "event")?,
            scopes: ticked(&self.scopes, "scopes", "scope")?,
            workspaces: ticked(&self.workspaces, "workspaces", "workspace")?,
            rate_limit,
            headers,
        })
    }
}

/// The parts of the form the page reads itself before the API checks them.
struct Settings {
    events: Vec<String>,
    scopes: Vec<String>,
    workspaces: Vec<String>,
    rate_limit: Option<u32>,
    headers: BTreeMap<String, String>,
}

/// The messages beside the fields of a refused form.
#[derive(Default)]
struct FieldErrors {
    url: Option<String>,
    description: Option<String>,
    events: Option<String>,
    scopes: Option<String>,
    workspaces: Option<String>,
    signature_scheme: Option<String>,
    rate_limit: Option<String>,
    headers: Option<String>,
    ordering: Option<String>,
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
            "scopes" => &mut errors.scopes,
            "workspaces" => &mut errors.workspaces,
            "signature_scheme" => &mut errors.signature_scheme,
            "rate_limit_per_second" => &mut errors.rate_limit,
            "headers" => &mut errors.headers,
            "ordering" | "ordering_on_failure" => &mut errors.ordering,
            _ => &mut errors.other,
        };
        *slot = Some(message);
        errors
    }
}

/// The catalog grouped by namespace, for the event checkboxes: the
/// built-in namespaces, then the tenant's own (its types not archived).
struct Namespace {
    namespace: String,
    wildcard: String,
    types: Vec<TypeChoice>,
}

/// One type's checkbox.
struct TypeChoice {
    name: String,
    description: String,
}

fn catalog_groups(own: &[signhook_store::event_types::TenantEventType]) -> Vec<Namespace> {
    let builtin = signhook_core::catalog::NAMESPACES.iter().map(|&namespace| {
        let types = signhook_core::catalog::CATALOG
            .iter()
            .filter(|info| signhook_core::event_types::namespace_of(info.name) == namespace)
            .map(|info| TypeChoice {
                name: info.name.to_owned(),
                description: info.description.to_owned(),
            })
            .collect();
        (namespace.to_owned(), types)
    });
    let mut tenant: std::collections::BTreeMap<String, Vec<TypeChoice>> = std::collections::BTreeMap::new();
    for t in own.iter().filter(|t| !t.archived) {
        tenant
            .entry(t.name.namespace().to_owned())
            .or_default()
            .push(TypeChoice {
                name: t.name.to_string(),
                description: t.description.clone(),
            });
    }
    builtin
        .chain(tenant)
        .map(|(namespace, types)| Namespace {
            wildcard: format!("{namespace}.*"),
            namespace,
            types,
        })
        .collect()
}

/// Add or edit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Add,
    Edit,
}

#[derive(Template)]
#[template(path = "webhook_form.html")]
struct FormPage {
    nav: Nav,
    /// Where the form posts.
    action: String,
    /// Where Cancel leads.
    back: String,
    button: &'static str,
    catalog: Vec<Namespace>,
    scopes: Vec<&'static str>,
    workspaces: Vec<(String, String)>,
    form: EndpointForm,
    errors: FieldErrors,
}

async fn form_page(
    state: &AppState,
    signed_in: &SignedIn,
    mode: Mode,
    id: Option<&str>,
    form: EndpointForm,
    errors: FieldErrors,
    status: StatusCode,
) -> Result<Response, PageRefusal> {
    let workspaces = state
        .store
        .list_workspaces(&signed_in.tenant_id)
        .await?
        .into_iter()
        .map(|w| (w.id.to_string(), w.name))
        .collect();
    let own_types = state.store.list_event_types(&signed_in.tenant_id).await?;
    let (title, action, back, button) = match (mode, id) {
        (Mode::Edit, Some(id)) => (
            "Edit the endpoint",
            format!("/webhooks/{id}/edit"),
            format!("/webhooks/{id}"),
            "Save changes",
        ),
        _ => (
            "Add an endpoint",
            "/webhooks/new".to_owned(),
            "/webhooks".to_owned(),
            "Add endpoint",
        ),
    };
    let page_view = FormPage {
        nav: Nav::new(signed_in, "webhooks", title),
        action,
        back,
        button,
        catalog: catalog_groups(&own_types),
        scopes: signhook_core::filter::Scope::ALL.iter().map(|s| s.as_str()).collect(),
        workspaces,
        form,
        errors,
    };
    Ok(dashboard_page(status, &page_view))
}

/// `GET /webhooks/new`.
pub async fn new_form(State(state): State<AppState>, signed_in: SignedIn) -> Result<Response, PageRefusal> {
    signed_in.require_admin()?;
    let all = || vec![signhook_core::filter::WILDCARD.to_owned()];
    let form = EndpointForm {
        events: all(),
        scopes: all(),
        workspaces: all(),
        auto_retry: true,
        ..EndpointForm::default()
    };
    form_page(
        &state,
        &signed_in,
        Mode::Add,
        None,
        form,
        FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// `POST /webhooks/new`: creates the endpoint as `POST /v1/webhooks` would,
/// or shows the form again with the API's message beside the field.
pub async fn create(
    State(state): State<AppState>,
    signed_in: SignedIn,
    body: axum::body::Bytes,
) -> Result<Response, PageRefusal> {
    let fields = Fields::parse(&body);
    signed_in.check_admin_form(&fields.one("csrf"))?;
    let form = EndpointForm::read(&fields);
    match add(&state, &signed_in, &form).await {
        Ok(sub) => Ok(see_other(&format!("/webhooks/{}", sub.id))),
        Err(ApiError::Validation { field, message }) => {
            let errors = FieldErrors::at(&field, message);
            let refused = StatusCode::UNPROCESSABLE_ENTITY;
            form_page(&state, &signed_in, Mode::Add, None, form, errors, refused).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates the endpoint the form asks for.
async fn add(state: &AppState, signed_in: &SignedIn, form: &EndpointForm) -> Result<Subscription, ApiError> {
    let settings = form.settings()?;
    let body = CreateWebhook {
        url: form.url.clone(),
        description: Some(form.description.clone()),
        sandbox: None,
        enabled: None,
        auto_retry: Some(form.auto_retry),
        subscribed_events: Some(settings.events),
        scopes: Some(settings.scopes),
        workspaces: Some(settings.workspaces),
        headers: Some(settings.headers),
        signature_scheme: Some(form.signature_scheme.clone()).filter(|s| !s.is_empty()),
        rate_limit_per_second: settings.rate_limit,
        ordering: Some(form.ordering.clone()).filter(|s| !s.is_empty()),
        ordering_on_failure: Some(form.ordering_on_failure.clone()).filter(|s| !s.is_empty()),
    };
    create_subscription(state, &Auth(signed_in.principal()), body).await
}

/// `GET /webhooks/{id}/edit`.
pub async fn edit_form(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, PageRefusal> {
    signed_in.require_admin()?;
    let sub = endpoint(&state, &signed_in, &id).await?;
    let form = EndpointForm::of(&sub);
    let errors = FieldErrors::default();
    form_page(
        &state,
        &signed_in,
        Mode::Edit,
        Some(sub.id.as_str()),
        form,
        errors,
        StatusCode::OK,
    )
    .await
}

/// `POST /webhooks/{id}/edit`: applies the form as `PATCH /v1/webhooks/{id}`
/// would, or shows it again with the API's message beside the field.
pub async fn update(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, PageRefusal> {
    let fields = Fields::parse(&body);
    signed_in.check_admin_form(&fields.one("csrf"))?;
    let sub = endpoint(&state, &signed_in, &id).await?;
    let id = sub.id.as_str();
    let form = EndpointForm::read(&fields);
    match change(&state, &signed_in, id, &form).await {
        Ok(sub) => Ok(see_other(&format!("/webhooks/{}?done=saved", sub.id))),
        Err(ApiError::Validation { field, message }) => {
            let errors = FieldErrors::at(&field, message);
            let refused = StatusCode::UNPROCESSABLE_ENTITY;
            form_page(&state, &signed_in, Mode::Edit, Some(id), form, errors, refused).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Applies the form to endpoint `id`.
async fn change(
    state: &AppState,
    signed_in: &SignedIn,
    id: &str,
    form: &EndpointForm,
) -> Result<Subscription, ApiError> {
    let settings = form.settings()?;
    let change = UpdateWebhook {
        url: Some(form.url.clone()),
        description: Some(form.description.clone()),
        auto_retry: Some(form.auto_retry),
        subscribed_events: Some(settings.events),
        scopes: Some(settings.scopes),
        workspaces: Some(settings.workspaces),
        headers: Some(settings.headers),
        signature_scheme: Some(form.signature_scheme.clone()).filter(|s| !s.is_empty()),
        rate_limit_per_second: Some(settings.rate_limit),
        ordering: Some(form.ordering.clone()).filter(|s| !s.is_empty()),
        ordering_on_failure: Some(form.ordering_on_failure.clone()).filter(|s| !s.is_empty()),
        ..UpdateWebhook::default()
    };
    update_subscription(state, &Auth(signed_in.principal()), id, change).await
}
