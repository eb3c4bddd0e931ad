//! HMAC-SHA256 request authentication (device API v1), sans-IO, both sides.
//!
//! Every authenticated request carries one header:
//!
//! ```text
//! Authorization: OFMon-HMAC t=<unix ms, decimal>,n=<nonce, 32 hex>,s=<signature, 64 hex>
//! ```
//!
//! The signature is `HMAC-SHA256(api_key, canonical)` where `canonical` is
//!
//! ```text
//! METHOD "\n" PATH_AND_QUERY "\n" hex(SHA-256(body)) "\n" t "\n" n
//! ```
//!
//! - `METHOD` is the request method exactly as sent (upper case: `POST`).
//! - `PATH_AND_QUERY` is the request target exactly as sent on the request
//!   line (`/api/v1/records?after=10&limit=500`), with no normalisation or
//!   percent-decoding; no scheme or host.
//! - `hex(...)` and `n` are lower-case hex; `t` is decimal without leading
//!   zeros or sign, exactly as it appears in the header.
//! - An empty body hashes to [`EMPTY_BODY_SHA256`].
//!
//! The client side is [`sign`] / [`sign_digest`]. The device side is
//! [`Verifier`], which checks the signature in constant time and refuses
//! replayed nonces and stale timestamps. Freshness without a wall clock is
//! described on [`Verifier`]. All refusals are [`AuthError`]s, which the HTTP
//! layer maps to 401 without distinguishing them to the client.

use alloc::string::String;
use core::fmt;

use hmac::{Hmac, KeyInit, Mac as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::hex;
use crate::keys::ApiKey;

/// Name of the header carrying the authentication.
pub const AUTH_HEADER: &str = "Authorization";
/// Authentication scheme name at the start of the header value.
pub const AUTH_SCHEME: &str = "OFMon-HMAC";
/// Nonce length in bytes (sent as 32 hex digits).
pub const NONCE_LEN: usize = 16;
/// Number of recently accepted nonces a [`Verifier`] remembers.
pub const NONCE_RING: usize = 64;
/// Default freshness window: ±5 minutes.
pub const DEFAULT_WINDOW_MS: u64 = 5 * 60 * 1000;
/// SHA-256 of the empty body.
pub const EMPTY_BODY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Why a request was refused. The HTTP layer answers 401 for all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header, or a different scheme.
    Missing,
    /// The header has the OFMon scheme but its fields are malformed.
    Malformed,
    /// The signature does not match (wrong key, or anything signed was altered).
    BadSignature,
    /// The timestamp is outside the freshness window (see [`Verifier`]).
    Stale,
    /// The nonce was already accepted.
    Replayed,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthError::Missing => "missing OFMon-HMAC authorization",
            AuthError::Malformed => "malformed OFMon-HMAC authorization",
            AuthError::BadSignature => "bad signature",
            AuthError::Stale => "stale timestamp",
            AuthError::Replayed => "replayed nonce",
        })
    }
}
crate::std_error!(AuthError);

/// Incremental SHA-256 of a request body, so a streamed body can be hashed as
/// it arrives and verified at the end.
#[derive(Clone, Default)]
pub struct BodyHasher(Sha256);

impl BodyHasher {
    /// A hasher for an empty body so far.
    pub fn new() -> Self {
        Self(Sha256::new())
    }
    /// Feeds the next chunk of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }
    /// The body's SHA-256.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// SHA-256 of a complete body.
pub fn body_sha256(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// The parsed value of the `Authorization` header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Authorization {
    /// Client's clock at signing time, unix milliseconds.
    pub timestamp_ms: u64,
    /// Random per-request nonce.
    pub nonce: [u8; NONCE_LEN],
    /// `HMAC-SHA256(api_key, canonical)`.
    pub signature: [u8; 32],
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("timestamp_ms", &self.timestamp_ms)
            .field("nonce", &hex::encode(&self.nonce))
            .finish_non_exhaustive()
    }
}

