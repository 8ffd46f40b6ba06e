package transport

import (
	"context"
	"net"

	"golang.org/x/time/rate"
)

// Limit caps write throughput on c to bytesPerSec (0 = unlimited). It sits
// under TLS so the cap applies to bytes on the wire.
func Limit(c net.Conn, bytesPerSec int64) net.Conn {
	if bytesPerSec <= 0 {
		return c
	}
	burst := int(min(max(bytesPerSec/10, 16<<10), 1<<20))
	return &limited{Conn: c, lim: rate.NewLimiter(rate.Limit(bytesPerSec), burst), burst: burst}
}

type limited struct {
	net.Conn
	lim   *rate.Limiter
	burst int
}

func (l *limited) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		k := min(len(p), l.burst)
		if err := l.lim.WaitN(context.Background(), k); err != nil {
			return n, err
		}
		w, err := l.Conn.Write(p[:k])
		n += w
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}
