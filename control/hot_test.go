package control

import (
	"math/rand/v2"
	"testing"
)

// The hot list stays split into the URRs read this round and the rest
// whatever is added and removed: a URR is read once a round, none is
// skipped, and every index is right.
func TestHotListKeepsReadAndUnreadApart(t *testing.T) {
	s := &Server{}
	trs := make([]*urrTrack, 40)
	for i := range trs {
		trs[i] = &urrTrack{hotIdx: -1, watchIdx: -1, perioIdx: -1}
	}
	read := map[*urrTrack]bool{}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 20000 {
		tr := trs[rng.IntN(len(trs))]
		switch op := rng.IntN(10); {
		case op < 4:
			s.heat(tr)
		case op < 7:
			s.unheat(tr)
			delete(read, tr)
		case op < 9: // a slot reads some
			hi := min(len(s.hot), s.hotPos+rng.IntN(4))
			for _, x := range s.hot[s.hotPos:hi] {
				if read[x] {
					t.Fatalf("step %d: a URR read twice in a round", step)
				}
				read[x] = true
			}
			s.hotPos = hi
		default:
			s.hotPos = 0
			clear(read)
		}
		if s.hotPos > len(s.hot) {
			t.Fatalf("step %d: %d read of %d hot", step, s.hotPos, len(s.hot))
		}
		for i, x := range s.hot {
			if x.hotIdx != i {
				t.Fatalf("step %d: hot[%d] says it is at %d", step, i, x.hotIdx)
			}
			if read[x] != (i < s.hotPos) {
				t.Fatalf("step %d: hot[%d] read %v, but the read part ends at %d", step, i, read[x], s.hotPos)
			}
		}
		for _, x := range trs {
			if x.hotIdx >= 0 && s.hot[x.hotIdx] != x {
				t.Fatalf("step %d: a URR out of the list says it is at %d", step, x.hotIdx)
			}
		}
	}
}
