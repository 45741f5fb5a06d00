// Package deploy holds Sluice's deployment recipes (container image, Helm
// chart, Grafana dashboard) and their tests, in a module of its own so
// that the Kubernetes and Helm dependencies stay out of upf's.
//
// The tests need no cluster: they build the helm command from its Go
// module and upf from the repository, lint and render the chart for
// several value sets, decode every rendered object strictly into the
// Kubernetes API types (an unknown or misspelled field fails), and pass
// every rendered upf.yaml through "upf check -host=false".
package deploy

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	yamlv3 "gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const chart = "helm/sluice"

// tools are the helm and upf binaries the tests run, built once.
var tools struct {
	dir, helm, upf string
}

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "sluice-deploy-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		tools.dir, tools.helm, tools.upf = dir, filepath.Join(dir, "helm"), filepath.Join(dir, "upf")
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		// helm from its Go module at the version go.mod pins (tools.go).
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", tools.helm, "helm.sh/helm/v3/cmd/helm").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build helm: %v\n%s", err, out)
			return 1
		}
		build := exec.CommandContext(ctx, "go", "build", "-o", tools.upf, "./cmd/upf")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build upf: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tools.helm, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+tools.dir, "HELM_CONFIG_HOME="+tools.dir, "HELM_DATA_HOME="+tools.dir)
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("helm %s: %v: %s%s", strings.Join(args, " "), err, errb.String(), out.String())
	}
	return out.String(), nil
}

func valueSets(t *testing.T, dir string) []string {
	t.Helper()
	sets, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(sets) == 0 {
		t.Fatalf("no value sets in %s: %v", dir, err)
	}
	return sets
}

func TestChartLint(t *testing.T) {
	for _, vs := range valueSets(t, "helm/testdata") {
		if out, err := helm(t, "lint", "--strict", chart, "-f", vs); err != nil {
			t.Errorf("%s: %v\n%s", vs, err, out)
		}
	}
}

// rendered are a release's objects, decoded strictly.
type rendered struct {
	configMaps   []corev1.ConfigMap
	statefulSets []appsv1.StatefulSet
	services     []corev1.Service
	nads         []nadv1.NetworkAttachmentDefinition
	monitors     []monitoringv1.ServiceMonitor
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeStrict decodes one rendered object into its API type; a field
// the type does not have is an error.
func decodeStrict(doc []byte, r *rendered) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return fmt.Errorf("read kind: %w", err)
	}
	strict := func(v any) error { return yaml.UnmarshalStrict(doc, v) }
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 ConfigMap":
		var o corev1.ConfigMap
		if err := strict(&o); err != nil {
			return err
		}
		r.configMaps = append(r.configMaps, o)
	case "apps/v1 StatefulSet":
		var o appsv1.StatefulSet
		if err := strict(&o); err != nil {
			return err
		}
		r.statefulSets = append(r.statefulSets, o)
	case "v1 Service":
		var o corev1.Service
		if err := strict(&o); err != nil {
			return err
		}
		r.services = append(r.services, o)
	case "k8s.cni.cncf.io/v1 NetworkAttachmentDefinition":
		var o nadv1.NetworkAttachmentDefinition
		if err := strict(&o); err != nil {
			return err
		}
		r.nads = append(r.nads, o)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		var o monitoringv1.ServiceMonitor
		if err := strict(&o); err != nil {
			return err
		}
		r.monitors = append(r.monitors, o)
	default:
		return fmt.Errorf("%s %s: a kind the test does not know; add it", tm.APIVersion, tm.Kind)
	}
	return nil
}

func render(t *testing.T, vs string) (*rendered, string) {
	t.Helper()
	out, err := helm(t, "template", "rel", chart, "-f", vs, "--namespace", "core")
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{}
	for i, doc := range docSep.Split(out, -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		if err := decodeStrict([]byte(doc), r); err != nil {
			t.Fatalf("%s: object %d: %v\n%s", vs, i, err, doc)
		}
	}
	return r, out
}

