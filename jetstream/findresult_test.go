package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/wire"
)

func TestFindResultLooksUpAStoredResultByItsMsgID(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, t.TempDir())
	_, js := jetstreamtest.Connect(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, pub, err := jetstream.Ensure(ctx, js, jetstream.Topology{}.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-time.Second)
	var msgs []batch.Outgoing
	for seq := uint64(1); seq <= 600; seq++ { // more than one fetch's worth
		msgs = append(msgs, batch.Outgoing{Subject: "ai.results.t", MsgID: wire.ResultMsgID("AI_REQUESTS", seq), Data: []byte(`{}`)})
	}
	msgs = append(msgs, batch.Outgoing{Subject: "ai.results.other", MsgID: wire.ResultMsgID("AI_REQUESTS", 9999), Data: []byte(`{}`)})
	for _, a := range pub.Publish(ctx, msgs) {
		if a.Err != nil {
			t.Fatal(a.Err)
		}
	}
	tests := []struct {
		name, subject, id string
		wantSeq           uint64
		wantFound         bool
	}{
		{"the first", "ai.results.t", wire.ResultMsgID("AI_REQUESTS", 1), 1, true},
		{"past the first fetch", "ai.results.t", wire.ResultMsgID("AI_REQUESTS", 555), 555, true},
		{"on another subject", "ai.results.t", wire.ResultMsgID("AI_REQUESTS", 9999), 0, false},
		{"never stored", "ai.results.t", wire.ResultMsgID("AI_REQUESTS", 601), 0, false},
		{"a subject no stream keeps", "_INBOX.x", wire.ResultMsgID("AI_REQUESTS", 1), 0, false},
	}
	for _, tt := range tests {
		seq, found, err := pub.FindResult(ctx, tt.subject, tt.id, since)
		if err != nil || found != tt.wantFound || seq != tt.wantSeq {
			t.Errorf("%s: FindResult = %d, %v, %v; want %d, %v", tt.name, seq, found, err, tt.wantSeq, tt.wantFound)
		}
	}
	// Results stored before since are not looked at.
	if _, found, err := pub.FindResult(ctx, "ai.results.t", wire.ResultMsgID("AI_REQUESTS", 1), time.Now().Add(time.Hour)); err != nil || found {
		t.Errorf("FindResult from a later time = %v, %v; want not found", found, err)
	}
}
