//! A parser for the Prometheus text exposition format, version 0.0.4, as node_exporter and
//! windows_exporter serve it.
//!
//! [`parse`] checks every line and hands each sample to a callback without building a
//! table, so a large payload costs little memory. Names and label values borrow from the
//! payload; a label value is copied only when it contains an escape. The first invalid line
//! fails the whole payload, as it fails a Prometheus scrape, with its 1-based line number.
//!
//! Accepted, following the format description in the Prometheus documentation:
//! - `# HELP name text` and `# TYPE name type` lines (the name is checked) and any other
//!   `#` line as a comment, including OpenMetrics' `# EOF`;
//! - blank lines, CRLF line ends, a missing final line feed, and blanks or tabs between tokens;
//! - label values with the escapes `\\`, `\"` and `\n`; like Prometheus, any other
//!   backslash pair is kept as written;
//! - Go float syntax for values, including `NaN`, `+Inf` and `-Inf`, and an optional
//!   integer timestamp in milliseconds.

use std::borrow::Cow;

/// Metric types a `# TYPE` line may name: the text format's five plus OpenMetrics' four.
const METRIC_TYPES: &[&str] = &[
    "counter",
    "gauge",
    "histogram",
    "summary",
    "untyped",
    "unknown",
    "info",
    "stateset",
    "gaugehistogram",
];

/// Maximum length of the offending text quoted in an error message, in characters.
const EXCERPT_CHARS: usize = 40;

/// One sample line: a metric name, its labels, a value and an optional timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    /// Label names and unescaped values, in the order of the line.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: f64,
    /// Milliseconds since the Unix epoch, when the line carries one.
    pub timestamp_ms: Option<i64>,
}

impl Sample<'_> {
    /// Returns the value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_ref())
    }
}

/// The first invalid line of a payload and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based number of the offending line.
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a raw response body, which the format requires to be UTF-8.
///
/// # Errors
///
/// [`ParseError`] for invalid UTF-8 (naming the line of the first bad byte) or for the
/// first invalid line.
pub fn parse_bytes<'a>(
    body: &'a [u8],
    visit: impl FnMut(Sample<'a>) -> Result<(), String>,
) -> Result<(), ParseError> {
    let text = std::str::from_utf8(body).map_err(|err| {
        let valid = &body[..err.valid_up_to()];
        ParseError {
            line: 1 + valid.iter().filter(|&&byte| byte == b'\n').count(),
            message: "invalid UTF-8".to_owned(),
        }
    })?;
    parse(text, visit)
}

/// Parses `text` and calls `visit` with every sample, in payload order.
///
/// `visit` may reject a sample that is valid text but unusable, for example a counter with
/// a negative value. Its message then fails the parse at that line.
///
/// # Errors
///
/// [`ParseError`] for the first invalid line or the first sample `visit` rejected.
pub fn parse<'a>(
    text: &'a str,
    mut visit: impl FnMut(Sample<'a>) -> Result<(), String>,
) -> Result<(), ParseError> {
    for (index, raw_line) in text.split('\n').enumerate() {
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let at_line = |message: String| ParseError {
            line: index + 1,
            message,
        };
        if let Some(sample) = parse_line(line).map_err(at_line)? {
            visit(sample).map_err(at_line)?;
        }
    }
    Ok(())
}

/// Parses one line without its line end; `None` for blank and comment lines.
fn parse_line(line: &str) -> Result<Option<Sample<'_>>, String> {
    let trimmed = line.trim_matches(is_blank);
    if trimmed.is_empty() {
        return Ok(None);
    }
    if let Some(comment) = trimmed.strip_prefix('#') {
        check_comment(comment)?;
        return Ok(None);
    }
    parse_sample(trimmed).map(Some)
}

