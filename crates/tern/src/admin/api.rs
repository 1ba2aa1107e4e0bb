//! The endpoints: from a routed, authenticated call to its JSON answer.
//!
//! Times are RFC 3339 in UTC; the broker keeps monotonic instants, turned into wall-clock time
//! when answered. Lists are paged (`page`, `limit`) and filtered before paging, so `meta.count`
//! is the number of items matching the filters.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64ct::{Base64, Encoding};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use tern_codec::{
    ByteString, ProtocolVersion, PublishProperties, QoS, RetainHandling, SubscriptionOptions,
};
use tern_core::{
    AdminDisconnect, AdminError, Message, RouteInfo, SessionInfo, SubscriptionInfo, topic_matches,
};

use super::router::{ApiError, Call, Route, json, list, no_content, with_type};
use super::{AdminState, Body};

/// The OpenAPI document of this API.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

/// How long a kick or a discard waits for the connection to be gone before answering.
const DISCONNECT_WAIT: Duration = Duration::from_secs(2);

/// Answers a routed, authenticated call.
pub(crate) async fn dispatch(
    state: &AdminState,
    route: Route,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let broker = &state.broker;
    match route {
        Route::Root => Ok(redirect("/dashboard/")),
        Route::Dashboard => super::dashboard::response(call.param())
            .ok_or_else(|| ApiError::not_found(format!("no dashboard file `{}`", call.param()))),
        Route::Status => Ok(status(state)),
        Route::Prometheus => Ok(with_type(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            crate::prometheus::render(broker),
        )),
        Route::OpenApi => Ok(with_type(StatusCode::OK, "application/json", OPENAPI)),
        Route::Login => login(state, &call).await,
        Route::Clients => {
            let filter = ClientFilter::from_call(&call)?;
            let now = Clock::now();
            let items: Vec<Client> = broker
                .sessions()
                .iter()
                .filter(|s| filter.matches(s))
                .map(|s| Client::of(s, &now))
                .collect();
            Ok(list(items, call.paging()?))
        }
        Route::Client => {
            let session = broker
                .session(call.param())
                .ok_or_else(|| client_not_found(call.param()))?;
            Ok(json(StatusCode::OK, &Client::of(&session, &Clock::now())))
        }
        Route::KickClient => kick(state, &call, false).await,
        Route::DiscardSession => kick(state, &call, true).await,
        Route::ClientSubscriptions => {
            let subs = broker
                .client_subscriptions(call.param())
                .ok_or_else(|| client_not_found(call.param()))?;
            let items: Vec<Subscription> = subs.iter().map(Subscription::of).collect();
            Ok(list(items, call.paging()?))
        }
        Route::ClientSubscribe => subscribe(state, &call),
        Route::ClientUnsubscribe => unsubscribe(state, &call),
        Route::Sessions => {
            let filter = ClientFilter::from_call(&call)?;
            let now = Clock::now();
            let items: Vec<SessionItem> = broker
                .sessions()
                .iter()
                .filter(|s| filter.matches(s))
                .map(|s| SessionItem::of(s, &now))
                .collect();
            Ok(list(items, call.paging()?))
        }
        Route::Subscriptions => subscriptions(state, &call),
        Route::Topics => {
            let topic = call.query("topic");
            let items: Vec<Topic> = broker
                .routes()
                .into_iter()
                .filter(|r| topic.is_none_or(|t| r.topic == t))
                .map(Topic::from)
                .collect();
            Ok(list(items, call.paging()?))
        }
        Route::RetainedList => {
            let filter = call.query("topic").unwrap_or("#");
            let messages = broker
                .retained_messages(filter, Instant::now())
                .map_err(bad_request)?;
            let now = Instant::now();
            let items: Vec<Retained> = messages
                .iter()
                .map(|m| Retained::of(m, now, false))
                .collect();
            Ok(list(items, call.paging()?))
        }
        Route::RetainedGet => {
            let now = Instant::now();
            let message = broker
                .retained_message(call.param(), now)
                .ok_or_else(|| retained_not_found(call.param()))?;
            Ok(json(StatusCode::OK, &Retained::of(&message, now, true)))
        }
        Route::RetainedDelete => {
            if broker.delete_retained(call.param()) {
                Ok(no_content())
            } else {
                Err(retained_not_found(call.param()))
            }
        }
        Route::Publish => publish(state, &call).await,
        Route::Stats | Route::Metrics => {
            Ok(json(StatusCode::OK, &crate::metrics_view::snapshot(broker)))
        }
        Route::Listeners => {
            let items = (state.hooks.listeners)();
            Ok(list(items, call.paging()?))
        }
        Route::Bridges => Ok(list(crate::bridge::statuses(broker), call.paging()?)),
        Route::Config => Ok(json(StatusCode::OK, &(state.hooks.config)())),
        Route::Reload => reload(state).await,
        Route::Events => Ok(super::events::response(
            broker.clone(),
            state.shutdown.clone(),
        )),
    }
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut response = with_type(StatusCode::FOUND, "text/plain; charset=utf-8", to);
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    response
}

