//! The messages of `GET /v1/listen`, one JSON object per WebSocket text
//! frame, told apart by `type`.
//!
//! The server opens with [`ServerMessage::Ready`], then sends a
//! [`ServerMessage::Delivery`] for each attempt of the relay subscription's
//! deliveries; the CLI answers each, in any order, with
//! [`ClientMessage::Answered`] or [`ClientMessage::Failed`] carrying the
//! same `request_id`. The server pings every few seconds; a CLI that stops
//! answering pings is dropped. A socket another `signhook listen` of the
//! same key replaces is closed with [`CLOSE_REPLACED`].

use serde::{Deserialize, Serialize};

/// The WebSocket close code the server sends when another `signhook
/// listen` of the same key took the relay over: the replaced CLI stops
/// rather than take it back.
pub const CLOSE_REPLACED: u16 = 4000;

/// The most bytes of the app's response body the CLI sends back.
pub const MAX_REPLY_BODY: usize = 4096;

/// From the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The relay subscription is ready and held by this socket.
    Ready {
        /// The relay subscription (`wh_…`).
        webhook_id: String,
        /// Its signing secret (`whsec_…`), the same for the API key every
        /// time: the local app verifies with it.
        secret: String,
        /// What it receives.
        subscribed_events: Vec<String>,
        /// Whether it receives sandbox (test) events.
        sandbox: bool,
        /// Pending deliveries waiting for the CLI, sent now.
        waiting: u64,
        /// Pending deliveries canceled because more than the backlog limit
        /// waited (they stay in the delivery log and can be resent).
        canceled: u64,
    },
    /// One attempt: POST `body` with `headers` to the local app.
    Delivery {
        /// Echoed in the answer.
        request_id: u64,
        /// The delivery (`dlv_…`), for `GET /v1/deliveries/{id}`.
        delivery_id: String,
        /// The event (`evt_…`), also in `webhook-id`.
        event_id: String,
        /// The event's type.
        event_type: String,
        /// The attempt's number (1 for the first).
        attempt: u32,
        /// The request's headers in order, exactly as an HTTPS POST would
        /// carry them (`webhook-id`, `webhook-timestamp`,
        /// `webhook-signature`, …).
        headers: Vec<(String, String)>,
        /// The request's body, byte for byte.
        body: String,
    },
}

/// From the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The local app answered.
    Answered {
        /// The delivery message's `request_id`.
        request_id: u64,
        /// The app's status code.
        status: u16,
        /// The app's response headers.
        headers: Vec<(String, String)>,
        /// The first [`MAX_REPLY_BODY`] bytes of its body, as UTF-8 (lossy).
        body: String,
        /// How long the app took, in milliseconds.
        duration_ms: u64,
    },
    /// The local app could not be reached.
    Failed {
        /// The delivery message's `request_id`.
        request_id: u64,
        /// `connect`, `timeout` or `http`, as the delivery log names them.
        kind: String,
        /// What happened.
        message: String,
        /// How long the CLI tried, in milliseconds.
        duration_ms: u64,
    },
}

impl ClientMessage {
    /// The request it answers.
    pub fn request_id(&self) -> u64 {
        match self {
            ClientMessage::Answered { request_id, .. } | ClientMessage::Failed { request_id, .. } => *request_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_by_type() {
        let answered = ClientMessage::Answered {
            request_id: 7,
            status: 202,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: "ok".into(),
            duration_ms: 3,
        };
        let text = serde_json::to_string(&answered).expect("serializes");
        assert!(text.starts_with(r#"{"type":"answered","request_id":7"#), "{text}");
        assert_eq!(serde_json::from_str::<ClientMessage>(&text).expect("parses"), answered);
        let delivery: ServerMessage = serde_json::from_str(
            r#"{"type":"delivery","request_id":1,"delivery_id":"dlv_1","event_id":"evt_1","event_type":"signer.done",
                "attempt":2,"headers":[["webhook-id","evt_1"]],"body":"{\"a\":1}"}"#,
        )
        .expect("parses");
        assert!(matches!(delivery, ServerMessage::Delivery { attempt: 2, ref body, .. } if body == r#"{"a":1}"#));
    }
}
