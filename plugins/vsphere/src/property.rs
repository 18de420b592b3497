//! Reading properties with the PropertyCollector.
//!
//! [`retrieve`] sends one RetrievePropertiesEx with `maxObjects` and follows the
//! ContinueRetrievePropertiesEx tokens until vCenter returns none. It hands each object to
//! the caller as its page is read, so memory is bounded by one page. A property that
//! vCenter could not read (NoPermission, unset) comes back in the object's `missingSet`.
//! It is absent from [`ObjectContent`] and costs no other property or object.

use crate::error::VimError;
use crate::session::Session;
use crate::soap::{MoRef, RequestBody, XmlWriter};
use crate::xml::Element;

/// The properties to read from every object of one type.
#[derive(Debug, Clone, Copy)]
pub struct PropertySpec {
    pub kind: &'static str,
    pub paths: &'static [&'static str],
}

/// The objects whose properties are read.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// Every object of a container view.
    ContainerView(&'a MoRef),
    /// These objects. One that no longer exists is left out of the result, not an error.
    Objects(&'a [MoRef]),
}

/// The properties vCenter returned for one object.
#[derive(Debug, Clone)]
pub struct ObjectContent {
    pub obj: MoRef,
    /// Each property path with its `val` element.
    properties: Vec<(String, Element)>,
    /// Each property path vCenter could not read, with the fault type.
    missing: Vec<(String, String)>,
}

impl ObjectContent {
    /// Returns the `val` element of property `path`.
    pub fn value(&self, path: &str) -> Option<&Element> {
        self.properties
            .iter()
            .find(|(name, _)| name == path)
            .map(|(_, value)| value)
    }

    /// Returns the text of a simple property such as a string or an enum.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.value(path).map(|value| value.text.as_str())
    }

    /// Returns a non-empty text property.
    pub fn non_empty_text(&self, path: &str) -> Option<&str> {
        self.text(path).filter(|text| !text.is_empty())
    }

    /// Returns an integer property. Text that is not an integer counts as absent.
    pub fn integer(&self, path: &str) -> Option<i64> {
        self.text(path)?.trim().parse().ok()
    }

    /// Returns a managed object reference property.
    pub fn moref(&self, path: &str) -> Option<MoRef> {
        self.value(path).and_then(MoRef::from_element)
    }

    /// Returns the fault type of a property vCenter could not read.
    pub fn missing_fault(&self, path: &str) -> Option<&str> {
        self.missing
            .iter()
            .find(|(name, _)| name == path)
            .map(|(_, fault)| fault.as_str())
    }

    /// Returns the number of properties vCenter could not read.
    pub fn missing_count(&self) -> usize {
        self.missing.len()
    }
}

/// Reads `specs` from the objects of `selection`, `page_size` objects per page, and calls
/// `each` for every object in the order vCenter returns them.
///
/// # Errors
///
/// Any [`VimError`] of a page request, or `Protocol` for a page that cannot be read.
pub fn retrieve(
    session: &mut Session,
    specs: &[PropertySpec],
    selection: Selection,
    page_size: u32,
    mut each: impl FnMut(ObjectContent),
) -> Result<(), VimError> {
    let collector = session.service().property_collector.clone();
    let mut request = RequestBody::new("RetrievePropertiesEx", &collector);
    write_filter_spec(&mut request.params, specs, selection);
    request
        .params
        .open("options")
        .text("maxObjects", &page_size.to_string())
        .close("options");

    let response = session.call(&request)?;
    let mut token = read_page(response, &mut each)?;
    while let Some(current) = token {
        let mut request = RequestBody::new("ContinueRetrievePropertiesEx", &collector);
        request.params.text("token", &current);
        let response = session.call(&request)?;
        token = read_page(response, &mut each)?;
        if token.as_deref() == Some(current.as_str()) {
            return Err(VimError::Protocol(format!(
                "ContinueRetrievePropertiesEx returned the token {current:?} it was given"
            )));
        }
    }
    Ok(())
}

fn write_filter_spec(xml: &mut XmlWriter, specs: &[PropertySpec], selection: Selection) {
    xml.open("specSet");
    for spec in specs {
        xml.open("propSet").text("type", spec.kind);
        for path in spec.paths {
            xml.text("pathSet", path);
        }
        xml.close("propSet");
    }
    match selection {
        Selection::ContainerView(view) => {
            xml.open("objectSet")
                .moref("obj", view)
                .text("skip", "true")
                .open_typed("selectSet", "TraversalSpec")
                .text("type", "ContainerView")
                .text("path", "view")
                .text("skip", "false")
                .close("selectSet")
                .close("objectSet");
        }
        Selection::Objects(objects) => {
            for obj in objects {
                xml.open("objectSet").moref("obj", obj).close("objectSet");
            }
            xml.text("reportMissingObjectsInResults", "true");
        }
    }
    xml.close("specSet");
}

