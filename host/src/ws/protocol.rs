//! The JSON messages of the push channel: parsing client messages with a stable error code
//! for each kind of mistake, and encoding server messages.

use serde::Serialize;
use serde_json::{Map, Number, Value};

use super::text;
use crate::alerts::{Alert, AlertMetric, Severity};
use crate::i18n::{Lang, Text};
use crate::metrics::{GROUPS, RealtimeMetrics, rfc3339_millis};

/// A set of metric groups as bits, in [`GROUPS`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupMask(u8);

impl GroupMask {
    pub const ALL: GroupMask = GroupMask((1 << GROUPS.len()) - 1);

    /// Returns the mask of one group name, `None` for an unknown name.
    pub fn of(name: &str) -> Option<GroupMask> {
        let index = GROUPS.iter().position(|group| *group == name)?;
        Some(GroupMask(1 << index))
    }

    pub fn union(self, other: GroupMask) -> GroupMask {
        GroupMask(self.0 | other.0)
    }

    /// Returns the group names in the mask.
    pub fn names(self) -> Vec<&'static str> {
        GROUPS
            .iter()
            .enumerate()
            .filter(|(index, _)| self.0 & (1 << index) != 0)
            .map(|(_, name)| *name)
            .collect()
    }
}

/// The set of alerts a connection receives as `alert` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertScope {
    /// Alerts of the subscribed VMs only: the default.
    Subscribed,
    /// Alerts of every VM.
    All,
}

/// A `subscribe` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    pub vm_ids: Vec<String>,
    pub groups: GroupMask,
    /// A change of the alert scope; `None` leaves it as it is.
    pub alerts: Option<AlertScope>,
}

/// A message from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Subscribe(Subscribe),
    /// `None` unsubscribes every VM and resets the alert scope.
    Unsubscribe(Option<Vec<String>>),
    Ping(Option<Number>),
}

/// The stable codes of `error` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidJson,
    UnknownType,
    InvalidField,
    BinaryNotSupported,
    FrameTooLarge,
    UnknownVm,
    UnknownMetricGroup,
    TokenMissing,
    TokenExpired,
    TokenInvalid,
    PermissionDenied,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "INVALID_JSON",
            Self::UnknownType => "UNKNOWN_TYPE",
            Self::InvalidField => "INVALID_FIELD",
            Self::BinaryNotSupported => "BINARY_NOT_SUPPORTED",
            Self::FrameTooLarge => "FRAME_TOO_LARGE",
            Self::UnknownVm => "UNKNOWN_VM",
            Self::UnknownMetricGroup => "UNKNOWN_METRIC_GROUP",
            Self::TokenMissing => "TOKEN_MISSING",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::TokenInvalid => "TOKEN_INVALID",
            Self::PermissionDenied => "PERMISSION_DENIED",
        }
    }

    fn text(self) -> &'static Text {
        match self {
            Self::InvalidJson => &text::INVALID_JSON,
            Self::UnknownType => &text::UNKNOWN_TYPE,
            Self::InvalidField => &text::INVALID_FIELD,
            Self::BinaryNotSupported => &text::BINARY_NOT_SUPPORTED,
            Self::FrameTooLarge => &text::FRAME_TOO_LARGE,
            Self::UnknownVm => &text::UNKNOWN_VM,
            Self::UnknownMetricGroup => &text::UNKNOWN_METRIC_GROUP,
            Self::TokenMissing => &text::TOKEN_MISSING,
            Self::TokenExpired => &text::TOKEN_EXPIRED,
            Self::TokenInvalid => &text::TOKEN_INVALID,
            Self::PermissionDenied => &text::PERMISSION_DENIED,
        }
    }
}

/// A problem to report in an `error` message: its code and the values its text names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: ErrorCode,
    pub args: Vec<String>,
    /// VM ids the error is about, sent as `data.vmIds`.
    pub vm_ids: Vec<String>,
}

impl ClientError {
    pub fn new(code: ErrorCode, args: &[&str]) -> Self {
        Self {
            code,
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            vm_ids: Vec::new(),
        }
    }

    fn invalid_field(path: &str, expected: &str) -> Self {
        Self::new(ErrorCode::InvalidField, &[path, expected])
    }

    /// Returns the message text in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        text::render(self.code.text(), lang, &args)
    }
}

