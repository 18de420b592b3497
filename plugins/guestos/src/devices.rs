//! The rules that select the file systems, disks and network interfaces in a guest's totals.
//!
//! A guest total should count every byte once and only bytes of the VM's own virtual
//! hardware. So the rules below leave out pseudo and in-memory file systems, remote
//! shares, read-only images, partitions and stacked block devices (their I/O is also
//! counted on the disk below them), and interfaces whose traffic also crosses a real NIC.

/// File system types that are kept in memory, describe the kernel, or are images or remote
/// shares rather than space on the VM's disks. `cgroup*` and `fuse.*` are matched as
/// prefixes in [`is_local_filesystem`].
const SKIPPED_FS_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "erofs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "udf",
    // Remote or host-shared: not the VM's disks, and often shared by many VMs.
    "9p",
    "ceph",
    "cifs",
    "nfs",
    "nfs4",
    "smb3",
    "smbfs",
    "vboxsf",
    "vmhgfs",
];

/// Returns true for a file system whose space is on the VM's own disks.
///
/// `fuseblk` (NTFS or exFAT through FUSE) is local. Every other `fuse.*` type is a
/// userspace view such as lxcfs, gvfs, sshfs or VMware shared folders, so it is left out.
pub fn is_local_filesystem(fstype: &str) -> bool {
    !(SKIPPED_FS_TYPES.contains(&fstype)
        || fstype.starts_with("cgroup")
        || fstype.starts_with("fuse."))
}

/// Returns true for a whole disk: `sda`, `hdb`, `vdc`, `xvdd`, `nvme0n1` or `mmcblk0`.
///
/// This leaves out partitions (`sda1`, `nvme0n1p2`, `mmcblk0p1`), whose bytes the whole
/// disk already counts, device-mapper and md RAID devices (`dm-0`, `md127`), which stack
/// on whole disks, and `loop`, `ram`, `zram`, `sr` and `fd` devices. node_exporter's
/// default `--collector.diskstats.device-exclude` already drops most partitions.
pub fn is_whole_disk(name: &str) -> bool {
    for prefix in ["sd", "hd", "vd", "xvd"] {
        if let Some(letters) = name.strip_prefix(prefix) {
            return !letters.is_empty() && letters.bytes().all(|b| b.is_ascii_lowercase());
        }
    }
    if let Some(rest) = name.strip_prefix("nvme") {
        // nvme<controller>n<namespace>
        return match rest.split_once('n') {
            Some((controller, namespace)) => is_number(controller) && is_number(namespace),
            None => false,
        };
    }
    name.strip_prefix("mmcblk").is_some_and(is_number)
}

/// Name prefixes of Linux interfaces whose traffic is also counted on a real NIC or never
/// leaves the guest: container and VM plumbing, bridges, bonds and teams (their member
/// NICs are counted), VLAN devices, tunnels and VPNs, traffic-shaping mirrors (`ifb`) and
/// dummies.
const VIRTUAL_INTERFACE_PREFIXES: &[&str] = &[
    "veth",
    "docker",
    "br-",
    "virbr",
    "cni",
    "flannel",
    "cali",
    "cilium",
    "vxlan",
    "geneve",
    "genev_sys",
    "weave",
    "kube-",
    "lxc",
    "podman",
    "vnet",
    "tap",
    "tun",
    "wg",
    "ifb",
    "dummy",
    "bond",
    "team",
    "vlan",
    "gre",
    "erspan",
    "ip6",
    "ipip",
    "sit",
    "ip_vti",
    "nlmon",
];

/// Returns true for a Linux interface counted in the network totals.
///
/// Left out: `lo`, names starting with one of [`VIRTUAL_INTERFACE_PREFIXES`], bridges
/// named `br` plus a digit (`br0`), and names with a `.` or `@`, which are VLAN
/// sub-interfaces of a NIC that already counts their frames. The rule goes by name
/// because node_exporter does not say which interfaces are virtual.
pub fn is_counted_interface(name: &str) -> bool {
    let is_bridge = name
        .strip_prefix("br")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    !(name == "lo"
        || is_bridge
        || name.contains(['.', '@'])
        || VIRTUAL_INTERFACE_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix)))
}

