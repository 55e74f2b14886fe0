package client_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: a client that
// leaked its consumer, look-up loop or waits would show here.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
