//! One request through the router, in explicit phases (in the spirit of pingora's `ProxyHttp`):
//!
//! 1. **request filter**: limits, Host, request id ([`RequestCtx::new`], [`check_limits`]);
//! 2. **pick upstream**: route by Host, holding briefly while the route has no backends
//!    ([`find_route`]), then least-outstanding over two choices ([`crate::table::Route::pick`]);
//! 3. **connect/forward**: send to the chosen dyno through the keep-alive pool, retrying on
//!    another dyno only when the connect failed ([`forward`]);
//! 4. **response filter**: hop-by-hop headers out, `Via`/`X-Request-Id` in, upgrades tunnelled;
//! 5. **log**: one line per request when the response body ends, or when the `101` of an
//!    upgrade goes out ([`RequestCtx::log`]): on stdout, and into the shipping queue of the
//!    app's log when the Host routed to an app.
//!
//! The request path takes no lock on the route table (an `ArcSwap` load) and does no I/O but
//! the proxying itself (and the stdout line).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::body::Incoming;
use hyper::header::{CONNECTION, HOST, HeaderName, HeaderValue, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA};
use hyper::http::uri::{self, PathAndQuery, Scheme};
use hyper::upgrade::OnUpgrade;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use ouro_types::log_line::{LogLine, Source};
use rand::Rng;

use crate::State;
use crate::body::{BodySource, RequestBody, ResponseBody};
use crate::connect::{ConnectTiming, io_error_kind};
use crate::error::{ErrorKind, ProxyError, error_page};
use crate::shipper::{self, Shipper};
use crate::table::{InFlight, Route, normalize_host};

/// Longest request line and header line (name, colon, space, value).
pub(crate) const MAX_LINE: usize = 8 * 1024;
/// Longest header name.
pub(crate) const MAX_NAME: usize = 1000;
/// Most header lines in one request. hyper parses up to 100 headers in a stack buffer; a larger
/// limit makes it allocate and initialise a buffer of that many slots for every request, which
/// cost several percent of throughput at 1000. 100 is also Envoy's and HAProxy's default.
pub(crate) const MAX_HEADERS: usize = 100;
/// Longer paths are cut in the log line.
const MAX_LOGGED_PATH: usize = 1024;
/// Longest incoming `X-Request-Id` that is kept.
const MAX_REQUEST_ID: usize = 200;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_REQUEST_START: HeaderName = HeaderName::from_static("x-request-start");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// The TCP connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    /// Whether it came in on the TLS listener.
    pub tls: bool,
}

/// What the router knows about one request, from the first phase to the log line.
#[derive(Debug)]
pub(crate) struct RequestCtx {
    method: Method,
    path: Option<PathAndQuery>,
    host: String,
    request_id: HeaderValue,
    fwd: IpAddr,
    /// Came over TLS: `X-Forwarded-Proto: https`, `protocol=https`.
    tls: bool,
    version: Version,
    /// When forwarding to a dyno started (first attempt).
    forwarded: Option<Instant>,
    dyno: Option<Arc<str>>,
    connect: Option<Duration>,
    /// The app's route and the log queue, when the line goes to the app's log too.
    app_log: Option<(Arc<Route>, Arc<Shipper>)>,
    pub status: Option<StatusCode>,
    pub bytes: Option<u64>,
    pub error: Option<ProxyError>,
    logged: bool,
}

