//! Webhook subscriptions: `POST/GET /v1/webhooks`,
//! `GET/PATCH/DELETE /v1/webhooks/{id}`, the secret's reveal and rotation,
//! and the test event.

use crate::error::ApiError;
use crate::extract::{page_limit, ApiJson, ApiQuery, Auth};
use crate::routes::deliveries::DeliveryView;
use crate::routes::{list_type, path_id};
use crate::state::{ApiSettings, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use signhook_core::auth::generate_webhook_key;
use signhook_core::endpoint::{CustomHeaders, SignatureScheme, WebhookUrl};
use signhook_core::filter::{EventFilter, FilterError, ScopeFilter, SubscriptionFilter, TenantTypes, WorkspaceFilter};
use signhook_core::ids::{DeliveryId, SubscriptionId};
use signhook_core::ordering::{OnFailure, Ordering};
use signhook_core::time::rfc3339;
use signhook_store::subscriptions::{NewSubscription, Subscription, SubscriptionChanges};
use signhook_verify::WebhookSecret;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// The longest description.
pub const MAX_DESCRIPTION_LEN: usize = 500;
/// The highest rate limit.
pub const MAX_RATE_LIMIT: u32 = 10_000;

/// Creating a subscription. Only `url` is required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// The endpoint: `https://` (or `http://` on a server started with `--dev`).
    pub url: String,
    /// What the subscription is for; sent in every payload. Up to 500 characters.
    pub description: Option<String>,
    /// Receive sandbox events (`true`) or live ones. Defaults to the API
    /// key's environment; a `sk_test_` key can only manage sandbox subscriptions.
    pub sandbox: Option<bool>,
    /// Whether deliveries are made. Default `true`.
    pub enabled: Option<bool>,
    /// Whether failed attempts are retried on the schedule. Default `true`.
    pub auto_retry: Option<bool>,
    /// Event types (`signer.done`), namespace wildcards (`signer.*`) or
    /// `["*"]` for everything, now and later. Default `["*"]`.
    pub subscribed_events: Option<Vec<String>>,
    /// `public_api`, `app`, or `["*"]`. Default `["*"]`.
    pub scopes: Option<Vec<String>>,
    /// Workspace ids, or `["*"]`. Default `["*"]`.
    pub workspaces: Option<Vec<String>>,
    /// Extra request headers sent with every delivery (not `webhook-*`,
    /// `content-type`, `content-length`, `host` or `user-agent`).
    pub headers: Option<BTreeMap<String, String>>,
    /// `standard` (Standard Webhooks, the default) or `hmac-sha256-hex`
    /// (`X-Signature`: hex HMAC-SHA256 of the body keyed with the secret text,
    /// and `X-Client-Id`).
    pub signature_scheme: Option<String>,
    /// At most this many deliveries per second to the endpoint (1 to 10,000);
    /// none by default.
    pub rate_limit_per_second: Option<u32>,
    /// Ordered delivery: `none` (the default), `signature_request` (the
    /// events of one signature request one at a time, in order) or `key`
    /// (likewise per the `ordering_key` of published events).
    pub ordering: Option<String>,
    /// What a dead letter does to the later deliveries of its key: `skip`
    /// (the default: the next leaves) or `block` (the next leaves only once
    /// it was resent and succeeded, or skipped).
    pub ordering_on_failure: Option<String>,
}

/// Changing a subscription; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// New endpoint.
    pub url: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// Cannot be changed: create a new subscription in the other environment.
    pub sandbox: Option<bool>,
    /// Enable (`true`) or disable (`false`).
    pub enabled: Option<bool>,
    /// Retry failures or not.
    pub auto_retry: Option<bool>,
    /// New `subscribed_events`.
    pub subscribed_events: Option<Vec<String>>,
    /// New `scopes`.
    pub scopes: Option<Vec<String>>,
    /// New `workspaces`.
    pub workspaces: Option<Vec<String>>,
    /// New headers, replacing all previous ones.
    pub headers: Option<BTreeMap<String, String>>,
    /// New signature scheme.
    pub signature_scheme: Option<String>,
    /// New rate limit; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub rate_limit_per_second: Option<Option<u32>>,
    /// New ordering: `none`, `signature_request` or `key`. Turning it off
    /// sends whatever was waiting at once.
    pub ordering: Option<String>,
    /// New behaviour on a dead letter: `skip` or `block`.
    pub ordering_on_failure: Option<String>,
}

