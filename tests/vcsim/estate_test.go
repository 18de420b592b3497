package main

import (
	"reflect"
	"testing"

	"github.com/vmware/govmomi/vim25/types"
)

func defaultEstateConfig() estateConfig {
	cfg := estateConfig{datacenters: 1, clustersPerDatacenter: 3, hostsPerCluster: 10, vms: 1500, poweredOff: -1, noTools: -1}
	applyDefaultCounts(&cfg)
	return cfg
}

func TestPlanEstateIsDeterministic(t *testing.T) {
	first, err := planEstate(defaultEstateConfig())
	if err != nil {
		t.Fatal(err)
	}
	second, err := planEstate(defaultEstateConfig())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first, second) {
		t.Fatal("two plans from the same flags differ")
	}
}

func TestPlanEstateDefaultCounts(t *testing.T) {
	plan, err := planEstate(defaultEstateConfig())
	if err != nil {
		t.Fatal(err)
	}

	counts := map[types.VirtualMachinePowerState]int{}
	noTools := 0
	for i, vm := range plan.vms {
		counts[vm.powerState]++
		if vm.powerState == types.VirtualMachinePowerStatePoweredOn && !vm.toolsRunning {
			noTools++
		}
		offExpected := (i+1)%20 == 0
		if offExpected != (vm.powerState == types.VirtualMachinePowerStatePoweredOff) {
			t.Errorf("VM %d: power state %s, want every 20th VM powered off", vm.number, vm.powerState)
		}
	}
	if len(plan.hosts) != 30 {
		t.Errorf("hosts: got %d, want 30", len(plan.hosts))
	}
	if counts[types.VirtualMachinePowerStatePoweredOff] != 75 {
		t.Errorf("powered off: got %d, want 75", counts[types.VirtualMachinePowerStatePoweredOff])
	}
	if noTools != 142 {
		t.Errorf("powered on without tools: got %d, want 142 (10 %% of 1425)", noTools)
	}
}

func TestPlanEstateSpreadsVMsEvenly(t *testing.T) {
	cfg := estateConfig{datacenters: 2, clustersPerDatacenter: 2, hostsPerCluster: 3, vms: 101}
	plan, err := planEstate(cfg)
	if err != nil {
		t.Fatal(err)
	}

	perHost := make([]int, len(plan.hosts))
	for _, vm := range plan.vms {
		perHost[vm.host]++
	}
	for h, count := range perHost {
		if count != 8 && count != 9 {
			t.Errorf("host %s carries %d VMs, want 8 or 9", plan.hosts[h].name, count)
		}
	}
	if plan.hosts[7].name != "DC1_C0_H01" {
		t.Errorf("host 7: got %q, want DC1_C0_H01", plan.hosts[7].name)
	}
}

func TestPlanEstateStateSetsAreDisjoint(t *testing.T) {
	cfg := estateConfig{datacenters: 1, clustersPerDatacenter: 1, hostsPerCluster: 1, vms: 10, poweredOff: 3, suspended: 3, noTools: 4}
	plan, err := planEstate(cfg)
	if err != nil {
		t.Fatal(err)
	}

	counts := map[types.VirtualMachinePowerState]int{}
	noTools := 0
	for _, vm := range plan.vms {
		counts[vm.powerState]++
		if vm.powerState != types.VirtualMachinePowerStatePoweredOn && vm.toolsRunning {
			t.Errorf("VM %d is %s with tools running", vm.number, vm.powerState)
		}
		if vm.powerState == types.VirtualMachinePowerStatePoweredOn && !vm.toolsRunning {
			noTools++
		}
	}
	if counts[types.VirtualMachinePowerStatePoweredOff] != 3 {
		t.Errorf("powered off: got %d, want 3", counts[types.VirtualMachinePowerStatePoweredOff])
	}
	if counts[types.VirtualMachinePowerStateSuspended] != 3 {
		t.Errorf("suspended: got %d, want 3", counts[types.VirtualMachinePowerStateSuspended])
	}
	if noTools != 4 {
		t.Errorf("powered on without tools: got %d, want 4", noTools)
	}
}

func TestPlanEstateRejectsBadCounts(t *testing.T) {
	cases := []estateConfig{
		{datacenters: 0, clustersPerDatacenter: 1, hostsPerCluster: 1, vms: 1},
		{datacenters: 1, clustersPerDatacenter: 1, hostsPerCluster: 1, vms: -1},
		{datacenters: 1, clustersPerDatacenter: 1, hostsPerCluster: 1, vms: 4, poweredOff: 3, suspended: 2},
		{datacenters: 1, clustersPerDatacenter: 1, hostsPerCluster: 1, vms: 4, poweredOff: 2, noTools: 3},
	}
	for _, cfg := range cases {
		if _, err := planEstate(cfg); err == nil {
			t.Errorf("planEstate(%+v) succeeded, want an error", cfg)
		}
	}
}

