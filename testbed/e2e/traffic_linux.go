package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/wmnsk/go-pfcp/ie"

	"github.com/sluice-net/sluice/testbed/topo"
)

// Usage is one usage report as the SMF received it.
type Usage struct {
	URRID                   uint32
	Total, Uplink, Downlink uint64 // octets
	Packets                 uint64
	Duration                time.Duration
}

// ParseUsage decodes Usage Report IEs.
func ParseUsage(ies []*ie.IE) ([]Usage, error) {
	var out []Usage
	for _, r := range ies {
		kids, err := r.UsageReport()
		if err != nil {
			return nil, err
		}
		var u Usage
		for _, k := range kids {
			switch k.Type {
			case ie.URRID:
				u.URRID, _ = k.URRID()
			case ie.VolumeMeasurement:
				v, err := k.VolumeMeasurement()
				if err != nil {
					return nil, err
				}
				u.Total, u.Uplink, u.Downlink, u.Packets = v.TotalVolume, v.UplinkVolume, v.DownlinkVolume, v.TotalNumberOfPackets
			case ie.DurationMeasurement:
				u.Duration, _ = k.DurationMeasurement()
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// Transfer is the result of a TCP transfer with its content checked.
type Transfer struct {
	Bytes    int
	Elapsed  time.Duration
	SentHash [32]byte
	GotHash  [32]byte
}

// OK reports whether the receiver got exactly what was sent.
func (t Transfer) OK() bool { return t.SentHash == t.GotHash }

// Mbps is the transfer's goodput.
func (t Transfer) Mbps() float64 { return float64(t.Bytes) * 8 / t.Elapsed.Seconds() / 1e6 }

// TCPTransfer sends n random octets over TCP from the namespace from (bound
// to address src) to a listener in the namespace to (on dst), and hashes
// both ends. The listener is opened first, so the direction of the
// connection is from -> to.
func (b *Bed) TCPTransfer(ctx context.Context, from string, src netip.Addr, to string, dst netip.Addr, n int) (Transfer, error) {
	var res Transfer
	var ln net.Listener
	if err := b.Topo.Do(to, func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
		return err
	}); err != nil {
		return res, fmt.Errorf("listen in %s: %w", to, err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(60 * time.Second)
	}
	var wg sync.WaitGroup
	var rerr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			rerr = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			rerr = err
		}
		copy(res.GotHash[:], h.Sum(nil))
	}()
	payload := make([]byte, n)
	_, _ = rand.Read(payload)
	res.SentHash = sha256.Sum256(payload)
	res.Bytes = n
	var c net.Conn
	if err := b.Topo.Do(from, func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Deadline: deadline}
		var err error
		c, err = d.Dial("tcp", netip.AddrPortFrom(dst, uint16(port)).String())
		return err
	}); err != nil {
		ln.Close()
		wg.Wait()
		return res, fmt.Errorf("connect from %s: %w", from, err)
	}
	start := time.Now()
	_ = c.SetDeadline(deadline)
	_, werr := c.Write(payload)
	c.Close()
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res, errors.Join(werr, rerr)
}

// UDPResult is what a UDP flood offered and what arrived.
type UDPResult struct {
	Sent, Received           int // datagrams
	SentBytes, ReceivedBytes int // IP octets (payload + 28)
	Duration                 time.Duration
}

// ReceivedMbps is the rate of IP octets that arrived.
func (r UDPResult) ReceivedMbps() float64 {
	return float64(r.ReceivedBytes) * 8 / r.Duration.Seconds() / 1e6
}

// UDPFlood sends datagrams of size octets (payload) at rate bits per second
// (of IP octets) for d from src in namespace from to dst in namespace to,
// and counts what arrives there. A zero rate sends count datagrams as fast
// as the socket takes them.
func (b *Bed) UDPFlood(ctx context.Context, from string, src netip.Addr, to string, dst netip.Addr, size int, rateBPS float64, d time.Duration, count int) (UDPResult, error) {
	var res UDPResult
	var rc *net.UDPConn
	if err := b.Topo.Do(to, func() error {
		var err error
		rc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 0)))
		return err
	}); err != nil {
		return res, err
	}
	defer rc.Close()
	_ = rc.SetReadBuffer(8 << 20)
	var sc *net.UDPConn
	if err := b.Topo.Do(from, func() error {
		var err error
		sc, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), rc.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		return res, err
	}
	defer sc.Close()

	var wg sync.WaitGroup
	wg.Add(1)
	stop := make(chan struct{})
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			_ = rc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := rc.Read(buf)
			if err != nil {
				select {
				case <-stop:
					return
				default:
					continue
				}
			}
			res.Received++
			res.ReceivedBytes += n + 28
		}
	}()
	payload := make([]byte, size)
	start := time.Now()
	interval := time.Duration(0)
	if rateBPS > 0 {
		interval = time.Duration(float64(size+28) * 8 / rateBPS * 1e9)
	}
	next := start
	for i := 0; ; i++ {
		if count > 0 && i >= count || d > 0 && time.Since(start) >= d || ctx.Err() != nil {
			break
		}
		if interval > 0 {
			next = next.Add(interval)
			if w := time.Until(next); w > 0 {
				time.Sleep(w)
			}
		}
		if _, err := sc.Write(payload); err == nil {
			res.Sent++
			res.SentBytes += size + 28
		}
	}
	res.Duration = time.Since(start)
	time.Sleep(300 * time.Millisecond) // let the last datagrams arrive
	close(stop)
	wg.Wait()
	return res, nil
}

// Ping runs ping in a namespace and reports how many replies came back.
func (b *Bed) Ping(ctx context.Context, ns string, src, dst netip.Addr, count int) (int, string, error) {
	out, _ := b.Run(ctx, ns, "ping", "-n", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "1", "-I", src.String(), dst.String())
	var got int
	for _, line := range strings.Split(out, "\n") {
		var tx, rx int
		if n, _ := fmt.Sscanf(line, "%d packets transmitted, %d received", &tx, &rx); n == 2 {
			got = rx
		}
	}
	return got, out, nil
}

// namespaces, for callers that need the names.
const (
	UE  = topo.UE
	GNB = topo.GNB
	UPF = topo.UPF
	DN  = topo.DN
)
