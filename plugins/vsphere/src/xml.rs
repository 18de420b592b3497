//! A small element tree over `quick-xml`, built for reading SOAP responses, and the
//! escaping used to write requests.
//!
//! The govmomi simulator declares the XML Schema instance namespace under two prefixes:
//! `xsi:type` on fault details, `XMLSchema-instance:type` on property values. So the tree
//! resolves namespaces instead of matching prefixes. [`Element::xsi_type`] is the `type`
//! attribute in that namespace, whatever its prefix.

use std::borrow::Cow;

use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;

/// The SOAP 1.1 envelope namespace.
pub const SOAP_ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The namespace of every vim25 type and method.
pub const VIM25_NS: &str = "urn:vim25";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// The max nesting depth, deeper than any vim25 response. A deeper document is rejected
/// rather than risking the stack when the tree is dropped.
const MAX_DEPTH: usize = 256;

/// The namespace of an element name. Only the two that the client checks are kept apart,
/// which keeps each of the thousands of elements of a page small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementNamespace {
    SoapEnvelope,
    Vim25,
    Other,
    None,
}

/// One element with its resolved name, its unprefixed attributes and its content.
#[derive(Debug, Clone)]
pub struct Element {
    pub namespace: ElementNamespace,
    /// The local name, without any prefix.
    pub name: String,
    /// The local part of the `xsi:type` attribute, such as `string` for `xsd:string` or
    /// `ArrayOfGuestDiskInfo`.
    pub xsi_type: Option<String>,
    /// Attributes without a namespace, such as the `type` of a managed object reference.
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// The character data directly inside the element, with entities resolved.
    pub text: String,
}

impl Element {
    fn new(namespace: ElementNamespace, name: String) -> Self {
        Self {
            namespace,
            name,
            xsi_type: None,
            attributes: Vec::new(),
            children: Vec::new(),
            text: String::new(),
        }
    }

    /// Returns the first child element named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|child| child.name == name)
    }

    /// Returns every child element named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |child| child.name == name)
    }

    /// Returns the text of the first child element named `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|child| child.text.as_str())
    }

    /// Returns the value of the unprefixed attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Parses a whole document and returns its root element.
///
/// # Errors
///
/// A message saying where the document is malformed: truncated, badly nested, deeper
/// than [`MAX_DEPTH`], or using an entity other than the five predefined ones.
pub fn parse(document: &str) -> Result<Element, String> {
    let mut reader = NsReader::from_str(document);
    let mut open: Vec<Element> = Vec::new();
    let mut root = None;

    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|err| format!("malformed XML at byte {position}: {err}"))?;
        match event {
            Event::Start(start) => {
                if open.len() >= MAX_DEPTH {
                    return Err(format!("XML nested deeper than {MAX_DEPTH} elements"));
                }
                open.push(element_from_start(&reader, &start)?);
            }
            Event::Empty(start) => {
                let element = element_from_start(&reader, &start)?;
                attach(&mut open, &mut root, element)?;
            }
            Event::End(_) => {
                let element = open
                    .pop()
                    .ok_or_else(|| format!("unexpected closing tag at byte {position}"))?;
                attach(&mut open, &mut root, element)?;
            }
            Event::Text(text) => append_text(&mut open, &text.xml10_content()),
            Event::CData(data) => append_text(&mut open, &data.xml10_content()),
            Event::GeneralRef(reference) => {
                let resolved = resolve_reference(&reference)?;
                append_text(&mut open, &resolved);
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }

    if let Some(unclosed) = open.last() {
        return Err(format!(
            "XML ends before the element <{}> is closed (truncated response?)",
            unclosed.name
        ));
    }
    root.ok_or_else(|| "no XML element in the response".to_owned())
}

fn element_from_start(reader: &NsReader<&[u8]>, start: &BytesStart) -> Result<Element, String> {
    let (namespace, local) = reader.resolver().resolve_element(start.name());
    let namespace = match namespace {
        ResolveResult::Bound(Namespace(SOAP_ENVELOPE_NS)) => ElementNamespace::SoapEnvelope,
        ResolveResult::Bound(Namespace(VIM25_NS)) => ElementNamespace::Vim25,
        ResolveResult::Bound(_) => ElementNamespace::Other,
        ResolveResult::Unbound => ElementNamespace::None,
        ResolveResult::Unknown(prefix) => {
            return Err(format!("element uses the undeclared prefix `{prefix}`"));
        }
    };
    let mut element = Element::new(namespace, local.as_ref().to_owned());

    for attribute in start.attributes() {
        let attribute = attribute.map_err(|err| format!("malformed attribute: {err}"))?;
        if attribute.key.as_namespace_binding().is_some() {
            continue;
        }
        let (namespace, local) = reader.resolver().resolve_attribute(attribute.key);
        let value = attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| format!("malformed attribute value: {err}"))?;
        match namespace {
            ResolveResult::Bound(Namespace(XSI_NS)) if local.as_ref() == "type" => {
                element.xsi_type = Some(local_part(&value).to_owned());
            }
            ResolveResult::Unbound => {
                element
                    .attributes
                    .push((local.as_ref().to_owned(), value.into_owned()));
            }
            _ => {}
        }
    }
    Ok(element)
}