impl Authorization {
    /// Parses a header value: `OFMon-HMAC t=...,n=...,s=...`. The three
    /// fields may come in any order, each exactly once; spaces after commas
    /// are allowed. Any other scheme is [`AuthError::Missing`].
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let value = value.trim();
        let rest = value.strip_prefix(AUTH_SCHEME).ok_or(AuthError::Missing)?;
        let rest = rest.strip_prefix(' ').ok_or(AuthError::Missing)?;
        let (mut t, mut n, mut s) = (None, None, None);
        for field in rest.split(',') {
            let field = field.trim_start_matches(' ');
            let (name, val) = field.split_once('=').ok_or(AuthError::Malformed)?;
            let slot = match name {
                "t" => &mut t,
                "n" => &mut n,
                "s" => &mut s,
                _ => return Err(AuthError::Malformed),
            };
            if slot.replace(val).is_some() {
                return Err(AuthError::Malformed);
            }
        }
        let t = t.ok_or(AuthError::Malformed)?;
        let timestamp_ms = parse_decimal_u64(t).ok_or(AuthError::Malformed)?;
        let nonce =
            hex::decode_array(n.ok_or(AuthError::Malformed)?).map_err(|_| AuthError::Malformed)?;
        let signature =
            hex::decode_array(s.ok_or(AuthError::Malformed)?).map_err(|_| AuthError::Malformed)?;
        Ok(Self {
            timestamp_ms,
            nonce,
            signature,
        })
    }

    /// The header value, `OFMon-HMAC t=...,n=...,s=...`.
    pub fn to_header_value(&self) -> String {
        alloc::format!("{self}")
    }
}

impl fmt::Display for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut n = [0u8; 2 * NONCE_LEN];
        let mut s = [0u8; 64];
        let n = hex::encode_to_slice(&self.nonce, &mut n).map_err(|_| fmt::Error)?;
        let s = hex::encode_to_slice(&self.signature, &mut s).map_err(|_| fmt::Error)?;
        write!(f, "{AUTH_SCHEME} t={},n={n},s={s}", self.timestamp_ms)
    }
}

/// Canonical decimal: digits only, no leading zero (except "0"), fits u64.
fn parse_decimal_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 20 || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Writes `v` in decimal into `buf`, returning the digits.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Feeds the canonical string's parts to `sink`, in order, without allocating.
fn canonical_parts(
    method: &str,
    path_query: &str,
    body_sha256: &[u8; 32],
    timestamp_ms: u64,
    nonce: &[u8; NONCE_LEN],
    mut sink: impl FnMut(&[u8]),
) {
    let mut digest_hex = [0u8; 64];
    let mut nonce_hex = [0u8; 2 * NONCE_LEN];
    let mut t = [0u8; 20];
    // Both buffers have exactly the right length, so encoding cannot fail.
    let _ = hex::encode_to_slice(body_sha256, &mut digest_hex);
    let _ = hex::encode_to_slice(nonce, &mut nonce_hex);
    sink(method.as_bytes());
    sink(b"\n");
    sink(path_query.as_bytes());
    sink(b"\n");
    sink(&digest_hex);
    sink(b"\n");
    sink(decimal(timestamp_ms, &mut t));
    sink(b"\n");
    sink(&nonce_hex);
}

/// The canonical string that is signed (for documentation, logs and tests;
/// signing itself does not allocate).
pub fn canonical_string(
    method: &str,
    path_query: &str,
    body_sha256: &[u8; 32],
    timestamp_ms: u64,
    nonce: &[u8; NONCE_LEN],
) -> String {
    let mut out = alloc::vec::Vec::new();
    canonical_parts(method, path_query, body_sha256, timestamp_ms, nonce, |p| {
        out.extend_from_slice(p)
    });
    String::from_utf8_lossy(&out).into_owned()
}

