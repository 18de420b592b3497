//! vim25 SOAP requests over the SDK's blocking HTTP client.
//!
//! [`RequestBody`] writes one method call with every value XML-escaped. [`call`] posts it
//! in an envelope, checks that the response is the SOAP response of that method and
//! returns its element, or the fault vCenter raised. Anything else (an HTML error page from
//! a proxy, a truncated body, JSON) is a [`VimError::Protocol`] naming what was expected.

use serde::{Deserialize, Serialize};
use vmpulse_plugin_sdk::http::{HttpError, Request, Response};

use crate::error::{Fault, VimError};
use crate::xml::{self, Element, ElementNamespace};

/// The name of vCenter's session cookie.
pub const SESSION_COOKIE: &str = "vmware_soap_session";

/// Characters of an unexpected body quoted in an error message.
const SNIPPET_CHARS: usize = 120;

/// A managed object reference: the object's type and its ID, such as `VirtualMachine`
/// and `vm-42`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MoRef {
    pub kind: String,
    pub value: String,
}

impl MoRef {
    pub fn new(kind: &str, value: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            value: value.to_owned(),
        }
    }

    /// Reads a reference from an element such as `<obj type="VirtualMachine">vm-42</obj>`.
    pub fn from_element(element: &Element) -> Option<Self> {
        let kind = element.attribute("type")?;
        (!element.text.is_empty()).then(|| Self::new(kind, &element.text))
    }
}

/// Writes vim25 XML with every text and attribute value escaped.
#[derive(Debug, Default)]
pub struct XmlWriter {
    xml: String,
}

impl XmlWriter {
    pub fn open(&mut self, name: &str) -> &mut Self {
        self.xml.push('<');
        self.xml.push_str(name);
        self.xml.push('>');
        self
    }

    /// Opens an element that carries an `xsi:type`, as polymorphic spec members need.
    pub fn open_typed(&mut self, name: &str, xsi_type: &str) -> &mut Self {
        self.xml.push('<');
        self.xml.push_str(name);
        self.xml.push_str(" xsi:type=\"");
        self.xml.push_str(&xml::escape(xsi_type));
        self.xml.push_str("\">");
        self
    }

    pub fn close(&mut self, name: &str) -> &mut Self {
        self.xml.push_str("</");
        self.xml.push_str(name);
        self.xml.push('>');
        self
    }

    /// Writes `<name>text</name>`.
    pub fn text(&mut self, name: &str, text: &str) -> &mut Self {
        self.open(name);
        self.xml.push_str(&xml::escape(text));
        self.close(name)
    }

    /// Writes `<name type="Kind">value</name>`.
    pub fn moref(&mut self, name: &str, moref: &MoRef) -> &mut Self {
        self.xml.push('<');
        self.xml.push_str(name);
        self.xml.push_str(" type=\"");
        self.xml.push_str(&xml::escape(&moref.kind));
        self.xml.push_str("\">");
        self.xml.push_str(&xml::escape(&moref.value));
        self.close(name)
    }

    #[cfg(test)]
    pub fn into_string(self) -> String {
        self.xml
    }
}

/// One vim25 method call: the method name and the XML of its parameters.
#[derive(Debug)]
pub struct RequestBody {
    pub method: &'static str,
    pub params: XmlWriter,
}

impl RequestBody {
    /// Starts a call of `method` on the managed object `this`.
    pub fn new(method: &'static str, this: &MoRef) -> Self {
        let mut params = XmlWriter::default();
        params.moref("_this", this);
        Self { method, params }
    }

    fn envelope(&self) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <soapenv:Envelope xmlns:soapenv=\"{soap}\" \
             xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" \
             xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
             <soapenv:Body><{method} xmlns=\"{vim}\">{params}</{method}></soapenv:Body>\
             </soapenv:Envelope>",
            soap = xml::SOAP_ENVELOPE_NS,
            vim = xml::VIM25_NS,
            method = self.method,
            params = self.params.xml,
        )
    }
}

/// The parts of a response the client keeps.
#[derive(Debug)]
pub struct SoapResponse {
    /// The `{method}Response` element.
    pub body: Element,
    /// The `vmware_soap_session=…` pair when the server set the cookie.
    pub session_cookie: Option<String>,
}

/// Posts `request` to `url` and returns its response element.
///
/// `cookie` is the `vmware_soap_session=…` pair of the session, if any. `api_version` goes
/// into the SOAPAction header, from which vCenter learns the client's API version.
///
/// # Errors
///
/// [`VimError::Http`] when the exchange fails, [`VimError::Fault`] for a SOAP fault and
/// [`VimError::Protocol`] when the response is not the expected SOAP response.
pub fn call(
    url: &str,
    cookie: Option<&str>,
    api_version: Option<&str>,
    request: &RequestBody,
) -> Result<SoapResponse, VimError> {
    let action = match api_version {
        Some(version) => format!("urn:vim25/{version}"),
        None => "urn:vim25".to_owned(),
    };
    let mut http = Request::post(url)
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", &action)
        .body(request.envelope().into_bytes());
    if let Some(cookie) = cookie {
        http = http.header("cookie", cookie);
    }

    let response = http.send().map_err(undelivered_as_connect)?;
    let session_cookie = session_cookie(&response);
    let body = response_element(url, request.method, &response)?;
    Ok(SoapResponse {
        body,
        session_cookie,
    })
}

