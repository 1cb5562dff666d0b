//! Publishing through the API: events written with their deliveries in one
//! transaction (the transactional outbox), so a publish that was
//! acknowledged always produces its webhooks and one that failed produces
//! none. Many publishes share one transaction and one durable commit (the
//! group commit the engine's publisher gathers, `signhook_delivery::Publisher`).

use crate::claims::{ClaimedDelivery, ClaimedRow, Lease};
use crate::db::{DbRow, Sql, Tx};
use crate::events::{event_from_row, Event, Idempotency, NewEvent, EVENT_COLUMNS};
use crate::outbox::{self, key_taken, Candidates, NewDelivery};
use crate::subscriptions::Subscription;
use crate::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use signhook_core::event_types::Provenance;
use signhook_core::filter::Scope;
use signhook_core::ids::{DeliveryId, EventId, TenantId, WorkspaceId};
use signhook_core::time::to_millis;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What a batch publish did.
#[derive(Debug)]
pub struct PublishedBatch {
    /// Each event's result, in the order given.
    pub results: Vec<Result<Published>>,
    /// With a [`Lease`]: the new pending deliveries, claimed by that node
    /// and ready to send.
    pub claimed: Vec<ClaimedDelivery>,
}

/// The result of a publish.
#[derive(Debug, Clone)]
pub struct Published {
    /// The event.
    pub event: Event,
    /// How many deliveries were created and are pending.
    pub deliveries: usize,
    /// `true` when an earlier publish with the same idempotency key is
    /// returned instead of a new event.
    pub replayed: bool,
}

/// The result for an event whose `Idempotency-Key` an earlier event of the
/// same batch carries: a replay of it, or a mismatch.
fn earlier_in_batch(
    batch: &[NewEvent],
    results: &[Result<Published>],
    new: &NewEvent,
    idempotency: &Idempotency,
) -> Option<Result<Published>> {
    batch[..results.len()].iter().zip(results).find_map(|(other, result)| {
        let same_key = other.tenant_id == new.tenant_id
            && other.sandbox == new.sandbox
            && other.idempotency.as_ref().is_some_and(|i| i.key == idempotency.key);
        if !same_key {
            return None;
        }
        let same_request = other.idempotency.as_ref().map(|i| i.request_hash) == Some(idempotency.request_hash);
        Some(match result {
            Ok(published) if same_request => Ok(Published {
                replayed: true,
                ..published.clone()
            }),
            _ => Err(StoreError::IdempotencyMismatch),
        })
    })
}

/// The result for an event whose `Idempotency-Key` an event in the database
/// carries: a replay of it, or a mismatch. `None` when the key is new.
async fn earlier_in_database(
    tx: &mut Tx<'_>,
    new: &NewEvent,
    idempotency: &Idempotency,
) -> Result<Option<Result<Published>>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS}, request_hash FROM events \
         WHERE tenant_id = $1 AND sandbox = $2 AND idempotency_key = $3"
    );
    let Some(row) = tx
        .fetch_optional(
            Sql::new(sql)
                .bind(&new.tenant_id)
                .bind(new.sandbox)
                .bind(&idempotency.key),
        )
        .await?
    else {
        return Ok(None);
    };
    if row.opt_bytes("request_hash")?.as_deref() != Some(idempotency.request_hash.as_slice()) {
        return Ok(Some(Err(StoreError::IdempotencyMismatch)));
    }
    let earlier = event_from_row(&row)?;
    let deliveries = tx
        .fetch_one(
            Sql::new("SELECT COUNT(*) AS n FROM deliveries WHERE event_id = $1 AND status <> 'canceled'")
                .bind(&earlier.id),
        )
        .await?
        .int("n")?;
    Ok(Some(Ok(Published {
        event: earlier,
        deliveries: deliveries as usize,
        replayed: true,
    })))
}

/// One delivery a batch will write: to the `k`th candidate of the
/// `group`th tenant and environment, of the event at `event` in the results.
struct Planned {
    id: DeliveryId,
    event: usize,
    group: usize,
    k: usize,
    /// The key it is ordered by, if its subscription orders them.
    ordering_key: Option<String>,
}

/// What a batch will write, worked out before anything is.
#[derive(Default)]
struct Plan {
    /// Each event's result, in the order given.
    results: Vec<Result<Published>>,
    /// The candidates of each tenant and environment in the batch.
    candidates: Vec<((TenantId, bool), Candidates)>,
    /// The deliveries of the new events.
    planned: Vec<Planned>,
}

impl Store {
    /// Publishes an event: writes it and a delivery for every matching
    /// subscription, in one transaction.
    pub async fn publish_event(&self, new: NewEvent, now: DateTime<Utc>) -> Result<Published> {
        let mut batch = self.publish_events(vec![new], now, None).await;
        batch.results.pop().expect("one result per event")
    }