/// Tells "absent" (`None`) from "null" (`Some(None)`) for a PATCH field.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    /// `wh_…`
    pub id: String,
    /// `endpoint` (deliveries are POSTed to `url`) or `relay` (the
    /// subscription of `signhook listen` for one API key: deliveries go over
    /// the CLI's WebSocket; its `url` is a placeholder that is never used,
    /// and cannot be changed).
    pub kind: String,
    /// The endpoint.
    pub url: String,
    /// What it is for.
    pub description: String,
    /// Whether it receives sandbox events.
    pub sandbox: bool,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Why it is disabled, when it is: `manual` (by its owner), `failing`
    /// (by the disable policy) or `gone` (the endpoint answered 410).
    pub disabled_reason: Option<String>,
    /// Whether failures are retried.
    pub auto_retry: bool,
    /// What it listens to.
    pub subscribed_events: Vec<String>,
    /// Which scopes.
    pub scopes: Vec<String>,
    /// Which workspaces.
    pub workspaces: Vec<String>,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// `standard` or `hmac-sha256-hex`.
    pub signature_scheme: String,
    /// Deliveries per second at most, when capped.
    pub rate_limit_per_second: Option<u32>,
    /// `none`, `signature_request` or `key`.
    pub ordering: String,
    /// `skip` or `block`.
    pub ordering_on_failure: String,
    /// When its current run of failed attempts began; null while healthy.
    pub failing_since: Option<String>,
    /// Failed attempts since the last success.
    pub failure_count: u32,
    /// When it was created.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
}

impl From<&Subscription> for WebhookView {
    fn from(s: &Subscription) -> Self {
        Self {
            id: s.id.to_string(),
            kind: if s.is_relay() { "relay" } else { "endpoint" }.to_owned(),
            url: s.url.as_str().to_owned(),
            description: s.description.clone(),
            sandbox: s.filter.sandbox,
            enabled: s.enabled,
            disabled_reason: s.disabled_reason.map(|r| r.as_str().to_owned()),
            auto_retry: s.auto_retry,
            subscribed_events: s.filter.events.to_texts(),
            scopes: s.filter.scopes.to_texts(),
            workspaces: s.filter.workspaces.to_texts(),
            headers: s.headers.as_map().clone(),
            signature_scheme: s.signature_scheme.as_str().to_owned(),
            rate_limit_per_second: s.rate_limit_per_second,
            ordering: s.ordering.as_str().to_owned(),
            ordering_on_failure: s.ordering_on_failure.as_str().to_owned(),
            failing_since: s.failing_since.map(rfc3339),
            failure_count: s.failure_count,
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// A subscription just created, with its secret: the one response that
/// carries it besides the explicit reveal.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    #[schema(inline)]
    webhook: WebhookView,
    /// The signing secret, `whsec_…`.
    pub secret: String,
}

/// A subscription's signing secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretView {
    /// The current secret, `whsec_…`.
    pub secret: String,
    /// When the previous secret stops signing, while it still does.
    pub previous_secret_expires_at: Option<String>,
}

list_type!(WebhookList, WebhookView, "A page of subscriptions, oldest first.");

/// Listing parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// The `next_cursor` of the previous page.
    pub after: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<u32>,
}

fn filter_error(field: &str, e: FilterError) -> ApiError {
    ApiError::validation(field, format!("{field}: {e}"))
}

