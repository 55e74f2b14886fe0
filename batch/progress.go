package batch

import (
	"sync"
	"time"
)

// keepAlive tells the broker every interval that msgs are still being
// worked on, so a long call or a long Batch API job does not get them
// redelivered. The returned function stops it and waits until it stopped.
func keepAlive(msgs []Message, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range msgs {
					_ = m.InProgress()
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