    /// Publishes several events in one transaction — one durable commit
    /// for all (group commit) — and returns each one's result, in order.
    /// An `Idempotency-Key` already used (in the database, or earlier in the
    /// batch) replays that event or is refused as for a single publish. If
    /// the shared transaction fails, each event is retried alone, so one
    /// event's failure (a key raced by another node) is its own.
    ///
    /// With a `lease`, the new pending deliveries are written already
    /// claimed by that node, as a claim would leave them, and returned
    /// ready to send: the publishing node sends them at once, without a
    /// claim round trip. Should it die first, the lease ends and any node
    /// claims them.
    pub async fn publish_events(
        &self,
        batch: Vec<NewEvent>,
        now: DateTime<Utc>,
        lease: Option<&Lease>,
    ) -> PublishedBatch {
        if batch.len() > 1 {
            match self.publish_together(&batch, now, lease).await {
                Ok(published) => return published,
                Err(e) => {
                    tracing::debug!(error = %e, events = batch.len(), "group commit failed; publishing one by one")
                }
            }
        }
        let mut all = PublishedBatch {
            results: Vec::with_capacity(batch.len()),
            claimed: Vec::new(),
        };
        for new in batch {
            let one = std::slice::from_ref(&new);
            match self.publish_together(one, now, lease).await {
                Ok(mut published) => {
                    all.results.push(published.results.pop().expect("one result per event"));
                    all.claimed.append(&mut published.claimed);
                }
                Err(e) => all.results.push(Err(e)),
            }
        }
        all
    }

    /// One transaction for the whole batch. `Err` when the transaction
    /// failed (nothing was written); otherwise one result per event, where
    /// an idempotency mismatch is that event's error alone.
    async fn publish_together(
        &self,
        batch: &[NewEvent],
        now: DateTime<Utc>,
        lease: Option<&Lease>,
    ) -> Result<PublishedBatch> {
        let mut tx = self.begin().await?;
        let Plan {
            results,
            candidates,
            planned,
        } = self.plan(&mut tx, batch, now).await?;
        let new_event = |i: usize| &results[i].as_ref().expect("a new event").event;
        let subscription = |p: &Planned| &candidates[p.group].1[p.k];
        // The new events: neither replayed nor refused.
        let events: Vec<(&Event, Option<&Idempotency>)> = results
            .iter()
            .zip(batch)
            .filter_map(|(result, new)| match result {
                Ok(published) if !published.replayed => Some((&published.event, new.idempotency.as_ref())),
                _ => None,
            })
            .collect();
        outbox::write_events(&mut tx, &events).await.map_err(key_taken)?;
        // A relay's deliveries are never taken at publish: only the node
        // holding its socket may claim them (see `relays`).
        let (relayed, direct): (Vec<&Planned>, Vec<&Planned>) =
            planned.iter().partition(|p| subscription(p).is_relay());
        let mut claim_heads = None;
        for (group, lease) in [(direct, lease), (relayed, None)] {
            let deliveries: Vec<NewDelivery<'_>> = group
                .into_iter()
                .map(|p| NewDelivery {
                    id: p.id.clone(),
                    event: new_event(p.event),
                    subscription_id: &subscription(p).id,
                    enabled: subscription(p).enabled,
                    ordering_key: p.ordering_key.clone(),
                })
                .collect();
            let written = outbox::write_deliveries(&mut tx, &deliveries, lease, now)
                .await
                .map_err(key_taken)?;
            // Only the direct group has a lease to claim heads under.
            claim_heads = claim_heads.or(written.claim_heads);
        }
        let heads = self.commit_claiming(tx, claim_heads).await.map_err(key_taken)?;
        let Some(lease) = lease else {
            return Ok(PublishedBatch {
                results,
                claimed: Vec::new(),
            });
        };
        // The keys' heads the batch claimed are its own deliveries, sent
        // from what it holds; an earlier delivery of a key is read back.
        let written: HashSet<&DeliveryId> = planned.iter().map(|p| &p.id).collect();
        let (own_heads, earlier_heads): (Vec<ClaimedRow>, Vec<ClaimedRow>) =
            heads.into_iter().partition(|head| written.contains(head.id()));
        let own_heads: HashSet<DeliveryId> = own_heads.into_iter().map(ClaimedRow::into_id).collect();
        let mut claimed = claimed_at_publish(&planned, &results, &candidates, &own_heads, lease, now);
        claimed.extend(self.attach_claims(earlier_heads, to_millis(lease.until), now).await);
        Ok(PublishedBatch { results, claimed })
    }