func TestPlanVMValueRanges(t *testing.T) {
	plan, err := planEstate(defaultEstateConfig())
	if err != nil {
		t.Fatal(err)
	}

	seenCPUs := map[int32]bool{}
	withLimits := 0
	for _, vm := range plan.vms {
		seenCPUs[vm.numCPU] = true
		if vm.memoryMB < 1024 || vm.memoryMB > 16384 {
			t.Errorf("VM %d: memory %d MB outside 1024-16384", vm.number, vm.memoryMB)
		}
		if vm.cpuLimitMHz != -1 {
			withLimits++
		}
		if vm.toolsRunning && (len(vm.guestDisks) < 1 || len(vm.guestDisks) > 3) {
			t.Errorf("VM %d: %d guest disks, want 1 to 3", vm.number, len(vm.guestDisks))
		}
		for _, disk := range vm.guestDisks {
			if disk.freeSpace <= 0 || disk.freeSpace >= disk.capacity {
				t.Errorf("VM %d: disk %s free %d of %d bytes", vm.number, disk.path, disk.freeSpace, disk.capacity)
			}
		}
	}
	for _, cpus := range []int32{1, 2, 4, 8} {
		if !seenCPUs[cpus] {
			t.Errorf("no VM has %d vCPUs", cpus)
		}
	}
	if withLimits != 150 {
		t.Errorf("VMs with CPU limits: got %d, want 150", withLimits)
	}
}

func TestPlanVMNamesAndUUIDs(t *testing.T) {
	plan, err := planEstate(defaultEstateConfig())
	if err != nil {
		t.Fatal(err)
	}

	names := map[string]bool{}
	uuids := map[string]bool{}
	for _, vm := range plan.vms {
		if names[vm.displayName] {
			t.Errorf("duplicate VM name %q", vm.displayName)
		}
		if uuids[vm.instanceUUID] {
			t.Errorf("duplicate instance UUID %s", vm.instanceUUID)
		}
		names[vm.displayName] = true
		uuids[vm.instanceUUID] = true
	}
	if plan.vms[0].displayName != "vm-0001" {
		t.Errorf("first VM: got %q, want vm-0001", plan.vms[0].displayName)
	}
	if plan.vms[1].wireName != "web%2f01 & ü" {
		t.Errorf("VM 2 wire name: got %q", plan.vms[1].wireName)
	}
	if len([]rune(plan.vms[16].displayName)) != 80 {
		t.Errorf("VM 17 name has %d characters, want 80", len([]rune(plan.vms[16].displayName)))
	}
}

func TestPlanVMNamesWidenPastFourDigits(t *testing.T) {
	cfg := estateConfig{datacenters: 1, clustersPerDatacenter: 1, hostsPerCluster: 1, vms: 10000}
	plan, err := planEstate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if plan.vms[0].displayName != "vm-00001" {
		t.Errorf("first VM: got %q, want vm-00001", plan.vms[0].displayName)
	}
}

func TestEscapeEntityName(t *testing.T) {
	cases := map[string]string{
		"vm-0001":    "vm-0001",
		"web/01 & ü": "web%2f01 & ü",
		`back\slash`: "back%5cslash",
		"50%-load":   "50%25-load",
		"100%":       "100%25",
		"a%2Fb":      "a%2Fb",
		"a%25b":      "a%25b",
		"数据库-03":     "数据库-03",
	}
	for name, want := range cases {
		if got := escapeEntityName(name); got != want {
			t.Errorf("escapeEntityName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestIsQueryPerfRequest(t *testing.T) {
	cases := map[string]bool{
		`<soapenv:Body><QueryPerf xmlns="urn:vim25"><_this>x</_this></QueryPerf></soapenv:Body>`: true,
		`<Body><vim25:QueryPerf><_this>x</_this></vim25:QueryPerf></Body>`:                       true,
		`<Body><QueryPerfCounter xmlns="urn:vim25"></QueryPerfCounter></Body>`:                   false,
		`<Body><QueryPerfProviderSummary></QueryPerfProviderSummary></Body>`:                     false,
		`<Body><RetrievePropertiesEx></RetrievePropertiesEx></Body>`:                             false,
	}
	for body, want := range cases {
		if got := isQueryPerfRequest([]byte(body)); got != want {
			t.Errorf("isQueryPerfRequest(%s) = %v, want %v", body, got, want)
		}
	}
}

func TestFindSlowVMMatchesWholeID(t *testing.T) {
	handler := &slowQueryPerfHandler{slowVMs: map[string]string{"vm-42": "vm-0001"}}
	if _, ok := handler.findSlowVM([]byte(`<entity type="VirtualMachine">vm-420</entity>`)); ok {
		t.Error("vm-42 matched vm-420")
	}
	if _, ok := handler.findSlowVM([]byte(`<entity type="VirtualMachine">vm-42</entity>`)); !ok {
		t.Error("vm-42 did not match itself")
	}
}

func TestApplyGuestIPsRejectsVMWithoutTools(t *testing.T) {
	plan, err := planEstate(defaultEstateConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := applyGuestIPs(plan, []string{"vm-0020=127.0.0.1"}); err == nil {
		t.Error("guest IP for powered-off vm-0020 was accepted")
	}
	if err := applyGuestIPs(plan, []string{"web/01 & ü=127.0.0.1"}); err != nil {
		t.Errorf("guest IP for an awkward name: %v", err)
	}
	if plan.vms[1].guestIP != "127.0.0.1" {
		t.Errorf("VM 2 guest IP: got %q, want 127.0.0.1", plan.vms[1].guestIP)
	}
}

func TestCheckLoopbackAddress(t *testing.T) {
	cases := map[string]bool{
		"127.0.0.1:0":     true,
		"[::1]:8989":      true,
		"localhost:443":   true,
		"0.0.0.0:8989":    false,
		"192.168.1.1:443": false,
		"127.0.0.1":       false,
	}
	for address, valid := range cases {
		err := checkLoopbackAddress(address)
		if valid && err != nil {
			t.Errorf("checkLoopbackAddress(%q): %v", address, err)
		}
		if !valid && err == nil {
			t.Errorf("checkLoopbackAddress(%q) accepted", address)
		}
	}
}
