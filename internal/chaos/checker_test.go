package chaos

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// world is what a checker test feeds check: requests sent and what the
// streams hold.
type world struct {
	sent     []*sentRequest
	results  []storedMsg
	dead     []storedMsg
	leftover []storedMsg
}

func normalReq(i int) *sentRequest {
	id := "t-" + strconv.Itoa(i)
	return &sentRequest{id: id, input: "input " + id, meta: `{"n":` + strconv.Itoa(i) + `}`, body: []byte(`{"id":"` + id + `"}`), accepted: true}
}

func poisonReq(i int) *sentRequest {
	return &sentRequest{id: "p-" + strconv.Itoa(i), poison: PoisonBinary, body: []byte{0xff, 1, 2}, accepted: true}
}

func (w *world) result(r wire.Result, reqSeq int) {
	body, _ := json.Marshal(r)
	h := nats.Header{}
	h.Set(wire.HeaderStreamSeq, strconv.Itoa(reqSeq))
	w.results = append(w.results, storedMsg{seq: uint64(len(w.results) + 1), header: h, data: body})
}

func (w *world) ok(s *sentRequest, reqSeq int) {
	w.result(wire.Result{ID: s.id, Status: wire.StatusOK, Output: openaitest.Answer(s.input), Metadata: json.RawMessage(s.meta)}, reqSeq)
}

func (w *world) failed(s *sentRequest, reqSeq int, reason string) {
	w.result(wire.Result{ID: s.id, Status: wire.StatusError, Error: reason}, reqSeq)
}

func (w *world) deadLetter(id string, body []byte, reqSeq int) {
	h := nats.Header{}
	h.Set(wire.HeaderRequestID, id)
	h.Set(wire.HeaderStreamSeq, strconv.Itoa(reqSeq))
	h.Set(wire.HeaderError, "invalid request")
	w.dead = append(w.dead, storedMsg{seq: uint64(len(w.dead) + 1), header: h, data: body})
}

// healthy returns a world where every request ended as it should: two
// normal requests ok, one poison request an error with its dead letter.
func healthy() *world {
	w := &world{sent: []*sentRequest{normalReq(1), normalReq(2), poisonReq(3)}}
	w.ok(w.sent[0], 1)
	w.ok(w.sent[1], 2)
	w.failed(w.sent[2], 3, "invalid request: body is not a JSON request object")
	w.deadLetter(w.sent[2].id, w.sent[2].body, 3)
	return w
}

