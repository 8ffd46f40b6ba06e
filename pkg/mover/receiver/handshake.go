package receiver

import (
	"net"
	"slices"
	"sync"
)

// maxHandshakes bounds connections still in their TLS handshake. A
// receiver's Service may be a NodePort or LoadBalancer that anyone can
// reach: without a bound each connection that never finishes its handshake
// holds a goroutine and a socket for the handshake timeout. A connection
// beyond the bound evicts the oldest pending one, so idle connections
// cannot lock the sender out; an honest handshake takes milliseconds.
const maxHandshakes = 16

type handshakes struct {
	mu      sync.Mutex
	pending []net.Conn // oldest first
}

// start registers c, closing the oldest pending connection if full.
func (h *handshakes) start(c net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.pending) >= maxHandshakes {
		h.pending[0].Close()
		h.pending = h.pending[1:]
	}
	h.pending = append(h.pending, c)
}

// closeAll ends every pending handshake (the receiver is stopping).
func (h *handshakes) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.pending {
		c.Close()
	}
	h.pending = nil
}

// done forgets c, whatever the handshake's outcome.
func (h *handshakes) done(c net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if i := slices.Index(h.pending, c); i >= 0 {
		h.pending = slices.Delete(h.pending, i, i+1)
	}
}
