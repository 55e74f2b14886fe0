package main

import (
	"encoding/json"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		in               []float64
		median, min, max float64
	}{
		{"one", []float64{3}, 3, 3, 3},
		{"odd, unsorted", []float64{5, 1, 3}, 3, 1, 5},
		{"even: mean of the middle two", []float64{4, 1, 3, 2}, 2.5, 1, 4},
		{"NaN runs left out", []float64{math.NaN(), 7, 9, math.NaN(), 8}, 8, 7, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := slices.Clone(tt.in)
			s := summarize(in)
			if s.Median != tt.median || s.Min != tt.min || s.Max != tt.max {
				t.Errorf("summarize(%v) = median %v min %v max %v, want %v %v %v", tt.in, s.Median, s.Min, s.Max, tt.median, tt.min, tt.max)
			}
			if len(s.Runs) != len(tt.in) {
				t.Errorf("runs kept: %d, want %d", len(s.Runs), len(tt.in))
			}
			if !slices.EqualFunc(in, tt.in, func(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }) {
				t.Errorf("summarize changed its input: %v", in)
			}
		})
	}
	t.Run("nothing", func(t *testing.T) {
		t.Parallel()
		s := summarize([]float64{math.NaN()})
		if !math.IsNaN(s.Median) || !math.IsNaN(s.Min) || !math.IsNaN(s.Max) {
			t.Errorf("summarize(NaN) = %+v, want NaN everywhere", s)
		}
	})
}

func TestPercentileMS(t *testing.T) {
	t.Parallel()
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond // 1ms .. 100ms
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   float64
	}{
		{"p50 of 1..100", hundred, 50, 50},
		{"p99 of 1..100", hundred, 99, 99},
		{"p100 is the max", hundred, 100, 100},
		{"p0 is the min", hundred, 0, 1},
		{"nearest rank rounds up", []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond}, 50, 20},
		{"p99 of few is the max", []time.Duration{time.Millisecond, 2 * time.Millisecond}, 99, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := percentileMS(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentileMS(p%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
	if got := percentileMS(nil, 50); !math.IsNaN(got) {
		t.Errorf("percentileMS(empty) = %v, want NaN", got)
	}
}

func TestPoissonMeanRate(t *testing.T) {
	t.Parallel()
	for _, rate := range []float64{1, 100, 1000} {
		p := newPoisson(rate, 42)
		const n = 20_000
		var total time.Duration
		for range n {
			total += p.next()
		}
		got := n / total.Seconds()
		if math.Abs(got-rate)/rate > 0.05 {
			t.Errorf("rate %v: %d arrivals took %s, a rate of %.1f", rate, n, total, got)
		}
	}
	a, b := newPoisson(10, 7), newPoisson(10, 7)
	for range 10 {
		if x, y := a.next(), b.next(); x != y {
			t.Fatalf("same seed, different gaps: %s and %s", x, y)
		}
	}
}

func TestTarget(t *testing.T) {
	t.Parallel()
	s := summary{Median: 0.85, Min: 0.7, Max: 0.9}
	tests := []struct {
		name string
		t    *target
		s    summary
		want bool
	}{
		{"median at least: met", atLeast(0.8), s, true},
		{"median at least: missed", atLeast(0.86), s, false},
		{"median at least: equal is met", atLeast(0.85), s, true},
		{"below: met", below(1), s, true},
		{"below: equal is missed", below(0.85), s, false},
		{"never: judged on the worst run", never(0.88), s, false},
		{"never: equal is met", never(0.9), s, true},
		{"exactly: every run", exactly(3), summary{Median: 3, Min: 3, Max: 3}, true},
		{"exactly: one run off is missed", exactly(3), summary{Median: 3, Min: 3, Max: 4}, false},
		{"NaN never meets", atLeast(0), summary{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.t.met(tt.s); got != tt.want {
				t.Errorf("%s met(%+v) = %v, want %v", tt.t.text("ratio"), tt.s, got, tt.want)
			}
		})
	}
}

func TestFormatValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    float64
		unit string
		want string
	}{
		{36512.4, "req/s", "36,512"},
		{999, "req/s", "999"},
		{1234567, "ns/op", "1,234,567"},
		{0.8123, "ratio", "0.81"},
		{0.0204, "calls/req", "0.0204"},
		{97.66, "%", "97.7%"},
		{16.62, "ms", "16.6"},
		{math.NaN(), "ms", "-"},
		{1000, "count", "1,000"},
		{260, "calls/1k req", "260.0"},
	}
	for _, tt := range tests {
		if got := formatValue(tt.v, tt.unit); got != tt.want {
			t.Errorf("formatValue(%v, %q) = %q, want %q", tt.v, tt.unit, got, tt.want)
		}
	}
}

func TestRequestBody(t *testing.T) {
	t.Parallel()
	for _, size := range []int{100, 500, 1024} {
		body := requestBody("b-", 12345, size)
		if len(body) != size {
			t.Errorf("size %d: body is %d bytes", size, len(body))
		}
		var r struct{ ID, Input string }
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("size %d: not JSON: %v", size, err)
		}
		if r.ID != "b-12345" || strings.TrimSpace(r.Input) == "" {
			t.Errorf("size %d: id %q, input %q", size, r.ID, r.Input)
		}
	}
}