func TestCheckFindsEveryBreach(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		breach func(w *world)
		want   func(f findings) bool
		kind   string
	}{
		{"healthy", func(*world) {}, func(f findings) bool { return f.resultsOK == 2 && f.resultsError == 1 && f.deadLetters == 1 }, ""},
		{"second result", func(w *world) { w.ok(w.sent[0], 1) }, func(f findings) bool { return f.duplicates == 1 }, "duplicate result"},
		{"second dead letter", func(w *world) { w.deadLetter(w.sent[2].id, w.sent[2].body, 3) }, func(f findings) bool { return f.duplicates == 1 }, "duplicate dead letter"},
		{"no result", func(w *world) { w.results = w.results[1:] }, func(f findings) bool { return f.lost == 1 }, "lost"},
		{"no dead letter", func(w *world) { w.dead = nil }, func(f findings) bool { return f.lost == 1 }, "dead letter lost"},
		{"result for an id never sent", func(w *world) {
			w.result(wire.Result{ID: "never-sent", Status: wire.StatusOK}, 9)
		}, func(f findings) bool { return f.phantoms == 1 }, "phantom result"},
		{"dead letter for an id never sent", func(w *world) { w.deadLetter("never-sent", nil, 9) }, func(f findings) bool { return f.phantoms == 1 }, "phantom dead letter"},
		{"another request's output", func(w *world) {
			w.results[0].data, _ = json.Marshal(wire.Result{ID: w.sent[0].id, Status: wire.StatusOK, Output: openaitest.Answer(w.sent[1].input), Metadata: json.RawMessage(w.sent[0].meta)})
		}, func(f findings) bool { return f.wrongOutputs == 1 }, "wrong output"},
		{"another request's metadata", func(w *world) {
			w.results[0].data, _ = json.Marshal(wire.Result{ID: w.sent[0].id, Status: wire.StatusOK, Output: openaitest.Answer(w.sent[0].input), Metadata: json.RawMessage(w.sent[1].meta)})
		}, func(f findings) bool { return f.wrongOutputs == 1 }, "wrong metadata"},
		{"poison ended ok", func(w *world) {
			w.results[2].data, _ = json.Marshal(wire.Result{ID: w.sent[2].id, Status: wire.StatusOK, Output: "?"})
		}, func(f findings) bool { return f.violations >= 1 }, "poison ended ok"},
		{"normal request failed", func(w *world) {
			w.results[0].data, _ = json.Marshal(wire.Result{ID: w.sent[0].id, Status: wire.StatusError, Error: "permanent provider error (HTTP 400)"})
			w.deadLetter(w.sent[0].id, w.sent[0].body, 1)
		}, func(f findings) bool { return f.innocent == 1 && f.violations == 0 && f.lost == 0 }, "innocent dead letter"},
		{"normal request used up its attempts", func(w *world) {
			w.results[0].data, _ = json.Marshal(wire.Result{ID: w.sent[0].id, Status: wire.StatusError, Error: "gave up after 10 attempts (MAX_DELIVER is 10)"})
			w.deadLetter(w.sent[0].id, w.sent[0].body, 1)
		}, func(f findings) bool { return f.innocent == 1 && f.violations == 0 }, "innocent dead letter (attempts used up)"},
		{"normal request expired", func(w *world) {
			w.results[0].data, _ = json.Marshal(wire.Result{ID: w.sent[0].id, Status: wire.StatusError, Error: "expired: waited 24h0m0s, over REQUEST_TTL (24h0m0s)"})
			w.deadLetter(w.sent[0].id, w.sent[0].body, 1)
		}, func(f findings) bool { return f.innocent == 1 && f.violations == 0 }, "innocent dead letter (expired: REQUEST_TTL)"},
		{"normal request failed without its dead letter", func(w *world) {
			w.results[0].data, _ = json.Marshal(wire.Result{ID: w.sent[0].id, Status: wire.StatusError, Error: "provider unavailable"})
		}, func(f findings) bool { return f.innocent == 1 && f.lost == 1 }, "innocent dead letter"},
		{"ok with a dead letter", func(w *world) { w.deadLetter(w.sent[0].id, w.sent[0].body, 1) }, func(f findings) bool { return f.violations == 1 && f.innocent == 1 }, "ok with dead letter"},
		{"dead letter of a normal request without a result", func(w *world) {
			w.results = w.results[1:]
			w.deadLetter(w.sent[0].id, w.sent[0].body, 1)
		}, func(f findings) bool { return f.innocent == 1 && f.lost == 1 && f.violations == 1 }, "innocent dead letter"},
		{"dead letter body changed", func(w *world) { w.dead[0].data = []byte("changed") }, func(f findings) bool { return f.violations == 1 }, "dead letter body changed"},
		{"dead letter of another delivery", func(w *world) { w.dead[0].header.Set(wire.HeaderStreamSeq, "7") }, func(f findings) bool { return f.violations == 1 }, "dead letter for another delivery"},
		{"unreadable result", func(w *world) {
			w.results = append(w.results, storedMsg{seq: 99, data: []byte("{not json")})
		}, func(f findings) bool { return f.violations == 1 }, "unreadable result"},
		{"answered request left in the stream", func(w *world) {
			h := nats.Header{}
			h.Set(wire.HeaderMsgID, w.sent[0].id)
			w.leftover = append(w.leftover, storedMsg{seq: 1, subject: requestSubject, header: h})
		}, func(f findings) bool { return f.leftover == 1 && f.violations == 1 && f.lost == 0 }, "left in AI_REQUESTS"},
		{"unanswered request left in the stream", func(w *world) {
			h := nats.Header{}
			h.Set(wire.HeaderMsgID, w.sent[0].id)
			w.leftover = append(w.leftover, storedMsg{seq: 1, subject: requestSubject, header: h})
			w.results = w.results[1:]
		}, func(f findings) bool { return f.leftover == 1 && f.violations == 0 && f.lost == 1 }, "left in AI_REQUESTS"},
		{"unconfirmed request without a result", func(w *world) {
			w.sent = append(w.sent, &sentRequest{id: "u-1", input: "x"})
		}, func(f findings) bool { return f.unconfirmed == 1 && f.lost == 0 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := healthy()
			tt.breach(w)
			f := check(w.sent, w.results, w.dead, w.leftover)
			if !tt.want(f) {
				t.Fatalf("findings %+v do not show the breach", f)
			}
			breaches := f.duplicates + f.lost + f.innocent + f.phantoms + f.wrongOutputs + f.violations
			if tt.kind == "" {
				if breaches != 0 {
					t.Fatalf("found %d breaches in a healthy world: %v", breaches, f.evidence())
				}
			} else if breaches == 0 {
				t.Fatalf("no breach counted: %+v", f)
			}
			if tt.kind != "" && len(f.samples[tt.kind]) == 0 {
				t.Fatalf("no evidence of kind %q: %v", tt.kind, f.evidence())
			}
		})
	}
}

