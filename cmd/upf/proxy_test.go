package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigHasAProxyProfile(t *testing.T) {
	p, err := loadConfig("../../configs/upf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o := p.proxy
	if o == nil || len(o.Profiles) != 1 || o.Profiles[0].Policy != "accelerate" {
		t.Fatalf("proxy options %+v, want the profile accelerate", o)
	}
	pr := o.Profiles[0]
	if pr.UE.SendBuffer != 4<<20 || !pr.UE.RACK || pr.UE.MinProbe != 50*time.Millisecond || !pr.DN.SACK || pr.DN.Congestion != "reno" || o.DialTimeout != 5*time.Second || o.MaxMemory != 1<<30 {
		t.Errorf("profile %+v, options %+v: not what configs/upf.yaml says", pr, o)
	}
}

func TestProxyConfigErrorsNameTheField(t *testing.T) {
	base, err := os.ReadFile("../../configs/upf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ from, to, field string }{
		{"ue: {congestion: reno", "ue: {congestion: vegas", "proxy.profiles.accelerate.ue.congestion"},
		{"dial_timeout: 5s", "dial_timeout: 0s", "proxy.dial_timeout"},
		{"max_half_open: 1024", "max_half_open: -1", "proxy"},
		{"min_probe: 50ms", "min_probe: 0s", "proxy.profiles.accelerate.ue.min_probe"},
	} {
		_, err := parseConfig([]byte(strings.Replace(string(base), c.from, c.to, 1)))
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: error %v, want one naming %s", c.to, err, c.field)
		}
	}
}