fn parse_url(text: &str, api: &ApiSettings) -> Result<WebhookUrl, ApiError> {
    let url = WebhookUrl::parse(text.trim(), api.dev).map_err(|e| ApiError::validation("url", format!("url {e}")))?;
    // An IP literal can be judged now; host names are judged at send time,
    // after DNS, every time.
    let ip = match url.url().host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(Err(forbidden)) = ip.map(|ip| api.addresses.check(ip)) {
        return Err(ApiError::validation(
            "url",
            format!("url: {forbidden} (an operator can allow a range with --allow-endpoint-cidr)"),
        ));
    }
    Ok(url)
}

fn parse_rate_limit(limit: u32) -> Result<u32, ApiError> {
    if (1..=MAX_RATE_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::validation(
            "rate_limit_per_second",
            format!("rate_limit_per_second must be 1 to {MAX_RATE_LIMIT}"),
        ))
    }
}

fn parse_description(text: String) -> Result<String, ApiError> {
    if text.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(ApiError::validation(
            "description",
            format!("description must be at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    Ok(text)
}

fn parse_headers(given: &BTreeMap<String, String>) -> Result<CustomHeaders, ApiError> {
    CustomHeaders::parse(given).map_err(|e| ApiError::validation("headers", format!("headers: {e}")))
}

fn parse_scheme(text: &str) -> Result<SignatureScheme, ApiError> {
    SignatureScheme::parse(text).ok_or_else(|| {
        ApiError::validation(
            "signature_scheme",
            "signature_scheme must be `standard` or `hmac-sha256-hex`",
        )
    })
}

fn parse_ordering(text: &str) -> Result<Ordering, ApiError> {
    Ordering::parse(text)
        .ok_or_else(|| ApiError::validation("ordering", "ordering must be `none`, `signature_request` or `key`"))
}

fn parse_on_failure(text: &str) -> Result<OnFailure, ApiError> {
    OnFailure::parse(text)
        .ok_or_else(|| ApiError::validation("ordering_on_failure", "ordering_on_failure must be `skip` or `block`"))
}

/// Parses `subscribed_events` for the tenant: built-in types and the
/// tenant's own (and their namespaces).
async fn parse_events(state: &AppState, auth: &Auth, texts: &[String]) -> Result<EventFilter, ApiError> {
    let tenant_types = TenantTypes::new(state.store.event_type_names(auth.tenant()).await?);
    EventFilter::parse_for(texts, &tenant_types).map_err(|e| filter_error("subscribed_events", e))
}

fn parse_scopes(texts: &[String]) -> Result<ScopeFilter, ApiError> {
    ScopeFilter::parse(texts).map_err(|e| filter_error("scopes", e))
}

/// Parses `workspaces` and checks that every listed one is the tenant's.
async fn parse_workspaces(state: &AppState, auth: &Auth, texts: &[String]) -> Result<WorkspaceFilter, ApiError> {
    let filter = WorkspaceFilter::parse(texts).map_err(|e| filter_error("workspaces", e))?;
    let unknown = state.store.unknown_workspaces(auth.tenant(), filter.listed()).await?;
    if let Some(first) = unknown.first() {
        return Err(ApiError::validation(
            "workspaces",
            format!("workspaces: `{first}` is not one of your workspaces"),
        ));
    }
    Ok(filter)
}

fn check_sandbox(auth: &Auth, sandbox: Option<bool>) -> Result<bool, ApiError> {
    match sandbox {
        None => Ok(auth.sandbox()),
        Some(true) if auth.sandbox() => Ok(true),
        Some(false) if auth.sandbox() => Err(ApiError::validation(
            "sandbox",
            "a sk_test_ key manages sandbox subscriptions only; omit sandbox or set it to true",
        )),
        Some(false) => Ok(false),
        Some(true) => Err(ApiError::validation(
            "sandbox",
            "a sk_live_ key manages live subscriptions only; use your sk_test_ key for sandbox subscriptions",
        )),
    }
}

pub(crate) fn new_secret() -> WebhookSecret {
    WebhookSecret::from_bytes(&generate_webhook_key(&mut rand::rngs::OsRng))
}

async fn load(state: &AppState, auth: &Auth, id: &str) -> Result<Subscription, ApiError> {
    let sub_id = path_id(id, "webhook", SubscriptionId::parse)?;
    state
        .store
        .get_subscription(auth.tenant(), auth.sandbox(), &sub_id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", id))
}

fn wildcard() -> Vec<String> {
    vec![signhook_core::filter::WILDCARD.to_owned()]
}

/// Checks `body` as the API does (the first refused field is the error) and
/// creates the subscription for `auth`'s tenant and environment: what
/// `POST /v1/webhooks` and the dashboard's "Add endpoint" form both do.
pub(crate) async fn create_subscription(
    state: &AppState,
    auth: &Auth,
    body: CreateWebhook,
) -> Result<Subscription, ApiError> {
    let new = NewSubscription {
        tenant_id: auth.tenant().clone(),
        url: parse_url(&body.url, &state.api)?,
        description: parse_description(body.description.unwrap_or_default())?,
        enabled: body.enabled.unwrap_or(true),
        auto_retry: body.auto_retry.unwrap_or(true),
        filter: SubscriptionFilter {
            sandbox: check_sandbox(auth, body.sandbox)?,
            events: parse_events(state, auth, &body.subscribed_events.unwrap_or_else(wildcard)).await?,
            scopes: parse_scopes(&body.scopes.unwrap_or_else(wildcard))?,
            workspaces: parse_workspaces(state, auth, &body.workspaces.unwrap_or_else(wildcard)).await?,
        },
        headers: parse_headers(&body.headers.unwrap_or_default())?,
        signature_scheme: body
            .signature_scheme
            .as_deref()
            .map(parse_scheme)
            .transpose()?
            .unwrap_or_default(),
        rate_limit_per_second: body.rate_limit_per_second.map(parse_rate_limit).transpose()?,
        ordering: body
            .ordering
            .as_deref()
            .map(parse_ordering)
            .transpose()?
            .unwrap_or_default(),
        ordering_on_failure: body
            .ordering_on_failure
            .as_deref()
            .map(parse_on_failure)
            .transpose()?
            .unwrap_or_default(),
        secret: new_secret(),
    };
    Ok(state.store.create_subscription(new, state.clock.now()).await?)
}

/// Creates a subscription. The response is the only one, besides the
/// explicit reveal, that carries the secret.
#[utoipa::path(
    post, path = "/v1/webhooks", tag = "webhooks", security(("api_key" = [])),
    request_body = CreateWebhook,
    responses(
        (status = 201, body = CreatedWebhook),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody),
        (status = 422, description = "A field is invalid; `field` names it", body = crate::error::ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body, _): ApiJson<CreateWebhook>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let sub = create_subscription(&state, &auth, body).await?;
    let secret = sub.secret.expose();
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: (&sub).into(),
            secret,
        }),
    ))
}

