//! Sans-IO request and response values of API v1.
//!
//! The HTTP shell ([`crate::http`]) turns a picoserve request into a
//! [`Request`], the device answers with a [`Response`]; neither side of this
//! boundary knows about sockets.

use alloc::string::String;
use alloc::vec::Vec;

/// Looks up request headers by name (ASCII case-insensitive).
pub trait Headers {
    /// The value of header `name`, if present and valid UTF-8.
    fn get(&self, name: &str) -> Option<&str>;
}

/// No headers at all (tests, internal calls).
pub struct NoHeaders;

impl Headers for NoHeaders {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

impl Headers for &[(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// A request as the device core sees it.
pub struct Request<'a> {
    /// Method as sent.
    pub method: &'a str,
    /// Path, still URL-encoded, without the query.
    pub path: &'a str,
    /// Query string after `?`, still URL-encoded.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a dyn Headers,
    /// The whole body (routes with small bodies only; OTA streams).
    pub body: &'a [u8],
}

impl Request<'_> {
    /// Value of query parameter `key` (no percent-decoding: the device's
    /// parameters are plain integers).
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then_some(v)
        })
    }

    /// `path?query` exactly as sent (what request signatures cover).
    pub fn path_and_query(&self) -> String {
        let mut s = String::from(self.path);
        if let Some(q) = self.query {
            s.push('?');
            s.push_str(q);
        }
        s
    }

    /// True when the client asked for JSON (`Accept: application/json`).
    pub fn wants_json(&self) -> bool {
        self.headers
            .get("accept")
            .is_some_and(|a| a.contains("application/json"))
    }
}

/// Content type of JSON bodies.
pub const JSON: &str = "application/json";
/// Content type of binary bodies.
pub const BINARY: &str = "application/octet-stream";
/// Content type of the legacy index page.
pub const HTML: &str = "text/html; charset=utf-8";
/// Content type of short plain-text bodies.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// A response from the device core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Extra headers (`Allow` on 405, record counters, ...).
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// 200 with a JSON body.
    pub fn json(body: Vec<u8>) -> Self {
        Self::with(200, JSON, body)
    }

    /// A response with the given status, type and body.
    pub fn with(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            status,
            content_type,
            body,
            headers: Vec::new(),
        }
    }

    /// An error answer: `{"error":"<reason>"}` with the given status.
    pub fn error(status: u16, reason: &str) -> Self {
        let mut body = Vec::with_capacity(reason.len() + 12);
        body.extend_from_slice(b"{\"error\":\"");
        for c in reason.chars() {
            match c {
                '"' => body.extend_from_slice(b"\\\""),
                '\\' => body.extend_from_slice(b"\\\\"),
                c if (c as u32) < 0x20 => body.push(b' '),
                c => {
                    let mut buf = [0u8; 4];
                    body.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        body.extend_from_slice(b"\"}");
        Self::with(status, JSON, body)
    }

    /// The body as UTF-8 text (tests and logs).
    pub fn text(&self) -> &str {
        core::str::from_utf8(&self.body).unwrap_or("<binary>")
    }
}

/// Serializes `value` as a JSON 200 response (500 if serialization fails).
pub fn json_ok<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => Response::json(body),
        Err(_) => Response::error(500, "serialization failed"),
    }
}

/// Parses a JSON body, mapping failure to a 400 with a short reason.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        let mut reason = String::from("malformed JSON body: ");
        use core::fmt::Write;
        let _ = write!(reason, "{e}");
        reason.truncate(120);
        Response::error(400, &reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_and_errors() {
        let h: &[(&str, &str)] = &[("Accept", "application/json")];
        let r = Request {
            method: "GET",
            path: "/api/v1/records",
            query: Some("after=5&limit=10&x"),
            headers: &h,
            body: &[],
        };
        assert_eq!(r.query_param("after"), Some("5"));
        assert_eq!(r.query_param("limit"), Some("10"));
        assert_eq!(r.query_param("x"), Some(""));
        assert_eq!(r.query_param("y"), None);
        assert!(r.wants_json());
        assert_eq!(r.path_and_query(), "/api/v1/records?after=5&limit=10&x");
        assert_eq!(
            Response::error(400, "bad \"x\"").text(),
            r#"{"error":"bad \"x\""}"#
        );
    }
}