fn client_not_found(client_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "CLIENTID_NOT_FOUND",
        format!("no session has the client id `{client_id}`"),
    )
}

fn retained_not_found(topic: &str) -> ApiError {
    ApiError::not_found(format!("no retained message on `{topic}`"))
}

fn bad_request(e: AdminError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

/// `GET /status`: the broker is up.
fn status(state: &AdminState) -> Response<Body> {
    json(
        StatusCode::OK,
        &serde_json::json!({
            "status": "running",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime": state.started.elapsed().as_secs(),
        }),
    )
}

/// `POST /api/v1/login` `{"key", "secret"}` → `{"token", "expires_in"}`.
async fn login(state: &AdminState, call: &Call) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Login {
        key: String,
        secret: String,
    }
    let body: Login = call.json()?;
    let Some(principal) = state.keys.check_secret(&body.key, &body.secret).await else {
        tracing::info!(
            "admin API: login refused for key `{}` from {}",
            body.key.escape_debug(),
            call.peer
        );
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "BAD_API_KEY_OR_SECRET",
            "unknown API key or wrong secret",
        ));
    };
    let (token, ttl) = state.keys.issue_token(&principal).ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "no random numbers for a token",
        )
    })?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "token": token, "expires_in": ttl.as_secs() }),
    ))
}

/// Turns the broker's instants into wall-clock times.
struct Clock {
    instant: Instant,
    system: SystemTime,
}

impl Clock {
    fn now() -> Self {
        Self {
            instant: Instant::now(),
            system: SystemTime::now(),
        }
    }

    fn wall(&self, at: Instant) -> String {
        let ago = self.instant.saturating_duration_since(at);
        super::rfc3339(
            self.system
                .checked_sub(ago)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        )
    }
}

/// The protocol level (3, 4, 5) of a version, as EMQX's `proto_ver`.
fn level(version: ProtocolVersion) -> u8 {
    match version {
        ProtocolVersion::V31 => 3,
        ProtocolVersion::V311 => 4,
        ProtocolVersion::V5 => 5,
    }
}

/// A client (a session and its connection, if any), as `GET /api/v1/clients` lists it.
#[derive(Serialize)]
struct Client {
    clientid: String,
    username: Option<String>,
    connected: bool,
    conn_state: &'static str,
    ip_address: Option<String>,
    port: Option<u16>,
    listener: Option<String>,
    proto_name: Option<&'static str>,
    proto_ver: Option<u8>,
    keepalive: Option<u16>,
    clean_start: Option<bool>,
    expiry_interval: u32,
    connected_at: Option<String>,
    disconnected_at: Option<String>,
    subscriptions_cnt: usize,
    mqueue_len: usize,
    mqueue_bytes: usize,
    inflight_cnt: usize,
    awaiting_rel_cnt: usize,
    durable: bool,
    mount_point: Option<String>,
}