fn compute_signature(
    key: &ApiKey,
    method: &str,
    path_query: &str,
    body_sha256: &[u8; 32],
    timestamp_ms: u64,
    nonce: &[u8; NONCE_LEN],
) -> [u8; 32] {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    canonical_parts(method, path_query, body_sha256, timestamp_ms, nonce, |p| {
        mac.update(p)
    });
    mac.finalize().into_bytes().into()
}

/// Client side: signs a request whose body digest is already known (e.g. a
/// large file hashed with [`BodyHasher`] before upload).
pub fn sign_digest(
    key: &ApiKey,
    method: &str,
    path_query: &str,
    body_sha256: &[u8; 32],
    now_ms: u64,
    nonce: [u8; NONCE_LEN],
) -> Authorization {
    Authorization {
        timestamp_ms: now_ms,
        nonce,
        signature: compute_signature(key, method, path_query, body_sha256, now_ms, &nonce),
    }
}

/// Client side: signs a request. `nonce` must be 16 fresh random bytes per
/// request; `now_ms` is the client's unix time (or the device's clock as
/// reported by `GET /api/v1/info`, see `docs/SECURITY.md`). Send the result as
/// the [`AUTH_HEADER`] header with [`Authorization::to_header_value`].
pub fn sign(
    key: &ApiKey,
    method: &str,
    path_query: &str,
    body: &[u8],
    now_ms: u64,
    nonce: [u8; NONCE_LEN],
) -> Authorization {
    sign_digest(key, method, path_query, &body_sha256(body), now_ms, nonce)
}

#[derive(Clone, Copy, Default)]
struct Seen {
    t: u64,
    nonce: [u8; NONCE_LEN],
}

/// Device side: checks signatures and refuses replays and stale requests.
///
/// One `Verifier` per device (per boot), fed the device's wall clock if it has
/// one (`Some(unix_ms)` after `POST /time`), `None` otherwise.
///
/// Freshness rules, in order (`t` = the request's timestamp):
/// 1. `t` must be greater than the **floor**: the largest timestamp of any
///    nonce that has left the ring of [`NONCE_RING`] remembered nonces, or the
///    value restored with [`Verifier::with_floor`] after a reboot. Together
///    with rule 3 this means no accepted request is ever accepted twice, no
///    matter how many requests arrive or how the clock moves.
/// 2. With a wall clock: `|t − now| ≤ window`. Without one: `t` must not be
///    more than `window` older than the newest timestamp accepted so far
///    (the collector's clock is followed monotonically, allowing that much
///    reordering between concurrent requests); the first request is accepted
///    on its signature alone.
/// 3. The nonce must not be in the ring.
///
/// Violations of 1–2 are [`AuthError::Stale`], of 3 [`AuthError::Replayed`].
/// The signature is checked first, and a nonce is remembered only after the
/// whole request was accepted, so unauthenticated traffic cannot fill the ring.
///
/// After the wall clock is set, call [`Verifier::clock_set`].
///
/// To keep replays out across reboots (which clear the ring), the device core
/// should persist [`Verifier::high_water_ms`] with its state (e.g. on every
/// ack and time sync) and start the next boot with [`Verifier::with_floor`].
#[derive(Clone)]
pub struct Verifier {
    window_ms: u64,
    ring: [Seen; NONCE_RING],
    len: usize,
    next: usize,
    floor_ms: Option<u64>,
    high_water_ms: Option<u64>,
}

impl Verifier {
    /// A verifier with an empty nonce ring and no floor (first boot).
    pub fn new(window_ms: u64) -> Self {
        Self {
            window_ms,
            ring: [Seen::default(); NONCE_RING],
            len: 0,
            next: 0,
            floor_ms: None,
            high_water_ms: None,
        }
    }

    /// A verifier that refuses every timestamp `<= floor_ms`, typically the
    /// [`Verifier::high_water_ms`] persisted before the last reboot.
    pub fn with_floor(window_ms: u64, floor_ms: u64) -> Self {
        let mut v = Self::new(window_ms);
        v.floor_ms = Some(floor_ms);
        v
    }