/// Phases 1 to 4 for one request; phase 5 runs when the response body ends.
pub(crate) async fn handle(state: &State, conn: ConnInfo, mut req: Request<Incoming>) -> Response<ResponseBody> {
    let mut ctx = RequestCtx::new(&req, conn);

    // 1. Request filter.
    let host = request_host(&req).map(|host| normalize_host(host).into_owned());
    let has_host = host.is_some();
    ctx.host = host.unwrap_or_default();
    if let Err(kind) = check_limits(&req) {
        if let Some(route) = state.table.load().route(&ctx.host) {
            ctx.ship_to(state, route);
        }
        return answer_error(ctx, ProxyError::new(kind));
    }
    if !has_host {
        return answer_error(ctx, ProxyError::new(ErrorKind::MissingHost));
    }
    // An ACME HTTP-01 challenge of the app's automatic certificates: answered here, dynos or not.
    if let Some(answer) = acme_answer(state, &ctx.host, &req) {
        ctx.status = Some(StatusCode::OK);
        ctx.bytes = Some(answer.len() as u64);
        let mut response = Response::new(ResponseBody::page(bytes::Bytes::from(answer)));
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        add_response_headers(response.headers_mut(), &ctx);
        ctx.log();
        return response;
    }

    // 2. Pick upstream: the route (the backend is picked per attempt in `forward`).
    let route = match find_route(state, &ctx.host).await {
        Ok(route) => route,
        Err((kind, route)) => {
            if let Some(route) = &route {
                ctx.ship_to(state, route);
            }
            return answer_error(ctx, ProxyError::new(kind));
        }
    };
    ctx.ship_to(state, &route);

    let client_upgrade = if is_upgrade(&req) { Some(hyper::upgrade::on(&mut req)) } else { None };
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    prepare_request_headers(state, &ctx, &mut headers, parts.uri.authority(), client_upgrade.is_some());
    let mut upstream = Upstream {
        method: parts.method,
        path_and_query: parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")),
        headers,
        body: BodySource::new(body),
    };

    // 3. Connect and forward.
    let (mut response, in_flight) = match forward(state, &mut ctx, &route, &mut upstream).await {
        Ok(answered) => answered,
        Err(error) => return answer_error(ctx, error),
    };
    ctx.status = Some(response.status());

    // 4. Response filter.
    if let (StatusCode::SWITCHING_PROTOCOLS, Some(client_upgrade)) = (response.status(), client_upgrade) {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let (mut parts, _) = response.into_parts();
        add_response_headers(&mut parts.headers, &ctx);
        // Logged once, as the 101 goes out (a tunnel may stay open for hours).
        ctx.bytes = Some(0);
        ctx.log();
        tokio::spawn(tunnel(client_upgrade, upstream_upgrade, in_flight, ctx.request_id.clone()));
        return Response::from_parts(parts, ResponseBody::empty());
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    add_response_headers(&mut parts.headers, &ctx);
    parts.extensions = Default::default();
    Response::from_parts(parts, ResponseBody::upstream(body, ctx, in_flight))
}

/// The key authorization for `GET /.well-known/acme-challenge/{token}` on `host`, when its
/// route has that challenge.
fn acme_answer<B>(state: &State, host: &str, req: &Request<B>) -> Option<String> {
    let token = req.uri().path().strip_prefix("/.well-known/acme-challenge/")?;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    state.table.load().route(host)?.acme.get(token).cloned()
}

/// Phase 2: the route for `host`, holding the request while the route has no backend yet (a
/// booting dyno) or no table has arrived yet, up to `hold_timeout`. An error comes with the
/// route when there is one (H14), for the app's log.
async fn find_route(state: &State, host: &str) -> Result<Arc<Route>, (ErrorKind, Option<Arc<Route>>)> {
    // Fast path: one lock-free load.
    {
        let table = state.table.load();
        match table.route(host) {
            Some(route) if !route.backends.is_empty() => return Ok(Arc::clone(route)),
            None if table.loaded => return Err((ErrorKind::NoSuchApp, None)),
            _ => {}
        }
    }
    let deadline = tokio::time::Instant::now() + state.config.hold_timeout;
    // Subscribe before looking again so that no table swap falls between look and wait.
    let mut versions = state.versions.subscribe();
    loop {
        let (loaded, route) = {
            let table = state.table.load();
            match table.route(host) {
                Some(route) if !route.backends.is_empty() => return Ok(Arc::clone(route)),
                None if table.loaded => return Err((ErrorKind::NoSuchApp, None)),
                route => (table.loaded, route.cloned()),
            }
        };
        let gave_up = match tokio::time::timeout_at(deadline, versions.changed()).await {
            Ok(changed) => changed.is_err(),
            Err(_elapsed) => true,
        };
        if gave_up {
            return Err(if loaded { (ErrorKind::NoWebDynos, route) } else { (ErrorKind::NoRouteTable, None) });
        }
    }
}

/// The request as it will be sent to a dyno; rebuilt per attempt.
struct Upstream {
    method: Method,
    path_and_query: PathAndQuery,
    headers: HeaderMap,
    body: BodySource,
}

impl Upstream {
    /// The request for one attempt. The last possible attempt takes the headers instead of
    /// copying them.
    fn request(&mut self, authority: &uri::Authority, last: bool) -> Request<RequestBody> {
        let mut uri_parts = uri::Parts::default();
        uri_parts.scheme = Some(Scheme::HTTP);
        uri_parts.authority = Some(authority.clone());
        uri_parts.path_and_query = Some(self.path_and_query.clone());
        let uri = Uri::from_parts(uri_parts).unwrap_or_else(|_| {
            // Only `OPTIONS *`-like targets end up here; send them to the root.
            Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(authority.clone())
                .path_and_query("/")
                .build()
                .unwrap_or_default()
        });
        let headers = if last { std::mem::take(&mut self.headers) } else { self.headers.clone() };
        let mut request = Request::new(self.body.attempt());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        request
    }
}

/// Phase 3: send to the route's dynos until one answers with a response head. Only connect
/// failures move on to another dyno: once a dyno may have seen the request, it is not resent.
async fn forward(
    state: &State,
    ctx: &mut RequestCtx,
    route: &Route,
    upstream: &mut Upstream,
) -> Result<(Response<Incoming>, InFlight), ProxyError> {
    let started = Instant::now();
    ctx.forwarded = Some(started);
    // One deadline for all attempts: the client waits at most `request_timeout` in total.
    let deadline = tokio::time::Instant::from_std(started + state.config.request_timeout);
    let mut tried: Vec<usize> = Vec::new();
    let mut refused = false;
    loop {
        let Some(index) = route.pick(&tried) else {
            // Every backend failed to connect: H19 if all timed out, else H10.
            let kind = if refused { ErrorKind::AppCrashed } else { ErrorKind::ConnectTimeout };
            return Err(ProxyError::new(kind));
        };
        let backend = &route.backends[index];
        ctx.dyno = Some(Arc::clone(&backend.dyno));
        let in_flight = backend.start();
        let last = tried.len() + 1 >= route.backends.len();
        let request = upstream.request(&backend.authority, last);
        let attempt = Instant::now();
        let result = match tokio::time::timeout_at(deadline, state.client.request(request)).await {
            Ok(result) => result,
            Err(_elapsed) => return Err(ProxyError::new(ErrorKind::RequestTimeout)),
        };
        match result {
            Ok(response) => {
                ctx.connect = Some(connect_time(&response, attempt));
                return Ok((response, in_flight));
            }
            Err(error) => {
                let failure = classify(&error, &upstream.body);
                if !failure.retry_safe {
                    return Err(failure);
                }
                let error = crate::error::error_chain(&error);
                tracing::debug!(app = %route.app, dyno = %backend.dyno, addr = %backend.authority, %error,
                    "connect failed; trying another dyno");
                backend.connect_failed();
                refused |= failure.kind != ErrorKind::ConnectTimeout;
                tried.push(index);
            }
        }
    }
}

/// Where a failed attempt went wrong, and whether the request can go to another dyno.
fn classify(error: &hyper_util::client::legacy::Error, body: &BodySource) -> ProxyError {
    if body.client_failed() {
        return ProxyError::new(ErrorKind::ClientInterrupted);
    }
    // A connect error means nothing was written; `untouched` double-checks the body.
    if error.is_connect() && body.untouched() {
        let kind = match io_error_kind(error) {
            Some(std::io::ErrorKind::TimedOut) => ErrorKind::ConnectTimeout,
            _ => ErrorKind::AppCrashed,
        };
        return ProxyError::retryable(kind);
    }
    ProxyError::new(ErrorKind::ClosedWithoutResponse)
}

fn connect_time(response: &Response<Incoming>, attempt: Instant) -> Duration {
    match response.extensions().get::<ConnectTiming>() {
        // A connection made for (or during) this attempt; else one from the pool.
        Some(timing) if timing.established >= attempt => timing.took.min(timing.established - attempt),
        _ => Duration::ZERO,
    }
}

/// Phase 4 for upgrades: once both sides have switched protocols, copy bytes both ways. The
/// request was logged when its `101` went out.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, in_flight: InFlight, request_id: HeaderValue) {
    let _in_flight = in_flight;
    match tokio::join!(client, upstream) {
        (Ok(client), Ok(upstream)) => {
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                Ok((to_dyno, to_client)) => tracing::debug!(?request_id, to_dyno, to_client, "tunnel closed"),
                Err(error) => tracing::debug!(?request_id, %error, "tunnel broken"),
            }
        }
        (Err(error), _) => tracing::debug!(?request_id, %error, "client did not switch protocols"),
        (_, Err(error)) => tracing::debug!(?request_id, %error, "dyno did not switch protocols"),
    }
}

