//! Entity IDs and names.
//!
//! IDs must stay the same across vMotion and restarts, differ between vCenters and be
//! safe in a URL path. Each starts with the first 8 hex digits of the vCenter's
//! `about.instanceUuid`. A VM adds its `config.instanceUuid`, which vCenter keeps unique
//! within one vCenter and which moves with the VM. Hosts, clusters and datacenters add
//! their managed object ID, which vCenter keeps for the object's lifetime.

/// Hex digits of the vCenter instance UUID that start every ID.
const PREFIX_DIGITS: usize = 8;

/// Returns the first 8 hex digits of a vCenter instance UUID, lowercased, or `None` when
/// it has fewer.
pub fn instance_prefix(instance_uuid: &str) -> Option<String> {
    let digits: String = instance_uuid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(PREFIX_DIGITS)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (digits.len() == PREFIX_DIGITS).then_some(digits)
}

/// Returns `{prefix}.{local}` with every byte outside `A-Z a-z 0-9 - . _ ~` of `local`
/// percent-encoded, so the ID is safe in a URL path.
pub fn entity_id(prefix: &str, local: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 1 + local.len());
    id.push_str(prefix);
    id.push('.');
    for byte in local.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            id.push(char::from(byte));
        } else {
            id.push_str(&format!("%{byte:02X}"));
        }
    }
    id
}

/// Decodes a `ManagedEntity.name` as vCenter returns it: `%2f`, `%5c` and `%25` (in either
/// case) stand for `/`, `\` and `%`. Every other character, including a `%` that starts
/// no such escape, stays as it is, and the result is never decoded a second time.
pub fn decode_entity_name(wire: &str) -> String {
    let mut name = String::with_capacity(wire.len());
    let mut rest = wire;
    while let Some(index) = rest.find('%') {
        name.push_str(&rest[..index]);
        let escape = rest.get(index..index + 3).map(str::to_ascii_lowercase);
        let decoded = match escape.as_deref() {
            Some("%2f") => Some('/'),
            Some("%5c") => Some('\\'),
            Some("%25") => Some('%'),
            _ => None,
        };
        match decoded {
            Some(character) => {
                name.push(character);
                rest = &rest[index + 3..];
            }
            None => {
                name.push('%');
                rest = &rest[index + 1..];
            }
        }
    }
    name.push_str(rest);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_takes_first_eight_hex_digits() {
        assert_eq!(
            instance_prefix("F9958083-19cc-4788-807e-57d849700fa8").as_deref(),
            Some("f9958083")
        );
        assert_eq!(instance_prefix("1234-56"), None);
        assert_eq!(instance_prefix(""), None);
    }

    #[test]
    fn entity_id_is_url_safe() {
        assert_eq!(entity_id("f9958083", "vm-42"), "f9958083.vm-42");
        assert_eq!(
            entity_id("f9958083", "DC0_DS0@folder-5"),
            "f9958083.DC0_DS0%40folder-5"
        );
        assert_eq!(entity_id("ab", "a/b ü"), "ab.a%2Fb%20%C3%BC");
    }

    #[test]
    fn names_decode_exactly_once() {
        assert_eq!(decode_entity_name("web%2f01 & ü"), "web/01 & ü");
        assert_eq!(decode_entity_name("back%5Cslash"), "back\\slash");
        assert_eq!(decode_entity_name("50%25-load"), "50%-load");
        assert_eq!(
            decode_entity_name("%252f"),
            "%2f",
            "decoded once, not twice"
        );
        assert_eq!(decode_entity_name("100%"), "100%");
        assert_eq!(decode_entity_name("%zz%2"), "%zz%2");
        assert_eq!(decode_entity_name("数据库-03 🚀%2F"), "数据库-03 🚀/");
    }
}
