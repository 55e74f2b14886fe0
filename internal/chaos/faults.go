package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Moments a worker is killed at, as ScenarioReport.WorkerKills counts them.
const (
	// KillMidCall: the proxy holds one of the worker's provider calls open
	// and the worker dies waiting for it.
	KillMidCall = "mid-call"
	// KillAfterAnswer: 0-20ms after an answer reached the worker, while it
	// parses it, publishes results and dead letters and acks.
	KillAfterAnswer = "after-answer"
	// KillRandom: whenever the timer says, fetching, polling or idle.
	KillRandom = "random"
	// KillLost: mid-call, and the worker is never restarted.
	KillLost = "lost-for-good"
	// KillResultStored: every worker at once, the moment the broker stored a
	// result of one of them, before that worker could ack its request
	// (Scenario.CrashAtOutage).
	KillResultStored = "result-stored"
)

// maxFaults bounds every fault loop, whatever the phase's length.
const maxFaults = 1000

// between returns a random duration from lo to hi.
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// killWorkers kills a random worker every 0.2-0.8s until ctx ends, at a
// moment chosen by KillMidCall, KillAfterAnswer or KillRandom (when the
// worker makes no call within a second), and restarts it 50-400ms later.
// Every killed worker is restarted before it returns.
func (r *scenarioRun) killWorkers(ctx context.Context, rng *rand.Rand) {
	for range maxFaults {
		if !wait(ctx, between(rng, 200*time.Millisecond, 800*time.Millisecond)) {
			return
		}
		slot := rng.IntN(r.cfg.Workers)
		moment := []string{KillMidCall, KillMidCall, KillAfterAnswer, KillAfterAnswer, KillRandom}[rng.IntN(5)]
		switch moment {
		case KillMidCall, KillAfterAnswer:
			arm := r.proxy.HoldNext
			if moment == KillAfterAnswer {
				arm = r.proxy.AnswerNext
			}
			fired, disarm := arm(slot)
			t := time.NewTimer(time.Second)
			select {
			case <-fired:
			case <-t.C:
				if disarm() {
					moment = KillRandom // the worker made no call in time
				}
			case <-ctx.Done():
				if disarm() {
					t.Stop()
					return
				}
			}
			t.Stop()
			if moment == KillAfterAnswer {
				pause(between(rng, 0, 20*time.Millisecond))
			}
		}
		if err := r.pool.kill(slot); err != nil {
			r.harnessError(err)
			return
		}
		r.mu.Lock()
		r.rep.WorkerKills[moment]++
		r.mu.Unlock()
		r.logf("SIGKILL worker %d (%s)", slot, moment)
		pause(between(rng, 50*time.Millisecond, 400*time.Millisecond))
		if err := r.pool.start(slot); err != nil {
			r.harnessError(err)
			return
		}
	}
}

// loseWorker kills worker 0 in the middle of a provider call about a second
// before ctx's deadline (the end of the traffic) and does not restart it.
func (r *scenarioRun) loseWorker(ctx context.Context, _ *rand.Rand) {
	end, ok := ctx.Deadline()
	if !ok || !wait(ctx, time.Until(end)-time.Second) {
		return
	}
	held, disarm := r.proxy.HoldNext(0)
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-held:
	case <-t.C:
		if disarm() {
			r.logf("worker 0 made no call within 5s: not killed")
			return
		}
	}
	if err := r.pool.kill(0); err != nil {
		r.harnessError(err)
		return
	}
	r.mu.Lock()
	r.rep.WorkerKills[KillLost]++
	r.mu.Unlock()
	r.logf("SIGKILL worker 0 mid-call; it stays down")
}

// providerPeriod returns the fault that makes the provider fail every call
// for p.For from p.At after the traffic starts: an outage (kind
// PeriodOutage) or a rejected key (PeriodKeyRejected). The fault returns
// when the period is over; the phase lasts longer (periodTail).
func (r *scenarioRun) providerPeriod(kind string, p ProviderPeriod) func(context.Context, *rand.Rand) {
	return func(ctx context.Context, _ *rand.Rand) {
		if !wait(ctx, p.At) {
			return
		}
		var err error
		what := "API key rejected (HTTP 401)"
		if kind == PeriodOutage {
			var restart func()
			if r.sc.CrashAtOutage {
				restart = r.crashOnResult(ctx)
			}
			err = r.proxy.StartOutage(p.For)
			if restart != nil {
				restart()
			}
			what = "provider outage (HTTP " + statusList(OutageStatuses()) + ")"
		} else {
			err = r.proxy.StartKeyRejection(p.For)
		}
		if err != nil {
			r.harnessError(err)
			return
		}
		r.logf("%s for %s begins", what, p.For)
		if wait(ctx, p.For) {
			r.logf("%s over", what)
		}
	}
}

