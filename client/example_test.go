package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/aibatch/aibatch/client"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// startWorker runs what a deployment runs, for the examples: an embedded
// JetStream server and a batching engine answering through a fake OpenAI
// server. It returns the NATS URL and a function that stops everything.
func startWorker() (url string, stop func()) {
	dir, err := os.MkdirTemp("", "client-example-")
	if err != nil {
		panic(err)
	}
	ns, err := jetstream.RunServer(jetstream.ServerConfig{Port: -1, StoreDir: dir})
	if err != nil {
		panic(err)
	}
	fake := openaitest.NewServer()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		panic(err)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		panic(err)
	}
	_, stopEngine, err := runEngine(js, jetstream.Topology{}, fake.URL, engineConfig(), zap.NewNop())
	if err != nil {
		panic(err)
	}
	return ns.ClientURL(), func() {
		_ = stopEngine()
		nc.Close()
		fake.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
		_ = os.RemoveAll(dir)
	}
}

func Example() {
	url, stop := startWorker()
	defer stop()

	nc, err := nats.Connect(url)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	c, err := client.New(nc, client.WithTopic("docs"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Do(ctx, wire.Request{Input: "What is NATS?", Instructions: "Answer in one line."})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Status, res.Output)
	// Output: ok processed: What is NATS?
}

func ExampleClient_Submit() {
	url, stop := startWorker()
	defer stop()
	nc, err := nats.Connect(url)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Submit returns at once; the three requests share one provider call.
	var pending []*client.Pending
	for _, input := range []string{"first", "second", "third"} {
		p, err := c.Submit(ctx, wire.Request{Input: input})
		if err != nil {
			fmt.Println(err)
			return
		}
		pending = append(pending, p)
	}
	for _, p := range pending {
		res, err := p.Wait(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(res.Output)
	}
	// Output:
	// processed: first
	// processed: second
	// processed: third
}

func ExampleClient_Urgent() {
	url, stop := startWorker()
	defer stop()
	nc, err := nats.Connect(url)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The urgent lane does not wait for a batch to fill.
	res, err := c.Urgent(ctx, wire.Request{Input: "page the on-call engineer?"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Batch.Trigger, res.Output)
	// Output: urgent processed: page the on-call engineer?
}

func ExampleClient_Fetch() {
	url, stop := startWorker()
	defer stop()
	nc, err := nats.Connect(url)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	c, err := client.New(nc, client.WithName("reports"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	// A caller that gives up does not cancel its request...
	short, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err = c.Do(short, wire.Request{ID: "report-7", Input: "summarize report 7"})
	fmt.Println("gave up:", errors.Is(err, context.DeadlineExceeded))

	// ...so its result is stored, and this client (or a restarted one with
	// the same name) reads it by id.
	ctx, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	for ctx.Err() == nil {
		found, err := c.Fetch(ctx, "report-7")
		if err != nil {
			fmt.Println(err)
			return
		}
		if res, ok := found["report-7"]; ok {
			fmt.Println(res.Status, res.Output)
			return
		}
		time.Sleep(20 * time.Millisecond) // not answered yet: look again
	}
	// Output:
	// gave up: true
	// ok processed: summarize report 7
}
