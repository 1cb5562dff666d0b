//! The scenarios that run on a database that is not empty: `big-db` fills
//! one with a month of a platform's data (DESIGN §8: 10 M events, 30 M
//! attempts, 1,000 subscriptions, 100 tenants), `lists` times the list
//! pages people and apps read on it, and `drain` measures the backlog an
//! outage leaves: many deliveries due at once while fresh events flow to
//! other endpoints. `throughput` and `latency` run on a prepared database
//! with `--db-dir`.

use crate::fill::{self, Db, Month};
use crate::{distribution, round, Behavior, Cli, Servers, Sink};
use anyhow::{ensure, Context};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// What `big-db` left in its directory, for the runs that follow.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    backend: String,
    month: Month,
    /// Per tenant: its live key and its subscriptions, in creation order.
    tenants: Vec<PreparedTenant>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PreparedTenant {
    key: String,
    subscriptions: Vec<String>,
}

const MANIFEST: &str = "bench.json";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `big-db`: makes the tenants and subscriptions through a server, stops
/// it, and fills the month in; the directory (`--db-dir`) is then ready for
/// `lists`, `throughput`, `latency`.
pub(crate) async fn big_db(cli: &Cli) -> anyhow::Result<Value> {
    let dir = cli
        .db_dir
        .as_deref()
        .context("big-db needs --db-dir DIR (where the database is kept)")?;
    ensure!(
        !dir.join(MANIFEST).exists(),
        "{} already holds a prepared database; remove it first",
        dir.display()
    );
    let (events, tenants, per_tenant) = if cli.smoke {
        (20_000, 4, 3)
    } else {
        (
            cli.events.unwrap_or(10_000_000) as u64,
            cli.tenants.unwrap_or(100),
            cli.subscriptions_per_tenant,
        )
    };
    ensure!(
        per_tenant >= 2,
        "--subscriptions-per-tenant must be at least 2 (each event goes to two)"
    );
    let setup_started = Instant::now();
    let mut servers = Servers::start(cli, &[]).await?;
    let client = reqwest::Client::new();
    let mut prepared = Vec::new();
    for t in 0..tenants {
        let key = servers.tenant(&format!("tenant {t}"))?;
        let mut subscriptions = Vec::new();
        for k in 0..per_tenant {
            // Nothing listens there: the month's pending deliveries fail
            // to connect and are retried, as an endpoint that went away.
            let created = crate::create_subscription(
                &client,
                &servers,
                &key,
                json!({"url": format!("http://127.0.0.1:9/t{t}/s{k}"),
                       "subscribed_events": ["signer.*", "signature_request.*"]}),
            )
            .await?;
            subscriptions.push(created["id"].as_str().context("an id")?.to_owned());
        }
        prepared.push(PreparedTenant { key, subscriptions });
    }
    servers.stop();
    let setup_seconds = setup_started.elapsed().as_secs_f64();

    // A month and a day ends now: the first day is past the 30-day
    // retention, for the purge to work on while the scenarios run.
    let span_ms = 31 * 86_400_000_i64;
    let now = now_ms();
    let month = Month {
        events,
        tenants,
        subscriptions_per_tenant: per_tenant,
        fanout: 2,
        start_ms: now - span_ms,
        step_ms: (span_ms / events.max(1) as i64).max(1),
    };
    let fill_started = Instant::now();
    let mut db = Db::open(&servers.dir, cli.database_url.as_deref()).await?;
    let chunk = if cli.smoke { 5_000 } else { 250_000 };
    let written = fill::fill_month(&mut db, &month, chunk, now).await?;
    db.analyze().await?;
    let size = db.size_bytes(&servers.dir).await?;
    let fill_seconds = fill_started.elapsed().as_secs_f64();
    fill::save(
        dir,
        MANIFEST,
        &Manifest {
            backend: crate::backend_name(cli).to_owned(),
            month,
            tenants: prepared,
        },
    )?;
    Ok(json!({
        "scenario": "big-db",
        "backend": crate::backend_name(cli),
        "tenants": tenants,
        "subscriptions": tenants * per_tenant,
        "written": written,
        "setup_seconds": round(setup_seconds),
        "fill_seconds": round(fill_seconds),
        "rows_per_s": round((written.events + written.deliveries + written.attempts) as f64 / fill_seconds),
        "database_bytes": size,
    }))
}

