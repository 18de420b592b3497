package main

// The simulator's QueryPerf (simulator/performance_manager.go in govmomi 0.24.2) serves a
// canned series of 100 values per counter and entity type, shifted by the query's start
// time and given 20 % Gaussian noise on every call. The same series serves every VM and
// every instance ("", "*", "0", "vmnic0"), and counters without canned data return zeros.
// Of the 92 counters QueryAvailablePerfMetric lists for a VM, 51 return non-zero values,
// among them cpu.usage.average, cpu.ready.summation, mem.usage.average, mem.active.average,
// mem.consumed.average, net.usage.average, sys.uptime.latest and virtualDisk.write.average.
// disk.maxTotalLatency.latest, virtualDisk.read.average and all datastore.* counters return
// only zeros.
//
// It also differs from vCenter in ways a collector notices, which perfManager corrects:
//
//   - A query spec without maxSample gets no samples, because the simulator caps the count at
//     maxSample. perfManager uses 180, the hour of 20-second samples vCenter holds.
//   - Samples come newest first. vCenter returns them oldest first, so perfManager reverses them.
//   - Without endTime the samples end at the current instant. perfManager ends them on the last
//     20-second boundary, like vCenter's realtime samples.
//   - A VM that is not powered on still gets samples. perfManager leaves such specs out.
//     NOTE: vCenter has no realtime samples for such a VM, but whether it then omits the
//     entity or returns it without samples was not checked against a real vCenter.
//   - A VM that does not exist still gets samples. perfManager returns ManagedObjectNotFound.
//
// The simulator's QueryPerfCounter dereferences a nil response and panics, so the client sees
// the connection close. perfManager returns the entries of the perfCounter table instead.
//
// Counter keys come from the simulator's vCenter 6.5 table, where cpu.usage.average is 2 and
// mem.usage.average is 24. Clients should map names to keys through the perfCounter property.

import (
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	realtimeInterval    = 20 * time.Second
	realtimeSamplesHeld = 180
)

// perfManager is the simulator's PerformanceManager with corrected QueryPerf and
// QueryPerfCounter methods. It embeds
// the simulator type by value because the property collector finds the managed object
// through the first field of each registry object.
type perfManager struct {
	simulator.PerformanceManager
	countersByKey map[int32]types.PerfCounterInfo
}

// installPerfManager replaces the registry object at ref with a perfManager.
func installPerfManager(ref types.ManagedObjectReference) {
	original := simulator.Map.Get(ref).(*simulator.PerformanceManager)
	manager := &perfManager{
		PerformanceManager: *original,
		countersByKey:      map[int32]types.PerfCounterInfo{},
	}
	for _, counter := range original.PerfCounter {
		manager.countersByKey[counter.Key] = counter
	}
	simulator.Map.Put(manager)
}

// QueryPerfCounter returns the counters with the given keys, or an InvalidArgument fault
// when a key is unknown.
func (p *perfManager) QueryPerfCounter(req *types.QueryPerfCounter) soap.HasFault {
	body := &methods.QueryPerfCounterBody{Req: req, Res: &types.QueryPerfCounterResponse{}}
	for _, key := range req.CounterId {
		counter, ok := p.countersByKey[key]
		if !ok {
			body.Fault_ = simulator.Fault("", &types.InvalidArgument{InvalidProperty: "counterId"})
			return body
		}
		body.Res.Returnval = append(body.Res.Returnval, counter)
	}
	return body
}

// QueryPerf returns samples from the simulator's QueryPerf with the corrections listed in
// the file comment.
func (p *perfManager) QueryPerf(ctx *simulator.Context, req *types.QueryPerf) soap.HasFault {
	end := time.Now().Truncate(realtimeInterval)
	query := *req
	query.QuerySpec = nil

	for _, spec := range req.QuerySpec {
		entity := ctx.Map.Get(spec.Entity)
		if entity == nil {
			return &methods.QueryPerfBody{
				Fault_: simulator.Fault("", &types.ManagedObjectNotFound{Obj: spec.Entity}),
			}
		}
		if vm, ok := entity.(*simulator.VirtualMachine); ok && !isPoweredOn(ctx, vm) {
			continue
		}
		if spec.MaxSample <= 0 {
			spec.MaxSample = realtimeSamplesHeld
		}
		if spec.EndTime == nil {
			specEnd := end
			spec.EndTime = &specEnd
		}
		query.QuerySpec = append(query.QuerySpec, spec)
	}

	body := p.PerformanceManager.QueryPerf(ctx, &query).(*methods.QueryPerfBody)
	body.Req = req
	if body.Fault_ != nil {
		return body
	}
	for _, result := range body.Res.Returnval {
		if metric, ok := result.(*types.PerfEntityMetric); ok {
			sortOldestFirst(metric)
		}
	}
	return body
}

func isPoweredOn(ctx *simulator.Context, vm *simulator.VirtualMachine) bool {
	var state types.VirtualMachinePowerState
	ctx.WithLock(vm, func() {
		state = vm.Runtime.PowerState
	})
	return state == types.VirtualMachinePowerStatePoweredOn
}

// sortOldestFirst reverses the samples and every series of metric, which the simulator
// builds newest first.
func sortOldestFirst(metric *types.PerfEntityMetric) {
	info := metric.SampleInfo
	for i, j := 0, len(info)-1; i < j; i, j = i+1, j-1 {
		info[i], info[j] = info[j], info[i]
	}
	for _, series := range metric.Value {
		ints, ok := series.(*types.PerfMetricIntSeries)
		if !ok {
			continue
		}
		values := ints.Value
		for i, j := 0, len(values)-1; i < j; i, j = i+1, j-1 {
			values[i], values[j] = values[j], values[i]
		}
	}
}
