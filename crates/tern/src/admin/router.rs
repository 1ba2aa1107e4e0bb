//! From a request to a response: the route table ([`ROUTES`], which the OpenAPI document must
//! list exactly), authentication, the body limit, JSON errors and paging.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;

use super::{AdminState, Body};

/// The largest request body; larger ones get 413.
pub(crate) const MAX_BODY: usize = 1024 * 1024;
/// The page size when a list request names none.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// The largest page size.
pub(crate) const MAX_LIMIT: usize = 10_000;

/// What a route requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone (`/status`, login, the dashboard's files).
    Public,
    /// An API key or a login token.
    Key,
    /// `/metrics`: anyone when `[admin] metrics_anonymous`, else a key or a token.
    Metrics,
}

/// Every endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub(crate) enum Route {
    Root,
    Dashboard,
    Status,
    Prometheus,
    OpenApi,
    Login,
    Clients,
    Client,
    KickClient,
    ClientSubscriptions,
    ClientSubscribe,
    ClientUnsubscribe,
    Sessions,
    DiscardSession,
    Subscriptions,
    Topics,
    RetainedList,
    RetainedGet,
    RetainedDelete,
    Publish,
    Stats,
    Metrics,
    Listeners,
    Bridges,
    Config,
    Reload,
    Events,
}

/// The route table: method, path pattern (`{name}` matches one segment; a final `{topic}` or
/// `{path}` matches the rest of the path, slashes included), route.
pub(crate) const ROUTES: &[(Method, &str, Route)] = &[
    (Method::GET, "/", Route::Root),
    (Method::GET, "/dashboard", Route::Root),
    (Method::GET, "/dashboard/{path}", Route::Dashboard),
    (Method::GET, "/status", Route::Status),
    (Method::GET, "/metrics", Route::Prometheus),
    (Method::GET, "/api/v1/openapi.json", Route::OpenApi),
    (Method::POST, "/api/v1/login", Route::Login),
    (Method::GET, "/api/v1/clients", Route::Clients),
    (Method::GET, "/api/v1/clients/{clientid}", Route::Client),
    (
        Method::DELETE,
        "/api/v1/clients/{clientid}",
        Route::KickClient,
    ),
    (
        Method::GET,
        "/api/v1/clients/{clientid}/subscriptions",
        Route::ClientSubscriptions,
    ),
    (
        Method::POST,
        "/api/v1/clients/{clientid}/subscribe",
        Route::ClientSubscribe,
    ),
    (
        Method::POST,
        "/api/v1/clients/{clientid}/unsubscribe",
        Route::ClientUnsubscribe,
    ),
    (Method::GET, "/api/v1/sessions", Route::Sessions),
    (
        Method::DELETE,
        "/api/v1/sessions/{clientid}",
        Route::DiscardSession,
    ),
    (Method::GET, "/api/v1/subscriptions", Route::Subscriptions),
    (Method::GET, "/api/v1/topics", Route::Topics),
    (
        Method::GET,
        "/api/v1/mqtt/retainer/messages",
        Route::RetainedList,
    ),
    (
        Method::GET,
        "/api/v1/mqtt/retainer/message/{topic}",
        Route::RetainedGet,
    ),
    (
        Method::DELETE,
        "/api/v1/mqtt/retainer/message/{topic}",
        Route::RetainedDelete,
    ),
    (Method::POST, "/api/v1/publish", Route::Publish),
    (Method::GET, "/api/v1/stats", Route::Stats),
    (Method::GET, "/api/v1/metrics", Route::Metrics),
    (Method::GET, "/api/v1/listeners", Route::Listeners),
    (Method::GET, "/api/v1/bridges", Route::Bridges),
    (Method::GET, "/api/v1/config", Route::Config),
    (Method::POST, "/api/v1/reload", Route::Reload),
    (Method::GET, "/api/v1/events", Route::Events),
];

impl Route {
    fn access(self) -> Access {
        match self {
            Self::Root | Self::Dashboard | Self::Status | Self::Login => Access::Public,
            Self::Prometheus => Access::Metrics,
            _ => Access::Key,
        }
    }
}