/// An error answered by the router itself: page, headers, log line.
fn answer_error(mut ctx: RequestCtx, error: ProxyError) -> Response<ResponseBody> {
    let page = error_page(error.kind, &ctx.request_id);
    ctx.status = Some(page.status());
    ctx.bytes = Some(page.body().len() as u64);
    ctx.error = Some(error);
    let (mut parts, body) = page.into_parts();
    add_response_headers(&mut parts.headers, &ctx);
    ctx.log();
    Response::from_parts(parts, ResponseBody::page(body))
}

/// The request line and header lines against the router's limits. hyper enforces the total
/// header block size and count while parsing; per-line limits are checked here.
pub(crate) fn check_limits<B>(req: &Request<B>) -> Result<(), ErrorKind> {
    let target = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len());
    // "GET /path HTTP/1.1": method, space, target, space, version.
    if req.method().as_str().len() + target + 10 > MAX_LINE {
        return Err(ErrorKind::UriTooLong);
    }
    if req.headers().len() > MAX_HEADERS {
        return Err(ErrorKind::HeaderTooLarge);
    }
    for (name, value) in req.headers() {
        let name = name.as_str().len();
        if name > MAX_NAME || name + 2 + value.len() > MAX_LINE {
            return Err(ErrorKind::HeaderTooLarge);
        }
    }
    Ok(())
}

