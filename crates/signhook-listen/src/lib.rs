//! `signhook listen`: events of a Signhook server, relayed to an app on the
//! developer's machine with no public URL.
//!
//! # Layout
//!
//! - [`protocol`]: the JSON messages of `GET /v1/listen`'s WebSocket,
//!   shared with the server.
//! - [`listen`]: the CLI's loop: connect (and reconnect, with backoff and
//!   jitter), post each delivery to `--forward-to` with its bytes and
//!   headers unchanged, answer with the app's status, headers, the start of
//!   its body and the duration, and print one line per delivery.
//! - [`resend`]: `signhook listen --resend evt_…`, through the API's
//!   resend route.
//!
//! The `signhook` binary only turns its flags into [`Options`].
#![deny(missing_docs)]

pub mod protocol;

use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMessage, ServerMessage, CLOSE_REPLACED, MAX_REPLY_BODY};
use rand::Rng;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// What `signhook listen` is told.
#[derive(Clone)]
pub struct Options {
    /// The Signhook server's base URL (`https://signhook.example.com`).
    pub api: url::Url,
    /// The API key, `sk_test_…` (or `sk_live_…` with [`Options::live`]).
    pub key: String,
    /// Where each delivery is posted.
    pub forward_to: url::Url,
    /// `--events`: event types and wildcards, `*` for everything.
    pub events: Vec<String>,
    /// `--live`: let a live key listen (the server refuses otherwise).
    pub live: bool,
    /// How long the local app may take to answer one delivery.
    pub forward_timeout: Duration,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Options")
            .field("api", &self.api.as_str())
            .field("forward_to", &self.forward_to.as_str())
            .field("events", &self.events)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

/// Why `signhook listen` stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The server refused the request for good (a bad key, a live key
    /// without `--live`, a bad `--events`): retrying cannot help.
    #[error("the server refused ({status}): {message}")]
    Refused {
        /// Its status code.
        status: u16,
        /// Its error message.
        message: String,
    },
    /// Another `signhook listen` of the same key took the relay over.
    #[error("another `signhook listen` with this API key took over the relay; stopping")]
    Replaced,
    /// `--api` cannot be turned into the WebSocket's URL.
    #[error("--api must be an http:// or https:// URL")]
    BadApiUrl,
    /// An HTTP request of `--resend` failed.
    #[error("the request to the server failed")]
    Http(#[from] reqwest::Error),
    /// The server answered something this CLI does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

/// How one connection ended, when it does not end the CLI.
#[derive(Debug)]
enum Dropped {
    /// Before the server said it was ready (a refused or reset
    /// handshake): the backoff keeps growing.
    Connecting(String),
    /// After it had been ready: the next connection starts the backoff
    /// over.
    Lost(String),
}

impl Dropped {
    /// A connection that ended for `reason`, `ready` or not.
    fn after(ready: bool, reason: String) -> Self {
        if ready {
            Dropped::Lost(reason)
        } else {
            Dropped::Connecting(reason)
        }
    }
}

/// The WebSocket URL of `GET /v1/listen` on `api`.
fn socket_url(options: &Options) -> Result<url::Url, ListenError> {
    let mut url = options.api.join("/v1/listen").map_err(|_| ListenError::BadApiUrl)?;
    let scheme = match url.scheme() {
        "http" => "ws",
        "https" => "wss",
        _ => return Err(ListenError::BadApiUrl),
    };
    url.set_scheme(scheme).map_err(|_| ListenError::BadApiUrl)?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("events", &options.events.join(","));
        if options.live {
            query.append_pair("live", "true");
        }
    }
    Ok(url)
}

/// The message of an API error body, or the body itself.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// The wait before reconnect number `attempt` (0 first): exponential from
/// 250 ms, capped at 30 s, with "equal jitter" (half fixed, half random) so
/// that CLIs dropped together by a server restart do not come back in step.
pub fn reconnect_delay(attempt: u32, rng: &mut impl Rng) -> Duration {
    const BASE_MS: u64 = 250;
    const CAP_MS: u64 = 30_000;
    let ceiling = BASE_MS.saturating_mul(1 << attempt.min(16)).min(CAP_MS);
    Duration::from_millis(ceiling / 2 + rng.gen_range(0..=ceiling / 2))
}

/// Runs `signhook listen` until `shutdown` fires (then `Ok`) or the server
/// refuses it for good. Connections that drop are made again with
/// [`reconnect_delay`]; meanwhile the server keeps the deliveries waiting.
pub async fn listen(options: Options, shutdown: CancellationToken) -> Result<(), ListenError> {
    let url = socket_url(&options)?;
    let client = forwarding_client(options.forward_timeout)?;
    let mut failures = 0u32;
    let mut readied = false;
    loop {
        let ended = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            ended = session(&options, &url, &client, &mut readied, &shutdown) => ended?,
        };
        let Some(dropped) = ended else { return Ok(()) };
        let reason = match &dropped {
            Dropped::Connecting(reason) => reason,
            Dropped::Lost(reason) => {
                failures = 0;
                reason
            }
        };
        let delay = reconnect_delay(failures, &mut rand::thread_rng());
        failures = failures.saturating_add(1);
        println!(
            "connection to {}: {reason}; reconnecting in {} ms",
            options.api,
            delay.as_millis()
        );
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// The client that posts to the local app: no proxy (it is local), no
/// redirects followed (an answer is an answer, as for any delivery).
fn forwarding_client(timeout: Duration) -> Result<reqwest::Client, ListenError> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()?)
}

