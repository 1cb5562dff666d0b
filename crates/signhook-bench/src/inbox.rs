//! `inbox` (DESIGN §6 and §8, issue 16): a real `signhook inbox` in front
//! of the sink. Senders post Standard Webhooks requests, each a new event
//! id, first at `--rate` (default 1,000/s) for the ack latency — the time
//! from the POST to its 2xx, which means the request is on disk — then as
//! fast as `--concurrency` connections go, for acks per second. Every
//! request is forwarded to the sink with its original headers, which
//! verifies each one with the sender's secret. Last, the same senders post
//! as many requests straight to the sink, no inbox between: what this load
//! generator and sink reach alone on the machine, in the same run, beside
//! the `wrk` ceiling (a C client, one exchange per request, where the
//! inbox's path makes two and a durable write).

use crate::{distribution, round, Behavior, Cli, Sink};
use anyhow::{ensure, Context};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The `signhook inbox` child process.
struct InboxNode {
    child: Child,
    addr: SocketAddr,
}

impl InboxNode {
    /// `signhook inbox` with one Standard Webhooks source at `/hooks`,
    /// verified by `secret`, forwarding to `forward_to`.
    fn start(cli: &Cli, data_dir: &std::path::Path, secret: &str, forward_to: &str) -> anyhow::Result<Self> {
        let bin = crate::server_binary(cli)?;
        let mut child = Command::new(&bin)
            .args(["inbox", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--source-path", "/hooks", "--scheme", "standard-webhooks"])
            .args(["--secret", secret, "--forward-to", forward_to])
            .env("RUST_LOG", "warn,signhook_inbox=info,signhook=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} inbox", bin.display()))?;
        let addr = crate::announced_addr(&mut child, "signhook inbox is receiving")?;
        Ok(Self { child, addr })
    }

    /// Resident memory at its peak, in MiB (Linux).
    fn peak_rss_mib(&self) -> f64 {
        crate::rss_mib_of(&self.child).1
    }
}

impl Drop for InboxNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts `count` signed requests, event ids `msg_{first}`… on, over
/// `concurrency` connections at `rate` per second in all when given; each
/// one's ack latency in milliseconds, and the seconds it all took.
async fn send(
    client: &reqwest::Client,
    url: &str,
    secret: &signhook_verify::WebhookSecret,
    first: usize,
    count: usize,
    concurrency: usize,
    rate: Option<f64>,
) -> anyhow::Result<(Vec<f64>, f64)> {
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let started = Instant::now();
    let (client, url, secret, recorded) = (client.clone(), url.to_owned(), secret.clone(), latencies.clone());
    crate::paced(count, concurrency, rate, move |i| {
        let (client, url, secret, latencies) = (client.clone(), url.clone(), secret.clone(), recorded.clone());
        async move {
            let id = format!("msg_bench{:010}", first + i);
            let timestamp = chrono::Utc::now().timestamp();
            // A whole envelope: the sink parses what it verifies.
            let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let body = json!({"id": id, "type": "signer.done", "created_at": created_at, "data": {"i": first + i}})
                .to_string();
            let signature = signhook_verify::sign(&secret, &id, timestamp, body.as_bytes());
            let begun = Instant::now();
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(body)
                .send()
                .await?;
            // The inbox acks 200 or 202; the sink (posted to directly) 2xx
            // as it answers any delivery.
            ensure!(response.status().is_success(), "{url} answered {}", response.status());
            latencies
                .lock()
                .expect("no panics hold this lock")
                .push(begun.elapsed().as_secs_f64() * 1000.0);
            Ok(())
        }
    })
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let latencies = std::mem::take(&mut *latencies.lock().expect("no panics hold this lock"));
    Ok((latencies, seconds))
}

/// `inbox`: the ack latency at `--rate`, then acks per second flat out;
/// every request forwarded and verified at the sink.
pub(crate) async fn inbox(cli: &Cli, sink: &Arc<Sink>, sink_addr: SocketAddr) -> anyhow::Result<Value> {
    let rate = cli.rate.unwrap_or(if cli.smoke { 200 } else { 1_000 }) as f64;
    let paced = if cli.smoke { 200 } else { (rate * 10.0) as usize };
    let flat_out = cli.events.unwrap_or(if cli.smoke { 200 } else { 20_000 });
    let concurrency = cli.concurrency.unwrap_or(64);
    let secret = signhook_verify::WebhookSecret::from_bytes(&[9; 32]);
    let secret_text = secret.expose().to_owned();
    sink.verifiers
        .write()
        .expect("no panics hold this lock")
        .insert(0, (signhook_verify::Webhook::new(&secret_text)?, Behavior::Fast));
    let data_dir = tempfile::tempdir()?;
    let node = InboxNode::start(cli, data_dir.path(), &secret_text, &format!("http://{sink_addr}/s/0"))?;
    let url = format!("http://{}/hooks", node.addr);
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;

    let (mut paced_latencies, _) = send(&client, &url, &secret, 0, paced, concurrency, Some(rate)).await?;
    let (mut flat_latencies, flat_seconds) = send(&client, &url, &secret, paced, flat_out, concurrency, None).await?;
    let expected = paced + flat_out;
    let peak_rss = crate::wait_for_arrivals(cli, sink, || node.peak_rss_mib(), expected).await;
    let forwarded = sink.arrivals.lock().expect("no panics hold this lock").len();
    let duplicates: u64 = sink
        .arrivals
        .lock()
        .expect("no panics hold this lock")
        .values()
        .map(|(_, n)| u64::from(n - 1))
        .sum();
    let sink_url = format!("http://{sink_addr}/s/0");
    let (_, direct_seconds) = send(&client, &sink_url, &secret, expected, flat_out, concurrency, None).await?;
    let direct_per_s = flat_out as f64 / direct_seconds;
    let acks_per_s = flat_out as f64 / flat_seconds;
    Ok(json!({
        "scenario": "inbox",
        "paced_rate_per_s": rate,
        "paced_requests": paced,
        "ack_latency_ms_at_rate": distribution(&mut paced_latencies),
        "flat_out_requests": flat_out,
        "connections": concurrency,
        "acks_per_s": round(acks_per_s),
        "direct_to_sink_per_s": round(direct_per_s),
        "acks_over_direct": round(acks_per_s / direct_per_s),
        "ack_latency_ms_flat_out": distribution(&mut flat_latencies),
        "deliveries": forwarded,
        "duplicates": duplicates,
        "missing": expected.saturating_sub(forwarded),
        "signature_failures": sink.bad_signatures.load(Ordering::Relaxed),
        "inbox_peak_rss_mib": round(peak_rss),
    }))
}
