package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of /proc/stat and /proc/PID/stat times:
// 100 on every Linux architecture Sluice runs on.
const clockTicks = 100

// cpuTimes is one CPU's line of /proc/stat, in clock ticks.
type cpuTimes struct {
	busy, softirq, total uint64
}

// readCPUs reads every CPU's times from /proc/stat.
func readCPUs() (map[int]cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	out := map[int]cpuTimes{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		cpu, err := strconv.Atoi(f[0][3:])
		if err != nil {
			continue
		}
		// user nice system idle iowait irq softirq steal [guest guest_nice,
		// already counted in user and nice]
		var v [8]uint64
		for i := range v {
			v[i], _ = strconv.ParseUint(f[1+i], 10, 64)
		}
		var t cpuTimes
		for i, x := range v {
			t.total += x
			if i != 3 && i != 4 && i != 7 { // idle, iowait, steal
				t.busy += x
			}
		}
		t.softirq = v[6]
		out[cpu] = t
	}
	return out, sc.Err()
}

// taskTicks returns the user and system time of a task (a process, with
// all its threads, or a kernel thread) from /proc/PID/stat.
func taskTicks(pid int) (uint64, error) {
	st, err := readTaskStat("/proc/" + strconv.Itoa(pid) + "/stat")
	return st.ticks, err
}

// taskStat is what the benchmark reads of /proc/PID/stat or
// /proc/PID/task/TID/stat.
type taskStat struct {
	comm  string
	ticks uint64 // utime + stime
	cpu   int    // the CPU it last ran on
}

func readTaskStat(path string) (taskStat, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return taskStat{}, err
	}
	// The command name, in parentheses, may hold spaces; fields count
	// from after it: state is field 3, utime 14, stime 15, processor 39.
	i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if i < 0 || j < i {
		return taskStat{}, fmt.Errorf("parsing %s", path)
	}
	f := strings.Fields(string(b[j+1:]))
	if len(f) < 37 {
		return taskStat{}, fmt.Errorf("parsing %s: %d fields", path, len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	cpu, err3 := strconv.Atoi(f[36])
	if err1 != nil || err2 != nil || err3 != nil {
		return taskStat{}, fmt.Errorf("parsing %s: utime %q, stime %q, processor %q", path, f[11], f[12], f[36])
	}
	return taskStat{comm: string(b[i+1 : j]), ticks: u + s, cpu: cpu}, nil
}

// threadKey names a thread: its process and its own ID.
type threadKey struct{ pid, tid int }

// allThreads reads every thread of the machine (of the PID namespace).
func allThreads() map[threadKey]taskStat {
	out := map[threadKey]taskStat{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		dir := "/proc/" + p.Name() + "/task/"
		tasks, _ := os.ReadDir(dir)
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if st, err := readTaskStat(dir + t.Name() + "/stat"); err == nil {
				out[threadKey{pid, tid}] = st
			}
		}
	}
	return out
}

// cpuSample is a snapshot of the CPUs' and the threads' times, and of
// some tasks' totals.
type cpuSample struct {
	at      time.Time
	cpus    map[int]cpuTimes
	tasks   map[int]uint64 // the listed tasks: a process's total over its threads
	threads map[threadKey]taskStat
}

func takeSample(pids ...int) cpuSample {
	s := cpuSample{at: time.Now(), tasks: map[int]uint64{}}
	s.cpus, _ = readCPUs()
	for _, p := range pids {
		if p > 0 {
			if t, err := taskTicks(p); err == nil {
				s.tasks[p] = t
			}
		}
	}
	return s
}

// takeFullSample is takeSample with every thread of the machine too.
func takeFullSample(pids ...int) cpuSample {
	s := takeSample(pids...)
	s.threads = allThreads()
	return s
}

// tasksUse returns the CPUs the given tasks used between two samples, in
// CPUs (1 = one CPU throughout).
func tasksUse(a, b cpuSample, pids ...int) float64 {
	dt := b.at.Sub(a.at).Seconds()
	if dt <= 0 {
		return 0
	}
	var ticks uint64
	for _, p := range pids {
		x, ok1 := a.tasks[p]
		y, ok2 := b.tasks[p]
		if ok1 && ok2 && y >= x {
			ticks += y - x
		}
	}
	return float64(ticks) / clockTicks / dt
}

// othersOn returns, by command name, the CPU time between two full
// samples of the threads that last ran on cpu, leaving out the processes
// and threads listed in known, and the total. Names with less than floor
// CPUs are left out of the map, not of the total.
func othersOn(a, b cpuSample, cpu int, known []int, floor float64) (map[string]float64, float64) {
	dt := b.at.Sub(a.at).Seconds()
	if dt <= 0 || a.threads == nil || b.threads == nil {
		return nil, 0
	}
	skip := map[int]bool{}
	for _, k := range known {
		skip[k] = true
	}
	byName := map[string]float64{}
	total := 0.0
	for k, y := range b.threads {
		x, ok := a.threads[k]
		if !ok || y.cpu != cpu || skip[k.pid] || skip[k.tid] || y.ticks <= x.ticks {
			continue
		}
		v := float64(y.ticks-x.ticks) / clockTicks / dt
		byName[y.comm] += v
		total += v
	}
	for k, v := range byName {
		if v < floor {
			delete(byName, k)
		}
	}
	if len(byName) == 0 {
		byName = nil
	}
	return byName, total
}

// cpuUse returns how busy a CPU was between two samples, and how much of
// that in softirq context, as fractions of the CPU.
func cpuUse(a, b cpuSample, cpu int) (busy, softirq float64) {
	x, y := a.cpus[cpu], b.cpus[cpu]
	if y.total <= x.total {
		return 0, 0
	}
	d := float64(y.total - x.total)
	return float64(y.busy-x.busy) / d, float64(y.softirq-x.softirq) / d
}

// loadAverage reads /proc/loadavg.
func loadAverage() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}

// kernelRelease returns uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// pinProcess moves every thread of this process to cpu (threads created
// later inherit it from their creator) and returns a function that gives
// every thread then alive the CPUs the process had before.
func pinProcess(cpu int) (restore func(), err error) {
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("reading CPU affinity: %w", err)
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := setAllThreads(&set); err != nil {
		_ = setAllThreads(&old)
		return nil, fmt.Errorf("pinning to CPU %d: %w", cpu, err)
	}
	return func() { _ = setAllThreads(&old) }, nil
}

// setAllThreads sets the CPU affinity of every thread of the process.
func setAllThreads(set *unix.CPUSet) error {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("listing threads: %w", err)
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("thread %d: %w", tid, err)
		}
	}
	return nil
}
