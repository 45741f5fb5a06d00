package control

import (
	"slices"
	"time"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/wmnsk/go-pfcp/ie"
)

// Downlink data reports. The dataplane raises a session's Notifier when a
// downlink packet hits a PDR whose FAR buffers or notifies; the table
// queues one Notification until the Notifier is re-armed. Sluice then sends
// one Session Report Request with a Downlink Data Report, if the FAR has
// NOCP, after the BAR's Downlink Data Notification Delay.
//
// Re-arm policy: the Notifier stays raised (no further reports for the
// session) until the SMF changes the session's FARs or BARs in a Session
// Modification — the SMF's reaction to the report (paging done: forward;
// or buffer again). An answer to the report alone does not re-arm it, so a
// UE being paged costs one report, not one per packet.

// dlDataLoop consumes the table's downlink data notifications.
func (s *Server) dlDataLoop() {
	defer s.wg.Done()
	notes := s.tbl.Notifications()
	for {
		select {
		case <-s.closing:
			return
		case n := <-notes:
			s.onDLData(n)
		}
	}
}

func (s *Server) onDLData(n flowtable.Notification) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[n.SEID]
	if sess == nil || sess.dlReport {
		return
	}
	far, bar := sess.farOf(n.PDRID)
	if far == nil || far.Apply&flowtable.ActNotifyCP == 0 {
		return // buffering without notification: nothing to tell
	}
	sess.dlReport = true
	var delay time.Duration
	if bar != nil {
		delay = bar.DLDataNotificationDelay
	}
	if delay <= 0 {
		s.sendDLData(sess, n.PDRID)
		return
	}
	time.AfterFunc(delay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.sessions[n.SEID] != sess || !sess.dlReport {
			return // deleted, or the SMF changed the FARs meanwhile
		}
		if far, _ := sess.farOf(n.PDRID); far == nil || far.Apply&flowtable.ActNotifyCP == 0 {
			return
		}
		s.sendDLData(sess, n.PDRID)
	})
}

// farOf returns the FAR (and its BAR) of a session's PDR.
func (sess *session) farOf(pdr uint16) (*flowtable.FAR, *flowtable.BAR) {
	i := slices.IndexFunc(sess.spec.PDRs, func(p flowtable.PDR) bool { return p.ID == pdr })
	if i < 0 {
		return nil, nil
	}
	p := &sess.spec.PDRs[i]
	j := slices.IndexFunc(sess.spec.FARs, func(f flowtable.FAR) bool { return f.ID == p.FARID })
	if j < 0 {
		return nil, nil
	}
	f := &sess.spec.FARs[j]
	if f.BARID == 0 {
		return f, nil
	}
	k := slices.IndexFunc(sess.spec.BARs, func(b flowtable.BAR) bool { return b.ID == f.BARID })
	if k < 0 {
		return f, nil
	}
	return f, &sess.spec.BARs[k]
}

// sendDLData sends the Downlink Data Report of a PDR. Caller holds s.mu;
// the request goes out on another goroutine's time (it never blocks).
func (s *Server) sendDLData(sess *session, pdr uint16) {
	kids := []*ie.IE{ie.NewPDRID(pdr)}
	if qfi := sess.qfiOf(pdr); qfi != 0 {
		kids = append(kids, ie.New(ie.DownlinkDataServiceInformation, []byte{0x02, qfi})) // QFII
	}
	ies := []*ie.IE{ie.New(ie.ReportType, []byte{0x01}), group(ie.DownlinkDataReport, kids...)} // DLDR
	to, seid, cp := s.reportDest(sess), sess.seid, sess.cpSEID
	s.stats.dlData.Add(1)
	s.log.Debug("downlink data report", "seid", seid, "pdr", pdr)
	go s.sessionReport(to, seid, cp, ies)
}

// qfiOf returns the QFI of a PDR: its PDI's, or its first QER's.
func (sess *session) qfiOf(pdr uint16) uint8 {
	i := slices.IndexFunc(sess.spec.PDRs, func(p flowtable.PDR) bool { return p.ID == pdr })
	if i < 0 {
		return 0
	}
	p := &sess.spec.PDRs[i]
	if p.PDI.QFI != 0 {
		return p.PDI.QFI
	}
	for _, id := range p.QERIDs {
		for _, q := range sess.spec.QERs {
			if q.ID == id && q.QFI != 0 {
				return q.QFI
			}
		}
	}
	return 0
}
