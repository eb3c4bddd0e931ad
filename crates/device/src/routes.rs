//! The one table of HTTP routes the device serves.
//!
//! The picoserve router dispatches through [`lookup`], and the OpenAPI test
//! checks this table against `openapi.yaml`, so the spec and the router cannot
//! drift apart.

/// HTTP methods the device answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
}

impl Method {
    /// Parses a request method; `None` for methods the device never serves.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "GET" => Some(Self::Get),
            "POST" => Some(Self::Post),
            "PUT" => Some(Self::Put),
            _ => None,
        }
    }

    /// The method's name as sent on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (device info).
    Open,
    /// Anyone while the device is unpaired; signed afterwards.
    OpenWhileUnpaired,
    /// Requires a valid request signature.
    Signed,
    /// Legacy-mode route: as open as the original firmware was; only served
    /// when legacy mode is enabled in the config.
    Legacy,
}

/// What a route does (the handler the router dispatches to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /api/v1/info`
    Info,
    /// `POST /api/v1/pair`
    Pair,
    /// `POST /api/v1/time`
    Time,
    /// `GET /api/v1/records`
    Records,
    /// `POST /api/v1/ack`
    Ack,
    /// `GET /api/v1/events`
    Events,
    /// `GET /api/v1/config`
    GetConfig,
    /// `PUT /api/v1/config`
    PutConfig,
    /// `POST /api/v1/calibrate`
    Calibrate,
    /// `GET /api/v1/live`
    Live,
    /// `POST /api/v1/ota`
    Ota,
    /// `POST /api/v1/reboot`
    Reboot,
    /// `POST /api/v1/factory-reset`
    FactoryReset,
    /// Legacy `GET /`
    LegacyIndex,
    /// Legacy `GET /telemetry`
    LegacyTelemetry,
    /// Legacy `GET /powerloss_log`
    LegacyPowerloss,
    /// Legacy `POST /time`
    LegacyTime,
    /// Legacy `GET /token`
    LegacyGetToken,
    /// Legacy `POST /token`
    LegacyPostToken,
    /// Legacy `GET /reset`
    LegacyReset,
    /// Legacy `GET /version`
    LegacyVersion,
}

/// One row of the route table.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Request method.
    pub method: Method,
    /// Exact path (no parameters in paths; parameters go in the query).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Largest accepted request body in bytes (larger → 413).
    pub max_body: usize,
    /// The handler.
    pub endpoint: Endpoint,
}

/// Largest body of an OTA upload (one OTA slot).
pub const MAX_OTA_BODY: usize = 1024 * 1024;
/// Largest body of the small JSON requests.
pub const MAX_JSON_BODY: usize = 1024;

const fn r(
    method: Method,
    path: &'static str,
    access: Access,
    max_body: usize,
    endpoint: Endpoint,
) -> Route {
    Route {
        method,
        path,
        access,
        max_body,
        endpoint,
    }
}

use Access::{Legacy, Open, OpenWhileUnpaired, Signed};
use Method::{Get, Post, Put};

/// Every route the device can serve. Legacy rows are only live in legacy mode.
pub const ROUTES: &[Route] = &[
    r(Get, "/api/v1/info", Open, 0, Endpoint::Info),
    r(
        Post,
        "/api/v1/pair",
        OpenWhileUnpaired,
        MAX_JSON_BODY,
        Endpoint::Pair,
    ),
    r(Post, "/api/v1/time", Signed, MAX_JSON_BODY, Endpoint::Time),
    r(Get, "/api/v1/records", Signed, 0, Endpoint::Records),
    r(Post, "/api/v1/ack", Signed, MAX_JSON_BODY, Endpoint::Ack),
    r(Get, "/api/v1/events", Signed, 0, Endpoint::Events),
    r(Get, "/api/v1/config", Signed, 0, Endpoint::GetConfig),
    r(
        Put,
        "/api/v1/config",
        Signed,
        MAX_JSON_BODY,
        Endpoint::PutConfig,
    ),
    r(
        Post,
        "/api/v1/calibrate",
        Signed,
        MAX_JSON_BODY,
        Endpoint::Calibrate,
    ),
    r(Get, "/api/v1/live", Signed, 0, Endpoint::Live),
    r(Post, "/api/v1/ota", Signed, MAX_OTA_BODY, Endpoint::Ota),
    r(Post, "/api/v1/reboot", Signed, 0, Endpoint::Reboot),
    r(
        Post,
        "/api/v1/factory-reset",
        Signed,
        0,
        Endpoint::FactoryReset,
    ),
    r(Get, "/", Legacy, 0, Endpoint::LegacyIndex),
    r(Get, "/telemetry", Legacy, 0, Endpoint::LegacyTelemetry),
    r(Get, "/powerloss_log", Legacy, 0, Endpoint::LegacyPowerloss),
    r(Post, "/time", Legacy, 8, Endpoint::LegacyTime),
    r(Get, "/token", Legacy, 0, Endpoint::LegacyGetToken),
    r(Post, "/token", Legacy, 56, Endpoint::LegacyPostToken),
    r(Get, "/reset", Legacy, 0, Endpoint::LegacyReset),
    r(Get, "/version", Legacy, 0, Endpoint::LegacyVersion),
];

/// Result of matching a request line against [`ROUTES`].
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    /// A route matched.
    Found(&'static Route),
    /// The path exists but not with this method (→ 405).
    MethodNotAllowed,
    /// No such path (→ 404).
    NotFound,
}

/// Finds the route for `method` and `path`. Legacy rows count only when
/// `legacy` is true. An unknown method on a known path is a 405.
pub fn lookup(legacy: bool, method: &str, path: &str) -> Lookup {
    let mut path_known = false;
    for route in ROUTES {
        if route.path != path || (route.access == Legacy && !legacy) {
            continue;
        }
        path_known = true;
        if Method::parse(method) == Some(route.method) {
            return Lookup::Found(route);
        }
    }
    if path_known {
        Lookup::MethodNotAllowed
    } else {
        Lookup::NotFound
    }
}

/// The `Allow` header value for a known path (empty when unknown).
pub fn allowed_methods(legacy: bool, path: &str) -> alloc::string::String {
    let mut out = alloc::string::String::new();
    for route in ROUTES {
        if route.path == path && (route.access != Legacy || legacy) {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(route.method.as_str());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_distinguishes_404_405_and_legacy() {
        assert!(matches!(
            lookup(false, "GET", "/api/v1/info"),
            Lookup::Found(r) if r.endpoint == Endpoint::Info
        ));
        assert!(matches!(
            lookup(false, "DELETE", "/api/v1/info"),
            Lookup::MethodNotAllowed
        ));
        assert!(matches!(lookup(false, "GET", "/nope"), Lookup::NotFound));
        assert!(matches!(
            lookup(false, "GET", "/telemetry"),
            Lookup::NotFound
        ));
        assert!(matches!(
            lookup(true, "GET", "/telemetry"),
            Lookup::Found(r) if r.endpoint == Endpoint::LegacyTelemetry
        ));
        assert!(matches!(
            lookup(false, "PUT", "/api/v1/config"),
            Lookup::Found(r) if r.endpoint == Endpoint::PutConfig
        ));
        assert_eq!(allowed_methods(false, "/api/v1/config"), "GET, PUT");
        assert_eq!(allowed_methods(true, "/token"), "GET, POST");
    }

    #[test]
    fn no_duplicate_rows() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(!(a.method == b.method && a.path == b.path), "{a:?}");
            }
        }
    }
}
