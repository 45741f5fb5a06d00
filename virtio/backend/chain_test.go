package backend

import (
	"bytes"
	"testing"
)

// TestPutNetHeader: the header comes out the same whether the buffer held
// it already (and nothing is written) or held anything else.
func TestPutNetHeader(t *testing.T) {
	want := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}
	for _, before := range [][]byte{
		bytes.Clone(want),
		bytes.Repeat([]byte{0xff}, 12),
		{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0},
		{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0},
	} {
		b := bytes.Clone(before)
		putNetHeader(b)
		if !bytes.Equal(b, want) {
			t.Errorf("from % x: got % x, want % x", before, b, want)
		}
	}
	legacy := bytes.Repeat([]byte{0xff}, 10)
	putNetHeader(legacy)
	if !bytes.Equal(legacy, make([]byte, 10)) {
		t.Errorf("legacy header: got % x, want zeros", legacy)
	}
}
