//! `discover`: the datacenters, clusters, hosts and VMs of one vCenter.
//!
//! One container view over the root folder lists every object, one paged
//! RetrievePropertiesEx reads their properties, and then the view is destroyed. Links
//! follow `parent` chains: a host's parent is its cluster (or a standalone compute
//! resource), a cluster's parent is the datacenter's host folder or a folder below it, and
//! a VM's parent is a VM folder. Folders and compute resources are read only to walk those
//! chains and to build each VM's folder path.

use std::collections::{HashMap, HashSet};

use vmpulse_plugin_sdk::{
    Cluster, Datacenter, HostSystem, Inventory, PluginError, PowerState, ToolsStatus, Vm, log,
};

use crate::error::VimError;
use crate::ids;
use crate::property::{self, ObjectContent, PropertySpec, Selection};
use crate::session::Session;
use crate::soap::{MoRef, RequestBody};

/// Parent links followed before a chain is taken to be broken (or a cycle).
const MAX_PARENT_STEPS: usize = 64;

const VIEW_TYPES: &[&str] = &[
    "VirtualMachine",
    "HostSystem",
    "ComputeResource",
    "Datacenter",
    "Folder",
];

const VM_PATHS: &[&str] = &[
    "name",
    "parent",
    "runtime.powerState",
    "runtime.host",
    "config.instanceUuid",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "guest.toolsRunningStatus",
    "guest.toolsVersionStatus2",
    "guest.guestState",
    "guest.ipAddress",
    "guest.hostName",
];

/// `ComputeResource` covers clusters too: a property spec applies to subtypes.
const PROPERTY_SPECS: &[PropertySpec] = &[
    PropertySpec {
        kind: "VirtualMachine",
        paths: VM_PATHS,
    },
    PropertySpec {
        kind: "HostSystem",
        paths: &["name", "parent", "runtime.connectionState"],
    },
    PropertySpec {
        kind: "ComputeResource",
        paths: &["name", "parent"],
    },
    PropertySpec {
        kind: "Datacenter",
        paths: &["name", "parent"],
    },
    PropertySpec {
        kind: "Folder",
        paths: &["name", "parent"],
    },
];

/// A datacenter, cluster, compute resource or folder: a link in `parent` chains.
#[derive(Debug)]
struct Node {
    kind: String,
    /// The name as vCenter returns it, with `/`, `\` and `%` still escaped.
    wire_name: Option<String>,
    parent: Option<String>,
}

/// The objects of one vCenter, as read.
#[derive(Debug, Default)]
struct Objects {
    vms: Vec<ObjectContent>,
    hosts: Vec<ObjectContent>,
    /// Every other object by managed object ID.
    nodes: HashMap<String, Node>,
    /// Objects with at least one property vCenter could not read, and the first of them.
    incomplete: usize,
    first_missing: Option<String>,
}

impl Objects {
    fn add(&mut self, object: ObjectContent) {
        if object.missing_count() > 0 {
            self.incomplete += 1;
            if self.first_missing.is_none() {
                self.first_missing = describe_missing(&object);
            }
        }
        match object.obj.kind.as_str() {
            "VirtualMachine" => self.vms.push(object),
            "HostSystem" => self.hosts.push(object),
            kind => {
                let node = Node {
                    kind: kind.to_owned(),
                    wire_name: object.non_empty_text("name").map(str::to_owned),
                    parent: object.moref("parent").map(|parent| parent.value),
                };
                self.nodes.insert(object.obj.value, node);
            }
        }
    }

    /// Returns the nearest ancestor of `start` (itself excluded) of type `kind`.
    fn ancestor<'a>(&'a self, start: Option<&'a str>, kind: &str) -> Option<&'a str> {
        let mut current = start?;
        for _ in 0..MAX_PARENT_STEPS {
            let node = self.nodes.get(current)?;
            if node.kind == kind {
                return Some(current);
            }
            current = node.parent.as_deref()?;
        }
        None
    }

