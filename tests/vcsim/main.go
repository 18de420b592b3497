// Command vmpulse-vcsim serves a simulated vCenter with an exact, deterministic estate, the
// peer of vmpulse's integration tests. It builds on the govmomi simulator library (Debian
// package golang-github-vmware-govmomi-dev, govmomi 0.24.2).
//
// Usage:
//
//	vmpulse-vcsim -listen 127.0.0.1:0 -vms 1500 -cert-out /tmp/vcsim-ca.pem
//
// When the estate is ready it prints one JSON line to stdout (see readyLine) and serves
// until SIGINT or SIGTERM. Logs and errors go to stderr. A malformed or invalid flag exits
// with status 2. Every other error exits with status 1, including counts and VM names that
// do not fit the estate.
//
// The launcher corrects the simulator where a collector would notice (see perf.go, tls.go and
// guest.go) but leaves these differences from vCenter alone:
//
//   - Typed values, such as property values, declare the XML Schema instance namespace on
//     the element under the prefix XMLSchema-instance (XMLSchema-instance:type="xsd:string"),
//     so clients must resolve namespace prefixes instead of matching the text xsi:type.
//   - Managed object IDs come from one counter shared by all types, so VM IDs have gaps
//     (vm-47, vm-50, ...), and datastore IDs look like DC0_DS0@folder-5.
//   - Quick stats and guest data never change while the launcher runs.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// defaultInstanceUUID is ServiceContent.about.instanceUuid unless -instance-uuid is given.
const defaultInstanceUUID = "f9958083-19cc-4788-807e-57d849700fa8"

// options are the parsed command-line flags.
type options struct {
	listen       string
	estate       estateConfig
	username     string
	password     string
	certOut      string
	guestIPs     []string
	slowVMs      []string
	slowDelay    time.Duration
	instanceUUID string
}

// optionalCount is an integer flag whose default depends on other flags. The help text
// states that default, so String returns "" until the flag is set.
type optionalCount struct {
	value int
	set   bool
}

func (c *optionalCount) String() string {
	if !c.set {
		return ""
	}
	return strconv.Itoa(c.value)
}

func (c *optionalCount) Set(v string) error {
	value, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("not an integer: %q", v)
	}
	c.value, c.set = value, true
	return nil
}

// stringList is a flag that may be given several times.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	started := time.Now()
	log.SetPrefix("vmpulse-vcsim: ")
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	opts, err := parseOptions(os.Args[1:], os.Stderr)
	if err == flag.ErrHelp {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmpulse-vcsim: %v\n", err)
		os.Exit(2)
	}
	if err := run(opts, started); err != nil {
		log.Printf("error: %v", err)
		os.Exit(1)
	}
}

// parseOptions parses and checks the flags.
func parseOptions(args []string, output io.Writer) (*options, error) {
	opts := &options{}
	var guestIPs, slowVMs stringList
	var poweredOff, noTools optionalCount
	var slowMS int

	flags := flag.NewFlagSet("vmpulse-vcsim", flag.ContinueOnError)
	flags.SetOutput(output)
	flags.StringVar(&opts.listen, "listen", "127.0.0.1:0", "loopback `address` to serve on (port 0 picks a free port)")
	flags.IntVar(&opts.estate.datacenters, "datacenters", 1, "number of datacenters")
	flags.IntVar(&opts.estate.clustersPerDatacenter, "clusters", 3, "number of clusters in each datacenter")
	flags.IntVar(&opts.estate.hostsPerCluster, "hosts", 10, "number of hosts in each cluster")
	flags.IntVar(&opts.estate.vms, "vms", 1500, "total number of VMs, spread evenly over all hosts")
	flags.Var(&poweredOff, "powered-off", "power off `N` VMs (default 5 % of -vms, rounded down)")
	flags.IntVar(&opts.estate.suspended, "suspended", 0, "number of suspended VMs")
	flags.Var(&noTools, "no-tools", "stop VMware Tools on `N` powered-on VMs (default 10 % of the powered-on VMs, rounded down)")
	flags.StringVar(&opts.username, "username", "vmpulse", "the only user name that can log in")
	flags.StringVar(&opts.password, "password", "vmpulse-secret", "the only password that can log in")
	flags.StringVar(&opts.certOut, "cert-out", "", "write the CA certificate that verifies the server to this PEM `file`")
	flags.Var(&guestIPs, "guest-ip", "set guest.ipAddress of the VM NAME to IP, given as `NAME=IP` (repeatable)")
	flags.Var(&slowVMs, "slow-vm", "delay every QueryPerf request that names the VM `NAME` by -slow-ms (repeatable)")
	flags.IntVar(&slowMS, "slow-ms", 0, "delay, in milliseconds, for QueryPerf requests that name a -slow-vm")
	flags.StringVar(&opts.instanceUUID, "instance-uuid", defaultInstanceUUID, "ServiceContent.about.instanceUuid of the simulated vCenter")
	if err := flags.Parse(args); err != nil {
		return nil, err
	}
	if flags.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: all settings are flags, see -help", flags.Arg(0))
	}

	opts.guestIPs = guestIPs
	opts.slowVMs = slowVMs
	opts.slowDelay = time.Duration(slowMS) * time.Millisecond
	opts.estate.poweredOff = -1
	if poweredOff.set {
		opts.estate.poweredOff = poweredOff.value
	}
	opts.estate.noTools = -1
	if noTools.set {
		opts.estate.noTools = noTools.value
	}
	applyDefaultCounts(&opts.estate)
	return opts, checkOptions(opts, slowMS)
}

// applyDefaultCounts replaces the counts left at -1 by their documented defaults, which
// depend on -vms.
func applyDefaultCounts(cfg *estateConfig) {
	if cfg.poweredOff == -1 {
		cfg.poweredOff = cfg.vms * 5 / 100
	}
	if cfg.noTools == -1 {
		poweredOn := cfg.vms - cfg.poweredOff - cfg.suspended
		if poweredOn < 0 {
			poweredOn = 0
		}
		cfg.noTools = poweredOn * 10 / 100
	}
}

func checkOptions(opts *options, slowMS int) error {
	if err := checkLoopbackAddress(opts.listen); err != nil {
		return err
	}
	if opts.username == "" || opts.password == "" {
		return fmt.Errorf("invalid credentials: -username and -password must not be empty")
	}
	if _, err := uuid.Parse(opts.instanceUUID); err != nil {
		return fmt.Errorf("invalid -instance-uuid %q: %v", opts.instanceUUID, err)
	}
	if slowMS < 0 {
		return fmt.Errorf("invalid -slow-ms %d: the delay must not be negative", slowMS)
	}
	if len(opts.slowVMs) > 0 && slowMS == 0 {
		return fmt.Errorf("-slow-vm is set but -slow-ms is 0: give the delay in milliseconds")
	}
	return nil
}

// checkLoopbackAddress rejects listen addresses other than loopback ones, because the
// simulator accepts a fixed password and serves a certificate only for loopback names.
func checkLoopbackAddress(address string) error {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("invalid -listen %q: %v. Use HOST:PORT such as 127.0.0.1:0", address, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("invalid -listen %q: invalid port %q", address, port)
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("invalid -listen %q: only loopback addresses such as 127.0.0.1 or [::1] are served", address)
	}
	return nil
}
