package batch

// The quality guard's hold on a group's call size (quality.go decides; the
// planner reads size, which stays within the limit).

// qualityLimit is the most requests the quality guard lets one call of
// group k carry; 0 when it does not limit the group.
func (g *groups) qualityLimit(k groupKey) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m, ok := g.m[k]; ok {
		return m.qualityLimit
	}
	return 0
}

// limitForQuality sets group k's quality limit (0 lifts it) and returns the
// group's state after and its call size before. It does not report the
// change: the guard does, with its reason.
func (g *groups) limitForQuality(k groupKey, limit int) (after GroupState, before int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.get(k)
	before = m.effective()
	m.qualityLimit = max(limit, 0)
	return g.state(k, m), before
}