/// The Host header, or the authority of an HTTP/2 request.
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    match req.headers().get(HOST) {
        Some(host) => host.to_str().ok().filter(|h| !h.is_empty()),
        None => req.uri().authority().map(|a| a.as_str()),
    }
}

/// An HTTP/1.1 request asking to switch protocols (websockets).
fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(UPGRADE)
        && req.headers().get_all(CONNECTION).iter().any(|value| has_token(value, "upgrade"))
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))).unwrap_or(false)
}

/// Removes hop-by-hop headers: the standard ones, `Proxy-*`, and those named in `Connection`.
/// An upgrade keeps `Upgrade`, and gets `Connection: upgrade` back from the caller.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        for token in value.to_str().unwrap_or("").split(',').map(str::trim) {
            if token.is_empty() || token.eq_ignore_ascii_case("close") || token.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(name);
            }
        }
    }
    for name in named {
        if !(keep_upgrade && name == UPGRADE) {
            headers.remove(name);
        }
    }
    for name in [&CONNECTION, &KEEP_ALIVE, &TE, &TRAILER, &TRANSFER_ENCODING] {
        headers.remove(name);
    }
    if !keep_upgrade {
        headers.remove(UPGRADE);
    }
    if headers.keys().any(|name| name.as_str().starts_with("proxy-")) {
        let proxy: Vec<HeaderName> =
            headers.keys().filter(|name| name.as_str().starts_with("proxy-")).cloned().collect();
        for name in proxy {
            headers.remove(name);
        }
    }
}

fn prepare_request_headers(
    state: &State,
    ctx: &RequestCtx,
    headers: &mut HeaderMap,
    authority: Option<&uri::Authority>,
    upgrade: bool,
) {
    strip_hop_by_hop(headers, upgrade);
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if !headers.contains_key(HOST) {
        // HTTP/2 carries the host as `:authority`; HTTP/1.1 dynos need a Host header.
        if let Some(value) = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
            headers.insert(HOST, value);
        }
    }

    let mut forwarded_for = String::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(value) = value.to_str() {
            let value = value.trim();
            if !value.is_empty() {
                forwarded_for.push_str(value);
                forwarded_for.push_str(", ");
            }
        }
    }
    let _ = write!(forwarded_for, "{}", ctx.fwd);
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    if ctx.tls {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
        headers.insert(X_FORWARDED_PORT.clone(), state.tls_forwarded_port.clone());
    } else {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
        headers.insert(X_FORWARDED_PORT.clone(), state.forwarded_port.clone());
    }
    headers.insert(X_REQUEST_ID.clone(), ctx.request_id.clone());
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    headers.insert(X_REQUEST_START.clone(), HeaderValue::from(now_ms));
    let via = match ctx.version {
        Version::HTTP_10 => "1.0 ouro",
        Version::HTTP_2 => "2.0 ouro",
        _ => "1.1 ouro",
    };
    headers.append(VIA, HeaderValue::from_static(via));
}

