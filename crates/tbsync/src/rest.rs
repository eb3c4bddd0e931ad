//! The ThingsBoard REST API (tenant user): login, device provisioning,
//! server-side names, telemetry read-back.
//!
//! `POST /api/auth/login` → JWT and refresh token, then `X-Authorization:
//! Bearer <jwt>`; `POST /api/auth/token` `{"refreshToken"}` renews both
//! without the password ([`Credentials::RefreshToken`]).
//! [`RestClient::provision`] finds a device by name (`GET
//! /api/tenant/devices?deviceName=`) or creates it (`POST /api/device`), then
//! reads its access token (`GET /api/device/{id}/credentials`);
//! [`RestClient::provision_gateway`] does the same for a gateway device
//! (`additionalInfo.gateway = true`). [`fetch_devices_blocking`] reads the
//! current name and label of devices by id for `ofmon devices`.
//! [`RestClient::delete_timeseries`] deletes points (`DELETE
//! /api/plugins/telemetry/DEVICE/{id}/timeseries/delete`), which
//! [`crate::stale`] uses for the old points of records whose ts changed.
//!
//! [`LoginStore`] keeps one refresh token per server in a file readable by
//! its owner only (mode 0600), so the password itself is never stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    /// The "Is gateway" flag (`additionalInfo.gateway`).
    pub gateway: bool,
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
    refresh_token: Option<String>,
}

/// How to log in.
#[derive(Clone, Copy, Debug)]
pub enum Credentials<'a> {
    /// Tenant user and password (`POST /api/auth/login`).
    Password {
        /// User name (e-mail).
        user: &'a str,
        /// Password.
        password: &'a str,
    },
    /// A refresh token from an earlier login (`POST /api/auth/token`).
    RefreshToken(&'a str),
}

#[derive(Deserialize)]
struct LoginAnswer {
    token: String,
    #[serde(rename = "refreshToken")]
    refresh_token: Option<String>,
}

