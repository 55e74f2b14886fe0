package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// fault is what the fake OpenAI server does wrong in one drain.
type fault string

const (
	faultNone    fault = "fault-free"
	faultCap     fault = "output-cap"
	faultRefusal fault = "refusal"
)

// faultResult is what one drain through the real openai provider and the
// fake OpenAI server measured. Calls is the figure reported: chat
// completion calls the fake received. The outcomes are read back from the
// broker: the results stream and the dead-letter stream.
type faultResult struct {
	Fault    fault `json:"fault"`
	Requests int   `json:"requests"`
	// Calls counts the chat completion calls the fake received;
	// EngineCalls the provider calls the engine counted (Stats.APICalls).
	Calls       int64 `json:"calls"`
	EngineCalls int64 `json:"engine_calls"`
	// OK counts ok results whose output is the fake's answer to the
	// request's own input; WrongOutput ok results whose output is not.
	OK          int `json:"ok"`
	WrongOutput int `json:"wrong_output"`
	// Refused counts error results saying the model refused the request;
	// OtherErrors every other error result.
	Refused     int    `json:"refused"`
	OtherErrors int    `json:"other_errors"`
	DeadLetters uint64 `json:"dead_letters"`
	// CallSizes maps a call's size (requests it carried) to how many calls
	// had it, as the fake saw them.
	CallSizes map[int]int `json:"call_sizes"`
	// GroupSize is the group's call size when the drain ended.
	GroupSize int     `json:"group_size_at_end"`
	Seconds   float64 `json:"seconds"`
}

// faultInput is the input of request i: unique, so the fake can refuse one
// input and the harness can check every answer belongs to its request, and
// about size bytes long.
func faultInput(i, size int) string {
	head := "request " + strconv.Itoa(i) + ": "
	const text = "observation: the sensor reported a reading within the expected range; "
	var sb strings.Builder
	sb.WriteString(head)
	for sb.Len() < size {
		sb.WriteString(text[:min(len(text), size-sb.Len())])
	}
	return sb.String()
}

// faultMaxWait is MAX_WAIT in scenarios 7 and 8.
const faultMaxWait = time.Second

// faultInputBytes is the input size of the fault scenarios: the request
// body is about o.RequestSize bytes.
func faultInputBytes(o *options) int { return max(o.RequestSize-40, 16) }

// refused reports whether request i's input is one the fake refuses: one in
// every, the last of each run of every requests.
func refused(i, every int) bool { return every > 0 && i%every == every-1 }

