package control

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
)

// On shutdown Sluice asks its SMF to release the association, and the SMF
// does so before the server closes.
func TestShutdownReleasesAssociation(t *testing.T) {
	s, tbl := newServer(t, nil)
	c := associated(t, s)
	if _, _, err := c.Establish(ctx(t), smf.SessionParams{}); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if c.ReleasesAsked() != 1 {
		t.Errorf("SMF was asked to release %d times, want 1", c.ReleasesAsked())
	}
	if n := len(s.Associations()); n != 0 {
		t.Errorf("%d associations left after Shutdown", n)
	}
	if n := tbl.Sessions(); n != 0 {
		t.Errorf("%d sessions left after the association was released", n)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v: it waited for its deadline instead of the release", d)
	}
}

// A silent SMF does not hold Shutdown past its deadline.
func TestShutdownBoundedBySilentSMF(t *testing.T) {
	s, _ := newServer(t, nil)
	c := associated(t, s)
	c.SetSilent(true)
	sctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with a 300 ms deadline", d)
	}
}
