package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aibatch/aibatch/batch"
	aiclient "github.com/aibatch/aibatch/client"
	"github.com/aibatch/aibatch/wire"
)

// Scenario 11: the OpenAI-compatible gateway (cmd/gateway, a process of its
// own) against the Go client path. Its added latency: the same Poisson
// arrivals on the urgent lane, through the Go client (client.Urgent) and
// through the gateway over HTTP, to the same in-process worker with the
// instant provider; the difference of the p50s is what the gateway adds
// (HTTP, JSON in both directions, its own publish and wait). Its memory:
// o.GWWaiting HTTP requests held open at once, waiting on the batch lane of
// a stream nobody drains, and the gateway process's RSS then, once every
// wait is parked (internal/gateway/park.go) and RSS has settled, and its
// peak while they arrived (500 at a time).

// gatewayLatency is one run of the latency comparison.
type gatewayLatency struct {
	Requests     int `json:"requests_per_path"`
	ClientP50MS  num `json:"client_p50_ms"`
	ClientP99MS  num `json:"client_p99_ms"`
	GatewayP50MS num `json:"gateway_p50_ms"`
	GatewayP99MS num `json:"gateway_p99_ms"`
	AddedP50MS   num `json:"added_p50_ms"`
	// GatewayCPUUS is the gateway process's CPU time per request.
	GatewayCPUUS float64 `json:"gateway_cpu_us_per_req"`
	GatewayFirst bool    `json:"gateway_first"`
	// Parked counts the gateway's waits that lasted its ParkAfter (1s) and
	// were handed off (a sign the machine was overloaded in the run).
	Parked float64 `json:"parked"`
}

// gatewayMemory is one run of the memory measurement.
type gatewayMemory struct {
	Waiting   int     `json:"waiting"`
	IdleMiB   float64 `json:"idle_rss_mib"`
	RSSMiB    float64 `json:"rss_mib"`
	PeakMiB   float64 `json:"peak_rss_mib"`
	KiBPerReq float64 `json:"kib_per_waiting_request"`
	RampS     float64 `json:"ramp_s"`
	// Runtime is what the gateway's Go runtime reports then
	// (go_memstats_heap_inuse_bytes, go_memstats_stack_inuse_bytes,
	// go_goroutines …).
	Runtime map[string]float64 `json:"runtime"`
}

