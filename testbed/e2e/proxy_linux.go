package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ProxyPolicy is the forwarding policy of ProxyConfig's profile.
const ProxyPolicy = "accelerate"

// ProxyConfig is a proxy: section for a Bed (Options.Proxy): the profile
// ProxyPolicy with SACK and RACK on both legs, room for well over 1,000
// connections per worker, and a short dial timeout.
const ProxyConfig = `proxy:
  max_connections: 4096
  max_memory_mb: 8192
  max_half_open: 1024
  dial_timeout: 2s
  profiles:
    ` + ProxyPolicy + `:
      ue: {congestion: cubic, send_buffer: 1048576, receive_buffer: 1048576, sack: true, rack: true}
      dn: {congestion: cubic, send_buffer: 1048576, receive_buffer: 1048576, sack: true, rack: true}
`

// Server is a TCP listener in a namespace of the bed whose connections a
// handler serves, each on its own goroutine.
type Server struct {
	ln   net.Listener
	wg   sync.WaitGroup
	Addr netip.AddrPort
}

// Serve listens in namespace ns on addr (port 0: any) and serves every
// connection with handle until Close.
func (b *Bed) Serve(ns string, addr netip.AddrPort, handle func(*net.TCPConn)) (*Server, error) {
	s := &Server{}
	if err := b.Topo.Do(ns, func() error {
		var err error
		s.ln, err = net.Listen("tcp", addr.String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("listen in %s: %w", ns, err)
	}
	s.Addr = s.ln.Addr().(*net.TCPAddr).AddrPort()
	s.Addr = netip.AddrPortFrom(s.Addr.Addr().Unmap(), s.Addr.Port())
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
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return s, nil
}

// Close stops listening and waits for the handlers, which must end by
// themselves (a deadline on their connections).
func (s *Server) Close() {
	s.ln.Close()
	s.wg.Wait()
}

// Dial connects from namespace ns, bound to src, to dst, with the
// congestion control cc (empty: the namespace's default).
func (b *Bed) Dial(ctx context.Context, ns string, src netip.Addr, dst netip.AddrPort, cc string) (*net.TCPConn, error) {
	var c net.Conn
	err := b.Topo.Do(ns, func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		if cc != "" {
			d.Control = func(_, _ string, rc syscall.RawConn) error { return SetCongestion(rc, cc) }
		}
		var err error
		c, err = d.DialContext(ctx, "tcp", dst.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// Payload returns n octets of seeded random data and their SHA-256.
func Payload(n int, seed uint64) ([]byte, [32]byte) {
	b := make([]byte, n)
	c := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = c.Read(b)
	return b, sha256.Sum256(b)
}

// ServeDownload is a handler that sends data and closes.
func ServeDownload(data []byte, deadline time.Duration) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		_ = c.SetDeadline(time.Now().Add(deadline))
		_, _ = c.Write(data)
	}
}

// ServeHash is a handler that reads to the peer's FIN, answers the
// SHA-256 of what it read and closes.
func ServeHash(deadline time.Duration) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		_ = c.SetDeadline(time.Now().Add(deadline))
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			return
		}
		_, _ = c.Write(h.Sum(nil))
	}
}

// Download connects from a UE to a server that sends, and returns the
// hash of what arrived, its length and the time it took. cc is the UE's
// congestion control (empty: the namespace's default).
func (b *Bed) Download(ctx context.Context, ue netip.Addr, srv netip.AddrPort, cc string) (sum [32]byte, n int64, d time.Duration, err error) {
	start := time.Now()
	c, err := b.Dial(ctx, "ue", ue, srv, cc)
	if err != nil {
		return sum, 0, 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	h := sha256.New()
	n, err = io.Copy(h, c)
	copy(sum[:], h.Sum(nil))
	return sum, n, time.Since(start), err
}

// Upload connects from a UE to a ServeHash server, sends data, half-closes
// and returns the hash the server answered and the time to the answer.
// cc is the UE's congestion control (empty: the namespace's default).
func (b *Bed) Upload(ctx context.Context, ue netip.Addr, srv netip.AddrPort, data []byte, cc string) (sum [32]byte, d time.Duration, err error) {
	start := time.Now()
	c, err := b.Dial(ctx, "ue", ue, srv, cc)
	if err != nil {
		return sum, 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write(data); err != nil {
		return sum, 0, err
	}
	if err := c.CloseWrite(); err != nil {
		return sum, 0, err
	}
	if _, err := io.ReadFull(c, sum[:]); err != nil {
		return sum, 0, fmt.Errorf("read the server's hash: %w", err)
	}
	return sum, time.Since(start), nil
}

// SetCongestion sets a socket's TCP congestion control (TCP_CONGESTION):
// a namespace inherits the host's default and may not change it, but a
// privileged socket may choose any the kernel has.
func SetCongestion(rc syscall.RawConn, cc string) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, cc)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set congestion control %s: %w", cc, serr)
	}
	return nil
}
