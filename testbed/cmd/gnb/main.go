// Command gnb runs Sluice's gNB user-plane emulator: UE traffic from the TUN
// device in the ue namespace is tunnelled over N3 to the UPF, and downlink
// G-PDUs are delivered back to the UEs. It runs until SIGINT or SIGTERM and
// then removes its TUN device.
//
// Sessions come from flags:
//
//	gnb -prefix sl -session 10.45.0.1,0x100            UE, uplink TEID (DL TEID allocated)
//	gnb -prefix sl -session 10.45.0.1,0x100,0x200,9    UE, UL TEID, DL TEID, QFI
//	gnb -prefix sl -ues 100 -ul-teid 0x100 -dl-teid 0x200
//	                                                   UEs 10.45.0.1.. with consecutive TEIDs
//
// and, with -control, from lines on standard input while it runs:
//
//	add UE ULTEID [DLTEID [QFI]]
//	del UE
//	stats
//	sessions
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-net/sluice/testbed/gnb"
	"github.com/sluice-net/sluice/testbed/topo"
)

type sessionList []gnb.Session

func (l *sessionList) String() string { return fmt.Sprint(*l) }

func (l *sessionList) Set(v string) error {
	s, err := parseSession(strings.Split(v, ","))
	if err != nil {
		return err
	}
	*l = append(*l, s)
	return nil
}

func parseSession(f []string) (gnb.Session, error) {
	var s gnb.Session
	if len(f) < 2 || len(f) > 4 {
		return s, errors.New("want UE,ULTEID[,DLTEID[,QFI]]")
	}
	var err error
	if s.UE, err = netip.ParseAddr(f[0]); err != nil {
		return s, err
	}
	var v uint64
	if v, err = strconv.ParseUint(f[1], 0, 32); err != nil {
		return s, fmt.Errorf("uplink TEID: %w", err)
	}
	s.ULTEID = uint32(v)
	if len(f) > 2 {
		if v, err = strconv.ParseUint(f[2], 0, 32); err != nil {
			return s, fmt.Errorf("downlink TEID: %w", err)
		}
		s.DLTEID = uint32(v)
	}
	if len(f) > 3 {
		if v, err = strconv.ParseUint(f[3], 0, 6); err != nil {
			return s, fmt.Errorf("QFI: %w", err)
		}
		s.QFI = uint8(v)
	}
	return s, nil
}