// upfConfig is what the test compares across instances.
type upfConfig struct {
	N4 struct {
		Addresses []string `yaml:"addresses"`
		NodeID    string   `yaml:"node_id"`
	} `yaml:"n4"`
	Interfaces []struct {
		Device    string         `yaml:"device"`
		Role      string         `yaml:"role"`
		Addresses []string       `yaml:"addresses"`
		VhostUser map[string]any `yaml:"vhost_user"`
	} `yaml:"interfaces"`
	UEPools []string `yaml:"ue_pools"`
	TEIDs   struct {
		First uint64 `yaml:"first"`
		Last  uint64 `yaml:"last"`
	} `yaml:"teids"`
	Workers int `yaml:"workers"`
}

func values(t *testing.T, vs string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(vs)
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]any{}
	if err := yamlv3.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func get(v map[string]any, path string) any {
	var cur any = v
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

// TestChartRenders renders every value set and checks what a cluster and
// an operator would: objects the API accepts, upf configurations upf
// accepts, instances that never collide, Guaranteed QoS on whole CPUs,
// capabilities instead of privileged, the attachments asked for.
func TestChartRenders(t *testing.T) {
	for _, vs := range valueSets(t, "helm/testdata") {
		t.Run(filepath.Base(vs), func(t *testing.T) {
			r, _ := render(t, vs)
			v := values(t, vs)
			instances := 1
			if n, ok := get(v, "instances").(int); ok {
				instances = n
			}
			workers := 1
			if n, ok := get(v, "workers").(int); ok {
				workers = n
			}
			if len(r.configMaps) != instances || len(r.statefulSets) != instances || len(r.services) != 1 {
				t.Fatalf("%d config maps, %d stateful sets, %d services; want %d, %d, 1", len(r.configMaps), len(r.statefulSets), len(r.services), instances, instances)
			}
			wantMonitor := get(v, "metrics.serviceMonitor.enabled") != false
			if (len(r.monitors) == 1) != wantMonitor {
				t.Fatalf("%d ServiceMonitors; want one: %v", len(r.monitors), wantMonitor)
			}

			// Every instance's upf.yaml passes upf's check, and no two
			// instances share a Node ID, an address, UE addresses or TEIDs.
			var cfgs []upfConfig
			for _, cm := range r.configMaps {
				y := cm.Data["upf.yaml"]
				p := filepath.Join(t.TempDir(), cm.Name+".yaml")
				if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command(tools.upf, "check", "-host=false", "--config", p).CombinedOutput(); err != nil {
					t.Fatalf("upf check of %s's upf.yaml: %v\n%s\n%s", cm.Name, err, out, y)
				}
				var c upfConfig
				if err := yamlv3.Unmarshal([]byte(y), &c); err != nil {
					t.Fatal(err)
				}
				if c.Workers != workers {
					t.Fatalf("%s: workers %d, want %d", cm.Name, c.Workers, workers)
				}
				cfgs = append(cfgs, c)
			}
			for i := range cfgs {
				for j := range i {
					a, b := cfgs[i], cfgs[j]
					if a.N4.NodeID == b.N4.NodeID || a.N4.Addresses[0] == b.N4.Addresses[0] || a.Interfaces[0].Addresses[0] == b.Interfaces[0].Addresses[0] {
						t.Fatalf("instances %d and %d share a Node ID or address: %+v / %+v", j, i, a.N4, b.N4)
					}
					pa, pb := netip.MustParsePrefix(a.UEPools[0]), netip.MustParsePrefix(b.UEPools[0])
					if pa.Overlaps(pb) {
						t.Fatalf("instances %d and %d have overlapping UE pools %v and %v", j, i, pb, pa)
					}
					if a.TEIDs.First <= b.TEIDs.Last && b.TEIDs.First <= a.TEIDs.Last {
						t.Fatalf("instances %d and %d have overlapping TEID ranges %+v and %+v", j, i, b.TEIDs, a.TEIDs)
					}
				}
			}

			nads := map[string]nadv1.NetworkAttachmentDefinition{}
			for _, n := range r.nads {
				var cfg map[string]any
				if err := json.Unmarshal([]byte(n.Spec.Config), &cfg); err != nil {
					t.Fatalf("NetworkAttachmentDefinition %s: config is not JSON: %v", n.Name, err)
				}
				if cfg["type"] == "sriov" && n.Annotations["k8s.v1.cni.cncf.io/resourceName"] == "" {
					t.Fatalf("SR-IOV network %s without its resourceName annotation", n.Name)
				}
				nads[n.Name] = n
			}
			privileged := get(v, "privileged") == true
			seenIPs := map[string]bool{}
			for i, ss := range r.statefulSets {
				pod := ss.Spec.Template.Spec
				if *ss.Spec.Replicas != 1 || len(pod.Containers) != 1 {
					t.Fatalf("%s: %d replicas, %d containers; want one upf pod", ss.Name, *ss.Spec.Replicas, len(pod.Containers))
				}
				c := pod.Containers[0]
				// Guaranteed QoS with whole CPUs: every request equals its
				// limit, the CPU is an integer, workers + 1.
				if len(c.Resources.Requests) == 0 || !equalResources(c.Resources.Requests, c.Resources.Limits) {
					t.Fatalf("%s: requests %v and limits %v differ: not Guaranteed QoS", ss.Name, c.Resources.Requests, c.Resources.Limits)
				}
				cpu := c.Resources.Limits[corev1.ResourceCPU]
				if cpu.MilliValue()%1000 != 0 || cpu.Value() != int64(workers+1) {
					t.Fatalf("%s: CPU %v; want %d whole CPUs (workers + 1)", ss.Name, cpu.String(), workers+1)
				}
				sc := c.SecurityContext
				if privileged {
					if sc == nil || sc.Privileged == nil || !*sc.Privileged {
						t.Fatalf("%s: privileged asked for, not given", ss.Name)
					}
				} else {
					if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil {
						t.Fatalf("%s: want an unprivileged container with capabilities: %+v", ss.Name, sc)
					}
					for _, cp := range []corev1.Capability{"NET_ADMIN", "NET_RAW", "BPF", "IPC_LOCK", "SYS_NICE"} {
						if !slices.Contains(sc.Capabilities.Add, cp) {
							t.Fatalf("%s: capability %s missing from %v", ss.Name, cp, sc.Capabilities.Add)
						}
					}
					if !slices.Contains(sc.Capabilities.Drop, "ALL") {
						t.Fatalf("%s: the other capabilities are not dropped: %v", ss.Name, sc.Capabilities.Drop)
					}
				}
				if get(v, "hugePages.enabled") == true {
					if _, ok := c.Resources.Limits["hugepages-2Mi"]; !ok {
						t.Fatalf("%s: huge pages asked for, no hugepages-2Mi resource: %v", ss.Name, c.Resources.Limits)
					}
				}
				hostPaths := map[string]bool{}
				for _, vol := range pod.Volumes {
					if vol.HostPath != nil {
						hostPaths[vol.HostPath.Path] = true
					}
				}
				if hostPaths["/sys/fs/bpf"] != (get(v, "bpffs") != false) {
					t.Fatalf("%s: /sys/fs/bpf mounted: %v; want %v", ss.Name, hostPaths["/sys/fs/bpf"], get(v, "bpffs") != false)
				}
				var nets []struct {
					Name      string   `json:"name"`
					Interface string   `json:"interface"`
					IPs       []string `json:"ips"`
				}
				if err := json.Unmarshal([]byte(ss.Spec.Template.Annotations["k8s.v1.cni.cncf.io/networks"]), &nets); err != nil {
					t.Fatalf("%s: Multus networks annotation: %v", ss.Name, err)
				}
				for _, n := range nets {
					if _, ok := nads[n.Name]; !ok {
						t.Fatalf("%s: network %s has no NetworkAttachmentDefinition", ss.Name, n.Name)
					}
					for _, ip := range n.IPs {
						if seenIPs[ip] {
							t.Fatalf("%s: address %s given to two pods", ss.Name, ip)
						}
						seenIPs[ip] = true
					}
				}
				// What upf.yaml says about the interfaces matches the pod:
				// a Multus attachment for kernel interfaces, the socket
				// directory for vhost-user ones.
				for _, in := range cfgs[i].Interfaces {
					attached := slices.ContainsFunc(nets, func(n struct {
						Name      string   `json:"name"`
						Interface string   `json:"interface"`
						IPs       []string `json:"ips"`
					}) bool {
						return n.Interface == in.Device
					})
					if in.VhostUser != nil {
						sock, _ := in.VhostUser["socket"].(string)
						if attached || !hostPaths[filepath.Dir(sock)] {
							t.Fatalf("%s: vhost-user %s (socket %s): want no Multus attachment and the socket directory mounted (host paths %v)", ss.Name, in.Device, sock, hostPaths)
						}
					} else if !attached {
						t.Fatalf("%s: interface %s has no Multus attachment", ss.Name, in.Device)
					}
				}
			}
		})
	}
}

func equalResources(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || va.Cmp(vb) != 0 {
			return false
		}
	}
	return true
}

