package vhost

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluice-net/sluice/testbed/e2e"
)

// upfBuild is the upf binary the tests share, built on first use.
var upfBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func upfBinary(t *testing.T) string {
	t.Helper()
	upfBuild.once.Do(func() {
		upfBuild.dir, upfBuild.err = os.MkdirTemp("", "sluice-vhost-test-")
		if upfBuild.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		upfBuild.path = filepath.Join(upfBuild.dir, "upf")
		upfBuild.err = e2e.Build(ctx, upfBuild.path)
	})
	if upfBuild.err != nil {
		t.Fatal(upfBuild.err)
	}
	return upfBuild.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if upfBuild.dir != "" {
		os.RemoveAll(upfBuild.dir)
	}
	os.Exit(code)
}
