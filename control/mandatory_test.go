package control

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// mandatoryIEs are the IEs TS 29.244 clause 7 makes mandatory in each
// response Sluice sends, whatever its Cause: Heartbeat (7.4.2.2),
// PFD Management (7.4.3.2), Association Setup (7.4.4.2), Update (7.4.4.4)
// and Release (7.4.4.6), Session Set Deletion (7.4.6.2), Session
// Establishment (7.5.3), Modification (7.5.5) and Deletion (7.5.7).
var mandatoryIEs = map[uint8][]uint16{
	message.MsgTypeHeartbeatResponse:            {ie.RecoveryTimeStamp},
	message.MsgTypePFDManagementResponse:        {ie.Cause},
	message.MsgTypeAssociationSetupResponse:     {ie.NodeID, ie.Cause, ie.RecoveryTimeStamp},
	message.MsgTypeAssociationUpdateResponse:    {ie.NodeID, ie.Cause},
	message.MsgTypeAssociationReleaseResponse:   {ie.NodeID, ie.Cause},
	message.MsgTypeSessionSetDeletionResponse:   {ie.NodeID, ie.Cause},
	message.MsgTypeSessionEstablishmentResponse: {ie.NodeID, ie.Cause},
	message.MsgTypeSessionModificationResponse:  {ie.Cause},
	message.MsgTypeSessionDeletionResponse:      {ie.Cause},
}

