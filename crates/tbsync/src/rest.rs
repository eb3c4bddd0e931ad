//! The ThingsBoard REST API (tenant user): login, device provisioning,
//! telemetry read-back.
//!
//! `POST /api/auth/login` → JWT, then `X-Authorization: Bearer <jwt>`.
//! [`RestClient::provision`] finds a device by name (`GET
//! /api/tenant/devices?deviceName=`) or creates it (`POST /api/device`), then
//! reads its access token (`GET /api/device/{id}/credentials`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Error;

/// A device on the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TbDevice {
    /// Device id (UUID).
    pub id: String,
    /// Name (unique per tenant).
    pub name: String,
    /// Device profile name.
    pub profile: Option<String>,
    /// Label.
    pub label: Option<String>,
}

/// One page of devices.
#[derive(Clone, Debug)]
pub struct Page {
    /// Devices of this page.
    pub devices: Vec<TbDevice>,
    /// Whether there is a next page.
    pub has_next: bool,
    /// Number of pages.
    pub total_pages: u64,
}

/// A logged-in REST client.
pub struct RestClient {
    client: reqwest::Client,
    base: String,
    jwt: String,
}

#[derive(Deserialize)]
struct LoginAnswer {
    token: String,
}

fn device_of(v: &Value) -> Option<TbDevice> {
    Some(TbDevice {
        id: v.get("id")?.get("id")?.as_str()?.to_string(),
        name: v.get("name")?.as_str()?.to_string(),
        profile: v.get("type").and_then(Value::as_str).map(str::to_string),
        label: v.get("label").and_then(Value::as_str).map(str::to_string),
    })
}

async fn error_of(what: &str, resp: reqwest::Response) -> Error {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let msg = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Error::Rest(format!("{what}: server answered {status}: {msg}"))
}

fn net(what: &str, e: reqwest::Error) -> Error {
    Error::Rest(format!("{what}: {e}"))
}

impl RestClient {
    /// Logs in as a tenant user.
    pub async fn login(
        base: &str,
        user: &str,
        password: &str,
        ca_pem: Option<&[u8]>,
    ) -> Result<RestClient, Error> {
        let base = crate::outbox::normalize_url(base);
        let client = crate::http::build_client(Duration::from_secs(30), ca_pem)?;
        let resp = client
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .map_err(|e| net("login", e))?;
        if resp.status().as_u16() == 401 {
            return Err(Error::Rest(format!(
                "login to {base} as {user} refused: wrong user or password"
            )));
        }
        if !resp.status().is_success() {
            return Err(error_of("login", resp).await);
        }
        let a: LoginAnswer = resp
            .json()
            .await
            .map_err(|e| Error::Rest(format!("login: unexpected answer: {e}")))?;
        Ok(RestClient {
            client,
            base,
            jwt: a.token,
        })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .header("X-Authorization", format!("Bearer {}", self.jwt))
    }

