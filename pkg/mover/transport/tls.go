// Package transport sets up the movers' mutually authenticated TLS 1.3
// connections, with reconnect backoff and an optional bandwidth limit.
package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Files names the PEM files of one side's credentials.
type Files struct {
	CA, Cert, Key string
}

func (f Files) load() (*x509.CertPool, tls.Certificate, error) {
	var zero tls.Certificate
	var missing []string
	for _, x := range [][2]string{{"--ca", f.CA}, {"--cert", f.Cert}, {"--key", f.Key}} {
		if x[1] == "" {
			missing = append(missing, x[0])
		}
	}
	if len(missing) > 0 {
		return nil, zero, fmt.Errorf("missing credentials: %s required", strings.Join(missing, ", "))
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, zero, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, zero, fmt.Errorf("CA file %s holds no PEM certificate", f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, zero, fmt.Errorf("load certificate %s / key %s: %w", f.Cert, f.Key, err)
	}
	return pool, cert, nil
}

// ServerConfig requires TLS 1.3 and a client certificate from the CA.
func ServerConfig(f Files) (*tls.Config, error) {
	pool, cert, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// ClientConfig trusts only the CA and presents the client certificate.
// serverName overrides the name checked in the server's certificate.
func ClientConfig(f Files, serverName string) (*tls.Config, error) {
	pool, cert, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   serverName,
	}, nil
}

// ErrAuth marks a handshake refused for credentials, which retrying won't fix.
var ErrAuth = errors.New("TLS authentication failed")

// Dial connects and completes the handshake, so credential problems surface
// here with a clear message rather than as a later read error.
func Dial(ctx context.Context, addr string, cfg *tls.Config, bwlimit int64) (*tls.Conn, error) {
	c := cfg.Clone()
	if c.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		c.ServerName = host
	}
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return Handshake(ctx, Limit(raw, bwlimit), c, addr)
}

// Handshake runs the client side of TLS on an established connection.
func Handshake(ctx context.Context, raw net.Conn, cfg *tls.Config, addr string) (*tls.Conn, error) {
	conn := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, classify(err, addr)
	}
	return conn, nil
}

func classify(err error, addr string) error {
	var cv *tls.CertificateVerificationError
	var alert tls.AlertError
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	switch {
	case errors.As(err, &cv), errors.As(err, &ue), errors.As(err, &he):
		return fmt.Errorf("%w: server %s presented a certificate not valid for this CA/name: %v", ErrAuth, addr, err)
	case errors.As(err, &alert):
		return fmt.Errorf("%w: server %s rejected our client certificate or TLS version: %v", ErrAuth, addr, err)
	}
	return fmt.Errorf("TLS handshake with %s: %w", addr, err)
}

// Accept completes a server-side handshake; a peer without a valid client
// certificate is refused here.
func Accept(ctx context.Context, raw net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	conn := tls.Server(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("refused connection from %s: %w (a client certificate signed by the migration CA is required)", raw.RemoteAddr(), err)
	}
	return conn, nil
}

// Backoff returns the wait before reconnect attempt n (0-based).
func Backoff(n int) time.Duration {
	d := 250 * time.Millisecond << min(n, 6)
	return min(d, 10*time.Second)
}
