//! The store on a real SQLite file, with instants passed in: leases,
//! releases and the outbox checked without waiting on any clock.

use chrono::{DateTime, Duration, TimeZone, Utc};
use signhook_core::delivery::DeliveryStatus;
use signhook_core::endpoint::{CustomHeaders, SignatureScheme, WebhookUrl};
use signhook_core::filter::{EventFilter, Scope, ScopeFilter, SubscriptionFilter, WorkspaceFilter};
use signhook_core::ids::AttemptId;
use signhook_core::ordering::Ordering;
use signhook_core::retry::Decision;
use signhook_store::deliveries::{Attempt, AttemptRecord};
use signhook_store::events::NewEvent;
use signhook_store::subscriptions::{NewSubscription, SubscriptionChanges};
use signhook_store::tenants::CreatedTenant;
use signhook_store::Store;
use signhook_testkit::{on_both_backends, Backend, PgServer};
use signhook_verify::WebhookSecret;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

/// A fresh, migrated store; the guard keeps a SQLite file's directory alive.
async fn store(backend: Backend) -> (Option<tempfile::TempDir>, Store) {
    let (dir, store) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_sqlite(
                dir.path(),
                std::sync::Arc::new(signhook_store::sealing::Keyring::generate()),
            )
            .await
            .unwrap();
            (Some(dir), store)
        }
        Backend::Postgres => {
            let url = PgServer::shared().create_database().await;
            (
                None,
                Store::open_postgres(&url, std::sync::Arc::new(signhook_store::sealing::Keyring::generate()))
                    .await
                    .unwrap(),
            )
        }
    };
    store.migrate().await.unwrap();
    (dir, store)
}

async fn tenant_with_subscription(store: &Store) -> CreatedTenant {
    let tenant = store.create_tenant("Acme", t0()).await.unwrap();
    add_subscription(store, &tenant).await;
    tenant
}

/// A live subscription of `tenant` to everything.
async fn add_subscription(store: &Store, tenant: &CreatedTenant) -> signhook_store::subscriptions::Subscription {
    add_subscription_ordered(store, tenant, Ordering::None).await
}

/// A live subscription of `tenant` to everything, its deliveries ordered
/// by `ordering`.
async fn add_subscription_ordered(
    store: &Store,
    tenant: &CreatedTenant,
    ordering: Ordering,
) -> signhook_store::subscriptions::Subscription {
    store
        .create_subscription(
            NewSubscription {
                tenant_id: tenant.tenant_id.clone(),
                url: WebhookUrl::parse("https://crm.example.com/", false).unwrap(),
                description: String::new(),
                enabled: true,
                auto_retry: true,
                filter: SubscriptionFilter {
                    sandbox: false,
                    events: EventFilter::all(),
                    scopes: ScopeFilter::all(),
                    workspaces: WorkspaceFilter::all(),
                },
                headers: CustomHeaders::default(),
                signature_scheme: SignatureScheme::Standard,
                rate_limit_per_second: None,
                ordering,
                ordering_on_failure: Default::default(),
                secret: WebhookSecret::from_bytes(&[1; 32]),
            },
            t0(),
        )
        .await
        .unwrap()
}

async fn publish(store: &Store, tenant: &CreatedTenant, at: DateTime<Utc>) {
    assert_eq!(publish_counting(store, tenant, at).await, 1);
}

/// Publishes one event; how many pending deliveries it made.
async fn publish_counting(store: &Store, tenant: &CreatedTenant, at: DateTime<Utc>) -> usize {
    store
        .publish_event(
            NewEvent {
                tenant_id: tenant.tenant_id.clone(),
                sandbox: false,
                event_type: "signer.done".into(),
                scope: Scope::PublicApi,
                workspace_id: tenant.default_workspace_id.clone(),
                data: "{}".into(),
                idempotency: None,
                ordering_key: None,
            },
            at,
        )
        .await
        .unwrap()
        .deliveries
}

fn succeeded(claim: &signhook_store::claims::ClaimedDelivery, at: DateTime<Utc>, node: &str) -> AttemptRecord {
    AttemptRecord {
        delivery_id: claim.delivery_id.clone(),
        lease_until: claim.lease_until,
        attempt: Attempt {
            id: AttemptId::generate(),
            attempt_number: claim.attempt_number,
            started_at: at,
            duration_ms: 3,
            status_code: Some(200),
            response_body: Some("ok".into()),
            error_kind: None,
            error_message: None,
            node_id: node.into(),
            location: None,
            scheduled_at: Some(claim.due_at),
            request_headers: vec![("webhook-id".into(), claim.event.id.to_string())],
        },
        decision: Decision::Succeeded,
        decided_at: at,
        subscription_id: claim.subscription.id.clone(),
        event_type: claim.event.event_type.clone(),
        ordered: claim.ordering_key.is_some(),
    }
}

on_both_backends! {
async fn a_lease_holds_until_it_ends_then_the_delivery_is_claimable_again(backend: Backend) {
    let (_dir, store) = store(backend).await;
    let tenant = tenant_with_subscription(&store).await;
    publish(&store, &tenant, t0()).await;
    let lease = Duration::seconds(45);

    let first = store
        .claim_due_deliveries("node_a", t0(), t0() + lease, 10, 100, &[])
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt_number, 1);
    // While the lease holds, nobody else gets it.
    let during = t0() + Duration::seconds(44);
    assert!(store
        .claim_due_deliveries("node_b", during, during + lease, 10, 100, &[])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_due_at("node-a", &[]).await.unwrap(), Some(t0() + lease));
    // node_a dies; when its lease ends, node_b takes over.
    let after = t0() + lease;
    let second = store
        .claim_due_deliveries("node_b", after, after + lease, 10, 100, &[])
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].delivery_id, first[0].delivery_id);

    // A late result under the expired lease is recorded as an attempt but
    // does not change the delivery; node_b's result does.
    store
        .record_attempts("node_a", &[succeeded(&first[0], during, "node_a")], during, during + Duration::minutes(1))
        .await
        .unwrap();
    let (delivery, attempts) = store
        .get_delivery(&tenant.tenant_id, false, &first[0].delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Pending);
    assert_eq!(attempts.len(), 1);
    store
        .record_attempts("node_b", &[succeeded(&second[0], after, "node_b")], after, after + Duration::minutes(1))
        .await
        .unwrap();
    let (delivery, attempts) = store
        .get_delivery(&tenant.tenant_id, false, &first[0].delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Succeeded);
    assert_eq!(
        attempts.iter().map(|a| a.node_id.as_str()).collect::<Vec<_>>(),
        ["node_a", "node_b"]
    );
    assert_eq!(store.next_due_at("node-a", &[]).await.unwrap(), None);
}