    /// Returns the inventory path of a VM folder, such as `/DC0/vm/web`. Names keep their
    /// `%2f` escapes, so the path still splits on `/` into its parts.
    fn folder_path(&self, folder: Option<&str>) -> Option<String> {
        let mut names = Vec::new();
        let mut current = folder?;
        for _ in 0..MAX_PARENT_STEPS {
            let node = self.nodes.get(current)?;
            names.push(node.wire_name.as_deref()?);
            if node.kind == "Datacenter" {
                names.reverse();
                return Some(format!("/{}", names.join("/")));
            }
            current = node.parent.as_deref()?;
        }
        None
    }
}

fn describe_missing(object: &ObjectContent) -> Option<String> {
    VM_PATHS
        .iter()
        .chain(["name", "parent", "runtime.connectionState"].iter())
        .find_map(|path| {
            object
                .missing_fault(path)
                .map(|fault| format!("{} {path}: {fault}", object.obj.value))
        })
}

/// Lists every datacenter, cluster, host and VM of the vCenter.
///
/// # Errors
///
/// Any error of the session or of reading the properties. A property that vCenter could
/// not read for one object is no error, only an absent field.
pub fn discover(session: &mut Session) -> Result<Inventory, PluginError> {
    let page_size = session.config().page_size;
    let objects = session.run(|session| read_objects(session, page_size))?;
    if objects.incomplete > 0 {
        log::warn(&format!(
            "vCenter did not return every property of {} objects (first: {}), so those \
             fields are left empty",
            objects.incomplete,
            objects.first_missing.as_deref().unwrap_or("unknown")
        ));
    }

    let prefix = ids::instance_prefix(&session.service().instance_uuid).ok_or_else(|| {
        PluginError::Protocol("vCenter's about.instanceUuid has no 8 hex digits".to_owned())
    })?;
    let mut builder = InventoryBuilder::new(&prefix, &objects);
    let inventory = builder.build();
    if builder.moref_ids > 0 {
        log::warn(&format!(
            "{} VMs have no readable or unique config.instanceUuid, so their IDs use the \
             managed object ID instead and change if the VM is re-registered",
            builder.moref_ids
        ));
    }
    if builder.unknown_power > 0 {
        log::warn(&format!(
            "{} VMs have no readable runtime.powerState, so they are listed as powered off \
             and not collected",
            builder.unknown_power
        ));
    }
    Ok(inventory)
}

fn read_objects(session: &mut Session, page_size: u32) -> Result<Objects, VimError> {
    let view = create_container_view(session)?;
    let mut objects = Objects::default();
    let result = property::retrieve(
        session,
        PROPERTY_SPECS,
        Selection::ContainerView(&view),
        page_size,
        |object| objects.add(object),
    );

    // The view lives until the session ends unless it is destroyed.
    let destroyed = session.call(&RequestBody::new("DestroyView", &view));
    result?;
    if let Err(err) = destroyed {
        log::warn(&format!(
            "destroying container view {} failed: {err}",
            view.value
        ));
    }
    Ok(objects)
}

fn create_container_view(session: &mut Session) -> Result<MoRef, VimError> {
    let service = session.service();
    let mut request = RequestBody::new("CreateContainerView", &service.view_manager);
    request.params.moref("container", &service.root_folder);
    for kind in VIEW_TYPES {
        request.params.text("type", kind);
    }
    request.params.text("recursive", "true");

    let response = session.call(&request)?;
    response
        .child("returnval")
        .and_then(MoRef::from_element)
        .ok_or_else(|| {
            VimError::Protocol("CreateContainerView returned no view reference".to_owned())
        })
}

/// Turns the objects into the WIT inventory, resolving links and IDs.
struct InventoryBuilder<'a> {
    prefix: &'a str,
    objects: &'a Objects,
    /// VMs whose ID uses the managed object ID for want of a unique instance UUID.
    moref_ids: usize,
    /// VMs without a readable power state, listed as powered off.
    unknown_power: usize,
}

/// The links of one host, which its VMs inherit.
#[derive(Debug, Clone, Default)]
struct HostLinks {
    cluster_id: Option<String>,
    datacenter_id: Option<String>,
}

impl<'a> InventoryBuilder<'a> {
    fn new(prefix: &'a str, objects: &'a Objects) -> Self {
        Self {
            prefix,
            objects,
            moref_ids: 0,
            unknown_power: 0,
        }
    }