func scenarioGateway(ctx context.Context, o *options, r *report) error {
	root := filepath.Join(o.TmpDir, "gateway")
	defer os.RemoveAll(root)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	bin, err := buildBinary(ctx, root, "gateway")
	if err != nil {
		return err
	}
	var lat []gatewayLatency
	for run := range o.Runs {
		l, err := runGatewayLatency(ctx, o, root, bin, o.Seed+uint64(run)*15485863, run%2 == 1)
		if err != nil {
			return fmt.Errorf("latency run %d: %w", run+1, err)
		}
		lat = append(lat, l)
		r.progress("12 gateway: run %d, %d requests per path at %g/s: client p50 %.2fms p99 %.2fms, gateway p50 %.2fms p99 %.2fms: +%.2fms at p50; gateway CPU %.0fµs/req, %.0f waits parked",
			run+1, l.Requests, o.GWRate, l.ClientP50MS, l.ClientP99MS, l.GatewayP50MS, l.GatewayP99MS, l.AddedP50MS, l.GatewayCPUUS, l.Parked)
	}
	var mem []gatewayMemory
	for run := range o.MemRuns {
		m, err := runGatewayMemory(ctx, o, root, bin)
		if err != nil {
			return fmt.Errorf("memory run %d: %w", run+1, err)
		}
		mem = append(mem, m)
		r.progress("12 gateway: run %d, %d requests waiting: RSS %.1f MiB (idle %.1f MiB, peak %.1f MiB, %.1f KiB per waiting request), all open after %.1fs",
			run+1, m.Waiting, m.RSSMiB, m.IdleMiB, m.PeakMiB, m.KiBPerReq, m.RampS)
	}
	pick := func(f func(gatewayLatency) float64) []float64 {
		var v []float64
		for _, l := range lat {
			v = append(v, f(l))
		}
		return v
	}
	pickMem := func(f func(gatewayMemory) float64) []float64 {
		var v []float64
		for _, m := range mem {
			v = append(v, f(m))
		}
		return v
	}
	const sc = "12 gateway"
	at := fmt.Sprintf("at %g req/s, urgent lane", o.GWRate)
	r.add(row{Scenario: sc, Measure: "Go client path p50 " + at, Unit: "ms", summary: summarize(pick(func(l gatewayLatency) float64 { return float64(l.ClientP50MS) }))})
	r.add(row{Scenario: sc, Measure: "gateway path p50 " + at, Unit: "ms", summary: summarize(pick(func(l gatewayLatency) float64 { return float64(l.GatewayP50MS) }))})
	r.add(row{Scenario: sc, Measure: "gateway added at p50 " + at, Unit: "ms", summary: summarize(pick(func(l gatewayLatency) float64 { return float64(l.AddedP50MS) })), Target: &target{op: "<=", value: 2}})
	r.add(row{Scenario: sc, Measure: "gateway path p99 " + at, Unit: "ms", summary: summarize(pick(func(l gatewayLatency) float64 { return float64(l.GatewayP99MS) }))})
	r.add(row{Scenario: sc, Measure: "gateway process CPU per request", Unit: "us", summary: summarize(pick(func(l gatewayLatency) float64 { return l.GatewayCPUUS }))})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("gateway RSS with %s HTTP requests waiting", countLabel(o.GWWaiting)), Unit: "MiB",
		summary: summarize(pickMem(func(m gatewayMemory) float64 { return m.RSSMiB })), Target: below(200e6 / (1 << 20))}) // 200 MB
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("gateway peak RSS while %s requests arrived", countLabel(o.GWWaiting)), Unit: "MiB",
		summary: summarize(pickMem(func(m gatewayMemory) float64 { return m.PeakMiB }))})
	r.add(row{Scenario: sc, Measure: "gateway RSS per waiting request", Unit: "KiB", summary: summarize(pickMem(func(m gatewayMemory) float64 { return m.KiBPerReq }))})
	r.detail("gateway", map[string]any{"rate": o.GWRate, "duration_s": o.GWDuration.Seconds(), "request_bytes": o.RequestSize,
		"latency": lat, "memory": mem})
	return nil
}

// buildBinary builds cmd/<name> into dir and returns the binary's path.
func buildBinary(ctx context.Context, dir, name string) (string, error) {
	bin := filepath.Join(dir, "aibatch-"+name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/aibatch/aibatch/cmd/"+name)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build cmd/%s: %w", name, err)
	}
	return bin, nil
}

// gatewayProcess is the gateway binary running, without keys on a
// loopback port of its own.
type gatewayProcess struct {
	cmd  *exec.Cmd
	base string
	log  *os.File
	done chan struct{}
}

func startGatewayProcess(ctx context.Context, bin, dir, natsURL string, timeout time.Duration) (*gatewayProcess, error) {
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "gateway.log"))
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "NATS_URL=" + natsURL,
		"GATEWAY_ADDR=" + addr, "GATEWAY_TIMEOUT=" + timeout.String(), "LOG_LEVEL=warn", "SHUTDOWN_TIMEOUT=1s"}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start gateway: %w", err)
	}
	g := &gatewayProcess{cmd: cmd, base: "http://" + addr, log: log, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(g.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(g.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			g.stop()
			return nil, fmt.Errorf("gateway not ready within 30s; log %s", log.Name())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *gatewayProcess) stop() {
	defer g.log.Close()
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
}

// status reads a field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
func (g *gatewayProcess) status(field string) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return float64(v), err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, g.cmd.Process.Pid)
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// poissonCalls calls do at the arrivals of a Poisson process of rate for
// d, each in a goroutine of its own, and returns each call's latency in
// order of arrival once all have returned.
func poissonCalls(ctx context.Context, rate float64, d time.Duration, seed uint64, do func(i int) error) ([]time.Duration, error) {
	p := newPoisson(rate, seed)
	var (
		mu       sync.Mutex
		lat      []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	next := start
	for i := 0; ; i++ {
		next = next.Add(p.next())
		if next.Sub(start) >= d {
			break
		}
		if wait := time.Until(next); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				wg.Wait()
				return nil, ctx.Err()
			}
		}
		wg.Go(func() {
			t0 := time.Now()
			err := do(i)
			took := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("request %d: %w", i, err)
			}
			lat = append(lat, took)
		})
	}
	wg.Wait()
	return lat, firstErr
}