/// One connection: `Ok(None)` at shutdown, `Ok(Some(_))` when it dropped
/// (connect again), `Err` when the CLI must stop.
async fn session(
    options: &Options,
    url: &url::Url,
    client: &reqwest::Client,
    readied: &mut bool,
    shutdown: &CancellationToken,
) -> Result<Option<Dropped>, ListenError> {
    let mut request = url.as_str().into_client_request().map_err(|_| ListenError::BadApiUrl)?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", options.key))
        .map_err(|_| ListenError::Protocol("the API key is not a valid header value".into()))?;
    request.headers_mut().insert(header::AUTHORIZATION, bearer);
    let socket = match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => socket,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status();
            let message = error_message(response.body().as_deref().unwrap_or_default());
            // The server's own refusals; anything else (a proxy's 502, a
            // restart's 503) may pass.
            if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
                return Err(ListenError::Refused {
                    status: status.as_u16(),
                    message,
                });
            }
            return Ok(Some(Dropped::Connecting(format!("{status}: {message}"))));
        }
        Err(e) => return Ok(Some(Dropped::Connecting(e.to_string()))),
    };
    let (mut sink, mut stream) = socket.split();
    let (answers, mut answered) = mpsc::unbounded_channel::<ClientMessage>();
    let mut ready = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                return Ok(None);
            }
            Some(answer) = answered.recv() => {
                let text = serde_json::to_string(&answer).expect("protocol messages serialize");
                if let Err(e) = sink.send(Message::text(text)).await {
                    return Ok(Some(Dropped::after(ready, e.to_string())));
                }
            }
            frame = stream.next() => match frame {
                None => return Ok(Some(Dropped::after(ready, "the server closed the connection".into()))),
                Some(Err(e)) => return Ok(Some(Dropped::after(ready, e.to_string()))),
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<ServerMessage>(text.as_str()) {
                        Ok(ServerMessage::Ready { webhook_id, secret, subscribed_events, sandbox, waiting, canceled }) => {
                            print_ready(options, (&webhook_id, &secret, &subscribed_events, sandbox), *readied);
                            if waiting > 0 {
                                println!("{waiting} deliveries waited for this listener; they follow");
                            }
                            if canceled > 0 {
                                println!("{canceled} older deliveries were canceled (over the backlog limit); resend them from the delivery log");
                            }
                            *readied = true;
                            ready = true;
                        }
                        Ok(delivery @ ServerMessage::Delivery { .. }) => {
                            tokio::spawn(forward(client.clone(), options.forward_to.clone(), delivery, answers.clone()));
                        }
                        Err(e) => tracing::warn!(error = %e, "ignoring a message this CLI does not understand"),
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    if frame.as_ref().is_some_and(|f| u16::from(f.code) == CLOSE_REPLACED) {
                        return Err(ListenError::Replaced);
                    }
                    let reason = frame.map(|f| f.reason.to_string()).filter(|r| !r.is_empty());
                    let reason = reason.unwrap_or_else(|| "the server closed the connection".into());
                    return Ok(Some(Dropped::after(ready, reason)));
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(_)) => {}
            }
        }
    }
}

fn print_ready(options: &Options, (webhook_id, secret, events, sandbox): (&str, &str, &[String], bool), again: bool) {
    if again {
        println!("reconnected to {} (relay {webhook_id})", options.api);
        return;
    }
    let environment = if sandbox { "test" } else { "live" };
    println!(
        "Ready: relay subscription {webhook_id} ({environment} events: {})",
        events.join(", ")
    );
    println!("Webhook signing secret: {secret}");
    println!("  (the same every time for this API key: configure your app with it)");
    println!("Forwarding to {}", options.forward_to);
}