func TestParseMicro(t *testing.T) {
	t.Parallel()
	out := `goos: linux
goarch: amd64
pkg: github.com/aibatch/aibatch/batch
cpu: AMD EPYC
BenchmarkDecodeRequest-2   	   45332	      5431 ns/op	       840.0 B/req	         9.000 allocs/req	      5431 ns/req	     840 B/op	       9 allocs/op
BenchmarkDecodeRequest-2   	   45000	      5500 ns/op	       840.0 B/req	         9.000 allocs/req	      5500 ns/req	     840 B/op	       9 allocs/op
PASS
ok  	github.com/aibatch/aibatch/batch	1.876s
pkg: github.com/aibatch/aibatch/jetstream
BenchmarkBacklog-2   	   10000	    124255 ns/op	   16030 B/op	     147 allocs/op
BenchmarkNoise this is not a result line
`
	got, err := parseMicro(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("parsed %d benchmarks, want 2: %+v", len(got), got)
	}
	d := got[0]
	if d.Pkg != "github.com/aibatch/aibatch/batch" || d.Name != "DecodeRequest" {
		t.Errorf("first: %s %s", d.Pkg, d.Name)
	}
	if !slices.Equal(d.Metrics["ns/op"], []float64{5431, 5500}) || !slices.Equal(d.Metrics["allocs/req"], []float64{9, 9}) {
		t.Errorf("first metrics: %v", d.Metrics)
	}
	b := got[1]
	if b.Pkg != "github.com/aibatch/aibatch/jetstream" || b.Name != "Backlog" || !slices.Equal(b.Metrics["allocs/op"], []float64{147}) {
		t.Errorf("second: %+v", b)
	}
}

func TestParseOptionsQuick(t *testing.T) {
	t.Parallel()
	full, err := parseOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	quick, err := parseOptions([]string{"-quick", "-tp-requests", "777"})
	if err != nil {
		t.Fatal(err)
	}
	if quick.Runs != 1 || quick.MemRequests >= full.MemRequests || quick.RateDuration >= full.RateDuration ||
		quick.E2ERequests >= full.E2ERequests || quick.MixSteadyDuration >= full.MixSteadyDuration || quick.MixLowDuration >= full.MixLowDuration {
		t.Errorf("-quick kept full sizes: %+v", quick)
	}
	if quick.TPRequests != 777 {
		t.Errorf("-quick overrode an explicit flag: tp-requests %d", quick.TPRequests)
	}
	if quick.Out == full.Out {
		t.Errorf("-quick writes over the full results file %s", full.Out)
	}
	for _, bad := range [][]string{{"-only", "nope"}, {"-inflights", "0"}, {"-inflight", "0"}, {"-mix-workers", "0"}, {"-mix-max-wait", "0s"}, {"-rates", "x"}, {"extra"}} {
		if _, err := parseOptions(bad); err == nil {
			t.Errorf("parseOptions(%q) accepted", bad)
		}
	}
}

func TestCountLabel(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]string{1_000_000: "1M", 2_000_000: "2M", 200_000: "200k", 1_500_000: "1500k", 5000: "5k", 300: "300", 1234: "1234"} {
		if got := countLabel(n); got != want {
			t.Errorf("countLabel(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestJSONHoldsNaNAsNull(t *testing.T) {
	t.Parallel()
	s := summarize([]float64{math.NaN(), 2})
	b, err := json.Marshal(struct {
		S summary `json:"s"`
		N num     `json:"n"`
	}{s, num(math.NaN())})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"s":{"median":2,"min":2,"max":2,"runs":[null,2]},"n":null}`
	if string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}

func TestOptionsJSONDurationsAsText(t *testing.T) {
	t.Parallel()
	o, err := parseOptions([]string{"-rate-duration", "90s"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["rate_duration"] != "1m30s" || m["runs"] != float64(3) {
		t.Errorf("options JSON: rate_duration %v, runs %v in %s", m["rate_duration"], m["runs"], b)
	}
}

func TestRowJSONIsFlat(t *testing.T) {
	t.Parallel()
	r := newReport(&options{Runs: 1}, io.Discard)
	r.add(row{Scenario: "1 x", Measure: "m", Unit: "ratio", summary: summarize([]float64{0.5, math.NaN()}), Target: atLeast(0.8)})
	b, err := json.Marshal(r.Rows[0])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"scenario":"1 x","measure":"m","unit":"ratio","median":0.5,"min":0.5,"max":0.5,"runs":[0.5,null],"target":"\u003e= 0.80","met":false}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

// splitDepth follows batch/caller.go's halving (m/2 and m - m/2): it is
// ceil(log2 n), the bound scenario 8 prints.
func TestSplitDepth(t *testing.T) {
	t.Parallel()
	for n := 1; n <= 1000; n++ {
		want := int(math.Ceil(math.Log2(float64(n))))
		if got := splitDepth(n); got != want {
			t.Errorf("splitDepth(%d) = %d, want ceil(log2 %d) = %d", n, got, n, want)
		}
	}
	if got := splitDepth(50); got != 6 {
		t.Errorf("splitDepth(50) = %d, want 6 (50 25 13 7 4 2 1)", got)
	}
}

// Refused inputs are one in every, and every input is unique.
func TestFaultInputs(t *testing.T) {
	t.Parallel()
	n := 0
	seen := map[string]bool{}
	for i := range 1000 {
		if refused(i, 50) {
			n++
		}
		in := faultInput(i, 460)
		if len(in) != 460 || seen[in] {
			t.Fatalf("input %d: %d bytes, repeated %v", i, len(in), seen[in])
		}
		seen[in] = true
	}
	if n != 20 {
		t.Errorf("refused %d of 1000, want 20", n)
	}
}