// marshalMsg encodes a go-pfcp message.
func marshalMsg(t testing.TB, m message.Message) []byte {
	t.Helper()
	b := make([]byte, m.MarshalLen())
	if err := m.MarshalTo(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// lengthPlus returns b with its Length field claiming n more octets than
// the datagram holds.
func lengthPlus(b []byte, n int) []byte {
	binary.BigEndian.PutUint16(b[2:], binary.BigEndian.Uint16(b[2:])+uint16(n))
	return b
}

// rejections are requests that Sluice rejects, one per Cause path, with
// the answer expected: its type, Cause, and Offending IE / Failed Rule ID.
type rejection struct {
	name      string
	build     func(c *smf.Client, upSEID uint64) []byte
	typ       uint8
	cause     uint8
	offending uint16 // 0: no Offending IE
	failed    bool   // a Failed Rule ID
}

func rejections(t testing.TB) []rejection {
	rts := ie.NewRecoveryTimeStamp(time.Now())
	feat := ie.NewCPFunctionFeatures(0)
	return []rejection{
		{"setup without Node ID", func(c *smf.Client, _ uint64) []byte {
			return marshalMsg(t, message.NewAssociationSetupRequest(0, rts, feat))
		}, 6, ie.CauseMandatoryIEMissing, ie.NodeID, false},
		{"setup without Recovery Time Stamp", func(c *smf.Client, _ uint64) []byte {
			return marshalMsg(t, message.NewAssociationSetupRequest(0, c.NodeID(), feat))
		}, 6, ie.CauseMandatoryIEMissing, ie.RecoveryTimeStamp, false},
		{"setup with an empty Recovery Time Stamp", func(c *smf.Client, _ uint64) []byte {
			return marshalMsg(t, message.NewAssociationSetupRequest(0, c.NodeID(), ie.New(ie.RecoveryTimeStamp, nil)))
		}, 6, ie.CauseMandatoryIEIncorrect, ie.RecoveryTimeStamp, false},
		{"setup of invalid length", func(c *smf.Client, _ uint64) []byte {
			return lengthPlus(marshalMsg(t, message.NewAssociationSetupRequest(0, c.NodeID(), rts)), 8)
		}, 6, ie.CauseInvalidLength, 0, false},
		{"setup with an IE past the message", func(c *smf.Client, _ uint64) []byte {
			b := marshalMsg(t, message.NewAssociationSetupRequest(0, c.NodeID(), rts))
			binary.BigEndian.PutUint16(b[len(b)-6:], 40) // the Recovery Time Stamp's length
			return b
		}, 6, ie.CauseInvalidLength, ie.RecoveryTimeStamp, false},
		{"update from an unknown node", func(c *smf.Client, _ uint64) []byte {
			return marshalMsg(t, message.NewAssociationUpdateRequest(0, ie.NewNodeID("", "", "other.example.org")))
		}, 8, ie.CauseNoEstablishedPFCPAssociation, 0, false},
		{"update without Node ID", func(c *smf.Client, _ uint64) []byte {
			return marshalMsg(t, message.NewAssociationUpdateRequest(0))
		}, 8, ie.CauseMandatoryIEMissing, ie.NodeID, false},
		{"release from an unknown node", func(c *smf.Client, _ uint64) []byte {
			return marshalMsg(t, message.NewAssociationReleaseRequest(0, ie.NewNodeID("", "", "other.example.org")))
		}, 10, ie.CauseNoEstablishedPFCPAssociation, 0, false},
		{"release of invalid length", func(c *smf.Client, _ uint64) []byte {
			return lengthPlus(marshalMsg(t, message.NewAssociationReleaseRequest(0, c.NodeID())), 4)
		}, 10, ie.CauseInvalidLength, 0, false},
		{"PFD management", func(c *smf.Client, _ uint64) []byte {
			return marshalMsg(t, message.NewPFDManagementRequest(0))
		}, 4, ie.CauseServiceNotSupported, 0, false},
		{"session set deletion", func(c *smf.Client, _ uint64) []byte {
			return marshalMsg(t, message.NewSessionSetDeletionRequest(0, c.NodeID(), nil))
		}, 15, ie.CauseServiceNotSupported, 0, false},
		{"establishment without CP F-SEID", func(c *smf.Client, _ uint64) []byte {
			return marshalMsg(t, message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, c.NodeID()))
		}, 51, ie.CauseMandatoryIEMissing, ie.FSEID, false},
		{"establishment from an unknown node", func(c *smf.Client, _ uint64) []byte {
			p := smf.SessionParams{CPSEID: 9}
			ies := c.EstablishmentIEs(&p)
			ies[0] = ie.NewNodeID("", "", "other.example.org")
			return marshalMsg(t, message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, ies...))
		}, 51, ie.CauseNoEstablishedPFCPAssociation, 0, false},
		{"establishment with a failing rule", func(c *smf.Client, _ uint64) []byte {
			p := smf.SessionParams{CPSEID: 10, Extra: []*ie.IE{ie.NewCreateFAR(ie.NewFARID(smf.FARUplink), ie.NewApplyAction(0x01))}}
			return marshalMsg(t, message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, c.EstablishmentIEs(&p)...))
		}, 51, ie.CauseRuleCreationModificationFailure, 0, true},
		{"establishment with a UE address outside the pools", func(c *smf.Client, _ uint64) []byte {
			p := smf.SessionParams{CPSEID: 12, UE4: netip.MustParseAddr("10.99.0.5")}
			return marshalMsg(t, message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, c.EstablishmentIEs(&p)...))
		}, 51, ie.CauseRuleCreationModificationFailure, 0, true},
		{"establishment of invalid length", func(c *smf.Client, _ uint64) []byte {
			p := smf.SessionParams{CPSEID: 11}
			return lengthPlus(marshalMsg(t, message.NewSessionEstablishmentRequest(0, 0, 0, 0, 0, c.EstablishmentIEs(&p)...)), 20)
		}, 51, ie.CauseInvalidLength, 0, false},
		{"modification of an unknown session", func(c *smf.Client, _ uint64) []byte {
			return marshalMsg(t, message.NewSessionModificationRequest(0, 0, 0xbad, 0, 0))
		}, 53, ie.CauseSessionContextNotFound, 0, false},
		{"modification removing a missing rule", func(c *smf.Client, up uint64) []byte {
			return marshalMsg(t, message.NewSessionModificationRequest(0, 0, up, 0, 0, ie.NewRemoveFAR(ie.NewFARID(99))))
		}, 53, ie.CauseRuleCreationModificationFailure, 0, true},
		{"modification of invalid length", func(c *smf.Client, up uint64) []byte {
			return lengthPlus(marshalMsg(t, message.NewSessionModificationRequest(0, 0, up, 0, 0, smf.DropDL())), 4)
		}, 53, ie.CauseInvalidLength, 0, false},
		{"deletion of an unknown session", func(c *smf.Client, _ uint64) []byte {
			return marshalMsg(t, message.NewSessionDeletionRequest(0, 0, 0xbad, 0, 0))
		}, 55, ie.CauseSessionContextNotFound, 0, false},
		{"deletion with trailing octets", func(c *smf.Client, up uint64) []byte {
			return append(marshalMsg(t, message.NewSessionDeletionRequest(0, 0, up, 0, 0)), 0, 0, 0, 0)
		}, 55, ie.CauseInvalidLength, 0, false},
		{"heartbeat of invalid length", func(c *smf.Client, _ uint64) []byte {
			return lengthPlus(marshalMsg(t, message.NewHeartbeatRequest(0, rts, nil)), 4)
		}, 2, 0, 0, false},
	}
}

