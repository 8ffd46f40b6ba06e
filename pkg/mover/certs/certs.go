// Package certs mints a CA and a server and client key pair for one
// migration's mutual TLS. Keys come from crypto/rand (ECDSA P-256).
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Bundle holds PEM-encoded credentials.
type Bundle struct {
	CACert, CAKey         []byte
	ServerCert, ServerKey []byte
	ClientCert, ClientKey []byte
}

// DefaultHosts are the server names used when none are given.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Files written by Write, relative to the output directory.
const (
	CAFile         = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
	ClientCertFile = "client.crt"
	ClientKeyFile  = "client.key"
)

// New mints a fresh CA and leaf pair valid for validity; hosts (DNS names or
// IPs) go into the server certificate.
func New(hosts []string, validity time.Duration) (*Bundle, error) {
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	now := time.Now().Add(-5 * time.Minute) // tolerate clock skew between clusters
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "stateful-migration mover CA"},
		NotBefore: now, NotAfter: now.Add(validity), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, MaxPathLenZero: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	b := &Bundle{CACert: pemCert(caDER)}
	if b.CAKey, err = pemKey(caKey); err != nil {
		return nil, err
	}
	leaf := func(cn string, usage x509.ExtKeyUsage, hosts []string) ([]byte, []byte, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		t := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: cn},
			NotBefore: now, NotAfter: now.Add(validity), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				t.IPAddresses = append(t.IPAddresses, ip)
			} else {
				t.DNSNames = append(t.DNSNames, h)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, t, ca, &k.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		kp, err := pemKey(k)
		return pemCert(der), kp, err
	}
	if b.ServerCert, b.ServerKey, err = leaf("mover-receiver", x509.ExtKeyUsageServerAuth, hosts); err != nil {
		return nil, err
	}
	if b.ClientCert, b.ClientKey, err = leaf("mover-sender", x509.ExtKeyUsageClientAuth, nil); err != nil {
		return nil, err
	}
	return b, nil
}

// Write stores the bundle in dir; keys are readable by the owner only.
func (b *Bundle) Write(dir string) error {
	if err := os.MkdirAll(dir, 0700); err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{CAFile, b.CACert, 0644}, {CAKeyFile, b.CAKey, 0600},
		{ServerCertFile, b.ServerCert, 0644}, {ServerKeyFile, b.ServerKey, 0600},
		{ClientCertFile, b.ClientCert, 0644}, {ClientKeyFile, b.ClientKey, 0600},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pemKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