/// Returns true for a Windows NIC counted in the network totals.
///
/// windows_exporter names NICs after their description with `(`, `)` and `#` replaced.
/// Left out: the `_Total` instance and loopback, ISATAP, Teredo and 6to4 pseudo-interfaces,
/// which tunnel traffic that a real NIC also carries.
pub fn is_counted_windows_nic(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !(lower == "_total"
        || ["loopback", "isatap", "teredo", "6to4"]
            .iter()
            .any(|word| lower.contains(word)))
}

/// Returns true for a Windows volume with a drive letter, such as `C:`.
///
/// Volumes without one (`HarddiskVolume1`: the system-reserved and recovery partitions)
/// and the `_Total` instance are left out.
pub fn is_drive_letter_volume(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() == 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// A 32-bit FNV-1a hash of a sorted set of device names.
///
/// Stored with the counters, it tells whether the set summed into a total changed between
/// two scrapes (a disk attached, an interface removed), which makes the total's difference
/// meaningless for that interval.
pub fn fingerprint<'a>(names: impl IntoIterator<Item = &'a str>) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let mut hash = OFFSET;
    for name in names {
        for byte in name.bytes().chain([0]) {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_filesystems() {
        for fstype in ["ext4", "xfs", "btrfs", "vfat", "zfs", "fuseblk", "ntfs3"] {
            assert!(is_local_filesystem(fstype), "{fstype} should count");
        }
        for fstype in [
            "tmpfs",
            "overlay",
            "squashfs",
            "proc",
            "sysfs",
            "devtmpfs",
            "nsfs",
            "cgroup",
            "cgroup2",
            "autofs",
            "ramfs",
            "nfs4",
            "fuse.lxcfs",
            "iso9660",
        ] {
            assert!(!is_local_filesystem(fstype), "{fstype} should be skipped");
        }
    }

    #[test]
    fn whole_disks() {
        for name in [
            "sda", "sdab", "hdb", "vda", "xvdf", "nvme0n1", "nvme12n3", "mmcblk0",
        ] {
            assert!(is_whole_disk(name), "{name} should count");
        }
        for name in [
            "sda1",
            "nvme0n1p1",
            "mmcblk0p2",
            "dm-0",
            "md127",
            "loop3",
            "ram0",
            "zram0",
            "sr0",
            "fd0",
            "sd",
            "nvme0",
            "nvmen1",
        ] {
            assert!(!is_whole_disk(name), "{name} should be skipped");
        }
    }

    #[test]
    fn counted_interfaces() {
        for name in ["eth0", "ens192", "enp0s3", "eno1", "ens160"] {
            assert!(is_counted_interface(name), "{name} should count");
        }
        for name in [
            "lo",
            "veth12ab",
            "docker0",
            "br-1a2b",
            "br0",
            "virbr0",
            "cni0",
            "flannel.1",
            "vxlan.calico",
            "tun0",
            "wg0",
            "bond0",
            "ens192.100",
            "eth0@if5",
            "ifb0",
            "tap3",
        ] {
            assert!(!is_counted_interface(name), "{name} should be skipped");
        }
    }

    #[test]
    fn counted_windows_nics() {
        assert!(is_counted_windows_nic("vmxnet3_Ethernet_Adapter"));
        assert!(is_counted_windows_nic(
            "Intel[R]_82574L_Gigabit_Network_Connection"
        ));
        assert!(!is_counted_windows_nic(
            "isatap.{A1B2C3D4-0000-0000-0000-000000000000}"
        ));
        assert!(!is_counted_windows_nic("Teredo_Tunneling_Pseudo-Interface"));
        assert!(!is_counted_windows_nic("Loopback_Pseudo-Interface_1"));
        assert!(!is_counted_windows_nic("_Total"));
    }

    #[test]
    fn drive_letter_volumes() {
        assert!(is_drive_letter_volume("C:"));
        assert!(is_drive_letter_volume("d:"));
        assert!(!is_drive_letter_volume("HarddiskVolume1"));
        assert!(!is_drive_letter_volume("_Total"));
        assert!(!is_drive_letter_volume("C:\\mnt"));
    }

    #[test]
    fn fingerprint_tells_sets_apart() {
        assert_eq!(fingerprint(["sda", "sdb"]), fingerprint(["sda", "sdb"]));
        assert_ne!(fingerprint(["sda", "sdb"]), fingerprint(["sda"]));
        assert_ne!(fingerprint(["ab", "c"]), fingerprint(["a", "bc"]));
    }
}
