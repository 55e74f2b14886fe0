package batch

import (
	"sort"
	"strconv"
	"sync"
)

// QualityFigures sum up shadow samples: how many, how many agreed, and
// their scores.
type QualityFigures struct {
	Samples int64 `json:"samples"`
	Agreed  int64 `json:"agreed"`
	// Agreement is Agreed / Samples; 0 without samples.
	Agreement float64 `json:"agreement"`
	// MeanScore is the samples' mean score, from 0 to 1.
	MeanScore float64 `json:"mean_score"`
}

// QualityBucket is the figures of the samples whose batch size (or
// position in their call) is From to To, both included.
type QualityBucket struct {
	From int    `json:"from"`
	To   int    `json:"to"`
	Name string `json:"name"`
	QualityFigures
}

// GroupQuality is what shadow sampling measured of one group's answers.
type GroupQuality struct {
	Model string `json:"model"`
	// Topic is empty when topics may share a call.
	Topic string `json:"topic,omitempty"`
	// Instructions identifies the instructions by the start of their
	// SHA-256, as GroupState does.
	Instructions string `json:"instructions,omitempty"`
	// The figures of every sample of the group.
	QualityFigures
	// Recent is the figures of the last ShadowConfig.Window samples.
	Recent QualityFigures `json:"recent"`
	// Limit is the most requests the quality guard lets one call of the
	// group carry now; 0 when it does not limit the group.
	Limit int `json:"limit"`
	// BySize and ByPosition split the samples by the size of the combined
	// call that answered them and by their position in it (from 1), in the
	// buckets of QualityBucketOf, smallest first; buckets without samples
	// are left out.
	BySize     []QualityBucket `json:"by_batch_size"`
	ByPosition []QualityBucket `json:"by_position"`
}

// qualityBounds are the upper ends of the buckets batch sizes and positions
// are counted in: 1, 2, 3-5, 6-10, 11-20, 21-50, ...
var qualityBounds = []int{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}

// QualityBucketOf returns the bucket a batch size or a position n (from 1)
// is counted in: its ends, and its name as metrics label it ("1", "3-5",
// "21-50", "10001+" past the last).
func QualityBucketOf(n int) (from, to int, name string) {
	i := bucketIndex(n)
	if i == len(qualityBounds) {
		last := qualityBounds[len(qualityBounds)-1] + 1
		return last, 0, strconv.Itoa(last) + "+"
	}
	from, to = 1, qualityBounds[i]
	if i > 0 {
		from = qualityBounds[i-1] + 1
	}
	if from == to {
		return from, to, strconv.Itoa(to)
	}
	return from, to, strconv.Itoa(from) + "-" + strconv.Itoa(to)
}

func bucketIndex(n int) int {
	return sort.SearchInts(qualityBounds, n)
}

// growPastAfter is how many windows in a row at or above the floor, just
// below the size whose agreement fell under it, make the guard try that
// size again.
const growPastAfter = 3

// quality keeps what shadow sampling measured, per group, and runs the
// guard: a group whose agreement over the last window of samples falls
// below the floor gets its call size halved (through groups), and grows
// back only while windows stay at or above it.
type quality struct {
	agreeAt float64
	// floor is the guard's agreement floor; 0 turns the guard off.
	floor  float64
	window int
	groups *groups
	// changed reports a limit the guard set, with the group's state after.
	changed func(QualityChange, GroupState)

	mu sync.Mutex
	m  map[groupKey]*groupQuality
}

// tally adds up samples.
type tally struct {
	samples, agreed int64
	scores          float64
}

func (t *tally) add(score float64, agree bool) {
	t.samples++
	t.scores += score
	if agree {
		t.agreed++
	}
}

func (t tally) figures() QualityFigures {
	if t.samples == 0 {
		return QualityFigures{}
	}
	return QualityFigures{Samples: t.samples, Agreed: t.agreed,
		Agreement: float64(t.agreed) / float64(t.samples), MeanScore: t.scores / float64(t.samples)}
}

type mark struct {
	score float64
	agree bool
}

type groupQuality struct {
	all                tally
	bySize, byPosition []tally // by bucket index; one past the bounds for larger
	// recent holds the last window samples, oldest at next once full.
	recent []mark
	next   int
	// judged and judgedAgreed count the samples the guard judges since its
	// last change.
	judged, judgedAgreed int
	// badAt is the call size whose window fell below the floor last (0:
	// none known); streak counts windows at or above the floor just below
	// it.
	badAt, streak int
}