impl Client {
    fn of(s: &SessionInfo, clock: &Clock) -> Self {
        let c = s.connection.as_ref();
        Self {
            clientid: s.client_id.to_string(),
            username: s.username.as_deref().map(str::to_owned),
            connected: c.is_some(),
            conn_state: if c.is_some() {
                "connected"
            } else {
                "disconnected"
            },
            ip_address: c.and_then(|c| c.remote_addr).map(|a| a.ip().to_string()),
            port: c.and_then(|c| c.remote_addr).map(|a| a.port()),
            listener: c.and_then(|c| c.listener.as_deref().map(str::to_owned)),
            proto_name: c.map(|c| {
                if c.protocol == ProtocolVersion::V31 {
                    "MQIsdp"
                } else {
                    "MQTT"
                }
            }),
            proto_ver: c.map(|c| level(c.protocol)),
            keepalive: c.map(|c| c.keep_alive),
            clean_start: c.map(|c| c.clean_start),
            expiry_interval: s.expiry_interval,
            connected_at: c.map(|c| clock.wall(c.connected_at)),
            disconnected_at: s.disconnected_at.map(|at| clock.wall(at)),
            subscriptions_cnt: s.subscriptions,
            mqueue_len: s.queued,
            mqueue_bytes: s.queued_bytes,
            inflight_cnt: s.inflight,
            awaiting_rel_cnt: s.awaiting_rel,
            durable: s.durable,
            mount_point: s.mount_point.as_deref().map(str::to_owned),
        }
    }
}

/// A session, as `GET /api/v1/sessions` lists it.
#[derive(Serialize)]
struct SessionItem {
    clientid: String,
    username: Option<String>,
    connected: bool,
    expiry_interval: u32,
    disconnected_at: Option<String>,
    subscriptions_cnt: usize,
    mqueue_len: usize,
    inflight_cnt: usize,
    awaiting_rel_cnt: usize,
    durable: bool,
}

impl SessionItem {
    fn of(s: &SessionInfo, clock: &Clock) -> Self {
        Self {
            clientid: s.client_id.to_string(),
            username: s.username.as_deref().map(str::to_owned),
            connected: s.connection.is_some(),
            expiry_interval: s.expiry_interval,
            disconnected_at: s.disconnected_at.map(|at| clock.wall(at)),
            subscriptions_cnt: s.subscriptions,
            mqueue_len: s.queued,
            inflight_cnt: s.inflight,
            awaiting_rel_cnt: s.awaiting_rel,
            durable: s.durable,
        }
    }
}

/// The filters of `GET /api/v1/clients` and `GET /api/v1/sessions`.
#[derive(Default)]
struct ClientFilter {
    clientid: Option<String>,
    username: Option<String>,
    like_clientid: Option<String>,
    like_username: Option<String>,
    ip_address: Option<IpAddr>,
    connected: Option<bool>,
    proto_ver: Option<ProtocolVersion>,
}

impl ClientFilter {
    fn from_call(call: &Call) -> Result<Self, ApiError> {
        let connected = match call.query("conn_state") {
            None => None,
            Some("connected") => Some(true),
            Some("disconnected") => Some(false),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "query parameter `conn_state`: expected `connected` or `disconnected`, got \
                     `{other}`"
                )));
            }
        };
        let proto_ver = match call.query("proto_ver") {
            None => None,
            Some("3" | "3.1") => Some(ProtocolVersion::V31),
            Some("4" | "3.1.1") => Some(ProtocolVersion::V311),
            Some("5" | "5.0") => Some(ProtocolVersion::V5),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "query parameter `proto_ver`: expected 3, 4 or 5 (or 3.1, 3.1.1, 5.0), got \
                     `{other}`"
                )));
            }
        };
        Ok(Self {
            clientid: call.query("clientid").map(str::to_owned),
            username: call.query("username").map(str::to_owned),
            like_clientid: call.query("like_clientid").map(str::to_owned),
            like_username: call.query("like_username").map(str::to_owned),
            ip_address: call.query_parsed("ip_address", "an IP address")?,
            connected,
            proto_ver,
        })
    }

    fn matches(&self, s: &SessionInfo) -> bool {
        let c = s.connection.as_ref();
        let username = s.username.as_deref();
        self.clientid
            .as_deref()
            .is_none_or(|id| *s.client_id == *id)
            && self.username.as_deref().is_none_or(|u| username == Some(u))
            && self
                .like_clientid
                .as_deref()
                .is_none_or(|part| s.client_id.contains(part))
            && self
                .like_username
                .as_deref()
                .is_none_or(|part| username.is_some_and(|u| u.contains(part)))
            && self
                .ip_address
                .is_none_or(|ip| c.and_then(|c| c.remote_addr).is_some_and(|a| a.ip() == ip))
            && self.connected.is_none_or(|on| on == c.is_some())
            && self
                .proto_ver
                .is_none_or(|v| c.is_some_and(|c| c.protocol == v))
    }
}

