package fake

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"time"
	"unicode/utf8"
)

// faults is the state of the controls that make a fake misbehave as real
// providers do: an output limit, refused inputs, a required key that may
// change, outages and hangs, and the size of every call. Controls embeds
// it; its zero value is ready to use.
type faults struct {
	mu         sync.Mutex
	outputCap  int
	refused    map[string]bool
	key        string
	failUntil  time.Time
	failStatus int
	hangUntil  time.Time
	sizes      []int
}

// SetOutputCap makes OutputCap report items: a combined call carrying more
// than items requests is answered cut off, as a model that reached its
// output limit. items <= 0 removes the cap.
func (f *faults) SetOutputCap(items int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outputCap = max(items, 0)
}

// OutputCap returns the cap SetOutputCap set; 0 when none.
func (f *faults) OutputCap() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.outputCap
}

// CutOff reports whether a combined answer to a call of items requests is
// cut off by the output cap.
func (f *faults) CutOff(items int) bool {
	c := f.OutputCap()
	return c > 0 && items > c
}

// RefuseInput adds input to what Refused reports: the model refuses any
// call that contains it.
func (f *faults) RefuseInput(input string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refused == nil {
		f.refused = map[string]bool{}
	}
	f.refused[input] = true
}

// AcceptInput undoes RefuseInput for input.
func (f *faults) AcceptInput(input string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.refused, input)
}

// Refused reports whether RefuseInput named one of inputs.
func (f *faults) Refused(inputs ...string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, in := range inputs {
		if f.refused[in] {
			return true
		}
	}
	return false
}

// RequireKey makes KeyAccepted accept key only; "" accepts any non-empty
// key. It may be called at any moment, as a key rotated at run time.
func (f *faults) RequireKey(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.key = key
}

// KeyAccepted reports whether a call presenting key (empty when it
// presented none) is let in.
func (f *faults) KeyAccepted(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return key != "" && (f.key == "" || key == f.key)
}

// FailFor makes Failing report status until d has passed from now (by
// time.Now); d <= 0 or status 0 ends a failure in progress. It replaces
// any failure set before.
func (f *faults) FailFor(d time.Duration, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d <= 0 || status == 0 {
		f.failUntil, f.failStatus = time.Time{}, 0
		return
	}
	f.failUntil, f.failStatus = time.Now().Add(d), status
}

// Failing returns the status FailFor set while its time lasts, and 0
// otherwise.
func (f *faults) Failing() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failStatus == 0 || !time.Now().Before(f.failUntil) {
		return 0
	}
	return f.failStatus
}

// HangFor makes Hang hold every call until d has passed from now (by
// time.Now); d <= 0 ends a hang in progress for calls that arrive after.
func (f *faults) HangFor(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d <= 0 {
		f.hangUntil = time.Time{}
		return
	}
	f.hangUntil = time.Now().Add(d)
}

// Hang holds r until the time HangFor set has passed or r's context ends,
// and reports whether it passed (false: the client gave up, answer
// nothing). It returns true at once when no hang is set. Read r's body
// first, as for Wait.
func (f *faults) Hang(r *http.Request) bool {
	f.mu.Lock()
	until := f.hangUntil
	f.mu.Unlock()
	d := time.Until(until)
	return d <= 0 || Sleep(r, d)
}

// RecordSize adds a call of items requests to what CallSizes returns.
func (f *faults) RecordSize(items int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sizes = append(f.sizes, items)
}

// CallSizes returns the number of requests of every call RecordSize
// recorded, oldest first; nil when none.
func (f *faults) CallSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sizes)
}

// CutBytes returns s cut to at most n bytes (n >= 0) on a rune boundary.
func CutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// OverLimit reports whether an answer of n bytes exceeds a call's output
// limit of maxTokens (none when maxTokens <= 0), counting Tokens(n).
func OverLimit(n int, maxTokens int64) bool {
	return maxTokens > 0 && Tokens(n) > maxTokens
}

