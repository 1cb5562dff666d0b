//! Group commit for `POST /v1/events`: publishes that arrive while the
//! previous batch is being committed are written together, in one
//! transaction and so one `fsync`, instead of queueing for one each.
//!
//! Nothing waits on purpose: a publish that finds the writer idle is
//! committed alone at once; under load, batches form by themselves from what
//! arrived during the last commit. Each caller still gets its own answer only
//! after the commit that holds its event, so a 2xx keeps meaning "on disk".
//!
//! The deliveries are written already claimed by this node and handed to
//! its dispatcher ([`Handoff`]), so the send starts right after the commit
//! instead of after a wake-up and a claim transaction: the engine's intake.

use crate::dispatcher::Handoff;
use signhook_core::error_chain;
use signhook_store::claims::ClaimedDelivery;
use signhook_store::events::NewEvent;
use signhook_store::publish::Published;
use signhook_store::{Store, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Why a publish got no result.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The store refused or failed it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The publisher task has stopped (the server is shutting down).
    #[error("the publisher task has stopped")]
    Stopped,
}

/// The most events committed together.
pub const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Published, StoreError>>;

/// A handle to the group-commit task. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    queue: mpsc::Sender<(NewEvent, Reply)>,
}

impl Publisher {
    /// Starts the task that commits batches to `store`. It stops when every
    /// handle is dropped, after answering what it holds.
    ///
    /// The deliveries a batch creates are claimed for this node in the same
    /// transaction and handed to its dispatcher, which sends them at once.
    pub fn start(store: Store, clock: std::sync::Arc<dyn signhook_core::time::Clock>, handoff: Handoff) -> Self {
        let (queue, mut incoming) = mpsc::channel::<(NewEvent, Reply)>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while incoming.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (events, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let now = clock.now();
                let published = store.publish_events(events, now, Some(&handoff.lease(now))).await;
                if let Err(unsent) = handoff.send(published.claimed) {
                    // The dispatcher has stopped (shutting down): make them
                    // due again for whichever node runs next.
                    let claims: Vec<_> = unsent.iter().map(ClaimedDelivery::held).collect();
                    if let Err(e) = store.release_deliveries(handoff.node_id(), &claims, clock.now()).await {
                        tracing::warn!(error = %error_chain(&e), "could not release deliveries; their leases will end");
                    }
                }
                for (reply, result) in replies.into_iter().zip(published.results) {
                    // The caller may have gone (client disconnected); the
                    // event is committed all the same.
                    let _ = reply.send(result);
                }
            }
        });
        Self { queue }
    }

    /// Publishes one event, committed together with whatever else is
    /// being published at the same moment.
    pub async fn publish(&self, event: NewEvent) -> Result<Published, PublishError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((event, reply))
            .await
            .map_err(|_| PublishError::Stopped)?;
        Ok(answer.await.map_err(|_| PublishError::Stopped)??)
    }
}