func main() {
	var (
		cfg      gnb.Config
		sessions sessionList
		prefix   = flag.String("prefix", topo.DefaultPrefix, "topology prefix: namespaces PREFIX-ue and PREFIX-gnb")
		ueNS     = flag.String("ue-ns", "", "namespace of the UEs' TUN (name or path; overrides -prefix)")
		gnbNS    = flag.String("gnb-ns", "", "namespace of the N3 socket (name or path; overrides -prefix)")
		n3       = flag.String("n3", gnb.DefaultN3Local.String(), "local N3 address:port")
		upf      = flag.String("upf", gnb.DefaultUPF.String(), "UPF N3 address:port")
		pool     = flag.String("ue-pool", topo.DefaultUEPool.String(), "pool the -ues addresses come from")
		ues      = flag.Int("ues", 0, "add this many sessions for UEs 1.. of -ue-pool")
		ulTEID   = flag.Uint("ul-teid", 1, "uplink TEID of the first -ues session; the next get +1")
		dlTEID   = flag.Uint("dl-teid", 0, "downlink TEID of the first -ues session (0: allocate)")
		qfi      = flag.Uint("qfi", gnb.DefaultQFI, "QFI of the -ues sessions")
		every    = flag.Duration("stats", 0, "print counters at this interval (0: only at exit)")
		echo     = flag.Duration("echo", 0, "send a GTP-U Echo Request to the UPF at this interval (0: never)")
		control  = flag.Bool("control", false, "read add/del/stats/sessions commands from standard input")
	)
	flag.Var(&sessions, "session", "UE,ULTEID[,DLTEID[,QFI]] (repeatable)")
	flag.StringVar(&cfg.TUNName, "tun", gnb.DefaultTUNName, "name of the UEs' TUN device")
	flag.IntVar(&cfg.MTU, "mtu", gnb.DefaultMTU, "MTU of the UEs' TUN device")
	flag.Parse()

	var err error
	if cfg.N3Local, err = netip.ParseAddrPort(*n3); err != nil {
		fatal(fmt.Errorf("-n3: %w", err))
	}
	if cfg.UPF, err = netip.ParseAddrPort(*upf); err != nil {
		fatal(fmt.Errorf("-upf: %w", err))
	}
	cfg.UENamespace, cfg.GNBNamespace = *prefix+"-"+topo.UE, *prefix+"-"+topo.GNB
	if *ueNS != "" {
		cfg.UENamespace = *ueNS
	}
	if *gnbNS != "" {
		cfg.GNBNamespace = *gnbNS
	}
	p, err := netip.ParsePrefix(*pool)
	if err != nil {
		fatal(fmt.Errorf("-ue-pool: %w", err))
	}
	for i := 0; i < *ues; i++ {
		s := gnb.Session{UE: topo.UEAddr(p, i), ULTEID: uint32(*ulTEID) + uint32(i), QFI: uint8(*qfi)}
		if *dlTEID != 0 {
			s.DLTEID = uint32(*dlTEID) + uint32(i)
		}
		if !s.UE.IsValid() {
			fatal(fmt.Errorf("-ues %d does not fit %v", *ues, p))
		}
		sessions = append(sessions, s)
	}
	cfg.Sessions = sessions

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, err := gnb.Start(cfg)
	if err != nil {
		fatal(err)
	}
	defer g.Close()
	fmt.Printf("gnb: N3 %v -> UPF %v, %d sessions on %s in %s\n", g.LocalAddr(), cfg.UPF, len(g.Sessions()), cfg.TUNName, cfg.UENamespace)
	for _, s := range g.Sessions() {
		if len(cfg.Sessions) <= 16 {
			fmt.Printf("gnb: session UE %v UL TEID %#x DL TEID %#x QFI %d\n", s.UE, s.ULTEID, s.DLTEID, s.QFI)
		}
	}
	if *control {
		go commands(g, stop)
	}
	var tick, echoTick <-chan time.Time
	if *every > 0 {
		t := time.NewTicker(*every)
		defer t.Stop()
		tick = t.C
	}
	if *echo > 0 {
		t := time.NewTicker(*echo)
		defer t.Stop()
		echoTick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			printStats(g)
			return
		case <-tick:
			printStats(g)
		case <-echoTick:
			if rtt, err := g.Echo(*echo); err != nil {
				fmt.Println("gnb:", err)
			} else {
				fmt.Printf("gnb: echo response from %v in %v\n", cfg.UPF, rtt)
			}
		}
	}
}

// commands serves the -control protocol until standard input ends, which
// stops the gNB.
func commands(g *gnb.GNB, stop func()) {
	defer stop()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "add" && len(f) >= 3:
			s, err := parseSession(f[1:])
			if err == nil {
				s, err = g.AddSession(s)
			}
			if err != nil {
				fmt.Println("error:", err)
				continue
			}
			fmt.Printf("ok %v %#x %#x %d\n", s.UE, s.ULTEID, s.DLTEID, s.QFI)
		case f[0] == "del" && len(f) == 2:
			ue, err := netip.ParseAddr(f[1])
			if err == nil {
				err = g.RemoveSession(ue)
			}
			if err != nil {
				fmt.Println("error:", err)
				continue
			}
			fmt.Println("ok")
		case f[0] == "stats":
			printStats(g)
		case f[0] == "sessions":
			for _, s := range g.Sessions() {
				fmt.Printf("%v %#x %#x %d\n", s.UE, s.ULTEID, s.DLTEID, s.QFI)
			}
			fmt.Println("ok")
		default:
			fmt.Println("error: want add UE ULTEID [DLTEID [QFI]] | del UE | stats | sessions")
		}
	}
}

func printStats(g *gnb.GNB) {
	s := g.Stats()
	fmt.Printf("gnb: UL %d pkts %d B (no session %d, send errors %d, malformed %d); DL %d pkts %d B (unknown TEID %d, no PSC %d, malformed %d, write errors %d); echo req %d resp %d; error ind %d; end markers %d\n",
		s.ULPackets, s.ULBytes, s.ULNoSession, s.ULSendErrors, s.ULMalformed,
		s.DLPackets, s.DLBytes, s.DLUnknownTEID, s.DLNoPSC, s.DLMalformed, s.DLWriteErrors,
		s.EchoRequests, s.EchoResponses, s.ErrorIndications, s.EndMarkers)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "gnb:", err)
	os.Exit(1)
}
