package main

// The estate plan is computed from the flags alone, before the simulator starts, so the
// same flags always give the same names, placements, states and guest data.
//
// Naming scheme (indexes start at 0 except VM numbers, which start at 1):
//
//	datacenter  DC<d>                  DC0, DC1
//	cluster     DC<d>_C<c>             DC0_C0, DC0_C2
//	host        DC<d>_C<c>_H<hh>       DC0_C1_H03 (at least two digits)
//	datastore   DC<d>_DS0              one local datastore per datacenter, mounted on every host
//	VM          vm-<nnnn>              vm-0001 … vm-1500, zero-padded to at least four digits
//
// A few VM numbers carry awkward display names instead (see awkwardVMNames), which the name
// property returns escaped (see escapeEntityName). VM number k
// runs on host (k-1) mod H, where hosts are ordered by datacenter, cluster and host index,
// so every host carries the same number of VMs or one fewer.

import (
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/vmware/govmomi/vim25/types"
)

// Namespaces of the name-based (SHA-1, version 5) UUIDs derived from VM display names.
// They are arbitrary fixed values, so a VM keeps its UUIDs across restarts.
var (
	instanceUUIDNamespace = uuid.MustParse("f0e4f0aa-9559-45da-bbf2-4060915ca6d3")
	biosUUIDNamespace     = uuid.MustParse("236443cc-863c-405e-92fb-a05f3aa81fd3")
)

// awkwardVMNames replaces the default name of these VM numbers. Together they contain
// `/`, `\`, `%`, `&`, `<`, `>`, `"`, spaces, two- to four-byte UTF-8 and an 80-character
// name, the longest VM name vCenter accepts since version 5.0.
var awkwardVMNames = map[int]string{
	2:  "web/01 & ü",
	3:  "数据库-03",
	5:  "50%-load",
	7:  `db<1> & "main"`,
	11: `back\slash`,
	13: "café ☕ 🚀",
	17: "long-name-" + strings.Repeat("0123456789", 7),
}

// hostCoreMHz is summary.hardware.cpuMhz of every simulated host (simulator/esx/host_system.go).
const hostCoreMHz = 2294

// estateConfig is the inventory size and VM state mix requested on the command line.
type estateConfig struct {
	datacenters           int
	clustersPerDatacenter int
	hostsPerCluster       int
	vms                   int
	poweredOff            int
	suspended             int
	noTools               int
}

// hostPlan is one ESXi host of the planned inventory.
type hostPlan struct {
	datacenter int
	cluster    int
	name       string
}

// guestDiskPlan is one guest file system reported by VMware Tools, sizes in bytes.
type guestDiskPlan struct {
	path           string
	filesystemType string
	capacity       int64
	freeSpace      int64
}

// guestOSPlan is the guest operating system identity of a VM.
type guestOSPlan struct {
	id       types.VirtualMachineGuestOsIdentifier
	fullName string
	family   types.VirtualMachineGuestOsFamily
}

// vmPlan is everything the launcher sets on one VM.
type vmPlan struct {
	number      int
	displayName string
	// wireName is displayName escaped the way vCenter stores entity names.
	wireName string
	// directory is the default name (vm-0002 even for an awkward name), which names the
	// VM's folder on the datastore.
	directory    string
	host         int
	powerState   types.VirtualMachinePowerState
	toolsRunning bool
	numCPU       int32
	memoryMB     int32
	// cpuReservationMHz is 0 and cpuLimitMHz is -1 (unlimited) unless the VM has CPU limits.
	cpuReservationMHz int64
	cpuLimitMHz       int64
	guestOS           guestOSPlan
	diskCapacityKB    int64
	instanceUUID      string
	biosUUID          string
	// The guest fields below are empty unless toolsRunning is set.
	guestHostName string
	guestIP       string
	guestDisks    []guestDiskPlan
	// The quick stats are zero unless the VM is powered on.
	uptimeSeconds    int32
	guestMemoryUsage int32
	hostMemoryUsage  int32
	overallCPUUsage  int32
	overallCPUDemand int32
}

// estatePlan is the whole planned inventory.
type estatePlan struct {
	datacenters []string
	clusters    [][]string
	hosts       []hostPlan
	vms         []vmPlan
}

// datastoreName returns the name of the local datastore of datacenter d.
func datastoreName(d int) string {
	return fmt.Sprintf("DC%d_DS0", d)
}

