package main

import (
	"net/url"
	"testing"
)

// FuzzAdminQueries feeds the admin API's query parsers arbitrary queries:
// they answer with a filter or an error, never a panic, and what they
// accept is within bounds.
func FuzzAdminQueries(f *testing.F) {
	for _, q := range []string{"seid=0x10&limit=5", "ue=10.45.0.1&teid=7", "after=18446744073709551615", "limit=0",
		"port=n3&count=10&duration=5s&filter=teid%3D0x100", "port=n6&filter=ue%3D::1&snaplen=64", "duration=-1s", "%zz"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if sf, err := sessionFilter(q); err == nil && (sf.Limit < 0 || sf.Limit > 10000) {
			t.Fatalf("%q: accepted limit %d", raw, sf.Limit)
		}
		if _, count, d, o, err := captureRequest(q); err == nil {
			if count == 0 || count > maxCaptureCount || d <= 0 || d > maxCaptureDuration || o.Snaplen < 0 || o.Snaplen > 65535 {
				t.Fatalf("%q: accepted count %d, duration %v, snaplen %d", raw, count, d, o.Snaplen)
			}
		}
	})
}
