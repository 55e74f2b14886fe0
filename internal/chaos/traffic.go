package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aibatch/aibatch/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PoisonKind is one kind of request that can never succeed. Each must end as
// an error result and a dead letter, and each fails by the request's own
// fault (request scope), whatever the provider does: a body that is not a
// JSON request, has no usable input or is over MAX_REQUEST_BYTES is rejected
// before any call, and unknown_model names a model that the request chose
// (HTTP 404 model_not_found for a model other than the worker's default).
// No other request may end as an error (the checker's innocent dead
// letters).
type PoisonKind string

// The poison mixed into traffic by scenarios with Poison set.
const (
	// PoisonInvalidJSON: a body that is not JSON.
	PoisonInvalidJSON PoisonKind = "invalid_json"
	// PoisonNoInput: valid JSON without a usable "input" (missing, empty,
	// blank, null, not a string), or with a negative max_output_tokens.
	PoisonNoInput PoisonKind = "no_input"
	// PoisonOversized: a body over MAX_REQUEST_BYTES.
	PoisonOversized PoisonKind = "oversized"
	// PoisonUnknownModel: a valid request for a model the provider does not
	// have (HTTP 404 model_not_found).
	PoisonUnknownModel PoisonKind = "unknown_model"
	// PoisonHugeMetadata: "metadata" large enough to put the body over
	// MAX_REQUEST_BYTES.
	PoisonHugeMetadata PoisonKind = "huge_metadata"
	// PoisonBinary: random bytes.
	PoisonBinary PoisonKind = "binary"
	// PoisonEmpty: an empty body.
	PoisonEmpty PoisonKind = "empty"
	// PoisonContentType: a body in another format (XML, a form, CSV) with a
	// Content-Type header saying so.
	PoisonContentType PoisonKind = "wrong_content_type"
)

// PoisonKinds lists every PoisonKind.
func PoisonKinds() []PoisonKind {
	return []PoisonKind{PoisonInvalidJSON, PoisonNoInput, PoisonOversized, PoisonUnknownModel,
		PoisonHugeMetadata, PoisonBinary, PoisonEmpty, PoisonContentType}
}

// Subjects the producers publish to; results land on ai.results.chaos.
const (
	requestSubject = "ai.requests.chaos"
	urgentSubject  = "ai.urgent.chaos"
	// resultSubjects are the subjects of every result the workers publish.
	resultSubjects = "ai.results.>"
)

// sentRequest is what a producer sent, for the checker to match against.
type sentRequest struct {
	id     string
	poison PoisonKind // "" for a normal request
	input  string     // a normal request's input
	meta   string     // a normal request's metadata, compact JSON
	body   []byte
	header map[string]string
	urgent bool

	// Set by the producer.
	accepted  bool // a PubAck was received
	attempts  int  // publishes tried
	duplicate bool // the PubAck said the stream already had it
}

// repeatedInputs is how many distinct inputs the traffic of a
// ResponseCache scenario asks.
const repeatedInputs = 40

// planTraffic decides every request of a scenario: its id, kind and body.
// With repeat above 0 the normal requests ask only repeat distinct inputs.
func planTraffic(scenario string, n int, poisonShare, urgentShare float64, maxRequestBytes int, repeat int, rng *rand.Rand) []*sentRequest {
	kinds := PoisonKinds()
	reqs := make([]*sentRequest, n)
	for i := range n {
		r := &sentRequest{id: fmt.Sprintf("%s-%06d", scenario, i), urgent: rng.Float64() < urgentShare}
		if rng.Float64() < poisonShare {
			r.poison = kinds[i%len(kinds)]
			r.body, r.header = poisonBody(r.poison, r.id, maxRequestBytes, rng)
		} else {
			r.input = fmt.Sprintf("chaos %s request %d %08x", scenario, i, rng.Uint32())
			if repeat > 0 {
				r.input = fmt.Sprintf("chaos %s input %d", scenario, i%repeat)
			}
			r.meta = `{"n":` + strconv.Itoa(i) + `}`
			req := wire.Request{ID: r.id, Input: r.input, Metadata: json.RawMessage(r.meta)}
			if i%3 == 0 {
				// A second group: requests share a call only with the same
				// instructions.
				req.Instructions = "Answer in one line."
			}
			body, err := json.Marshal(req)
			if err != nil {
				panic(err) // plain strings: cannot fail
			}
			r.body = body
		}
		reqs[i] = r
	}
	return reqs
}

