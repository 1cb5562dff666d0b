//! `GET /v1/listen`: the server's half of `signhook listen` (DESIGN §6).
//!
//! With `Upgrade: websocket`, it makes (or resumes) the API key's relay
//! subscription ([`signhook_store::relays`]), attaches the socket to this
//! node's [`RelayHub`] and holds the relay in the database while the socket
//! lives, renewing the hold every [`Relays::heartbeat`]; the dispatcher's
//! attempts of the relay's deliveries then come over the hub (see
//! `signhook_delivery::relay`) and go out as [`ServerMessage::Delivery`]
//! frames, the CLI's answers back as their results. Without the upgrade
//! it describes the key's relay subscription (what `--resend` needs).
//!
//! Test keys may listen; a live key only with `live=true`, so that a
//! developer does not pull production events to a laptop by mistake.

use crate::error::ApiError;
use crate::extract::{ApiQuery, Auth};
use crate::state::AppState;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use signhook_core::delivery::ErrorKind;
use signhook_core::filter::EventFilter;
use signhook_delivery::relay::{RelayAttachment, RelayReply, RelayRequest};
use signhook_delivery::RelayHub;
use signhook_listen::protocol::{ClientMessage, ServerMessage, CLOSE_REPLACED};
use signhook_store::relays::OpenRelay;
use signhook_store::subscriptions::Subscription;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::oneshot;
use utoipa::{IntoParams, ToSchema};

/// How this node holds relay sockets; resolved once from flags.
#[derive(Debug, Clone)]
pub struct Relays {
    /// The sockets this node holds, shared with its dispatcher.
    pub hub: RelayHub,
    /// This node's id, written as the holder.
    pub node_id: String,
    /// `--relay-backlog`: the most deliveries a relay keeps waiting while
    /// no CLI is connected; older ones are canceled when one connects.
    pub backlog: u32,
    /// How often the hold is renewed and the CLI pinged.
    pub heartbeat: Duration,
    /// How long a hold lasts unrenewed: a node that dies loses its relays
    /// this long after, at most.
    pub hold: Duration,
}

impl Relays {
    /// The defaults for node `node_id`: a 1,000-delivery backlog, a hold of
    /// 30 s renewed every 10 s.
    pub fn new(hub: RelayHub, node_id: String) -> Self {
        Self {
            hub,
            node_id,
            backlog: 1000,
            heartbeat: Duration::from_secs(10),
            hold: Duration::from_secs(30),
        }
    }
}

/// `GET /v1/listen`'s parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListenParams {
    /// Comma-separated event types and wildcards, as in `subscribed_events`
    /// (`signer.*,signature_request.done`); `*` (everything) by default.
    pub events: Option<String>,
    /// `true` lets a live (`sk_live_`) key listen; test keys need nothing.
    pub live: Option<bool>,
}

/// A key's relay subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct RelayView {
    /// The relay subscription (`wh_…`), listed among the webhooks with
    /// `kind: "relay"`.
    pub webhook_id: String,
    /// What it receives.
    pub subscribed_events: Vec<String>,
    /// Whether it receives sandbox events.
    pub sandbox: bool,
    /// Whether a `signhook listen` is connected now.
    pub connected: bool,
}

