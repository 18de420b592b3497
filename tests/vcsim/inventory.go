package main

// The inventory is created through the simulator's own SOAP methods, in process, one call
// at a time in plan order. The simulator numbers managed object IDs from one global
// counter (simulator/registry.go), so the same plan yields the same IDs on every start.
// Datastore IDs are the exception to the counter: the simulator uses the datastore path
// plus "@" and the datastore folder ID, so the launcher passes a relative path
// (DC0_DS0) resolved against its private working directory, which keeps that ID stable too.

import (
	"context"
	"fmt"
	"os"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

// inventory is the created estate: the plan and the managed object IDs of its hosts and VMs,
// index for index.
type inventory struct {
	plan  *estatePlan
	hosts []types.ManagedObjectReference
	vms   []types.ManagedObjectReference
}

// datacenterObjects are the objects VM creation needs in one datacenter.
type datacenterObjects struct {
	vmFolder *object.Folder
	// pools holds the root resource pool of each cluster.
	pools []*object.ResourcePool
}

// buildInventory creates the datacenters, clusters, hosts, datastores and VMs of plan and
// fills the guest data of every VM. It must run in the working directory that holds the
// datastore directories, before the server accepts connections. It stops early when ctx
// ends.
func buildInventory(ctx context.Context, client *vim25.Client, plan *estatePlan) (*inventory, error) {
	built := &inventory{plan: plan}
	root := object.NewRootFolder(client)

	var datacenters []datacenterObjects
	for d, name := range plan.datacenters {
		objects, err := buildDatacenter(ctx, root, plan, d, name, built)
		if err != nil {
			return nil, err
		}
		datacenters = append(datacenters, objects)
	}

	for _, vm := range plan.vms {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("estate build stopped after %d of %d VMs by SIGINT or SIGTERM", len(built.vms), len(plan.vms))
		}
		host := plan.hosts[vm.host]
		objects := datacenters[host.datacenter]
		ref, err := createVM(ctx, client, vm, host, objects, built.hosts[vm.host])
		if err != nil {
			return nil, err
		}
		built.vms = append(built.vms, ref)
	}
	return built, nil
}

// buildDatacenter creates datacenter d with its clusters, hosts and local datastore.
func buildDatacenter(ctx context.Context, root *object.Folder, plan *estatePlan, d int, name string, built *inventory) (datacenterObjects, error) {
	var objects datacenterObjects

	datacenter, err := root.CreateDatacenter(ctx, name)
	if err != nil {
		return objects, fmt.Errorf("create datacenter %s: %w", name, err)
	}
	folders, err := datacenter.Folders(ctx)
	if err != nil {
		return objects, fmt.Errorf("read folders of datacenter %s: %w", name, err)
	}
	objects.vmFolder = folders.VmFolder

	var hosts []*object.HostSystem
	for c, clusterName := range plan.clusters[d] {
		cluster, err := folders.HostFolder.CreateCluster(ctx, clusterName, types.ClusterConfigSpecEx{})
		if err != nil {
			return objects, fmt.Errorf("create cluster %s: %w", clusterName, err)
		}
		for _, host := range plan.hosts {
			if host.datacenter != d || host.cluster != c {
				continue
			}
			ref, err := addHost(ctx, cluster, host.name)
			if err != nil {
				return objects, err
			}
			built.hosts = append(built.hosts, ref)
			hosts = append(hosts, object.NewHostSystem(root.Client(), ref))
		}
		pool, err := cluster.ResourcePool(ctx)
		if err != nil {
			return objects, fmt.Errorf("read resource pool of cluster %s: %w", clusterName, err)
		}
		objects.pools = append(objects.pools, pool)
	}

	return objects, createLocalDatastore(ctx, datastoreName(d), hosts)
}

func addHost(ctx context.Context, cluster *object.ClusterComputeResource, name string) (types.ManagedObjectReference, error) {
	task, err := cluster.AddHost(ctx, types.HostConnectSpec{HostName: name}, true, nil, nil)
	if err != nil {
		return types.ManagedObjectReference{}, fmt.Errorf("add host %s: %w", name, err)
	}
	result, err := taskResult(task.Reference())
	if err != nil {
		return types.ManagedObjectReference{}, fmt.Errorf("add host %s: %w", name, err)
	}
	return result.(types.ManagedObjectReference), nil
}

// createLocalDatastore mounts the directory name, relative to the working directory, as a
// datastore called name on every host, as the simulator's Model does for its LocalDS_0.
func createLocalDatastore(ctx context.Context, name string, hosts []*object.HostSystem) error {
	if err := os.Mkdir(name, 0o700); err != nil {
		return fmt.Errorf("create directory of datastore %s: %w", name, err)
	}
	for _, host := range hosts {
		system, err := host.ConfigManager().DatastoreSystem(ctx)
		if err != nil {
			return fmt.Errorf("find datastore system of host %s: %w", host.Reference().Value, err)
		}
		if _, err := system.CreateLocalDatastore(ctx, name, name); err != nil {
			return fmt.Errorf("mount datastore %s on host %s: %w", name, host.Reference().Value, err)
		}
	}
	return nil
}

