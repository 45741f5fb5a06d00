package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/sluice-net/sluice/testbed/topo"
)

// The two-instance testbed: one gNB and SMF, two upf namespaces on one N3
// segment (a bridge in gnb) and one N6 segment (a bridge in dn), the DN
// routing each instance's UE pool to that instance.
//
//	gnb (br3 10.113.0.1) ──┬── n3 upf0 10.113.0.2 ── n6 10.116.0.2 ──┬── dn (br6 10.116.0.1)
//	                       └── n3 upf1 10.113.0.3 ── n6 10.116.0.3 ──┘
var (
	multiGNB = netip.MustParseAddr("10.113.0.1")
	multiDN  = netip.MustParseAddr("10.116.0.1")
)

// instance is one upf of the multi-instance testbed: what it has to
// itself, and its process.
type instance struct {
	ns        string
	n3, n6    netip.Addr
	pool      netip.Prefix
	teidFirst uint32
	teidLast  uint32
	admin     string
	cmd       *exec.Cmd
	log       *strings.Builder
	smf       *smf.Client
}

func (in *instance) config(cores int) string {
	return fmt.Sprintf(`log_level: info
admin: %s
n4:
  addresses: ["%v:8805"]
  node_id: %v
  allowed_peers: ["10.113.0.0/24"]
  heartbeat_interval: 5s
  t1: 1s
  n1: 3
interfaces:
  - {device: n3, role: n3, addresses: [%v]}
  - {device: n6, role: n6}
ue_pools: [%v]
teids: {first: %d, last: %d}
cores: [%d]
worker_nice: 0
sessions: 1024
`, in.admin, in.n3, in.n3, in.n3, in.pool, in.teidFirst, in.teidLast, cores)
}

func mustRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// multiBed brings up the namespaces and starts both upfs; everything is
// removed when the test ends.
func multiBed(t *testing.T, ctx context.Context) (gnbNS string, ins []*instance) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, starts two upfs with AF_XDP")
	}
	if testing.Short() {
		t.Skip("end-to-end tests take tens of seconds; skipped in -short")
	}
	p := fmt.Sprintf("m%d", os.Getpid()%100000)
	gnbNS, dnNS := p+"-gnb", p+"-dn"
	nss := []string{gnbNS, dnNS}
	for i := range 2 {
		ins = append(ins, &instance{
			ns: fmt.Sprintf("%s-upf%d", p, i),
			n3: netip.AddrFrom4([4]byte{10, 113, 0, byte(2 + i)}), n6: netip.AddrFrom4([4]byte{10, 116, 0, byte(2 + i)}),
			pool:      netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 45, byte(16 * i), 0}), 20),
			teidFirst: uint32(1+i) << 16, teidLast: uint32(2+i)<<16 - 1,
			admin: filepath.Join(t.TempDir(), "admin.sock"), log: &strings.Builder{},
		})
		nss = append(nss, ins[i].ns)
	}
	for _, ns := range nss {
		_ = exec.Command("ip", "netns", "del", ns).Run() // a killed run's leftovers
	}
	t.Cleanup(func() {
		for _, in := range ins {
			if in.cmd != nil && in.cmd.Process != nil {
				_ = in.cmd.Process.Signal(os.Interrupt)
				done := make(chan struct{})
				go func() { _ = in.cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = in.cmd.Process.Kill()
					<-done
				}
			}
			if in.smf != nil {
				in.smf.Close()
			}
			if t.Failed() {
				t.Logf("%s log:\n%s", in.ns, in.log.String())
			}
		}
		for _, ns := range nss {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	for _, ns := range nss {
		mustRun(t, "ip", "netns", "add", ns)
		mustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	for _, br := range []struct{ ns, name, addr string }{{gnbNS, "br3", "10.113.0.1/24"}, {dnNS, "br6", "10.116.0.1/24"}} {
		mustRun(t, "ip", "-n", br.ns, "link", "add", br.name, "type", "bridge")
		mustRun(t, "ip", "-n", br.ns, "addr", "add", br.addr, "dev", br.name)
		mustRun(t, "ip", "-n", br.ns, "link", "set", br.name, "up")
		mustRun(t, "ip", "netns", "exec", br.ns, "ethtool", "-K", br.name, "tx", "off")
	}
	for i, in := range ins {
		for _, l := range []struct{ peerNS, peer, bridge, dev string }{
			{gnbNS, fmt.Sprintf("g3%d", i), "br3", "n3"}, {dnNS, fmt.Sprintf("d6%d", i), "br6", "n6"},
		} {
			mustRun(t, "ip", "-n", l.peerNS, "link", "add", l.peer, "type", "veth", "peer", "name", l.dev, "netns", in.ns)
			mustRun(t, "ip", "-n", l.peerNS, "link", "set", l.peer, "master", l.bridge, "up")
			// AF_XDP takes frames before the kernel completes partial
			// checksums: the ends that send into upf send whole ones.
			mustRun(t, "ip", "netns", "exec", l.peerNS, "ethtool", "-K", l.peer, "tx", "off")
			mustRun(t, "ip", "-n", in.ns, "link", "set", l.dev, "up")
		}
		mustRun(t, "ip", "-n", in.ns, "addr", "add", in.n3.String()+"/24", "dev", "n3")
		mustRun(t, "ip", "-n", in.ns, "addr", "add", in.n6.String()+"/24", "dev", "n6")
		mustRun(t, "ip", "-n", in.ns, "route", "add", "default", "via", multiDN.String())
		mustRun(t, "ip", "-n", dnNS, "route", "add", in.pool.String(), "via", in.n6.String())
	}

	bin := upfBinary(t)
	cpus := runtime.NumCPU()
	for i, in := range ins {
		cfg := filepath.Join(t.TempDir(), "upf.yaml")
		if err := os.WriteFile(cfg, []byte(in.config((cpus-1-i+cpus)%cpus)), 0o644); err != nil {
			t.Fatal(err)
		}
		in.cmd = exec.Command("ip", "netns", "exec", in.ns, bin, "--config", cfg)
		in.cmd.Stdout, in.cmd.Stderr = syncWriter(in.log), syncWriter(in.log)
		if err := in.cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	// One SMF: an N4 association per instance, from the gnb namespace.
	h, err := topo.OpenNamespace(gnbNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, in := range ins {
		err := topo.InNamespace(h, func() error {
			c, err := smf.New(smf.Options{Local: netip.AddrPortFrom(multiGNB, 0), UPF: netip.AddrPortFrom(in.n3, 8805), T1: 500 * time.Millisecond, N1: 2})
			in.smf = c
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			actx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := in.smf.Associate(actx)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("associate with %s at %v: %v", in.ns, in.n3, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return gnbNS, ins
}

type lockedBuilder struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedBuilder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func syncWriter(b *strings.Builder) *lockedBuilder { return &lockedBuilder{b: b} }

// gpdu builds a G-PDU of TEID carrying an ICMP echo request from ue to
// the DN, as the gNB sends it (without Ethernet).
func gpdu(t *testing.T, teid uint32, ue netip.Addr, seq uint16) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: ue.AsSlice(), DstIP: multiDN.AsSlice()}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x5c, Seq: seq}, gopacket.Payload("two upfs"))
	if err != nil {
		t.Fatal(err)
	}
	inner := buf.Bytes()
	g := make([]byte, 8, 8+len(inner))
	g[0], g[1] = 0x30, 0xff // version 1, PT 1, G-PDU
	binary.BigEndian.PutUint16(g[2:4], uint16(len(inner)))
	binary.BigEndian.PutUint32(g[4:8], teid)
	return append(g, inner...)
}

// TestTwoInstancesOneSMF runs two upfs behind one SMF: the SMF spreads
// sessions over them by UE pool (smf.Spread, as smfctl run does with
// several --upf), each instance allocates TEIDs from its
// own range and refuses UEs of the other's pool, and pings from UEs of
// both pools cross their own instance both ways.
func TestTwoInstancesOneSMF(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gnbNS, ins := multiBed(t, ctx)

	var targets []smf.Instance
	for _, in := range ins {
		targets = append(targets, smf.Instance{Client: in.smf, Pool: in.pool})
	}
	spread, err := smf.NewSpread(targets)
	if err != nil {
		t.Fatal(err)
	}
	type est struct {
		sess    *smf.Session
		in      *instance
		gnbTEID uint32
	}
	var sessions []est
	for k := range 6 {
		teid := uint32(0x20000 + k)
		sess, j, _, err := spread.Establish(ctx, k, smf.SessionParams{GNB: multiGNB, GNBTEID: teid})
		if err != nil {
			t.Fatalf("session %d: %v", k, err)
		}
		in := ins[j]
		if !in.pool.Contains(sess.UE4) {
			t.Fatalf("session %d on %s: UE %v outside the instance's pool %v", k, in.ns, sess.UE4, in.pool)
		}
		if sess.ULTEID < in.teidFirst || sess.ULTEID > in.teidLast || sess.N3 != in.n3 {
			t.Fatalf("session %d on %s: F-TEID %#x at %v; want a TEID in [%#x, %#x] at %v", k, in.ns, sess.ULTEID, sess.N3, in.teidFirst, in.teidLast, in.n3)
		}
		sessions = append(sessions, est{sess, in, teid})
	}
	// An instance refuses a UE address of the other's pool: the SMF must
	// pick the instance by pool.
	if _, _, err := ins[1].smf.Establish(ctx, smf.SessionParams{UE4: topo.UEAddr(ins[0].pool, 100), GNB: multiGNB, GNBTEID: 0x2ffff}); !errors.Is(err, smf.ErrCause) {
		t.Fatalf("a UE of %s's pool established on %s: %v; want a rejection", ins[0].ns, ins[1].ns, err)
	}

	// The gNB: G-PDUs for every session, echo replies back in the
	// sessions' downlink tunnels.
	h, err := topo.OpenNamespace(gnbNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var conn *net.UDPConn
	if err := topo.InNamespace(h, func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(multiGNB, 2152)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	replies := map[uint32]int{} // by downlink TEID
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n < 8 || buf[1] != 0xff {
				continue
			}
			teid := binary.BigEndian.Uint32(buf[4:8])
			hl := 8
			if buf[0]&0x07 != 0 {
				hl = 12
				for next := buf[11]; next != 0 && hl < n; { // extension headers
					l := int(buf[hl]) * 4
					if l == 0 || hl+l > n {
						break
					}
					next = buf[hl+l-1]
					hl += l
				}
			}
			pkt := gopacket.NewPacket(buf[hl:n], layers.LayerTypeIPv4, gopacket.Default)
			if icmp, ok := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok && icmp.TypeCode.Type() == layers.ICMPv4TypeEchoReply {
				replies[teid]++
			}
		}
	}()
	const pings = 5
	for seq := range pings {
		for _, e := range sessions {
			if _, err := conn.WriteToUDPAddrPort(gpdu(t, e.sess.ULTEID, e.sess.UE4, uint16(seq)), netip.AddrPortFrom(e.in.n3, 2152)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	<-done // three quiet seconds after the last reply
	t.Logf("echo replies by downlink TEID: %v", replies)
	for _, e := range sessions {
		if got := replies[e.gnbTEID]; got < pings-1 {
			t.Errorf("UE %v via %s: %d of %d echo replies in downlink TEID %#x", e.sess.UE4, e.in.ns, got, pings, e.gnbTEID)
		}
	}

	// Each instance holds only its own sessions, and says so.
	for _, in := range ins {
		out, errs, err := upfCLI(t, ctx, "show", "--socket", in.admin, "sessions", "-o", "json")
		if err != nil {
			t.Fatalf("upf show on %s: %v %s", in.ns, err, errs)
		}
		var page struct {
			Sessions []struct {
				PDRs []struct {
					UE        string  `json:"ue_address"`
					LocalTEID *uint32 `json:"local_teid"`
					Packets   uint64  `json:"packets"`
				} `json:"pdrs"`
			} `json:"sessions"`
		}
		if err := json.Unmarshal([]byte(out), &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Sessions) != len(sessions)/len(ins) {
			t.Fatalf("%s holds %d sessions, want %d", in.ns, len(page.Sessions), len(sessions)/len(ins))
		}
		for _, ss := range page.Sessions {
			for _, p := range ss.PDRs {
				if ue := netip.MustParseAddr(p.UE); !in.pool.Contains(ue) || p.Packets < pings-1 {
					t.Fatalf("%s: PDR for UE %v (pool %v) counted %d packets; want its own pool and %d", in.ns, ue, in.pool, p.Packets, pings)
				}
			}
		}
	}
}
