//! A collector that fails as the first VM's name requests, to test error reporting.
//!
//! Names `config`, `unreachable`, `auth`, `protocol` and `other` fail the batch with that
//! case; `per-vm` reports an error for every VM but the first; `panic` panics.

use vmpulse_plugin_sdk::{
    CollectResult, Collector, Inventory, PluginError, PluginInfo, Vm, VmError, VmSample,
};

struct ErrorKinds;

impl Collector for ErrorKinds {
    fn describe() -> PluginInfo {
        PluginInfo::new("error-kinds", "0.1.0", "Returns the error its input names")
    }

    fn discover() -> Result<Inventory, PluginError> {
        Err(PluginError::Unreachable(
            "discover always fails in this fixture".to_owned(),
        ))
    }

    fn collect(vms: Vec<Vm>) -> Result<CollectResult, PluginError> {
        let first = vms.first().map(|vm| vm.name.as_str()).unwrap_or("");
        let message = format!("requested by VM name {first:?}");
        match first {
            "config" => Err(PluginError::Config(message)),
            "unreachable" => Err(PluginError::Unreachable(message)),
            "auth" => Err(PluginError::Auth(message)),
            "protocol" => Err(PluginError::Protocol(message)),
            "other" => Err(PluginError::Other(message)),
            "panic" => panic!("{message}"),
            "per-vm" => Ok(per_vm_errors(&vms)),
            _ => Ok(CollectResult::default()),
        }
    }
}

fn per_vm_errors(vms: &[Vm]) -> CollectResult {
    let mut result = CollectResult::default();
    for (index, vm) in vms.iter().enumerate() {
        if index == 0 {
            result.samples.push(VmSample::empty(&vm.id, 1));
        } else {
            result.errors.push(VmError {
                vm_id: vm.id.clone(),
                error: PluginError::Protocol(format!("no data for {}", vm.id)),
            });
        }
    }
    result
}

vmpulse_plugin_sdk::export_collector!(ErrorKinds);
