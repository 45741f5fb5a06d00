package e2e

import (
	"strings"
	"testing"
)

// A process's kept output is the last processLogMax octets, however much
// it printed.
func TestTailBufferKeepsTheEnd(t *testing.T) {
	b := &tailBuffer{max: 10}
	var all strings.Builder
	for i := range 100 {
		line := strings.Repeat(string(rune('a'+i%26)), i%4) + "\n"
		all.WriteString(line)
		b.Write([]byte(line))
		want := all.String()
		want = want[max(0, len(want)-10):]
		if got := b.String(); got != want {
			t.Fatalf("after %d writes: kept %q, want %q", i+1, got, want)
		}
	}
	p := &Process{log: &tailBuffer{max: 100}}
	p.log.Write([]byte("one\ntwo\nthree\n"))
	if got, want := p.Tail(2), "two\nthree"; got != want {
		t.Errorf("Tail(2) = %q, want %q", got, want)
	}
}
