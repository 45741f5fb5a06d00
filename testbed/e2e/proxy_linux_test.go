package e2e

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
)

// proxyBed is a bed whose upf runs the proxy profile ProxyPolicy.
func proxyBed(t *testing.T) *Bed {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, starts upf with AF_XDP")
	}
	if testing.Short() {
		t.Skip("end-to-end tests take tens of seconds; skipped in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log strings.Builder
	b, err := Up(ctx, Options{Prefix: fmt.Sprintf("px%d", os.Getpid()%100000), UPF: upfBinary(t), Log: &log, Proxy: ProxyConfig})
	if err != nil {
		t.Fatalf("testbed: %v\n%s", err, log.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("upf log:\n%s", b.UPFLog())
		}
		b.Close()
	})
	return b
}

// proxyMetric reads one of the proxy's metrics.
func proxyMetric(t *testing.T, b *Bed, key string) float64 {
	t.Helper()
	m, err := b.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := m[key]
	if !ok {
		t.Fatalf("metric %s missing", key)
	}
	return v
}

const relayed = `sluice_proxy_connections_total{outcome="relayed"}`

// TestProxy runs the split-TCP proxy end to end: sessions whose FARs name
// the forwarding policy have their TCP relayed through upf's proxy,
// others not; content, refusal, half-close, many connections, session
// deletion and usage accounting as an operator would check them.
func TestProxy(t *testing.T) {
	b := proxyBed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	proxied, err := b.Establish(ctx, smf.SessionParams{ForwardingPolicy: ProxyPolicy})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := b.Establish(ctx, smf.SessionParams{})
	if err != nil {
		t.Fatal(err)
	}
	any := netip.AddrPortFrom(DNAddr, 0)

	// First, while nothing else runs: the URRs count the UE's leg, as the
	// gNB sees it, to the octet.
	t.Run("usage", func(t *testing.T) {
		s, err := b.Establish(ctx, smf.SessionParams{ForwardingPolicy: ProxyPolicy, URRs: []smf.URR{{ID: 7}}})
		if err != nil {
			t.Fatal(err)
		}
		data, sum := Payload(1<<20, 1)
		dl, err := b.Serve("dn", any, ServeDownload(data, 20*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer dl.Close()
		up, err := b.Serve("dn", any, ServeHash(20*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer up.Close()
		before := b.GNB.Stats()
		r0 := proxyMetric(t, b, relayed)
		if got, _, _, err := b.Download(ctx, s.UE4, dl.Addr, ""); err != nil || got != sum {
			t.Fatalf("download: %v, hash matches: %v", err, got == sum)
		}
		if got, _, err := b.Upload(ctx, s.UE4, up.Addr, data[:256<<10], ""); err != nil || got != sha256.Sum256(data[:256<<10]) {
			t.Fatalf("upload: %v", err)
		}
		if r := proxyMetric(t, b, relayed) - r0; r != 2 {
			t.Fatalf("proxy relayed %v connections, want 2", r)
		}
		// The content checks above passed through the proxy's
		// segmentation of its stacks' offloaded packets.
		if pk, sg, dr := proxyMetric(t, b, `sluice_proxy_offload_total{result="packets"}`), proxyMetric(t, b, `sluice_proxy_offload_total{result="segments"}`),
			proxyMetric(t, b, `sluice_proxy_offload_total{result="dropped"}`); pk == 0 || sg <= pk || dr != 0 {
			t.Errorf("offload: %v packets cut into %v segments, %v dropped; want packets of several segments, none dropped", pk, sg, dr)
		}
		time.Sleep(500 * time.Millisecond) // the last ACKs and FINs
		after := b.GNB.Stats()
		usage, err := b.Delete(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		var u *Usage
		for i := range usage {
			if usage[i].URRID == 7 {
				u = &usage[i]
			}
		}
		ul, dlb := after.ULBytes-before.ULBytes, after.DLBytes-before.DLBytes
		if u == nil || u.Uplink != ul || u.Downlink != dlb {
			t.Fatalf("URR usage %+v; the gNB sent %d and delivered %d octets of the UE's packets", u, ul, dlb)
		}
		t.Logf("URR: %d octets up, %d down, equal to the gNB's counts", u.Uplink, u.Downlink)
	})

	t.Run("download and upload beside an unproxied session", func(t *testing.T) {
		data, sum := Payload(8<<20, 2)
		dl, err := b.Serve("dn", any, ServeDownload(data, 60*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer dl.Close()
		up, err := b.Serve("dn", any, ServeHash(60*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer up.Close()
		r0 := proxyMetric(t, b, relayed)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i, s := range []*Session{proxied, plain} {
			wg.Add(2)
			go func() {
				defer wg.Done()
				got, n, d, err := b.Download(ctx, s.UE4, dl.Addr, "")
				if err == nil && got != sum {
					err = fmt.Errorf("download of %d octets in %v: content differs", n, d)
				}
				errs[2*i] = err
			}()
			go func() {
				defer wg.Done()
				got, _, err := b.Upload(ctx, s.UE4, up.Addr, data, "")
				if err == nil && got != sum {
					err = errors.New("upload: the server's hash differs")
				}
				errs[2*i+1] = err
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("%s session, %s: %v", []string{"proxied", "plain"}[i/2], []string{"download", "upload"}[i%2], err)
			}
		}
		if r := proxyMetric(t, b, relayed) - r0; r != 2 {
			t.Errorf("proxy relayed %v connections, want the proxied session's 2 only", r)
		}
	})

	t.Run("ICMP passes", func(t *testing.T) {
		if got, out, err := b.Ping(ctx, "ue", proxied.UE4, DNAddr, 3); err != nil || got != 3 {
			t.Errorf("ping from the proxied session: %d of 3 replies, %v\n%s", got, err, out)
		}
	})

	t.Run("refused port", func(t *testing.T) {
		ln, err := b.Serve("dn", any, func(*net.TCPConn) {})
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr
		ln.Close() // a port nobody listens on
		ref0 := proxyMetric(t, b, `sluice_proxy_connections_total{outcome="refused"}`)
		start := time.Now()
		c, err := b.Dial(ctx, "ue", proxied.UE4, closed, "")
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("connect to a closed port through the proxy: %v, want connection refused (a RST)", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("the RST took %v", d)
		}
		if r := proxyMetric(t, b, `sluice_proxy_connections_total{outcome="refused"}`) - ref0; r != 1 {
			t.Errorf("refused connections counted %v, want 1", r)
		}
	})

	t.Run("half-close", func(t *testing.T) {
		srv, err := b.Serve("dn", any, func(c *net.TCPConn) {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			n, _ := io.Copy(io.Discard, c)
			time.Sleep(100 * time.Millisecond)
			fmt.Fprintf(c, "after your FIN: %d octets", n)
		})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		c, err := b.Dial(ctx, "ue", proxied.UE4, srv.Addr, "")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		data, _ := Payload(100<<10, 3)
		_, _ = c.Write(data)
		_ = c.CloseWrite()
		got, err := io.ReadAll(c)
		if want := fmt.Sprintf("after your FIN: %d octets", len(data)); err != nil || string(got) != want {
			t.Errorf("after half-closing: read %q, %v; want %q and the server's FIN", got, err, want)
		}
	})

	t.Run("1000 concurrent connections", func(t *testing.T) {
		const n = 1000
		srv, err := b.Serve("dn", any, func(c *net.TCPConn) {
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			buf := make([]byte, 64)
			if _, err := io.ReadFull(c, buf); err == nil {
				_, _ = c.Write(buf)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		r0 := proxyMetric(t, b, relayed)
		conns := make([]*net.TCPConn, n)
		defer func() {
			for _, c := range conns {
				if c != nil {
					c.Close()
				}
			}
		}()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var dialErrs []error
		sem := make(chan struct{}, 100)
		for i := range conns {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				c, err := b.Dial(ctx, "ue", proxied.UE4, srv.Addr, "")
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					dialErrs = append(dialErrs, err)
					return
				}
				conns[i] = c
			}()
		}
		wg.Wait()
		if len(dialErrs) > 0 {
			t.Fatalf("%d of %d connections failed, the first: %v", len(dialErrs), n, dialErrs[0])
		}
		// A UE's connect returns on the SYN-ACK; the proxy counts the
		// connection when the UE's ACK has arrived.
		a := 0.0
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if a = proxyMetric(t, b, "sluice_proxy_connections"); a >= n {
				break
			}
		}
		if a < n {
			t.Errorf("the proxy relays %v connections at once, want %d", a, n)
		}
		var bad int
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				msg := []byte(fmt.Sprintf("%064d", i))
				got := make([]byte, 64)
				_, err := c.Write(msg)
				if err == nil {
					_, err = io.ReadFull(c, got)
				}
				if err != nil || string(got) != string(msg) {
					mu.Lock()
					bad++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if bad > 0 {
			t.Errorf("%d of %d connections did not echo their message", bad, n)
		}
		if r := proxyMetric(t, b, relayed) - r0; r != n {
			t.Errorf("proxy relayed %v connections, want %d", r, n)
		}
	})

	t.Run("session deletion ends its connections", func(t *testing.T) {
		s, err := b.Establish(ctx, smf.SessionParams{ForwardingPolicy: ProxyPolicy})
		if err != nil {
			t.Fatal(err)
		}
		ended := make(chan error, 1)
		srv, err := b.Serve("dn", any, func(c *net.TCPConn) {
			_ = c.SetDeadline(time.Now().Add(15 * time.Second))
			_, err := io.Copy(io.Discard, c)
			ended <- err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		c, err := b.Dial(ctx, "ue", s.UE4, srv.Addr, "")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("hello"))
		time.Sleep(200 * time.Millisecond)
		e0 := proxyMetric(t, b, `sluice_proxy_connections_total{outcome="ended"}`)
		if _, err := b.Delete(ctx, s); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-ended:
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("the server's connection ended with %v, want a reset", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the server's connection outlived its session by 5 s")
		}
		if e := proxyMetric(t, b, `sluice_proxy_connections_total{outcome="ended"}`) - e0; e != 1 {
			t.Errorf("ended connections counted %v, want 1", e)
		}
	})
}

// With two workers a connection's uplink and the server's answers may
// reach different workers' proxies; every connection is still relayed
// intact.
func TestProxyTwoWorkers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, starts upf with AF_XDP")
	}
	if testing.Short() {
		t.Skip("end-to-end tests take tens of seconds; skipped in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log strings.Builder
	b, err := Up(ctx, Options{Prefix: fmt.Sprintf("pw%d", os.Getpid()%100000), UPF: upfBinary(t), Log: &log, Proxy: ProxyConfig, Workers: 2})
	if err != nil {
		t.Fatalf("testbed: %v\n%s", err, log.String())
	}
	defer func() {
		if t.Failed() {
			t.Logf("upf log:\n%s", b.UPFLog())
		}
		b.Close()
	}()
	s, err := b.Establish(ctx, smf.SessionParams{ForwardingPolicy: ProxyPolicy})
	if err != nil {
		t.Fatal(err)
	}
	data, sum := Payload(256<<10, 5)
	srv, err := b.Serve("dn", netip.AddrPortFrom(DNAddr, 0), ServeDownload(data, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() {
			got, k, _, err := b.Download(ctx, s.UE4, srv.Addr, "")
			if err == nil && got != sum {
				err = fmt.Errorf("%d octets, content differs", k)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if r := proxyMetric(t, b, relayed); r != n {
		t.Errorf("proxy relayed %v connections, want %d", r, n)
	}
}