/// Returns the part of a qualified name after its prefix: `string` for `xsd:string`.
fn local_part(qualified: &str) -> &str {
    qualified
        .rsplit_once(':')
        .map_or(qualified, |(_, local)| local)
}

fn attach(
    open: &mut [Element],
    root: &mut Option<Element>,
    element: Element,
) -> Result<(), String> {
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None if root.is_none() => *root = Some(element),
        None => return Err("more than one root element".to_owned()),
    }
    Ok(())
}

fn append_text(open: &mut [Element], text: &str) {
    // Text outside the root (whitespace around it) belongs to no element.
    if let Some(current) = open.last_mut() {
        current.text.push_str(text);
    }
}

fn resolve_reference<'a>(reference: &'a BytesRef) -> Result<Cow<'a, str>, String> {
    let name: &str = reference;
    if let Some(character) = reference
        .resolve_char_ref()
        .map_err(|err| format!("invalid character reference &{name};: {err}"))?
    {
        return Ok(Cow::Owned(character.to_string()));
    }
    resolve_predefined_entity(name)
        .map(Cow::Borrowed)
        .ok_or_else(|| format!("unknown entity &{name};"))
}

/// Escapes `text` for use as element content or as a quoted attribute value.
pub fn escape(text: &str) -> Cow<'_, str> {
    quick_xml::escape::escape(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_xsi_type_under_any_prefix() {
        let document = r#"<a xmlns:x="http://www.w3.org/2001/XMLSchema-instance">
            <val xmlns:XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance"
                 XMLSchema-instance:type="xsd:string">one</val>
            <val x:type="ArrayOfGuestDiskInfo"/>
            <val xsi:type="xsd:int" xmlns:xsi="urn:not-xsi">3</val>
        </a>"#;
        let root = parse(document).unwrap();
        let values: Vec<_> = root.children_named("val").collect();
        assert_eq!(values[0].xsi_type.as_deref(), Some("string"));
        assert_eq!(values[0].text, "one");
        assert_eq!(values[1].xsi_type.as_deref(), Some("ArrayOfGuestDiskInfo"));
        assert_eq!(
            values[2].xsi_type, None,
            "a prefix bound elsewhere is not xsi"
        );
    }

    #[test]
    fn resolves_entities_and_keeps_utf8() {
        let root = parse("<n>web%2f01 &amp; &#252; &lt;1&gt; 数据库 🚀</n>").unwrap();
        assert_eq!(root.text, "web%2f01 & ü <1> 数据库 🚀");
    }

    #[test]
    fn reads_unprefixed_attributes_and_namespaces() {
        let document = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
            <s:Body><R xmlns="urn:vim25"><obj type="VirtualMachine">vm-1</obj></R></s:Body>
        </s:Envelope>"#;
        let root = parse(document).unwrap();
        assert_eq!(root.namespace, ElementNamespace::SoapEnvelope);
        let response = &root.child("Body").unwrap().children[0];
        assert_eq!(response.namespace, ElementNamespace::Vim25);
        let obj = response.child("obj").unwrap();
        assert_eq!(obj.attribute("type"), Some("VirtualMachine"));
        assert_eq!(obj.text, "vm-1");
    }

    #[test]
    fn rejects_truncated_document() {
        let error = parse("<a><b>text</b><c>").unwrap_err();
        assert!(
            error.contains("truncated") || error.contains("malformed"),
            "{error}"
        );
    }

    #[test]
    fn rejects_mismatched_tags_and_unknown_entities() {
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("<a>&nbsp;</a>").is_err());
        assert!(parse("<p:a>x</p:a>").is_err());
    }

    #[test]
    fn rejects_text_without_elements_and_deep_nesting() {
        assert!(parse("just text").is_err());
        assert!(parse("").is_err());
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).unwrap_err().contains("deeper"));
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