// setSeq writes a sequence number into an encoded message.
func setSeq(b []byte, seq uint32) {
	off := 4
	if b[0]&0x01 != 0 {
		off = 12
	}
	b[off], b[off+1], b[off+2] = byte(seq>>16), byte(seq>>8), byte(seq)
}

// checkMandatory reports what an encoded response lacks of the IEs its
// type must have, decoding it with go-pfcp.
func checkMandatory(b []byte) (message.Message, []*ie.IE, error) {
	m, err := message.Parse(b)
	if err != nil {
		return nil, nil, fmt.Errorf("go-pfcp cannot decode the answer: %w", err)
	}
	hl := 8
	if b[0]&0x01 != 0 {
		hl = 16
	}
	ies, err := ie.ParseMultiIEs(b[hl:])
	if err != nil {
		return m, nil, fmt.Errorf("go-pfcp cannot decode the answer's IEs: %w", err)
	}
	want, ok := mandatoryIEs[m.MessageType()]
	if !ok {
		return m, ies, fmt.Errorf("unexpected answer type %s", m.MessageTypeName())
	}
	for _, w := range want {
		if !slices.ContainsFunc(ies, func(x *ie.IE) bool { return x.Type == w }) {
			return m, ies, fmt.Errorf("%s lacks mandatory IE %d", m.MessageTypeName(), w)
		}
	}
	return m, ies, nil
}

// Every rejection Sluice sends carries the mandatory IEs of its message
// table, decoded by go-pfcp, with the right Cause and diagnostics.
func TestRejectionsCarryMandatoryIEs(t *testing.T) {
	s, _ := newServer(t, nil)
	c := associated(t, s)
	sess, _, err := c.Establish(ctx(t), smf.SessionParams{})
	if err != nil {
		t.Fatal(err)
	}
	before := s.Stats().Malformed["invalid_length"]
	lengthCases := 0
	for _, tc := range rejections(t) {
		seq := c.NextSeq()
		b := tc.build(c, sess.UPSEID)
		setSeq(b, seq)
		r, err := c.RequestRaw(ctx(t), seq, b)
		if err != nil {
			t.Errorf("%s: no answer: %v", tc.name, err)
			continue
		}
		m, ies, err := checkMandatory(r)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if tc.cause == ie.CauseInvalidLength || tc.typ == message.MsgTypeHeartbeatResponse {
			lengthCases++
		}
		if m.MessageType() != tc.typ || smf.Cause(m) != tc.cause {
			t.Errorf("%s: answer %s cause %d, want type %d cause %d", tc.name, m.MessageTypeName(), smf.Cause(m), tc.typ, tc.cause)
		}
		var off uint16
		var failed bool
		for _, x := range ies {
			switch x.Type {
			case ie.OffendingIE:
				off, _ = x.OffendingIE()
			case ie.FailedRuleID:
				failed = true
			}
		}
		if off != tc.offending || failed != tc.failed {
			t.Errorf("%s: Offending IE %d, Failed Rule ID %v; want %d, %v", tc.name, off, failed, tc.offending, tc.failed)
		}
		if isSessionType(tc.typ) && tc.typ != message.MsgTypeSessionEstablishmentResponse {
			want := uint64(0)
			if smf.Cause(m) != ie.CauseSessionContextNotFound && b[1] != message.MsgTypeSessionEstablishmentRequest {
				want = sess.CPSEID
			}
			if m.SEID() != want {
				t.Errorf("%s: SEID %#x in the answer, want %#x", tc.name, m.SEID(), want)
			}
		}
	}
	if got := s.Stats().Malformed["invalid_length"] - before; got != uint64(lengthCases-1) {
		t.Errorf("malformed invalid_length counted %d, want %d (the IE length error is not a header one)", got, lengthCases-1)
	}
}