/// Checks `# HELP` and `# TYPE` lines; every other comment is free text.
fn check_comment(comment: &str) -> Result<(), String> {
    if !comment.starts_with(is_blank) {
        return Ok(());
    }
    let mut cursor = Cursor::new(comment);
    cursor.skip_blanks();
    let keyword = cursor.take_while(|c| !is_blank(c));
    if keyword != "HELP" && keyword != "TYPE" {
        return Ok(());
    }
    if cursor.skip_blanks() == 0 {
        return Err(format!("expected a metric name after `# {keyword}`"));
    }
    let name = cursor.take_while(|c| !is_blank(c));
    check_metric_name(name)?;
    if keyword == "HELP" {
        return Ok(());
    }

    cursor.skip_blanks();
    let metric_type = cursor.take_while(|c| !is_blank(c));
    if !METRIC_TYPES.contains(&metric_type) {
        return Err(format!(
            "unknown metric type {} for `{name}`",
            excerpt(metric_type)
        ));
    }
    cursor.skip_blanks();
    if !cursor.at_end() {
        return Err(format!(
            "unexpected text {} after the TYPE of `{name}`",
            excerpt(cursor.rest())
        ));
    }
    Ok(())
}

fn parse_sample(line: &str) -> Result<Sample<'_>, String> {
    let mut cursor = Cursor::new(line);
    let name = cursor.take_while(is_metric_name_char);
    check_metric_name_at(name, &cursor)?;
    let blanks_after_name = cursor.skip_blanks();
    let labels = if cursor.peek() == Some('{') {
        let labels = parse_labels(&mut cursor, name)?;
        cursor.skip_blanks();
        labels
    } else if blanks_after_name == 0 && !cursor.at_end() {
        return Err(format!(
            "unexpected {} after the metric name `{name}`",
            excerpt(cursor.rest())
        ));
    } else {
        Vec::new()
    };

    let value_text = cursor.take_while(|c| !is_blank(c));
    if value_text.is_empty() {
        return Err(format!("missing value for `{name}`"));
    }
    let value = parse_float(value_text)
        .ok_or_else(|| format!("invalid value {} for `{name}`", excerpt(value_text)))?;
    cursor.skip_blanks();

    let timestamp_ms = if cursor.at_end() {
        None
    } else {
        let text = cursor.take_while(|c| !is_blank(c));
        let timestamp = text.parse::<i64>().map_err(|_| {
            format!(
                "invalid timestamp {} for `{name}`: expected integer milliseconds",
                excerpt(text)
            )
        })?;
        cursor.skip_blanks();
        if !cursor.at_end() {
            return Err(format!(
                "unexpected text {} after the timestamp of `{name}`",
                excerpt(cursor.rest())
            ));
        }
        Some(timestamp)
    };

    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

/// Parses `{name="value",...}` with the cursor on the opening brace. A trailing comma
/// before `}` is allowed, as in Prometheus.
fn parse_labels<'a>(
    cursor: &mut Cursor<'a>,
    metric: &str,
) -> Result<Vec<(&'a str, Cow<'a, str>)>, String> {
    cursor.advance(1);
    let mut labels: Vec<(&'a str, Cow<'a, str>)> = Vec::new();
    loop {
        cursor.skip_blanks();
        if cursor.eat('}') {
            return Ok(labels);
        }
        let name = cursor.take_while(is_label_name_char);
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "expected a label name or `}}` in `{metric}`, found {}",
                excerpt(cursor.rest())
            ));
        }
        if labels.iter().any(|(existing, _)| *existing == name) {
            return Err(format!("duplicate label `{name}` in `{metric}`"));
        }
        cursor.skip_blanks();
        if !cursor.eat('=') {
            return Err(format!("expected `=` after label `{name}` in `{metric}`"));
        }
        cursor.skip_blanks();
        if !cursor.eat('"') {
            return Err(format!(
                "expected a quoted value for label `{name}` in `{metric}`"
            ));
        }
        let value = parse_label_value(cursor).ok_or_else(|| {
            format!("unterminated value of label `{name}` in `{metric}`: missing closing `\"`")
        })?;
        labels.push((name, value));

        cursor.skip_blanks();
        if cursor.eat(',') {
            continue;
        }
        if cursor.peek() != Some('}') {
            return Err(format!(
                "expected `,` or `}}` after label `{name}` in `{metric}`, found {}",
                excerpt(cursor.rest())
            ));
        }
    }
}

