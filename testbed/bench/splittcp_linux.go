package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-net/sluice/testbed/e2e"
	"github.com/sluice-net/sluice/testbed/linkemu"
	"github.com/sluice-net/sluice/testbed/smf"
)

// SplitOptions configure the split-TCP benchmark.
type SplitOptions struct {
	// UPF is a built upf binary; empty builds one.
	UPF      string
	Profiles []LinkProfile
	// Reps is the number of repetitions of each transfer; Octets their
	// size.
	Reps   int
	Octets int
	// Seed seeds the links; repetition i uses Seed+i, the same for every
	// mode, so modes meet the same losses in the same repetition.
	Seed uint64
	// Timeout bounds one transfer.
	Timeout time.Duration
	// Dirs are the directions to measure: download, upload.
	Dirs []string
	Log  io.Writer
}

// The proxy profiles of the benchmark: RACK on and off, SACK on both
// legs, cubic on both, buffers for the long legs.
const splitProxyConfig = `proxy:
  max_connections: 1000
  dial_timeout: 5s
  profiles:
    accelerate:
      ue: {congestion: cubic, send_buffer: 4194304, receive_buffer: 4194304, sack: true, rack: true}
      dn: {congestion: cubic, send_buffer: 4194304, receive_buffer: 4194304, sack: true, rack: true}
    norack:
      ue: {congestion: cubic, send_buffer: 4194304, receive_buffer: 4194304, sack: true, rack: false}
      dn: {congestion: cubic, send_buffer: 4194304, receive_buffer: 4194304, sack: true, rack: false}
`

// RunSplit measures bulk TCP transfers between a UE and a server in the
// data network over the profiles' emulated paths, with and without the
// proxy (and without RACK on profiles with reordering), and returns every
// transfer. The UE and the server run Linux CUBIC.
func RunSplit(ctx context.Context, o SplitOptions) (runs []SplitRun, err error) {
	logf := func(format string, a ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", a...)
		}
	}
	bed, err := e2e.Up(ctx, e2e.Options{Prefix: "sb", UPF: o.UPF, Log: o.Log, Proxy: splitProxyConfig})
	if err != nil {
		return nil, err
	}
	defer bed.Close()
	to, from := o.Profiles[0].Internet(o.Seed)
	in, err := linkemu.InsertInternet(bed.Topo, to, from)
	if err != nil {
		return nil, fmt.Errorf("insert the Internet delay line: %w", err)
	}
	defer in.Close()
	sessions := map[string]*e2e.Session{}
	for mode, policy := range map[string]string{"plain": "", "proxy": "accelerate", "proxy-norack": "norack"} {
		s, err := bed.Establish(ctx, smf.SessionParams{ForwardingPolicy: policy})
		if err != nil {
			return nil, err
		}
		sessions[mode] = s
	}
	data := make([]byte, o.Octets)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	sum := sha256.Sum256(data)
	dl, up, err := splitServers(in, data)
	if err != nil {
		return nil, err
	}
	defer dl.Close()
	defer up.Close()

	for _, p := range o.Profiles {
		modes := []string{"plain", "proxy"}
		if p.RadioReorder > 0 {
			modes = append(modes, "proxy-norack")
		}
		logf("profile %s", p)
		for rep := 0; rep < o.Reps; rep++ {
			for _, dir := range o.Dirs {
				for _, mode := range modes {
					seed := o.Seed + uint64(rep)
					bed.GNB.SetRadio(p.Radio(seed))
					ts, fs := p.Internet(seed)
					in.Bridge.AB.Set(ts)
					in.Bridge.BA.Set(fs)
					time.Sleep(50 * time.Millisecond)
					r0, _ := relayedCount(bed)
					r := SplitRun{Profile: p.Name, Mode: mode, Dir: dir, Rep: rep, Octets: o.Octets}
					tctx, cancel := context.WithTimeout(ctx, o.Timeout)
					ue := sessions[mode].UE4
					var got [32]byte
					var terr error
					if dir == "download" {
						var n int64
						got, n, r.Elapsed, terr = bed.Download(tctx, ue, dl.Addr, "cubic")
						if terr == nil && n != int64(o.Octets) {
							terr = fmt.Errorf("%d of %d octets", n, o.Octets)
						}
					} else {
						got, r.Elapsed, terr = bed.Upload(tctx, ue, up.Addr, data, "cubic")
					}
					cancel()
					r.OK = terr == nil && got == sum
					if terr != nil {
						r.Err = terr.Error()
					} else if got != sum {
						r.Err = "content differs"
					}
					r.RadioUL, r.RadioDL = bed.GNB.RadioStats()
					if r1, err := relayedCount(bed); err == nil {
						r.Relayed = r1 > r0
					}
					logf("  %s rep %d %-12s %-8s %7.2f Mbit/s %8v relayed=%v %s", p.Name, rep, mode, dir, r.Mbps(), r.Elapsed.Round(time.Millisecond), r.Relayed, r.Err)
					runs = append(runs, r)
					if err := ctx.Err(); err != nil {
						return runs, err
					}
				}
			}
		}
	}
	bed.GNB.SetRadio(nil)
	return runs, nil
}

func relayedCount(b *e2e.Bed) (float64, error) {
	m, err := b.Metrics()
	if err != nil {
		return 0, err
	}
	return m[`sluice_proxy_connections_total{outcome="relayed"}`], nil
}

// splitServer serves connections in the servers' namespace.
type splitServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	Addr netip.AddrPort
}

func (s *splitServer) Close() {
	s.ln.Close()
	s.wg.Wait()
}

// splitServers starts a download server (sends data, closes) and an upload
// server (reads to the FIN, answers the SHA-256) in the servers'
// namespace.
func splitServers(in *linkemu.Internet, data []byte) (dl, up *splitServer, err error) {
	serve := func(port uint16, h func(net.Conn)) (*splitServer, error) {
		s := &splitServer{Addr: netip.AddrPortFrom(in.Addr(), port)}
		if err := in.Do(func() error {
			lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error { return e2e.SetCongestion(rc, "cubic") }}
			var err error
			s.ln, err = lc.Listen(context.Background(), "tcp", s.Addr.String())
			return err
		}); err != nil {
			return nil, err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				c, err := s.ln.Accept()
				if err != nil {
					return
				}
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					defer c.Close()
					if rc, err := c.(*net.TCPConn).SyscallConn(); err == nil {
						_ = e2e.SetCongestion(rc, "cubic")
					}
					_ = c.SetDeadline(time.Now().Add(10 * time.Minute))
					h(c)
				}()
			}
		}()
		return s, nil
	}
	dl, err = serve(8080, func(c net.Conn) { _, _ = c.Write(data) })
	if err != nil {
		return nil, nil, err
	}
	up, err = serve(8081, func(c net.Conn) {
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			return
		}
		_, _ = c.Write(h.Sum(nil))
	})
	if err != nil {
		dl.Close()
		return nil, nil, err
	}
	return dl, up, nil
}
