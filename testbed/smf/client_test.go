package smf

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// fakeUPF answers establishments with UP SEID = CP SEID + 1000 and
// deletions with the given cause.
func fakeUPF(t *testing.T, delCause uint8) netip.AddrPort {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			m, err := message.Parse(buf[:n])
			if err != nil {
				continue
			}
			var resp message.Message
			switch r := m.(type) {
			case *message.SessionEstablishmentRequest:
				f, _ := r.CPFSEID.FSEID()
				resp = message.NewSessionEstablishmentResponse(0, 0, f.SEID, r.Sequence(), 0,
					ie.NewNodeID("127.0.0.1", "", ""), ie.NewCause(ie.CauseRequestAccepted),
					ie.NewFSEID(f.SEID+1000, net.IPv4(127, 0, 0, 1), nil))
			case *message.SessionDeletionRequest:
				resp = message.NewSessionDeletionResponse(0, 0, 0, r.Sequence(), 0, ie.NewCause(delCause))
			default:
				continue
			}
			b := make([]byte, resp.MarshalLen())
			resp.MarshalTo(b)
			conn.WriteToUDPAddrPort(b, from)
		}
	}()
	return conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestTemplateRoundTrip(t *testing.T) {
	c, err := New(Options{Local: netip.MustParseAddrPort("127.0.0.1:0"), UPF: fakeUPF(t, ie.CauseSessionContextNotFound), T1: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tmpl, err := c.NewTemplate(SessionParams{QFI: 1, URRs: []URR{{ID: 1, VolumeThreshold: 10, Period: time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := message.Parse(tmpl.b)
	if err != nil {
		t.Fatalf("template does not parse: %v", err)
	}
	if r := m.(*message.SessionEstablishmentRequest); len(r.CreatePDR) != 2 || len(r.CreateFAR) != 2 || len(r.CreateURR) != 1 {
		t.Fatalf("template rules: %d PDRs, %d FARs, %d URRs", len(r.CreatePDR), len(r.CreateFAR), len(r.CreateURR))
	}
	up, err := c.EstablishFast(context.Background(), tmpl, 42)
	if err != nil || up != 1042 {
		t.Fatalf("EstablishFast: UP SEID %d, %v; want 1042", up, err)
	}
	var ce *CauseError
	if err := c.DeleteFast(context.Background(), up); !errors.As(err, &ce) || ce.Cause != ie.CauseSessionContextNotFound {
		t.Fatalf("DeleteFast: %v, want cause %d", err, ie.CauseSessionContextNotFound)
	}
}

func TestURRTriggers(t *testing.T) {
	x := URR{ID: 3, Period: time.Second, VolumeThreshold: 1, VolumeQuota: 2, TimeQuota: time.Second, StartStop: true, QuotaValidity: time.Second}.IE()
	kids, err := x.CreateURR()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kids {
		if k.Type == ie.ReportingTriggers {
			if !k.HasPERIO() || !k.HasVOLTH() || !k.HasVOLQU() || !k.HasTIMQU() || !k.HasSTART() || !k.HasSTOPT() || !k.HasQUVTI() || k.HasTIMTH() {
				t.Fatalf("reporting triggers %x", k.Payload)
			}
			return
		}
	}
	t.Fatal("no Reporting Triggers")
}

// lockedBuffer is a log destination safe for the client's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Session Report Requests that find Reports full are still answered, and
// are counted and logged (once) instead of vanishing.
func TestDroppedReportsCounted(t *testing.T) {
	upf, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer upf.Close()
	var logs lockedBuffer
	c, err := New(Options{Local: netip.MustParseAddrPort("127.0.0.1:0"), UPF: upf.LocalAddr().(*net.UDPAddr).AddrPort(),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const extra = 37
	upf.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	for seq := uint32(1); seq <= ReportsCapacity+extra; seq++ {
		m := message.NewSessionReportRequest(0, 0, 42, seq, 0, ie.NewReportType(0, 0, 1, 0))
		b := make([]byte, m.MarshalLen())
		if err := m.MarshalTo(b); err != nil {
			t.Fatal(err)
		}
		if _, err := upf.WriteToUDPAddrPort(b, c.Addr()); err != nil {
			t.Fatal(err)
		}
		// One at a time: each answer comes after the report was delivered
		// or counted.
		n, _, err := upf.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("answer to report %d: %v", seq, err)
		}
		if r, err := message.Parse(buf[:n]); err != nil || r.MessageType() != message.MsgTypeSessionReportResponse || r.Sequence() != seq {
			t.Fatalf("answer to report %d: %v, %v", seq, r, err)
		}
	}
	if got := len(c.Reports()); got != ReportsCapacity {
		t.Errorf("Reports holds %d reports, want %d", got, ReportsCapacity)
	}
	if got := c.DroppedReports(); got != extra {
		t.Errorf("DroppedReports() = %d, want %d", got, extra)
	}
	if n := strings.Count(logs.String(), "Session Report Requests dropped"); n != 1 {
		t.Errorf("the drop was logged %d times, want once; log:\n%s", n, logs.String())
	}
}
