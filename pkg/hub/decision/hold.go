package decision

import "sync"

// Hold serialises this process's read-modify-writes of one Placement's
// decisions until the returned func is called. Each hub controller
// reconciles several objects at once (--workers), and two of them — a
// move and a standby of one app, or a policy and its Migration — may read
// the actual clusters, decide, and write: interleaved, the second write
// would undo the first from its older read. The optimistic lock on the
// write catches a stale cache, not that.
func Hold(namespace, placement string) (release func()) {
	return holds.lock(namespace + "/" + placement)
}

var holds = keyed{m: map[string]*held{}}

type keyed struct {
	mu sync.Mutex
	m  map[string]*held
}

type held struct {
	sync.Mutex
	waiters int // holders and waiters; the entry goes with the last
}

func (k *keyed) lock(key string) func() {
	k.mu.Lock()
	h := k.m[key]
	if h == nil {
		h = &held{}
		k.m[key] = h
	}
	h.waiters++
	k.mu.Unlock()
	h.Lock()
	return func() {
		h.Unlock()
		k.mu.Lock()
		if h.waiters--; h.waiters == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