/// Reads a label value up to its closing quote, which the cursor consumes. Returns `None`
/// when the line ends first.
fn parse_label_value<'a>(cursor: &mut Cursor<'a>) -> Option<Cow<'a, str>> {
    let rest = cursor.rest();
    let mut unescaped: Option<String> = None;
    let mut chars = rest.char_indices();
    let mut plain_from = 0;
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => {
                cursor.advance(index + 1);
                return Some(match unescaped {
                    None => Cow::Borrowed(&rest[..index]),
                    Some(mut owned) => {
                        owned.push_str(&rest[plain_from..index]);
                        Cow::Owned(owned)
                    }
                });
            }
            '\\' => {
                let (_, escaped) = chars.next()?;
                let owned = unescaped.get_or_insert_with(String::new);
                owned.push_str(&rest[plain_from..index]);
                match escaped {
                    'n' => owned.push('\n'),
                    '\\' | '"' => owned.push(escaped),
                    other => {
                        owned.push('\\');
                        owned.push(other);
                    }
                }
                plain_from = index + 1 + escaped.len_utf8();
            }
            _ => {}
        }
    }
    None
}

/// Parses a value as Go's `strconv.ParseFloat` does for the forms exporters write.
///
/// Rust's parser accepts `NaN`, `inf`, `+Inf`, `-Inf` and `infinity` in any case, which
/// covers Go's spellings. Hexadecimal floats, which Go also accepts, are rejected.
fn parse_float(text: &str) -> Option<f64> {
    text.parse::<f64>().ok()
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(is_metric_name_char);
    if valid {
        Ok(())
    } else {
        Err(format!("invalid metric name {}", excerpt(name)))
    }
}

/// Checks the name at the start of a sample line and reports the first character that
/// cannot start one.
fn check_metric_name_at(name: &str, cursor: &Cursor<'_>) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!(
            "expected a metric name, found {}",
            excerpt(cursor.rest())
        ));
    }
    check_metric_name(name)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_metric_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn is_label_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Quotes the start of `text` for an error message, cut at [`EXCERPT_CHARS`].
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        None => format!("{text:?}"),
        Some((end, _)) => format!("{:?}...", &text[..end]),
    }
}

