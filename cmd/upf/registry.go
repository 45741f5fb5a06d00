package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metricCollectors are the collectors behind upf's /metrics: Sluice's
// counters, its vhost-user ports' and the Go runtime's.
func (u *upf) metricCollectors() []prometheus.Collector {
	return []prometheus.Collector{&collector{u: u}, &vhostCollector{u: u}, &proxyCollector{u: u}, &fastCollector{u: u}, collectors.NewGoCollector()}
}

// registry is the Prometheus registry upf serves.
func (u *upf) registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(u.metricCollectors()...)
	return reg
}