    fn build(&mut self) -> Inventory {
        let mut inventory = Inventory::default();
        let mut host_links = HashMap::new();

        for (moref, node) in &self.objects.nodes {
            match node.kind.as_str() {
                "Datacenter" => inventory.datacenters.push(Datacenter {
                    id: self.id(moref),
                    name: display_name(node.wire_name.as_deref(), moref),
                }),
                "ClusterComputeResource" => inventory.clusters.push(Cluster {
                    id: self.id(moref),
                    name: display_name(node.wire_name.as_deref(), moref),
                    datacenter_id: self.datacenter_id(node.parent.as_deref()),
                }),
                _ => {}
            }
        }
        for host in &self.objects.hosts {
            let (record, links) = self.host(host);
            host_links.insert(host.obj.value.clone(), links);
            inventory.hosts.push(record);
        }
        inventory.vms = self.vms(&host_links);

        // Sorted output makes discover results comparable between calls.
        inventory.datacenters.sort_by(|a, b| a.id.cmp(&b.id));
        inventory.clusters.sort_by(|a, b| a.id.cmp(&b.id));
        inventory.hosts.sort_by(|a, b| a.id.cmp(&b.id));
        inventory
    }

    fn id(&self, moref: &str) -> String {
        ids::entity_id(self.prefix, moref)
    }

    fn datacenter_id(&self, start: Option<&str>) -> Option<String> {
        self.objects
            .ancestor(start, "Datacenter")
            .map(|moref| self.id(moref))
    }

    fn host(&self, host: &ObjectContent) -> (HostSystem, HostLinks) {
        let parent = host.moref("parent");
        let cluster_id = parent
            .as_ref()
            .filter(|parent| parent.kind == "ClusterComputeResource")
            .map(|parent| self.id(&parent.value));
        let links = HostLinks {
            cluster_id,
            datacenter_id: self.datacenter_id(parent.as_ref().map(|p| p.value.as_str())),
        };
        let record = HostSystem {
            id: self.id(&host.obj.value),
            name: display_name(host.non_empty_text("name"), &host.obj.value),
            cluster_id: links.cluster_id.clone(),
            datacenter_id: links.datacenter_id.clone(),
            connected: host.text("runtime.connectionState") == Some("connected"),
        };
        (record, links)
    }

    fn vms(&mut self, host_links: &HashMap<String, HostLinks>) -> Vec<Vm> {
        let mut used_ids = HashSet::new();
        let mut vms = Vec::with_capacity(self.objects.vms.len());

        for object in &self.objects.vms {
            let moref = &object.obj.value;
            let id = match object.non_empty_text("config.instanceUuid") {
                Some(uuid) if used_ids.insert(uuid.to_ascii_lowercase()) => {
                    self.id(&uuid.to_ascii_lowercase())
                }
                _ => {
                    self.moref_ids += 1;
                    self.id(moref)
                }
            };
            let power_state = power_state(object.text("runtime.powerState"));
            if power_state.is_none() {
                self.unknown_power += 1;
            }
            let parent = object.moref("parent").map(|parent| parent.value);
            let host = object.moref("runtime.host").map(|host| host.value);
            let links = host
                .as_ref()
                .and_then(|host| host_links.get(host))
                .cloned()
                .unwrap_or_default();

            vms.push(Vm {
                id,
                name: display_name(object.non_empty_text("name"), moref),
                source_ref: Some(moref.clone()),
                host_id: host.map(|host| self.id(&host)),
                cluster_id: links.cluster_id,
                datacenter_id: links
                    .datacenter_id
                    .or_else(|| self.datacenter_id(parent.as_deref())),
                folder: self.objects.folder_path(parent.as_deref()),
                power_state: power_state.unwrap_or(PowerState::PoweredOff),
                vcpus: positive(object.integer("config.hardware.numCPU")),
                memory_mb: positive(object.integer("config.hardware.memoryMB")),
                tools_status: tools_status(object),
                guest_ip: object.non_empty_text("guest.ipAddress").map(str::to_owned),
                guest_hostname: object.non_empty_text("guest.hostName").map(str::to_owned),
            });
        }

        vms
    }
}