fn add_response_headers(headers: &mut HeaderMap, ctx: &RequestCtx) {
    headers.append(VIA, HeaderValue::from_static("1.1 ouro"));
    headers.insert(X_REQUEST_ID.clone(), ctx.request_id.clone());
}

/// Keeps a sane incoming id (≤ 200 chars of `[A-Za-z0-9+/=_.-]`), else makes a UUID v4.
fn request_id(incoming: Option<&HeaderValue>) -> HeaderValue {
    if let Some(value) = incoming {
        let bytes = value.as_bytes();
        let sane = !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"+/=_.-".contains(b));
        if sane {
            return value.clone();
        }
    }
    let id = uuid::Builder::from_random_bytes(rand::rng().random()).into_uuid();
    let mut buffer = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buffer)).expect("a UUID is a valid header value")
}

impl RequestCtx {
    fn new<B>(req: &Request<B>, conn: ConnInfo) -> RequestCtx {
        RequestCtx {
            method: req.method().clone(),
            path: req.uri().path_and_query().cloned(),
            host: String::new(),
            request_id: request_id(req.headers().get(&X_REQUEST_ID)),
            fwd: conn.peer.ip().to_canonical(),
            tls: conn.tls,
            version: req.version(),
            forwarded: None,
            dyno: None,
            connect: None,
            app_log: None,
            status: None,
            bytes: None,
            error: None,
            logged: false,
        }
    }

    /// The request's line will go to `route`'s app log too (if logs are shipped at all).
    fn ship_to(&mut self, state: &State, route: &Arc<Route>) {
        if let Some(shipper) = &state.shipper {
            self.app_log = Some((Arc::clone(route), Arc::clone(shipper)));
        }
    }

    /// Phase 5: the request's one log line, in Heroku's router format, on stdout and, when the
    /// Host routed to an app, queued for that app's log. Formatted once: the stdout text is
    /// moved into the `LogLine` (which drops the newline).
    pub fn log(&mut self) {
        if self.logged {
            return;
        }
        self.logged = true;
        let line = self.log_line();
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
        if let Some((route, shipper)) = self.app_log.take() {
            shipper.ship(LogLine::new(route.app.clone(), Source::Ouro, shipper::PROCESS, line), &route.log_drops);
        }
    }

    fn log_line(&self) -> String {
        let mut line = String::with_capacity(320);
        match &self.error {
            Some(error) => {
                line.push_str("at=error");
                if let Some(code) = error.kind.code() {
                    let _ = write!(line, " code={code}");
                }
                let _ = write!(line, " desc=\"{}\"", error.kind.desc());
            }
            None => line.push_str("at=info"),
        }
        let _ = write!(line, " method={} path=\"", self.method);
        let path = self.path.as_ref().map_or("", |p| p.as_str());
        match path.char_indices().nth(MAX_LOGGED_PATH) {
            Some((cut, _)) => {
                push_escaped(&mut line, &path[..cut]);
                line.push_str("...");
            }
            None => push_escaped(&mut line, path),
        }
        line.push_str("\" host=");
        push_bare(&mut line, &self.host);
        line.push_str(" request_id=");
        push_bare(&mut line, self.request_id.to_str().unwrap_or(""));
        let _ = write!(line, " fwd=\"{}\" dyno=", self.fwd);
        if let Some(dyno) = &self.dyno {
            push_bare(&mut line, dyno);
        }
        line.push_str(" connect=");
        if let Some(connect) = self.connect {
            let _ = write!(line, "{}ms", connect.as_millis());
        }
        line.push_str(" service=");
        if let Some(forwarded) = self.forwarded {
            let _ = write!(line, "{}ms", forwarded.elapsed().as_millis());
        }
        let status = self.status.or(self.error.map(|e| e.kind.status()));
        line.push_str(" status=");
        if let Some(status) = status {
            let _ = write!(line, "{}", status.as_u16());
        }
        // Body bytes sent to the client: counted frame by frame as the dyno's body streams
        // through (`ResponseBody`), the page's length for router errors, 0 for a `101`.
        line.push_str(" bytes=");
        if let Some(bytes) = self.bytes {
            let _ = write!(line, "{bytes}");
        }
        line.push_str(if self.tls { " protocol=https" } else { " protocol=http" });
        if let Some(error) = &self.error {
            let source = match error.kind.source() {
                crate::error::ErrorSource::Client => "client",
                crate::error::ErrorSource::Dyno => "dyno",
                crate::error::ErrorSource::Router => "router",
            };
            let _ = write!(line, " source={source}");
        }
        line.push('\n');
        line
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        if !self.logged {
            // Dropped before any answer: hyper dropped the request because the client went away.
            if self.status.is_none() && self.error.is_none() {
                self.error = Some(ProxyError::new(ErrorKind::ClientInterrupted));
            }
            self.log();
        }
    }
}