/// Parses one text frame from a client.
///
/// # Errors
///
/// [`ClientError`] with `INVALID_JSON`, `UNKNOWN_TYPE`, `INVALID_FIELD` or
/// `UNKNOWN_METRIC_GROUP`.
pub fn parse(frame: &str) -> Result<ClientMessage, ClientError> {
    let value: Value = serde_json::from_str(frame)
        .map_err(|err| ClientError::new(ErrorCode::InvalidJson, &[&err.to_string()]))?;
    let Value::Object(message) = value else {
        return Err(ClientError::invalid_field("(message)", "object"));
    };
    let kind = match message.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => return Err(ClientError::invalid_field("type", "string")),
    };
    match kind {
        "subscribe" => parse_subscribe(&message).map(ClientMessage::Subscribe),
        "unsubscribe" => parse_unsubscribe(&message).map(ClientMessage::Unsubscribe),
        "ping" => match message.get("timestamp") {
            None | Some(Value::Null) => Ok(ClientMessage::Ping(None)),
            Some(Value::Number(timestamp)) => Ok(ClientMessage::Ping(Some(timestamp.clone()))),
            Some(_) => Err(ClientError::invalid_field("timestamp", "number")),
        },
        other => Err(ClientError::new(ErrorCode::UnknownType, &[other])),
    }
}

fn data_of(message: &Map<String, Value>) -> Result<Option<&Map<String, Value>>, ClientError> {
    match message.get("data") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(data)) => Ok(Some(data)),
        Some(_) => Err(ClientError::invalid_field("data", "object")),
    }
}