func newQuality(agreeAt, floor float64, window int, g *groups, changed func(QualityChange, GroupState)) *quality {
	return &quality{agreeAt: agreeAt, floor: floor, window: window, groups: g, changed: changed, m: map[groupKey]*groupQuality{}}
}

// record adds one sample of group k, answered in a call of size requests
// at position (from 1), and runs the guard; it reports whether the sample
// agrees.
func (q *quality) record(k groupKey, size, position int, score float64) bool {
	agree := score >= q.agreeAt
	q.mu.Lock()
	g, ok := q.m[k]
	if !ok {
		g = &groupQuality{bySize: make([]tally, len(qualityBounds)+1), byPosition: make([]tally, len(qualityBounds)+1)}
		q.m[k] = g
	}
	g.all.add(score, agree)
	g.bySize[bucketIndex(size)].add(score, agree)
	g.byPosition[bucketIndex(position)].add(score, agree)
	if len(g.recent) < q.window {
		g.recent = append(g.recent, mark{score, agree})
	} else {
		g.recent[g.next] = mark{score, agree}
		g.next = (g.next + 1) % q.window
	}
	var change *QualityChange
	var st GroupState
	if q.floor > 0 {
		change, st = q.guard(k, g, size, agree)
	}
	q.mu.Unlock()
	if change != nil {
		q.changed(*change, st)
	}
	return agree
}

// guard judges group k's agreement once a window of samples of calls no
// larger than its limit is in, and changes the limit when it must: halved
// below the floor; at or above it, grown back towards the size that fell
// below (halving the gap), which it tries again only after growPastAfter
// good windows in a row just below, then by a quarter a window until the
// limit is lifted at MaxBatchSize.
func (q *quality) guard(k groupKey, g *groupQuality, size int, agree bool) (*QualityChange, GroupState) {
	limit := q.groups.qualityLimit(k)
	if limit > 0 && size > limit {
		return nil, GroupState{} // a call made before the last change
	}
	g.judged++
	if agree {
		g.judgedAgreed++
	}
	if g.judged < q.window {
		return nil, GroupState{}
	}
	agreement := float64(g.judgedAgreed) / float64(g.judged)
	g.judged, g.judgedAgreed = 0, 0
	var next int
	switch cur := q.groups.size(k); {
	case agreement < q.floor:
		if next = max(1, cur/2); next >= cur {
			return nil, GroupState{}
		}
		g.badAt, g.streak = cur, 0
	case limit == 0:
		return nil, GroupState{}
	default:
		if g.badAt > 0 && limit >= g.badAt-1 {
			if g.streak++; g.streak < growPastAfter {
				return nil, GroupState{}
			}
			g.badAt, g.streak = 0, 0
		}
		if g.badAt > 0 {
			next = min(g.badAt-1, limit+max(1, (g.badAt-1-limit)/2))
		} else {
			next = limit + max(1, limit/4)
		}
		if next >= q.groups.maxSize {
			next = 0
		}
	}
	st, before := q.groups.limitForQuality(k, next)
	return &QualityChange{Model: st.Model, Topic: st.Topic, Instructions: st.Instructions, From: before, To: st.Size,
		Limit: next, Agreement: agreement, Floor: q.floor, Window: q.window}, st
}

// states returns every group's figures, by model, instructions and topic.
func (q *quality) states() []GroupQuality {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]GroupQuality, 0, len(q.m))
	for k, g := range q.m {
		var recent tally
		for _, m := range g.recent {
			recent.add(m.score, m.agree)
		}
		out = append(out, GroupQuality{
			Model: k.model, Topic: k.topic, Instructions: instructionsID(k.instructions),
			QualityFigures: g.all.figures(), Recent: recent.figures(), Limit: q.groups.qualityLimit(k),
			BySize: buckets(g.bySize), ByPosition: buckets(g.byPosition),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Model != out[j].Model {
			return out[i].Model < out[j].Model
		}
		if out[i].Instructions != out[j].Instructions {
			return out[i].Instructions < out[j].Instructions
		}
		return out[i].Topic < out[j].Topic
	})
	return out
}

func buckets(ts []tally) []QualityBucket {
	out := []QualityBucket{}
	for i, t := range ts {
		if t.samples == 0 {
			continue
		}
		n := qualityBounds[len(qualityBounds)-1] + 1
		if i < len(qualityBounds) {
			n = qualityBounds[i]
		}
		from, to, name := QualityBucketOf(n)
		out = append(out, QualityBucket{From: from, To: to, Name: name, QualityFigures: t.figures()})
	}
	return out
}