/// One list page, read as an app or the dashboard reads it.
struct ListQuery {
    name: &'static str,
    /// The path for the `n`-th request: any tenant, any page.
    path: Box<dyn Fn(u64) -> (usize, String) + Send + Sync>,
}

/// The list pages of DESIGN §8 on a prepared database: the events feed
/// (first page, deep in the cursor, by type), a subscription's delivery
/// log (all, dead letters, pending), one delivery with its attempts, and
/// signature requests by status. Each is read `--events` times (default
/// 200), spread over tenants, subscriptions and depths; one request at a
/// time, so each figure is the query's own.
pub(crate) async fn lists(cli: &Cli) -> anyhow::Result<Value> {
    let dir = cli
        .db_dir
        .as_deref()
        .context("lists needs --db-dir DIR, prepared by big-db")?;
    let manifest: Manifest = fill::load(dir, MANIFEST)?;
    ensure!(
        manifest.backend == crate::backend_name(cli),
        "{} was prepared on {}: pass the same backend",
        dir.display(),
        manifest.backend
    );
    let servers = Servers::start(cli, &[]).await?;
    let month = Arc::new(manifest.month.clone());
    let tenants = manifest.tenants.len();
    let subscriptions: Vec<Vec<String>> = manifest.tenants.iter().map(|t| t.subscriptions.clone()).collect();
    let subscriptions = Arc::new(subscriptions);
    // A round of events (one per tenant) spread over the month, request
    // `n` somewhere else; never in its first two days, which the retention
    // purge may have taken by now.
    let spread = |n: u64, rounds: u64| {
        let kept = rounds - rounds * 2 / 31;
        rounds * 2 / 31 + (n.wrapping_mul(2_654_435_761)) % kept.max(1)
    };
    let event_of_tenant = {
        let month = month.clone();
        move |n: u64| {
            let t = (n as usize) % tenants;
            let round = spread(n, month.events / month.tenants.max(1));
            (t, month.event_id(round * month.tenants + t as u64))
        }
    };
    let queries: Vec<ListQuery> = vec![
        ListQuery {
            name: "events, first page",
            path: Box::new(move |n| ((n as usize) % tenants, "/v1/events?limit=50".to_owned())),
        },
        ListQuery {
            name: "events, after a cursor",
            path: Box::new({
                let event_of_tenant = event_of_tenant.clone();
                move |n| {
                    let (t, id) = event_of_tenant(n);
                    (t, format!("/v1/events?limit=50&after={id}"))
                }
            }),
        },
        ListQuery {
            name: "events, by type after a cursor",
            path: Box::new({
                let event_of_tenant = event_of_tenant.clone();
                move |n| {
                    let (t, id) = event_of_tenant(n);
                    let kind = fill::EVENT_TYPES[(n as usize / tenants) % fill::EVENT_TYPES.len()];
                    (t, format!("/v1/events?limit=50&type={kind}&after={id}"))
                }
            }),
        },
        ListQuery {
            name: "delivery log",
            path: Box::new({
                let subscriptions = subscriptions.clone();
                move |n| {
                    let t = (n as usize) % tenants;
                    let s = &subscriptions[t][(n as usize / tenants) % subscriptions[t].len()];
                    (t, format!("/v1/webhooks/{s}/deliveries?limit=50"))
                }
            }),
        },
        ListQuery {
            name: "delivery log, dead letters",
            path: Box::new({
                let subscriptions = subscriptions.clone();
                move |n| {
                    let t = (n as usize) % tenants;
                    let s = &subscriptions[t][(n as usize / tenants) % subscriptions[t].len()];
                    (t, format!("/v1/webhooks/{s}/deliveries?limit=50&status=failed"))
                }
            }),
        },
        ListQuery {
            name: "delivery log, pending",
            path: Box::new({
                let subscriptions = subscriptions.clone();
                move |n| {
                    let t = (n as usize) % tenants;
                    let s = &subscriptions[t][(n as usize / tenants) % subscriptions[t].len()];
                    (t, format!("/v1/webhooks/{s}/deliveries?limit=50&status=pending"))
                }
            }),
        },
        ListQuery {
            name: "one delivery with its attempts",
            path: Box::new({
                let month = month.clone();
                move |n| {
                    let t = (n as usize) % tenants;
                    let round = spread(n, month.events / month.tenants.max(1));
                    let i = round * month.tenants + t as u64;
                    (t, format!("/v1/deliveries/{}", month.delivery_id(i, n % 2)))
                }
            }),
        },
        ListQuery {
            name: "signature requests, ongoing",
            path: Box::new(move |n| {
                (
                    (n as usize) % tenants,
                    "/v1/signature_requests?limit=50&status=ongoing".to_owned(),
                )
            }),
        },
        ListQuery {
            name: "signature requests, done",
            path: Box::new(move |n| {
                (
                    (n as usize) % tenants,
                    "/v1/signature_requests?limit=50&status=done".to_owned(),
                )
            }),
        },
    ];
    let requests = if cli.smoke {
        10
    } else {
        cli.events.unwrap_or(200) as u64
    };
    let client = reqwest::Client::new();
    let mut figures = serde_json::Map::new();
    let mut failures = 0;
    for query in &queries {
        let mut took = Vec::with_capacity(requests as usize);
        for n in 0..requests {
            let (t, path) = (query.path)(n);
            let begun = Instant::now();
            let response = client
                .get(servers.nodes[0].url(&path))
                .bearer_auth(&manifest.tenants[t].key)
                .send()
                .await?;
            let status = response.status();
            let body = response.bytes().await?;
            took.push(begun.elapsed().as_secs_f64() * 1000.0);
            if !status.is_success() {
                failures += 1;
                eprintln!("{path}: {status} {}", String::from_utf8_lossy(&body));
            }
        }
        figures.insert(query.name.to_owned(), distribution(&mut took));
    }
    ensure!(failures == 0, "{failures} list requests failed");
    Ok(json!({
        "scenario": "lists",
        "backend": crate::backend_name(cli),
        "events_in_database": manifest.month.events,
        "requests_per_query": requests,
        "latency_ms": figures,
    }))
}