// crashOnResult waits up to 10s for the broker to store a result, then
// SIGKILLs every worker at once: the one that published it dies before its
// acks. It returns the function that starts them again.
func (r *scenarioRun) crashOnResult(ctx context.Context) (restart func()) {
	sub, err := r.js.Conn().SubscribeSync(resultSubjects)
	if err != nil {
		r.harnessError(fmt.Errorf("chaos: watch the results: %w", err))
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = sub.NextMsgWithContext(wctx)
	cancel()
	_ = sub.Unsubscribe()
	if err != nil {
		r.logf("no result stored within 10s: no crash at the outage")
		return nil
	}
	var wg sync.WaitGroup
	for slot := range r.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.pool.kill(slot); err != nil {
				r.harnessError(err)
				return
			}
			r.mu.Lock()
			r.rep.WorkerKills[KillResultStored]++
			r.mu.Unlock()
		}()
	}
	wg.Wait()
	r.logf("a result was stored: SIGKILL every worker")
	return func() {
		for slot := range r.cfg.Workers {
			if err := r.pool.start(slot); err != nil {
				r.harnessError(err)
			}
		}
	}
}

// restartServer shuts the single server down every 0.8-1.5s until ctx
// ends, keeps it down 0.2-0.7s and starts it again on the same port and
// store directory. The server is up when it returns.
func (r *scenarioRun) restartServer(ctx context.Context, rng *rand.Rand) {
	for range maxFaults {
		if !wait(ctx, between(rng, 800*time.Millisecond, 1500*time.Millisecond)) {
			return
		}
		down := between(rng, 200*time.Millisecond, 700*time.Millisecond)
		r.broker.stop(0)
		r.logf("NATS server stopped for %s", down.Round(time.Millisecond))
		pause(down)
		if err := r.broker.start(0); err != nil {
			r.harnessError(err)
			return
		}
		r.mu.Lock()
		r.rep.ServerRestarts++
		r.mu.Unlock()
	}
}

// killLeader finds the node leading AI_REQUESTS every 0.5-1.5s until ctx ends,
// shuts it down, waits for another node to take the lead, keeps the node
// down 0.5-1.5s in all and starts it again on the same ports and store
// directory. Every node is up when it returns.
func (r *scenarioRun) killLeader(ctx context.Context, rng *rand.Rand) {
	for range maxFaults {
		if !wait(ctx, between(rng, 500*time.Millisecond, 1500*time.Millisecond)) {
			return
		}
		// Once started, a round finishes even if the traffic ends meanwhile.
		leader := r.streamLeader(context.WithoutCancel(ctx), "")
		i := r.broker.index(leader)
		if i < 0 {
			r.logf("no leader of %s found (%q); skipping this round", requestStream, leader)
			continue
		}
		down := between(rng, 500*time.Millisecond, 1500*time.Millisecond)
		stopped := time.Now()
		r.broker.stop(i)
		r.logf("node %s (leader of %s) shut down", leader, requestStream)
		next := r.streamLeader(context.WithoutCancel(ctx), leader)
		took := time.Since(stopped)
		pause(down - took)
		if err := r.broker.start(i); err != nil {
			r.harnessError(err)
			return
		}
		readyCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := r.broker.waitReady(readyCtx)
		cancel()
		if err != nil {
			r.harnessError(fmt.Errorf("chaos: cluster not ready after restarting %s: %w", leader, err))
			return
		}
		move := fmt.Sprintf("%s shut down at %.1fs; ", leader, stopped.Sub(r.start).Seconds())
		if next == "" {
			move += "no new leader seen within 20s; "
		} else {
			move += fmt.Sprintf("%s led after %s; ", next, took.Round(time.Millisecond))
		}
		move += fmt.Sprintf("back after %s", time.Since(stopped).Round(time.Millisecond))
		r.logf("%s", move)
		r.mu.Lock()
		r.rep.ServerRestarts++
		r.rep.LeaderMoves = append(r.rep.LeaderMoves, move)
		r.mu.Unlock()
	}
}

// streamLeader returns the name of the node leading AI_REQUESTS other than
// not, polling for up to 20s; "" when none was found.
func (r *scenarioRun) streamLeader(ctx context.Context, not string) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var leader string
	_ = poll(ctx, 50*time.Millisecond, func() bool {
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		s, err := r.js.Stream(c, requestStream)
		if err != nil {
			return false
		}
		info, err := s.Info(c)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || info.Cluster.Leader == not {
			return false
		}
		leader = info.Cluster.Leader
		return true
	})
	return leader
}