// gatewayInput is request i's prompt, padded to about size bytes.
func gatewayInput(i, size int) string {
	return strings.TrimSuffix(strings.TrimPrefix(string(requestBody("g-", i, size)), `{"id":"g-`+strconv.Itoa(i)+`","input":"`), `"}`)
}

func runGatewayLatency(ctx context.Context, o *options, root, bin string, seed uint64, gatewayFirst bool) (gatewayLatency, error) {
	b, err := freshBroker(ctx, root, "gateway-latency")
	if err != nil {
		return gatewayLatency{}, err
	}
	defer b.stop(true)
	w, err := startWorker(ctx, b.url(), batch.Config{MaxBatchSize: 50}, &benchProvider{})
	if err != nil {
		return gatewayLatency{}, err
	}
	defer w.stop()
	gw, err := startGatewayProcess(ctx, bin, root, b.url(), time.Minute)
	if err != nil {
		return gatewayLatency{}, err
	}
	defer gw.stop()
	cc, err := connect(b.url(), "bench-client")
	if err != nil {
		return gatewayLatency{}, err
	}
	defer cc.close()
	cl, err := aiclient.New(cc.nc)
	if err != nil {
		return gatewayLatency{}, err
	}
	defer cl.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 4096}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}

	viaClient := func(i int) error {
		_, err := cl.Urgent(ctx, wire.Request{Input: gatewayInput(i, o.RequestSize)})
		return err
	}
	viaGateway := func(i int) error {
		body, _ := json.Marshal(map[string]any{"messages": []map[string]string{{"role": "user", "content": gatewayInput(i, o.RequestSize)}}})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, gw.base+"/v1/chat/completions", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Batch-Priority", "urgent")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("gateway answered %d: %s", resp.StatusCode, out)
		}
		return nil
	}
	// Warm both paths up: connections, buffers, the worker's lanes.
	for _, do := range []func(int) error{viaClient, viaGateway} {
		if _, err := poissonCalls(ctx, o.GWRate, time.Second, seed+1, do); err != nil {
			return gatewayLatency{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	measure := func(do func(int) error) ([]time.Duration, error) {
		lat, err := poissonCalls(ctx, o.GWRate, o.GWDuration, seed, do)
		slices.Sort(lat)
		return lat, err
	}
	var clientLat, gwLat []time.Duration
	var cpuGW time.Duration
	measureGateway := func() error {
		c0, err := procCPU(gw.cmd.Process.Pid)
		if err != nil {
			return err
		}
		gwLat, err = measure(viaGateway)
		c1, cerr := procCPU(gw.cmd.Process.Pid)
		if cerr != nil {
			return cerr
		}
		cpuGW = c1 - c0
		return err
	}
	if gatewayFirst {
		if err := measureGateway(); err != nil {
			return gatewayLatency{}, err
		}
		if clientLat, err = measure(viaClient); err != nil {
			return gatewayLatency{}, err
		}
	} else {
		if clientLat, err = measure(viaClient); err != nil {
			return gatewayLatency{}, err
		}
		if err := measureGateway(); err != nil {
			return gatewayLatency{}, err
		}
	}
	if len(clientLat) == 0 || len(gwLat) == 0 {
		return gatewayLatency{}, errors.New("no request measured")
	}
	res := gatewayLatency{
		Requests:    len(gwLat),
		ClientP50MS: num(percentileMS(clientLat, 50)), ClientP99MS: num(percentileMS(clientLat, 99)),
		GatewayP50MS: num(percentileMS(gwLat, 50)), GatewayP99MS: num(percentileMS(gwLat, 99)),
		GatewayCPUUS: float64(cpuGW) / float64(len(gwLat)) / float64(time.Microsecond),
		GatewayFirst: gatewayFirst,
	}
	res.AddedP50MS = res.GatewayP50MS - res.ClientP50MS
	rt, err := runtimeMetrics(gw)
	if err != nil {
		return gatewayLatency{}, err
	}
	res.Parked = rt[`aibatch_gateway_parked_total{endpoint="chat_completions"}`]
	return res, nil
}

func runGatewayMemory(ctx context.Context, o *options, root, bin string) (gatewayMemory, error) {
	b, err := freshBroker(ctx, root, "gateway-memory")
	if err != nil {
		return gatewayMemory{}, err
	}
	defer b.stop(true)
	// No worker: every request waits in the stream.
	gw, err := startGatewayProcess(ctx, bin, root, b.url(), 10*time.Minute)
	if err != nil {
		return gatewayMemory{}, err
	}
	defer gw.stop()
	idle, err := gw.status("VmRSS")
	if err != nil {
		return gatewayMemory{}, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: o.GWWaiting, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	waitCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	body := []byte(`{"model":"bench-model","messages":[{"role":"system","content":"Classify the observation."},{"role":"user","content":"` + gatewayInput(0, o.RequestSize) + `"}]}`)
	start := time.Now()
	// In waves, so the listen backlog is not overrun.
	const wave = 500
	for sent := 0; sent < o.GWWaiting; sent += wave {
		for range min(wave, o.GWWaiting-sent) {
			wg.Go(func() {
				req, err := http.NewRequestWithContext(waitCtx, http.MethodPost, gw.base+"/v1/chat/completions", bytes.NewReader(body))
				if err != nil {
					return
				}
				if resp, err := hc.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
		if err := waitWaiting(ctx, gw, sent+min(wave, o.GWWaiting-sent), time.Minute); err != nil {
			return gatewayMemory{}, err
		}
	}
	ramp := time.Since(start)
	// Steady state: every wait parked (net/http's goroutines gone), and
	// the runtime has returned what it freed: RSS has not fallen for 2s.
	rss, err := steadyRSS(ctx, gw, 2*time.Second, 30*time.Second)
	if err != nil {
		return gatewayMemory{}, err
	}
	peak, err := gw.status("VmHWM")
	if err != nil {
		return gatewayMemory{}, err
	}
	runtime, err := runtimeMetrics(gw)
	if err != nil {
		return gatewayMemory{}, err
	}
	return gatewayMemory{
		Waiting: o.GWWaiting, IdleMiB: idle / 1024, RSSMiB: rss / 1024, PeakMiB: peak / 1024,
		KiBPerReq: (rss - idle) / float64(o.GWWaiting), RampS: ramp.Seconds(), Runtime: runtime,
	}, nil
}

// steadyRSS polls the gateway's RSS until it has not fallen for quiet, at
// most for limit, and returns it in KiB.
func steadyRSS(ctx context.Context, gw *gatewayProcess, quiet, limit time.Duration) (float64, error) {
	low, since := 0.0, time.Now()
	deadline := time.Now().Add(limit)
	for {
		rss, err := gw.status("VmRSS")
		if err != nil {
			return 0, err
		}
		if low == 0 || rss < low {
			low, since = rss, time.Now()
		}
		if time.Since(since) >= quiet || time.Now().After(deadline) {
			return rss, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitWaiting polls the gateway's /metrics until n chat completions wait.
func waitWaiting(ctx context.Context, gw *gatewayProcess, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	const metric = `aibatch_gateway_waiting_requests{endpoint="chat_completions"} `
	got := 0.0
	for {
		resp, err := http.Get(gw.base + "/metrics")
		if err == nil {
			text, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for line := range strings.SplitSeq(string(text), "\n") {
				if v, ok := strings.CutPrefix(line, metric); ok {
					got, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
				}
			}
			if got >= float64(n) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%.0f of %d requests waiting after %s", got, n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runtimeMetrics reads the Go runtime's memory figures, the goroutine
// count and the parked waits from the gateway's /metrics.
func runtimeMetrics(gw *gatewayProcess) (map[string]float64, error) {
	resp, err := http.Get(gw.base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(string(text), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok || !(strings.HasPrefix(name, "go_memstats_") && strings.HasSuffix(name, "_bytes") || name == "go_goroutines" ||
			strings.HasPrefix(name, "aibatch_gateway_parked_total")) {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = f
		}
	}
	return out, nil
}