// runFaultCell publishes o.FaultRequests requests as one backlog, then
// drains it with a worker whose provider is the real openai provider
// calling a fake OpenAI server over HTTP on loopback, the fake misbehaving
// as f says.
func runFaultCell(ctx context.Context, o *options, root string, f fault) (faultResult, error) {
	n, size := o.FaultRequests, faultInputBytes(o)
	b, err := freshBroker(ctx, root, string(f))
	if err != nil {
		return faultResult{}, err
	}
	defer b.stop(true)

	fake := openaitest.NewServer()
	defer fake.Close()
	switch f {
	case faultCap:
		fake.SetOutputCap(o.FaultCap)
	case faultRefusal:
		for i := range n {
			if refused(i, o.RefuseEvery) {
				fake.RefuseInput(faultInput(i, size))
			}
		}
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	defer transport.CloseIdleConnections()
	prov, err := openai.New(openai.Config{APIKey: "bench-key-not-secret", BaseURL: fake.URL, HTTPClient: &http.Client{Transport: transport}})
	if err != nil {
		return faultResult{}, err
	}

	pc, err := connect(b.url(), "bench-producer")
	if err != nil {
		return faultResult{}, err
	}
	defer pc.close()
	inputs := make([]string, n)
	err = pc.publishBodies(ctx, bulkSubject, 0, n, func(i int) []byte {
		inputs[i] = faultInput(i, size)
		body, _ := json.Marshal(struct {
			ID    string `json:"id"`
			Input string `json:"input"`
		}{"f-" + strconv.Itoa(i), inputs[i]})
		return body
	})
	if err != nil {
		return faultResult{}, err
	}

	// The engine holds fetched requests by group until their group fills a
	// call; once the output cap has shrunk the group's size, what is left
	// of the backlog would wait for peers until MAX_WAIT (default 5m), and
	// none come. A 1s MAX_WAIT sends it on.
	w, err := startWorker(ctx, b.url(), batch.Config{MaxBatchSize: o.FaultBatch, MaxWait: faultMaxWait}, prov)
	if err != nil {
		return faultResult{}, err
	}
	start := time.Now()
	end, err := w.waitFinished(ctx, int64(n), 2*time.Minute)
	st := w.engine.Stats()
	if serr := w.stop(); err == nil && serr != nil {
		err = fmt.Errorf("stop worker: %w", serr)
	}
	if err == nil {
		// Every request acked and one result each: the dead letters, stored
		// before the ack, are in too.
		err = verifyDrained(ctx, b.url(), n, n)
	}
	if err != nil {
		return faultResult{}, err
	}
	res := faultResult{Fault: f, Requests: n, Calls: fake.Calls(), EngineCalls: st.APICalls,
		CallSizes: make(map[int]int), Seconds: end.Sub(start).Seconds()}
	for _, s := range fake.CallSizes() {
		res.CallSizes[s]++
	}
	for _, g := range st.Groups {
		res.GroupSize = g.Size
	}
	if err := readOutcomes(ctx, b.url(), inputs, &res); err != nil {
		return faultResult{}, err
	}
	return res, nil
}

// readOutcomes reads every result and counts the dead letters into res;
// inputs[i] is the input of request "f-<i>".
func readOutcomes(ctx context.Context, url string, inputs []string, res *faultResult) error {
	c, err := connect(url, "bench-outcomes")
	if err != nil {
		return err
	}
	defer c.close()
	t := topology()
	if res.DeadLetters, err = c.streamMsgs(ctx, t.DeadStream); err != nil {
		return err
	}
	cons, err := c.js.OrderedConsumer(ctx, t.ResultStream, natsjs.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	seen := make(map[string]bool, len(inputs))
	for len(seen) < len(inputs) {
		batch, err := cons.Fetch(min(len(inputs)-len(seen), 500), natsjs.FetchMaxWait(10*time.Second))
		if err != nil {
			return fmt.Errorf("read results: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			var r wire.Result
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				return fmt.Errorf("read result: %w", err)
			}
			i, err := strconv.Atoi(strings.TrimPrefix(r.ID, "f-"))
			if err != nil || i < 0 || i >= len(inputs) || seen[r.ID] {
				return fmt.Errorf("result for an unknown or repeated id %q", r.ID)
			}
			seen[r.ID] = true
			switch {
			case r.Status == wire.StatusOK && r.Output == openaitest.Answer(inputs[i]):
				res.OK++
			case r.Status == wire.StatusOK:
				res.WrongOutput++
			case strings.Contains(r.Error, "refused"):
				res.Refused++
			default:
				res.OtherErrors++
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, natsjs.ErrNoMessages) {
			return fmt.Errorf("read results: %w", err)
		}
		if got == 0 {
			return fmt.Errorf("read results: %d of %d after waiting 10s", len(seen), len(inputs))
		}
	}
	return nil
}

// splitDepth is how many halvings take a call of n requests down to one
// request on the longest path: batch/caller.go's split cuts a call of m
// into m/2 and m - m/2, so the longer part has ceil(m/2). It is
// ceil(log2 n).
func splitDepth(n int) int {
	d := 0
	for ; n > 1; d++ {
		n -= n / 2
	}
	return d
}

// ceilDiv is a/b rounded up.
func ceilDiv(a, b int) int { return (a + b - 1) / b }

// runFaultPairs runs o.Runs pairs of drains, one fault-free and one with f,
// the order rotating every run.
func runFaultPairs(ctx context.Context, o *options, r *report, sc string, f fault) (clean, faulty []faultResult, err error) {
	root := filepath.Join(o.TmpDir, string(f))
	defer os.RemoveAll(root)
	for run := range o.Runs {
		order := []fault{faultNone, f}
		if run%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, side := range order {
			res, err := runFaultCell(ctx, o, root, side)
			if err != nil {
				return nil, nil, fmt.Errorf("%s run %d: %w", side, run+1, err)
			}
			if side == faultNone {
				clean = append(clean, res)
			} else {
				faulty = append(faulty, res)
			}
			r.progress("%s: run %d %-10s %4d requests, %4d calls (engine %d), ok %d, refused %d, other errors %d, wrong outputs %d, dead letters %d, group size at end %d, %.1fs",
				sc, run+1, side, res.Requests, res.Calls, res.EngineCalls, res.OK, res.Refused, res.OtherErrors,
				res.WrongOutput, res.DeadLetters, res.GroupSize, res.Seconds)
		}
	}
	return clean, faulty, nil
}

// per1k is calls per 1,000 requests of res.
func per1k(res faultResult) float64 { return float64(res.Calls) * 1000 / float64(res.Requests) }

// faultFigures collects the figures of one side over the runs.
func faultFigures(results []faultResult) (calls, ok, refusedN, dead []float64) {
	for _, res := range results {
		calls = append(calls, per1k(res))
		ok = append(ok, float64(res.OK))
		refusedN = append(refusedN, float64(res.Refused))
		dead = append(dead, float64(res.DeadLetters))
	}
	return calls, ok, refusedN, dead
}

// scenarioFaultCap is scenario 7: the provider calls a backlog costs when
// the model's answers fit only o.FaultCap items, against the fewest calls
// that can carry the answers, ceil(requests / cap).
func scenarioFaultCap(ctx context.Context, o *options, r *report) error {
	const sc = "7 output cap"
	clean, faulty, err := runFaultPairs(ctx, o, r, sc, faultCap)
	if err != nil {
		return err
	}
	n := o.FaultRequests
	ideal := ceilDiv(n, o.FaultCap)
	calls, ok, _, dead := faultFigures(faulty)
	cleanCalls, _, _, _ := faultFigures(clean)
	var ratio []float64
	for _, c := range calls {
		ratio = append(ratio, c*float64(n)/1000/float64(ideal))
	}
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("answers fit %d items, MAX_BATCH_SIZE %d, MAX_WAIT %s, %s backlog", o.FaultCap, o.FaultBatch, faultMaxWait, countLabel(n)), Unit: "calls/1k req", summary: summarize(calls)})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("  of ideal ceil(%d/%d) = %d calls", n, o.FaultCap, ideal), Unit: "ratio", summary: summarize(ratio)})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("  fault-free, same run (ideal ceil(%d/%d) = %d calls)", n, o.FaultBatch, ceilDiv(n, o.FaultBatch)), Unit: "calls/1k req", summary: summarize(cleanCalls)})
	r.add(row{Scenario: sc, Measure: "  ok results, each its own input's answer", Unit: "count", summary: summarize(ok), Target: exactly(float64(n))})
	r.add(row{Scenario: sc, Measure: "  dead letters", Unit: "count", summary: summarize(dead), Target: exactly(0)})
	r.detail("fault_cap", map[string]any{
		"requests": n, "max_batch_size": o.FaultBatch, "output_cap_items": o.FaultCap, "ideal_calls": ideal,
		"max_wait": faultMaxWait.String(), "input_bytes": faultInputBytes(o), "fault_free": clean, "output_cap": faulty,
	})
	return nil
}

