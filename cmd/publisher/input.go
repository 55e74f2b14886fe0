package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/aibatch/aibatch/wire"
)

// maxInputLine is the longest JSONL line readRequests accepts.
const maxInputLine = 16 << 20

// requestDefaults are filled into requests that leave the field empty.
type requestDefaults struct {
	instructions string
	model        string
}

func (d requestDefaults) apply(r *wire.Request) {
	if r.Instructions == "" {
		r.Instructions = d.instructions
	}
	if r.Model == "" {
		r.Model = d.model
	}
}

// requestID is the id of the n-th request (from 1) of a run; it is also that
// request's Nats-Msg-Id.
func requestID(runID string, n int) string {
	return fmt.Sprintf("%s-%d", runID, n)
}

// readRequests reads one JSON request per line from r. Blank lines are
// skipped; unknown fields, a missing "input" and ids used twice are errors
// naming the line. A request without an id gets requestID(runID, n), n
// counting requests from 1, so that its result can be matched.
func readRequests(r io.Reader, runID string, defaults requestDefaults) ([]wire.Request, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxInputLine)
	var reqs []wire.Request
	seen := make(map[string]int)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		req, err := decodeRequest(b)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if req.ID == "" {
			req.ID = requestID(runID, len(reqs)+1)
		}
		if first, dup := seen[req.ID]; dup {
			return nil, fmt.Errorf("line %d: id %q already used on line %d", line, req.ID, first)
		}
		seen[req.ID] = line
		defaults.apply(&req)
		reqs = append(reqs, req)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("after %d requests: %w", len(reqs), err)
	}
	if len(reqs) == 0 {
		return nil, errors.New("no requests in input")
	}
	return reqs, nil
}

// decodeRequest decodes and validates one JSONL line.
func decodeRequest(b []byte) (wire.Request, error) {
	var req wire.Request
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return wire.Request{}, fmt.Errorf("decode request: %w", err)
	}
	if dec.More() {
		return wire.Request{}, errors.New("decode request: more than one JSON value on the line")
	}
	if bytes.Equal(bytes.TrimSpace(req.Metadata), []byte("null")) {
		req.Metadata = nil // the same as no metadata; the result then carries none
	}
	if err := req.Validate(); err != nil {
		return wire.Request{}, err
	}
	return req, nil
}

// syntheticRequests makes n short, varied sensor observations with ids
// requestID(runID, 1..n). The texts are the same on every run.
func syntheticRequests(n int, runID string, defaults requestDefaults) []wire.Request {
	rng := rand.New(rand.NewPCG(1, 2))
	directions := []string{"N", "NE", "E", "SE", "S", "SW", "W", "NW"}
	reqs := make([]wire.Request, n)
	for i := range reqs {
		seq := i + 1
		var text string
		switch rng.IntN(5) {
		case 0:
			text = fmt.Sprintf("observation %d: temperature %.1fC at sensor %d", seq, 15+rng.Float64()*15, rng.IntN(12)+1)
		case 1:
			text = fmt.Sprintf("observation %d: humidity %d%% at sensor %d", seq, 30+rng.IntN(60), rng.IntN(12)+1)
		case 2:
			text = fmt.Sprintf("observation %d: pressure %d hPa at station %d", seq, 980+rng.IntN(50), rng.IntN(5)+1)
		case 3:
			text = fmt.Sprintf("observation %d: wind %d km/h from %s at mast %d", seq, rng.IntN(80), directions[rng.IntN(len(directions))], rng.IntN(3)+1)
		default:
			text = fmt.Sprintf("observation %d: door %d opened %d times in the last hour", seq, rng.IntN(20)+1, rng.IntN(40))
		}
		reqs[i] = wire.Request{ID: requestID(runID, seq), Input: text}
		defaults.apply(&reqs[i])
	}
	return reqs
}
