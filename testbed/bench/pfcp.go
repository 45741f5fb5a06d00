package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"

	"github.com/sluice-net/sluice/testbed/smf"
)

// sessionPlan says which sessions a Sluice round establishes: session i
// has CP SEID i+1, uplink TEID ULTEID+i at the UPF's N3 address, the UE
// address UE(i), and downlink TEID DLTEID+i at the gNB. These are the
// identifiers the traffic generator cycles through.
type sessionPlan struct {
	N3, GNB        netip.Addr
	ULTEID, DLTEID uint32
	QFI            uint8
	UE             func(i int) netip.Addr
	Shape          Shape
}

// establishmentIEs returns the IEs of an establishment of the plan's
// shape for the session parameters p.
func establishmentIEs(c *smf.Client, pl sessionPlan, p smf.SessionParams) []*ie.IE {
	if pl.Shape == ShapeReal {
		smf.RealShape(&p)
	}
	return c.EstablishmentIEs(&p)
}

// Markers written into the template where the per-session values go;
// each must occur in the encoded request exactly where expected.
const (
	markSEID   uint64 = 0x5e1d_c0de_5e1d_c0de
	markULTEID uint32 = 0x5e1d_7e1d
	markDLTEID uint32 = 0x5e1d_d1d1
)

var markUE = netip.AddrFrom4([4]byte{198, 51, 100, 77})

// estTemplate is a Session Establishment Request encoded once, with the
// offsets of the fields that differ between the plan's sessions, so that
// 100,000 establishments cost the SMF side little more than copies.
// Safe for concurrent use (read only).
type estTemplate struct {
	b      []byte
	seid   int    // CP F-SEID's SEID
	ulTEID int    // uplink F-TEID's TEID
	dlTEID int    // Outer Header Creation's TEID
	ue     [2]int // UE IP Address of the uplink and downlink PDIs
}

// newEstTemplate encodes the plan's establishment with markers and finds
// them.
func newEstTemplate(c *smf.Client, pl sessionPlan) (*estTemplate, error) {
	p := smf.SessionParams{
		CPSEID: markSEID, ULTEID: markULTEID, N3: pl.N3, UE4: markUE,
		GNB: pl.GNB, GNBTEID: markDLTEID, QFI: pl.QFI,
	}
	m := message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, establishmentIEs(c, pl, p)...)
	b := make([]byte, m.MarshalLen())
	if err := m.MarshalTo(b); err != nil {
		return nil, fmt.Errorf("encoding establishment: %w", err)
	}
	t := &estTemplate{b: b}
	var seid [8]byte
	binary.BigEndian.PutUint64(seid[:], markSEID)
	ue := markUE.As4()
	for _, f := range []struct {
		name string
		pat  []byte
		offs []*int
	}{
		{"CP SEID", seid[:], []*int{&t.seid}},
		{"uplink TEID", be32(markULTEID), []*int{&t.ulTEID}},
		{"downlink TEID", be32(markDLTEID), []*int{&t.dlTEID}},
		{"UE address", ue[:], []*int{&t.ue[0], &t.ue[1]}},
	} {
		got := offsets(b, f.pat)
		if len(got) != len(f.offs) {
			return nil, fmt.Errorf("encoding establishment: %s found %d times, want %d", f.name, len(got), len(f.offs))
		}
		for i, o := range got {
			*f.offs[i] = o
		}
	}
	return t, nil
}

// request returns the request of session i with sequence number seq.
func (t *estTemplate) request(pl sessionPlan, i int, seq uint32) []byte {
	b := bytes.Clone(t.b)
	binary.BigEndian.PutUint64(b[t.seid:], uint64(i)+1)
	binary.BigEndian.PutUint32(b[t.ulTEID:], pl.ULTEID+uint32(i))
	binary.BigEndian.PutUint32(b[t.dlTEID:], pl.DLTEID+uint32(i))
	ue := pl.UE(i).As4()
	copy(b[t.ue[0]:], ue[:])
	copy(b[t.ue[1]:], ue[:])
	b[12], b[13], b[14] = byte(seq>>16), byte(seq>>8), byte(seq)
	return b
}

// establishRange establishes sessions from to to-1 of the plan with up to
// inflight requests outstanding, and stops at the first failure.
func establishRange(ctx context.Context, c *smf.Client, pl sessionPlan, from, to, inflight int) error {
	t, err := newEstTemplate(c, pl)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	next.Store(int64(from))
	for range min(inflight, to-from) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				if err := establishOne(ctx, c, t, pl, i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("establishing session %d: %w", i, err)
					}
					mu.Unlock()
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

func establishOne(ctx context.Context, c *smf.Client, t *estTemplate, pl sessionPlan, i int) error {
	seq := c.NextSeq()
	r, err := c.RequestRaw(ctx, seq, t.request(pl, i, seq))
	if err != nil {
		return err
	}
	if len(r) < 16 || r[1] != message.MsgTypeSessionEstablishmentResponse {
		return errors.New("unexpected answer")
	}
	// The top-level IEs follow the 16-octet header; only the Cause
	// matters.
	for p := r[16:]; len(p) >= 4; {
		typ, l := binary.BigEndian.Uint16(p), int(binary.BigEndian.Uint16(p[2:]))
		if 4+l > len(p) {
			break
		}
		if typ == ie.Cause && l > 0 {
			if cause := p[4]; cause != ie.CauseRequestAccepted {
				return &smf.CauseError{Type: "SessionEstablishmentResponse", Cause: cause}
			}
			return nil
		}
		p = p[4+l:]
	}
	return errors.New("answer without Cause")
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// offsets returns where pat occurs in b, after the 16-octet message
// header.
func offsets(b, pat []byte) []int {
	var out []int
	for i := 16; i+len(pat) <= len(b); i++ {
		if bytes.Equal(b[i:i+len(pat)], pat) {
			out = append(out, i)
		}
	}
	return out
}