    async fn json(&self, what: &str, req: reqwest::RequestBuilder) -> Result<Option<Value>, Error> {
        let resp = req.send().await.map_err(|e| net(what, e))?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(error_of(what, resp).await);
        }
        resp.json()
            .await
            .map(Some)
            .map_err(|e| Error::Rest(format!("{what}: unexpected answer: {e}")))
    }

    /// The device with this name, if any.
    pub async fn find_device(&self, name: &str) -> Result<Option<TbDevice>, Error> {
        let v = self
            .json(
                "find device",
                self.get("/api/tenant/devices")
                    .query(&[("deviceName", name)]),
            )
            .await?;
        Ok(v.as_ref().and_then(device_of))
    }

    /// Creates a device.
    pub async fn create_device(
        &self,
        name: &str,
        profile: Option<&str>,
        label: Option<&str>,
    ) -> Result<TbDevice, Error> {
        let mut body = json!({"name": name});
        if let Some(p) = profile {
            body["type"] = json!(p);
        }
        if let Some(l) = label {
            body["label"] = json!(l);
        }
        let req = self
            .client
            .post(format!("{}/api/device", self.base))
            .header("X-Authorization", format!("Bearer {}", self.jwt))
            .json(&body);
        let v = self.json("create device", req).await?;
        v.as_ref()
            .and_then(device_of)
            .ok_or_else(|| Error::Rest("create device: unexpected answer".into()))
    }

    /// The access token of a device.
    pub async fn access_token(&self, device_id: &str) -> Result<String, Error> {
        let v = self
            .json(
                "device credentials",
                self.get(&format!("/api/device/{device_id}/credentials")),
            )
            .await?
            .ok_or_else(|| Error::Rest(format!("device {device_id} not found")))?;
        if v.get("credentialsType").and_then(Value::as_str) != Some("ACCESS_TOKEN") {
            return Err(Error::Rest(format!(
                "device {device_id} does not use an access token (credentials type {}); \
                 switch it to an access token in ThingsBoard",
                v.get("credentialsType").unwrap_or(&Value::Null)
            )));
        }
        v.get("credentialsId")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error::Rest("device credentials: no token".into()))
    }

    /// Finds the device by name or creates it; returns it with its token.
    /// `created` tells which.
    pub async fn provision(
        &self,
        name: &str,
        profile: Option<&str>,
        label: Option<&str>,
    ) -> Result<(TbDevice, String, bool), Error> {
        let (dev, created) = match self.find_device(name).await? {
            Some(d) => (d, false),
            None => (self.create_device(name, profile, label).await?, true),
        };
        let token = self.access_token(&dev.id).await?;
        Ok((dev, token, created))
    }

    /// One page of the tenant's devices.
    pub async fn devices_page(&self, page_size: u32, page: u32) -> Result<Page, Error> {
        let v = self
            .json(
                "list devices",
                self.get("/api/tenant/devices").query(&[
                    ("pageSize", page_size.to_string()),
                    ("page", page.to_string()),
                ]),
            )
            .await?
            .unwrap_or(Value::Null);
        Ok(Page {
            devices: v
                .get("data")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(device_of).collect())
                .unwrap_or_default(),
            has_next: v.get("hasNext").and_then(Value::as_bool).unwrap_or(false),
            total_pages: v.get("totalPages").and_then(Value::as_u64).unwrap_or(0),
        })
    }

    /// All of the tenant's devices (follows the pages).
    pub async fn all_devices(&self) -> Result<Vec<TbDevice>, Error> {
        let mut out = Vec::new();
        let mut page = 0;
        loop {
            let p = self.devices_page(100, page).await?;
            out.extend(p.devices);
            if !p.has_next {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// Reads time series back: key → [(ts, value as the server's string)],
    /// ascending, at most `limit` per key.
    pub async fn timeseries(
        &self,
        device_id: &str,
        keys: &[&str],
        start_ts: i64,
        end_ts: i64,
        limit: u32,
    ) -> Result<BTreeMap<String, Vec<(i64, String)>>, Error> {
        let v = self
            .json(
                "read timeseries",
                self.get(&format!(
                    "/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries"
                ))
                .query(&[
                    ("keys", keys.join(",")),
                    ("startTs", start_ts.to_string()),
                    ("endTs", end_ts.to_string()),
                    ("limit", limit.to_string()),
                    ("orderBy", "ASC".to_string()),
                ]),
            )
            .await?
            .unwrap_or(Value::Null);
        let mut out = BTreeMap::new();
        if let Some(o) = v.as_object() {
            for (k, pts) in o {
                let list = pts
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| {
                                let ts = p.get("ts")?.as_i64()?;
                                let val = match p.get("value")? {
                                    Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                };
                                Some((ts, val))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(k.clone(), list);
            }
        }
        Ok(out)
    }
}

/// Blocking wrapper: log in and provision a device in one call.
pub fn provision_blocking(
    base: &str,
    user: &str,
    password: &str,
    name: &str,
    profile: Option<&str>,
    label: Option<&str>,
    ca_pem: Option<&[u8]>,
) -> Result<(TbDevice, String, bool), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let c = RestClient::login(base, user, password, ca_pem).await?;
        c.provision(name, profile, label).await
    })
}
