package batchtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/batch/batchtest"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// A Broker used directly: publish a request, take it from the batch lane,
// store its result and ack it.
func ExampleBroker() {
	ctx := context.Background()
	b := batchtest.NewBroker()
	lane := b.Queue(wire.RequestSubjects)

	seq, _ := b.PublishRequest("ai.requests.demo", []byte(`{"input":"hello"}`), map[string]string{wire.HeaderMsgID: "p-1"})
	backlog, _ := lane.Backlog(ctx)
	fmt.Println("pending:", backlog.Pending)

	msgs, _ := lane.Fetch(ctx, 10)
	m := msgs[0]
	d := m.Delivery()
	fmt.Println("delivered:", m.Subject(), d.Stream, d.StreamSeq == seq, d.NumDelivered, m.Header(wire.HeaderMsgID))

	acks := b.Publisher().Publish(ctx, []batch.Outgoing{{
		Subject: "ai.results.demo",
		MsgID:   wire.ResultMsgID(d.Stream, d.StreamSeq),
		Data:    []byte(`{"status":"ok"}`),
	}})
	_ = m.Ack()
	fmt.Println("result at:", acks[0].Sequence, "requests left:", b.Requests())
	// Output:
	// pending: 1
	// delivered: ai.requests.demo AI_REQUESTS true 1 p-1
	// result at: 1 requests left: 0
}

// Faults are injected on the Broker and used up by the next operations of
// their kind.
func ExampleBroker_Inject() {
	ctx := context.Background()
	b := batchtest.NewBroker()
	b.Inject(batchtest.LosePubAck, 1)
	out := []batch.Outgoing{{Subject: "ai.results.demo", MsgID: "result:AI_REQUESTS:1", Data: []byte("{}")}}

	first := b.Publisher().Publish(ctx, out)[0]
	fmt.Println("first:", errors.Is(first.Err, batchtest.ErrInjected), len(b.Results()))
	again := b.Publisher().Publish(ctx, out)[0]
	fmt.Println("again:", again.Duplicate, again.Sequence)
	// Output:
	// first: true 1
	// again: true 1
}

// A Provider answers with "echo: " + input unless told otherwise.
func ExampleProvider() {
	p := batchtest.NewProvider()
	p.Omit("left out", 1)
	p.FailItem("refused", provider.Permanent(errors.New("policy")), 1)
	rs, err := p.Complete(context.Background(), provider.Batch{ID: "b1", Model: "m", Requests: []provider.Request{
		{Key: "0", Input: "hello"}, {Key: "1", Input: "left out"}, {Key: "2", Input: "refused"},
	}})
	fmt.Println(err, len(rs), p.Calls())
	for _, r := range rs {
		fmt.Printf("%s: %q permanent=%v\n", r.Key, r.Output, provider.IsPermanent(r.Err))
	}
	// Output:
	// <nil> 2 1
	// 0: "echo: hello" permanent=false
	// 2: "" permanent=true
}

// The doubles drive a real engine. In a test, run this inside
// synctest.Test so the engine's timers pass on the fake clock.
func Example_engine() {
	b, p := batchtest.NewBroker(), batchtest.NewProvider()
	e, err := batch.New(batch.Config{DefaultModel: "m", AckWait: b.AckWait()},
		b.Queue(wire.RequestSubjects), b.Publisher(), p,
		batch.WithUrgentQueue(b.Queue(wire.UrgentSubjects)))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()

	_, _ = b.PublishRequest("ai.urgent.demo", []byte(`{"id":"q1","input":"hello"}`), nil)
	for deadline := time.Now().Add(10 * time.Second); len(b.Results()) == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	stop()
	<-done

	var r wire.Result
	_ = json.Unmarshal(b.Results()[0].Data, &r)
	fmt.Println(r.ID, r.Status, r.Output, r.Batch.Trigger, b.Requests())
	// Output: q1 ok echo: hello urgent 0
}
