package batch

import "sync"

// bufferPool reuses byte buffers on a hot path. Buffers larger than max
// are dropped when put back, so a rare huge one does not stay pinned.
// Buffers travel as *[]byte: a caller that keeps the pointer puts it back
// without an allocation.
type bufferPool struct {
	pool sync.Pool // of *[]byte
	max  int
}

// get returns an empty buffer of at least size bytes.
func (p *bufferPool) get(size int) *[]byte {
	if b, _ := p.pool.Get().(*[]byte); b != nil && cap(*b) >= size {
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, size)
	return &b
}

// put hands b back for a later get; the caller keeps no reference to it.
func (p *bufferPool) put(b *[]byte) {
	if cap(*b) > 0 && cap(*b) <= p.max {
		p.pool.Put(b)
	}
}