// TestChartRefusesMistakes renders value sets with an operator's mistakes:
// each must fail, in helm or in upf's check, naming what is wrong.
func TestChartRefusesMistakes(t *testing.T) {
	want := map[string]string{
		"teids-overflow.yaml":    "teids",
		"attachment.yaml":        "n3.attachment.type",
		"sriov-no-resource.yaml": "n6.attachment.sriovResource",
		"pool-host-bits.yaml":    "ue_pools",
	}
	for _, vs := range valueSets(t, "helm/bad") {
		name := filepath.Base(vs)
		w, ok := want[name]
		if !ok {
			t.Errorf("%s: add what its error must name to the test", name)
			continue
		}
		out, err := helm(t, "template", "rel", chart, "-f", vs)
		if err == nil {
			r := &rendered{}
			for _, doc := range docSep.Split(out, -1) {
				if strings.Contains(doc, "kind: ConfigMap") {
					_ = decodeStrict([]byte(doc), r)
				}
			}
			for _, cm := range r.configMaps {
				p := filepath.Join(t.TempDir(), "upf.yaml")
				_ = os.WriteFile(p, []byte(cm.Data["upf.yaml"]), 0o644)
				if o, e := exec.Command(tools.upf, "check", "-host=false", "--config", p).CombinedOutput(); e != nil {
					err = fmt.Errorf("upf check: %v: %s", e, o)
					break
				}
			}
		}
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("%s: got %v; want an error naming %s", name, err, w)
		}
	}
}

