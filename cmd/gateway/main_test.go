package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// workerBin is the worker binary TestMain builds (with -race when the
// tests run with it): the acceptance tests run the real worker process.
var workerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "aibatch-gateway-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "create a directory for the worker binary:", err)
		os.Exit(1)
	}
	workerBin = filepath.Join(dir, "worker")
	args := []string{"build", "-o", workerBin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, "../worker")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot build the worker binary (go %s ../worker): %v\n%s", strings.Join(args, " "), err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}