/// Posts one delivery to the local app, prints its line and sends the
/// answer back.
async fn forward(
    client: reqwest::Client,
    forward_to: url::Url,
    delivery: ServerMessage,
    answers: mpsc::UnboundedSender<ClientMessage>,
) {
    let ServerMessage::Delivery {
        request_id,
        event_id,
        event_type,
        attempt,
        headers,
        body,
        ..
    } = delivery
    else {
        return;
    };
    let mut request = client.post(forward_to);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let started = Instant::now();
    let answer = match request.body(body.into_bytes()).send().await {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut bytes = Vec::new();
            while bytes.len() < MAX_REPLY_BODY {
                match response.chunk().await {
                    Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            bytes.truncate(MAX_REPLY_BODY);
            ClientMessage::Answered {
                request_id,
                status,
                headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
                duration_ms: millis(started.elapsed()),
            }
        }
        Err(e) => ClientMessage::Failed {
            request_id,
            kind: if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "http"
            }
            .to_owned(),
            message: signhook_core::error_chain(&e),
            duration_ms: millis(started.elapsed()),
        },
    };
    let outcome = match &answer {
        ClientMessage::Answered { status, .. } => status.to_string(),
        ClientMessage::Failed { kind, .. } => format!("error ({kind})"),
    };
    let duration = match &answer {
        ClientMessage::Answered { duration_ms, .. } | ClientMessage::Failed { duration_ms, .. } => *duration_ms,
    };
    let time = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    println!("{time}  {event_type}  {event_id}  {outcome}  {duration} ms  (attempt {attempt})");
    // Closed only when the connection is gone; the server then records the
    // attempt as lost and retries it.
    let _ = answers.send(answer);
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `signhook listen --resend evt_…`: sends event `event_id` again to the
/// relay subscription of `options.key`, through `POST
/// /v1/events/{id}/resend`. Returns the new delivery's id; a running
/// `signhook listen` (or the next one) forwards it.
pub async fn resend(options: &Options, event_id: &str) -> Result<String, ListenError> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut relay = options.api.join("/v1/listen").map_err(|_| ListenError::BadApiUrl)?;
    if options.live {
        relay.query_pairs_mut().append_pair("live", "true");
    }
    let refused = |status: reqwest::StatusCode, body: &[u8]| ListenError::Refused {
        status: status.as_u16(),
        message: error_message(body),
    };
    let response = client.get(relay).bearer_auth(&options.key).send().await?;
    let (status, body) = (response.status(), response.bytes().await?);
    if !status.is_success() {
        return Err(refused(status, &body));
    }
    let relay: serde_json::Value = serde_json::from_slice(&body).map_err(|e| ListenError::Protocol(e.to_string()))?;
    let webhook_id = relay["webhook_id"]
        .as_str()
        .ok_or_else(|| ListenError::Protocol("no webhook_id in GET /v1/listen".into()))?;
    let mut url = options.api.join("/v1/events/").map_err(|_| ListenError::BadApiUrl)?;
    url.path_segments_mut()
        .map_err(|_| ListenError::BadApiUrl)?
        .pop_if_empty()
        .push(event_id)
        .push("resend");
    let response = client
        .post(url)
        .bearer_auth(&options.key)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::json!({ "webhook_id": webhook_id }).to_string())
        .send()
        .await?;
    let (status, body) = (response.status(), response.bytes().await?);
    if !status.is_success() {
        return Err(refused(status, &body));
    }
    let delivery: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ListenError::Protocol(e.to_string()))?;
    delivery["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ListenError::Protocol("no id in the resend's answer".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn reconnects_back_off_exponentially_with_jitter_up_to_a_cap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for attempt in 0..20 {
            let ceiling = (250u64 << attempt.min(16)).min(30_000);
            let delay = reconnect_delay(attempt, &mut rng).as_millis() as u64;
            assert!(
                (ceiling / 2..=ceiling).contains(&delay),
                "attempt {attempt}: {delay} ms"
            );
        }
    }

    #[test]
    fn the_socket_url_carries_the_filter_and_the_live_flag() {
        let mut options = Options {
            api: "https://hooks.example.com/base/".parse().expect("a URL"),
            key: "sk_live_x".into(),
            forward_to: "http://localhost:3000/hooks".parse().expect("a URL"),
            events: vec!["signer.*".into(), "signature_request.done".into()],
            live: true,
            forward_timeout: Duration::from_secs(10),
        };
        assert_eq!(
            socket_url(&options).expect("a URL").as_str(),
            "wss://hooks.example.com/v1/listen?events=signer.*%2Csignature_request.done&live=true"
        );
        options.api = "ftp://x".parse().expect("a URL");
        assert!(matches!(socket_url(&options), Err(ListenError::BadApiUrl)));
        assert!(!format!("{options:?}").contains("sk_live_x"));
    }
}