/// A position in one line.
struct Cursor<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, position: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.position..]
    }

    fn at_end(&self) -> bool {
        self.position == self.text.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn advance(&mut self, bytes: usize) {
        self.position += bytes;
    }

    /// Consumes `expected` when it is next.
    fn eat(&mut self, expected: char) -> bool {
        let found = self.peek() == Some(expected);
        if found {
            self.advance(expected.len_utf8());
        }
        found
    }

    fn take_while(&mut self, accept: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let end = rest.find(|c: char| !accept(c)).unwrap_or(rest.len());
        self.advance(end);
        &rest[..end]
    }

    /// Skips blanks and tabs and returns how many it skipped.
    fn skip_blanks(&mut self) -> usize {
        self.take_while(is_blank).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(text: &str) -> Result<Vec<Sample<'_>>, ParseError> {
        let mut found = Vec::new();
        parse(text, |sample| {
            found.push(sample);
            Ok(())
        })?;
        Ok(found)
    }

    /// A sample as owned values: name, labels, value and timestamp.
    type OwnedSample = (String, Vec<(String, String)>, f64, Option<i64>);

    /// Owned copies, so a test can compare without the payload's lifetime.
    fn owned(text: &str) -> Vec<OwnedSample> {
        samples(text)
            .unwrap()
            .into_iter()
            .map(|s| {
                let labels = s
                    .labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.to_string()))
                    .collect();
                (s.name.to_owned(), labels, s.value, s.timestamp_ms)
            })
            .collect()
    }

    fn error(text: &str) -> ParseError {
        samples(text).expect_err("the payload should be rejected")
    }

    #[test]
    fn help_type_and_samples() {
        let text = "# HELP node_load1 1m load average.\n\
                    # TYPE node_load1 gauge\n\
                    node_load1 0.25\n\
                    # TYPE node_cpu_seconds_total counter\n\
                    node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1234.5\n";

        let parsed = owned(text);

        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0], ("node_load1".into(), vec![], 0.25, None));
        assert_eq!(parsed[1].0, "node_cpu_seconds_total");
        assert_eq!(
            parsed[1].1,
            vec![("cpu".into(), "0".into()), ("mode".into(), "idle".into())]
        );
        assert_eq!(parsed[1].2, 1234.5);
    }

    #[test]
    fn other_comments_are_ignored() {
        let text = "#no space after the hash\n\
                    # a free comment with {braces} and \"quotes\n\
                    # HELPFUL is not a HELP line\n\
                    # EOF\n\
                    up 1\n";

        assert_eq!(owned(text).len(), 1);
    }

    #[test]
    fn help_text_may_hold_anything() {
        let text = "# HELP x Escapes \\\\ and \\n and unbalanced \" or { are fine\nx 1\n";

        assert_eq!(owned(text).len(), 1);
    }

    #[test]
    fn label_escapes_are_unescaped() {
        let text = r#"msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9"#;

        let parsed = owned(text);

        assert_eq!(parsed[0].1[0].1, r"C:\DIR\FILE.TXT");
        assert_eq!(parsed[0].1[1].1, "Cannot find file:\n\"FILE.TXT\"");
        assert_eq!(parsed[0].2, 1.458255915e9);
    }

    #[test]
    fn unknown_escape_is_kept_as_written() {
        let parsed = owned(r#"x{path="C:\Temp\x"} 1"#);

        assert_eq!(parsed[0].1[0].1, r"C:\Temp\x");
    }

    #[test]
    fn label_value_without_escape_is_borrowed() {
        let found = samples("x{a=\"plain\"} 1\n").unwrap();

        assert!(matches!(found[0].labels[0].1, Cow::Borrowed("plain")));
    }

    #[test]
    fn label_values_keep_commas_braces_and_unicode() {
        let parsed = owned("x{a=\"1,2}\",b=\"=\",c=\"Grüße ✓\",d=\"\"} 3\n");

        let values: Vec<&str> = parsed[0].1.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["1,2}", "=", "Grüße ✓", ""]);
    }

    #[test]
    fn special_float_values() {
        let parsed = owned("a NaN\nb +Inf\nc -Inf\nd Inf\ne nan\nf 1e-3\ng -0\nh .5\n");

        assert!(parsed[0].2.is_nan());
        assert_eq!(parsed[1].2, f64::INFINITY);
        assert_eq!(parsed[2].2, f64::NEG_INFINITY);
        assert_eq!(parsed[3].2, f64::INFINITY);
        assert!(parsed[4].2.is_nan());
        assert_eq!(parsed[5].2, 0.001);
        assert_eq!(parsed[6].2, 0.0);
        assert_eq!(parsed[7].2, 0.5);
    }

    #[test]
    fn timestamps_are_optional_integers() {
        let parsed = owned("a 1 1700000000000\nb{x=\"y\"} 2 -5\nc 3\n");

        assert_eq!(parsed[0].3, Some(1_700_000_000_000));
        assert_eq!(parsed[1].3, Some(-5));
        assert_eq!(parsed[2].3, None);
    }

    #[test]
    fn blank_lines_crlf_tabs_and_no_final_newline() {
        let text = "\r\n  \n# TYPE a gauge\r\n\ta{x=\"1\"}\t 1 \r\n\n  b   2\t10\r\nc 3";

        let parsed = owned(text);

        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].1, vec![("x".into(), "1".into())]);
        assert_eq!(parsed[1], ("b".into(), vec![], 2.0, Some(10)));
        assert_eq!(parsed[2].2, 3.0);
    }

    #[test]
    fn blanks_inside_braces_and_trailing_comma() {
        let parsed = owned("a { x = \"1\" , y=\"2\", } 7\na{} 8\n");

        assert_eq!(parsed[0].1.len(), 2);
        assert_eq!(parsed[0].2, 7.0);
        assert!(parsed[1].1.is_empty());
    }

    #[test]
    fn very_long_line() {
        let long_value = "v".repeat(1 << 20);
        let text = format!(
            "# HELP big {}\nbig{{a=\"{long_value}\"}} 42\nafter 1\n",
            "h".repeat(100_000)
        );

        let parsed = owned(&text);

        assert_eq!(parsed[0].1[0].1.len(), 1 << 20);
        assert_eq!(parsed[0].2, 42.0);
        assert_eq!(parsed[1].0, "after");
    }

    #[test]
    fn colons_in_metric_names() {
        let parsed = owned("job:rate5m:sum 1\n");

        assert_eq!(parsed[0].0, "job:rate5m:sum");
    }

    #[test]
    fn garbage_line_is_rejected_with_its_number() {
        let err = error("a 1\n\n<html><body>Bad Gateway</body></html>\n");

        assert_eq!(err.line, 3);
        assert!(err.message.contains("expected a metric name"), "{err}");
        assert!(err.message.contains("<html>"), "{err}");
    }

    #[test]
    fn invalid_value_is_named() {
        let err = error("a 1\nb{x=\"1\"} twelve\n");

        assert_eq!(err.line, 2);
        assert_eq!(err.to_string(), "line 2: invalid value \"twelve\" for `b`");
    }

    #[test]
    fn missing_value_is_rejected() {
        let err = error("a{x=\"1\"}\n");

        assert_eq!(err.line, 1);
        assert!(err.message.contains("missing value"), "{err}");
    }

    #[test]
    fn unterminated_label_value_is_rejected() {
        let err = error("ok 1\na{x=\"open} 1\n");

        assert_eq!(err.line, 2);
        assert!(
            err.message.contains("unterminated value of label `x`"),
            "{err}"
        );
    }

    #[test]
    fn backslash_at_line_end_is_unterminated() {
        let err = error("a{x=\"ends with \\");

        assert!(err.message.contains("unterminated"), "{err}");
    }

    #[test]
    fn unquoted_label_value_is_rejected() {
        let err = error("a{x=1} 1\n");

        assert!(err.message.contains("quoted value for label `x`"), "{err}");
    }

    #[test]
    fn missing_comma_between_labels_is_rejected() {
        let err = error("a{x=\"1\" y=\"2\"} 1\n");

        assert!(err.message.contains("expected `,` or `}`"), "{err}");
    }

    #[test]
    fn duplicate_label_is_rejected() {
        let err = error("a{x=\"1\",x=\"2\"} 1\n");

        assert!(err.message.contains("duplicate label `x`"), "{err}");
    }

    #[test]
    fn invalid_label_name_is_rejected() {
        let err = error("a{1x=\"1\"} 1\n");

        assert!(err.message.contains("expected a label name"), "{err}");
    }

    #[test]
    fn invalid_timestamp_is_rejected() {
        let err = error("a 1 1.5e12\n");

        assert!(err.message.contains("invalid timestamp"), "{err}");
    }

    #[test]
    fn text_after_timestamp_is_rejected() {
        let err = error("a 1 2 3\n");

        assert!(err.message.contains("after the timestamp"), "{err}");
    }

    #[test]
    fn name_glued_to_garbage_is_rejected() {
        let err = error("node-load 1\n");

        assert!(
            err.message.contains("after the metric name `node`"),
            "{err}"
        );
    }

    #[test]
    fn name_starting_with_digit_is_rejected() {
        let err = error("9lives 1\n");

        assert!(err.message.contains("invalid metric name"), "{err}");
    }

    #[test]
    fn bad_type_line_is_rejected() {
        assert!(
            error("# TYPE a sometimes\n")
                .message
                .contains("unknown metric type")
        );
        assert!(error("# TYPE\n").message.contains("expected a metric name"));
        assert!(
            error("# HELP 1bad text\n")
                .message
                .contains("invalid metric name")
        );
        assert!(
            error("# TYPE a gauge extra\n")
                .message
                .contains("unexpected text")
        );
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let body = b"a 1\nb 2\nc{x=\"\xff\"} 3\n";

        let err = parse_bytes(body, |_| Ok(())).unwrap_err();

        assert_eq!(err.line, 3);
        assert_eq!(err.message, "invalid UTF-8");
    }

    #[test]
    fn visitor_rejection_names_the_line() {
        let err = parse("a 1\nb 2\n", |sample| {
            if sample.name == "b" {
                Err("b is not welcome".to_owned())
            } else {
                Ok(())
            }
        })
        .unwrap_err();

        assert_eq!(err.to_string(), "line 2: b is not welcome");
    }

    #[test]
    fn long_garbage_is_cut_in_the_message() {
        let err = error(&format!("{}\n", "!".repeat(500)));

        assert!(err.message.len() < 120, "{}", err.message);
        assert!(err.message.ends_with("..."), "{}", err.message);
    }

    #[test]
    fn empty_payload_has_no_samples() {
        assert!(owned("").is_empty());
        assert!(owned("\n\n# only comments\n").is_empty());
    }
}