func TestReadStreamReadsEverythingStored(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstreamConfig("READ", "read.>")); err != nil {
		t.Fatal(err)
	}
	const n = 2500 // more than one fetch
	for i := range n {
		m := nats.NewMsg("read." + strconv.Itoa(i%3))
		m.Data = []byte(strconv.Itoa(i))
		m.Header.Set("Seq", strconv.Itoa(i+1))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	s, err := js.Stream(ctx, "READ")
	if err != nil {
		t.Fatal(err)
	}
	deleted := map[uint64]bool{1: true, 700: true, n: true}
	for seq := range deleted {
		if err := s.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}

	for _, read := range []struct {
		name string
		fn   func() ([]storedMsg, error)
	}{
		{"ordered consumer", func() ([]storedMsg, error) { return readStream(ctx, js, "READ") }},
		{"get by sequence", func() ([]storedMsg, error) { return readByGet(ctx, js, "READ", n) }},
	} {
		got, err := read.fn()
		if err != nil {
			t.Fatalf("%s: %v", read.name, err)
		}
		if len(got) != n-len(deleted) {
			t.Fatalf("%s read %d messages, want %d", read.name, len(got), n-len(deleted))
		}
		for _, m := range got {
			if deleted[m.seq] || m.header.Get("Seq") != strconv.FormatUint(m.seq, 10) || string(m.data) != strconv.FormatUint(m.seq-1, 10) {
				t.Fatalf("%s: message seq %d has header %q and data %q", read.name, m.seq, m.header.Get("Seq"), m.data)
			}
		}
	}
	if got, err := readByGet(ctx, js, "READ", 10); err != nil || len(got) != 10 {
		t.Fatalf("readByGet with limit 10 read %d (err %v)", len(got), err)
	}
}

func TestPlanTrafficMixesPoisonOfEveryKind(t *testing.T) {
	t.Parallel()
	const maxBytes = 16 << 10
	reqs := planTraffic("plan", 2000, 0.2, 0.1, maxBytes, 0, rand.New(rand.NewPCG(1, 2)))
	seen := map[PoisonKind]int{}
	ids := map[string]bool{}
	urgent := 0
	for _, r := range reqs {
		if ids[r.id] {
			t.Fatalf("id %s planned twice", r.id)
		}
		ids[r.id] = true
		if r.urgent {
			urgent++
		}
		if r.poison == "" {
			var req wire.Request
			if err := json.Unmarshal(r.body, &req); err != nil || req.ID != r.id || req.Input != r.input || string(req.Metadata) != r.meta {
				t.Fatalf("normal request %s has body %s", r.id, r.body)
			}
			continue
		}
		seen[r.poison]++
		var req wire.Request
		err := json.Unmarshal(r.body, &req)
		valid := err == nil && len(r.body) <= maxBytes && strings.TrimSpace(req.Input) != "" && req.MaxOutputTokens >= 0
		if valid && r.poison != PoisonUnknownModel {
			t.Fatalf("poison %s (%s) is a valid request: %.200s", r.id, r.poison, r.body)
		}
	}
	for _, k := range PoisonKinds() {
		if seen[k] == 0 {
			t.Errorf("no poison of kind %s in %v", k, seen)
		}
	}
	if urgent < 100 || urgent > 300 {
		t.Errorf("%d urgent requests of 2000 at a 10%% share", urgent)
	}
}

func jetstreamConfig(name, subject string) jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Storage: jetstream.MemoryStorage}
}