fn device_of(v: &Value) -> Option<TbDevice> {
    Some(TbDevice {
        id: v.get("id")?.get("id")?.as_str()?.to_string(),
        name: v.get("name")?.as_str()?.to_string(),
        profile: v.get("type").and_then(Value::as_str).map(str::to_string),
        label: v.get("label").and_then(Value::as_str).map(str::to_string),
        gateway: v
            .get("additionalInfo")
            .and_then(|a| a.get("gateway"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
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
    if e.is_connect() || e.is_timeout() {
        return Error::Unreachable(format!("{what}: {e}"));
    }
    Error::Rest(format!("{what}: {e}"))
}

impl RestClient {
    /// Logs in as a tenant user (30 s request timeout).
    pub async fn login(
        base: &str,
        user: &str,
        password: &str,
        ca_pem: Option<&[u8]>,
    ) -> Result<RestClient, Error> {
        Self::connect(
            base,
            Credentials::Password { user, password },
            Duration::from_secs(30),
            ca_pem,
        )
        .await
    }

    /// Logs in with a password or a refresh token; every request of the
    /// client then times out after `timeout`. A refused login is
    /// [`Error::LoginRefused`], a server out of reach [`Error::Unreachable`].
    pub async fn connect(
        base: &str,
        creds: Credentials<'_>,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<RestClient, Error> {
        let base = crate::outbox::normalize_url(base);
        let client = crate::http::build_client(timeout, ca_pem)?;
        let (path, body) = match creds {
            Credentials::Password { user, password } => (
                "/api/auth/login",
                json!({"username": user, "password": password}),
            ),
            Credentials::RefreshToken(t) => ("/api/auth/token", json!({"refreshToken": t})),
        };
        let resp = client
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .map_err(|e| net(&format!("login to {base}"), e))?;
        if resp.status().as_u16() == 401 {
            return Err(Error::LoginRefused(match creds {
                Credentials::Password { user, .. } => {
                    format!("login to {base} as {user} refused: wrong user or password")
                }
                Credentials::RefreshToken(_) => {
                    format!("the saved ThingsBoard login for {base} has expired or was revoked")
                }
            }));
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
            refresh_token: a.refresh_token,
        })
    }

    /// The refresh token of this session (save it to log in again without
    /// the password).
    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh_token.as_deref()
    }

    /// The server's base URL (normalized).
    pub fn base(&self) -> &str {
        &self.base
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

    /// The device with this id, if it still exists.
    pub async fn device(&self, id: &str) -> Result<Option<TbDevice>, Error> {
        let v = self
            .json("read device", self.get(&format!("/api/device/{id}")))
            .await?;
        Ok(v.as_ref().and_then(device_of))
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
        self.create(json!({"name": name}), profile, label).await
    }

    async fn create(
        &self,
        mut body: Value,
        profile: Option<&str>,
        label: Option<&str>,
    ) -> Result<TbDevice, Error> {
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

    /// Finds the gateway device `name` or creates it with the "Is gateway"
    /// flag; returns it with its access token and whether it was created.
    /// A device of that name that is not a gateway is an error (the server
    /// would refuse gateway connections from it).
    pub async fn provision_gateway(
        &self,
        name: &str,
        profile: Option<&str>,
    ) -> Result<(TbDevice, String, bool), Error> {
        let (dev, created) = match self.find_device(name).await? {
            Some(d) if !d.gateway => {
                return Err(Error::Rest(format!(
                    "device {name:?} exists on {} but is not a gateway; pick another --name \
                     or tick \"Is gateway\" on it in ThingsBoard",
                    self.base
                )));
            }
            Some(d) => (d, false),
            None => {
                let body = json!({"name": name, "additionalInfo": {"gateway": true}});
                (self.create(body, profile, None).await?, true)
            }
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

    /// Deletes the points of `keys` with `start_ts <= ts < end_ts` (the end
    /// is exclusive: one point at `t` is `t, t + 1`); the latest value of a
    /// key is rewritten from what remains. A device that no longer exists is
    /// an error.
    pub async fn delete_timeseries(
        &self,
        device_id: &str,
        keys: &[&str],
        start_ts: i64,
        end_ts: i64,
    ) -> Result<(), Error> {
        let what = "delete timeseries";
        let resp = self
            .client
            .delete(format!(
                "{}/api/plugins/telemetry/DEVICE/{device_id}/timeseries/delete",
                self.base
            ))
            .header("X-Authorization", format!("Bearer {}", self.jwt))
            .query(&[
                ("keys", keys.join(",")),
                ("startTs", start_ts.to_string()),
                ("endTs", end_ts.to_string()),
                ("deleteAllDataForKeys", "false".to_string()),
                ("rewriteLatestIfDeleted", "true".to_string()),
            ])
            .send()
            .await
            .map_err(|e| net(what, e))?;
        if !resp.status().is_success() {
            return Err(error_of(what, resp).await);
        }
        Ok(())
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

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// What [`provision_blocking`] produced.
#[derive(Clone, Debug)]
pub struct Provisioned {
    /// The device on the server.
    pub device: TbDevice,
    /// Its access token.
    pub token: String,
    /// Whether it was created (else found by name).
    pub created: bool,
    /// The refresh token of the login (for a [`LoginStore`]).
    pub refresh_token: Option<String>,
}

/// Blocking wrapper: log in and provision a device (or, with `gateway`, a
/// gateway device) in one call.
pub fn provision_blocking(
    base: &str,
    user: &str,
    password: &str,
    name: &str,
    profile: Option<&str>,
    gateway: bool,
    ca_pem: Option<&[u8]>,
) -> Result<Provisioned, Error> {
    runtime()?.block_on(async {
        let c = RestClient::login(base, user, password, ca_pem).await?;
        let (device, token, created) = if gateway {
            c.provision_gateway(name, profile).await?
        } else {
            c.provision(name, profile, None).await?
        };
        Ok(Provisioned {
            device,
            token,
            created,
            refresh_token: c.refresh_token.clone(),
        })
    })
}

/// A device to look up in [`fetch_devices_blocking`]: by its server id when
/// known, else by name.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    /// Device id on the server.
    pub tb_id: Option<String>,
    /// Device name (used when the id is unknown).
    pub name: Option<String>,
}

/// What [`fetch_devices_blocking`] read.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// One answer per lookup, in order; `None`: no such device (any more).
    pub devices: Vec<Option<TbDevice>>,
    /// The refresh token of the new session: save it, the one used may
    /// expire sooner.
    pub refresh_token: Option<String>,
}

/// Logs in to `base` and reads the current name and label of each device,
/// all within `timeout` (login included). A server out of reach or too slow
/// is [`Error::Unreachable`]; a refused login [`Error::LoginRefused`].
pub fn fetch_devices_blocking(
    base: &str,
    creds: Credentials<'_>,
    lookups: &[Lookup],
    timeout: Duration,
    ca_pem: Option<&[u8]>,
) -> Result<Fetched, Error> {
    let work = async {
        let c = RestClient::connect(base, creds, timeout, ca_pem).await?;
        let mut devices = Vec::with_capacity(lookups.len());
        for l in lookups {
            let d = match (&l.tb_id, &l.name) {
                (Some(id), _) => c.device(id).await?,
                (None, Some(name)) => c.find_device(name).await?,
                (None, None) => None,
            };
            devices.push(d);
        }
        Ok(Fetched {
            devices,
            refresh_token: c.refresh_token,
        })
    };
    runtime()?.block_on(async {
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unreachable(format!(
                    "{base} did not answer within {} s",
                    timeout.as_secs_f32()
                )))
            })
    })
}

/// File name of the [`LoginStore`] in the collector's home.
pub const LOGIN_FILE: &str = "thingsboard-login.json";

/// A saved login for one server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedLogin {
    /// The user it was made for (shown in messages).
    pub user: Option<String>,
    /// The refresh token.
    pub refresh_token: String,
    /// When it was saved (unix ms).
    pub saved_ms: i64,
}

/// Refresh tokens by server, in one JSON file that only its owner can read
/// (mode 0600, written atomically). Stores no passwords.
#[derive(Clone, Debug)]
pub struct LoginStore {
    path: PathBuf,
}

impl LoginStore {
    /// The store at `path` (created on the first [`LoginStore::put`]).
    pub fn new(path: impl Into<PathBuf>) -> LoginStore {
        LoginStore { path: path.into() }
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<BTreeMap<String, SavedLogin>, Error> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::Config(format!(
                    "{} is damaged ({e}); delete it and log in again",
                    self.path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The saved login for `server`, if any.
    pub fn get(&self, server: &str) -> Result<Option<SavedLogin>, Error> {
        Ok(self.read()?.remove(&crate::outbox::normalize_url(server)))
    }

    /// Saves (replaces) the login for `server`.
    pub fn put(&self, server: &str, login: SavedLogin) -> Result<(), Error> {
        let mut all = self.read()?;
        all.insert(crate::outbox::normalize_url(server), login);
        self.write(&all)
    }

    /// Forgets the login for `server`.
    pub fn remove(&self, server: &str) -> Result<(), Error> {
        let mut all = self.read()?;
        if all.remove(&crate::outbox::normalize_url(server)).is_some() {
            self.write(&all)?;
        }
        Ok(())
    }

    fn write(&self, all: &BTreeMap<String, SavedLogin>) -> Result<(), Error> {
        use std::io::Write;
        let text = serde_json::to_vec_pretty(all)
            .map_err(|e| Error::Config(format!("cannot encode logins: {e}")))?;
        let tmp = self.path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        #[cfg(unix)]
        {
            // An older file keeps its mode through the rename of the new one,
            // but make sure anyway.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_store_round_trip_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = LoginStore::new(dir.path().join(LOGIN_FILE));
        assert_eq!(s.get("http://a").unwrap(), None);
        let l = SavedLogin {
            user: Some("u".into()),
            refresh_token: "r1".into(),
            saved_ms: 5,
        };
        s.put("http://a/", l.clone()).unwrap();
        s.put(
            "http://b",
            SavedLogin {
                refresh_token: "r2".into(),
                ..l.clone()
            },
        )
        .unwrap();
        assert_eq!(s.get("http://a").unwrap(), Some(l));
        assert_eq!(s.get("http://b").unwrap().unwrap().refresh_token, "r2");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(s.path()).unwrap().permissions().mode();
            assert_eq!(m & 0o777, 0o600);
        }
        s.remove("http://a").unwrap();
        assert_eq!(s.get("http://a").unwrap(), None);
        std::fs::write(s.path(), b"{oops").unwrap();
        assert!(s.get("http://b").is_err());
    }
}
