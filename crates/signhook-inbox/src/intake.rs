//! Group commit of receipts, as the server's publisher does for
//! `POST /v1/events` (`signhook_delivery::publisher`): requests that
//! arrive while the previous batch is being committed are written
//! together, in one transaction and so one `fsync`. Nothing waits on
//! purpose: a request that finds the writer idle is committed alone at
//! once. Each sender gets its 2xx only after the commit that holds its
//! request, so a 2xx means "on disk".
//!
//! The stored requests are claimed for the forwarder in the same
//! transaction and handed to its dispatcher, so the forward starts right
//! after the commit.

use crate::forward::{Forward, ForwardQueue};
use crate::NODE_ID;
use signhook_core::error_chain;
use signhook_delivery::Handoff;
use signhook_store::inbox::{ClaimedRequest, InboxStore, NewRequest, Received};
use tokio::sync::{mpsc, oneshot};

/// The most requests committed together.
pub const MAX_BATCH: usize = 256;

/// Whether a receipt was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// Stored: it will be forwarded.
    Stored,
    /// Its event id was already received: not forwarded again.
    Duplicate,
}

/// Why a receipt got no answer.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The database failed; nothing was stored (the cause is logged).
    #[error("storing the request failed: {0}")]
    Failed(String),
    /// The intake has stopped (shutting down).
    #[error("the inbox is shutting down")]
    Stopped,
}

type Reply = oneshot::Sender<Result<Receipt, String>>;

/// A handle to the group-commit task. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    queue: mpsc::Sender<(NewRequest, Reply)>,
}

impl Intake {
    /// Starts the task that commits batches to `store` and hands what it
    /// claimed to the dispatcher behind `handoff`. It stops when every
    /// handle is dropped, after answering what it holds.
    pub fn start(store: InboxStore, queue: ForwardQueue, handoff: Handoff<Forward>) -> Self {
        let (sender, mut incoming) = mpsc::channel::<(NewRequest, Reply)>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while incoming.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (requests, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let now = chrono::Utc::now();
                let lease = handoff.lease(now);
                match store.receive(&requests, Some(&lease)).await {
                    Ok(results) => {
                        let mut claimed = Vec::new();
                        for (reply, result) in replies.into_iter().zip(results) {
                            let receipt = match result {
                                Received::Stored(claim) => {
                                    claimed.extend(claim);
                                    Receipt::Stored
                                }
                                Received::Duplicate => Receipt::Duplicate,
                            };
                            // The sender may have gone; it is stored all the same.
                            let _ = reply.send(Ok(receipt));
                        }
                        hand_over(&store, &queue, &handoff, claimed).await;
                    }
                    Err(e) => {
                        let message = error_chain(&e);
                        tracing::error!(error = %message, batch = replies.len(), "storing received requests failed");
                        for reply in replies {
                            let _ = reply.send(Err(message.clone()));
                        }
                    }
                }
            }
        });
        Self { queue: sender }
    }

    /// Stores one request, committed with whatever else arrives meanwhile.
    pub async fn receive(&self, request: NewRequest) -> Result<Receipt, IntakeError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((request, reply))
            .await
            .map_err(|_| IntakeError::Stopped)?;
        answer
            .await
            .map_err(|_| IntakeError::Stopped)?
            .map_err(IntakeError::Failed)
    }
}

/// Gives the claimed requests to the dispatcher; if it has stopped, makes
/// them due again for the next run.
async fn hand_over(store: &InboxStore, queue: &ForwardQueue, handoff: &Handoff<Forward>, claimed: Vec<ClaimedRequest>) {
    let mut unsent: Vec<ClaimedRequest> = Vec::new();
    let forwards: Vec<Forward> = claimed
        .into_iter()
        .filter_map(|request| queue.attach(request).map_err(|orphan| unsent.push(*orphan)).ok())
        .collect();
    if let Err(refused) = handoff.send(forwards) {
        unsent.extend(refused.into_iter().map(|forward| forward.request));
    }
    if unsent.is_empty() {
        return;
    }
    let held: Vec<_> = unsent.iter().map(ClaimedRequest::held).collect();
    if let Err(e) = store.release(NODE_ID, &held, chrono::Utc::now()).await {
        tracing::warn!(error = %error_chain(&e), "could not give back forwards; their leases will end");
    }
}
