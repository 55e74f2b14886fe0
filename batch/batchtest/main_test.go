package batchtest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests: the doubles
// must leave nothing running once a test is done with them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
