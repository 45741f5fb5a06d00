package gnb

import "sync/atomic"

// Stats are a GNB's counters since Start. Bytes count T-PDUs (the UEs' IP
// packets), not tunnel headers.
type Stats struct {
	ULPackets, ULBytes uint64 // G-PDUs sent to the UPF
	DLPackets, DLBytes uint64 // T-PDUs delivered to UEs

	ULNoSession  uint64 // UE-side packets whose source address has no session
	ULMalformed  uint64 // UE-side packets that are not IPv4 or IPv6
	ULSendErrors uint64 // G-PDUs the N3 socket did not take

	DLUnknownTEID uint64 // G-PDUs with a TEID of no session
	DLNoPSC       uint64 // G-PDUs (delivered) that lacked a DL PDU Session Container
	DLMalformed   uint64 // N3 datagrams that are not valid GTP-U
	DLWriteErrors uint64 // T-PDUs the TUN device did not take

	EchoRequests     uint64 // Echo Requests received (and answered)
	EchoResponses    uint64 // Echo Responses received
	ErrorIndications uint64 // Error Indications received
	EndMarkers       uint64 // End Markers received
	OtherMessages    uint64 // other GTP-U message types received
}

// counters is the live form of Stats; each field has one writer goroutine
// (the uplink or the downlink loop) and any number of readers.
type counters struct {
	ulPackets, ulBytes                                      atomic.Uint64
	dlPackets, dlBytes                                      atomic.Uint64
	ulNoSession, ulMalformed, ulSendErrors                  atomic.Uint64
	dlUnknownTEID, dlNoPSC, dlMalformed, dlWriteErrors      atomic.Uint64
	echoRequests, echoResponses, errorIndications, endMarks atomic.Uint64
	otherMessages                                           atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		ULPackets:        c.ulPackets.Load(),
		ULBytes:          c.ulBytes.Load(),
		DLPackets:        c.dlPackets.Load(),
		DLBytes:          c.dlBytes.Load(),
		ULNoSession:      c.ulNoSession.Load(),
		ULMalformed:      c.ulMalformed.Load(),
		ULSendErrors:     c.ulSendErrors.Load(),
		DLUnknownTEID:    c.dlUnknownTEID.Load(),
		DLNoPSC:          c.dlNoPSC.Load(),
		DLMalformed:      c.dlMalformed.Load(),
		DLWriteErrors:    c.dlWriteErrors.Load(),
		EchoRequests:     c.echoRequests.Load(),
		EchoResponses:    c.echoResponses.Load(),
		ErrorIndications: c.errorIndications.Load(),
		EndMarkers:       c.endMarks.Load(),
		OtherMessages:    c.otherMessages.Load(),
	}
}