    /// Works out what a batch writes: each event's result (a replay, a
    /// mismatch, or a new event) and the deliveries of the new ones.
    async fn plan(&self, tx: &mut Tx<'_>, batch: &[NewEvent], now: DateTime<Utc>) -> Result<Plan> {
        let mut plan = Plan::default();
        for new in batch {
            if let Some(idempotency) = &new.idempotency {
                let earlier = match earlier_in_batch(batch, &plan.results, new, idempotency) {
                    Some(earlier) => Some(earlier),
                    None => earlier_in_database(tx, new, idempotency).await?,
                };
                if let Some(earlier) = earlier {
                    plan.results.push(earlier);
                    continue;
                }
            }
            let event = Event {
                id: EventId::generate(),
                tenant_id: new.tenant_id.clone(),
                sandbox: new.sandbox,
                event_type: new.event_type.clone(),
                scope: new.scope,
                workspace_id: new.workspace_id.clone(),
                created_at: now,
                data: new.data.clone(),
                origin: Provenance::Api,
                ordering_key: new.ordering_key.clone(),
            };
            // Subscriptions are looked up once per tenant and environment in
            // the batch, not once per event (and on SQLite kept between
            // batches).
            let key = (new.tenant_id.clone(), new.sandbox);
            let group = match plan.candidates.iter().position(|(k, _)| *k == key) {
                Some(group) => group,
                None => {
                    let loaded = self
                        .candidates
                        .load(tx, &new.tenant_id, new.sandbox, &self.keys)
                        .await?;
                    plan.candidates.push((key, loaded));
                    plan.candidates.len() - 1
                }
            };
            let mut pending = 0;
            let mut request = None;
            for (k, sub) in plan.candidates[group].1.iter().enumerate() {
                if outbox::matches(sub, &event) {
                    let id = DeliveryId::generate();
                    let ordering_key = outbox::ordering_key_of(sub, &event, &mut request);
                    let event = plan.results.len();
                    plan.planned.push(Planned {
                        id,
                        event,
                        group,
                        k,
                        ordering_key,
                    });
                    pending += usize::from(sub.enabled);
                }
            }
            plan.results.push(Ok(Published {
                event,
                deliveries: pending,
                replayed: false,
            }));
        }
        Ok(plan)
    }

    /// Writes an event meant for one subscription only (a `webhook.test`),
    /// with its delivery, in one transaction. Returns the delivery's id.
    pub async fn publish_to_subscription(
        &self,
        subscription: &Subscription,
        event_type: &str,
        data: String,
        workspace_id: WorkspaceId,
        now: DateTime<Utc>,
    ) -> Result<(Event, DeliveryId)> {
        let event = Event {
            id: EventId::generate(),
            tenant_id: subscription.tenant_id.clone(),
            sandbox: subscription.filter.sandbox,
            event_type: event_type.to_owned(),
            scope: Scope::PublicApi,
            workspace_id,
            created_at: now,
            data,
            origin: Provenance::System,
            ordering_key: None,
        };
        let delivery = DeliveryId::generate();
        let mut tx = self.begin().await?;
        outbox::write_events(&mut tx, &[(&event, None)]).await?;
        let new = NewDelivery {
            id: delivery.clone(),
            event: &event,
            subscription_id: &subscription.id,
            enabled: true,
            // A test event is never ordered: it must not wait behind, or
            // hold up, the subscription's real deliveries.
            ordering_key: None,
        };
        outbox::write_deliveries(&mut tx, &[new], None, now).await?;
        tx.commit().await?;
        Ok((event, delivery))
    }
}

/// The pending deliveries a batch wrote already claimed under `lease`, as
/// the dispatcher sends them: one shared copy of each event and
/// subscription, however many deliveries a fan-out makes. Of the ordered
/// ones only their keys' new `heads` are among them: the rest wait for
/// their key, held by an earlier delivery, and are claimed by whoever
/// records the one before (see [`crate::ordering`]).
fn claimed_at_publish(
    planned: &[Planned],
    results: &[Result<Published>],
    candidates: &[((TenantId, bool), Candidates)],
    heads: &HashSet<DeliveryId>,
    lease: &Lease,
    now: DateTime<Utc>,
) -> Vec<ClaimedDelivery> {
    let mut events: HashMap<usize, Arc<Event>> = HashMap::new();
    planned
        .iter()
        .filter(|p| {
            let sub = &candidates[p.group].1[p.k];
            sub.enabled && !sub.is_relay() && (p.ordering_key.is_none() || heads.contains(&p.id))
        })
        .map(|p| ClaimedDelivery {
            delivery_id: p.id.clone(),
            attempt_number: 1,
            schedule_attempt: 1,
            lease_until: to_millis(lease.until),
            due_at: now,
            event: events
                .entry(p.event)
                .or_insert_with(|| Arc::new(results[p.event].as_ref().expect("a new event").event.clone()))
                .clone(),
            subscription: candidates[p.group].1[p.k].clone(),
            ordering_key: p.ordering_key.clone(),
        })
        .collect()
}
