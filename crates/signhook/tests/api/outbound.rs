//! The SSRF guard and proxies, with the real binary: proxy variables in the
//! server's environment are ignored (they sent endpoint names to the proxy
//! unvetted: `CONNECT localhost:443` reached 127.0.0.1), and the operator's
//! `--outbound-proxy` is asked only for targets the guard allows.

use crate::helpers::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP proxy on 127.0.0.1 that records the first line of every request
/// it is asked (`CONNECT host:port HTTP/1.1`) and answers 502.
struct Proxy {
    url: String,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let record = asked.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    record
                        .lock()
                        .unwrap()
                        .push(text.lines().next().unwrap_or("").to_owned());
                    let _ = stream
                        .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        Self { url, asked }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

/// Subscribes `url` to `signer.*`, publishes one event and returns the
/// delivery once its first attempt is recorded.
async fn first_attempt(server: &BinaryServer, key: &str, url: &str) -> Value {
    let (status, hook) = server
        .post(
            key,
            "/v1/webhooks",
            json!({"url": url, "subscribed_events": ["signer.*"]}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let (status, event) = server
        .post(
            key,
            "/v1/events",
            json!({"type": "signer.done", "data": crate::helpers::lifecycle_data("signer.done", json!({}))}),
        )
        .await;
    assert_eq!(status, 201, "{event}");
    let hook = hook["id"].as_str().unwrap();
    eventually(format_args!("the first attempt to {url}"), || async {
        let (_, list) = server.get(key, &format!("/v1/webhooks/{hook}/deliveries")).await;
        let Some(id) = list["data"][0]["id"].as_str() else {
            return Err(list);
        };
        let (_, delivery) = server.get(key, &format!("/v1/deliveries/{id}")).await;
        done_when(delivery["attempts"][0].is_object(), delivery)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_in_the_environment_are_ignored() {
    let proxy = Proxy::start().await;
    let db = Database::new(Backend::Sqlite).await;
    let key = cli_tenant_key(&db);
    let env: Vec<(String, String)> = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .map(|name| (name.to_string(), proxy.url.clone()))
    .collect();
    // No `--dev`: the guard is on.
    let server = BinaryServer::start_with_env(&db, &[], &env);
    let delivery = first_attempt(&server, &key, "https://localhost:9/hook").await;
    let attempt = &delivery["attempts"][0];
    assert_eq!(attempt["error_kind"], "blocked", "{delivery}");
    assert!(
        attempt["error_message"].as_str().unwrap().contains("loopback"),
        "{delivery}"
    );
    assert_eq!(proxy.asked(), Vec::<String>::new(), "the proxy was never asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_proxy_is_asked_only_for_allowed_targets() {
    let proxy = Proxy::start().await;
    let db = Database::new(Backend::Sqlite).await;
    let key = cli_tenant_key(&db);
    // The proxy is on loopback, which endpoints may not use: the operator's
    // proxy is reached anyway. 127.0.0.2 stands for a public address.
    let server = BinaryServer::start(
        &db,
        &["--outbound-proxy", &proxy.url, "--allow-endpoint-cidr", "127.0.0.2/32"],
    );
    // A name that resolves to loopback is refused before the proxy hears
    // of it.
    let refused = first_attempt(&server, &key, "https://localhost:9/hook").await;
    assert_eq!(refused["attempts"][0]["error_kind"], "blocked", "{refused}");
    assert_eq!(proxy.asked(), Vec::<String>::new(), "the proxy was never asked");
    // An allowed target goes through the proxy (which answers 502 here).
    let sent = first_attempt(&server, &key, "https://127.0.0.2:9/hook").await;
    assert_ne!(sent["attempts"][0]["error_kind"], "blocked", "{sent}");
    assert_eq!(proxy.asked(), vec!["CONNECT 127.0.0.2:9 HTTP/1.1".to_owned()]);
}

#[test]
fn a_proxy_that_is_not_an_http_url_is_refused_at_start() {
    for bad in [
        "socks5://127.0.0.1:1080",
        "proxy.internal:3128",
        "http://proxy.internal:3128/path",
    ] {
        let out = run_cli(&["serve", "--listen", "127.0.0.1:0", "--outbound-proxy", bad]);
        assert!(!out.status.success(), "{bad} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--outbound-proxy"), "{bad}: {stderr}");
    }
}