/// Lists subscriptions of the key's environment, oldest first.
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "webhooks", security(("api_key" = [])),
    params(ListParams),
    responses((status = 200, body = WebhookList), (status = 422, body = crate::error::ErrorBody))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<WebhookList>, ApiError> {
    let limit = page_limit(params.limit)?;
    let after = params
        .after
        .as_deref()
        .map(|a| SubscriptionId::parse(a).map_err(|e| ApiError::validation("after", e.to_string())))
        .transpose()?;
    let page = state
        .store
        .list_subscriptions(auth.tenant(), auth.sandbox(), after.as_ref(), limit)
        .await?;
    let next_cursor = page
        .has_more
        .then(|| page.items.last().map(|s| s.id.to_string()))
        .flatten();
    Ok(Json(WebhookList {
        data: page.items.iter().map(Into::into).collect(),
        has_more: page.has_more,
        next_cursor,
    }))
}

/// One subscription.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "`wh_…`")),
    responses((status = 200, body = WebhookView), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let sub = load(&state, &auth, &id).await?;
    Ok(Json((&sub).into()))
}

/// Changes a subscription. `{"enabled": false}` pauses it: events that
/// happen meanwhile are kept as canceled deliveries.
#[utoipa::path(
    patch, path = "/v1/webhooks/{id}", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "`wh_…`")),
    request_body = UpdateWebhook,
    responses(
        (status = 200, body = WebhookView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)
    )
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(body, _): ApiJson<UpdateWebhook>,
) -> Result<Json<WebhookView>, ApiError> {
    let sub = update_subscription(&state, &auth, &id, body).await?;
    Ok(Json((&sub).into()))
}