// planEstate computes the inventory for cfg. It returns an error when the state counts
// do not fit into the number of VMs.
func planEstate(cfg estateConfig) (*estatePlan, error) {
	if err := validateEstateConfig(cfg); err != nil {
		return nil, err
	}

	plan := &estatePlan{}
	for d := 0; d < cfg.datacenters; d++ {
		plan.datacenters = append(plan.datacenters, fmt.Sprintf("DC%d", d))
		var clusters []string
		for c := 0; c < cfg.clustersPerDatacenter; c++ {
			cluster := fmt.Sprintf("DC%d_C%d", d, c)
			clusters = append(clusters, cluster)
			for h := 0; h < cfg.hostsPerCluster; h++ {
				name := fmt.Sprintf("%s_H%02d", cluster, h)
				plan.hosts = append(plan.hosts, hostPlan{datacenter: d, cluster: c, name: name})
			}
		}
		plan.clusters = append(plan.clusters, clusters)
	}

	states := planPowerStates(cfg)
	width := len(fmt.Sprint(cfg.vms))
	if width < 4 {
		width = 4
	}
	for i := 0; i < cfg.vms; i++ {
		vm := planVM(i, width, len(plan.hosts), states[i])
		plan.vms = append(plan.vms, vm)
	}
	return plan, nil
}

func validateEstateConfig(cfg estateConfig) error {
	if cfg.datacenters < 1 || cfg.clustersPerDatacenter < 1 || cfg.hostsPerCluster < 1 {
		return fmt.Errorf("invalid topology: -datacenters, -clusters and -hosts must each be at least 1")
	}
	if cfg.vms < 0 || cfg.poweredOff < 0 || cfg.suspended < 0 || cfg.noTools < 0 {
		return fmt.Errorf("invalid VM counts: -vms, -powered-off, -suspended and -no-tools must not be negative")
	}
	if cfg.poweredOff+cfg.suspended > cfg.vms {
		return fmt.Errorf("invalid VM counts: -powered-off %d plus -suspended %d exceed -vms %d",
			cfg.poweredOff, cfg.suspended, cfg.vms)
	}
	poweredOn := cfg.vms - cfg.poweredOff - cfg.suspended
	if cfg.noTools > poweredOn {
		return fmt.Errorf("invalid VM counts: -no-tools %d exceeds the %d powered-on VMs", cfg.noTools, poweredOn)
	}
	return nil
}

// vmState is the power state and VMware Tools state chosen for one VM.
type vmState struct {
	power        types.VirtualMachinePowerState
	toolsRunning bool
}

// planPowerStates picks the powered-off VMs evenly from all VMs, the suspended ones
// evenly from the rest, and the powered-on VMs without VMware Tools evenly from the
// powered-on ones. With the defaults every 20th VM is powered off.
func planPowerStates(cfg estateConfig) []vmState {
	states := make([]vmState, cfg.vms)
	for i := range states {
		states[i] = vmState{power: types.VirtualMachinePowerStatePoweredOn, toolsRunning: true}
	}

	remaining := pickEvenly(allIndexes(cfg.vms), cfg.poweredOff, func(i int) {
		states[i] = vmState{power: types.VirtualMachinePowerStatePoweredOff}
	})
	poweredOn := pickEvenly(remaining, cfg.suspended, func(i int) {
		states[i] = vmState{power: types.VirtualMachinePowerStateSuspended}
	})
	pickEvenly(poweredOn, cfg.noTools, func(i int) {
		states[i].toolsRunning = false
	})
	return states
}

func allIndexes(n int) []int {
	indexes := make([]int, n)
	for i := range indexes {
		indexes[i] = i
	}
	return indexes
}

// pickEvenly calls pick for count of the candidates, spread evenly: the last candidate of
// each run of len(candidates)/count. It returns the candidates that were not picked.
func pickEvenly(candidates []int, count int, pick func(int)) []int {
	var rest []int
	n := len(candidates)
	for position, index := range candidates {
		if (position+1)*count/n > position*count/n {
			pick(index)
		} else {
			rest = append(rest, index)
		}
	}
	return rest
}

// planVM derives every property of the VM at index i (VM number i+1) from the index.
func planVM(i, width, hosts int, state vmState) vmPlan {
	number := i + 1
	defaultName := fmt.Sprintf("vm-%0*d", width, number)
	displayName := defaultName
	if name, ok := awkwardVMNames[number]; ok {
		displayName = name
	}

	vm := vmPlan{
		number:            number,
		displayName:       displayName,
		wireName:          escapeEntityName(displayName),
		directory:         defaultName,
		host:              i % hosts,
		powerState:        state.power,
		toolsRunning:      state.toolsRunning,
		numCPU:            []int32{1, 2, 4, 8}[mix(i, 1)%4],
		memoryMB:          int32(1024 * (1 + mix(i, 2)%16)),
		cpuReservationMHz: 0,
		cpuLimitMHz:       -1,
		guestOS:           planGuestOS(i),
		instanceUUID:      uuid.NewSHA1(instanceUUIDNamespace, []byte(displayName)).String(),
		biosUUID:          uuid.NewSHA1(biosUUIDNamespace, []byte(displayName)).String(),
	}
	if i%10 == 4 {
		vm.cpuReservationMHz = 1000
		vm.cpuLimitMHz = 2000 * int64(vm.numCPU)
	}

	if vm.powerState == types.VirtualMachinePowerStatePoweredOn {
		planQuickStats(&vm, i)
	}
	// The virtual disk holds the guest file systems plus 1 GiB for boot and swap.
	disks := planGuestDisks(i, vm.guestOS.family)
	vm.diskCapacityKB = 1 << 20
	for _, disk := range disks {
		vm.diskCapacityKB += disk.capacity >> 10
	}
	if vm.toolsRunning {
		vm.guestHostName = defaultName
		vm.guestIP = planGuestIP(i)
		vm.guestDisks = disks
	}
	return vm
}

