// Command upf runs Sluice, a 5G user-plane function: PFCP on N4 programs the
// flow table, per-core workers forward GTP-U and IP over AF_XDP.
//
//	upf --config configs/upf.yaml        run
//	upf check --config configs/upf.yaml  validate the configuration and interfaces
//	upf check -host=false --config f     validate the file alone (CI, Helm values)
//	upf version                          print the version
//	upf show associations|sessions|session SEID|ports
//	                                     inspect a running upf (admin socket)
//	upf capture --port n3 -w file.pcapng capture a running upf's port
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/vishvananda/netlink"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "show" {
		return runShow(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "capture" {
		return runCapture(args[1:], stdout, stderr)
	}
	cmd := "run"
	if len(args) > 0 && (args[0] == "run" || args[0] == "check" || args[0] == "version") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("upf "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "configs/upf.yaml", "configuration file")
	host := fs.Bool("host", true, "check: also check this host (CPUs, N4 addresses, interfaces); -host=false checks the file alone")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "upf", versionString())
		return 0
	case "check":
		cfg, err := loadConfig(*path)
		if err == nil && *host {
			err = errors.Join(resolveCores(cfg), preflight(cfg))
		}
		if err != nil {
			fmt.Fprintf(stderr, "upf: %s: %v\n", *path, err)
			return 1
		}
		if !*host {
			fmt.Fprintf(stdout, "%s: configuration is valid (this host not checked)\n", *path)
			return 0
		}
		fmt.Fprintf(stdout, "%s: configuration and interfaces are valid\n", *path)
		return 0
	}
	cfg, err := loadConfig(*path)
	if err == nil {
		err = resolveCores(cfg)
	}
	if err == nil {
		err = preflight(cfg) // before anything starts
	}
	if err != nil {
		fmt.Fprintf(stderr, "upf: %s: %v\n", *path, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	log.Info("starting", "version", versionString(), "config", *path)
	u, err := start(cfg, log)
	if err != nil {
		log.Error("start failed; nothing left attached", "err", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	code := 0
	select {
	case s := <-sigs:
		log.Info("stopping", "signal", s.String())
	case err := <-u.errs:
		log.Error("stopping after a failure", "err", err)
		code = 1
	}
	u.stop()
	log.Info("stopped")
	return code
}

// checkInterfaces verifies that every configured device exists and is up,
// without attaching anything.
func checkInterfaces(cfg *parsed) error {
	var errs []error
	for i, in := range cfg.ifaces {
		if in.VhostUser != nil {
			errs = append(errs, in.VhostUser.check(fmt.Sprintf("interfaces[%d]", i)))
			continue
		}
		l, err := netlink.LinkByName(in.Device)
		if err != nil {
			errs = append(errs, bad(fmt.Sprintf("interfaces[%d].device", i), "%s: %v", in.Device, err))
			continue
		}
		if l.Attrs().OperState != netlink.OperUp && l.Attrs().Flags&(1<<0) == 0 {
			errs = append(errs, bad(fmt.Sprintf("interfaces[%d].device", i), "%s is down", in.Device))
		}
	}
	return errors.Join(errs...)
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		v += " " + bi.GoVersion
	}
	return v
}
