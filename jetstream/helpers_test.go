package jetstream_test

import (
	"context"
	"testing"
	"time"
)

// testCtx is a context for one test's calls to the server, ended when the
// test ends.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
