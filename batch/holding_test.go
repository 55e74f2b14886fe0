package batch

import (
	"testing"
	"time"

	"github.com/aibatch/aibatch/wire"
)

// heldItem is a request of group (model, topic) at seq, delivered n times,
// each earlier delivery a failed attempt.
func heldItem(model, topic string, seq, n uint64, body string) *item {
	return &item{
		attempts:   AttemptRecord{Spent: int(n) - 1},
		msg:        fakeMessage{data: []byte(body)},
		d:          Delivery{Stream: "S", StreamSeq: seq, NumDelivered: n, Published: t0.Add(time.Duration(seq) * time.Second)},
		req:        wire.Request{Model: model},
		groupTopic: topic,
	}
}

func TestWindowHoldsByGroup(t *testing.T) {
	t.Parallel()
	w := newWindow(5, 1<<20)
	w.add(heldItem("m1", "a", 1, 1, "xx"))
	w.add(heldItem("m2", "a", 2, 1, "xxx"))
	w.add(heldItem("m1", "b", 3, 1, "x"))
	w.add(heldItem("m1", "a", 4, 1, "xxxx"))
	snap := w.snapshot()
	if len(snap) != 3 {
		t.Fatalf("%d groups, want 3 (model and topic both part of the key)", len(snap))
	}
	if g := snap[0]; g.key != (groupKey{model: "m1", topic: "a"}) || len(g.items) != 2 || g.bytes != 6 || !g.oldest.Equal(t0.Add(time.Second)) {
		t.Fatalf("first group %+v", g)
	}
	if w.room() != 1 || w.full() {
		t.Fatalf("room %d, want 1", w.room())
	}
	// A redelivery of a held request replaces it: still 4 held, one retry.
	w.add(heldItem("m1", "a", 4, 2, "xxxx"))
	snap = w.snapshot()
	if len(snap[0].items) != 2 || snap[0].retries != 1 || w.room() != 1 {
		t.Fatalf("after a redelivery: %+v, room %d", snap[0], w.room())
	}
	// A request a follower passed on to the holder is no retry.
	passed := heldItem("m2", "a", 2, 2, "xxx")
	passed.attempts = AttemptRecord{Free: 1, Passed: 1}
	w.add(passed)
	if g := w.snapshot()[1]; g.key.model != "m2" || g.retries != 0 {
		t.Fatalf("after a request passed on: %+v", g)
	}
	got := w.take(groupKey{model: "m1", topic: "a"}, 1)
	if len(got) != 1 || got[0].d.StreamSeq != 1 {
		t.Fatalf("take = %+v, want the oldest", got)
	}
	if g := w.snapshot()[0]; len(g.items) != 1 || g.retries != 1 || !g.oldest.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("after take: %+v", g)
	}
	w.take(groupKey{model: "m1", topic: "a"}, 5)
	if snap := w.snapshot(); len(snap) != 2 || snap[0].key.model != "m2" {
		t.Fatalf("an emptied group must go: %+v", snap)
	}
	w.add(heldItem("m3", "", 5, 1, "x"))
	w.add(heldItem("m3", "", 6, 1, "x"))
	w.add(heldItem("m3", "", 7, 1, "x"))
	if !w.full() {
		t.Fatal("5 held in a window of 5 is full")
	}
	if msgs := w.messages(); len(msgs) != 5 {
		t.Fatalf("%d messages held", len(msgs))
	}
}

func TestWindowIsBoundedByBytes(t *testing.T) {
	t.Parallel()
	w := newWindow(100, 10)
	w.add(heldItem("m", "", 1, 1, "0123456789"))
	if !w.full() || w.room() != 0 {
		t.Fatalf("10 bytes held in a window of 10 bytes: room %d", w.room())
	}
	w.take(groupKey{model: "m"}, 1)
	if w.full() {
		t.Fatal("an empty window is full")
	}
}
