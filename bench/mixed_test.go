package main

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/aibatch/aibatch/wire"
)

func TestIdealCalls(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_700_000_000, 0)
	at := func(secs ...float64) []time.Time {
		var out []time.Time
		for _, s := range secs {
			out = append(out, t0.Add(time.Duration(s*float64(time.Second))))
		}
		return out
	}
	burst := make([]time.Time, 100)
	for i := range burst {
		burst[i] = t0
	}
	for _, c := range []struct {
		name    string
		times   map[int][]time.Time
		batch   int
		maxWait time.Duration
		want    int
		ceil    int
	}{
		{"burst of 100 per template over 10 templates, batch 50", func() map[int][]time.Time {
			m := map[int][]time.Time{}
			for k := range 10 {
				m[k] = burst
			}
			return m
		}(), 50, 5 * time.Minute, 20, 20},
		{"one template, 101 at once", map[int][]time.Time{0: append(burst, t0)}, 50, time.Minute, 3, 3},
		// MAX_WAIT 10s: 0, 5, 10 go together (the first waited 10s), 11
		// and 20 in a second call, 40 alone.
		{"sparse arrivals cut by MAX_WAIT", map[int][]time.Time{0: at(0, 5, 10, 11, 20, 40)}, 50, 10 * time.Second, 3, 1},
		{"a full call goes before MAX_WAIT", map[int][]time.Time{0: at(0, 1, 2, 3)}, 2, time.Minute, 2, 2},
		{"templates never share a call", map[int][]time.Time{0: at(0), 1: at(0), 2: at(0)}, 50, time.Minute, 3, 3},
	} {
		got, by := idealCalls(c.times, c.batch, c.maxWait)
		sum := 0
		for _, v := range by {
			sum += v
		}
		if got != c.want || sum != got {
			t.Errorf("%s: idealCalls = %d (by template %v), want %d", c.name, got, by, c.want)
		}
		if got := ceilIdeal(c.times, c.batch); got != c.ceil {
			t.Errorf("%s: ceilIdeal = %d, want %d", c.name, got, c.ceil)
		}
	}
}

func TestMixBody(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for i := range 30 {
		var r wire.Request
		body := mixBody("m-", i, 10, 500)
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		sub := templateOf.FindStringSubmatch(r.Instructions)
		if sub == nil || sub[1] != string(rune('0'+i%10)) {
			t.Fatalf("request %d: instructions %q, want template %d", i, r.Instructions, i%10)
		}
		if len(body) < 450 || len(body) > 560 {
			t.Errorf("request %d: %d bytes, want about 500", i, len(body))
		}
		if seen[r.Input] {
			t.Errorf("request %d: input repeated", i)
		}
		seen[r.Input] = true
	}
}

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	// A name with spaces and a parenthesis; utime 250, stime 50 ticks.
	line := "4242 (aibatch (worker) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 9 0 100 0 0"
	got, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if got != 3*time.Second {
		t.Errorf("parseProcStat = %s, want 3s", got)
	}
	if _, err := parseProcStat("4242 (short) S 1 2"); err == nil {
		t.Error("a short line was accepted")
	}
	// This process's own figure reads and is not negative.
	if d, err := procCPU(os.Getpid()); err != nil || d < 0 {
		t.Errorf("procCPU(self) = %s, %v", d, err)
	}
}

func TestResultBody(t *testing.T) {
	t.Parallel()
	var r wire.Result
	if err := json.Unmarshal(resultBody(512), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Output) != 512 || r.Status != wire.StatusOK {
		t.Errorf("resultBody(512): output %d bytes, status %q", len(r.Output), r.Status)
	}
	if n := e2eOutputBytes(512); n < 450 || n > 520 {
		t.Errorf("e2eOutputBytes(512) = %d, want about the input's length plus \"processed: \"", n)
	}
}

func TestLoopKinds(t *testing.T) {
	t.Parallel()
	if !loopPipelined.publishes() || loopFetchAck.publishes() {
		t.Error("only the pipelined loop publishes results")
	}
}

// The broker loops drain a small backlog on an embedded server: every
// request acked, one result each for the pipelined loop, none for the
// fetch + ack loop, with more batches in flight than the backlog has.
func TestLoopsDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts JetStream servers")
	}
	t.Parallel()
	ctx := context.Background()
	for _, kind := range []loopKind{loopPipelined, loopFetchAck} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			b, err := freshBroker(ctx, t.TempDir(), "loop")
			if err != nil {
				t.Fatal(err)
			}
			defer b.stop(true)
			c, err := connect(b.url(), "test-producer")
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			const n = 1234
			if err := c.publishMany(ctx, bulkSubject, "t-", 0, n, 200); err != nil {
				t.Fatal(err)
			}
			if _, err := runLoop(ctx, b.url(), kind, n, 50, 4, resultBody(600)); err != nil {
				t.Fatal(err)
			}
			results := 0
			if kind.publishes() {
				results = n
			}
			if err := verifyDrained(ctx, b.url(), n, results); err != nil {
				t.Fatal(err)
			}
		})
	}
}
