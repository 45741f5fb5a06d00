package control

import (
	"testing"
	"time"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/testbed/smf"
	"github.com/wmnsk/go-pfcp/ie"
)

// A worker that matched uplink packets before a modification removed
// their URR, or before the session's deletion, counts them while the
// request is handled: after the new rules are in, which is after the
// point where control used to read the URR's usage. The final report has
// every one of them.
func TestFinalReportHasPacketsCountedDuringTheChange(t *testing.T) {
	for _, c := range []struct {
		name string
		// change sends the request and returns the usage reports of its
		// answer.
		change func(cl *smf.Client, sess *smf.Session) ([]*ie.IE, error)
		// gone reports whether the rule the worker matched is no longer
		// what a lookup finds.
		gone func(r *flowtable.Rule) bool
	}{
		{"modification removing the URR", func(cl *smf.Client, sess *smf.Session) ([]*ie.IE, error) {
			m, err := cl.Modify(testCx(), sess,
				ie.NewUpdatePDR(ie.NewPDRID(smf.PDRUplink), ie.NewURRID(2)),
				ie.NewUpdatePDR(ie.NewPDRID(smf.PDRDownlink), ie.NewURRID(2)),
				ie.NewRemoveURR(ie.NewURRID(1)))
			if err != nil {
				return nil, err
			}
			return m.UsageReport, nil
		}, func(r *flowtable.Rule) bool { return r != nil && len(r.URRSlots) == 1 }},
		{"deletion", func(cl *smf.Client, sess *smf.Session) ([]*ie.IE, error) {
			m, err := cl.Delete(testCx(), sess)
			if err != nil {
				return nil, err
			}
			var urr1 []*ie.IE
			for _, r := range m.UsageReport {
				if kids, err := r.UsageReport(); err == nil && len(kids) > 0 {
					if id, _ := kids[0].URRID(); id == 1 {
						urr1 = append(urr1, r)
					}
				}
			}
			return urr1, nil
		}, func(r *flowtable.Rule) bool { return r == nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, tbl := newServer(t, nil)
			cl := associated(t, s)
			sess, _, err := cl.Establish(ctx(t), smf.SessionParams{URRs: []smf.URR{{ID: 1, MNOP: true}, {ID: 2}}})
			if err != nil {
				t.Fatalf("Establish: %v", err)
			}
			w := tbl.NewWorker()
			var b flowtable.Batch
			w.Enter()
			*b.Next() = *ulFlow(sess.UE4)
			b.AddTEID(flowtable.Access, sess.ULTEID)
			tbl.MatchBatch(&b, w)
			v := b.Verdict(0)
			if !v.Found() {
				t.Fatal("uplink packet matched nothing")
			}
			count := func(n int) {
				for range n {
					w.CountPDR(v, 100)
					w.CountURRs(v, 100, tbl.Now())
				}
			}
			count(2)

			type answer struct {
				reports []*ie.IE
				err     error
			}
			done := make(chan answer, 1)
			go func() {
				r, err := c.change(cl, sess)
				done <- answer{r, err}
			}()
			// The new rules are in: control's old read point has passed.
			eventually(t, 5*time.Second, "the change to reach the table", func() bool {
				return c.gone(tbl.MatchTEID(flowtable.Access, sess.ULTEID, ulFlow(sess.UE4)))
			})
			count(3)
			w.Exit()
			a := <-done
			if a.err != nil {
				t.Fatal(a.err)
			}
			if len(a.reports) != 1 {
				t.Fatalf("%d usage reports of URR 1, want its final one", len(a.reports))
			}
			checkUsage(t, a.reports[0], 1, 0, "TERMR", 500, 500, 0, 5)
		})
	}
}
