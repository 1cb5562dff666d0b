//! `ordered` (DESIGN §10, issue 17): the same load — `--requests`
//! signature requests × `--events-per-request` events, each request's
//! events published one round after the other — delivered once to an
//! unordered subscription and once to one with `"ordering":
//! "signature_request"`, each on fresh servers, so the cost of order is
//! the ratio of the two rates. The sink notes each request's `sequence`s
//! as they arrive and counts arrivals that came after a later one.

use crate::{round, signer_done_data, wait_for_arrivals, Behavior, Cli, Servers, Sink};
use anyhow::Context;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// `signer.done` of request `request` at `seq` (its `sequence` is
/// `seq + 1`).
fn event_of(request: usize, seq: usize) -> Value {
    let mut data = signer_done_data(request);
    data["signature_request"]["id"] = json!(format!("sr_bench{request:08}"));
    data["signature_request"]["sequence"] = json!(seq + 1);
    json!({"type": "signer.done", "data": data})
}

/// Publishes round `seq` of every request over `publishers` connections;
/// the next round starts once this one was accepted, so each request's
/// events are created in `sequence` order.
async fn publish_rounds(
    client: &reqwest::Client,
    urls: Arc<Vec<String>>,
    key: &str,
    requests: usize,
    per_request: usize,
    publishers: usize,
) -> anyhow::Result<()> {
    for seq in 0..per_request {
        let (client, urls, key) = (client.clone(), urls.clone(), key.to_owned());
        crate::paced(requests, publishers, None, move |request| {
            let (client, urls, key) = (client.clone(), urls.clone(), key.clone());
            async move {
                crate::post_event(&client, &urls[request % urls.len()], &key, &event_of(request, seq)).await?;
                Ok(())
            }
        })
        .await?;
    }
    Ok(())
}

/// Signature requests and events per request: `--requests` ×
/// `--events-per-request`, or 20 × 5 for `--smoke`.
fn load(cli: &Cli) -> (usize, usize) {
    if cli.smoke {
        (20, 5)
    } else {
        (cli.requests, cli.events_per_request)
    }
}

/// One run: fresh servers, one subscription at sink path `index` with
/// `ordering`, the whole load; its figures.
async fn run_once(
    cli: &Cli,
    sink: &Arc<Sink>,
    sink_addr: SocketAddr,
    index: usize,
    ordering: &str,
) -> anyhow::Result<Value> {
    let (requests, per_request) = load(cli);
    let mut servers = Servers::start(cli, &[]).await?;
    let key = servers.tenant(&format!("ordered {ordering}"))?;
    let publishers = cli.concurrency.unwrap_or(64);
    let client = reqwest::Client::builder().pool_max_idle_per_host(publishers).build()?;
    let created = crate::create_subscription(
        &client,
        &servers,
        &key,
        json!({"url": format!("http://{sink_addr}/s/{index}"), "subscribed_events": ["signer.*"], "ordering": ordering}),
    )
    .await?;
    let secret = created["secret"].as_str().context("a secret")?;
    sink.verifiers
        .write()
        .expect("no panics hold this lock")
        .insert(index, (signhook_verify::Webhook::new(secret)?, Behavior::Fast));

    let started = Instant::now();
    publish_rounds(&client, servers.publish_urls(), &key, requests, per_request, publishers).await?;
    let publish_seconds = started.elapsed().as_secs_f64();
    let expected = requests * per_request;
    let arrived_here = |sink: &Sink| {
        sink.arrivals
            .lock()
            .expect("no panics hold this lock")
            .iter()
            .filter(|((_, i), _)| *i == index)
            .map(|(_, (at, n))| (*at, *n))
            .collect::<Vec<_>>()
    };
    let peak_rss = wait_for_arrivals(cli, sink, || servers.rss_mib().1, sink_total(sink, index) + expected).await;
    servers.stop();
    let arrivals = arrived_here(sink);
    let last = arrivals.iter().map(|(at, _)| *at).max().unwrap_or(started);
    let span = last.saturating_duration_since(started).as_secs_f64().max(f64::EPSILON);
    let duplicates: u64 = arrivals.iter().map(|(_, n)| u64::from(n - 1)).sum();
    let sequences = sink.sequences.lock().expect("no panics hold this lock");
    let out_of_order: usize = sequences
        .iter()
        .filter(|((i, _), _)| *i == index)
        .map(|(_, seen)| {
            let mut highest = 0;
            seen.iter()
                .filter(|&&s| {
                    let late = s < highest;
                    highest = highest.max(s);
                    late
                })
                .count()
        })
        .sum();
    Ok(json!({
        "ordering": ordering,
        "events_published": expected,
        "events_accepted_per_s": round(expected as f64 / publish_seconds),
        "deliveries": arrivals.len(),
        "deliveries_per_s": round(arrivals.len() as f64 / span),
        "out_of_order": out_of_order,
        "duplicates": duplicates,
        "missing": expected.saturating_sub(arrivals.len()),
        "server_peak_rss_mib": round(peak_rss),
    }))
}

/// First arrivals so far at every sink path but `index` (the runs share
/// the sink; each waits for its own).
fn sink_total(sink: &Sink, index: usize) -> usize {
    sink.arrivals
        .lock()
        .expect("no panics hold this lock")
        .keys()
        .filter(|(_, i)| *i != index)
        .count()
}

/// `ordered`: the unordered run, then the ordered one; both rates and
/// their ratio.
pub(crate) async fn ordered(cli: &Cli, sink: &Arc<Sink>, sink_addr: SocketAddr) -> anyhow::Result<Value> {
    sink.record_sequences.store(true, Ordering::Relaxed);
    let unordered = run_once(cli, sink, sink_addr, 0, "none").await?;
    let ordered = run_once(cli, sink, sink_addr, 1, "signature_request").await?;
    let rate = |run: &Value| run["deliveries_per_s"].as_f64().unwrap_or(0.0);
    let count = |name: &str| unordered[name].as_u64().unwrap_or(0) + ordered[name].as_u64().unwrap_or(0);
    Ok(json!({
        "scenario": "ordered",
        "backend": crate::backend_name(cli),
        "nodes": cli.nodes,
        "requests": load(cli).0,
        "events_per_request": load(cli).1,
        "unordered_deliveries_per_s": rate(&unordered),
        "ordered_deliveries_per_s": rate(&ordered),
        "ordered_over_unordered": round(rate(&ordered) / rate(&unordered).max(f64::EPSILON)),
        "out_of_order_ordered": ordered["out_of_order"],
        "out_of_order_unordered": unordered["out_of_order"],
        "runs": [unordered, ordered],
        "deliveries": count("deliveries"),
        "duplicates": count("duplicates"),
        "missing": count("missing"),
        "signature_failures": sink.bad_signatures.load(Ordering::Relaxed),
    }))
}
