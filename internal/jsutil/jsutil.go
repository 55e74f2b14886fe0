// Package jsutil opens JetStream streams and key-value buckets the way every
// worker does at start-up: create, and update only when the stored
// configuration differs.
//
// nats.go's CreateOrUpdateStream and CreateOrUpdateKeyValue update the
// stream on every call. A fleet starting together then updates each stream
// once per worker, and the server's update of a stream's store races with
// consumers being created on it (the race detector reports it in
// nats-server's fileStore when the server runs in a test's process). A
// create with the same configuration changes nothing on the server.
package jsutil

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// OpenKeyValue creates the bucket cfg describes, or opens it when it exists
// with that configuration, or updates it to cfg when it exists otherwise.
// It needs the create and update permissions of the bucket's stream only.
func OpenKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.UpdateKeyValue(ctx, cfg)
	}
	return kv, err
}

// OpenStream creates the stream cfg describes, or opens it when it exists
// with that configuration, or updates it to cfg when it exists otherwise.
func OpenStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.UpdateStream(ctx, cfg)
	}
	return s, err
}
