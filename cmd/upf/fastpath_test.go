package main

import (
	"os"
	"strings"
	"testing"
)

// fast_path is auto in the example, off when left out, and anything else
// is an error naming the field.
func TestFastPathSetting(t *testing.T) {
	base, err := os.ReadFile("../../configs/upf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ to, want, err string }{
		{"fast_path: auto", fastPathAuto, ""},
		{"fast_path: off", fastPathOff, ""},
		{"", fastPathOff, ""},
		{"fast_path: on", "", "fast_path"},
	} {
		in := strings.Replace(string(base), "fast_path: auto", c.to, 1)
		p, err := parseConfig([]byte(in))
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one naming %q", c.to, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.to, err)
		case c.err == "" && p.fastPath != c.want:
			t.Errorf("%q: fast path %q, want %q", c.to, p.fastPath, c.want)
		}
	}
}
