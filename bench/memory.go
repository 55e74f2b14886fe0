package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aibatch/aibatch/batch"
)

// childCommand is the subcommand the harness re-executes itself with to run
// one drainer (the in-process worker or a broker loop) in a process of its
// own: scenario 5, and the loops of scenario 9.
const childCommand = "drain-child"

// childReport is what a drain child prints on stdout when done.
type childReport struct {
	Side    string  `json:"side"`
	N       int     `json:"requests"`
	Seconds float64 `json:"seconds"`
	// VmHWMKiB is the child's peak RSS from /proc/self/status, read by the
	// child when done. It is the figure reported: the kernel resets it at
	// exec, so it covers only the child's own program.
	VmHWMKiB int64 `json:"vm_hwm_kib"`
	// MaxRSSKiB is the child's rusage ru_maxrss as the parent read it. Kept
	// for reference only: on Linux it also counts the parent's pages shared
	// between fork and exec, so it shows at least the parent's RSS.
	MaxRSSKiB int64 `json:"rusage_max_rss_kib"`
	// HeapSysKiB and SysKiB are the Go runtime's view at the end.
	HeapSysKiB int64 `json:"heap_sys_kib"`
	SysKiB     int64 `json:"go_sys_kib"`
	// CPUSeconds is the child's user and system CPU time, as the parent
	// read it when the child ended: the drainer alone, without the server.
	CPUSeconds float64 `json:"cpu_seconds"`
}

// childMain drains a backlog from a server started by the parent, with the
// worker or a broker loop, and prints a childReport. It returns the exit
// code.
func childMain(args []string) int {
	fs := flag.NewFlagSet(childCommand, flag.ContinueOnError)
	side := fs.String("side", "worker", "worker, pipelined or fetch-ack")
	url := fs.String("url", "", "NATS server URL")
	n := fs.Int("n", 0, "requests to drain")
	size := fs.Int("batch", 50, "batch size")
	inflight := fs.Int("inflight", batch.DefaultMaxInflight, "batches in flight (MAX_INFLIGHT_BATCHES)")
	outputBytes := fs.Int("result-output-bytes", 0, "a loop's results carry an output this long (0: the in-process worker's size)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the drain to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", childCommand, err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "%s: start CPU profile: %v\n", childCommand, err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	var elapsed time.Duration
	var err error
	switch *side {
	case "worker":
		elapsed, _, err = runWorkerDrain(ctx, *url, *n, batch.Config{MaxBatchSize: *size, MaxInflight: *inflight})
	case string(loopPipelined), string(loopFetchAck):
		var result []byte
		if *outputBytes > 0 {
			result = resultBody(*outputBytes)
		}
		elapsed, err = runLoop(ctx, *url, loopKind(*side), *n, *size, *inflight, result)
	default:
		err = fmt.Errorf("-side %q: want worker, %s or %s", *side, loopPipelined, loopFetchAck)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", childCommand, err)
		return 1
	}
	hwm, err := vmHWM()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", childCommand, err)
		return 1
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out, _ := json.Marshal(childReport{Side: *side, N: *n, Seconds: elapsed.Seconds(), VmHWMKiB: hwm,
		HeapSysKiB: int64(ms.HeapSys / 1024), SysKiB: int64(ms.Sys / 1024)})
	fmt.Println(string(out))
	return 0
}

// vmHWM reads this process's peak resident set size, in KiB.
func vmHWM() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read peak RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read peak RSS: %q: %w", rest, err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("read peak RSS: no VmHWM in /proc/self/status")
}

// runChild runs one drainer in a child process and returns its report, with
// the peak RSS and CPU time the kernel accounted to it.
func runChild(ctx context.Context, side, url string, n, size, inflight, outputBytes int, profile string) (childReport, error) {
	exe, err := os.Executable()
	if err != nil {
		return childReport{}, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, childCommand, "-side", side, "-url", url,
		"-n", strconv.Itoa(n), "-batch", strconv.Itoa(size), "-inflight", strconv.Itoa(inflight),
		"-result-output-bytes", strconv.Itoa(outputBytes), "-cpuprofile", profile)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return childReport{}, fmt.Errorf("%s child: %w", side, err)
	}
	var rep childReport
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &rep); err != nil {
		return childReport{}, fmt.Errorf("%s child: read report %q: %w", side, stdout.String(), err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rep.MaxRSSKiB = ru.Maxrss // KiB on Linux
	}
	rep.CPUSeconds = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	return rep, nil
}