/// Returns the decoded name, or the managed object ID when vCenter returned no name.
fn display_name(wire_name: Option<&str>, moref: &str) -> String {
    match wire_name {
        Some(name) => ids::decode_entity_name(name),
        None => moref.to_owned(),
    }
}

fn power_state(text: Option<&str>) -> Option<PowerState> {
    match text? {
        "poweredOn" => Some(PowerState::PoweredOn),
        "poweredOff" => Some(PowerState::PoweredOff),
        "suspended" => Some(PowerState::Suspended),
        _ => None,
    }
}

/// Reads the VMware Tools state. The running status cannot express Tools that are not
/// installed, so `guest.toolsVersionStatus2` is checked first. `guest.guestState` is the
/// fallback when the running status is unreadable.
pub fn tools_status(object: &ObjectContent) -> Option<ToolsStatus> {
    if object.text("guest.toolsVersionStatus2") == Some("guestToolsNotInstalled") {
        return Some(ToolsStatus::NotInstalled);
    }
    match object.text("guest.toolsRunningStatus") {
        Some("guestToolsRunning" | "guestToolsExecutingScripts") => Some(ToolsStatus::Running),
        Some("guestToolsNotRunning") => Some(ToolsStatus::NotRunning),
        _ => match object.text("guest.guestState") {
            Some("running") => Some(ToolsStatus::Running),
            Some("notRunning") => Some(ToolsStatus::NotRunning),
            _ => None,
        },
    }
}

