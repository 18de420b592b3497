package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vmware/govmomi/vim25/types"
)

// readyLine is the JSON object printed on one line to stdout once the server accepts
// connections. Counts are totals over the whole estate.
type readyLine struct {
	URL          string `json:"url"`
	Port         int    `json:"port"`
	Username     string `json:"username"`
	InstanceUUID string `json:"instance_uuid"`
	// CAFile is the absolute path of the -cert-out file, omitted without -cert-out.
	CAFile      string `json:"ca_file,omitempty"`
	Datacenters int    `json:"datacenters"`
	Clusters    int    `json:"clusters"`
	Hosts       int    `json:"hosts"`
	VMs         int    `json:"vms"`
	PoweredOn   int    `json:"powered_on"`
	PoweredOff  int    `json:"powered_off"`
	Suspended   int    `json:"suspended"`
	// ToolsNotRunning counts powered-on VMs whose VMware Tools are not running.
	ToolsNotRunning int       `json:"tools_not_running"`
	AwkwardVMs      []vmEntry `json:"awkward_vms"`
	SlowVMs         []vmEntry `json:"slow_vms"`
	GuestIPVMs      []vmEntry `json:"guest_ip_vms"`
	SlowMS          int64     `json:"slow_ms"`
	StartupMS       int64     `json:"startup_ms"`
	PID             int       `json:"pid"`
}

// vmEntry identifies one VM in the ready line.
type vmEntry struct {
	Name string `json:"name"`
	// WireName is the name as vCenter returns it in the name property, with `/`, `\` and `%`
	// escaped.
	WireName     string `json:"wire_name"`
	Moref        string `json:"moref"`
	InstanceUUID string `json:"instance_uuid"`
	Host         string `json:"host"`
	PowerState   string `json:"power_state"`
	ToolsRunning bool   `json:"tools_running"`
	GuestIP      string `json:"guest_ip,omitempty"`
}

// printReadyLine writes the ready line to stdout.
func printReadyLine(opts *options, built *inventory, serviceURL *url.URL, caFile string, slowVMs []int, started time.Time) error {
	port, _ := strconv.Atoi(serviceURL.Port())
	line := readyLine{
		Port:         port,
		URL:          serviceURL.String(),
		Username:     opts.username,
		InstanceUUID: opts.instanceUUID,
		CAFile:       caFile,
		Datacenters:  len(built.plan.datacenters),
		Hosts:        len(built.plan.hosts),
		VMs:          len(built.plan.vms),
		AwkwardVMs:   []vmEntry{},
		SlowVMs:      vmEntries(built, slowVMs),
		GuestIPVMs:   vmEntries(built, guestIPOverrideIndexes(built.plan, opts.guestIPs)),
		SlowMS:       opts.slowDelay.Milliseconds(),
		StartupMS:    time.Since(started).Milliseconds(),
		PID:          os.Getpid(),
	}
	for _, clusters := range built.plan.clusters {
		line.Clusters += len(clusters)
	}
	countStates(&line, built.plan.vms)

	var awkward []int
	for i, vm := range built.plan.vms {
		if _, ok := awkwardVMNames[vm.number]; ok {
			awkward = append(awkward, i)
		}
	}
	line.AwkwardVMs = vmEntries(built, awkward)

	// Encode writes the object and a newline in one write. HTML escaping is off so names
	// such as db<1> appear as they are.
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(line); err != nil {
		return fmt.Errorf("write ready line to stdout: %w", err)
	}
	return nil
}

func countStates(line *readyLine, vms []vmPlan) {
	for _, vm := range vms {
		switch vm.powerState {
		case types.VirtualMachinePowerStatePoweredOn:
			line.PoweredOn++
			if !vm.toolsRunning {
				line.ToolsNotRunning++
			}
		case types.VirtualMachinePowerStatePoweredOff:
			line.PoweredOff++
		case types.VirtualMachinePowerStateSuspended:
			line.Suspended++
		}
	}
}

func vmEntries(built *inventory, indexes []int) []vmEntry {
	entries := []vmEntry{}
	for _, i := range indexes {
		vm := built.plan.vms[i]
		entries = append(entries, vmEntry{
			Name:         vm.displayName,
			WireName:     vm.wireName,
			Moref:        built.vms[i].Value,
			InstanceUUID: vm.instanceUUID,
			Host:         built.plan.hosts[vm.host].name,
			PowerState:   string(vm.powerState),
			ToolsRunning: vm.toolsRunning,
			GuestIP:      vm.guestIP,
		})
	}
	return entries
}

// findVM returns the index of the VM with the given display name or name as vCenter
// returns it.
func findVM(plan *estatePlan, name string) (int, bool) {
	for i, vm := range plan.vms {
		if vm.displayName == name || vm.wireName == name {
			return i, true
		}
	}
	return 0, false
}

// findVMs returns the indexes of the named VMs, without duplicates, in estate order.
func findVMs(plan *estatePlan, names []string, flagName string) ([]int, error) {
	seen := map[int]bool{}
	var indexes []int
	for _, name := range names {
		i, ok := findVM(plan, name)
		if !ok && len(plan.vms) == 0 {
			return nil, fmt.Errorf("invalid %s %q: the estate has no VMs (-vms 0)", flagName, name)
		}
		if !ok {
			return nil, fmt.Errorf("invalid %s %q: no VM has that name. Names run from %s to %s, plus the awkward names in the ready line",
				flagName, name, plan.vms[0].directory, plan.vms[len(plan.vms)-1].directory)
		}
		if !seen[i] {
			seen[i] = true
			indexes = append(indexes, i)
		}
	}
	sort.Ints(indexes)
	return indexes, nil
}

// applyGuestIPs sets the guest IP of each VM named in a -guest-ip NAME=IP value.
func applyGuestIPs(plan *estatePlan, overrides []string) error {
	for _, override := range overrides {
		separator := strings.LastIndex(override, "=")
		if separator <= 0 {
			return fmt.Errorf("invalid -guest-ip %q: use NAME=IP, for example vm-0001=127.0.0.1", override)
		}
		name, address := override[:separator], override[separator+1:]
		if net.ParseIP(address) == nil {
			return fmt.Errorf("invalid -guest-ip %q: %q is not an IP address", override, address)
		}
		indexes, err := findVMs(plan, []string{name}, "-guest-ip")
		if err != nil {
			return err
		}
		vm := &plan.vms[indexes[0]]
		if !vm.toolsRunning {
			return fmt.Errorf("invalid -guest-ip %q: VM %q is %s without VMware Tools running, so it reports no guest IP. Pick a powered-on VM with tools",
				override, name, vm.powerState)
		}
		vm.guestIP = address
	}
	return nil
}

// guestIPOverrideIndexes returns the indexes of the VMs named in -guest-ip values, which
// applyGuestIPs has already checked.
func guestIPOverrideIndexes(plan *estatePlan, overrides []string) []int {
	var names []string
	for _, override := range overrides {
		names = append(names, override[:strings.LastIndex(override, "=")])
	}
	indexes, _ := findVMs(plan, names, "-guest-ip")
	return indexes
}

// newSlowQueryPerfHandler wraps next so QueryPerf requests naming one of the slow VMs wait
// for delay first.
func newSlowQueryPerfHandler(next http.Handler, built *inventory, slowVMs []int, delay time.Duration) http.Handler {
	handler := &slowQueryPerfHandler{next: next, slowVMs: map[string]string{}, delay: delay}
	for _, i := range slowVMs {
		handler.slowVMs[built.vms[i].Value] = built.plan.vms[i].displayName
	}
	return handler
}
