//! Proxy errors: what went wrong, where it came from, whether a retry is safe, and the page the
//! client gets.

use bytes::Bytes;
use hyper::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

/// The party whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorSource {
    /// The client sent something we refuse, or went away.
    Client,
    /// The dyno refused, timed out or broke the connection.
    Dyno,
    /// The platform: no table, no web dynos.
    Router,
}

/// What went wrong, in Heroku's router vocabulary where there is a code for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// No route for the Host.
    NoSuchApp,
    /// No Host header at all.
    MissingHost,
    /// A header line or name over the limit, or too many headers.
    HeaderTooLarge,
    /// The request line is over the limit.
    UriTooLong,
    /// The router has not received a route table yet.
    NoRouteTable,
    /// H10: every backend refused the connection.
    AppCrashed,
    /// H12: no response head within the request timeout.
    RequestTimeout,
    /// H13: the dyno closed the connection without answering.
    ClosedWithoutResponse,
    /// H14: the route has no web dynos.
    NoWebDynos,
    /// H18: the dyno broke the connection in the middle of the response.
    ServerInterrupted,
    /// H19: connecting to the dyno timed out (on every backend).
    ConnectTimeout,
    /// H27: the client went away before the response was complete.
    ClientInterrupted,
}

/// An error tagged with its origin and whether the request may be sent to another backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProxyError {
    pub kind: ErrorKind,
    /// Only connect failures are safe to retry: nothing of the request has left the router.
    pub retry_safe: bool,
}

impl ProxyError {
    pub fn new(kind: ErrorKind) -> ProxyError {
        ProxyError { kind, retry_safe: false }
    }

    pub fn retryable(kind: ErrorKind) -> ProxyError {
        ProxyError { kind, retry_safe: true }
    }
}

struct Info {
    status: StatusCode,
    code: Option<&'static str>,
    desc: &'static str,
    source: ErrorSource,
    title: &'static str,
    explanation: &'static str,
    retry_after: Option<u32>,
}

const APP_ERROR: &str = "Application Error";
const APP_ERROR_TEXT: &str = "An error occurred in the application and your page could not be served. \
                              If you are the application owner, check your logs for details.";

impl ErrorKind {
    fn info(self) -> Info {
        use ErrorKind::*;
        use ErrorSource::*;
        let (status, code, desc, source, title, explanation, retry_after) = match self {
            NoSuchApp => (
                StatusCode::NOT_FOUND,
                None,
                "No such app",
                Client,
                "No such app",
                "There is no app configured at this hostname.",
                None,
            ),
            MissingHost => (
                StatusCode::BAD_REQUEST,
                None,
                "Missing Host header",
                Client,
                "Bad Request",
                "The request has no Host header, so it cannot be routed to an app.",
                None,
            ),
            HeaderTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                None,
                "Request header too large",
                Client,
                "Request Header Fields Too Large",
                "A request header line is longer than 8 KiB, a header name longer than 1000 bytes, \
                 or there are more than 100 headers.",
                None,
            ),
            UriTooLong => (
                StatusCode::URI_TOO_LONG,
                None,
                "Request line too long",
                Client,
                "URI Too Long",
                "The request line is longer than 8 KiB.",
                None,
            ),
            NoRouteTable => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("H99"),
                "Route table not loaded",
                Router,
                "Service Unavailable",
                "The router is starting and does not know its routes yet. Please retry shortly.",
                Some(5),
            ),
            AppCrashed => {
                (StatusCode::SERVICE_UNAVAILABLE, Some("H10"), "App crashed", Dyno, APP_ERROR, APP_ERROR_TEXT, Some(5))
            }
            RequestTimeout => {
                (StatusCode::SERVICE_UNAVAILABLE, Some("H12"), "Request timeout", Dyno, APP_ERROR, APP_ERROR_TEXT, None)
            }
            ClosedWithoutResponse => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("H13"),
                "Connection closed without response",
                Dyno,
                APP_ERROR,
                APP_ERROR_TEXT,
                None,
            ),
            NoWebDynos => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("H14"),
                "No web processes running",
                Router,
                APP_ERROR,
                "This app has no web dynos running. If you are the application owner, scale up its web \
                 process type (ouro ps:scale web=1).",
                Some(10),
            ),
            ServerInterrupted => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("H18"),
                "Server Request Interrupted",
                Dyno,
                APP_ERROR,
                APP_ERROR_TEXT,
                None,
            ),
            ConnectTimeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("H19"),
                "Backend connection timeout",
                Dyno,
                APP_ERROR,
                APP_ERROR_TEXT,
                Some(5),
            ),
            ClientInterrupted => (
                // 499 is nginx's and Heroku's "client closed request"; never sent, only logged.
                StatusCode::from_u16(499).expect("499 is a valid status"),
                Some("H27"),
                "Client Request Interrupted",
                Client,
                "Client Closed Request",
                "The client went away.",
                None,
            ),
        };
        Info { status, code, desc, source, title, explanation, retry_after }
    }

    pub fn status(self) -> StatusCode {
        self.info().status
    }

    /// Heroku-style code (`H14`) for the log line, if this error has one.
    pub fn code(self) -> Option<&'static str> {
        self.info().code
    }

    /// One-line description for the log line's `desc="..."`.
    pub fn desc(self) -> &'static str {
        self.info().desc
    }

    pub fn source(self) -> ErrorSource {
        self.info().source
    }
}

/// The small HTML page the client gets for an error answered by the router itself.
pub(crate) fn error_page(kind: ErrorKind, request_id: &HeaderValue) -> Response<Bytes> {
    let info = kind.info();
    let code = match info.code {
        Some(code) => format!("{code}: {}", info.desc),
        None => info.desc.to_string(),
    };
    // The request id is either validated ([A-Za-z0-9+/=_.-]) or a generated UUID: safe in HTML.
    let request_id = request_id.to_str().unwrap_or("");
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n\
         <style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#333}}\
         small{{color:#888}}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<p>{explanation}</p>\n\
         <p><small>{code} &middot; request id {request_id}</small></p>\n</body>\n</html>\n",
        title = info.title,
        explanation = info.explanation,
    );
    let length = html.len();
    let mut response = Response::new(Bytes::from(html));
    *response.status_mut() = info.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(seconds) = info.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// `error: its source: its source's source`, so that the root cause (refused, reset) shows.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_code_status_and_retry_after() {
        let id = HeaderValue::from_static("abc-123");
        let page = error_page(ErrorKind::NoWebDynos, &id);
        assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(page.headers()[RETRY_AFTER], "10");
        assert!(page.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        let body = std::str::from_utf8(page.body()).unwrap();
        assert!(body.contains("H14: No web processes running"), "{body}");
        assert!(body.contains("abc-123"));

        let page = error_page(ErrorKind::NoSuchApp, &id);
        assert_eq!(page.status(), StatusCode::NOT_FOUND);
        assert!(page.headers().get(RETRY_AFTER).is_none());
        assert!(std::str::from_utf8(page.body()).unwrap().contains("No such app"));
    }

    #[test]
    fn sources() {
        assert_eq!(ErrorKind::AppCrashed.source(), ErrorSource::Dyno);
        assert_eq!(ErrorKind::NoWebDynos.source(), ErrorSource::Router);
        assert_eq!(ErrorKind::HeaderTooLarge.source(), ErrorSource::Client);
    }
}
