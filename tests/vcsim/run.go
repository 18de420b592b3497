package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
)

// shutdownTimeout bounds how long requests in flight, including delayed QueryPerf
// requests, may take to finish after SIGINT or SIGTERM.
const shutdownTimeout = 5 * time.Second

// run builds the estate, serves it until SIGINT or SIGTERM and cleans up. A signal that
// arrives while the estate is being built stops the build and cleans up as well.
func run(opts *options, started time.Time) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()

	plan, slowVMs, err := planEstateWithOverrides(opts)
	if err != nil {
		return err
	}

	listener, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return fmt.Errorf("listen on %s failed: %w. Stop the process that uses the port or pass -listen 127.0.0.1:0", opts.listen, err)
	}
	defer listener.Close()

	certificates, err := newTestCertificates()
	if err != nil {
		return err
	}
	caFile, err := writeCAFileIfRequested(certificates, opts.certOut)
	if err != nil {
		return err
	}

	restoreDirectory, err := enterWorkingDirectory()
	if err != nil {
		return err
	}
	defer restoreDirectory()

	model, built, err := buildModel(ctx, opts, plan)
	if err != nil {
		return err
	}
	defer model.Remove()

	serviceURL := &url.URL{Scheme: "https", Host: listener.Addr().String(), Path: "/sdk"}
	handler := simulatorHandler(model.Service, certificates.serverTLSConfig(), opts, serviceURL)
	server := &http.Server{
		Handler:  newSlowQueryPerfHandler(handler, built, slowVMs, opts.slowDelay),
		ErrorLog: log.Default(),
	}
	served := make(chan error, 1)
	go func() { served <- server.Serve(tls.NewListener(listener, certificates.serverTLSConfig())) }()

	if err := printReadyLine(opts, built, serviceURL, caFile, slowVMs, started); err != nil {
		return err
	}
	log.Printf("serving %d VMs at %s", len(plan.vms), serviceURL)
	return serveUntilSignal(ctx, server, served)
}

// planEstateWithOverrides plans the estate, applies the -guest-ip values and returns the
// indexes of the -slow-vm VMs.
func planEstateWithOverrides(opts *options) (*estatePlan, []int, error) {
	plan, err := planEstate(opts.estate)
	if err != nil {
		return nil, nil, err
	}
	if err := applyGuestIPs(plan, opts.guestIPs); err != nil {
		return nil, nil, err
	}
	slowVMs, err := findVMs(plan, opts.slowVMs, "-slow-vm")
	if err != nil {
		return nil, nil, err
	}
	return plan, slowVMs, nil
}

// writeCAFileIfRequested writes the CA certificate to path, if set, and returns its
// absolute path, which stays valid after the launcher changes its working directory.
func writeCAFileIfRequested(certificates *testCertificates, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	absolute, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("invalid -cert-out %q: %w", path, err)
	}
	if err := certificates.writeCAFile(absolute); err != nil {
		return "", err
	}
	return absolute, nil
}

// enterWorkingDirectory changes to a new temporary directory that holds the datastores and
// returns a function that changes back and removes it.
func enterWorkingDirectory() (func(), error) {
	previous, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("read working directory: %w", err)
	}
	directory, err := makeDatastoreDirectory()
	if err != nil {
		return nil, fmt.Errorf("create datastore directory: %w", err)
	}
	if err := os.Chdir(directory); err != nil {
		os.RemoveAll(directory)
		return nil, fmt.Errorf("enter datastore directory %s: %w", directory, err)
	}
	return func() {
		if err := os.Chdir(previous); err != nil {
			log.Printf("return to %s failed: %v", previous, err)
		}
		if err := os.RemoveAll(directory); err != nil {
			log.Printf("remove datastore directory %s failed: %v", directory, err)
		}
	}, nil
}

// makeDatastoreDirectory creates the temporary working directory in $TMPDIR when it is set,
// else in /dev/shm when that is a writable directory, else in the system's temporary
// directory. The simulator writes five files per VM (about 300 bytes in all) and appends
// to a VM's log on each power operation. On a disk busy with a Rust build, 1,500 VMs took
// 7.7 s to start against 2.3 s in memory-backed /dev/shm (one run on a 2-core VM).
func makeDatastoreDirectory() (string, error) {
	const pattern = "vmpulse-vcsim-"
	if os.Getenv("TMPDIR") == "" {
		if directory, err := os.MkdirTemp("/dev/shm", pattern); err == nil {
			return directory, nil
		}
	}
	return os.MkdirTemp("", pattern)
}

// buildModel creates the simulator with an empty vCenter inventory, then the planned estate.
func buildModel(ctx context.Context, opts *options, plan *estatePlan) (*simulator.Model, *inventory, error) {
	model := simulator.VPX()
	model.Datacenter = 0
	model.Portgroup = 0
	model.Host = 0
	model.Cluster = 0
	model.ClusterHost = 0
	model.Datastore = 0
	model.Machine = 0
	model.ServiceContent.About.InstanceUuid = opts.instanceUUID
	if err := model.Create(); err != nil {
		return nil, nil, fmt.Errorf("create simulator model: %w", err)
	}

	client, err := vim25.NewClient(ctx, model.Service)
	if err != nil {
		model.Remove()
		return nil, nil, fmt.Errorf("connect to the simulator in process: %w", err)
	}
	built, err := buildInventory(ctx, client, plan)
	if err != nil {
		model.Remove()
		return nil, nil, err
	}
	installPerfManager(*client.ServiceContent.PerfManager)
	return model, built, nil
}

// simulatorHandler returns the simulator's HTTP handler, set up for clients that reach it
// at serviceURL. The simulator's NewServer always starts its own listener, with no way to
// wrap its handler or to report a busy port other than by panicking. So the launcher
// lets it listen on a free loopback port, closes that server, serves its handler on the
// launcher's own listener and points the URLs the simulator advertises at that listener.
func simulatorHandler(service *simulator.Service, tlsConfig *tls.Config, opts *options, serviceURL *url.URL) http.Handler {
	// A user in Listen makes the simulator accept only that user name and password.
	service.Listen = &url.URL{User: url.UserPassword(opts.username, opts.password)}
	service.TLS = tlsConfig
	internal := service.NewServer()
	handler := internal.Config.Handler
	internalHost := internal.URL.Host
	internal.Close()

	service.Listen.Host = serviceURL.Host
	simulator.Map.SessionManager().ServiceHostName = serviceURL.Host
	for _, setting := range simulator.Map.OptionManager().Setting {
		option := setting.GetOptionValue()
		if value, ok := option.Value.(string); ok && strings.Contains(value, internalHost) {
			option.Value = strings.ReplaceAll(value, internalHost, serviceURL.Host)
		}
	}
	return handler
}

// serveUntilSignal waits until ctx ends with SIGINT or SIGTERM, or the server fails, then
// shuts the server down, letting requests in flight finish for up to shutdownTimeout.
func serveUntilSignal(ctx context.Context, server *http.Server, served <-chan error) error {
	select {
	case err := <-served:
		return fmt.Errorf("serving failed: %w", err)
	case <-ctx.Done():
		log.Printf("received SIGINT or SIGTERM, shutting down")
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		log.Printf("requests still running after %v, closing their connections: %v", shutdownTimeout, err)
		server.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving failed: %w", err)
	}
	log.Printf("stopped")
	return nil
}
