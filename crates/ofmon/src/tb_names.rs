//! Server-side names and labels for `ofmon devices`: fetched from each
//! device's ThingsBoard server when it answers within a few seconds, cached
//! in the collector database for offline use.
//!
//! Logins: a refresh token per server in the home's `thingsboard-login.json`
//! (mode 0600, see [`tbsync::rest::LoginStore`]), saved by `ofmon pair
//! --thingsboard … --user … --password …` and by `ofmon devices --thingsboard
//! URL --user U --password P` (or `OFMON_TB_USER`/`OFMON_TB_PASSWORD`).
//! Every successful fetch saves the new refresh token it got, so a collector
//! that lists its devices at least once per refresh-token lifetime (a week by
//! default) never needs the password again. Passwords are never stored.
//!
//! Nothing here fails the command for being offline or logged out: each
//! problem is one line of [`Outcome::notes`], and the table shows the cached
//! values with their age.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use collector::Db;
use collector::home::Home;
use tbsync::Error as TbError;
use tbsync::rest::{Credentials, LOGIN_FILE, LoginStore, Lookup, SavedLogin};

/// How long `ofmon devices` waits for a server (login included).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Environment variable with the ThingsBoard tenant user.
pub const USER_ENV: &str = "OFMON_TB_USER";
/// Environment variable with the ThingsBoard tenant password.
pub const PASSWORD_ENV: &str = "OFMON_TB_PASSWORD";

/// An explicit login asked for on the command line or in the environment.
#[derive(Debug, Default)]
pub struct Login {
    /// Only this server (and log in there); `None`: every device's server.
    pub server: Option<String>,
    /// Tenant user.
    pub user: Option<String>,
    /// Tenant password.
    pub password: Option<String>,
    /// Private CA (PEM).
    pub ca_pem: Option<Vec<u8>>,
}

impl Login {
    /// `--user`/`--password`, else `OFMON_TB_USER`/`OFMON_TB_PASSWORD`.
    pub fn with_env(mut self) -> Login {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if self.user.is_none() {
            self.user = env(USER_ENV);
        }
        if self.password.is_none() {
            self.password = env(PASSWORD_ENV);
        }
        self
    }
}

/// What a refresh did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One line per problem (offline, login expired, device gone).
    pub notes: Vec<String>,
    /// A password login was refused.
    pub password_refused: bool,
    /// Devices whose name and label were fetched now.
    pub fetched: usize,
}

fn norm(url: &str) -> String {
    tbsync::outbox::normalize_url(url)
}

fn relogin_hint(server: &str) -> String {
    format!(
        "log in again with `ofmon devices --thingsboard {server} --user USER --password PASSWORD` \
         (or set {USER_ENV} and {PASSWORD_ENV})"
    )
}

/// Saves the refresh token of a fresh session.
pub fn save_login(
    home: &Home,
    server: &str,
    user: Option<&str>,
    refresh_token: Option<&str>,
) -> Result<()> {
    if let Some(t) = refresh_token {
        LoginStore::new(home.file(LOGIN_FILE)).put(
            server,
            SavedLogin {
                user: user.map(str::to_string),
                refresh_token: t.to_string(),
                saved_ms: collector::now_ms(),
            },
        )?;
    }
    Ok(())
}

/// Fetches the server-side name and label of every device provisioned on a
/// ThingsBoard server (or only those of `login.server`) and caches them.
pub fn refresh(home: &Home, db: &mut Db, login: &Login, timeout: Duration) -> Result<Outcome> {
    let store = LoginStore::new(home.file(LOGIN_FILE));
    let mut out = Outcome::default();
    let only = login.server.as_deref().map(norm);
    // Server → [(local id, lookup)].
    let mut by_server: BTreeMap<String, Vec<(String, Lookup)>> = BTreeMap::new();
    if let Some(s) = &only {
        by_server.entry(s.clone()).or_default();
    }
    for d in db.devices()? {
        let server = match (d.tb_server.as_deref().map(norm), &only) {
            (Some(s), Some(o)) if s != *o => continue,
            (Some(s), _) => s,
            (None, Some(o)) => o.clone(),
            (None, None) => continue,
        };
        if d.tb_id.is_none() && d.name.is_none() {
            continue;
        }
        by_server.entry(server).or_default().push((
            d.id.clone(),
            Lookup {
                tb_id: d.tb_id.clone(),
                name: d.name.clone(),
            },
        ));
    }
    for (server, devices) in by_server {
        let saved = match store.get(&server) {
            Ok(s) => s,
            Err(e) => {
                out.notes.push(format!("ThingsBoard {server}: {e}"));
                None
            }
        };
        let (creds, user) = match (&login.user, &login.password, &saved) {
            (Some(u), Some(p), _) => (
                Credentials::Password {
                    user: u,
                    password: p,
                },
                Some(u.clone()),
            ),
            (_, _, Some(s)) => (Credentials::RefreshToken(&s.refresh_token), s.user.clone()),
            _ => {
                if !devices.is_empty() {
                    out.notes.push(format!(
                        "ThingsBoard {server}: no saved login, names are from pairing; {}",
                        relogin_hint(&server)
                    ));
                }
                continue;
            }
        };
        let lookups: Vec<Lookup> = devices.iter().map(|(_, l)| l.clone()).collect();
        let fetched = tbsync::rest::fetch_devices_blocking(
            &server,
            creds,
            &lookups,
            timeout,
            login.ca_pem.as_deref(),
        );
        match fetched {
            Ok(f) => {
                save_login(home, &server, user.as_deref(), f.refresh_token.as_deref())?;
                let now = collector::now_ms();
                for ((id, l), got) in devices.iter().zip(f.devices) {
                    match got {
                        Some(tb) => {
                            db.set_tb_fetched(
                                id,
                                &server,
                                &tb.id,
                                &tb.name,
                                tb.label.as_deref(),
                                now,
                            )?;
                            out.fetched += 1;
                        }
                        None => out.notes.push(format!(
                            "ThingsBoard {server}: device {} ({id}) is no longer there; \
                             showing the last name known (re-pair it to create it again)",
                            l.name.as_deref().or(l.tb_id.as_deref()).unwrap_or("?")
                        )),
                    }
                }
            }
            Err(TbError::LoginRefused(m)) => {
                if matches!(creds, Credentials::Password { .. }) {
                    out.password_refused = true;
                    out.notes.push(format!(
                        "{m}; check --user/--password (or {USER_ENV}/{PASSWORD_ENV})"
                    ));
                } else {
                    out.notes.push(format!(
                        "{m}; showing cached names; {}",
                        relogin_hint(&server)
                    ));
                }
            }
            Err(TbError::Unreachable(m)) => out.notes.push(format!(
                "ThingsBoard {server} is not reachable ({m}); showing cached names"
            )),
            Err(e) => out
                .notes
                .push(format!("ThingsBoard {server}: {e}; showing cached names")),
        }
    }
    Ok(out)
}

/// "now", "42 s ago", "5 min ago", "3 h ago", "2 d ago".
pub fn age(fetched_ms: i64, now_ms: i64) -> String {
    let s = (now_ms - fetched_ms).max(0) / 1000;
    match s {
        0..=9 => "now".to_string(),
        10..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(age(1_000, 5_000), "now");
        assert_eq!(age(0, 42_000), "42 s ago");
        assert_eq!(age(0, 300_000), "5 min ago");
        assert_eq!(age(0, 3 * 3_600_000), "3 h ago");
        assert_eq!(age(0, 3 * 86_400_000), "3 d ago");
        assert_eq!(age(10_000, 0), "now");
    }
}
