package control

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// recorder is a slog handler that keeps the records at warn and above.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, rec.Clone())
	r.mu.Unlock()
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// matching returns the records whose attribute key has the value v.
func (r *recorder) matching(key, v string) []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []slog.Record
	for _, rec := range r.recs {
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == key && a.Value.String() == v {
				out = append(out, rec)
				return false
			}
			return true
		})
	}
	return out
}

func attr(rec slog.Record, key string) string {
	var v string
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

// Datagrams from peers outside the allowed peers and malformed ones are
// logged at warn: the first of a kind from a peer, then a summary with the
// count at most once per interval.
func TestDroppedDatagramsAreLogged(t *testing.T) {
	var rec recorder
	s, _ := newServer(t, func(o *Options) {
		o.AllowedPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		o.Logger = slog.New(&rec)
	})
	s.dropLog.mu.Lock()
	s.dropLog.interval = 500 * time.Millisecond
	s.dropLog.mu.Unlock()
	send := func(from string, b []byte, n int) {
		t.Helper()
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from+":0")), net.UDPAddrFromAddrPort(s.Addrs()[0]))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for range n {
			c.Write(b)
		}
	}
	hb := []byte{0x20, 1, 0, 4, 0, 0, 1, 0}
	send("127.0.0.2", hb, 20)
	send("127.0.0.1", []byte{0x20, 1, 0}, 5) // too short for a header
	eventually(t, 2*time.Second, "drops counted", func() bool {
		st := s.Stats()
		return st.DroppedUnknownPeer == 20 && st.Malformed["short"] == 5
	})
	if r := rec.matching("reason", "unknown_peer"); len(r) != 1 || attr(r[0], "peer") != "127.0.0.2" || r[0].Level != slog.LevelWarn {
		t.Fatalf("after 20 datagrams from 127.0.0.2: %d warnings %v; want the first one logged at warn", len(r), r)
	}
	if r := rec.matching("reason", "short"); len(r) != 1 || attr(r[0], "peer") != "127.0.0.1" {
		t.Fatalf("after 5 short datagrams: %d warnings; want 1", len(r))
	}
	time.Sleep(550 * time.Millisecond)
	send("127.0.0.2", hb, 1)
	eventually(t, 2*time.Second, "summary", func() bool { return len(rec.matching("reason", "unknown_peer")) == 2 })
	r := rec.matching("reason", "unknown_peer")[1]
	if got := attr(r, "count"); got != "20" {
		t.Fatalf("summary says %s dropped since the first, want 20: %v", got, r)
	}
}
