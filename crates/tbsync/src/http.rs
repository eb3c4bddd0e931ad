//! The ThingsBoard HTTP device API: `POST {url}/api/v1/{token}/telemetry`.
//!
//! One [`reqwest::Client`] per server, so connections are reused (keep-alive
//! pool). rustls only (no OpenSSL); `--ca-file` adds a private CA. Request
//! bodies are gzipped only after a probe showed the server accepts it (the
//! real server does not decompress request bodies: a gzipped body is
//! malformed JSON, answered 500).

use std::time::Duration;

use reqwest::StatusCode;

use crate::Error;

/// Whether to gzip request bodies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Gzip {
    /// Probe once per server (a gzipped empty array); gzip if it got a 200.
    #[default]
    Auto,
    /// Never compress.
    Never,
    /// Always compress (a proxy in front is known to decompress).
    Always,
}

/// Outcome of a failed device-API request, classified for the sync.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// 401: the token is unknown or revoked. Stop this device.
    #[error(
        "401 Unauthorized: the server does not know this device's access token (revoked or wrong server?); re-pair the device"
    )]
    Unauthorized,
    /// 413: the body is over the server's limit. Split the batch.
    #[error("413 Payload Too Large")]
    TooLarge,
    /// 429, 5xx, timeouts, connection errors: back off and retry.
    #[error("{0}")]
    Retry(String),
    /// Any other answer; not retried in this run.
    #[error("unexpected answer {0}")]
    Other(String),
    /// The TLS handshake failed (untrusted or wrong certificate); not
    /// retried in this run: waiting does not fix a certificate.
    #[error("{0}")]
    Tls(String),
}

/// Settings of the HTTP client.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Extra root certificate (PEM) for a private CA.
    pub ca_pem: Option<Vec<u8>>,
    /// Request body compression.
    pub gzip: Gzip,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(30),
            ca_pem: None,
            gzip: Gzip::Auto,
        }
    }
}

/// Client of one server's HTTP device API.
pub struct DeviceApi {
    client: reqwest::Client,
    base: String,
    gzip: Gzip,
    /// Result of the gzip probe (`None`: not probed yet).
    gzip_ok: Option<bool>,
}

/// Builds a reqwest client with rustls and an optional private CA.
pub fn build_client(timeout: Duration, ca_pem: Option<&[u8]>) -> Result<reqwest::Client, Error> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(8);
    if let Some(pem) = ca_pem {
        let cert = reqwest::Certificate::from_pem(pem)
            .map_err(|e| Error::Config(format!("--ca-file is not a PEM certificate: {e}")))?;
        b = b.add_root_certificate(cert);
    }
    b.build()
        .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = e.write_all(body);
    e.finish().unwrap_or_default()
}

/// Classifies a status code.
pub fn classify(status: StatusCode) -> Result<(), SendError> {
    match status.as_u16() {
        200..=299 => Ok(()),
        401 => Err(SendError::Unauthorized),
        413 => Err(SendError::TooLarge),
        408 | 429 | 500..=599 => Err(SendError::Retry(format!("server answered {status}"))),
        _ => Err(SendError::Other(status.to_string())),
    }
}

fn transport_error(e: &reqwest::Error) -> SendError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "connection failed"
    };
    // reqwest's Display hides the cause; include the chain.
    let mut chain = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        chain.push_str(&format!(": {s}"));
        src = s.source();
    }
    if chain.contains("certificate") || chain.contains("CertificateUnknown") {
        return SendError::Tls(format!(
            "TLS: the server's certificate is not trusted{chain}; for a private CA give its \
             certificate with --ca-file, and check that the URL names the host the certificate \
             was issued for"
        ));
    }
    SendError::Retry(format!("{what}: {e}{chain}"))
}

/// One POST of a JSON body (gzipped if `gz`), classified.
async fn post_body(
    client: &reqwest::Client,
    url: String,
    body: Vec<u8>,
    gz: bool,
) -> Result<(), SendError> {
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    let body = if gz {
        req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
        gzip(&body)
    } else {
        body
    };
    let resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| transport_error(&e))?;
    let status = resp.status();
    // Drain the body so the connection goes back to the pool.
    let _ = resp.bytes().await;
    classify(status)
}

impl DeviceApi {
    /// A client for the server at `base` (`http://host:port` or `https://…`).
    pub fn new(base: &str, opts: &HttpOptions) -> Result<DeviceApi, Error> {
        let base = crate::outbox::normalize_url(base);
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Config(format!(
                "{base}: the HTTP transport needs an http:// or https:// URL"
            )));
        }
        Ok(DeviceApi {
            client: build_client(opts.timeout, opts.ca_pem.as_deref())?,
            base,
            gzip: opts.gzip,
            gzip_ok: match opts.gzip {
                Gzip::Auto => None,
                Gzip::Never => Some(false),
                Gzip::Always => Some(true),
            },
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether bodies are gzipped (`None`: not probed yet).
    pub fn gzip_enabled(&self) -> Option<bool> {
        self.gzip_ok
    }

    async fn post(
        &self,
        token: &str,
        what: &str,
        body: Vec<u8>,
        gz: bool,
    ) -> Result<(), SendError> {
        let url = format!("{}/api/v1/{token}/{what}", self.base);
        post_body(&self.client, url, body, gz).await
    }

    async fn probe_gzip(&mut self, token: &str) {
        if self.gzip_ok.is_some() || self.gzip != Gzip::Auto {
            return;
        }
        match self.post(token, "telemetry", b"[]".to_vec(), true).await {
            Ok(()) => self.gzip_ok = Some(true),
            // Unknown token: we learnt nothing; probe again with another.
            Err(SendError::Unauthorized) => {}
            Err(_) => self.gzip_ok = Some(false),
        }
    }

    /// Posts a telemetry body (a JSON array of points).
    pub async fn post_telemetry(&mut self, token: &str, body: Vec<u8>) -> Result<(), SendError> {
        self.probe_gzip(token).await;
        let gz = self.gzip_ok == Some(true);
        self.post(token, "telemetry", body, gz).await
    }

    /// Starts posting a telemetry body on a runtime task and returns at
    /// once (after the gzip probe, if one is due), so the caller can prepare
    /// the next batch while this one is in flight. On a multi-thread runtime
    /// the request runs in parallel with the caller.
    pub async fn spawn_telemetry(
        &mut self,
        token: &str,
        body: Vec<u8>,
    ) -> tokio::task::JoinHandle<Result<(), SendError>> {
        self.probe_gzip(token).await;
        let gz = self.gzip_ok == Some(true);
        let client = self.client.clone();
        let url = format!("{}/api/v1/{token}/telemetry", self.base);
        tokio::spawn(async move { post_body(&client, url, body, gz).await })
    }

    /// Posts client attributes (a JSON object).
    pub async fn post_attributes(
        &self,
        token: &str,
        json: &serde_json::Value,
    ) -> Result<(), SendError> {
        self.post(token, "attributes", json.to_string().into_bytes(), false)
            .await
    }
}
