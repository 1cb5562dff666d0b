//! A real headless Chromium, driven through chromedriver (WebDriver), for
//! the tests of the pages people use.
//!
//! [`Browser::start`] runs Debian's `chromedriver` (or the one
//! `SIGNHOOK_TEST_CHROMEDRIVER` names) on a free loopback port and opens one
//! headless Chromium session with a fresh profile. Without chromedriver the
//! test fails, saying what to install: page tests never skip.

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// One headless Chromium session and its chromedriver.
pub struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn chromedriver() -> PathBuf {
    if let Some(path) = std::env::var_os("SIGNHOOK_TEST_CHROMEDRIVER") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from("/usr/bin/chromedriver");
    assert!(
        path.exists(),
        "the page tests drive a real Chromium: install Debian's `chromium` and `chromium-driver` \
         (apt-get install chromium chromium-driver) or set SIGNHOOK_TEST_CHROMEDRIVER"
    );
    path
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("its address").port()
        };
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            // This machine has no network beyond loopback: no background
            // fetches that would be refused at every start.
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--window-size=1024,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if let Ok(extra) = std::env::var("SIGNHOOK_TEST_CHROMIUM_ARGS") {
            args.extend(extra.split_whitespace().map(str::to_owned));
        }
        let mut options = serde_json::json!({ "args": args });
        if let Ok(binary) = std::env::var("SIGNHOOK_TEST_CHROMIUM") {
            options["binary"] = binary.into();
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        let url = format!("http://127.0.0.1:{port}");
        let client = crate::eventually(format_args!("chromedriver to answer on {url}"), || {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            builder.capabilities(capabilities.clone());
            let url = url.clone();
            async move { builder.connect(&url).await.map_err(|e| e.to_string()) }
        })
        .await;
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// The WebDriver session.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits for the page to load.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("the page opens");
    }

    /// The visible text of the first element `css` selects.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
            .text()
            .await
            .expect("its text")
    }

    /// The visible text of every element `css` selects, in page order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self.client.find_all(Locator::Css(css)).await.expect("a search") {
            texts.push(element.text().await.expect("its text"));
        }
        texts
    }

    /// The page's HTML as the browser holds it.
    pub async fn source(&self) -> String {
        self.client.source().await.expect("the page's source")
    }

    /// The current value of the form field `css` selects.
    pub async fn value(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
            .prop("value")
            .await
            .expect("its value")
            .unwrap_or_default()
    }

    /// Chooses the option whose value is `value` in the `<select>` `css` selects.
    pub async fn select(&self, css: &str, value: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` to choose in: {e}"))
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("no option `{value}` in `{css}`: {e}"));
    }

    /// The visible text of the whole page.
    pub async fn page_text(&self) -> String {
        self.text("body").await
    }

    /// Whether the page has an element `css` selects.
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("a search")
            .is_empty()
    }

    /// Clicks the button `css` selects that submits a form, and waits until
    /// the page it leads to has replaced this one and loaded.
    pub async fn submit(&self, css: &str) {
        let old = self.client.find(Locator::Css("html")).await.expect("a page");
        self.click(css).await;
        crate::eventually(format_args!("the page after `{css}`"), || {
            let old = old.clone();
            async move {
                // The old page's root goes stale once the new page is in.
                match old.tag_name().await {
                    Ok(_) => Err("still the old page"),
                    Err(_) => Ok(()),
                }
            }
        })
        .await;
        crate::eventually("the new page to load", || async {
            let state = self
                .client
                .execute("return document.readyState", Vec::new())
                .await
                .map_err(|e| e.to_string())?;
            if state == "complete" {
                Ok(())
            } else {
                Err(format!("readyState {state}"))
            }
        })
        .await;
    }

    /// Clicks the first element `css` selects.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` to click: {e}"))
            .click()
            .await
            .expect("the click");
    }

    /// Types `text` into the field `css` selects, after clearing it.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` to fill: {e}"));
        field.clear().await.expect("the field clears");
        field.send_keys(text).await.expect("typing");
    }

    /// Scrolls the element `css` selects to the top of the window (for a
    /// screenshot of it).
    pub async fn scroll_to(&self, css: &str) {
        let element = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` to scroll to: {e}"));
        let arg = serde_json::to_value(&element).expect("an element reference");
        self.client
            .execute("arguments[0].scrollIntoView(true)", vec![arg])
            .await
            .expect("scrolling");
    }

    /// Saves a PNG of the window to `target/screenshots/{name}.png` (for
    /// people to look at; not committed).
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("the screenshot is written");
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test still ends its driver (and so its browser).
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
