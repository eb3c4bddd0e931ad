//! A minimal Chrome DevTools Protocol client for the browser tests: launch
//! Debian's headless Chromium with a fresh profile, open a page target, send
//! commands over its WebSocket. Nothing is downloaded.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Where Debian puts Chromium; `OFMON_CHROMIUM` overrides.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("OFMON_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// A running headless Chromium (killed on drop).
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    port: u16,
}

impl Browser {
    /// Launches Chromium. Panics with instructions when it is not installed.
    pub fn launch() -> Browser {
        let exe = chromium_path();
        assert!(
            exe.is_file(),
            "Chromium not found at {}: the browser tests need Debian's `chromium` package \
             (apt-get install -y chromium), or OFMON_CHROMIUM=/path/to/chrome",
            exe.display()
        );
        let profile = tempfile::Builder::new()
            .prefix("ofmon-chromium-")
            .tempdir()
            .unwrap();
        let child = Command::new(&exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let port = wait_port(profile.path(), Duration::from_secs(60));
        Browser {
            child,
            _profile: profile,
            port,
        }
    }

    /// Opens a new page target and connects to it.
    pub fn new_page(&self) -> Page {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut r = agent
            .put(&format!(
                "http://127.0.0.1:{}/json/new?about:blank",
                self.port
            ))
            .send_empty()
            .unwrap();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        let ws_url = v["webSocketDebuggerUrl"].as_str().unwrap().to_string();
        let (ws, _) = tungstenite::connect(ws_url.as_str()).unwrap();
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        }
        Page { ws, next: 0 }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_port(profile: &Path, timeout: Duration) -> u16 {
    let file = profile.join("DevToolsActivePort");
    let t = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Some(Ok(port)) = text.lines().next().map(str::parse::<u16>)
        {
            return port;
        }
        assert!(
            t.elapsed() < timeout,
            "Chromium did not open its DevTools port within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One page (tab), driven over CDP.
pub struct Page {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Page {
    /// Sends a command and waits for its answer (events are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::text(msg.to_string())).unwrap();
        loop {
            let m = self.ws.read().unwrap();
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Evaluates JS (awaiting promises) and returns its value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "awaitPromise": true, "returnByValue": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("JS error in {expr:?}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is truthy; panics with `what` after `timeout`.
    pub fn wait_for(&mut self, expr: &str, timeout: Duration, what: &str) {
        let t = Instant::now();
        loop {
            let v = self.eval(&format!(
                "(() => {{ try {{ return !!({expr}); }} catch (_) {{ return false; }} }})()"
            ));
            if v.as_bool() == Some(true) {
                return;
            }
            assert!(
                t.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what} ({expr})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Navigates and waits for the load event to have fired.
    pub fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(30),
            "page load",
        );
    }

    /// Sets the viewport (CSS px) and device scale.
    pub fn viewport(&mut self, width: u32, height: u32, scale: f64, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile }),
        );
    }

    /// Presses a key (e.g. `Tab`, `Enter`) as the user would.
    pub fn press(&mut self, key: &str, code: &str, vk: u32) {
        for t in ["rawKeyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({ "type": t, "key": key, "code": code, "windowsVirtualKeyCode": vk }),
            );
        }
    }

    /// A PNG of the page, `height` CSS px tall from the top.
    pub fn screenshot(&mut self, width: u32, height: u32) -> Vec<u8> {
        let r = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 } }),
        );
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap()
    }
}