/// The key's relay subscription; with `Upgrade: websocket`, the relay
/// itself.
///
/// The WebSocket carries one JSON object per text frame, told apart by
/// `type`. The server opens with `{"type": "ready", "webhook_id",
/// "secret", "subscribed_events", "sandbox", "waiting", "canceled"}` — the
/// secret is the relay subscription's, the same for the key every time.
/// Then, for each attempt of the relay's deliveries (same fan-out, retry
/// schedule and delivery log as any webhook): `{"type": "delivery",
/// "request_id", "delivery_id", "event_id", "event_type", "attempt",
/// "headers": [[name, value], …], "body"}`, the exact headers and body an
/// HTTPS POST would carry, signed with that secret. The CLI answers each
/// with `{"type": "answered", "request_id", "status", "headers", "body"
/// (first 4 KiB), "duration_ms"}` or `{"type": "failed", "request_id",
/// "kind" (connect|timeout|http), "message", "duration_ms"}`, which is
/// recorded as the attempt; no answer within the request timeout is a
/// `timeout` attempt, a socket that closes first a `relay` one. While no
/// CLI is connected the deliveries wait, pending and untried; when one
/// connects, all but the newest `--relay-backlog` (1,000) are canceled.
/// The server pings every 10 s; another `listen` of the same key replaces
/// the socket, which is closed with code 4000.
#[utoipa::path(
    get, path = "/v1/listen", tag = "listen", security(("api_key" = [])),
    params(ListenParams),
    responses(
        (status = 101, description = "Switching to the WebSocket relay"),
        (status = 200, description = "Without Upgrade: the key's relay subscription", body = RelayView),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, description = "A live key without `live=true`", body = crate::error::ErrorBody),
        (status = 404, description = "Without Upgrade: the key never listened", body = crate::error::ErrorBody),
        (status = 422, description = "`events` is invalid", body = crate::error::ErrorBody)
    )
)]
pub async fn listen(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<ListenParams>,
    request: Request,
) -> Result<Response, ApiError> {
    if !auth.sandbox() && params.live != Some(true) {
        return Err(ApiError::Forbidden {
            code: "live_key_needs_opt_in",
            message: "this is a live key: listening would relay production events to this machine; \
                      add live=true (signhook listen --live) if that is what you want, or use your sk_test_ key"
                .into(),
            field: Some("live".into()),
        });
    }
    let events = parse_events(params.events.as_deref())?;
    // The body is not `Sync`: only the parts are kept across awaits.
    let (mut parts, _) = request.into_parts();
    let key_id = key_id(&state, &parts.headers).await?;
    let upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        let sub = state
            .store
            .relay_of_key(auth.tenant(), auth.sandbox(), &key_id)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound("this API key has no relay subscription yet; run signhook listen".into())
            })?;
        return Ok(Json(relay_view(&sub, state.clock.now())).into_response());
    }
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &state)
        .await
        .map_err(|rejection| ApiError::BadRequest {
            code: "bad_websocket_upgrade",
            message: rejection.body_text(),
        })?;
    let relays = state.relays.clone();
    let opened = state
        .store
        .open_relay(
            OpenRelay {
                tenant_id: auth.tenant().clone(),
                sandbox: auth.sandbox(),
                key_id,
                events,
                new_secret: crate::routes::webhooks::new_secret(),
                node: relays.node_id.clone(),
                hold_until: state.clock.now() + relays.hold,
                backlog: relays.backlog,
            },
            state.clock.now(),
        )
        .await?;
    tracing::info!(
        webhook = %opened.subscription.id,
        created = opened.created,
        waiting = opened.waiting,
        canceled = opened.canceled,
        "signhook listen connected"
    );
    // Attached before the upgrade completes, so no claim this node makes
    // of the relay's deliveries finds it missing.
    let attachment = relays.hub.attach(opened.subscription.id.clone());
    let ready = ServerMessage::Ready {
        webhook_id: opened.subscription.id.to_string(),
        secret: opened.subscription.secret.expose(),
        subscribed_events: opened.subscription.filter.events.to_texts(),
        sandbox: opened.subscription.filter.sandbox,
        waiting: opened.waiting,
        canceled: opened.canceled,
    };
    Ok(ws.on_upgrade(move |socket| async move {
        let sub = opened.subscription;
        relay(socket, &state, &sub, attachment, ready).await;
        tracing::info!(webhook = %sub.id, "signhook listen disconnected");
    }))
}

/// `events` as a filter, like `subscribed_events`; everything by default.
fn parse_events(given: Option<&str>) -> Result<EventFilter, ApiError> {
    let texts: Vec<String> = match given.map(str::trim) {
        None | Some("") => vec![signhook_core::filter::WILDCARD.to_owned()],
        Some(list) => list.split(',').map(|t| t.trim().to_owned()).collect(),
    };
    EventFilter::parse(&texts).map_err(|e| ApiError::validation("events", format!("events: {e}")))
}

/// The id of the key the request authenticated with.
async fn key_id(state: &AppState, headers: &axum::http::HeaderMap) -> Result<String, ApiError> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .unwrap_or_default();
    state
        .store
        .api_key_id(key)
        .await?
        .ok_or(ApiError::Unauthorized("the API key is not valid"))
}

/// How a relay subscription shows in `GET /v1/listen`.
fn relay_view(sub: &Subscription, now: chrono::DateTime<chrono::Utc>) -> RelayView {
    RelayView {
        webhook_id: sub.id.to_string(),
        subscribed_events: sub.filter.events.to_texts(),
        sandbox: sub.filter.sandbox,
        connected: relay_connected(sub, now),
    }
}

/// Whether a node holds `sub`'s socket now.
pub(crate) fn relay_connected(sub: &Subscription, now: chrono::DateTime<chrono::Utc>) -> bool {
    sub.relay
        .as_ref()
        .and_then(|r| r.held_by.as_ref())
        .is_some_and(|(_, until)| *until > now)
}

/// Why a socket's loop ended.
enum Ended {
    /// The CLI went away (closed, failed, stopped answering pings).
    Gone,
    /// Another socket of the same relay took over, here or on another node.
    Replaced,
}

