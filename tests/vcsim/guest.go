package main

// The simulator leaves VMware Tools data empty (guest.toolsRunningStatus is
// guestToolsNotRunning for every VM) and reports no quick stats, so the launcher writes
// them on the simulator's VM objects. It does so before the server accepts connections,
// so no lock is needed.

import (
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// toolsVersion is the guest.toolsVersion of every VM: version 12.3.5 encoded as
// major*1024 + minor*32 + patch.
const toolsVersion = "12389"

// applyGuestState sets guest, summary.guest, summary.quickStats and boot time of vm.
func applyGuestState(vm *simulator.VirtualMachine, plan vmPlan) {
	guestOS := plan.guestOS
	vm.Config.GuestFullName = guestOS.fullName
	vm.Summary.Config.GuestFullName = guestOS.fullName

	guest := vm.Guest
	guest.GuestId = string(guestOS.id)
	guest.GuestFamily = string(guestOS.family)
	guest.GuestFullName = guestOS.fullName
	guest.ToolsVersion = toolsVersion
	guest.ToolsVersionStatus = string(types.VirtualMachineToolsVersionStatusGuestToolsCurrent)
	guest.ToolsVersionStatus2 = string(types.VirtualMachineToolsVersionStatusGuestToolsCurrent)
	guest.ToolsInstallType = toolsInstallType(guestOS.family)
	if plan.toolsRunning {
		setToolsRunning(guest, plan)
	} else {
		setToolsNotRunning(guest)
	}

	vm.Summary.Guest = &types.VirtualMachineGuestSummary{
		GuestId:             guest.GuestId,
		GuestFullName:       guest.GuestFullName,
		ToolsStatus:         guest.ToolsStatus,
		ToolsVersionStatus:  guest.ToolsVersionStatus,
		ToolsVersionStatus2: guest.ToolsVersionStatus2,
		ToolsRunningStatus:  guest.ToolsRunningStatus,
		HostName:            guest.HostName,
		IpAddress:           guest.IpAddress,
	}
	applyQuickStats(vm, plan)
}

func toolsInstallType(family types.VirtualMachineGuestOsFamily) string {
	if family == types.VirtualMachineGuestOsFamilyWindowsGuest {
		return "guestToolsTypeMSI"
	}
	return "guestToolsTypeOpenVMTools"
}

func setToolsRunning(guest *types.GuestInfo, plan vmPlan) {
	guest.ToolsStatus = types.VirtualMachineToolsStatusToolsOk
	guest.ToolsRunningStatus = string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
	guest.GuestState = string(types.VirtualMachineGuestStateRunning)
	guest.HostName = plan.guestHostName
	guest.IpAddress = plan.guestIP
	guest.GuestOperationsReady = types.NewBool(true)

	// The simulator lists the VM's network adapter in guest.net when the VM is created.
	for i := range guest.Net {
		nic := &guest.Net[i]
		nic.Connected = true
		if i > 0 {
			continue
		}
		nic.IpAddress = []string{plan.guestIP}
		nic.IpConfig = &types.NetIpConfigInfo{
			IpAddress: []types.NetIpConfigInfoIpAddress{{
				IpAddress:    plan.guestIP,
				PrefixLength: 16,
				State:        string(types.NetIpConfigInfoIpAddressStatusPreferred),
			}},
		}
	}

	guest.Disk = nil
	for _, disk := range plan.guestDisks {
		guest.Disk = append(guest.Disk, types.GuestDiskInfo{
			DiskPath:       disk.path,
			Capacity:       disk.capacity,
			FreeSpace:      disk.freeSpace,
			FilesystemType: disk.filesystemType,
		})
	}
}

// setToolsNotRunning clears the data only running VMware Tools report: host name, IP
// addresses, network adapters and file systems.
func setToolsNotRunning(guest *types.GuestInfo) {
	guest.ToolsStatus = types.VirtualMachineToolsStatusToolsNotRunning
	guest.ToolsRunningStatus = string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning)
	guest.GuestState = string(types.VirtualMachineGuestStateNotRunning)
	guest.HostName = ""
	guest.IpAddress = ""
	guest.Net = nil
	guest.Disk = nil
	guest.GuestOperationsReady = types.NewBool(false)
}

// applyQuickStats sets the quick stats of a powered-on VM and clears them otherwise. The
// boot time is chosen so that it matches summary.quickStats.uptimeSeconds at start.
func applyQuickStats(vm *simulator.VirtualMachine, plan vmPlan) {
	stats := &vm.Summary.QuickStats
	*stats = types.VirtualMachineQuickStats{GuestHeartbeatStatus: types.ManagedEntityStatusGray}
	if plan.powerState != types.VirtualMachinePowerStatePoweredOn {
		return
	}

	stats.OverallCpuUsage = plan.overallCPUUsage
	stats.OverallCpuDemand = plan.overallCPUDemand
	stats.GuestMemoryUsage = plan.guestMemoryUsage
	stats.HostMemoryUsage = plan.hostMemoryUsage
	stats.UptimeSeconds = plan.uptimeSeconds
	if plan.toolsRunning {
		stats.GuestHeartbeatStatus = types.ManagedEntityStatusGreen
	}

	bootTime := time.Now().Add(-time.Duration(plan.uptimeSeconds) * time.Second)
	vm.Runtime.BootTime = &bootTime
	vm.Summary.Runtime.BootTime = &bootTime
	vm.Runtime.MaxCpuUsage = plan.numCPU * hostCoreMHz
	vm.Summary.Runtime.MaxCpuUsage = vm.Runtime.MaxCpuUsage
	vm.Runtime.MaxMemoryUsage = plan.memoryMB
	vm.Summary.Runtime.MaxMemoryUsage = plan.memoryMB
}