async fn a_released_claim_is_due_at_once(backend: Backend) {
    let (_dir, store) = store(backend).await;
    let tenant = tenant_with_subscription(&store).await;
    publish(&store, &tenant, t0()).await;
    let claims = store
        .claim_due_deliveries("node_a", t0(), t0() + Duration::hours(1), 10, 100, &[])
        .await
        .unwrap();
    let released: Vec<_> = claims.iter().map(signhook_store::claims::ClaimedDelivery::held).collect();
    store.release_deliveries("node_a", &released, t0()).await.unwrap();
    let again = store
        .claim_due_deliveries("node_b", t0(), t0() + Duration::hours(1), 10, 100, &[])
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt_number, 1, "a release is not an attempt");
}

async fn claims_come_oldest_due_first_in_batches(backend: Backend) {
    let (_dir, store) = store(backend).await;
    let tenant = tenant_with_subscription(&store).await;
    for i in 0..5 {
        publish(&store, &tenant, t0() + Duration::milliseconds(i)).await;
    }
    let now = t0() + Duration::seconds(1);
    let batch = store
        .claim_due_deliveries("n", now, now + Duration::minutes(1), 3, 100, &[])
        .await
        .unwrap();
    assert_eq!(batch.len(), 3);
    let created: Vec<_> = batch.iter().map(|c| c.event.created_at).collect();
    let mut sorted = created.clone();
    sorted.sort();
    assert_eq!(created, sorted);
    let rest = store
        .claim_due_deliveries("n", now, now + Duration::minutes(1), 3, 100, &[])
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
}

