package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/wire"
)

func TestReadRequestsErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, input, want string
	}{
		{name: "empty", input: "\n\n", want: "no requests"},
		{name: "no input", input: `{"id":"a"}`, want: `line 1: invalid request: "input" is missing or empty`},
		{name: "blank input", input: `{"input":"  "}`, want: `"input" is missing or empty`},
		{name: "unknown field", input: `{"input":"x","instruction":"typo"}`, want: `unknown field "instruction"`},
		{name: "not json", input: "{\"input\":\"x\"}\nhello", want: "line 2: decode request"},
		{name: "two values", input: `{"input":"x"} {"input":"y"}`, want: "more than one JSON value"},
		{name: "negative tokens", input: `{"input":"x","max_output_tokens":-1}`, want: `"max_output_tokens" is -1`},
		{name: "duplicate id", input: "{\"id\":\"a\",\"input\":\"x\"}\n\n{\"id\":\"a\",\"input\":\"y\"}", want: `line 3: id "a" already used on line 1`},
		{name: "generated id taken", input: "{\"id\":\"run-2\",\"input\":\"x\"}\n{\"input\":\"y\"}", want: `line 2: id "run-2" already used on line 1`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := readRequests(strings.NewReader(tc.input), "run", requestDefaults{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestReadRequests(t *testing.T) {
	t.Parallel()
	in := `{"input":"a","metadata":null}
{"id":"x","input":"b","model":"own"}
{"id":"y","input":"c","metadata":[1,"any JSON value"]}`
	reqs, err := readRequests(strings.NewReader(in), "run", requestDefaults{instructions: "i", model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	want := []wire.Request{
		{ID: "run-1", Input: "a", Instructions: "i", Model: "m"},
		{ID: "x", Input: "b", Instructions: "i", Model: "own"},
		{ID: "y", Input: "c", Instructions: "i", Model: "m", Metadata: json.RawMessage(`[1,"any JSON value"]`)},
	}
	if len(reqs) != len(want) {
		t.Fatalf("got %d requests, want %d", len(reqs), len(want))
	}
	for i := range want {
		if got := reqs[i]; got.ID != want[i].ID || got.Input != want[i].Input || got.Instructions != want[i].Instructions ||
			got.Model != want[i].Model || string(got.Metadata) != string(want[i].Metadata) {
			t.Errorf("request %d = %+v, want %+v", i, got, want[i])
		}
	}
}

func TestSyntheticRequests(t *testing.T) {
	t.Parallel()
	reqs := syntheticRequests(100, "run", requestDefaults{model: "m"})
	texts := make(map[string]bool)
	kinds := make(map[string]bool)
	for i, r := range reqs {
		if r.ID != requestID("run", i+1) || r.Model != "m" || r.Instructions != "" {
			t.Errorf("request %d = %+v", i, r)
		}
		prefix := requestID("observation", i+1)
		prefix = strings.Replace(prefix, "-", " ", 1) + ": "
		kind, ok := strings.CutPrefix(r.Input, prefix)
		if !ok {
			t.Errorf("request %d input %q lacks prefix %q", i, r.Input, prefix)
		}
		kinds[strings.Fields(kind)[0]] = true
		texts[r.Input] = true
	}
	if len(texts) != 100 || len(kinds) < 4 {
		t.Errorf("%d distinct texts, %d kinds (%v); want 100 and >= 4", len(texts), len(kinds), kinds)
	}
}

func TestDefaultReplyTo(t *testing.T) {
	t.Parallel()
	for subject, want := range map[string]string{
		"ai.requests.demo":    "ai.results.demo",
		"ai.urgent.demo":      "ai.results.demo",
		"ai.requests.a.b":     "ai.results.a.b",
		"ai.requests.":        "",
		"jobs.demo":           "",
		"ai.requestsdemo.foo": "",
	} {
		got, ok := defaultReplyTo(subject)
		if got != want || ok != (want != "") {
			t.Errorf("defaultReplyTo(%q) = %q, %v; want %q", subject, got, ok, want)
		}
	}
}