/// `DELETE /api/v1/clients/{clientid}` (kick) and `DELETE /api/v1/sessions/{clientid}`
/// (`discard`: the session ends too). Waits (a little) for the connection to be gone, so that
/// what is listed next agrees.
async fn kick(state: &AdminState, call: &Call, discard: bool) -> Result<Response<Body>, ApiError> {
    let broker = &state.broker;
    let client_id = call.param();
    match broker.admin_disconnect(client_id, discard, Instant::now()) {
        AdminDisconnect::NoSession => Err(client_not_found(client_id)),
        AdminDisconnect::NotConnected if !discard => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "CLIENTID_NOT_FOUND",
            format!(
                "the client `{client_id}` is not connected (its session stays; DELETE \
                 /api/v1/sessions/{{clientid}} discards it)"
            ),
        )),
        AdminDisconnect::NotConnected => {
            tracing::info!("admin API: session `{client_id}` discarded");
            Ok(no_content())
        }
        AdminDisconnect::Disconnecting => {
            tracing::info!(
                "admin API: client `{client_id}` disconnected{}",
                if discard {
                    ", its session discarded"
                } else {
                    ""
                }
            );
            let deadline = Instant::now() + DISCONNECT_WAIT;
            while Instant::now() < deadline {
                let gone = match broker.session(client_id) {
                    None => true,
                    Some(s) => !discard && s.connection.is_none(),
                };
                if gone {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(no_content())
        }
    }
}

/// A subscription, as the subscription lists show it.
#[derive(Serialize)]
struct Subscription {
    clientid: String,
    /// As subscribed (`$share/group/filter` for a shared subscription).
    topic: String,
    share_group: Option<String>,
    qos: u8,
    nl: u8,
    rap: u8,
    rh: u8,
    subid: Option<u32>,
}

impl Subscription {
    fn of(s: &SubscriptionInfo) -> Self {
        Self {
            clientid: s.client_id.to_string(),
            topic: s.filter.to_string(),
            share_group: s.share_group.as_deref().map(str::to_owned),
            qos: s.options.qos as u8,
            nl: u8::from(s.options.no_local),
            rap: u8::from(s.options.retain_as_published),
            rh: s.options.retain_handling as u8,
            subid: s.identifier,
        }
    }
}

fn qos_of(n: u8) -> Result<QoS, ApiError> {
    match n {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        2 => Ok(QoS::ExactlyOnce),
        _ => Err(ApiError::bad_request(format!(
            "`qos` must be 0, 1 or 2, not {n}"
        ))),
    }
}