/// Reports a request whose body could not be written as a connection failure.
///
/// NOTE: the SDK's `Request::send` writes the body before it looks at the connection's
/// outcome, so a refused connection (vCenter stopped) can surface as the body stream's
/// "stream closed early" protocol error instead of a connect error. No response was read
/// in that case, so the peer is treated as unreachable.
fn undelivered_as_connect(err: HttpError) -> HttpError {
    match err {
        HttpError::Protocol { url, reason } if reason == "stream closed early" => {
            HttpError::Connect {
                url,
                reason: "the connection closed before the request was sent".to_owned(),
            }
        }
        other => other,
    }
}

/// Returns the `vmware_soap_session=…` pair from the response's `set-cookie` headers.
fn session_cookie(response: &Response) -> Option<String> {
    response
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, value)| std::str::from_utf8(value).ok())
        .filter_map(|value| value.split(';').next())
        .map(str::trim)
        .find(|pair| {
            pair.split_once('=')
                .is_some_and(|(name, _)| name.trim() == SESSION_COOKIE)
        })
        .map(str::to_owned)
}

/// Checks that `response` is the SOAP response of `method` and returns its element.
fn response_element(
    url: &str,
    method: &'static str,
    response: &Response,
) -> Result<Element, VimError> {
    let expected = format!("a SOAP response to {method} from {url}");
    let unexpected = |what: String| VimError::Protocol(format!("expected {expected}, got {what}"));

    // vCenter sends faults with status 500 and everything else with 200.
    let status = response.status;
    if !response.is_success() && status != 500 {
        return Err(unexpected(format!(
            "HTTP status {status}: {}",
            describe_body(response)
        )));
    }
    let Ok(text) = std::str::from_utf8(&response.body) else {
        return Err(unexpected(format!(
            "a body that is not UTF-8 text (HTTP {status})"
        )));
    };
    if looks_like_html(response, text) {
        return Err(unexpected(format!(
            "an HTML page (HTTP {status}): {}",
            snippet(text)
        )));
    }
    let root = xml::parse(text).map_err(|err| unexpected(format!("{err} (HTTP {status})")))?;

    let root_name = root.name.clone();
    let Some(mut body) = into_soap_body(root) else {
        return Err(unexpected(format!(
            "<{root_name}> where a SOAP Envelope with a Body belongs (HTTP {status})"
        )));
    };
    if body.children.is_empty() {
        return Err(unexpected(format!("an empty SOAP Body (HTTP {status})")));
    }
    let payload = body.children.swap_remove(0);
    if payload.namespace == ElementNamespace::SoapEnvelope && payload.name == "Fault" {
        return Err(VimError::Fault(read_fault(method, &payload)));
    }
    let response_name = format!("{method}Response");
    if payload.name != response_name || status != 200 {
        return Err(unexpected(format!(
            "<{}> with HTTP status {status}",
            payload.name
        )));
    }
    Ok(payload)
}

/// Returns the `Body` of a SOAP `Envelope`, taking it out of the tree.
fn into_soap_body(root: Element) -> Option<Element> {
    if root.namespace != ElementNamespace::SoapEnvelope || root.name != "Envelope" {
        return None;
    }
    root.children
        .into_iter()
        .find(|child| child.namespace == ElementNamespace::SoapEnvelope && child.name == "Body")
}

/// Reads the fault type from `detail`. vCenter names it in `xsi:type` and in the element
/// name (`NotAuthenticatedFault`), and the type wins when both are present.
fn read_fault(method: &'static str, fault: &Element) -> Fault {
    let message = fault
        .child_text("faultstring")
        .unwrap_or_default()
        .to_owned();
    let detail = fault.child("detail").and_then(|d| d.children.first());
    let name = match detail {
        Some(detail) => detail.xsi_type.clone().unwrap_or_else(|| {
            let name = detail.name.as_str();
            name.strip_suffix("Fault").unwrap_or(name).to_owned()
        }),
        None => fault
            .child_text("faultcode")
            .filter(|code| !code.is_empty())
            .unwrap_or("unknown fault")
            .to_owned(),
    };
    Fault {
        method,
        name,
        message,
    }
}

fn looks_like_html(response: &Response, text: &str) -> bool {
    let content_type = response.header("content-type").unwrap_or_default();
    if content_type.to_ascii_lowercase().contains("html") {
        return true;
    }
    let start: String = text.trim_start().chars().take(15).collect();
    let start = start.to_ascii_lowercase();
    start.starts_with("<!doctype html") || start.starts_with("<html")
}