/// Whether the path segments `segments` match `pattern`; the values of its `{…}` segments.
fn match_pattern(pattern: &str, segments: &[&str]) -> Option<Vec<String>> {
    let parts: Vec<&str> = pattern.split('/').skip(1).collect();
    let mut params = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if last && matches!(name, "topic" | "path") {
                let rest = segments.get(i..)?;
                // A topic is never empty; the dashboard's `/dashboard/` is its index.
                if name == "topic" && (rest.is_empty() || (rest.len() == 1 && rest[0].is_empty())) {
                    return None;
                }
                let decoded: Option<Vec<String>> = rest.iter().map(|s| percent_decode(s)).collect();
                params.push(decoded?.join("/"));
                return Some(params);
            }
            let segment = segments.get(i)?;
            if segment.is_empty() {
                return None;
            }
            params.push(percent_decode(segment)?);
        } else if segments.get(i) != Some(part) {
            return None;
        }
    }
    (segments.len() == parts.len()).then_some(params)
}

/// The route for `method` and `path`: the route and its parameters, or the error to answer
/// (404 for an unknown path, 405 with the allowed methods for a known path).
pub(crate) fn find(method: &Method, path: &str) -> Result<(Route, Vec<String>), ApiError> {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut allowed: Vec<&str> = Vec::new();
    for (m, pattern, route) in ROUTES {
        if let Some(params) = match_pattern(pattern, &segments) {
            if m == method {
                return Ok((*route, params));
            }
            allowed.push(m.as_str());
        }
    }
    if allowed.is_empty() {
        Err(ApiError::not_found(format!("no such endpoint: {path}")))
    } else {
        Err(ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "METHOD_NOT_ALLOWED",
            message: format!(
                "{method} is not allowed on {path}; use {}",
                allowed.join(", ")
            ),
            allow: Some(allowed.join(", ")),
        })
    }
}

/// An error answer: `{"code": "...", "message": "..."}` with its status.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// The `Allow` header of a 405.
    allow: Option<String>,
}

impl ApiError {
    /// An error with `status` and `code`.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            allow: None,
        }
    }

    /// 400 `BAD_REQUEST`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    /// 404 `NOT_FOUND`.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "BAD_API_KEY_OR_SECRET",
            "authentication required: HTTP Basic with an API key and its secret, or a Bearer \
             token from POST /api/v1/login",
        )
    }

    fn into_response(self) -> Response<Body> {
        #[derive(Serialize)]
        struct Error<'a> {
            code: &'a str,
            message: &'a str,
        }
        let mut response = json(
            self.status,
            &Error {
                code: self.code,
                message: &self.message,
            },
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tern\""),
            );
        }
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }
}

/// A request, routed and authenticated, as the endpoints see it.
pub(crate) struct Call {
    /// The values of the route's `{…}` segments, decoded.
    pub(crate) params: Vec<String>,
    /// The query parameters, decoded, in order.
    pub(crate) query: Vec<(String, String)>,
    /// The body (empty for GET).
    pub(crate) body: Bytes,
    /// The client's address.
    pub(crate) peer: SocketAddr,
}

impl Call {
    /// The query parameter `name`, if given (the last one wins).
    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query parameter `name` parsed as `T`, if given; 400 if it does not parse.
    pub(crate) fn query_parsed<T: std::str::FromStr>(
        &self,
        name: &str,
        expected: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.query(name) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter `{name}`: expected {expected}, got `{text}`"
                ))
            }),
        }
    }

    /// `page` and `limit`.
    pub(crate) fn paging(&self) -> Result<Paging, ApiError> {
        let page = self
            .query_parsed::<usize>("page", "a page number from 1")?
            .unwrap_or(1);
        if page == 0 {
            return Err(ApiError::bad_request(
                "query parameter `page`: pages are numbered from 1",
            ));
        }
        let limit = self
            .query_parsed::<usize>("limit", "a number from 1 to 10000")?
            .unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "query parameter `limit`: expected a number from 1 to {MAX_LIMIT}, got {limit}"
            )));
        }
        Ok(Paging { page, limit })
    }

    /// The body as JSON of type `T`; 400 naming what is wrong.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.is_empty() {
            return Err(ApiError::bad_request("expected a JSON body"));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }

    /// The first path parameter.
    pub(crate) fn param(&self) -> &str {
        self.params.first().map_or("", String::as_str)
    }
}

/// Which page of a list to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Paging {
    /// From 1.
    pub(crate) page: usize,
    /// Items per page.
    pub(crate) limit: usize,
}

/// A list answer: `{"data": [...], "meta": {"page", "limit", "count", "hasnext"}}`, where
/// `count` is the number of items matching the filters (on every page).
pub(crate) fn list<T: Serialize>(items: Vec<T>, paging: Paging) -> Response<Body> {
    let count = items.len();
    let start = (paging.page - 1).saturating_mul(paging.limit);
    let data: Vec<T> = items.into_iter().skip(start).take(paging.limit).collect();
    let hasnext = start.saturating_add(paging.limit) < count;
    json(
        StatusCode::OK,
        &serde_json::json!({
            "data": data,
            "meta": {
                "page": paging.page,
                "limit": paging.limit,
                "count": count,
                "hasnext": hasnext,
            }
        }),
    )
}