    /// The freshness window in milliseconds.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// The newest timestamp accepted so far (or the restored floor): the
    /// value to persist for [`Verifier::with_floor`].
    pub fn high_water_ms(&self) -> Option<u64> {
        match (self.high_water_ms, self.floor_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Tells the verifier the wall clock was just set to `now_ms` (call after
    /// applying `POST /time`).
    ///
    /// A collector with a wildly wrong clock may have pushed the floor or the
    /// high-water mark far into the future while the device had no clock;
    /// left alone, that would refuse every correctly-timed request (and,
    /// persisted, every request after the next reboot) until that future
    /// arrives. So a floor beyond `now + window` is lowered to
    /// `now - window`, and such a high-water mark to `now`. Requests with
    /// the future timestamps stay refused by the window rule; nonces still in
    /// the ring stay refused. Only an evicted request with a timestamp inside
    /// the current window could become replayable — which needs more than
    /// [`NONCE_RING`] requests inside one window right before a misdated
    /// collector reset the clock.
    pub fn clock_set(&mut self, now_ms: u64) {
        let limit = now_ms.saturating_add(self.window_ms);
        if self.floor_ms.is_some_and(|f| f > limit) {
            self.floor_ms = Some(now_ms.saturating_sub(self.window_ms));
        }
        if self.high_water_ms.is_some_and(|h| h > limit) {
            self.high_water_ms = Some(now_ms);
        }
    }

    /// Checks rules 1–3 (not the signature) without remembering anything:
    /// lets a device refuse a large upload before reading its body. The
    /// request must still pass [`Verifier::verify`] once the body is in.
    pub fn check_fresh(
        &self,
        auth: &Authorization,
        wall_now_ms: Option<u64>,
    ) -> Result<(), AuthError> {
        let t = auth.timestamp_ms;
        if self.floor_ms.is_some_and(|floor| t <= floor) {
            return Err(AuthError::Stale);
        }
        match wall_now_ms {
            Some(now) => {
                if t.abs_diff(now) > self.window_ms {
                    return Err(AuthError::Stale);
                }
            }
            None => {
                if let Some(hw) = self.high_water_ms
                    && t.saturating_add(self.window_ms) < hw
                {
                    return Err(AuthError::Stale);
                }
            }
        }
        let seen = self.ring[..self.len]
            .iter()
            .fold(subtle::Choice::from(0), |acc, s| {
                acc | s.nonce.ct_eq(&auth.nonce)
            });
        if bool::from(seen) {
            return Err(AuthError::Replayed);
        }
        Ok(())
    }

    /// Verifies a request and, if accepted, remembers its nonce.
    ///
    /// `body_sha256` is the digest of the body actually received (from
    /// [`BodyHasher`] or [`body_sha256`]); `method` and `path_query` are as
    /// received on the request line.
    pub fn verify(
        &mut self,
        key: &ApiKey,
        method: &str,
        path_query: &str,
        body_sha256: &[u8; 32],
        auth: &Authorization,
        wall_now_ms: Option<u64>,
    ) -> Result<(), AuthError> {
        let expected = compute_signature(
            key,
            method,
            path_query,
            body_sha256,
            auth.timestamp_ms,
            &auth.nonce,
        );
        if !bool::from(expected.ct_eq(&auth.signature)) {
            return Err(AuthError::BadSignature);
        }
        self.check_fresh(auth, wall_now_ms)?;
        self.remember(auth);
        Ok(())
    }

    /// [`Verifier::verify`] starting from the raw header value (`None` when
    /// the header is absent). Returns the parsed header on success.
    pub fn verify_header(
        &mut self,
        key: &ApiKey,
        method: &str,
        path_query: &str,
        body_sha256: &[u8; 32],
        header: Option<&str>,
        wall_now_ms: Option<u64>,
    ) -> Result<Authorization, AuthError> {
        let auth = Authorization::parse(header.ok_or(AuthError::Missing)?)?;
        self.verify(key, method, path_query, body_sha256, &auth, wall_now_ms)?;
        Ok(auth)
    }

    fn remember(&mut self, auth: &Authorization) {
        let entry = Seen {
            t: auth.timestamp_ms,
            nonce: auth.nonce,
        };
        if self.len < NONCE_RING {
            self.ring[self.len] = entry;
            self.len += 1;
        } else {
            let evicted = self.ring[self.next].t;
            self.floor_ms = Some(self.floor_ms.map_or(evicted, |f| f.max(evicted)));
            self.ring[self.next] = entry;
            self.next = (self.next + 1) % NONCE_RING;
        }
        self.high_water_ms = Some(
            self.high_water_ms
                .map_or(auth.timestamp_ms, |h| h.max(auth.timestamp_ms)),
        );
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("window_ms", &self.window_ms)
            .field("remembered", &self.len)
            .field("floor_ms", &self.floor_ms)
            .field("high_water_ms", &self.high_water_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: ApiKey = ApiKey::from_bytes([0x42; 32]);
    const T0: u64 = 1_700_000_000_000;
    const W: u64 = DEFAULT_WINDOW_MS;

    fn nonce(i: u32) -> [u8; NONCE_LEN] {
        let mut n = [0xa5; NONCE_LEN];
        n[..4].copy_from_slice(&i.to_le_bytes());
        n
    }

    fn req(v: &mut Verifier, t: u64, n: u32, now: Option<u64>) -> Result<(), AuthError> {
        let a = sign(&KEY, "POST", "/api/v1/ack", b"{\"seq\":5}", t, nonce(n));
        v.verify(
            &KEY,
            "POST",
            "/api/v1/ack",
            &body_sha256(b"{\"seq\":5}"),
            &a,
            now,
        )
    }

    // Independent vector, Python 3:
    //   import hmac, hashlib
    //   body = b'{"seq":5}'
    //   c = "POST\n/api/v1/ack\n" + hashlib.sha256(body).hexdigest() \
    //       + "\n1700000000000\n" + "a5"*16
    //   hmac.new(b"\x42"*32, c.encode(), hashlib.sha256).hexdigest()
    const VEC_SIG: &str = "9636f0049075a85de5bd30a9a284b7f77f0068aa5c1b27821aa0eed958d3a030";

    #[test]
    fn signature_matches_independent_vector() {
        let a = sign(&KEY, "POST", "/api/v1/ack", b"{\"seq\":5}", T0, [0xa5; 16]);
        assert_eq!(hex::encode(&a.signature), VEC_SIG);
        assert_eq!(
            canonical_string(
                "POST",
                "/api/v1/ack",
                &body_sha256(b"{\"seq\":5}"),
                T0,
                &[0xa5; 16]
            ),
            alloc::format!(
                "POST\n/api/v1/ack\n{}\n1700000000000\n{}",
                hex::encode(&body_sha256(b"{\"seq\":5}")),
                "a5".repeat(16)
            )
        );
        assert_eq!(body_sha256(b""), EMPTY_BODY_SHA256);
    }

    #[test]
    fn header_round_trip_and_format() {
        let a = sign(&KEY, "GET", "/api/v1/events", b"", 12, [0x01; 16]);
        let h = a.to_header_value();
        assert!(h.starts_with("OFMon-HMAC t=12,n=01010101010101010101010101010101,s="));
        assert_eq!(h.len(), "OFMon-HMAC t=12,n=,s=".len() + 32 + 64);
        assert_eq!(Authorization::parse(&h), Ok(a));
        // Fields in another order, spaces after commas, upper-case hex.
        let reordered = alloc::format!(
            "OFMon-HMAC s={}, n={}, t=12",
            hex::encode(&a.signature).to_uppercase(),
            hex::encode(&a.nonce)
        );
        assert_eq!(Authorization::parse(&reordered), Ok(a));
    }

    #[test]
    fn header_parse_refusals() {
        let good = sign(&KEY, "GET", "/", b"", 12, [1; 16]).to_header_value();
        assert_eq!(Authorization::parse(""), Err(AuthError::Missing));
        assert_eq!(Authorization::parse("Bearer abc"), Err(AuthError::Missing));
        assert_eq!(
            Authorization::parse("OFMon-HMACt=1"),
            Err(AuthError::Missing)
        );
        let m = |s: &str| Authorization::parse(s);
        assert_eq!(m(&good.replace("t=12", "t=012")), Err(AuthError::Malformed));
        assert_eq!(m(&good.replace("t=12", "t=-12")), Err(AuthError::Malformed));
        assert_eq!(m(&good.replace("t=12", "t=")), Err(AuthError::Malformed));
        assert_eq!(
            m(&good.replace("t=12", "t=99999999999999999999")),
            Err(AuthError::Malformed)
        );
        assert_eq!(m(&good.replace("t=12,", "")), Err(AuthError::Malformed));
        assert_eq!(
            m(&good.replace("t=12", "t=12,t=13")),
            Err(AuthError::Malformed)
        );
        assert_eq!(m(&good.replace("t=12", "x=12")), Err(AuthError::Malformed));
        assert_eq!(m(&good.replace("n=01", "n=1")), Err(AuthError::Malformed));
        assert_eq!(m(&(good.clone() + "0")), Err(AuthError::Malformed));
        assert_eq!(m(&(good + ",")), Err(AuthError::Malformed));
    }

    #[test]
    fn verify_accepts_and_refuses_replay() {
        let mut v = Verifier::new(W);
        assert_eq!(req(&mut v, T0, 1, Some(T0)), Ok(()));
        assert_eq!(req(&mut v, T0, 1, Some(T0)), Err(AuthError::Replayed));
        assert_eq!(req(&mut v, T0, 2, Some(T0)), Ok(()));
        assert_eq!(v.high_water_ms(), Some(T0));
    }

    #[test]
    fn wrong_key_method_path_body_refused() {
        let mut v = Verifier::new(W);
        let a = sign(&KEY, "POST", "/api/v1/ack", b"{}", T0, nonce(1));
        let d = body_sha256(b"{}");
        let other = ApiKey::from_bytes([0x43; 32]);
        let bad = Err(AuthError::BadSignature);
        assert_eq!(v.verify(&other, "POST", "/api/v1/ack", &d, &a, None), bad);
        assert_eq!(v.verify(&KEY, "PUT", "/api/v1/ack", &d, &a, None), bad);
        assert_eq!(v.verify(&KEY, "POST", "/api/v1/ack?x", &d, &a, None), bad);
        assert_eq!(
            v.verify(&KEY, "POST", "/api/v1/ack", &body_sha256(b"{ }"), &a, None),
            bad
        );
        // A refused request did not burn its nonce.
        assert_eq!(v.verify(&KEY, "POST", "/api/v1/ack", &d, &a, None), Ok(()));
    }

    #[test]
    fn header_missing_or_malformed() {
        let mut v = Verifier::new(W);
        let d = EMPTY_BODY_SHA256;
        assert_eq!(
            v.verify_header(&KEY, "GET", "/", &d, None, None),
            Err(AuthError::Missing)
        );
        assert_eq!(
            v.verify_header(&KEY, "GET", "/", &d, Some("OFMon-HMAC t=1"), None),
            Err(AuthError::Malformed)
        );
        let h = sign(&KEY, "GET", "/", b"", 5, nonce(9)).to_header_value();
        assert!(
            v.verify_header(&KEY, "GET", "/", &d, Some(&h), None)
                .is_ok()
        );
    }

    #[test]
    fn stale_with_wall_clock() {
        let mut v = Verifier::new(W);
        assert_eq!(req(&mut v, T0 - W - 1, 1, Some(T0)), Err(AuthError::Stale));
        assert_eq!(req(&mut v, T0 + W + 1, 2, Some(T0)), Err(AuthError::Stale));
        assert_eq!(req(&mut v, T0 - W, 3, Some(T0)), Ok(()));
        assert_eq!(req(&mut v, T0 + W, 4, Some(T0)), Ok(()));
    }

    #[test]
    fn monotonic_without_wall_clock() {
        let mut v = Verifier::new(W);
        // First request: any timestamp, even an odd one.
        assert_eq!(req(&mut v, T0, 1, None), Ok(()));
        assert_eq!(req(&mut v, T0 + 3_600_000, 2, None), Ok(()));
        // Slight reordering within the window is fine...
        assert_eq!(req(&mut v, T0 + 3_600_000 - W, 3, None), Ok(()));
        // ...but going back further than the window is stale.
        assert_eq!(
            req(&mut v, T0 + 3_600_000 - W - 1, 4, None),
            Err(AuthError::Stale)
        );
        assert_eq!(req(&mut v, T0, 5, None), Err(AuthError::Stale));
    }

    #[test]
    fn evicted_nonces_cannot_be_replayed() {
        let mut v = Verifier::new(W);
        // Fill the ring and then some, all at the same timestamp.
        for i in 0..(NONCE_RING as u32 + 10) {
            assert_eq!(req(&mut v, T0 + u64::from(i), i, Some(T0)), Ok(()));
        }
        // Every one of them is refused, whether still in the ring or evicted.
        for i in 0..(NONCE_RING as u32 + 10) {
            let r = req(&mut v, T0 + u64::from(i), i, Some(T0));
            assert!(
                matches!(r, Err(AuthError::Stale | AuthError::Replayed)),
                "{i}: {r:?}"
            );
        }
        // New requests with timestamps above the floor still pass.
        assert_eq!(req(&mut v, T0 + 1000, 9999, Some(T0)), Ok(()));
    }

    #[test]
    fn floor_survives_reboot() {
        let mut v = Verifier::new(W);
        assert_eq!(req(&mut v, T0, 1, None), Ok(()));
        let persisted = v.high_water_ms().unwrap();
        let mut after_boot = Verifier::with_floor(W, persisted);
        assert_eq!(req(&mut after_boot, T0, 1, None), Err(AuthError::Stale));
        assert_eq!(req(&mut after_boot, T0 + 1, 2, None), Ok(()));
        assert_eq!(after_boot.high_water_ms(), Some(T0 + 1));
        assert_eq!(Verifier::with_floor(W, 7).high_water_ms(), Some(7));
    }

    #[test]
    fn clock_set_recovers_from_future_timestamps() {
        // A collector whose clock is a year ahead talks to a clockless device.
        let year = 365 * 24 * 3_600_000;
        let mut v = Verifier::with_floor(W, T0 + year);
        assert_eq!(req(&mut v, T0 + year + 1, 1, None), Ok(()));
        // Correctly-timed requests are refused...
        assert_eq!(req(&mut v, T0, 2, None), Err(AuthError::Stale));
        assert_eq!(req(&mut v, T0, 2, Some(T0)), Err(AuthError::Stale));
        // ...until the clock is set to the truth.
        v.clock_set(T0);
        assert_eq!(req(&mut v, T0, 2, Some(T0)), Ok(()));
        assert_eq!(
            req(&mut v, T0 + year + 1, 1, Some(T0)),
            Err(AuthError::Stale)
        );
        assert_eq!(v.high_water_ms(), Some(T0));
        // A sane floor is not touched by a clock set.
        let mut v = Verifier::with_floor(W, T0);
        v.clock_set(T0 + 1000);
        assert_eq!(req(&mut v, T0, 3, Some(T0 + 1000)), Err(AuthError::Stale));
        assert_eq!(v.high_water_ms(), Some(T0));
    }

    #[test]
    fn check_fresh_does_not_remember() {
        let mut v = Verifier::new(W);
        let a = sign(&KEY, "POST", "/api/v1/ota", b"img", T0, nonce(1));
        assert_eq!(v.check_fresh(&a, Some(T0)), Ok(()));
        assert_eq!(v.check_fresh(&a, Some(T0)), Ok(()));
        assert_eq!(
            v.verify(
                &KEY,
                "POST",
                "/api/v1/ota",
                &body_sha256(b"img"),
                &a,
                Some(T0)
            ),
            Ok(())
        );
        assert_eq!(v.check_fresh(&a, Some(T0)), Err(AuthError::Replayed));
    }

    #[test]
    fn body_hasher_is_incremental() {
        let mut h = BodyHasher::new();
        h.update(b"hello ");
        h.update(b"");
        h.update(b"world");
        assert_eq!(h.finish(), body_sha256(b"hello world"));
        assert_eq!(BodyHasher::new().finish(), EMPTY_BODY_SHA256);
    }

    fn flip(bytes: &mut [u8], bit: usize) {
        bytes[bit / 8] ^= 1 << (bit % 8);
    }

    proptest! {
        #[test]
        fn sign_verify_round_trip(
            key in any::<[u8; 32]>(),
            method in "(GET|POST|PUT)",
            path in "/[a-z0-9/?=&]{0,40}",
            body in proptest::collection::vec(any::<u8>(), 0..256),
            t in any::<u64>(),
            n in any::<[u8; 16]>(),
        ) {
            let key = ApiKey::from_bytes(key);
            let a = sign(&key, &method, &path, &body, t, n);
            let parsed = Authorization::parse(&a.to_header_value()).unwrap();
            let mut v = Verifier::new(W);
            prop_assert_eq!(
                v.verify(&key, &method, &path, &body_sha256(&body), &parsed, Some(t)),
                Ok(())
            );
        }

        #[test]
        fn any_single_bit_flip_breaks_verification(
            body in proptest::collection::vec(any::<u8>(), 1..64),
            t in 1u64..u64::MAX,
            n in any::<[u8; 16]>(),
            which in 0usize..6,
            bit in any::<usize>(),
        ) {
            let method = "POST";
            let path = "/api/v1/config?x=1";
            let a = sign(&KEY, method, path, &body, t, n);
            let (mut m, mut p, mut b) = (method.as_bytes().to_vec(), path.as_bytes().to_vec(), body.clone());
            let mut a2 = a;
            match which {
                0 => { let l = m.len() * 8; flip(&mut m, bit % l) }
                1 => { let l = p.len() * 8; flip(&mut p, bit % l) }
                2 => { let l = b.len() * 8; flip(&mut b, bit % l) }
                3 => a2.timestamp_ms ^= 1 << (bit % 64),
                4 => flip(&mut a2.nonce, bit % 128),
                _ => flip(&mut a2.signature, bit % 256),
            }
            // A flipped method/path may no longer be UTF-8; such a request
            // could not be presented anyway.
            let (Ok(m), Ok(p)) = (core::str::from_utf8(&m), core::str::from_utf8(&p)) else {
                return Ok(());
            };
            let mut v = Verifier::new(u64::MAX);
            prop_assert_eq!(
                v.verify(&KEY, m, p, &body_sha256(&b), &a2, None),
                Err(AuthError::BadSignature)
            );
        }

        #[test]
        fn header_parse_never_panics(s in "\\PC{0,160}") {
            let _ = Authorization::parse(&s);
            let _ = Authorization::parse(&alloc::format!("OFMon-HMAC {s}"));
        }

        #[test]
        fn no_replay_ever(ops in proptest::collection::vec((0u64..200, 0u32..100), 1..400)) {
            // Arbitrary sequences of (time offset, nonce) requests, many
            // more than the ring holds: an identical signed request (same
            // timestamp and nonce) is never accepted twice.
            let mut v = Verifier::new(50);
            let mut accepted = std::collections::HashSet::new();
            for (dt, n) in ops {
                if req(&mut v, T0 + dt, n, None).is_ok() {
                    prop_assert!(accepted.insert((T0 + dt, n)), "replay accepted");
                }
            }
        }
    }
}
