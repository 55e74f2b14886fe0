package batch

import "sync"

// together runs each of fns in a goroutine of its own and waits for all of
// them. A panic in one is raised again in the calling goroutine once all
// have returned, so that it reaches dispatch's recover: a bug in a provider
// call then hands its batch back instead of ending the process.
func together[T any](items []T, fn func(T)) {
	if len(items) == 1 {
		fn(items[0])
		return
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var panicked any
	for _, it := range items {
		wg.Go(func() {
			defer func() {
				if r := recover(); r != nil {
					mu.Lock()
					panicked = r
					mu.Unlock()
				}
			}()
			fn(it)
		})
	}
	wg.Wait()
	if panicked != nil {
		panic(panicked)
	}
}
