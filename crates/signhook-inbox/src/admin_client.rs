//! The CLI's side of the admin routes (`signhook inbox list|show|replay
//! --admin URL [--admin-token T]`): one request each, the answer's JSON
//! returned as it came, or an error that says what the inbox answered.

use serde_json::Value;

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The admin URL is not a URL.
    #[error("--admin: {0}")]
    Url(#[from] url::ParseError),
    /// The inbox could not be reached.
    #[error("reaching the inbox's admin listener")]
    Unreachable(#[from] reqwest::Error),
    /// The inbox refused: its status and error body.
    #[error("the inbox answered {status}: {body}")]
    Refused {
        /// The status code.
        status: u16,
        /// Its body.
        body: String,
    },
}

/// An admin listener's client.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: url::Url,
    token: Option<String>,
    client: reqwest::Client,
}

impl AdminClient {
    /// The admin listener at `base` (e.g. `http://127.0.0.1:8801`).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, AdminError> {
        Ok(Self {
            base: url::Url::parse(base)?,
            token,
            client: reqwest::Client::builder().no_proxy().build()?,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, query: &[(&str, String)]) -> Result<Value, AdminError> {
        let mut request = self.client.request(method, self.base.join(path)?).query(query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            return Err(AdminError::Refused {
                status: status.as_u16(),
                body,
            });
        }
        serde_json::from_str(&body).map_err(|_| AdminError::Refused {
            status: status.as_u16(),
            body,
        })
    }

    /// `inbox list [--status S]`.
    pub async fn list(&self, status: Option<&str>) -> Result<Value, AdminError> {
        let query: Vec<_> = status.map(|s| ("status", s.to_owned())).into_iter().collect();
        self.call(reqwest::Method::GET, "/admin/requests", &query).await
    }

    /// `inbox show ID`.
    pub async fn show(&self, event_id: &str) -> Result<Value, AdminError> {
        let path = format!("/admin/requests/{}", encode_segment(event_id));
        self.call(reqwest::Method::GET, &path, &[]).await
    }

    /// `inbox replay ID`.
    pub async fn replay(&self, event_id: &str) -> Result<Value, AdminError> {
        let path = format!("/admin/requests/{}/replay", encode_segment(event_id));
        self.call(reqwest::Method::POST, &path, &[]).await
    }

    /// `inbox replay --dead-letters [--since T]`.
    pub async fn replay_dead(&self, since: Option<&str>) -> Result<Value, AdminError> {
        let query: Vec<_> = since.map(|s| ("since", s.to_owned())).into_iter().collect();
        self.call(reqwest::Method::POST, "/admin/dead-letters/replay", &query)
            .await
    }
}

/// `id` as one path segment (event ids such as `sha256:…` stay readable).
fn encode_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