/// Drives one CLI's socket until it closes or is replaced, then lets go
/// of the relay (unless another socket holds it now).
async fn relay(
    mut socket: WebSocket,
    state: &AppState,
    sub: &Subscription,
    mut attachment: RelayAttachment,
    ready: ServerMessage,
) {
    let relays = &state.relays;
    let mut waiting: HashMap<u64, oneshot::Sender<RelayReply>> = HashMap::new();
    let mut next_request = 0u64;
    let mut heartbeat = tokio::time::interval(relays.heartbeat);
    heartbeat.tick().await;
    let mut heard_since_ping = true;
    let ended = 'socket: {
        if send(&mut socket, &ready).await.is_err() {
            break 'socket Ended::Gone;
        }
        loop {
            tokio::select! {
                request = attachment.requests.recv() => {
                    let Some(request) = request else { break 'socket Ended::Replaced };
                    next_request += 1;
                    let (message, reply) = delivery_message(next_request, request);
                    waiting.insert(next_request, reply);
                    if send(&mut socket, &message).await.is_err() {
                        break 'socket Ended::Gone;
                    }
                }
                frame = socket.recv() => {
                    heard_since_ping = true;
                    match frame {
                        Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientMessage>(text.as_str()) {
                            Ok(answer) => {
                                if let Some(reply) = waiting.remove(&answer.request_id()) {
                                    // The attempt may have timed out meanwhile.
                                    let _ = reply.send(relay_reply(answer));
                                }
                            }
                            Err(e) => tracing::warn!(webhook = %sub.id, error = %e, "ignoring a message signhook listen sent"),
                        },
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break 'socket Ended::Gone,
                        Some(Ok(_)) => {}
                    }
                }
                _ = heartbeat.tick() => {
                    if !heard_since_ping {
                        tracing::info!(webhook = %sub.id, "signhook listen stopped answering pings");
                        break 'socket Ended::Gone;
                    }
                    heard_since_ping = false;
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        break 'socket Ended::Gone;
                    }
                    let until = state.clock.now() + relays.hold;
                    match state.store.renew_relay_hold(&sub.id, &relays.node_id, until).await {
                        Ok(true) => {}
                        Ok(false) => break 'socket Ended::Replaced,
                        Err(e) => tracing::warn!(webhook = %sub.id, error = %crate::error::error_chain(&e), "could not renew the relay's hold; trying again at the next heartbeat"),
                    }
                }
            }
        }
    };
    match ended {
        Ended::Replaced => {
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: CLOSE_REPLACED,
                    reason: "another signhook listen with this API key took over".into(),
                })))
                .await;
        }
        Ended::Gone => {
            // Let go first, so that no claim is made for a socket that is
            // gone; what is queued for it then fails as `relay` attempts.
            if relays.hub.is_current(&attachment) {
                if let Err(e) = state.store.end_relay_hold(&sub.id, &relays.node_id).await {
                    tracing::warn!(webhook = %sub.id, error = %crate::error::error_chain(&e), "could not let go of the relay; its hold lapses by itself");
                }
            }
        }
    }
}

async fn send(socket: &mut WebSocket, message: &ServerMessage) -> Result<(), axum::Error> {
    let text = serde_json::to_string(message).expect("protocol messages serialize");
    socket.send(Message::Text(text.into())).await
}

/// The frame of one attempt, and where its answer goes.
fn delivery_message(request_id: u64, request: RelayRequest) -> (ServerMessage, oneshot::Sender<RelayReply>) {
    let RelayRequest {
        delivery_id,
        event_id,
        event_type,
        attempt_number,
        headers,
        body,
        reply,
    } = request;
    (
        ServerMessage::Delivery {
            request_id,
            delivery_id: delivery_id.to_string(),
            event_id: event_id.to_string(),
            event_type,
            attempt: attempt_number,
            headers,
            body,
        },
        reply,
    )
}

/// The CLI's answer as the engine takes it.
fn relay_reply(answer: ClientMessage) -> RelayReply {
    match answer {
        ClientMessage::Answered {
            status,
            headers,
            body,
            duration_ms,
            ..
        } => RelayReply::Answered {
            status,
            headers,
            body,
            duration: Duration::from_millis(duration_ms),
        },
        ClientMessage::Failed {
            kind,
            message,
            duration_ms,
            ..
        } => RelayReply::Failed {
            kind: ErrorKind::parse(&kind)
                .filter(|k| matches!(k, ErrorKind::Connect | ErrorKind::Timeout | ErrorKind::Http))
                .unwrap_or(ErrorKind::Http),
            message,
            duration: Duration::from_millis(duration_ms),
        },
    }
}