/// Inside a quoted logfmt value: quotes and backslashes escaped with a backslash, control
/// characters (newlines too) written as `\n`, `\t`, `\u{1b}`: the value cannot end early nor
/// start another line.
fn push_escaped(line: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                line.push('\\');
                line.push(c);
            }
            c if c.is_control() => line.extend(c.escape_default()),
            c => line.push(c),
        }
    }
}

/// An unquoted logfmt value: anything that would end it becomes `_`.
fn push_bare(line: &mut String, value: &str) {
    line.extend(value.chars().map(|c| if c.is_whitespace() || c.is_control() || c == '"' { '_' } else { c }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_request_id(input: Option<&str>, kept: bool) {
        let incoming = input.map(|s| HeaderValue::from_str(s).unwrap());
        let id = request_id(incoming.as_ref());
        if kept {
            assert_eq!(Some(&id), incoming.as_ref(), "input {input:?}");
        } else {
            let id = id.to_str().unwrap();
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{input:?} → {id}");
            assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
        }
    }

    #[test]
    fn request_ids() {
        check_request_id(Some("abc-123_x.y+z/w=="), true);
        check_request_id(Some(&"a".repeat(200)), true);
        check_request_id(Some(&"a".repeat(201)), false);
        check_request_id(Some("has space"), false);
        check_request_id(Some("semi;colon"), false);
        check_request_id(Some(""), false);
        check_request_id(None, false);
    }

    #[test]
    fn hop_by_hop_headers_go_and_named_ones_too() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
        ] {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let mut upgrade = headers.clone();
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
        strip_hop_by_hop(&mut upgrade, true);
        assert!(upgrade.contains_key(UPGRADE));
        assert!(!upgrade.contains_key("x-secret"));
    }

    #[test]
    fn limits() {
        let ok = Request::get("/").header("x-a", "b").body(()).unwrap();
        assert_eq!(check_limits(&ok), Ok(()));
        let long_line = Request::get("/").header("x-a", "b".repeat(MAX_LINE)).body(()).unwrap();
        assert_eq!(check_limits(&long_line), Err(ErrorKind::HeaderTooLarge));
        let long_name = Request::get("/").header("x".repeat(MAX_NAME + 1), "b").body(()).unwrap();
        assert_eq!(check_limits(&long_name), Err(ErrorKind::HeaderTooLarge));
        let long_uri = Request::get(format!("/{}", "p".repeat(MAX_LINE))).body(()).unwrap();
        assert_eq!(check_limits(&long_uri), Err(ErrorKind::UriTooLong));
    }

    #[test]
    fn log_line_format() {
        let req = Request::get("/a?b=c").header("x-request-id", "rid-1").body(()).unwrap();
        let mut ctx = RequestCtx::new(&req, ConnInfo { peer: "127.0.0.1:5555".parse().unwrap(), tls: false });
        ctx.host = "demo.localhost".into();
        ctx.error = Some(ProxyError::new(ErrorKind::NoWebDynos));
        ctx.bytes = Some(10);
        let line = ctx.log_line();
        assert_eq!(
            line,
            "at=error code=H14 desc=\"No web processes running\" method=GET path=\"/a?b=c\" \
             host=demo.localhost request_id=rid-1 fwd=\"127.0.0.1\" dyno= connect= service= status=503 \
             bytes=10 protocol=http source=router\n"
        );
        ctx.logged = true;
    }

    #[test]
    fn quoted_values_cannot_end_early_or_break_the_line() {
        let check = |input: &str, expect: &str| {
            let mut line = String::new();
            push_escaped(&mut line, input);
            assert_eq!(line, expect, "input {input:?}");
        };
        check("/a?b=c", "/a?b=c");
        check("/\" status=200 x=\"", "/\\\" status=200 x=\\\"");
        check("/a\nat=info b\r\t\u{1b}\u{85}", "/a\\nat=info b\\r\\t\\u{1b}\\u{85}");
        check("/back\\slash", "/back\\\\slash");
        check("/é ü", "/é ü");
    }
}