/// `drain`: endpoints come back after an outage to a backlog all due at
/// once (`--backlog` deliveries over `--endpoints` endpoints of one
/// tenant, written straight into the database while the server is
/// stopped), while another tenant publishes `--rate` events a second to
/// its own `--endpoints` endpoints. How fast the backlog drains, what the
/// fresh deliveries' latency is meanwhile (`--baseline`: the same fresh
/// traffic with no backlog), and how many claims each delivery took.
/// `--response-ms` makes the backlog's endpoints answer that slowly, to
/// see a lane drain at its pace (concurrency ÷ response time).
pub(crate) async fn drain(cli: &Cli, sink: &Arc<Sink>, sink_addr: SocketAddr) -> anyhow::Result<Value> {
    let (endpoints, backlog, rate, seconds) = if cli.smoke {
        (4, 2_000, 20, 2)
    } else {
        (cli.endpoints, cli.backlog, cli.rate.unwrap_or(20), cli.seconds)
    };
    ensure!(endpoints > 0, "--endpoints must be at least 1");
    let backlog_events = (backlog / endpoints as u64).max(1);
    let mut servers = Servers::start(cli, &[]).await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(32).build()?;
    let returning = servers.tenant("returning")?;
    let fresh = servers.tenant("fresh")?;
    let slow = if cli.response_ms > 0 {
        Behavior::Slow
    } else {
        Behavior::Fast
    };
    sink.slow_ms.store(cli.response_ms, Ordering::Relaxed);
    for index in 0..endpoints {
        crate::subscribe(&client, &servers, &returning, sink, sink_addr, index, slow).await?;
    }
    for index in endpoints..2 * endpoints {
        crate::subscribe(&client, &servers, &fresh, sink, sink_addr, index, Behavior::Fast).await?;
    }
    servers.stop();
    let written = if cli.baseline {
        0
    } else {
        let mut db = Db::open(&servers.dir, cli.database_url.as_deref()).await?;
        // The returning tenant's endpoints are the first made.
        fill::fill_backlog(&mut db, backlog_events, endpoints as u64, 10_000, now_ms()).await?
    };
    let back_at = Instant::now();
    servers.restart(cli.nodes)?;

    // Fresh traffic, timed on its own endpoints.
    let fresh_events = (rate * seconds) as usize;
    let crate::Published {
        begun: started,
        mut ack_ms,
    } = crate::publish(
        &client,
        servers.publish_urls(),
        &fresh,
        fresh_events,
        8,
        Some(rate as f64),
    )
    .await?;
    let expected_fresh = fresh_events * endpoints;
    let expected = written as usize + expected_fresh;
    let peak_rss = crate::wait_for_arrivals(cli, sink, || servers.rss_mib().1, expected).await;
    let claims = metric(&client, &servers, "signhook_claimed_deliveries_total").await?;
    let claim_calls = metric(&client, &servers, "signhook_claims_total").await?;
    let arrivals = sink.arrivals.lock().expect("no panics hold this lock").clone();
    let mut fresh_latency = Vec::new();
    let mut backlog_last = back_at;
    let mut backlog_arrived = 0usize;
    let mut duplicates = 0u64;
    for ((id, index), (at, count)) in &arrivals {
        duplicates += u64::from(count - 1);
        if *index < endpoints {
            backlog_arrived += 1;
            backlog_last = backlog_last.max(*at);
        } else if let Some(begun) = started.get(id) {
            fresh_latency.push(at.saturating_duration_since(*begun).as_secs_f64() * 1000.0);
        }
    }
    let drain_seconds = backlog_last.saturating_duration_since(back_at).as_secs_f64();
    let per_lane: HashMap<usize, usize> =
        arrivals
            .keys()
            .filter(|(_, index)| *index < endpoints)
            .fold(HashMap::new(), |mut counts, (_, index)| {
                *counts.entry(*index).or_default() += 1;
                counts
            });
    Ok(json!({
        "scenario": "drain",
        "baseline": cli.baseline,
        "backend": crate::backend_name(cli),
        "nodes": cli.nodes,
        "endpoints_returning": endpoints,
        "endpoints_fresh": endpoints,
        "response_ms": cli.response_ms,
        "backlog": written,
        "backlog_delivered": backlog_arrived,
        "drain_seconds": round(drain_seconds),
        "backlog_deliveries_per_s": round(backlog_arrived as f64 / drain_seconds.max(f64::EPSILON)),
        "backlog_per_endpoint_min": per_lane.values().min().copied().unwrap_or(0),
        "fresh_rate_per_s": rate,
        "fresh_latency_ms": distribution(&mut fresh_latency),
        "fresh_publish_ack_ms": distribution(&mut ack_ms),
        // Deliveries handed over at publish are not claimed; the backlog's
        // are. More claimed than the backlog means claims given back and
        // taken again (churn).
        "claims": claim_calls,
        "claimed_deliveries": claims,
        "deliveries_per_claim": round(claims / claim_calls.max(1.0)),
        "claimed_per_backlog_delivery": round(claims / (written.max(1) as f64)),
        "deliveries": arrivals.len(),
        "signature_failures": sink.bad_signatures.load(Ordering::Relaxed),
        "duplicates": duplicates,
        "missing": expected.saturating_sub(arrivals.len()),
        "server_peak_rss_mib": round(peak_rss),
    }))
}

/// The sum over nodes of one counter of their `/metrics`.
async fn metric(client: &reqwest::Client, servers: &Servers, name: &str) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for node in &servers.nodes {
        let text = client.get(node.url("/metrics")).send().await?.text().await?;
        total += text
            .lines()
            .filter(|line| line.starts_with(name) && !line.starts_with('#'))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    Ok(total)
}