/// A whole body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON answer.
pub(crate) fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_type(status, "application/json", bytes),
        Err(e) => with_type(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            format!("{{\"code\":\"INTERNAL_ERROR\",\"message\":\"{e}\"}}"),
        ),
    }
}

/// An answer with a content type.
pub(crate) fn with_type(
    status: StatusCode,
    content_type: &'static str,
    bytes: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 204 No Content.
pub(crate) fn no_content() -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// Answers one request.
pub(crate) async fn handle(
    state: &AdminState,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    match answer(state, request, peer).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn answer(
    state: &AdminState,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let (parts, body) = request.into_parts();
    let (route, params) = find(&parts.method, parts.uri.path())?;
    let needs_key = match route.access() {
        Access::Public => false,
        Access::Key => true,
        Access::Metrics => !state.metrics_anonymous,
    };
    if needs_key {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let principal = match header {
            Some(value) => state.keys.check_header(value).await,
            None => None,
        };
        if principal.is_none() {
            tracing::debug!(
                "admin API: {} {} from {peer}: 401",
                parts.method,
                parts.uri.path()
            );
            return Err(ApiError::unauthorized());
        }
    }
    let body = read_body(&parts, body).await?;
    let call = Call {
        params,
        query: parse_query(parts.uri.query().unwrap_or("")),
        body,
        peer,
    };
    super::api::dispatch(state, route, call).await
}

/// Reads the body: at most [`MAX_BODY`] bytes (else 413) within the body deadline (else 408).
async fn read_body(parts: &http::request::Parts, body: Incoming) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the request body is larger than {MAX_BODY} bytes"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let collect = Limited::new(body, MAX_BODY).collect();
    match tokio::time::timeout(super::server::BODY_TIMEOUT, collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::bad_request(format!("cannot read the body: {e}"))),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            "the request body did not arrive in time",
        )),
    }
}

/// The pairs of a query string, decoded (`+` is a space); pairs that do not decode are left
/// out.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(&k.replace('+', " "))?;
            let v = percent_decode(&v.replace('+', " "))?;
            Some((k, v))
        })
        .collect()
}

/// Decodes `%XX` escapes; `None` for a bad escape or bytes that are not UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn routes_match_with_parameters() {
        let (route, params) = find(&Method::GET, "/api/v1/clients/a%2Fb").unwrap();
        assert_eq!((route, params), (Route::Client, vec!["a/b".to_owned()]));
        let (route, params) = find(&Method::POST, "/api/v1/clients/c1/subscribe").unwrap();
        assert_eq!(
            (route, params),
            (Route::ClientSubscribe, vec!["c1".to_owned()])
        );
        // A topic: encoded or not.
        let (route, params) = find(&Method::GET, "/api/v1/mqtt/retainer/message/a%2Fb/c").unwrap();
        assert_eq!(
            (route, params),
            (Route::RetainedGet, vec!["a/b/c".to_owned()])
        );
        let (route, params) = find(&Method::GET, "/api/v1/mqtt/retainer/message/%2Fx%20y").unwrap();
        assert_eq!(
            (route, params),
            (Route::RetainedGet, vec!["/x y".to_owned()])
        );
        let e = find(&Method::GET, "/api/v1/mqtt/retainer/message/").unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e = find(&Method::GET, "/api/v1/clients/").unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e = find(&Method::GET, "/api/v1/nope").unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e = find(&Method::PUT, "/api/v1/clients/x").unwrap_err();
        assert_eq!(e.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(e.allow.as_deref(), Some("GET, DELETE"));
        let e = find(&Method::GET, "/api/v1/clients/x%ZZ").unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
    }

    /// The OpenAPI document lists exactly the routes of [`ROUTES`].
    #[test]
    fn the_openapi_document_matches_the_route_table() {
        let doc: serde_json::Value = serde_json::from_str(super::super::api::OPENAPI).unwrap();
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        documented.sort();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), (*p).to_owned()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
    }

    #[test]
    fn queries_decode() {
        assert_eq!(
            parse_query("a=1&b=x+y&c=%2B%26&d&=e&f=%FF"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "+&".into()),
                ("d".into(), String::new()),
                (String::new(), "e".into()),
            ]
        );
    }
}