async fn a_publish_goes_to_the_subscriptions_as_they_are_when_it_is_made(backend: Backend) {
    let (_dir, store) = store(backend).await;
    let tenant = tenant_with_subscription(&store).await;
    assert_eq!(publish_counting(&store, &tenant, t0()).await, 1);
    let second = add_subscription(&store, &tenant).await;
    assert_eq!(publish_counting(&store, &tenant, t0()).await, 2);
    let paused = SubscriptionChanges {
        enabled: Some(false),
        ..SubscriptionChanges::default()
    };
    store
        .update_subscription(&tenant.tenant_id, false, &second.id, paused, t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(publish_counting(&store, &tenant, t0()).await, 1);
    assert!(store
        .delete_subscription(&tenant.tenant_id, false, &second.id, t0())
        .await
        .unwrap());
    assert_eq!(publish_counting(&store, &tenant, t0()).await, 1);
    let third = add_subscription(&store, &tenant).await;
    assert_eq!(publish_counting(&store, &tenant, t0()).await, 2);
    let claims = store
        .claim_due_deliveries("node-a", t0(), t0() + Duration::minutes(1), 100, 100, &[])
        .await
        .unwrap();
    assert!(claims.iter().all(|c| c.subscription.id != second.id));
    assert!(claims.iter().any(|c| c.subscription.id == third.id));
}

async fn a_publish_that_fails_leaves_nothing_behind(backend: Backend) {
    let (_dir, store) = store(backend).await;
    let tenant = tenant_with_subscription(&store).await;
    // A workspace that does not exist breaks the event's foreign key.
    let result = store
        .publish_event(
            NewEvent {
                tenant_id: tenant.tenant_id.clone(),
                sandbox: false,
                event_type: "signer.done".into(),
                scope: Scope::PublicApi,
                workspace_id: signhook_core::ids::WorkspaceId::generate(),
                data: "{}".into(),
                idempotency: None,
                ordering_key: None,
            },
            t0(),
        )
        .await;
    assert!(result.is_err());
    assert!(store
        .list_events(&tenant.tenant_id, false, None, None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(store.next_due_at("node-a", &[]).await.unwrap(), None);
}

async fn keys_authenticate_only_as_themselves(backend: Backend) {
    let (_dir, store) = store(backend).await;
    let tenant = store.create_tenant("Acme", t0()).await.unwrap();
    let live = store.authenticate(&tenant.live_key).await.unwrap().unwrap();
    assert_eq!(live.tenant_id, tenant.tenant_id);
    assert!(!live.environment.is_sandbox());
    assert!(store
        .authenticate(&tenant.test_key)
        .await
        .unwrap()
        .unwrap()
        .environment
        .is_sandbox());
    assert!(store.authenticate("sk_live_nope").await.unwrap().is_none());
    let mut tampered = tenant.live_key.clone();
    tampered.pop();
    assert!(store.authenticate(&tampered).await.unwrap().is_none());
}
}

#[tokio::test]
async fn both_backends_have_the_same_tables_and_columns() {
    let (_dir, sqlite) = store(Backend::Sqlite).await;
    let (_, postgres) = store(Backend::Postgres).await;
    let sqlite_schema = sqlite.schema().await.unwrap();
    assert!(sqlite_schema.len() > 40, "{sqlite_schema:?}");
    assert_eq!(
        sqlite_schema,
        postgres.schema().await.unwrap(),
        "the migrations of the two backends differ"
    );
}

#[tokio::test]
async fn a_publish_on_postgres_wakes_every_listening_node() {
    let (_, store) = store(Backend::Postgres).await;
    let tenant = tenant_with_subscription(&store).await;
    let mut listener = store
        .work_listener()
        .await
        .unwrap()
        .expect("PostgreSQL announces publishes");
    publish(&store, &tenant, t0()).await;
    tokio::time::timeout(std::time::Duration::from_secs(60), listener.recv())
        .await
        .expect("the notification arrives")
        .unwrap();
    let (_dir, sqlite) = self::store(Backend::Sqlite).await;
    assert!(
        sqlite.work_listener().await.unwrap().is_none(),
        "SQLite has no other nodes to hear from"
    );
}

/// A result for `claim`: failed, dead-lettered.
fn dead_lettered(claim: &signhook_store::claims::ClaimedDelivery, at: DateTime<Utc>, node: &str) -> AttemptRecord {
    let mut record = succeeded(claim, at, node);
    record.attempt.status_code = Some(500);
    record.attempt.error_kind = Some(signhook_core::delivery::ErrorKind::Http);
    record.decision = Decision::DeadLetter {
        reason: "retry schedule exhausted",
    };
    record
}

/// Publishes `n` events at `at` and dead-letters every delivery.
async fn dead_letters(store: &Store, tenant: &CreatedTenant, n: usize, at: DateTime<Utc>) {
    for _ in 0..n {
        publish(store, tenant, at).await;
    }
    let claims = store
        .claim_due_deliveries("n", at, at + Duration::minutes(1), 100, 100, &[])
        .await
        .unwrap();
    let records: Vec<_> = claims.iter().map(|c| dead_lettered(c, at, "n")).collect();
    store
        .record_attempts("n", &records, at, at + Duration::minutes(1))
        .await
        .unwrap();
}

async fn event_types(store: &Store, tenant: &CreatedTenant) -> Vec<String> {
    let page = store
        .list_events(&tenant.tenant_id, false, None, None, 100)
        .await
        .unwrap();
    page.items.into_iter().map(|e| e.event_type).collect()
}

on_both_backends! {
async fn the_disable_policy_warns_once_then_disables_after_the_grace(backend: Backend) {
    use signhook_core::policy::DisablePolicy;
    let (_dir, store) = store(backend).await;
    let tenant = tenant_with_subscription(&store).await;
    dead_letters(&store, &tenant, 10, t0()).await;
    let policy = DisablePolicy::default();

    let early = store.sweep_failing_subscriptions(&policy, t0() + Duration::hours(23)).await.unwrap();
    assert!(early.warned.is_empty() && early.disabled.is_empty());
    // Two nodes sweeping at the same moment: one warning between them.
    let at = t0() + Duration::hours(24);
    let (a, b) = tokio::join!(
        store.sweep_failing_subscriptions(&policy, at),
        store.sweep_failing_subscriptions(&policy, at)
    );
    assert_eq!(a.unwrap().warned.len() + b.unwrap().warned.len(), 1, "warned exactly once");
    let again = store.sweep_failing_subscriptions(&policy, at + Duration::hours(1)).await.unwrap();
    assert!(again.warned.is_empty() && again.disabled.is_empty());

    let (a, b) = tokio::join!(
        store.sweep_failing_subscriptions(&policy, at + Duration::days(7)),
        store.sweep_failing_subscriptions(&policy, at + Duration::days(7))
    );
    let disabled: Vec<_> = a.unwrap().disabled.into_iter().chain(b.unwrap().disabled).collect();
    assert_eq!(disabled.len(), 1, "disabled exactly once");
    let sub = store.get_subscription(&tenant.tenant_id, false, &disabled[0].id).await.unwrap().unwrap();
    assert!(!sub.enabled);
    assert_eq!(sub.disabled_reason, Some(signhook_core::policy::DisabledReason::Failing));
    let types = event_types(&store, &tenant).await;
    assert_eq!(types.iter().filter(|t| *t == "webhook.disabling_soon").count(), 1);
    assert_eq!(types.iter().filter(|t| *t == "webhook.disabled").count(), 1);
    assert_eq!(types.iter().filter(|t| *t == "delivery.failed").count(), 10, "one per dead letter");
}

async fn a_recovery_job_resumes_on_another_node_when_its_lease_ends(backend: Backend) {
    let (_dir, store) = store(backend).await;
    let tenant = tenant_with_subscription(&store).await;
    dead_letters(&store, &tenant, 5, t0()).await;
    let sub = store.list_subscriptions(&tenant.tenant_id, false, None, 10).await.unwrap().items.remove(0);
    let start = t0() + Duration::hours(1);
    let job = store.create_recovery(&tenant.tenant_id, false, &sub.id, t0(), None, start).await.unwrap().unwrap();
    assert_eq!((job.total, job.resent, job.status.as_str()), (5, 0, "running"));

    let lease = Duration::seconds(60);
    let on_a = store.claim_recovery("node_a", start, start + lease).await.unwrap().unwrap();
    let on_a = store.advance_recovery("node_a", &on_a, 2, start).await.unwrap().unwrap();
    assert_eq!(on_a.resent, 2);
    // node_a dies here. While its lease holds nobody else takes the job…
    assert!(store.claim_recovery("node_b", start + Duration::seconds(30), start + lease).await.unwrap().is_none());
    // …then node_b does, and node_a's stale lease is worthless.
    let later = start + lease;
    let mut on_b = store.claim_recovery("node_b", later, later + lease).await.unwrap().unwrap();
    assert!(store.advance_recovery("node_a", &on_a, 2, later).await.unwrap().is_none());
    while on_b.status == signhook_store::recoveries::RecoveryStatus::Running {
        on_b = store.advance_recovery("node_b", &on_b, 2, later).await.unwrap().unwrap();
    }
    assert_eq!((on_b.resent, on_b.status.as_str()), (5, "done"));
    // Every dead letter is due again, on a fresh schedule. (The subscription
    // listens to everything, so the `delivery.failed` events about those
    // dead letters are due to it as well.)
    let claims = store.claim_due_deliveries("n", later, later + lease, 100, 100, &[]).await.unwrap();
    let claims: Vec<_> = claims.into_iter().filter(|c| c.event.event_type == "signer.done").collect();
    assert_eq!(claims.len(), 5);
    assert!(claims.iter().all(|c| c.schedule_attempt == 1 && c.attempt_number == 2));
}

async fn a_restarted_node_takes_back_its_own_claims_at_once(backend: Backend) {
    use signhook_store::claims::Released;
    let (_dir, store) = store(backend).await;
    let tenant = tenant_with_subscription(&store).await;
    // Two dead letters (and their two `delivery.failed`, pending) to
    // recover, then three fresh events.
    dead_letters(&store, &tenant, 2, t0()).await;
    let sub = store.list_subscriptions(&tenant.tenant_id, false, None, 10).await.unwrap().items.remove(0);
    let start = t0() + Duration::hours(1);
    store.create_recovery(&tenant.tenant_id, false, &sub.id, t0(), None, start).await.unwrap().unwrap();
    for _ in 0..3 {
        publish(&store, &tenant, start).await;
    }
    // node_a holds the job and all but one delivery; node_b that one.
    let lease = Duration::seconds(60);
    store.claim_recovery("node_a", start, start + lease).await.unwrap().unwrap();
    let on_b = store.claim_due_deliveries("node_b", start, start + lease, 1, 100, &[]).await.unwrap();
    let on_a = store.claim_due_deliveries("node_a", start, start + lease, 100, 100, &[]).await.unwrap();
    assert_eq!((on_b.len(), on_a.len()), (1, 4));

    // node_a dies and starts again ten seconds later, well within its leases.
    let restart = start + Duration::seconds(10);
    let released = store.release_leases_of_previous_run("node_a", restart).await.unwrap();
    assert_eq!(released, Released { deliveries: 4, recoveries: 1 });
    let again = store.claim_due_deliveries("node_a", restart, restart + lease, 100, 100, &[]).await.unwrap();
    let mut ids: Vec<_> = again.iter().map(|c| (c.delivery_id.clone(), c.due_at, c.attempt_number)).collect();
    let mut held: Vec<_> = on_a.iter().map(|c| (c.delivery_id.clone(), c.due_at, c.attempt_number)).collect();
    ids.sort();
    held.sort();
    assert_eq!(ids, held, "the same deliveries, due when they were due, no attempt counted");
    assert!(store.claim_recovery("node_c", restart, restart + lease).await.unwrap().is_some(), "the job is free");
    // node_b's claim was left alone.
    assert!(store.claim_due_deliveries("node_c", restart, restart + lease, 100, 100, &[]).await.unwrap().is_empty());
    assert_eq!(store.release_leases_of_previous_run("node_d", restart).await.unwrap(), Released::default());
}

async fn events_past_retention_are_purged_unless_still_pending(backend: Backend) {
    let (_dir, store) = store(backend).await;
    let tenant = tenant_with_subscription(&store).await;
    // An old event, delivered; and an old event still pending.
    publish(&store, &tenant, t0()).await;
    let claims = store.claim_due_deliveries("n", t0(), t0() + Duration::minutes(1), 10, 10, &[]).await.unwrap();
    store.record_attempts("n", &[succeeded(&claims[0], t0(), "n")], t0(), t0() + Duration::minutes(1)).await.unwrap();
    publish(&store, &tenant, t0() + Duration::seconds(1)).await;
    let recent = t0() + Duration::days(29);
    publish(&store, &tenant, recent).await;

    let cutoff = t0() + Duration::days(30);
    assert_eq!(store.purge_events_before(cutoff, 500).await.unwrap(), 1, "only the settled old event");
    assert_eq!(store.purge_events_before(cutoff, 500).await.unwrap(), 0, "a second purge finds nothing");
    let left = store.list_events(&tenant.tenant_id, false, None, None, 10).await.unwrap().items;
    assert_eq!(left.len(), 2);
    assert!(store.get_delivery(&tenant.tenant_id, false, &claims[0].delivery_id).await.unwrap().is_none());
}
}

mod signature_requests {
    use super::*;
    use serde_json::json;
    use signhook_core::lifecycle::{Action, RequestStatus, SignatureRequest, Signer};
    use signhook_store::signature_requests::{Act, Document, NewSignatureRequest, Origin, SignatureRequestRecord};

    async fn ongoing(store: &Store, tenant: &CreatedTenant) -> SignatureRequestRecord {
        let workspace = store.default_workspace(&tenant.tenant_id).await.unwrap();
        let draft = SignatureRequest::draft(
            "MSA".into(),
            t0() + Duration::days(1),
            false,
            vec![Signer::new("Ada".into(), "ada@example.com".into())],
            vec![],
        );
        let (record, _) = store
            .create_signature_request(
                NewSignatureRequest {
                    request: draft,
                    tenant_id: tenant.tenant_id.clone(),
                    sandbox: false,
                    workspace_id: workspace,
                    scope: Scope::PublicApi,
                    metadata: json!({}),
                    reminder_interval_ms: None,
                    idempotency: None,
                },
                &Act::scheduler(),
                t0(),
            )
            .await
            .unwrap();
        let document = Document {
            id: signhook_core::ids::DocumentId::generate(),
            filename: "msa.pdf".into(),
            size: 10,
            sha256: "00".repeat(32),
            pages: 1,
            created_at: t0(),
        };
        store
            .add_document(&record.request.id, &document, &Act::scheduler(), t0())
            .await
            .unwrap();
        apply(store, &record.request.id, Action::Activate).await.unwrap()
    }

    /// Loads, transitions and writes, as the server's lifecycle does.
    async fn apply(
        store: &Store,
        id: &signhook_core::ids::SignatureRequestId,
        action: Action,
    ) -> Result<SignatureRequestRecord, signhook_store::StoreError> {
        let before = store.load_signature_request(id).await?.unwrap();
        write(store, &before, action).await
    }

    async fn write(
        store: &Store,
        before: &SignatureRequestRecord,
        action: Action,
    ) -> Result<SignatureRequestRecord, signhook_store::StoreError> {
        let t = before.request.transition(action, t0()).unwrap();
        let mut after = before.clone();
        after.request = t.request.clone();
        let events: Vec<_> = t
            .events
            .iter()
            .map(|e| (e.clone(), after.request.event_data(e, &after.metadata, None)))
            .collect();
        let act = Act {
            actor: "Ada <ada@example.com>".into(),
            origin: Origin {
                ip: Some("192.0.2.7".into()),
                user_agent: Some("test".into()),
            },
        };
        store.apply_transition(before, &after, &events, &act, t0()).await?;
        Ok(store.load_signature_request(&before.request.id).await?.unwrap())
    }

    on_both_backends! {
        async fn a_transition_computed_from_a_stale_read_is_not_written(backend: Backend) {
            let (_dir, store) = store(backend).await;
            let tenant = tenant_with_subscription(&store).await;
            let record = ongoing(&store, &tenant).await;
            // Two nodes read the same state and both try to expire it: one wins.
            let before = store.load_signature_request(&record.request.id).await.unwrap().unwrap();
            let mut overdue = before.clone();
            overdue.request.expires_at = t0();
            let first = write(&store, &overdue, Action::Expire).await.unwrap();
            assert_eq!(first.request.status, RequestStatus::Expired);
            let second = write(&store, &overdue, Action::Expire).await;
            assert!(matches!(second, Err(signhook_store::StoreError::Stale)), "{second:?}");
            let expired = event_types(&store, &tenant).await;
            assert_eq!(expired.iter().filter(|t| *t == "signature_request.expired").count(), 1);
        }

        async fn signing_records_the_signer_s_origin_and_the_trail(backend: Backend) {
            let (_dir, store) = store(backend).await;
            let tenant = tenant_with_subscription(&store).await;
            let record = ongoing(&store, &tenant).await;
            let signer = record.request.signers[0].id.clone();
            let signature = signhook_core::lifecycle::Signature::new(Some(true), Some("Ada L.")).unwrap();
            let done = apply(&store, &record.request.id, Action::Sign(signer, signature)).await.unwrap();
            assert_eq!(done.request.status, RequestStatus::Done);
            assert_eq!(done.request.signers[0].typed_name.as_deref(), Some("Ada L."));
            assert_eq!(done.signer_origins[0].ip.as_deref(), Some("192.0.2.7"));
            assert!(done.completed_at.is_some() && done.activated_at.is_some());
            let entries = store.audit_trail(&record.request.id).await.unwrap();
            let trail: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
            // The consent and the typed name are in the signer's line.
            let signed = entries.iter().find(|e| e.action == "signer.done").unwrap();
            assert!(
                signed
                    .detail
                    .as_deref()
                    .unwrap()
                    .ends_with("agreed to sign electronically and typed the name \u{201c}Ada L.\u{201d}"),
                "{signed:?}"
            );
            assert_eq!(
                trail,
                [
                    "signature_request.created",
                    "document.added",
                    "signature_request.activated",
                    "signer.notified",
                    "signer.link_opened",
                    "signer.done",
                    "signature_request.done"
                ]
            );
            // A document cannot be added once the request left draft.
            let late = Document {
                id: signhook_core::ids::DocumentId::generate(),
                filename: "late.pdf".into(),
                size: 1,
                sha256: "11".repeat(32),
                pages: 1,
                created_at: t0(),
            };
            let refused = store.add_document(&record.request.id, &late, &Act::scheduler(), t0()).await;
            assert!(matches!(refused, Err(signhook_store::StoreError::Stale)));
        }

        async fn a_listing_loads_each_request_with_its_own_people(backend: Backend) {
            let (_dir, store) = store(backend).await;
            let tenant = tenant_with_subscription(&store).await;
            let first = ongoing(&store, &tenant).await;
            let second = ongoing(&store, &tenant).await;
            let page = store
                .list_signature_requests(&tenant.tenant_id, false, None, None, 10)
                .await
                .unwrap();
            assert_eq!(page.items, vec![first.clone(), second.clone()]);
            assert_ne!(page.items[0].request.signers[0].id, page.items[1].request.signers[0].id);
            assert_eq!(page.items[1].documents.len(), 1);
        }

        async fn the_trail_names_each_event_and_its_sequence(backend: Backend) {
            let (_dir, store) = store(backend).await;
            let tenant = tenant_with_subscription(&store).await;
            let record = ongoing(&store, &tenant).await;
            let canceled = apply(&store, &record.request.id, Action::Cancel(None)).await.unwrap();
            let entries = store.audit_trail(&record.request.id).await.unwrap();
            let steps: Vec<(&str, Option<i64>)> = entries.iter().map(|e| (e.action.as_str(), e.sequence)).collect();
            assert_eq!(
                steps,
                [
                    ("signature_request.created", None),
                    ("document.added", None),
                    ("signature_request.activated", Some(1)),
                    ("signer.notified", Some(2)),
                    ("signature_request.canceled", Some(3)),
                ]
            );
            assert_eq!(canceled.request.sequence, 3);
            // Each event row names the event written with it.
            for entry in entries.iter().filter(|e| e.sequence.is_some()) {
                let id = entry.event_id.as_ref().expect("an event row names its event");
                let event = store.get_event(&tenant.tenant_id, false, id).await.unwrap().unwrap();
                assert_eq!(event.event_type, entry.action);
                let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
                assert_eq!(data["signature_request"]["sequence"], entry.sequence.unwrap());
            }
            assert!(entries[0].event_id.is_none());
        }

        async fn the_dashboard_reads_requests_and_events_newest_first(backend: Backend) {
            let (_dir, store) = store(backend).await;
            let tenant = tenant_with_subscription(&store).await;
            let first = ongoing(&store, &tenant).await;
            let second = ongoing(&store, &tenant).await;
            let third = ongoing(&store, &tenant).await;
            apply(&store, &second.request.id, Action::Cancel(None)).await.unwrap();
            let ids = |page: &signhook_store::Page<SignatureRequestRecord>| -> Vec<String> {
                page.items.iter().map(|r| r.request.id.to_string()).collect()
            };
            let page = store.recent_signature_requests(&tenant.tenant_id, false, None, None, 2).await.unwrap();
            assert_eq!(ids(&page), [third.request.id.to_string(), second.request.id.to_string()]);
            assert!(page.has_more);
            let rest = store
                .recent_signature_requests(&tenant.tenant_id, false, Some(&second.request.id), None, 2)
                .await
                .unwrap();
            assert_eq!(ids(&rest), [first.request.id.to_string()]);
            assert!(!rest.has_more);
            let canceled = store
                .recent_signature_requests(&tenant.tenant_id, false, None, Some(RequestStatus::Canceled), 10)
                .await
                .unwrap();
            assert_eq!(ids(&canceled), [second.request.id.to_string()]);
            // Another tenant's and the sandbox's hold none of them.
            let other = store.create_tenant("Other", t0()).await.unwrap();
            assert!(store.recent_signature_requests(&other.tenant_id, false, None, None, 10).await.unwrap().items.is_empty());
            assert!(store.recent_signature_requests(&tenant.tenant_id, true, None, None, 10).await.unwrap().items.is_empty());

            // Events: each request made two (activated, notified), the cancel one more.
            let all = store.recent_events(&tenant.tenant_id, false, None, None, 100).await.unwrap();
            assert_eq!(all.items.len(), 7);
            assert!(all.items.windows(2).all(|w| w[0].id > w[1].id), "newest first");
            assert_eq!(all.items[0].event_type, "signature_request.canceled");
            let notified = store
                .recent_events(&tenant.tenant_id, false, None, Some("signer.notified"), 2)
                .await
                .unwrap();
            assert_eq!(notified.items.len(), 2);
            assert!(notified.has_more);
            let older = store
                .recent_events(&tenant.tenant_id, false, notified.items.last().map(|e| &e.id), Some("signer.notified"), 2)
                .await
                .unwrap();
            assert_eq!(older.items.len(), 1);
            assert!(older.items[0].id < notified.items[1].id && !older.has_more);
            assert!(store.recent_events(&other.tenant_id, false, None, None, 10).await.unwrap().items.is_empty());

            // One event's deliveries, with where they went; none for another tenant.
            let event = &all.items[0];
            let deliveries = store.event_deliveries(&tenant.tenant_id, false, &event.id, 10).await.unwrap();
            assert_eq!(deliveries.items.len(), 1);
            assert_eq!(deliveries.items[0].delivery.event_id, event.id);
            assert_eq!(deliveries.items[0].webhook_url, "https://crm.example.com/");
            assert!(!deliveries.items[0].webhook_deleted);
            assert!(store.event_deliveries(&other.tenant_id, false, &event.id, 10).await.unwrap().items.is_empty());
            assert!(store.event_deliveries(&tenant.tenant_id, true, &event.id, 10).await.unwrap().items.is_empty());
        }

        async fn the_link_key_is_made_once_and_shared(backend: Backend) {
            let (_dir, store) = store(backend).await;
            let first = store.link_key(t0()).await.unwrap();
            let again = store.link_key(t0()).await.unwrap();
            assert_eq!(first.len(), 32);
            assert_eq!(first, again);
        }
    }
}

mod group_commit {
    use super::*;
    use signhook_store::events::Idempotency;

    fn event(tenant: &CreatedTenant, key: Option<(&str, u8)>, workspace_ok: bool) -> NewEvent {
        NewEvent {
            tenant_id: tenant.tenant_id.clone(),
            sandbox: false,
            event_type: "signer.done".into(),
            scope: Scope::PublicApi,
            workspace_id: if workspace_ok {
                tenant.default_workspace_id.clone()
            } else {
                signhook_core::ids::WorkspaceId::generate()
            },
            data: "{}".into(),
            idempotency: key.map(|(key, hash)| Idempotency {
                key: key.into(),
                request_hash: [hash; 32],
            }),
            ordering_key: None,
        }
    }

    on_both_backends! {
        async fn a_batch_commits_together_and_answers_each_event(backend: Backend) {
            let (_dir, store) = store(backend).await;
            let tenant = tenant_with_subscription(&store).await;
            let earlier = store.publish_event(event(&tenant, Some(("k0", 1)), true), t0()).await.unwrap();
            let results = store
                .publish_events(
                    vec![
                        event(&tenant, None, true),
                        event(&tenant, Some(("k1", 1)), true),
                        event(&tenant, Some(("k1", 1)), true), // same key, same request: a replay
                        event(&tenant, Some(("k1", 2)), true), // same key, other request: refused
                        event(&tenant, Some(("k0", 1)), true), // a key used before the batch
                    ],
                    t0(),
                    None,
                )
                .await
                .results;
            assert_eq!(results.len(), 5);
            let first = results[0].as_ref().unwrap();
            assert_eq!((first.deliveries, first.replayed), (1, false));
            let k1 = results[1].as_ref().unwrap();
            assert!(!k1.replayed);
            assert_eq!(results[2].as_ref().unwrap().event.id, k1.event.id);
            assert!(results[2].as_ref().unwrap().replayed);
            assert!(matches!(results[3], Err(signhook_store::StoreError::IdempotencyMismatch)));
            assert_eq!(results[4].as_ref().unwrap().event.id, earlier.event.id);
            let stored = store.list_events(&tenant.tenant_id, false, None, None, 10).await.unwrap();
            assert_eq!(stored.items.len(), 3, "k0 before, then the plain event and k1");
        }

        async fn what_a_batch_writes_reads_back_exactly(backend: Backend) {
            // The rows travel as one JSON parameter: text that needs
            // escaping, the environment's flag, the key and its hash bytes,
            // and the time must all come back as they went.
            let (_dir, store) = store(backend).await;
            let tenant = tenant_with_subscription(&store).await;
            let data = r#"{"quote":"\"","backslash":"\\","line":"a\nb","unicode":"é ✓ 😀","n":9007199254740993}"#;
            let mut awkward = event(&tenant, Some(("key \"é\"", 0xab)), true);
            awkward.sandbox = true;
            awkward.data = data.into();
            let plain = event(&tenant, None, true);
            let results = store.publish_events(vec![awkward.clone(), plain], t0(), None).await.results;
            let published = results[0].as_ref().unwrap().event.clone();
            let stored = store.list_events(&tenant.tenant_id, true, None, None, 10).await.unwrap();
            assert_eq!(stored.items.len(), 1, "only the sandbox event is in the sandbox");
            let read = &stored.items[0];
            assert_eq!((read.id.clone(), read.data.as_str(), read.sandbox), (published.id, data, true));
            assert_eq!(read.created_at, t0());
            let replayed = store.publish_event(awkward, t0()).await.unwrap();
            assert!(replayed.replayed, "the key and its hash bytes were stored as given");
        }

        async fn one_bad_event_does_not_sink_its_batch(backend: Backend) {
            let (_dir, store) = store(backend).await;
            let tenant = tenant_with_subscription(&store).await;
            let results = store
                .publish_events(
                    vec![event(&tenant, None, true), event(&tenant, None, false), event(&tenant, None, true)],
                    t0(),
                    None,
                )
                .await
                .results;
            assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
            assert!(results[1].is_err());
            let stored = store.list_events(&tenant.tenant_id, false, None, None, 10).await.unwrap();
            assert_eq!(stored.items.len(), 2);
        }
    }
}

/// A result for `claim`: failed, to be tried again at `retry_at`.
fn retrying(
    claim: &signhook_store::claims::ClaimedDelivery,
    at: DateTime<Utc>,
    retry_at: DateTime<Utc>,
) -> AttemptRecord {
    let mut record = dead_lettered(claim, at, "n");
    record.decision = Decision::RetryAfter {
        delay: (retry_at - at).to_std().expect("a retry comes later"),
        reason: "non-2xx status",
    };
    record
}

on_both_backends! {
async fn every_write_that_makes_work_due_announces_when_and_claims_keep_the_due_time(backend: Backend) {
    let (_dir, store) = store(backend).await;
    let tenant = tenant_with_subscription(&store).await;
    let signal = store.work_signal();
    let lease = Duration::minutes(1);
    let claim_at = |at: DateTime<Utc>| {
        let store = store.clone();
        async move { store.claim_due_deliveries("n", at, at + lease, 10, 10, &[]).await.unwrap() }
    };

    // A publish that no node claimed at once: due now.
    publish(&store, &tenant, t0()).await;
    assert_eq!(signal.take(), Some(t0()));
    let claim = claim_at(t0()).await.remove(0);
    assert_eq!(claim.due_at, t0());
    assert_eq!(signal.take(), None, "a claim makes nothing due");

    // Its attempt fails: the retry is announced for its own time.
    let retry_at = t0() + Duration::seconds(5);
    store.record_attempts("n", &[retrying(&claim, t0(), retry_at)], t0(), t0() + Duration::minutes(1)).await.unwrap();
    assert_eq!(signal.take(), Some(retry_at));
    assert_eq!(store.next_due_at("node-a", &[]).await.unwrap(), Some(retry_at));
    assert_eq!(
        store.next_due_at("node-a", std::slice::from_ref(&claim.subscription.id)).await.unwrap(),
        None,
        "a lane left out of claims is left out of what falls due next"
    );

    // Claimed two seconds late, then released: it keeps the time it was
    // due, so its attempt will know how late it left.
    let late = claim_at(retry_at + Duration::seconds(2)).await.remove(0);
    assert_eq!(late.due_at, retry_at);
    let released_at = retry_at + Duration::seconds(3);
    store.release_deliveries("n", &[late.held()], released_at).await.unwrap();
    assert_eq!(signal.take(), Some(released_at), "released: due at once");
    let again = claim_at(released_at).await.remove(0);
    assert_eq!(again.due_at, retry_at);

    // Dead-lettered: `delivery.failed` goes to the tenant's subscription now.
    let dead_at = released_at + Duration::seconds(1);
    store.record_attempts("n", &[dead_lettered(&again, dead_at, "n")], dead_at, dead_at + Duration::minutes(1)).await.unwrap();
    assert_eq!(signal.take(), Some(dead_at));

    // Resent by its owner: due now.
    let resent_at = dead_at + Duration::seconds(1);
    store.resend_delivery(&tenant.tenant_id, false, &again.delivery_id, resent_at).await.unwrap().unwrap().unwrap();
    assert_eq!(signal.take(), Some(resent_at));
    let (delivery, attempts) =
        store.get_delivery(&tenant.tenant_id, false, &again.delivery_id).await.unwrap().unwrap();
    assert_eq!(delivery.next_attempt_at, Some(resent_at), "shown as scheduled");
    let scheduled: Vec<_> = attempts.iter().map(|a| a.scheduled_at).collect();
    assert_eq!(scheduled, [Some(t0()), Some(retry_at)], "each attempt records when it was due");
}
}

mod team {
    use super::*;
    use signhook_core::auth::{Environment, Role};
    use signhook_store::users::{Reinvitation, TeamChange};

    on_both_backends! {
    async fn a_team_never_loses_its_last_admin_and_removal_ends_sessions(backend: Backend) {
        let (_dir, store) = store(backend).await;
        let acme = store.create_tenant("Acme", t0()).await.unwrap();
        let other = store.create_tenant("Other", t0()).await.unwrap();
        let week = t0() + Duration::days(7);
        let ada = store.create_user(&acme.tenant_id, "ada@example.com", Role::Admin, t0(), week).await.unwrap().unwrap();
        let bob = store
            .create_user(&acme.tenant_id, "bob@example.com", Role::Viewer, t0() + Duration::seconds(1), week)
            .await
            .unwrap()
            .unwrap();
        let members = store.list_members(&acme.tenant_id).await.unwrap();
        let emails: Vec<&str> = members.iter().map(|m| m.user.email.as_str()).collect();
        assert_eq!(emails, ["ada@example.com", "bob@example.com"]);
        assert!(members.iter().all(|m| !m.has_password && m.link_expires_at == Some(week)));
        assert!(store.list_members(&other.tenant_id).await.unwrap().is_empty());
        // Another tenant's user is no one there.
        assert_eq!(store.member(&other.tenant_id, &bob.user.id).await.unwrap(), None);
        assert_eq!(store.change_role(&other.tenant_id, &bob.user.id, Role::Admin).await.unwrap(), TeamChange::NotFound);
        assert_eq!(store.remove_user(&other.tenant_id, &bob.user.id).await.unwrap(), TeamChange::NotFound);

        // The only admin stays one, and stays.
        assert_eq!(store.change_role(&acme.tenant_id, &ada.user.id, Role::Viewer).await.unwrap(), TeamChange::LastAdmin);
        assert_eq!(store.remove_user(&acme.tenant_id, &ada.user.id).await.unwrap(), TeamChange::LastAdmin);
        // With a second admin, the first may step down.
        let TeamChange::Done(bob_now) = store.change_role(&acme.tenant_id, &bob.user.id, Role::Admin).await.unwrap() else {
            panic!("bob becomes an admin");
        };
        assert_eq!(bob_now.role, Role::Admin);
        assert!(matches!(store.change_role(&acme.tenant_id, &ada.user.id, Role::Viewer).await.unwrap(), TeamChange::Done(_)));

        // A removed user's sessions end; their address can be invited again.
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        let ada_set = store.set_password_by_link(&ada.link_token, hash, t0()).await.unwrap().unwrap();
        let session = store.open_session(&ada_set, None, None, t0()).await.unwrap();
        let idle = std::time::Duration::from_secs(3600);
        let seen = store.session(&session.token, t0(), idle).await.unwrap().unwrap();
        assert_eq!(seen.user.role, Role::Viewer, "the role is read with the session");
        assert!(matches!(store.remove_user(&acme.tenant_id, &ada.user.id).await.unwrap(), TeamChange::Done(_)));
        assert_eq!(store.session(&session.token, t0(), idle).await.unwrap(), None);
        assert_eq!(store.user_by_email("ada@example.com").await.unwrap(), None);
        assert!(store.create_user(&acme.tenant_id, "ada@example.com", Role::Viewer, t0(), week).await.unwrap().is_some());
    }

    async fn a_fresh_invitation_link_replaces_the_old_ones(backend: Backend) {
        let (_dir, store) = store(backend).await;
        let acme = store.create_tenant("Acme", t0()).await.unwrap();
        let week = t0() + Duration::days(7);
        let cy = store.create_user(&acme.tenant_id, "cy@example.com", Role::Viewer, t0(), week).await.unwrap().unwrap();
        let later = t0() + Duration::days(1);
        let Reinvitation::Sent(again) = store.reinvite(&acme.tenant_id, &cy.user.id, later, later + Duration::days(7)).await.unwrap() else {
            panic!("a fresh link");
        };
        assert_eq!(store.user_of_link(&cy.link_token, later).await.unwrap(), None, "the old link stopped working");
        assert_eq!(store.user_of_link(&again.link_token, later).await.unwrap().unwrap().id, cy.user.id);
        let member = store.member(&acme.tenant_id, &cy.user.id).await.unwrap().unwrap();
        assert_eq!(member.link_expires_at, Some(later + Duration::days(7)));
        // Once the password is set there is nothing to re-send.
        store.set_password_by_link(&again.link_token, "$argon2id$x", later).await.unwrap().unwrap();
        assert!(matches!(store.reinvite(&acme.tenant_id, &cy.user.id, later, week).await.unwrap(), Reinvitation::HasPassword));
        let member = store.member(&acme.tenant_id, &cy.user.id).await.unwrap().unwrap();
        assert!(member.has_password);
        assert_eq!(member.link_expires_at, None);
        let other = store.create_tenant("Other", t0()).await.unwrap();
        assert!(matches!(store.reinvite(&other.tenant_id, &cy.user.id, later, week).await.unwrap(), Reinvitation::NotFound));
    }

    async fn a_key_use_moves_its_last_use_forward_only(backend: Backend) {
        let (_dir, store) = store(backend).await;
        let acme = store.create_tenant("Acme", t0()).await.unwrap();
        async fn last_use(store: &Store, tenant: &CreatedTenant) -> Option<DateTime<Utc>> {
            store.list_api_keys(&tenant.tenant_id, Environment::Live).await.unwrap()[0].last_used_at
        }
        assert_eq!(last_use(&store, &acme).await, None);
        store.record_key_use(&acme.live_key, t0() + Duration::minutes(5)).await.unwrap();
        assert_eq!(last_use(&store, &acme).await, Some(t0() + Duration::minutes(5)));
        // A node whose write arrives late does not move it back.
        store.record_key_use(&acme.live_key, t0() + Duration::minutes(4)).await.unwrap();
        assert_eq!(last_use(&store, &acme).await, Some(t0() + Duration::minutes(5)));
        // The test key's use is its own.
        let test = store.list_api_keys(&acme.tenant_id, Environment::Test).await.unwrap();
        assert_eq!(test[0].last_used_at, None);
    }
    }
}

/// An `invoice.paid` of the tenant's, ordered by `key`.
fn keyed_invoice(tenant: &CreatedTenant, key: &str) -> NewEvent {
    NewEvent {
        tenant_id: tenant.tenant_id.clone(),
        sandbox: false,
        event_type: "invoice.paid".into(),
        scope: Scope::PublicApi,
        workspace_id: tenant.default_workspace_id.clone(),
        data: "{}".into(),
        idempotency: None,
        ordering_key: Some(key.into()),
    }
}

on_both_backends! {
/// A publish that claims its deliveries for its node (the API's, with a
/// lease) claims an ordered key's new head too, and only it: the key's
/// later deliveries, in the same batch or a later one, wait for it.
async fn publishing_with_a_lease_claims_a_free_keys_head_and_nothing_behind_it(backend: Backend) {
    let (_dir, store) = store(backend).await;
    let tenant = store.create_tenant("Acme", t0()).await.unwrap();
    add_subscription_ordered(&store, &tenant, Ordering::Key).await;
    let invoice = |key: &str| keyed_invoice(&tenant, key);
    let lease = signhook_store::claims::Lease {
        node_id: "node_a".into(),
        until: t0() + Duration::minutes(1),
    };
    let first = store
        .publish_events(vec![invoice("inv_1"), invoice("inv_1"), invoice("inv_2")], t0(), Some(&lease))
        .await;
    let first_ids: Vec<_> = first.results.iter().map(|r| r.as_ref().unwrap().event.id.clone()).collect();
    let mut claimed: Vec<_> = first.claimed.iter().map(|c| (c.ordering_key.clone().unwrap(), c.event.id.clone())).collect();
    claimed.sort();
    assert_eq!(
        claimed,
        vec![("inv_1".to_owned(), first_ids[0].clone()), ("inv_2".to_owned(), first_ids[2].clone())],
        "each key's earliest, claimed for the node"
    );
    assert!(first.claimed.iter().all(|c| c.lease_until == signhook_core::time::to_millis(lease.until)));
    let later = store.publish_events(vec![invoice("inv_1"), invoice("inv_3")], t0(), Some(&lease)).await;
    let keys: Vec<_> = later.claimed.iter().map(|c| c.ordering_key.clone().unwrap()).collect();
    assert_eq!(keys, vec!["inv_3".to_owned()], "inv_1 is held by its head");
    // Claimed by node_a, the rest waiting: nothing for anyone to claim.
    assert!(store.claim_due_deliveries("node_b", t0(), t0() + Duration::minutes(1), 10, 100, &[]).await.unwrap().is_empty());
}

/// Recording the success of an ordered key's head claims the key's next
/// delivery for the recording node and returns it: no claim in between,
/// and no other node can take it while that lease holds.
async fn recording_a_keys_head_claims_its_next_delivery_for_the_recording_node(backend: Backend) {
    let (_dir, store) = store(backend).await;
    let tenant = store.create_tenant("Acme", t0()).await.unwrap();
    add_subscription_ordered(&store, &tenant, Ordering::Key).await;
    for _ in 0..3 {
        store.publish_event(keyed_invoice(&tenant, "inv_1"), t0()).await.unwrap();
    }
    let lease = Duration::minutes(1);
    let head = store.claim_due_deliveries("node_a", t0(), t0() + lease, 10, 100, &[]).await.unwrap();
    assert_eq!(head.len(), 1, "only the key's head is claimable");

    let at = t0() + Duration::seconds(1);
    let next = store
        .record_attempts("node_a", &[succeeded(&head[0], at, "node_a")], at, at + lease)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert!(next[0].event.id > head[0].event.id, "the next event of the key");
    assert_eq!(next[0].lease_until, signhook_core::time::to_millis(at + lease));
    assert_eq!(next[0].ordering_key.as_deref(), Some("inv_1"));
    // Leased to node_a: nobody claims it while the lease holds.
    assert!(store.claim_due_deliveries("node_b", at, at + lease, 10, 100, &[]).await.unwrap().is_empty());

    // The next success lets the last one go; the last leaves nothing.
    let later = at + Duration::seconds(1);
    let last = store
        .record_attempts("node_a", &[succeeded(&next[0], later, "node_a")], later, later + lease)
        .await
        .unwrap();
    assert_eq!(last.len(), 1);
    assert!(last[0].event.id > next[0].event.id);
    let end = later + Duration::seconds(1);
    let none = store
        .record_attempts("node_a", &[succeeded(&last[0], end, "node_a")], end, end + lease)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(store.next_due_at("node_a", &[]).await.unwrap(), None);
}
}
