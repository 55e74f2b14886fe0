package fake

import "sync/atomic"

// WrongAnswer is what a fake answers, in a combined call, for an item past
// the position SetWrongAfter set: a fluent answer to some other question,
// as a model that lost track of the items in a long prompt gives.
const WrongAnswer = "an answer meant for another item of the call"

// mixUp is the state of SetWrongAfter. Controls embeds it; its zero value
// answers every item right.
type mixUp struct{ after atomic.Int64 }

// SetWrongAfter makes combined answers wrong for every item after position
// n of its call (positions count from 1, in request order): AnswerAt then
// gives WrongAnswer for them. A call of one request, a plain call, stays
// right whatever n is, so a test can tell what combining did to the
// answers. n <= 0 turns it off.
func (m *mixUp) SetWrongAfter(n int) { m.after.Store(int64(max(n, 0))) }

// AnswerAt is the answer to the item at index i (from 0, in request order)
// of a call of n items whose right answer is right: WrongAnswer when the
// call is combined (n > 1) and i is past SetWrongAfter's position, right
// otherwise.
func (m *mixUp) AnswerAt(i, n int, right string) string {
	if after := m.after.Load(); n > 1 && after > 0 && int64(i) >= after {
		return WrongAnswer
	}
	return right
}