// peakMiB is the child's peak RSS in MiB.
func (c childReport) peakMiB() float64 { return float64(c.VmHWMKiB) / 1024 }

// scenarioMemory is scenario 5: peak RSS of the worker and of the pipelined
// loop, each in a process of its own, draining the same large backlog from
// a server in the harness's process.
func scenarioMemory(ctx context.Context, o *options, r *report) error {
	root := filepath.Join(o.TmpDir, "memory")
	defer os.RemoveAll(root)
	seed := filepath.Join(root, "seed")
	r.progress("5 memory: seeding %d requests of %d bytes", o.MemRequests, o.MemSize)
	t0 := time.Now()
	if err := seedStore(ctx, seed, o.MemRequests, o.MemSize); err != nil {
		return err
	}
	r.progress("5 memory: seeded in %s", time.Since(t0).Round(time.Millisecond))
	sides := []string{"worker", string(loopPipelined)}
	reports := make(map[string][]childReport)
	for run := range o.MemRuns {
		for k := range sides {
			side := sides[(k+run)%len(sides)]
			b, err := fromSeed(root, seed, "run")
			if err != nil {
				return err
			}
			profile := ""
			if o.ProfileDir != "" {
				profile = filepath.Join(o.ProfileDir, fmt.Sprintf("%s-%d.cpu.pprof", side, run+1))
			}
			rep, err := runChild(ctx, side, b.url(), o.MemRequests, o.TPBatches[0], o.Inflight, 0, profile)
			if err == nil {
				err = verifyDrained(ctx, b.url(), o.MemRequests, o.MemRequests)
			}
			b.stop(true)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", side, run+1, err)
			}
			reports[side] = append(reports[side], rep)
			r.progress("5 memory: run %d %-7s peak RSS %.1f MiB (Go heap %.1f MiB), %.0f req/s, %.1fus CPU per request",
				run+1, side, rep.peakMiB(), float64(rep.HeapSysKiB)/1024, float64(rep.N)/rep.Seconds, rep.CPUSeconds*1e6/float64(rep.N))
		}
	}
	const sc = "5 memory"
	col := func(side string, f func(childReport) float64) summary {
		var v []float64
		for _, rep := range reports[side] {
			v = append(v, f(rep))
		}
		return summarize(v)
	}
	peak := func(c childReport) float64 { return c.peakMiB() }
	rate := func(c childReport) float64 { return float64(c.N) / c.Seconds }
	label := fmt.Sprintf("%s x %d B backlog", countLabel(o.MemRequests), o.MemSize)
	r.add(row{Scenario: sc, Measure: "worker peak RSS, " + label, Unit: "MiB", summary: col("worker", peak), Target: below(64)})
	r.add(row{Scenario: sc, Measure: "pipelined loop peak RSS, " + label, Unit: "MiB", summary: col(string(loopPipelined), peak)})
	r.add(row{Scenario: sc, Measure: "worker drain (own process)", Unit: "req/s", summary: col("worker", rate)})
	r.add(row{Scenario: sc, Measure: "pipelined loop drain (own process)", Unit: "req/s", summary: col(string(loopPipelined), rate)})
	cpu := func(c childReport) float64 { return c.CPUSeconds * 1e6 / float64(c.N) }
	r.add(row{Scenario: sc, Measure: "worker CPU per request (own process, no server)", Unit: "us", summary: col("worker", cpu)})
	r.add(row{Scenario: sc, Measure: "pipelined loop CPU per request (own process, no server)", Unit: "us", summary: col(string(loopPipelined), cpu)})
	r.detail("memory", map[string]any{
		"requests": o.MemRequests, "request_bytes": o.MemSize, "batch": o.TPBatches[0], "children": reports,
	})
	return nil
}