// TestStrictDecoding checks that the decoding above would notice a
// misspelled field in a template.
func TestStrictDecoding(t *testing.T) {
	_, out := render(t, "helm/testdata/default.yaml")
	for _, doc := range docSep.Split(out, -1) {
		if !strings.Contains(doc, "kind: StatefulSet") {
			continue
		}
		bad := strings.Replace(doc, "containerPort:", "containerPrt:", 1)
		if err := decodeStrict([]byte(bad), &rendered{}); err == nil || !strings.Contains(err.Error(), "containerPrt") {
			t.Fatalf("a StatefulSet with containerPrt decoded: %v", err)
		}
		return
	}
	t.Fatal("no StatefulSet rendered")
}

// TestImageRecipe checks the Dockerfile without a container runtime: it
// has a build stage and a small runtime stage, and its build command,
// run here, makes a static upf (the distroless static base has no libc).
func TestImageRecipe(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(string(b), -1)
	if len(froms) < 2 || !strings.Contains(froms[len(froms)-1][1], "distroless/static") {
		t.Fatalf("stages %v: want a build stage and a distroless static runtime", froms)
	}
	m := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .*)$`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("no `RUN CGO_ENABLED=0 go build` line")
	}
	out := filepath.Join(t.TempDir(), "upf")
	line := strings.ReplaceAll(strings.ReplaceAll(m[1], "${VERSION}", "test"), "/out/upf", out)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Dir = ".."
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, o)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("upf is dynamically linked; the distroless static image has no loader")
		}
	}
	if v, err := exec.Command(out, "version").Output(); err != nil || !strings.Contains(string(v), "upf test") {
		t.Fatalf("upf version: %q, %v; want the version the recipe sets", v, err)
	}
}