/// `POST /api/v1/clients/{clientid}/subscribe` `{"topic", "qos", "nl", "rap", "rh"}`.
fn subscribe(state: &AdminState, call: &Call) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        topic: String,
        #[serde(default)]
        qos: u8,
        #[serde(default)]
        nl: u8,
        #[serde(default)]
        rap: u8,
        #[serde(default)]
        rh: u8,
    }
    let body: Body = call.json()?;
    let flag = |name: &str, v: u8| match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(ApiError::bad_request(format!(
            "`{name}` must be 0 or 1, not {v}"
        ))),
    };
    let options = SubscriptionOptions {
        qos: qos_of(body.qos)?,
        no_local: flag("nl", body.nl)?,
        retain_as_published: flag("rap", body.rap)?,
        retain_handling: match body.rh {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            n => {
                return Err(ApiError::bad_request(format!(
                    "`rh` must be 0, 1 or 2, not {n}"
                )));
            }
        },
    };
    let client_id = call.param();
    match state
        .broker
        .admin_subscribe(client_id, &body.topic, options, Instant::now())
    {
        Ok(_) => {
            let sub = state
                .broker
                .client_subscriptions(client_id)
                .and_then(|subs| subs.into_iter().find(|s| *s.filter == *body.topic))
                .ok_or_else(|| client_not_found(client_id))?;
            Ok(json(StatusCode::OK, &Subscription::of(&sub)))
        }
        Err(AdminError::NoSession) => Err(client_not_found(client_id)),
        Err(e) => Err(bad_request(e)),
    }
}

/// `POST /api/v1/clients/{clientid}/unsubscribe` `{"topic"}`.
fn unsubscribe(state: &AdminState, call: &Call) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        topic: String,
    }
    let body: Body = call.json()?;
    let client_id = call.param();
    match state
        .broker
        .admin_unsubscribe(client_id, &body.topic, Instant::now())
    {
        Ok(true) => Ok(no_content()),
        Ok(false) => Err(ApiError::not_found(format!(
            "the client `{client_id}` has no subscription `{}`",
            body.topic
        ))),
        Err(_) => Err(client_not_found(client_id)),
    }
}

/// `GET /api/v1/subscriptions`, filtered by `clientid`, `topic` (the filter as subscribed, or
/// its filter proper), `qos`, `share_group` and `match_topic` (a topic name the filter
/// matches).
fn subscriptions(state: &AdminState, call: &Call) -> Result<Response<Body>, ApiError> {
    let clientid = call.query("clientid");
    let topic = call.query("topic");
    let qos = match call.query_parsed::<u8>("qos", "0, 1 or 2")? {
        None => None,
        Some(n) => Some(qos_of(n)?),
    };
    let share_group = call.query("share_group");
    let match_topic = call.query("match_topic");
    if let Some(t) = match_topic
        && !tern_codec::is_valid_topic_name(t)
    {
        return Err(ApiError::bad_request(format!(
            "query parameter `match_topic`: `{t}` is not a topic name"
        )));
    }
    let items: Vec<Subscription> = state
        .broker
        .all_subscriptions()
        .iter()
        .filter(|s| {
            clientid.is_none_or(|c| *s.client_id == *c)
                && topic.is_none_or(|t| *s.filter == *t || *s.topic == *t)
                && qos.is_none_or(|q| s.options.qos == q)
                && share_group.is_none_or(|g| s.share_group.as_deref() == Some(g))
                && match_topic.is_none_or(|t| topic_matches(&s.topic, t))
        })
        .map(Subscription::of)
        .collect();
    Ok(list(items, call.paging()?))
}

/// A route, as `GET /api/v1/topics` lists it.
#[derive(Serialize)]
struct Topic {
    topic: String,
    subscribers: usize,
}

impl From<RouteInfo> for Topic {
    fn from(r: RouteInfo) -> Self {
        Self {
            topic: r.topic.to_string(),
            subscribers: r.subscribers,
        }
    }
}

/// A retained message; the payload only when asked for one message.
#[derive(Serialize)]
struct Retained {
    topic: String,
    qos: u8,
    payload_size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    from_clientid: Option<String>,
    message_expiry_interval: Option<u32>,
    properties: Properties,
}

/// The MQTT 5 properties of a message.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Properties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_format_indicator: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_expiry_interval: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_topic: Option<String>,
    /// Base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    correlation_data: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    user_properties: Vec<(String, String)>,
}