/// Checks `body` as the API does and applies it to webhook `id`: what
/// `PATCH /v1/webhooks/{id}` and the dashboard's edit form and buttons do.
pub(crate) async fn update_subscription(
    state: &AppState,
    auth: &Auth,
    id: &str,
    body: UpdateWebhook,
) -> Result<Subscription, ApiError> {
    let sub_id = path_id(id, "webhook", SubscriptionId::parse)?;
    if body.sandbox.is_some_and(|s| s != auth.sandbox()) {
        return Err(ApiError::validation(
            "sandbox",
            "sandbox cannot be changed; create a subscription in the other environment instead",
        ));
    }
    // A relay's URL, headers and scheme mean nothing (it sends over a
    // socket), and its filter is the CLI's `--events`: refused rather than
    // turning it into an endpoint by mistake.
    let relay_fields = [
        ("url", body.url.is_some()),
        ("headers", body.headers.is_some()),
        ("signature_scheme", body.signature_scheme.is_some()),
        ("subscribed_events", body.subscribed_events.is_some()),
        // Only the node holding the CLI's socket may send a relay's
        // deliveries; an ordered key's next one is claimed by whichever
        // node recorded the previous.
        ("ordering", body.ordering.is_some()),
        ("ordering_on_failure", body.ordering_on_failure.is_some()),
    ];
    if let Some((field, _)) = relay_fields.iter().find(|(_, given)| *given) {
        if load(state, auth, id).await?.is_relay() {
            return Err(ApiError::validation(
                *field,
                format!(
                    "{field} cannot be changed on a relay subscription (signhook listen): it sends over the CLI's \
                     connection; restart signhook listen with other --events, or create an endpoint subscription"
                ),
            ));
        }
    }
    let changes = SubscriptionChanges {
        url: body.url.as_deref().map(|u| parse_url(u, &state.api)).transpose()?,
        description: body.description.map(parse_description).transpose()?,
        enabled: body.enabled,
        auto_retry: body.auto_retry,
        events: match body.subscribed_events.as_deref() {
            Some(texts) => Some(parse_events(state, auth, texts).await?),
            None => None,
        },
        scopes: body.scopes.as_deref().map(parse_scopes).transpose()?,
        workspaces: match body.workspaces.as_deref() {
            Some(texts) => Some(parse_workspaces(state, auth, texts).await?),
            None => None,
        },
        headers: body.headers.as_ref().map(parse_headers).transpose()?,
        signature_scheme: body.signature_scheme.as_deref().map(parse_scheme).transpose()?,
        rate_limit_per_second: match body.rate_limit_per_second {
            Some(Some(limit)) => Some(Some(parse_rate_limit(limit)?)),
            other => other,
        },
        ordering: body.ordering.as_deref().map(parse_ordering).transpose()?,
        ordering_on_failure: body.ordering_on_failure.as_deref().map(parse_on_failure).transpose()?,
    };
    state
        .store
        .update_subscription(auth.tenant(), auth.sandbox(), &sub_id, changes, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", id))
}

/// Deletes a subscription. Its pending deliveries are canceled; its delivery
/// log stays readable by delivery id.
#[utoipa::path(
    delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "`wh_…`")),
    responses((status = 204, description = "Deleted"), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn delete(State(state): State<AppState>, auth: Auth, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let sub_id = path_id(&id, "webhook", SubscriptionId::parse)?;
    if state
        .store
        .delete_subscription(auth.tenant(), auth.sandbox(), &sub_id, state.clock.now())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook", &id))
    }
}