func planGuestOS(i int) guestOSPlan {
	if i%4 == 3 {
		return guestOSPlan{
			id:       types.VirtualMachineGuestOsIdentifierWindows9Server64Guest,
			fullName: "Microsoft Windows Server 2016 or later (64-bit)",
			family:   types.VirtualMachineGuestOsFamilyWindowsGuest,
		}
	}
	return guestOSPlan{
		id:       types.VirtualMachineGuestOsIdentifierUbuntu64Guest,
		fullName: "Ubuntu Linux (64-bit)",
		family:   types.VirtualMachineGuestOsFamilyLinuxGuest,
	}
}

// planQuickStats fills the quick stats of a powered-on VM. The vSphere API reference
// (VirtualMachineQuickStats) makes them valid while the VM runs, whether or not VMware Tools
// run, so VMs without tools get them too.
func planQuickStats(vm *vmPlan, i int) {
	vm.uptimeSeconds = int32(3600 + mix(i, 3)%(90*24*3600))
	vm.guestMemoryUsage = vm.memoryMB * int32(10+mix(i, 4)%70) / 100
	vm.hostMemoryUsage = vm.memoryMB * int32(50+mix(i, 5)%50) / 100
	vm.overallCPUUsage = vm.numCPU * hostCoreMHz * int32(2+mix(i, 6)%58) / 100
	vm.overallCPUDemand = vm.overallCPUUsage + int32(mix(i, 7)%50)
}

// planGuestIP returns 10.B.C.D with D in 1..250, so every VM gets a distinct address for
// up to about 16 million VMs. Nothing ever connects to these addresses.
func planGuestIP(i int) string {
	block := i / 250
	return fmt.Sprintf("10.%d.%d.%d", 1+block/256, block%256, 1+i%250)
}

// planGuestDisks returns one to three file systems. Every 25th VM has a first file system
// that is 97 % full, for tests of low free space.
func planGuestDisks(i int, family types.VirtualMachineGuestOsFamily) []guestDiskPlan {
	const gib = int64(1) << 30

	type mount struct {
		path, filesystemType string
		baseGiB              int64
	}
	mounts := []mount{{"/", "ext4", 32}, {"/var", "ext4", 16}, {"/data", "xfs", 128}}
	if family == types.VirtualMachineGuestOsFamilyWindowsGuest {
		mounts = []mount{{`C:\`, "NTFS", 80}, {`D:\`, "NTFS", 200}, {`E:\`, "NTFS", 500}}
	}

	count := 1 + int(mix(i, 8)%3)
	var disks []guestDiskPlan
	for m := 0; m < count; m++ {
		capacity := mounts[m].baseGiB * gib * int64(1+mix(i, 9+uint64(m))%4)
		freePercent := int64(5 + mix(i, 20+uint64(m))%86)
		if m == 0 && i%25 == 24 {
			freePercent = 3
		}
		disks = append(disks, guestDiskPlan{
			path:           mounts[m].path,
			filesystemType: mounts[m].filesystemType,
			capacity:       capacity,
			freeSpace:      capacity * freePercent / 100,
		})
	}
	return disks
}

// escapeEntityName escapes a name the way vCenter stores ManagedEntity.name: `/` becomes
// %2f, `\` becomes %5c and `%` becomes %25 unless it already starts one of these escapes
// (vSphere Web Services API reference, ManagedEntity.name).
func escapeEntityName(name string) string {
	var escaped strings.Builder
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '/':
			escaped.WriteString("%2f")
		case '\\':
			escaped.WriteString("%5c")
		case '%':
			if startsEntityEscape(name[i:]) {
				escaped.WriteByte('%')
			} else {
				escaped.WriteString("%25")
			}
		default:
			escaped.WriteByte(name[i])
		}
	}
	return escaped.String()
}

func startsEntityEscape(s string) bool {
	if len(s) < 3 {
		return false
	}
	switch strings.ToLower(s[:3]) {
	case "%2f", "%5c", "%25":
		return true
	}
	return false
}

// mix returns a well-spread pseudo-random number for (i, salt), the SplitMix64 finalizer,
// so VM properties vary without depending on a random seed.
func mix(i int, salt uint64) uint64 {
	z := uint64(i)*0x9e3779b97f4a7c15 + salt*0xbf58476d1ce4e5b9
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
