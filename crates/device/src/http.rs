//! The HTTP shell: one picoserve [`Router`] that feeds every request through
//! the route table ([`crate::routes`]) into the device core.
//!
//! The same router is served by embassy-net on the chip and by tokio in the
//! simulator. The device state sits behind a [`Shared`] cell that is locked
//! only for the synchronous handling of one request (never across an
//! `.await`), so concurrent connections are served one after another and
//! can never deadlock each other.

use alloc::vec::Vec;
use core::cell::RefCell;

use embassy_sync::blocking_mutex::{Mutex, raw::RawMutex};
use picoserve::ResponseSent;
use picoserve::io::Read;
use picoserve::request::{Path, Request as PicoRequest};
use picoserve::response::{Content, ResponseWriter, StatusCode};
use picoserve::routing::{PathRouterService, Router, ServicePathRouter};

use crate::api::{Headers, Request, Response};
use crate::platform::Clock;
use crate::routes::{self, Endpoint, Lookup, Route};

/// What the HTTP shell needs from the device core.
pub trait Service {
    /// Whether the legacy routes are live.
    fn legacy_enabled(&self) -> bool;
    /// Answers one request whose body has been read completely.
    fn handle(&mut self, now_ms: u64, route: &Route, req: &Request<'_>) -> Response;
    /// Starts a streamed upload (OTA): checks authentication and headers.
    /// `req.body` is empty; `len` is the announced body length.
    fn upload_begin(&mut self, now_ms: u64, req: &Request<'_>, len: usize) -> Result<(), Response>;
    /// Next chunk of a streamed upload.
    fn upload_chunk(&mut self, data: &[u8]) -> Result<(), Response>;
    /// End of a streamed upload: verify and answer. `complete` is false when
    /// the client sent fewer bytes than announced.
    fn upload_end(&mut self, now_ms: u64, complete: bool) -> Response;
}

/// Shared access to the device core from concurrent connections.
pub trait Shared {
    /// The device core.
    type Target: Service;
    /// Runs `f` with exclusive access. Implementations must not hold the lock
    /// across `.await` points (there are none inside `f`).
    fn with<R>(&self, f: impl FnOnce(&mut Self::Target) -> R) -> R;
}

impl<M: RawMutex, T: Service> Shared for Mutex<M, RefCell<T>> {
    type Target = T;
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.lock(|cell| f(&mut cell.borrow_mut()))
    }
}

/// The picoserve service: every request goes through [`routes::lookup`].
pub struct ApiService<'a, S, C> {
    shared: &'a S,
    clock: &'a C,
}

/// The device's router: one picoserve [`Router`] over the route table.
pub type ApiRouter<'a, S, C> = Router<ServicePathRouter<ApiService<'a, S, C>>>;

/// Builds the router for a shared device and its clock.
pub fn router<'a, S: Shared, C: Clock>(shared: &'a S, clock: &'a C) -> ApiRouter<'a, S, C> {
    Router::from_service(ApiService { shared, clock })
}

/// Body bytes of a response, with its content type.
struct Body {
    content_type: &'static str,
    bytes: Vec<u8>,
}

impl Content for Body {
    fn content_type(&self) -> &'static str {
        self.content_type
    }
    fn content_length(&self) -> usize {
        self.bytes.len()
    }
    async fn write_content<W: picoserve::io::Write>(self, mut writer: W) -> Result<(), W::Error> {
        writer.write_all(&self.bytes).await
    }
}

struct ExtraHeaders(Vec<(&'static str, alloc::string::String)>);

impl picoserve::response::HeadersIter for ExtraHeaders {
    async fn for_each_header<F: picoserve::response::ForEachHeader>(
        self,
        mut f: F,
    ) -> Result<F::Output, F::Error> {
        for (name, value) in self.0 {
            f.call(name, value).await?;
        }
        f.finalize().await
    }
}

struct PicoHeaders<'a>(picoserve::request::Headers<'a>);

impl Headers for PicoHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.as_str().ok())
    }
}

/// Chunk size of streamed uploads.
const UPLOAD_CHUNK: usize = 1024;

impl<S: Shared, C: Clock> PathRouterService for ApiService<'_, S, C> {
    async fn call_path_router_service<R: Read, W: ResponseWriter<Error = R::Error>>(
        &self,
        _state: &(),
        _params: (),
        _path: Path<'_>,
        request: PicoRequest<'_, R>,
        response_writer: W,
    ) -> Result<ResponseSent, W::Error> {
        let PicoRequest {
            parts,
            mut body_connection,
        } = request;
        let headers = PicoHeaders(parts.headers());
        let method = parts.method();
        let path = parts.path().encoded();
        let query = parts.query().map(|q| q.0);
        let legacy = self.shared.with(|d| d.legacy_enabled());
        let len = body_connection.content_length();

        let response = match routes::lookup(legacy, method, path) {
            Lookup::NotFound => Response::error(404, "no such route"),
            Lookup::MethodNotAllowed => {
                let mut r = Response::error(405, "method not allowed on this route");
                r.headers
                    .push(("Allow", routes::allowed_methods(legacy, path)));
                r
            }
            Lookup::Found(route) if len > route.max_body => {
                Response::error(413, "request body too large")
            }
            Lookup::Found(route) if route.endpoint == Endpoint::Ota => {
                let req = Request {
                    method,
                    path,
                    query,
                    headers: &headers,
                    body: &[],
                };
                let now = self.clock.uptime_ms();
                match self.shared.with(|d| d.upload_begin(now, &req, len)) {
                    Err(refusal) => refusal,
                    Ok(()) => {
                        let mut reader = body_connection.body().reader();
                        let mut buf = [0u8; UPLOAD_CHUNK];
                        let mut received = 0usize;
                        let mut failure = None;
                        while received < len {
                            let want = (len - received).min(UPLOAD_CHUNK);
                            match reader.read(&mut buf[..want]).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    received += n;
                                    if let Err(refusal) =
                                        self.shared.with(|d| d.upload_chunk(&buf[..n]))
                                    {
                                        failure = Some(refusal);
                                        break;
                                    }
                                }
                            }
                        }
                        let now = self.clock.uptime_ms();
                        let end = self.shared.with(|d| d.upload_end(now, received == len));
                        failure.unwrap_or(end)
                    }
                }
            }
            Lookup::Found(route) => match body_connection.body().read_all().await {
                Err(_) => Response::error(400, "could not read the request body"),
                Ok(body) => {
                    let req = Request {
                        method,
                        path,
                        query,
                        headers: &headers,
                        body,
                    };
                    let now = self.clock.uptime_ms();
                    self.shared.with(|d| d.handle(now, route, &req))
                }
            },
        };

        let connection = body_connection.finalize().await?;
        let Response {
            status,
            content_type,
            body,
            headers,
        } = response;
        let reply = picoserve::response::Response::new(
            StatusCode::new(status),
            Body {
                content_type,
                bytes: body,
            },
        )
        .with_headers(ExtraHeaders(headers));
        response_writer.write_response(connection, reply).await
    }
}
