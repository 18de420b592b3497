//! [`Timestamp`]: a point in time as the API writes it, RFC 3339 in UTC with milliseconds
//! (`2026-12-04T16:28:08.123Z`), kept as milliseconds since the Unix epoch.
//!
//! It serializes the same way through serde (the WebSocket channel, the store) and through
//! poem-openapi (the REST API), and the OpenAPI document shows it as a `date-time` string.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::metrics::rfc3339_millis;

/// Milliseconds since the Unix epoch, written as an RFC 3339 UTC timestamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Returns the milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }
}

impl From<i64> for Timestamp {
    fn from(millis: i64) -> Self {
        Self(millis)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        rfc3339_millis::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        rfc3339_millis::deserialize(deserializer).map(Self)
    }
}

impl Type for Timestamp {
    const IS_REQUIRED: bool = true;

    type RawValueType = Self;

    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string_date-time".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "date-time")))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ToJSON for Timestamp {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(rfc3339_millis::format(self.0)))
    }
}

impl ParseFromJSON for Timestamp {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            serde_json::Value::String(text) => chrono::DateTime::parse_from_rfc3339(&text)
                .map(|time| Self(time.timestamp_millis()))
                .map_err(|err| ParseError::custom(format!("not an RFC 3339 timestamp: {err}"))),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_and_openapi_write_the_same_text() {
        let timestamp = Timestamp(1_764_866_888_123);

        let serde = serde_json::to_value(timestamp).unwrap();
        let openapi = timestamp.to_json().unwrap();

        assert_eq!(serde, "2025-12-04T16:48:08.123Z");
        assert_eq!(openapi, serde);
    }

    #[test]
    fn parses_offset_timestamps() {
        let text = serde_json::json!("2025-12-04T17:48:08.123+01:00");
        let parsed = Timestamp::parse_from_json(Some(text)).unwrap();
        assert_eq!(parsed, Timestamp(1_764_866_888_123));
    }
}
