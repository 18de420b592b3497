//! `xsd:dateTime` values as milliseconds since the Unix epoch.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Parses an `xsd:dateTime` such as `2024-05-01T12:00:20.123Z`. XML Schema allows a time
/// without a zone, which is read as UTC.
///
/// # Errors
///
/// The parser's message when `text` is not such a time.
pub fn parse_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let has_zone = text
        .rsplit_once('T')
        .is_some_and(|(_, clock)| clock.contains(['Z', 'z', '+', '-']));
    let parsed = if has_zone {
        OffsetDateTime::parse(text, &Rfc3339)
    } else {
        OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339)
    }
    .map_err(|err| err.to_string())?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{text} is out of range"))
}

/// Formats milliseconds since the Unix epoch as an `xsd:dateTime` in UTC.
///
/// # Errors
///
/// When the time lies outside the years 0 to 9999.
pub fn format_ms(ms: i64) -> Result<String, String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|err| err.to_string())?
        .format(&Rfc3339)
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_zones_and_fractions() {
        assert_eq!(parse_ms("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_ms("1970-01-01T00:00:01.25Z"), Ok(1250));
        assert_eq!(
            parse_ms("2026-12-04T16:54:43.39440257Z"),
            Ok(1_796_403_283_394)
        );
        assert_eq!(parse_ms("1970-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(parse_ms("1970-01-01T00:00:02"), Ok(2000));
    }

    #[test]
    fn rejects_other_text() {
        assert!(parse_ms("").is_err());
        assert!(parse_ms("yesterday").is_err());
    }

    #[test]
    fn formats_what_it_parses() {
        let ms = 1_796_403_283_394;
        assert_eq!(parse_ms(&format_ms(ms).unwrap()), Ok(ms));
    }
}