/// Hands every object of one page to `each` and returns the token of the next page.
fn read_page(
    response: Element,
    each: &mut impl FnMut(ObjectContent),
) -> Result<Option<String>, VimError> {
    let method = format!("{} page", response.name);
    let Some(result) = response
        .children
        .into_iter()
        .find(|c| c.name == "returnval")
    else {
        // vCenter returns no returnval when nothing matched.
        return Ok(None);
    };
    let mut token = None;
    for child in result.children {
        match child.name.as_str() {
            "objects" => each(read_object(child).map_err(|err| {
                VimError::Protocol(format!("unreadable object in the {method}: {err}"))
            })?),
            "token" if !child.text.is_empty() => token = Some(child.text),
            _ => {}
        }
    }
    Ok(token)
}

/// Reads the objects of a RetrievePropertiesEx response, for unit tests of the modules
/// that interpret them.
#[cfg(test)]
pub fn objects_from_response(response: &str) -> Vec<ObjectContent> {
    let response = crate::xml::parse(response).expect("valid XML");
    let mut objects = Vec::new();
    read_page(response, &mut |object| objects.push(object)).expect("a readable page");
    objects
}

fn read_object(element: Element) -> Result<ObjectContent, String> {
    let obj = element
        .child("obj")
        .and_then(MoRef::from_element)
        .ok_or("an object without obj")?;
    let mut content = ObjectContent {
        obj,
        properties: Vec::new(),
        missing: Vec::new(),
    };
    for child in element.children {
        match child.name.as_str() {
            "propSet" => {
                let mut name = None;
                let mut value = None;
                for part in child.children {
                    match part.name.as_str() {
                        "name" => name = Some(part.text),
                        "val" => value = Some(part),
                        _ => {}
                    }
                }
                if let (Some(name), Some(value)) = (name, value) {
                    content.properties.push((name, value));
                }
            }
            "missingSet" => {
                let path = child.child_text("path").unwrap_or_default().to_owned();
                let fault = child
                    .child("fault")
                    .and_then(|outer| outer.child("fault"))
                    .and_then(|inner| inner.xsi_type.clone())
                    .unwrap_or_else(|| "unknown fault".to_owned());
                content.missing.push((path, fault));
            }
            _ => {}
        }
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml;

    #[test]
    fn reads_properties_missing_set_and_token() {
        let response = xml::parse(
            r#"<RetrievePropertiesExResponse xmlns="urn:vim25"
                   xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><returnval>
                <token>page-2</token>
                <objects><obj type="VirtualMachine">vm-1</obj>
                  <propSet><name>name</name><val xsi:type="xsd:string">web%2f01</val></propSet>
                  <propSet><name>runtime.host</name><val xsi:type="ManagedObjectReference" type="HostSystem">host-9</val></propSet>
                  <propSet><name>config.hardware.numCPU</name><val xsi:type="xsd:int">4</val></propSet>
                  <missingSet><path>config.instanceUuid</path>
                    <fault><fault xsi:type="NoPermission"><privilegeId>System.Read</privilegeId></fault></fault>
                  </missingSet>
                </objects>
            </returnval></RetrievePropertiesExResponse>"#,
        )
        .unwrap();
        let mut objects = Vec::new();
        let token = read_page(response, &mut |object| objects.push(object)).unwrap();

        assert_eq!(token.as_deref(), Some("page-2"));
        assert_eq!(objects.len(), 1);
        let vm = &objects[0];
        assert_eq!(vm.obj, MoRef::new("VirtualMachine", "vm-1"));
        assert_eq!(vm.text("name"), Some("web%2f01"));
        assert_eq!(
            vm.moref("runtime.host"),
            Some(MoRef::new("HostSystem", "host-9"))
        );
        assert_eq!(vm.integer("config.hardware.numCPU"), Some(4));
        assert_eq!(vm.text("config.instanceUuid"), None);
        assert_eq!(
            vm.missing_fault("config.instanceUuid"),
            Some("NoPermission")
        );
    }

    #[test]
    fn empty_response_has_no_objects() {
        let response = xml::parse(r#"<RetrievePropertiesExResponse xmlns="urn:vim25"/>"#).unwrap();
        let mut count = 0;
        let token = read_page(response, &mut |_| count += 1).unwrap();
        assert_eq!(token, None);
        assert_eq!(count, 0);
    }

    #[test]
    fn filter_spec_escapes_and_orders_members() {
        let mut xml = XmlWriter::default();
        let objects = [MoRef::new("VirtualMachine", "vm-<1>")];
        let specs = [PropertySpec {
            kind: "VirtualMachine",
            paths: &["name", "guest.disk"],
        }];
        write_filter_spec(&mut xml, &specs, Selection::Objects(&objects));
        assert_eq!(
            xml.into_string(),
            "<specSet><propSet><type>VirtualMachine</type><pathSet>name</pathSet>\
             <pathSet>guest.disk</pathSet></propSet><objectSet><obj type=\"VirtualMachine\">\
             vm-&lt;1&gt;</obj></objectSet><reportMissingObjectsInResults>true\
             </reportMissingObjectsInResults></specSet>"
        );
    }
}
