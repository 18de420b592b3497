package main

// These tests start the launcher as a child process (this test binary, re-executed with
// launcherEnv set) and talk to it over HTTPS with govmomi, verifying against the CA file.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const launcherEnv = "VMPULSE_VCSIM_RUN_LAUNCHER"

func TestMain(m *testing.M) {
	if os.Getenv(launcherEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// launcher is a running child launcher.
type launcher struct {
	cmd    *exec.Cmd
	ready  readyLine
	stderr *lockedBuffer
}

// lockedBuffer collects the child's stderr, which a test may read while the child runs.
type lockedBuffer struct {
	mu   sync.Mutex
	text strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.text.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.text.String()
}

// startLauncher starts the launcher with args and waits for its ready line.
func startLauncher(t *testing.T, args ...string) *launcher {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), launcherEnv+"=1")
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &launcher{cmd: cmd, stderr: stderr}
	t.Cleanup(func() { l.stop(t) })

	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	select {
	case line := <-lines:
		if err := json.Unmarshal([]byte(line), &l.ready); err != nil {
			t.Fatalf("ready line %q: %v; stderr: %s", line, err, stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no ready line after 60 s; stderr: %s", stderr)
	}
	return l
}

// stop sends SIGTERM and checks that the launcher exits cleanly.
func (l *launcher) stop(t *testing.T) {
	if l.cmd.ProcessState != nil {
		return
	}
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("send SIGTERM: %v", err)
	}
	if err := l.cmd.Wait(); err != nil {
		t.Errorf("launcher exit: %v; stderr: %s", err, l.stderr)
	}
	if !strings.Contains(l.stderr.String(), "stopped") {
		t.Errorf("launcher did not log its stop; stderr: %s", l.stderr)
	}
}

// connect returns a client verified against caFile and logged in with user and password.
func connect(ctx context.Context, t *testing.T, serviceURL, caFile, user, password string) (*vim25.Client, error) {
	t.Helper()
	u, err := soap.ParseURL(serviceURL)
	if err != nil {
		t.Fatal(err)
	}
	soapClient := soap.NewClient(u, false)
	if err := soapClient.SetRootCAs(caFile); err != nil {
		t.Fatal(err)
	}
	client, err := vim25.NewClient(ctx, soapClient)
	if err != nil {
		return nil, err
	}
	return client, session.NewManager(client).Login(ctx, url.UserPassword(user, password))
}

// retrieveVMs returns every VM with the properties the tests check.
func retrieveVMs(ctx context.Context, t *testing.T, client *vim25.Client) []mo.VirtualMachine {
	t.Helper()
	manager := view.NewManager(client)
	containerView, err := manager.CreateContainerView(ctx, client.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	var vms []mo.VirtualMachine
	properties := []string{"name", "config.instanceUuid", "config.hardware.numCPU", "config.cpuAllocation",
		"runtime.powerState", "runtime.host", "guest", "summary.quickStats", "summary.guest"}
	if err := containerView.Retrieve(ctx, []string{"VirtualMachine"}, properties, &vms); err != nil {
		t.Fatal(err)
	}
	return vms
}

func vmsByName(vms []mo.VirtualMachine) map[string]mo.VirtualMachine {
	byName := map[string]mo.VirtualMachine{}
	for _, vm := range vms {
		byName[vm.Name] = vm
	}
	return byName
}

func TestLauncherServesPlannedEstate(t *testing.T) {
	ctx := context.Background()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	l := startLauncher(t, "-vms", "60", "-datacenters", "2", "-clusters", "2", "-hosts", "3",
		"-suspended", "2", "-cert-out", caFile, "-guest-ip", "vm-0001=127.0.0.1")

	if _, err := connect(ctx, t, l.ready.URL, caFile, "vmpulse", "wrong"); !isInvalidLogin(err) {
		t.Errorf("login with a wrong password: got %v, want an InvalidLogin fault", err)
	}
	client, err := connect(ctx, t, l.ready.URL, caFile, "vmpulse", "vmpulse-secret")
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if client.ServiceContent.About.InstanceUuid != defaultInstanceUUID {
		t.Errorf("instance UUID: got %s", client.ServiceContent.About.InstanceUuid)
	}

	vms := vmsByName(retrieveVMs(ctx, t, client))
	if len(vms) != 60 || l.ready.VMs != 60 {
		t.Fatalf("VMs: got %d, ready line says %d, want 60", len(vms), l.ready.VMs)
	}
	if l.ready.Hosts != 12 || l.ready.Suspended != 2 || l.ready.PoweredOff != 3 {
		t.Errorf("ready line counts: %+v", l.ready)
	}
	for _, entry := range l.ready.AwkwardVMs {
		vm, ok := vms[entry.WireName]
		if !ok {
			t.Errorf("awkward VM %q not found by its wire name %q", entry.Name, entry.WireName)
			continue
		}
		if vm.Self.Value != entry.Moref || vm.Config.InstanceUuid != entry.InstanceUUID {
			t.Errorf("VM %q: moref %s, instance UUID %s; ready line %+v", entry.Name, vm.Self.Value, vm.Config.InstanceUuid, entry)
		}
	}
	checkToolsData(t, vms)
	checkStateCounts(t, vms, l.ready)
}

// checkStateCounts compares the power and tools states the server reports with the ready line.
func checkStateCounts(t *testing.T, vms map[string]mo.VirtualMachine, ready readyLine) {
	counts := map[types.VirtualMachinePowerState]int{}
	noTools := 0
	for name, vm := range vms {
		counts[vm.Runtime.PowerState]++
		if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			continue
		}
		if vm.Summary.QuickStats.UptimeSeconds == 0 {
			t.Errorf("powered-on VM %q has no uptime", name)
		}
		if vm.Guest.ToolsRunningStatus == "guestToolsNotRunning" {
			noTools++
			if vm.Guest.IpAddress != "" || vm.Summary.QuickStats.GuestHeartbeatStatus != types.ManagedEntityStatusGray {
				t.Errorf("VM %q without tools: IP %q, heartbeat %s", name, vm.Guest.IpAddress, vm.Summary.QuickStats.GuestHeartbeatStatus)
			}
		}
	}
	if counts[types.VirtualMachinePowerStatePoweredOn] != ready.PoweredOn {
		t.Errorf("powered on: server %d, ready line %d", counts[types.VirtualMachinePowerStatePoweredOn], ready.PoweredOn)
	}
	if counts[types.VirtualMachinePowerStateSuspended] != ready.Suspended {
		t.Errorf("suspended: server %d, ready line %d", counts[types.VirtualMachinePowerStateSuspended], ready.Suspended)
	}
	if noTools != ready.ToolsNotRunning {
		t.Errorf("powered on without tools: server %d, ready line %d", noTools, ready.ToolsNotRunning)
	}
}

func isInvalidLogin(err error) bool {
	if err == nil || !soap.IsSoapFault(err) {
		return false
	}
	_, ok := soap.ToSoapFault(err).VimFault().(types.InvalidLogin)
	return ok
}

func checkToolsData(t *testing.T, vms map[string]mo.VirtualMachine) {
	running := vms["vm-0001"]
	if running.Guest.ToolsRunningStatus != "guestToolsRunning" || running.Guest.GuestState != "running" {
		t.Errorf("vm-0001 tools: %s, guest state %s", running.Guest.ToolsRunningStatus, running.Guest.GuestState)
	}
	if running.Guest.IpAddress != "127.0.0.1" || running.Summary.Guest.IpAddress != "127.0.0.1" {
		t.Errorf("vm-0001 guest IP: %q, summary %q, want 127.0.0.1", running.Guest.IpAddress, running.Summary.Guest.IpAddress)
	}
	if len(running.Guest.Disk) == 0 || running.Guest.Disk[0].Capacity <= running.Guest.Disk[0].FreeSpace {
		t.Errorf("vm-0001 guest disks: %+v", running.Guest.Disk)
	}
	if running.Summary.QuickStats.UptimeSeconds == 0 || running.Summary.QuickStats.GuestMemoryUsage == 0 {
		t.Errorf("vm-0001 quick stats: %+v", running.Summary.QuickStats)
	}

	off := vms["vm-0020"]
	if off.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff {
		t.Errorf("vm-0020 power state: %s, want poweredOff", off.Runtime.PowerState)
	}
	if off.Guest.ToolsRunningStatus != "guestToolsNotRunning" || off.Guest.IpAddress != "" || len(off.Guest.Disk) != 0 {
		t.Errorf("vm-0020 guest: tools %s, IP %q, %d disks", off.Guest.ToolsRunningStatus, off.Guest.IpAddress, len(off.Guest.Disk))
	}

	limited := vms["vm-0015"]
	if limited.Config == nil || limited.Config.CpuAllocation == nil || *limited.Config.CpuAllocation.Reservation != 1000 {
		t.Errorf("vm-0015 CPU allocation: %+v", limited.Config.CpuAllocation)
	}
}

func TestLauncherDelaysSlowVMQueries(t *testing.T) {
	ctx := context.Background()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	l := startLauncher(t, "-vms", "30", "-clusters", "1", "-hosts", "2", "-cert-out", caFile,
		"-slow-vm", "vm-0004", "-slow-ms", "800")
	client, err := connect(ctx, t, l.ready.URL, caFile, "vmpulse", "vmpulse-secret")
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	vms := vmsByName(retrieveVMs(ctx, t, client))
	counterKey := findCounterKey(ctx, t, client, "cpu", "usage", types.PerfSummaryTypeAverage)

	counters, err := methods.QueryPerfCounter(ctx, client, &types.QueryPerfCounter{
		This: *client.ServiceContent.PerfManager, CounterId: []int32{counterKey},
	})
	if err != nil || len(counters.Returnval) != 1 || counters.Returnval[0].Key != counterKey {
		t.Errorf("QueryPerfCounter(%d): %+v, %v", counterKey, counters, err)
	}

	fast := timeQueryPerf(ctx, t, client, vms["vm-0006"].Self, counterKey)
	slow := timeQueryPerf(ctx, t, client, vms["vm-0004"].Self, counterKey)
	if fast >= 800*time.Millisecond {
		t.Errorf("QueryPerf for vm-0006 took %v, want no delay", fast)
	}
	if slow < 800*time.Millisecond {
		t.Errorf("QueryPerf for slow vm-0004 took %v, want at least 800 ms", slow)
	}

	// Powered-off VMs get no series, and a query without maxSample gets an hour of samples.
	result := queryPerf(ctx, t, client, []types.ManagedObjectReference{vms["vm-0030"].Self, vms["vm-0001"].Self}, counterKey, 0)
	if len(result) != 1 {
		t.Fatalf("QueryPerf for one powered-off and one powered-on VM returned %d entities, want 1", len(result))
	}
	metric := result[0].(*types.PerfEntityMetric)
	if len(metric.SampleInfo) != realtimeSamplesHeld {
		t.Errorf("samples without maxSample: got %d, want %d", len(metric.SampleInfo), realtimeSamplesHeld)
	}
	if !metric.SampleInfo[0].Timestamp.Before(metric.SampleInfo[1].Timestamp) {
		t.Errorf("samples are not oldest first: %v then %v", metric.SampleInfo[0].Timestamp, metric.SampleInfo[1].Timestamp)
	}
}

// findCounterKey returns the key of a counter from the perfCounter property, which is how
// vmpulse maps counter names to keys.
func findCounterKey(ctx context.Context, t *testing.T, client *vim25.Client, group, name string, rollup types.PerfSummaryType) int32 {
	t.Helper()
	var manager mo.PerformanceManager
	collector := property.DefaultCollector(client)
	if err := collector.RetrieveOne(ctx, *client.ServiceContent.PerfManager, []string{"perfCounter"}, &manager); err != nil {
		t.Fatal(err)
	}
	for _, counter := range manager.PerfCounter {
		if counter.GroupInfo.GetElementDescription().Key == group &&
			counter.NameInfo.GetElementDescription().Key == name && counter.RollupType == rollup {
			return counter.Key
		}
	}
	t.Fatalf("counter %s.%s.%s not found", group, name, rollup)
	return 0
}

func queryPerf(ctx context.Context, t *testing.T, client *vim25.Client, entities []types.ManagedObjectReference, counterKey int32, maxSample int32) []types.BasePerfEntityMetricBase {
	t.Helper()
	request := &types.QueryPerf{This: *client.ServiceContent.PerfManager}
	for _, entity := range entities {
		request.QuerySpec = append(request.QuerySpec, types.PerfQuerySpec{
			Entity:     entity,
			MaxSample:  maxSample,
			IntervalId: 20,
			MetricId:   []types.PerfMetricId{{CounterId: counterKey, Instance: ""}},
		})
	}
	response, err := methods.QueryPerf(ctx, client, request)
	if err != nil {
		t.Fatalf("QueryPerf: %v", err)
	}
	return response.Returnval
}

func timeQueryPerf(ctx context.Context, t *testing.T, client *vim25.Client, vm types.ManagedObjectReference, counterKey int32) time.Duration {
	t.Helper()
	started := time.Now()
	result := queryPerf(ctx, t, client, []types.ManagedObjectReference{vm}, counterKey, 1)
	elapsed := time.Since(started)
	if len(result) != 1 || len(result[0].(*types.PerfEntityMetric).Value) != 1 {
		t.Errorf("QueryPerf for %s: %d entities, want 1 with one series", vm.Value, len(result))
	}
	return elapsed
}

func TestLauncherRestartKeepsIDs(t *testing.T) {
	ctx := context.Background()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	first := startLauncher(t, "-vms", "50", "-clusters", "2", "-hosts", "2", "-cert-out", caFile)
	before := describeEstate(ctx, t, first.ready.URL, caFile)
	first.stop(t)

	listen := fmt.Sprintf("127.0.0.1:%d", first.ready.Port)
	second := startLauncher(t, "-vms", "50", "-clusters", "2", "-hosts", "2", "-listen", listen)
	if second.ready.URL != first.ready.URL {
		t.Fatalf("second URL %s, want %s", second.ready.URL, first.ready.URL)
	}
	// The CA file of the first start must still verify the second.
	after := describeEstate(ctx, t, second.ready.URL, caFile)
	if len(before) != 50 {
		t.Errorf("first start: %d VMs, want 50", len(before))
	}
	for name, description := range before {
		if after[name] != description {
			t.Errorf("VM %q: %s before restart, %s after", name, description, after[name])
		}
	}
}

// describeEstate returns, for each VM name, its moref, instance UUID and host moref.
func describeEstate(ctx context.Context, t *testing.T, serviceURL, caFile string) map[string]string {
	t.Helper()
	client, err := connect(ctx, t, serviceURL, caFile, "vmpulse", "vmpulse-secret")
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	described := map[string]string{}
	for _, vm := range retrieveVMs(ctx, t, client) {
		described[vm.Name] = fmt.Sprintf("%s %s %s", vm.Self.Value, vm.Config.InstanceUuid, vm.Runtime.Host.Value)
	}
	return described
}

func TestLauncherReportsBusyPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	cmd := exec.Command(os.Args[0], "-vms", "1", "-listen", busy.Addr().String())
	cmd.Env = append(os.Environ(), launcherEnv+"=1")
	output, err := cmd.CombinedOutput()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", err)
	}
	if !strings.Contains(string(output), "address already in use") {
		t.Errorf("output does not name the busy port: %s", output)
	}
}