// createVM creates one VM on its planned host, sets its power state and fills its guest data.
func createVM(ctx context.Context, client *vim25.Client, vm vmPlan, host hostPlan, objects datacenterObjects, hostRef types.ManagedObjectReference) (types.ManagedObjectReference, error) {
	var ref types.ManagedObjectReference

	spec := vmConfigSpec(vm, datastoreName(host.datacenter))
	pool := objects.pools[host.cluster]
	task, err := objects.vmFolder.CreateVM(ctx, spec, pool, object.NewHostSystem(client, hostRef))
	if err != nil {
		return ref, fmt.Errorf("create VM %q: %w", vm.displayName, err)
	}
	result, err := taskResult(task.Reference())
	if err != nil {
		return ref, fmt.Errorf("create VM %q: %w", vm.displayName, err)
	}
	ref = result.(types.ManagedObjectReference)

	if err := setPowerState(ctx, object.NewVirtualMachine(client, ref), vm.powerState); err != nil {
		return ref, fmt.Errorf("set power state of VM %q: %w", vm.displayName, err)
	}
	simulated, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return ref, fmt.Errorf("VM %q (%s) not found in the simulator after creation", vm.displayName, ref.Value)
	}
	applyGuestState(simulated, vm)
	return ref, nil
}

// vmConfigSpec returns the creation spec of vm: its files go to a directory named after the
// default VM name, so awkward names never become paths.
func vmConfigSpec(vm vmPlan, datastore string) types.VirtualMachineConfigSpec {
	vmx := fmt.Sprintf("[%s] %s/%s.vmx", datastore, vm.directory, vm.directory)
	reservation := vm.cpuReservationMHz
	limit := vm.cpuLimitMHz

	var devices object.VirtualDeviceList
	controller, _ := devices.CreateSCSIController("pvscsi")
	diskPath := fmt.Sprintf("[%s] %s/%s.vmdk", datastore, vm.directory, vm.directory)
	disk := devices.CreateDisk(controller.(types.BaseVirtualController), types.ManagedObjectReference{}, diskPath)
	disk.CapacityInKB = vm.diskCapacityKB
	nic := esx.EthernetCard
	devices = append(devices, controller, disk, &nic)
	deviceChange, _ := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)

	return types.VirtualMachineConfigSpec{
		Name:              vm.wireName,
		GuestId:           string(vm.guestOS.id),
		NumCPUs:           vm.numCPU,
		NumCoresPerSocket: 1,
		MemoryMB:          int64(vm.memoryMB),
		Uuid:              vm.biosUUID,
		InstanceUuid:      vm.instanceUUID,
		Files:             &types.VirtualMachineFileInfo{VmPathName: vmx},
		CpuAllocation: &types.ResourceAllocationInfo{
			Reservation:           &reservation,
			ExpandableReservation: types.NewBool(false),
			Limit:                 &limit,
			Shares:                &types.SharesInfo{Level: types.SharesLevelNormal, Shares: 1000 * vm.numCPU},
		},
		DeviceChange: deviceChange,
	}
}

// setPowerState powers on a VM that should run or be suspended, and suspends the latter.
// New VMs start powered off.
func setPowerState(ctx context.Context, vm *object.VirtualMachine, state types.VirtualMachinePowerState) error {
	if state == types.VirtualMachinePowerStatePoweredOff {
		return nil
	}
	task, err := vm.PowerOn(ctx)
	if err == nil {
		_, err = taskResult(task.Reference())
	}
	if err != nil || state != types.VirtualMachinePowerStateSuspended {
		return err
	}
	task, err = vm.Suspend(ctx)
	if err == nil {
		_, err = taskResult(task.Reference())
	}
	return err
}

// taskResult returns the result of a finished simulator task. Simulator tasks run to the
// end inside the call that starts them, so reading the task object avoids a property
// collector round trip per task.
func taskResult(ref types.ManagedObjectReference) (types.AnyType, error) {
	task, ok := simulator.Map.Get(ref).(*simulator.Task)
	if !ok {
		return nil, fmt.Errorf("task %s not found in the simulator", ref.Value)
	}
	info := task.Info
	// A finished setup task is of no use to clients, and 10,000 VMs leave 20,000 of them.
	simulator.Map.Remove(ref)
	if info.State == types.TaskInfoStateSuccess {
		return info.Result, nil
	}
	if info.Error != nil {
		return nil, fmt.Errorf("task %s (%s) failed: %s", ref.Value, info.Name, info.Error.LocalizedMessage)
	}
	return nil, fmt.Errorf("task %s (%s) ended in state %s", ref.Value, info.Name, info.State)
}
