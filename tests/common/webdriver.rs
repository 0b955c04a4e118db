//! A real headless Chromium driven over the W3C WebDriver protocol (Debian's
//! `chromium` and `chromium-driver`), through a small JSON-over-HTTP client.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The WebDriver element key (W3C).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running `chromedriver`, stopped on drop.
pub struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

impl Driver {
    /// `None` (with the reason) when no browser or driver is installed.
    pub async fn start() -> Result<Driver, String> {
        let driver = find(&["chromedriver"]).ok_or("chromedriver is not installed")?;
        find(&["chromium", "chromium-browser", "google-chrome"])
            .ok_or("chromium is not installed")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let start = Instant::now();
        loop {
            if let Ok(r) = d.http.get(format!("{}/status", d.base)).send().await
                && r.status().is_success()
            {
                return Ok(d);
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err("chromedriver did not start".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new browser with a profile of its own (its own cookie jar: another device).
    pub async fn browser(&self, profile: &Path) -> Browser {
        let binary = find(&["chromium", "chromium-browser", "google-chrome"]).unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", "--window-size=1024,768",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let reply: Value = self
            .http
            .post(format!("{}/session", self.base))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {reply}"))
            .to_owned();
        Browser {
            url: format!("{}/session/{id}", self.base),
            http: self.http.clone(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser (a WebDriver session).
pub struct Browser {
    url: String,
    http: reqwest::Client,
}

impl Browser {
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let reply: Value = req
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match reply["value"]["error"].as_str() {
            Some(error) => Err(format!("{error}: {}", reply["value"]["message"])),
            None => Ok(reply["value"].clone()),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {path}: {e}"),
        }
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The element found by a locator strategy (`css selector`, `xpath`).
    async fn find_by(&self, using: &str, value: &str) -> String {
        let query = json!({"using": using, "value": value});
        let v = self
            .call(reqwest::Method::POST, "/element", Some(query))
            .await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    /// The element matching a CSS selector.
    pub async fn find(&self, css: &str) -> String {
        self.find_by("css selector", css).await
    }

    /// The element found by XPath (e.g. a button by its text).
    pub async fn find_xpath(&self, xpath: &str) -> String {
        self.find_by("xpath", xpath).await
    }

    pub async fn click(&self, element: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Clicks the button whose text is `text`.
    pub async fn click_button(&self, text: &str) {
        let b = self
            .find_xpath(&format!("//button[normalize-space()='{text}']"))
            .await;
        self.click(&b).await;
    }

    pub async fn type_into(&self, element: &str, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The page's visible text, read in one step (no element reference that a
    /// navigation could make stale).
    async fn try_text(&self) -> Result<String, String> {
        let script = json!({
            "script": "return document.body ? document.body.innerText : '';",
            "args": [],
        });
        let v = self
            .try_call(reqwest::Method::POST, "/execute/sync", Some(script))
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.try_text()
            .await
            .unwrap_or_else(|e| panic!("page text: {e}"))
    }

    /// The page's text once it contains `needle` (a click's navigation may still be
    /// under way when the click returns); panics with the text after 10 s.
    pub async fn wait_text(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            // While a navigation is under way the page may not answer: try again.
            let text = self.try_text().await.unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "page never showed {needle:?}: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The browser's cookies for the current page.
    pub async fn cookies(&self) -> Vec<Value> {
        self.call(reqwest::Method::GET, "/cookie", None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Saves a PNG of the page.
    pub async fn screenshot(&self, path: &Path) {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    pub async fn quit(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}
