// This file is not part of any package in the source tree: the bench
// harness adds it to cmd/worker with go build -overlay when it profiles the
// worker process (go run ./bench -profile DIR). The binary then writes a CPU
// profile to $AIBATCH_BENCH_CPUPROFILE from start until it gets SIGUSR2,
// then the allocations since start to <profile>.allocs (go tool pprof
// -sample_index=alloc_space), and creates <profile>.done when both are
// complete.

package main

import (
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func init() {
	path := os.Getenv("AIBATCH_BENCH_CPUPROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGUSR2)
	go func() {
		<-stop
		pprof.StopCPUProfile()
		f.Close()
		if a, err := os.Create(path + ".allocs"); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(a, 0)
			a.Close()
		}
		_ = os.WriteFile(path+".done", nil, 0o644)
	}()
}