// scenarioFaultRefusal is scenario 8: the provider calls a backlog costs
// when the model refuses one input in o.RefuseEvery, against the bound the
// engine's halving allows: a refused input's call is split in halves down
// to one request, two calls per halving on its path, at most
// 2 x ceil(log2 MAX_BATCH_SIZE) calls more than the fault-free ideal.
func scenarioFaultRefusal(ctx context.Context, o *options, r *report) error {
	const sc = "8 refusals"
	clean, faulty, err := runFaultPairs(ctx, o, r, sc, faultRefusal)
	if err != nil {
		return err
	}
	n := o.FaultRequests
	nRefused := 0
	for i := range n {
		if refused(i, o.RefuseEvery) {
			nRefused++
		}
	}
	ideal := ceilDiv(n, o.FaultBatch)
	depth := splitDepth(o.FaultBatch)
	bound := ideal + nRefused*2*depth
	calls, ok, ref, dead := faultFigures(faulty)
	cleanCalls, _, _, _ := faultFigures(clean)
	per1kBound := float64(bound) * 1000 / float64(n)
	var ratio []float64
	for _, c := range calls {
		ratio = append(ratio, c/per1kBound)
	}
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("1 input in %d refused, MAX_BATCH_SIZE %d, MAX_WAIT %s, %s backlog", o.RefuseEvery, o.FaultBatch, faultMaxWait, countLabel(n)), Unit: "calls/1k req", summary: summarize(calls), Target: never(per1kBound)})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("  of bound %d + %d x 2 x ceil(log2 %d) = %d + %d x %d = %d calls", ideal, nRefused, o.FaultBatch, ideal, nRefused, 2*depth, bound), Unit: "ratio", summary: summarize(ratio)})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("  fault-free, same run (ideal ceil(%d/%d) = %d calls)", n, o.FaultBatch, ideal), Unit: "calls/1k req", summary: summarize(cleanCalls)})
	r.add(row{Scenario: sc, Measure: "  ok results, each its own input's answer", Unit: "count", summary: summarize(ok), Target: exactly(float64(n - nRefused))})
	r.add(row{Scenario: sc, Measure: "  refused results", Unit: "count", summary: summarize(ref), Target: exactly(float64(nRefused))})
	r.add(row{Scenario: sc, Measure: "  dead letters", Unit: "count", summary: summarize(dead), Target: exactly(float64(nRefused))})
	r.detail("fault_refusal", map[string]any{
		"requests": n, "max_batch_size": o.FaultBatch, "refuse_every": o.RefuseEvery, "refused_inputs": nRefused,
		"ideal_calls": ideal, "split_depth": depth, "bound_calls": bound,
		"input_bytes": faultInputBytes(o), "fault_free": clean, "refusal": faulty,
	})
	return nil
}