fn string_list(
    data: &Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<Option<Vec<String>>, ClientError> {
    let items = match data.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ClientError::invalid_field(path, "array of strings")),
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(text) => Ok(text.clone()),
            _ => Err(ClientError::invalid_field(path, "array of strings")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn parse_subscribe(message: &Map<String, Value>) -> Result<Subscribe, ClientError> {
    let Some(data) = data_of(message)? else {
        return Err(ClientError::invalid_field("data", "object"));
    };
    let alerts = match data.get("alerts") {
        None | Some(Value::Null) => None,
        Some(Value::String(scope)) if scope == "all" => Some(AlertScope::All),
        Some(Value::String(scope)) if scope == "subscribed" => Some(AlertScope::Subscribed),
        Some(_) => {
            return Err(ClientError::invalid_field(
                "data.alerts",
                "\"all\" or \"subscribed\"",
            ));
        }
    };
    let vm_ids = match (string_list(data, "vmIds", "data.vmIds")?, alerts) {
        (Some(vm_ids), _) => vm_ids,
        // Only a change of the alert scope may leave out the VM list.
        (None, Some(_)) => Vec::new(),
        (None, None) => {
            return Err(ClientError::invalid_field("data.vmIds", "array of strings"));
        }
    };
    let groups = match string_list(data, "metrics", "data.metrics")? {
        None => GroupMask::ALL,
        Some(names) if names.is_empty() => GroupMask::ALL,
        Some(names) => {
            let mut mask = GroupMask(0);
            for name in &names {
                let group = GroupMask::of(name)
                    .ok_or_else(|| ClientError::new(ErrorCode::UnknownMetricGroup, &[name]))?;
                mask = mask.union(group);
            }
            mask
        }
    };
    Ok(Subscribe {
        vm_ids,
        groups,
        alerts,
    })
}

fn parse_unsubscribe(message: &Map<String, Value>) -> Result<Option<Vec<String>>, ClientError> {
    let Some(data) = data_of(message)? else {
        return Ok(None);
    };
    let vm_ids = string_list(data, "vmIds", "data.vmIds")?;
    Ok(vm_ids.filter(|ids| !ids.is_empty()))
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum ServerMessage<'a> {
    Connected {
        data: Connected<'a>,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        timestamp: Option<&'a Number>,
    },
    Metrics {
        data: MetricsData<'a>,
    },
    Alert {
        data: AlertData<'a>,
    },
    Error {
        data: ErrorData<'a>,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Connected<'a> {
    client_id: &'a str,
    server_time: String,
    #[serde(rename = "subscribedVMs")]
    subscribed_vms: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricsData<'a> {
    vm_id: &'a str,
    metrics: &'a RealtimeMetrics,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertData<'a> {
    vm_id: &'a str,
    vm_name: &'a str,
    alert: AlertBody<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertBody<'a> {
    id: &'a str,
    metric: AlertMetric,
    severity: Severity,
    threshold: f64,
    current_value: f64,
    message: String,
    timestamp: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorData<'a> {
    code: &'static str,
    message: String,
    #[serde(rename = "vmIds", skip_serializing_if = "<[String]>::is_empty")]
    vm_ids: &'a [String],
}

fn encode(message: &ServerMessage<'_>) -> String {
    // The messages contain only strings, numbers, bools and lists or maps of them with
    // string keys, which serde_json always serializes (a non-finite number becomes null).
    serde_json::to_string(message).expect("server messages always serialize")
}

/// Encodes a `connected` message.
pub fn connected(client_id: &str, now_ms: i64, subscribed_vms: &[String]) -> String {
    encode(&ServerMessage::Connected {
        data: Connected {
            client_id,
            server_time: rfc3339_millis::format(now_ms),
            subscribed_vms,
        },
    })
}

/// Encodes a `pong` echoing the ping's timestamp.
pub fn pong(timestamp: Option<&Number>) -> String {
    encode(&ServerMessage::Pong { timestamp })
}

/// Encodes a `metrics` message; `metrics` already holds only the requested groups.
pub fn metrics(metrics: &RealtimeMetrics) -> String {
    encode(&ServerMessage::Metrics {
        data: MetricsData {
            vm_id: &metrics.vm_id,
            metrics,
        },
    })
}

/// Encodes an `alert` message with the alert's text in `lang`.
pub fn alert(alert: &Alert, lang: Lang) -> String {
    encode(&ServerMessage::Alert {
        data: AlertData {
            vm_id: &alert.vm_id,
            vm_name: &alert.vm_name,
            alert: AlertBody {
                id: &alert.id,
                metric: alert.metric,
                severity: alert.severity,
                threshold: alert.threshold,
                current_value: alert.current_value,
                message: alert.message(lang),
                timestamp: rfc3339_millis::format(alert.changed_at_ms),
            },
        },
    })
}

/// Encodes an `error` message in `lang`.
pub fn error(error: &ClientError, lang: Lang) -> String {
    encode(&ServerMessage::Error {
        data: ErrorData {
            code: error.code.as_str(),
            message: error.message(lang),
            vm_ids: &error.vm_ids,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(frame: &str) -> ErrorCode {
        parse(frame).unwrap_err().code
    }

    #[test]
    fn subscribe_with_groups_parses() {
        let message =
            parse(r#"{"type":"subscribe","data":{"vmIds":["a","b"],"metrics":["cpu","disk"]}}"#)
                .unwrap();
        let ClientMessage::Subscribe(subscribe) = message else {
            panic!("expected subscribe, got {message:?}");
        };
        assert_eq!(subscribe.vm_ids, ["a", "b"]);
        assert_eq!(subscribe.groups.names(), ["cpu", "disk"]);
        assert_eq!(subscribe.alerts, None);
    }

    #[test]
    fn subscribe_without_groups_takes_all() {
        let message = parse(r#"{"type":"subscribe","data":{"vmIds":["a"]}}"#).unwrap();
        let ClientMessage::Subscribe(subscribe) = message else {
            panic!("expected subscribe, got {message:?}");
        };
        assert_eq!(subscribe.groups, GroupMask::ALL);
    }

    #[test]
    fn alert_scope_alone_is_a_subscribe() {
        let message = parse(r#"{"type":"subscribe","data":{"alerts":"all"}}"#).unwrap();
        let ClientMessage::Subscribe(subscribe) = message else {
            panic!("expected subscribe, got {message:?}");
        };
        assert!(subscribe.vm_ids.is_empty());
        assert_eq!(subscribe.alerts, Some(AlertScope::All));
    }

    #[test]
    fn unsubscribe_without_ids_means_all() {
        assert_eq!(
            parse(r#"{"type":"unsubscribe"}"#).unwrap(),
            ClientMessage::Unsubscribe(None)
        );
        assert_eq!(
            parse(r#"{"type":"unsubscribe","data":{"vmIds":[]}}"#).unwrap(),
            ClientMessage::Unsubscribe(None)
        );
        assert_eq!(
            parse(r#"{"type":"unsubscribe","data":{"vmIds":["a"]}}"#).unwrap(),
            ClientMessage::Unsubscribe(Some(vec!["a".to_owned()]))
        );
    }

    #[test]
    fn mistakes_get_their_codes() {
        assert_eq!(code_of("{not json"), ErrorCode::InvalidJson);
        assert_eq!(code_of("[1,2]"), ErrorCode::InvalidField);
        assert_eq!(code_of(r#"{"data":{}}"#), ErrorCode::InvalidField);
        assert_eq!(code_of(r#"{"type":"shout"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code_of(r#"{"type":"subscribe","data":{"vmIds":"a"}}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code_of(r#"{"type":"subscribe","data":{"vmIds":[1]}}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code_of(r#"{"type":"subscribe","data":{}}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code_of(r#"{"type":"subscribe","data":{"vmIds":["a"],"metrics":["gpu"]}}"#),
            ErrorCode::UnknownMetricGroup
        );
        assert_eq!(
            code_of(r#"{"type":"subscribe","data":{"alerts":"some"}}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code_of(r#"{"type":"ping","timestamp":"now"}"#),
            ErrorCode::InvalidField
        );
    }

    #[test]
    fn pong_echoes_timestamp() {
        let message = parse(r#"{"type":"ping","timestamp":1234567890}"#).unwrap();
        let ClientMessage::Ping(timestamp) = message else {
            panic!("expected ping, got {message:?}");
        };
        assert_eq!(
            pong(timestamp.as_ref()),
            r#"{"type":"pong","timestamp":1234567890}"#
        );
    }
}