// poisonBody returns the body and extra headers of a poison request.
func poisonBody(kind PoisonKind, id string, maxBytes int, rng *rand.Rand) ([]byte, map[string]string) {
	quotedID, _ := json.Marshal(id)
	qid := string(quotedID)
	switch kind {
	case PoisonInvalidJSON:
		bodies := []string{
			`{"id":` + qid + `,"input":"unterminated`,
			`{"id":` + qid + `,"input":"x",}`,
			`{id: ` + qid + `, input: "single quotes and bare keys"}`,
			`[{"id":` + qid + `,"input":"an array, not an object"}]`,
			`{"id":` + qid + `,"input":"x"}{"trailing":"object"}`,
		}
		return []byte(bodies[rng.IntN(len(bodies))]), nil
	case PoisonNoInput:
		bodies := []string{
			`{"id":` + qid + `,"metadata":{"k":"v"}}`,
			`{"id":` + qid + `,"input":""}`,
			`{"id":` + qid + `,"input":"   \n\t "}`,
			`{"id":` + qid + `,"input":null}`,
			`{"id":` + qid + `,"input":42}`,
			`{"id":` + qid + `,"input":{"text":"nested"}}`,
			`{"id":` + qid + `,"input":"x","max_output_tokens":-5}`,
		}
		return []byte(bodies[rng.IntN(len(bodies))]), nil
	case PoisonOversized:
		pad := strings.Repeat("over the limit ", maxBytes/15+1+rng.IntN(64))
		return []byte(`{"id":` + qid + `,"input":"` + pad + `"}`), nil
	case PoisonUnknownModel:
		return []byte(`{"id":` + qid + `,"input":"which model are you?","model":"unknown-chaos-model-` + strconv.Itoa(rng.IntN(3)) + `"}`), nil
	case PoisonHugeMetadata:
		fields := make(map[string]string)
		for i := 0; i < maxBytes/1000+2; i++ {
			fields["f"+strconv.Itoa(i)] = strings.Repeat("m", 1000)
		}
		meta, _ := json.Marshal(fields)
		return []byte(`{"id":` + qid + `,"input":"small input, huge metadata","metadata":` + string(meta) + `}`), nil
	case PoisonBinary:
		b := make([]byte, 1+rng.IntN(512))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		b[0] = 0xff // never valid JSON, never blank
		return b, nil
	case PoisonEmpty:
		return []byte{}, nil
	case PoisonContentType:
		switch rng.IntN(3) {
		case 0:
			return []byte(`<request><id>` + id + `</id><input>xml is not json</input></request>`), map[string]string{"Content-Type": "application/xml"}
		case 1:
			return []byte(`id=` + id + `&input=form+encoded`), map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
		default:
			return []byte("id,input\n" + id + ",csv is not json\n"), map[string]string{"Content-Type": "text/csv"}
		}
	}
	panic("chaos: unknown poison kind " + string(kind))
}

// produceConfig says how a producer publishes.
type produceConfig struct {
	// over spreads the requests evenly over this long.
	over time.Duration
	// publishers publish at once.
	publishers int
	// giveUp bounds the retries of one request without a PubAck.
	giveUp time.Duration
}

// produce publishes reqs, paced evenly over cfg.over, each with Nats-Msg-Id
// set to its id, retrying a publish that got no PubAck with the same id
// (the stream drops the copy it already has) until cfg.giveUp. It sets each
// request's accepted, attempts and duplicate.
func produce(ctx context.Context, js jetstream.JetStream, reqs []*sentRequest, cfg produceConfig) {
	jobs := make(chan *sentRequest)
	var wg sync.WaitGroup
	for range max(cfg.publishers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range jobs {
				publishOne(ctx, js, r, cfg.giveUp)
			}
		}()
	}
	start := time.Now()
	for i, r := range reqs {
		at := start.Add(time.Duration(int64(cfg.over) * int64(i) / int64(max(len(reqs), 1))))
		if !wait(ctx, time.Until(at)) {
			break
		}
		select {
		case jobs <- r:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
}

func publishOne(ctx context.Context, js jetstream.JetStream, r *sentRequest, giveUp time.Duration) {
	subject := requestSubject
	if r.urgent {
		subject = urgentSubject
	}
	deadline := time.Now().Add(giveUp)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		m := nats.NewMsg(subject)
		m.Data = r.body
		for k, v := range r.header {
			m.Header.Set(k, v)
		}
		r.attempts++
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ack, err := js.PublishMsg(pctx, m, jetstream.WithMsgID(r.id))
		cancel()
		if err == nil {
			r.accepted, r.duplicate = true, ack.Duplicate
			return
		}
		wait(ctx, 100*time.Millisecond)
	}
}
