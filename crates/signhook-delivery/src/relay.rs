//! The relay transport: attempts of `signhook listen`'s relay subscriptions
//! go over the CLI's WebSocket instead of an HTTPS POST.
//!
//! The engine does not know WebSockets. A [`RelayHub`] maps each relay
//! subscription whose socket this node holds to the task that drives that
//! socket (the server's `GET /v1/listen`); [`crate::sender::send`] hands
//! such a task a [`RelayRequest`] — the exact body and headers the POST
//! would carry — and waits, within the request timeout, for the CLI's
//! [`RelayReply`], which becomes the attempt like an HTTP answer would.

use signhook_core::delivery::ErrorKind;
use signhook_core::ids::{DeliveryId, EventId, SubscriptionId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How many requests may wait for one socket's task: beyond, an attempt
/// finds the relay busy (the lanes cap a subscription's sends well below).
const QUEUED_PER_SOCKET: usize = 64;

/// One attempt to make over a socket.
#[derive(Debug)]
pub struct RelayRequest {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// Its event.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: String,
    /// The attempt's number.
    pub attempt_number: u32,
    /// The request's headers, in order, exactly as the POST would send them.
    pub headers: Vec<(String, String)>,
    /// The request's body, exactly as the POST would send it (JSON, so
    /// UTF-8).
    pub body: String,
    /// Where the socket's task puts the CLI's answer. Dropped unanswered
    /// when the socket closes.
    pub reply: oneshot::Sender<RelayReply>,
}

/// What the CLI reports of one forward to the developer's app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayReply {
    /// The app answered.
    Answered {
        /// Its status code.
        status: u16,
        /// Its response headers.
        headers: Vec<(String, String)>,
        /// The start of its body (the CLI sends at most 4 KiB).
        body: String,
        /// How long the forward took, measured by the CLI.
        duration: Duration,
    },
    /// The CLI could not reach the app.
    Failed {
        /// What failed, in the kinds of the delivery log.
        kind: ErrorKind,
        /// A readable description.
        message: String,
        /// How long the CLI tried.
        duration: Duration,
    },
}

/// Why a request could not be handed to a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RelayUnavailable {
    /// No CLI's socket for this subscription is held by this node.
    #[error("no `signhook listen` is connected to this node for this relay")]
    NotConnected,
    /// The socket's queue is full.
    #[error("the `signhook listen` connection is busy")]
    Busy,
}

#[derive(Debug)]
struct Socket {
    serial: u64,
    requests: mpsc::Sender<RelayRequest>,
}

/// The relay sockets this node holds, by subscription. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RelayHub {
    sockets: Arc<Mutex<HashMap<SubscriptionId, Socket>>>,
    serials: Arc<AtomicU64>,
}

/// A socket's place in the hub: requests for its subscription arrive on
/// [`RelayAttachment::requests`] until it is dropped, or until another
/// socket for the same subscription attaches (then `requests` ends).
#[derive(Debug)]
pub struct RelayAttachment {
    hub: RelayHub,
    subscription: SubscriptionId,
    serial: u64,
    /// The attempts to make over this socket.
    pub requests: mpsc::Receiver<RelayRequest>,
}

impl Drop for RelayAttachment {
    fn drop(&mut self) {
        let mut sockets = self.hub.lock();
        if sockets.get(&self.subscription).is_some_and(|s| s.serial == self.serial) {
            sockets.remove(&self.subscription);
        }
    }
}

impl RelayHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SubscriptionId, Socket>> {
        self.sockets.lock().expect("never poisoned: no code panics holding it")
    }

    /// Makes this node's socket for `subscription` the one its attempts go
    /// over, replacing any other (whose requests then end).
    pub fn attach(&self, subscription: SubscriptionId) -> RelayAttachment {
        let (requests, receiver) = mpsc::channel(QUEUED_PER_SOCKET);
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(subscription.clone(), Socket { serial, requests });
        RelayAttachment {
            hub: self.clone(),
            subscription,
            serial,
            requests: receiver,
        }
    }

    /// Whether `attachment` is still the socket its subscription's
    /// attempts go over (no other socket replaced it).
    pub fn is_current(&self, attachment: &RelayAttachment) -> bool {
        self.lock()
            .get(&attachment.subscription)
            .is_some_and(|s| s.serial == attachment.serial)
    }

    /// Whether this node holds a socket for `subscription`.
    pub fn is_attached(&self, subscription: &SubscriptionId) -> bool {
        self.lock().contains_key(subscription)
    }

    /// Hands `request` to the socket of `subscription`.
    pub(crate) fn submit(&self, subscription: &SubscriptionId, request: RelayRequest) -> Result<(), RelayUnavailable> {
        let sender = self
            .lock()
            .get(subscription)
            .map(|s| s.requests.clone())
            .ok_or(RelayUnavailable::NotConnected)?;
        sender.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => RelayUnavailable::Busy,
            mpsc::error::TrySendError::Closed(_) => RelayUnavailable::NotConnected,
        })
    }
}
