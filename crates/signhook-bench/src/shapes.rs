//! Load shapes that hurt (DESIGN §8, issue 18): `burst` — ten times the
//! sustained rate for a few seconds, then back — and `many-tenants` — a
//! thousand tenants with ten subscriptions each, events spread evenly
//! over them, so no cache of one tenant's subscriptions carries the load.

use crate::{distribution, round, wait_for_arrivals, Behavior, Cli, Servers, Sink};
use anyhow::ensure;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Publish → receipt latencies, in milliseconds, of the events `started`
/// (publish times by event id), over every endpoint they reached.
fn latencies(sink: &Sink, started: &HashMap<String, Instant>) -> Vec<f64> {
    sink.arrivals
        .lock()
        .expect("no panics hold this lock")
        .iter()
        .filter_map(|((id, _), (at, _))| {
            started
                .get(id)
                .map(|begun| at.saturating_duration_since(*begun).as_secs_f64() * 1000.0)
        })
        .collect()
}

/// Counts of what the sink saw: (deliveries, duplicates).
fn counts(sink: &Sink) -> (usize, u64) {
    let arrivals = sink.arrivals.lock().expect("no panics hold this lock");
    let duplicates = arrivals.values().map(|(_, n)| u64::from(n - 1)).sum();
    (arrivals.len(), duplicates)
}

/// `burst`: one tenant, 10 endpoints; `--rate` events a second (default
/// 200) for 5 s, ten times that for 5 s, the rate again for 10 s. The
/// latency of each phase's events, and how long the last burst event took
/// to arrive.
pub(crate) async fn burst(cli: &Cli, sink: &Arc<Sink>, sink_addr: SocketAddr) -> anyhow::Result<Value> {
    let rate = cli.rate.unwrap_or(if cli.smoke { 50 } else { 200 }) as f64;
    let (before, during, after) = if cli.smoke { (1.0, 1.0, 1.0) } else { (5.0, 5.0, 10.0) };
    let endpoints = if cli.smoke { 3 } else { 10 };
    let servers = Servers::start(cli, &[]).await?;
    let key = servers.tenant("burst")?;
    let publishers = cli.concurrency.unwrap_or(64);
    let client = reqwest::Client::builder().pool_max_idle_per_host(publishers).build()?;
    for index in 0..endpoints {
        crate::subscribe(&client, &servers, &key, sink, sink_addr, index, Behavior::Fast).await?;
    }
    let mut phases = Vec::new();
    let mut published = 0;
    for (name, phase_rate, seconds) in [
        ("before", rate, before),
        ("burst", rate * 10.0, during),
        ("after", rate, after),
    ] {
        let events = (phase_rate * seconds) as usize;
        let run = crate::publish(
            &client,
            servers.publish_urls(),
            &key,
            events,
            publishers,
            Some(phase_rate),
        )
        .await?;
        published += events;
        phases.push((name, phase_rate, run));
    }
    let expected = published * endpoints;
    let peak_rss = wait_for_arrivals(cli, sink, || servers.rss_mib().1, expected).await;
    let (deliveries, duplicates) = counts(sink);
    let mut figures = serde_json::Map::new();
    for (name, phase_rate, mut run) in phases {
        figures.insert(
            name.to_owned(),
            json!({
                "rate_per_s": phase_rate,
                "events": run.begun.len(),
                "latency_ms": distribution(&mut latencies(sink, &run.begun)),
                "publish_ack_ms": distribution(&mut run.ack_ms),
            }),
        );
    }
    Ok(json!({
        "scenario": "burst",
        "backend": crate::backend_name(cli),
        "nodes": cli.nodes,
        "subscriptions": endpoints,
        "publishers": publishers,
        "phases": figures,
        "deliveries": deliveries,
        "signature_failures": sink.bad_signatures.load(Ordering::Relaxed),
        "duplicates": duplicates,
        "missing": expected.saturating_sub(deliveries),
        "server_peak_rss_mib": round(peak_rss),
    }))
}

/// `many-tenants`: `--tenants` tenants (default 1,000) with
/// `--subscriptions-per-tenant` subscriptions each (default 10); `--events`
/// events (default 20,000) published round the tenants, as fast as the
/// publishers go or at `--rate`.
pub(crate) async fn many_tenants(cli: &Cli, sink: &Arc<Sink>, sink_addr: SocketAddr) -> anyhow::Result<Value> {
    let (tenants, per_tenant, events) = if cli.smoke {
        (10, 2, 100)
    } else {
        (
            cli.tenants.unwrap_or(1_000),
            cli.subscriptions_per_tenant,
            cli.events.unwrap_or(20_000),
        )
    };
    ensure!(
        tenants > 0 && per_tenant > 0,
        "--tenants and --subscriptions-per-tenant must be at least 1"
    );
    let servers = Servers::start(cli, &[]).await?;
    let publishers = cli.concurrency.unwrap_or(32);
    let client = reqwest::Client::builder().pool_max_idle_per_host(publishers).build()?;
    let setup_started = Instant::now();
    let mut keys = Vec::with_capacity(tenants as usize);
    for t in 0..tenants {
        let key = servers.tenant(&format!("tenant {t}"))?;
        for k in 0..per_tenant {
            let index = (t * per_tenant + k) as usize;
            crate::subscribe(&client, &servers, &key, sink, sink_addr, index, Behavior::Fast).await?;
        }
        keys.push(key);
    }
    let setup_seconds = setup_started.elapsed().as_secs_f64();
    let publish_start = Instant::now();
    let mut published = crate::publish_as(
        &client,
        servers.publish_urls(),
        Arc::new(keys),
        events,
        publishers,
        cli.rate.map(|r| r as f64),
    )
    .await?;
    let publish_seconds = publish_start.elapsed().as_secs_f64();
    let expected = events * per_tenant as usize;
    let peak_rss = wait_for_arrivals(cli, sink, || servers.rss_mib().1, expected).await;
    let (deliveries, duplicates) = counts(sink);
    let last = sink
        .arrivals
        .lock()
        .expect("no panics hold this lock")
        .values()
        .map(|(at, _)| *at)
        .max()
        .unwrap_or(publish_start);
    let span = last
        .saturating_duration_since(publish_start)
        .as_secs_f64()
        .max(f64::EPSILON);
    Ok(json!({
        "scenario": "many-tenants",
        "backend": crate::backend_name(cli),
        "nodes": cli.nodes,
        "tenants": tenants,
        "subscriptions": tenants * per_tenant,
        "setup_seconds": round(setup_seconds),
        "publishers": publishers,
        "events_published": events,
        "events_accepted_per_s": round(events as f64 / publish_seconds),
        "deliveries": deliveries,
        "deliveries_per_s": round(deliveries as f64 / span),
        "latency_ms": distribution(&mut latencies(sink, &published.begun)),
        "publish_ack_ms": distribution(&mut published.ack_ms),
        "signature_failures": sink.bad_signatures.load(Ordering::Relaxed),
        "duplicates": duplicates,
        "missing": expected.saturating_sub(deliveries),
        "server_peak_rss_mib": round(peak_rss),
    }))
}