// CutAnswer returns the text of a combined answer as a model that reached
// its output limit leaves it, and whether it was cut: full is the whole
// answer to a call of items requests; with the output cap (cut set) the
// model stops after about capItems requests' worth of it, and with a
// call's limit of maxTokens (none when <= 0) after maxTokens*4 bytes,
// whichever comes first. A cut answer is a strict prefix of full, so it is
// not valid JSON when full is a JSON object.
func CutAnswer(full string, items, capItems int, cut bool, maxTokens int64) (string, bool) {
	n := len(full)
	if cut && items > 0 {
		n = min(n, len(full)*capItems/items)
	}
	if OverLimit(len(full), maxTokens) {
		n = min(n, int(maxTokens)*4)
	}
	if n >= len(full) {
		return full, false
	}
	return CutBytes(full, max(n, 0)), true
}

// BatchAnswer is what the schema of a combined answer declares, as
// ParseBatchSchema reads it.
type BatchAnswer struct {
	// IDs is the "enum" of "id": the batch's ids; nil when there is none.
	IDs []string
	// Output is the schema of each result's "output": {"type":"string"},
	// or a request's own schema (structured output).
	Output json.RawMessage
	// Root is the whole schema, against which Output's "$ref"s resolve.
	Root json.RawMessage
}

// Structured reports whether outputs are structured (their schema is not
// the plain string).
func (a BatchAnswer) Structured() bool {
	var out any
	_ = json.Unmarshal(a.Output, &out)
	return !reflect.DeepEqual(out, map[string]any{"type": "string"})
}

// ParseBatchSchema reads raw, the JSON schema of a combined answer a
// request declared: it must be BatchSchema, whose "id" property may also
// list the batch's ids as an "enum" of strings, whose "output" may be any
// schema (a request's own, for structured output), and whose root may hold
// the definitions ("$defs", "definitions") that schema refers to. ok
// reports whether raw is such a schema; it fails when raw is not JSON or
// the enum is not an array of strings.
func ParseBatchSchema(raw json.RawMessage) (answer BatchAnswer, ok bool, err error) {
	var got, want any
	if err := json.Unmarshal(raw, &got); err != nil {
		return BatchAnswer{}, false, err
	}
	if err := json.Unmarshal([]byte(BatchSchema), &want); err != nil {
		panic(err) // a constant
	}
	if id := idProperty(got); id != nil {
		if enum, has := id["enum"]; has {
			list, isList := enum.([]any)
			if !isList {
				return BatchAnswer{}, false, errors.New(`the "enum" of "id" is not an array`)
			}
			answer.IDs = make([]string, len(list))
			for i, v := range list {
				s, isString := v.(string)
				if !isString {
					return BatchAnswer{}, false, fmt.Errorf(`"enum" of "id": entry %d is not a string`, i)
				}
				answer.IDs[i] = s
			}
			delete(id, "enum")
		}
	}
	if props := itemProperties(got); props != nil {
		if out, has := props["output"]; has {
			answer.Output = MarshalJSON(out)
			props["output"] = map[string]any{"type": "string"}
		}
	}
	if root, isObject := got.(map[string]any); isObject {
		delete(root, "$defs")
		delete(root, "definitions")
	}
	if !reflect.DeepEqual(got, want) {
		return BatchAnswer{}, false, nil
	}
	answer.Root = raw
	return answer, true, nil
}

// itemProperties returns the "properties" of a batch schema's result item,
// decoded as any, or nil when it has none.
func itemProperties(schema any) map[string]any {
	step := func(v any, key string) any {
		m, _ := v.(map[string]any)
		return m[key]
	}
	props, _ := step(step(step(step(schema, "properties"), "results"), "items"), "properties").(map[string]any)
	return props
}

// idProperty returns the schema of "id" in a batch schema decoded as any,
// or nil when it has none.
func idProperty(schema any) map[string]any {
	id, _ := itemProperties(schema)["id"].(map[string]any)
	return id
}