fn secret_view(sub: &Subscription, state: &AppState) -> SecretView {
    let now = state.clock.now();
    SecretView {
        secret: sub.secret.expose(),
        previous_secret_expires_at: sub
            .previous_secret
            .as_ref()
            .filter(|(_, until)| *until > now)
            .map(|(_, until)| rfc3339(*until)),
    }
}

/// Reveals the signing secret.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}/secret", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "`wh_…`")),
    responses((status = 200, body = SecretView), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn reveal_secret(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<SecretView>, ApiError> {
    let sub = load(&state, &auth, &id).await?;
    tracing::info!(webhook = %sub.id, "secret revealed");
    Ok(Json(secret_view(&sub, &state)))
}

/// Replaces the signing secret. The old one keeps signing beside the new one
/// for the overlap period, 24 h by default (or until `promote_secret`), so
/// the receiver can switch without missing a delivery: both signatures in
/// `webhook-signature`; for `hmac-sha256-hex`, the old one's in
/// `X-Signature` and the new one's in `X-Signature-Next`.
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/rotate_secret", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "`wh_…`")),
    responses((status = 200, body = SecretView), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<SecretView>, ApiError> {
    let sub_id = path_id(&id, "webhook", SubscriptionId::parse)?;
    let now = state.clock.now();
    let overlap_until = now + state.api.secret_overlap;
    let sub = state
        .store
        .rotate_secret(auth.tenant(), auth.sandbox(), &sub_id, new_secret(), overlap_until, now)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", &id))?;
    tracing::info!(webhook = %sub.id, "secret rotated");
    Ok(Json(secret_view(&sub, &state)))
}

/// Ends a rotation's overlap now, once every receiver holds the new secret:
/// the previous secret stops signing (for `hmac-sha256-hex`, `X-Signature`
/// carries the new secret's signature from the next attempt on).
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/promote_secret", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "`wh_…`")),
    responses((status = 200, body = SecretView), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn promote_secret(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<SecretView>, ApiError> {
    let sub_id = path_id(&id, "webhook", SubscriptionId::parse)?;
    let sub = state
        .store
        .promote_secret(auth.tenant(), auth.sandbox(), &sub_id, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", &id))?;
    tracing::info!(webhook = %sub.id, "secret promoted; the previous one no longer signs");
    Ok(Json(secret_view(&sub, &state)))
}

/// Queues a signed test event of type `info` (with its example payload)
/// to `sub`, whatever it subscribes to; the API's `…/test` sends
/// `webhook.test`, the dashboard's button the type chosen.
pub(crate) async fn queue_test_event(
    state: &AppState,
    sub: &Subscription,
    info: &signhook_core::catalog::EventTypeInfo,
) -> Result<DeliveryId, ApiError> {
    let workspace = state.caches.default_workspace(&state.store, &sub.tenant_id).await?;
    let (_, delivery_id) = state
        .store
        .publish_to_subscription(
            sub,
            info.name,
            info.example_data().to_string(),
            workspace,
            state.clock.now(),
        )
        .await?;
    Ok(delivery_id)
}

/// Sends a signed `webhook.test` event to this subscription now, whatever it
/// subscribes to.
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/test", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "`wh_…`")),
    responses((status = 202, description = "Queued; follow it at /v1/deliveries/{id}", body = DeliveryView), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn send_test(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    let sub = load(&state, &auth, &id).await?;
    let info = signhook_core::catalog::lookup("webhook.test").expect("webhook.test is in the catalog");
    let delivery_id = queue_test_event(&state, &sub, info).await?;
    let (delivery, attempts) = state
        .store
        .get_delivery(auth.tenant(), auth.sandbox(), &delivery_id)
        .await?
        .ok_or_else(|| ApiError::Internal("the test delivery vanished right after it was written".into()))?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::new(delivery, Some(attempts)))))
}