impl Retained {
    fn of(m: &Message, now: Instant, with_payload: bool) -> Self {
        let p = &m.properties;
        Self {
            topic: m.topic.to_string(),
            qos: m.qos as u8,
            payload_size: m.payload.len(),
            payload: with_payload.then(|| Base64::encode_string(&m.payload)),
            from_clientid: m.publisher.as_deref().map(str::to_owned),
            message_expiry_interval: m.remaining_expiry(now),
            properties: Properties {
                payload_format_indicator: p.payload_format_indicator.map(u8::from),
                message_expiry_interval: None,
                content_type: p.content_type.as_ref().map(ToString::to_string),
                response_topic: p.response_topic.as_ref().map(ToString::to_string),
                correlation_data: p
                    .correlation_data
                    .as_ref()
                    .map(|d| Base64::encode_string(d)),
                user_properties: p
                    .user_properties
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        }
    }
}

/// `POST /api/v1/publish` `{"topic", "payload", "payload_encoding", "qos", "retain",
/// "properties"}`.
async fn publish(state: &AdminState, call: &Call) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Publish {
        topic: String,
        #[serde(default)]
        payload: String,
        #[serde(default)]
        payload_encoding: Option<String>,
        #[serde(default)]
        qos: u8,
        #[serde(default)]
        retain: bool,
        #[serde(default)]
        properties: Properties,
    }
    let body: Publish = call.json()?;
    let payload = match body.payload_encoding.as_deref() {
        None | Some("plain") => Bytes::from(body.payload.into_bytes()),
        Some("base64") => Bytes::from(Base64::decode_vec(&body.payload).map_err(|_| {
            ApiError::bad_request("`payload` is not valid base64 (`payload_encoding` is base64)")
        })?),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`payload_encoding` must be `plain` or `base64`, not `{other}`"
            )));
        }
    };
    let p = body.properties;
    let now = Instant::now();
    let correlation_data = match p.correlation_data {
        None => None,
        Some(text) => Some(Bytes::from(Base64::decode_vec(&text).map_err(|_| {
            ApiError::bad_request("`properties.correlation_data` is not valid base64")
        })?)),
    };
    if let Some(t) = &p.response_topic
        && !tern_codec::is_valid_topic_name(t)
    {
        return Err(ApiError::bad_request(format!(
            "`properties.response_topic`: `{t}` is not a topic name"
        )));
    }
    let properties = PublishProperties {
        payload_format_indicator: match p.payload_format_indicator {
            None => None,
            Some(0) => Some(false),
            Some(1) => Some(true),
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "`properties.payload_format_indicator` must be 0 or 1, not {n}"
                )));
            }
        },
        response_topic: p.response_topic.map(ByteString::from),
        correlation_data,
        user_properties: p
            .user_properties
            .into_iter()
            .map(|(k, v)| (ByteString::from(k), ByteString::from(v)))
            .collect(),
        content_type: p.content_type.map(ByteString::from),
        ..PublishProperties::default()
    };
    let message = Message {
        topic: ByteString::from(body.topic),
        payload,
        qos: qos_of(body.qos)?,
        retain: body.retain,
        properties,
        expires_at: Message::expiry_from(p.message_expiry_interval, now),
        publisher: None,
    };
    let broker = state.broker.clone();
    // Routing may wait briefly for the store's atomic group: off the async workers.
    let routed = tokio::task::spawn_blocking(move || broker.admin_publish(message, now))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                format!("publish failed: {e}"),
            )
        })?
        .map_err(bad_request)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "matched": routed.matched,
            "quota_exceeded": routed.quota_exceeded,
        }),
    ))
}

/// `POST /api/v1/reload`: 200 with what changed, or 400 with why the new configuration was
/// refused (the running one stays).
async fn reload(state: &AdminState) -> Result<Response<Body>, ApiError> {
    let hooks: Arc<_> = state.hooks.reload.clone();
    match hooks().await {
        Ok(changes) => Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "ok": true, "changes": changes }),
        )),
        Err(why) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "CONFIG_INVALID",
            why,
        )),
    }
}