fn describe_body(response: &Response) -> String {
    let content_type = response.header("content-type").unwrap_or("no content type");
    match std::str::from_utf8(&response.body) {
        Ok(text) if !text.trim().is_empty() => format!("{content_type}, {}", snippet(text)),
        Ok(_) => format!("{content_type}, empty body"),
        Err(_) => format!(
            "{content_type}, {} bytes of binary data",
            response.body.len()
        ),
    }
}

/// Returns the start of `text` on one line, for error messages.
fn snippet(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let line = words.join(" ");
    let mut quoted: String = line
        .chars()
        .filter(|c| !c.is_control())
        .take(SNIPPET_CHARS)
        .collect();
    if line.chars().count() > SNIPPET_CHARS {
        quoted.push('…');
    }
    format!("{quoted:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, content_type: &str, body: &str) -> Response {
        Response {
            status,
            headers: vec![("content-type".to_owned(), content_type.as_bytes().to_vec())],
            body: body.as_bytes().to_vec(),
        }
    }

    const ENVELOPE_START: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
        <soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
            xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>"#;

    fn envelope(payload: &str) -> String {
        format!("{ENVELOPE_START}{payload}</soapenv:Body></soapenv:Envelope>")
    }

    #[test]
    fn returns_response_element() {
        let body = envelope(
            r#"<CurrentTimeResponse xmlns="urn:vim25"><returnval>2024-01-01T00:00:00Z</returnval></CurrentTimeResponse>"#,
        );
        let element =
            response_element("u", "CurrentTime", &response(200, "text/xml", &body)).unwrap();
        assert_eq!(element.name, "CurrentTimeResponse");
        assert_eq!(
            element.child_text("returnval"),
            Some("2024-01-01T00:00:00Z")
        );
    }

    #[test]
    fn reads_fault_type_from_detail() {
        let body = envelope(
            r#"<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Login failure</faultstring>
               <detail><InvalidLoginFault xmlns="urn:vim25" xsi:type="InvalidLogin"/></detail></soapenv:Fault>"#,
        );
        let error = response_element("u", "Login", &response(500, "text/xml", &body)).unwrap_err();
        let VimError::Fault(fault) = error else {
            panic!("expected a fault, got {error}");
        };
        assert_eq!(fault.name, "InvalidLogin");
        assert_eq!(fault.message, "Login failure");
    }

    #[test]
    fn fault_without_xsi_type_uses_element_name() {
        let body = envelope(
            r#"<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring/>
               <detail><NotAuthenticatedFault xmlns="urn:vim25"/></detail></soapenv:Fault>"#,
        );
        let error = response_element("u", "QueryPerf", &response(500, "text/xml", &body));
        assert!(error.unwrap_err().is_not_authenticated());
    }

    #[test]
    fn html_page_is_protocol_error() {
        let page = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head></html>";
        let error = response_element("u", "Login", &response(200, "text/html", page)).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, VimError::Protocol(_)));
        assert!(
            message.contains("expected a SOAP response to Login"),
            "{message}"
        );
        assert!(message.contains("HTML page"), "{message}");
    }

    #[test]
    fn truncated_and_foreign_bodies_are_protocol_errors() {
        let full = envelope(r#"<LoginResponse xmlns="urn:vim25"><returnval/></LoginResponse>"#);
        let cases = [
            full[..full.len() / 2].to_owned(),
            r#"{"value": 1}"#.to_owned(),
            "<other/>".to_owned(),
            envelope(r#"<LogoutResponse xmlns="urn:vim25"/>"#),
            envelope(""),
            String::new(),
        ];
        for body in cases {
            let error =
                response_element("u", "Login", &response(200, "text/xml", &body)).expect_err(&body);
            assert!(matches!(error, VimError::Protocol(_)), "{body}: {error}");
            assert!(error.to_string().contains("Login"), "{error}");
        }
    }

    #[test]
    fn unexpected_status_is_protocol_error() {
        let error = response_element("u", "Login", &response(404, "text/plain", "not found"));
        let message = error.unwrap_err().to_string();
        assert!(message.contains("HTTP status 404"), "{message}");
        assert!(message.contains("not found"), "{message}");
    }

    #[test]
    fn finds_session_cookie_among_headers() {
        let mut response = response(200, "text/xml", "");
        response
            .headers
            .push(("Set-Cookie".to_owned(), b"other=1; Path=/".to_vec()));
        response.headers.push((
            "set-cookie".to_owned(),
            b"vmware_soap_session=\"52ab\"; Path=/; HttpOnly; Secure;".to_vec(),
        ));
        assert_eq!(
            session_cookie(&response).as_deref(),
            Some("vmware_soap_session=\"52ab\"")
        );
    }

    #[test]
    fn request_escapes_values() {
        let mut request =
            RequestBody::new("Login", &MoRef::new("SessionManager", "SessionManager"));
        request.params.text("password", "a<b&\"c");
        let envelope = request.envelope();
        assert!(
            envelope.contains("<password>a&lt;b&amp;&quot;c</password>"),
            "{envelope}"
        );
        assert!(xml::parse(&envelope).is_ok());
    }
}
