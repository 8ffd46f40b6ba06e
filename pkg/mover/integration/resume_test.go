package integration_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
)

// cutConn counts bytes written and kills the TCP connection past a limit.
type cutConn struct {
	net.Conn
	n     *atomic.Int64
	limit int64
}

func (c *cutConn) Write(p []byte) (int, error) {
	if c.limit > 0 && c.n.Load() > c.limit {
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	k, err := c.Conn.Write(p)
	c.n.Add(int64(k))
	return k, err
}

func TestDroppedConnectionResumes(t *testing.T) {
	c := makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	const total = 24 << 20
	writeRandom(t, filepath.Join(src, "big.db"), 16<<20, 11)
	for i := range 8 {
		writeRandom(t, filepath.Join(src, "f"+string(rune('a'+i))), 1<<20, uint64(20+i))
	}
	r := startReceiver(t, c, dst, false)
	var first, second atomic.Int64
	var dials atomic.Int32
	o := sendOpts(c, src, r.addr)
	o.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		if dials.Add(1) == 1 {
			return &cutConn{Conn: raw, n: &first, limit: total / 2}, nil
		}
		return &cutConn{Conn: raw, n: &second}, nil
	}
	var reconnects atomic.Int64
	o.Progress = func(p progress.Progress) { reconnects.Store(p.Reconnects) }
	res, err := sender.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t); err != nil {
		t.Fatal(err)
	}
	assertSame(t, src, dst)
	if dials.Load() < 2 || res.Progress.Reconnects < 1 {
		t.Fatalf("connection was never cut (dials %d)", dials.Load())
	}
	if first.Load() < total/2 {
		t.Fatalf("first connection carried only %d bytes", first.Load())
	}
	// Resumed, not restarted: the second connection carries well under the total.
	if s := second.Load(); s > total*7/10 {
		t.Fatalf("after resume %d of %d bytes were sent again", s, total)
	}
	t.Logf("first connection %d bytes, after resume %d bytes, total data %d", first.Load(), second.Load(), total)
}

func TestReceiverRestartResumes(t *testing.T) {
	c := makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	for i := range 6 {
		writeRandom(t, filepath.Join(src, "f"+string(rune('a'+i))), 2<<20, uint64(40+i))
	}
	// First run stops the receiver halfway through.
	r1 := startReceiver(t, c, dst, false)
	var sent atomic.Int64
	o := sendOpts(c, src, r1.addr)
	o.RetryTimeout = time.Second
	o.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &cutConn{Conn: raw, n: &sent, limit: 6 << 20}, nil
	}
	if _, err := sender.Run(context.Background(), o); err == nil {
		t.Fatal("expected the first run to fail")
	}
	r1.stop()
	r1.wait(t)
	// A new receiver process on the same directory keeps what arrived.
	r2 := startReceiver(t, c, dst, false)
	var again atomic.Int64
	o = sendOpts(c, src, r2.addr)
	o.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &cutConn{Conn: raw, n: &again}, nil
	}
	if _, err := sender.Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if err := r2.wait(t); err != nil {
		t.Fatal(err)
	}
	assertSame(t, src, dst)
	if again.Load() > 9<<20 {
		t.Fatalf("restart resent %d bytes of 12 MiB", again.Load())
	}
	_ = os.Remove
}