fn positive<T: TryFrom<i64>>(value: Option<i64>) -> Option<T> {
    value
        .filter(|value| *value > 0)
        .and_then(|value| T::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::property::objects_from_response;

    fn object(kind: &str, moref: &str, properties: &[(&str, &str)]) -> String {
        let mut xml = format!("<objects><obj type=\"{kind}\">{moref}</obj>");
        for (path, value) in properties {
            let value = match value.split_once(':') {
                Some((kind, id)) if kind.chars().next().is_some_and(char::is_uppercase) => {
                    format!("<val type=\"{kind}\">{id}</val>")
                }
                _ => format!("<val>{value}</val>"),
            };
            xml.push_str(&format!("<propSet><name>{path}</name>{value}</propSet>"));
        }
        xml.push_str("</objects>");
        xml
    }

    fn estate() -> Objects {
        let objects = [
            object(
                "Datacenter",
                "datacenter-2",
                &[("name", "DC0"), ("parent", "Folder:group-d1")],
            ),
            object(
                "Folder",
                "folder-3",
                &[("name", "vm"), ("parent", "Datacenter:datacenter-2")],
            ),
            object(
                "Folder",
                "folder-9",
                &[("name", "a%2fb"), ("parent", "Folder:folder-3")],
            ),
            object(
                "Folder",
                "folder-4",
                &[("name", "host"), ("parent", "Datacenter:datacenter-2")],
            ),
            object(
                "ClusterComputeResource",
                "domain-c7",
                &[("name", "C0"), ("parent", "Folder:folder-4")],
            ),
            object(
                "ComputeResource",
                "domain-s8",
                &[("name", "esx9"), ("parent", "Folder:folder-4")],
            ),
            object(
                "HostSystem",
                "host-10",
                &[
                    ("name", "esx1"),
                    ("parent", "ClusterComputeResource:domain-c7"),
                    ("runtime.connectionState", "connected"),
                ],
            ),
            object(
                "HostSystem",
                "host-11",
                &[
                    ("name", "esx9"),
                    ("parent", "ComputeResource:domain-s8"),
                    ("runtime.connectionState", "notResponding"),
                ],
            ),
            object(
                "VirtualMachine",
                "vm-20",
                &[
                    ("name", "web%2f01 &amp; %25"),
                    ("parent", "Folder:folder-9"),
                    ("runtime.powerState", "poweredOn"),
                    ("runtime.host", "HostSystem:host-10"),
                    (
                        "config.instanceUuid",
                        "5027AB00-0000-0000-0000-000000000001",
                    ),
                    ("config.hardware.numCPU", "2"),
                    ("config.hardware.memoryMB", "4096"),
                    ("guest.toolsRunningStatus", "guestToolsRunning"),
                    ("guest.ipAddress", "10.0.0.5"),
                ],
            ),
            object(
                "VirtualMachine",
                "vm-21",
                &[
                    ("name", "standalone"),
                    ("parent", "Folder:folder-3"),
                    ("runtime.powerState", "suspended"),
                    ("runtime.host", "HostSystem:host-11"),
                    ("guest.toolsVersionStatus2", "guestToolsNotInstalled"),
                ],
            ),
        ];
        let response = format!(
            "<RetrievePropertiesExResponse><returnval>{}</returnval>\
             </RetrievePropertiesExResponse>",
            objects.concat()
        );
        let mut estate = Objects::default();
        for object in objects_from_response(&response) {
            estate.add(object);
        }
        estate
    }

    #[test]
    fn links_follow_parent_chains() {
        let estate = estate();
        let inventory = InventoryBuilder::new("f9958083", &estate).build();

        assert_eq!(inventory.datacenters.len(), 1);
        assert_eq!(inventory.datacenters[0].id, "f9958083.datacenter-2");
        assert_eq!(
            inventory.clusters.len(),
            1,
            "a standalone host is no cluster"
        );
        let datacenter_id = Some("f9958083.datacenter-2".to_owned());
        assert_eq!(inventory.clusters[0].datacenter_id, datacenter_id);

        let clustered = &inventory.hosts[0];
        assert_eq!(clustered.cluster_id.as_deref(), Some("f9958083.domain-c7"));
        assert_eq!(clustered.datacenter_id, datacenter_id);
        assert!(clustered.connected);
        let standalone = &inventory.hosts[1];
        assert_eq!(standalone.cluster_id, None);
        assert_eq!(standalone.datacenter_id, datacenter_id);
        assert!(!standalone.connected);
    }

    #[test]
    fn vm_fields_and_ids() {
        let estate = estate();
        let inventory = InventoryBuilder::new("f9958083", &estate).build();
        let vm = &inventory.vms[0];

        assert_eq!(vm.id, "f9958083.5027ab00-0000-0000-0000-000000000001");
        assert_eq!(vm.name, "web/01 & %");
        assert_eq!(vm.source_ref.as_deref(), Some("vm-20"));
        assert_eq!(vm.host_id.as_deref(), Some("f9958083.host-10"));
        assert_eq!(vm.cluster_id.as_deref(), Some("f9958083.domain-c7"));
        assert_eq!(vm.datacenter_id.as_deref(), Some("f9958083.datacenter-2"));
        assert_eq!(vm.folder.as_deref(), Some("/DC0/vm/a%2fb"));
        assert_eq!(vm.power_state, PowerState::PoweredOn);
        assert_eq!(vm.vcpus, Some(2));
        assert_eq!(vm.memory_mb, Some(4096));
        assert_eq!(vm.tools_status, Some(ToolsStatus::Running));
        assert_eq!(vm.guest_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(vm.guest_hostname, None);
    }

    #[test]
    fn vm_without_instance_uuid_uses_moref() {
        let estate = estate();
        let mut builder = InventoryBuilder::new("f9958083", &estate);
        let inventory = builder.build();
        let vm = &inventory.vms[1];

        assert_eq!(builder.moref_ids, 1);
        assert_eq!(builder.unknown_power, 0);

        assert_eq!(vm.id, "f9958083.vm-21");
        assert_eq!(vm.cluster_id, None);
        assert_eq!(vm.datacenter_id.as_deref(), Some("f9958083.datacenter-2"));
        assert_eq!(vm.folder.as_deref(), Some("/DC0/vm"));
        assert_eq!(vm.power_state, PowerState::Suspended);
        assert_eq!(vm.vcpus, None);
        assert_eq!(vm.tools_status, Some(ToolsStatus::NotInstalled));
    }

    #[test]
    fn broken_parent_chain_ends_without_cycle() {
        let mut estate = estate();
        estate.nodes.get_mut("folder-3").unwrap().parent = Some("folder-9".to_owned());
        assert_eq!(estate.folder_path(Some("folder-9")), None);
        assert_eq!(estate.ancestor(Some("folder-9"), "Datacenter"), None);
    }
}
