package combined

import (
	"strconv"

	"github.com/aibatch/aibatch/provider"
)

// LocalKeys is line with its requests keyed "0" to "size-1" inside the
// call: every Batch API line of a size then has the same answer schema, so
// the lines share the cached prefix; the line's custom_id maps the keys
// back (LineResults).
func LocalKeys(line provider.Batch) provider.Batch {
	reqs := make([]provider.Request, len(line.Requests))
	for i, r := range line.Requests {
		r.Key = strconv.Itoa(i)
		reqs[i] = r
	}
	line.Requests = reqs
	return line
}

// LineResults maps results, answers of line n keyed by LocalKeys, back to
// the job's keys (provider.CombinedKey), and gives every request of line
// that the answer left out lineErr.
func LineResults(n int, line provider.Batch, results []provider.Result, lineErr error) []provider.Result {
	answered := make(map[string]bool, len(results))
	for i, r := range results {
		answered[r.Key] = true
		local, _ := strconv.Atoi(r.Key) // one of line's local keys: digits
		results[i].Key = provider.CombinedKey(n, local)
	}
	for i := range line.Requests {
		if !answered[strconv.Itoa(i)] {
			results = append(results, provider.Result{Key: provider.CombinedKey(n, i), Err: lineErr})
		}
	}
	return results
}
