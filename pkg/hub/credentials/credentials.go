// Package credentials mints and keeps the per-migration mutual-TLS material
// (docs/protocol.md, "Downlink"): a fresh CA, a server pair for the
// destination's receivers and a client pair for the source's senders, ECDSA
// P-256 from crypto/rand (pkg/mover/certs). It lives in one hub Secret owned
// by the Migration and is delivered only inside the two ManifestWorks of that
// migration. The CA key is not kept: nothing is signed after minting.
package credentials

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/mover/certs"
)

// Keys of the hub Secret.
const (
	KeyCA         = "ca.crt"
	KeyServerCert = "server.crt"
	KeyServerKey  = "server.key"
	KeyClientCert = "client.crt"
	KeyClientKey  = "client.key"
)

// Validity of the minted certificates: long enough for a large initial copy
// (the policy's default InitialSync timeout is 24h), short enough that a
// leaked pair is soon useless. Credentials are deleted when the migration ends.
const Validity = 7 * 24 * time.Hour

// Pair is the PEM material one side receives.
type Pair struct {
	CA, Cert, Key []byte
}

// Bundle is what the hub keeps for one migration.
type Bundle struct {
	Server, Client Pair
}

// SecretName is the hub Secret of migration m, in m's namespace.
func SecretName(m *migrationv1alpha1.Migration) string {
	return m.Name + "-credentials"
}

// Mint creates a fresh bundle whose server certificate carries
// replv1.DefaultServerName, the name every sender checks.
func Mint(validity time.Duration) (*Bundle, error) {
	b, err := certs.New([]string{replv1.DefaultServerName}, validity)
	if err != nil {
		return nil, fmt.Errorf("minting migration credentials: %w", err)
	}
	return &Bundle{
		Server: Pair{CA: b.CACert, Cert: b.ServerCert, Key: b.ServerKey},
		Client: Pair{CA: b.CACert, Cert: b.ClientCert, Key: b.ClientKey},
	}, nil
}

// ErrRefused marks a credentials Secret the hub did not mint for this
// Migration: it is never shipped to a cluster nor deleted.
var ErrRefused = errors.New("credentials secret refused")

// Ensure returns the bundle of m, minting and storing it on first use and
// recording the CA's fingerprint in m's status (the caller writes it).
// Idempotent: a restarted manager reads back what it stored, so both sides
// always get pairs of the same CA. A Secret of that name that m does not
// control, or whose CA is not the one recorded, is refused (ErrRefused): a
// tenant may write Secrets in its namespace, but must not choose the keys
// a migration trusts. r should read around the cache: the hub has no
// business caching every Secret of the cluster.
//
// The Keeper holds each bundle it trusted for the Migration (UID and
// recorded fingerprint) it trusted it for: every step of a migration needs
// it, and reading the Secret each time was the hub's most frequent request
// at fleet scale (docs/scale.md). A Secret rewritten after that is never
// shipped by this process, which ships the bundle it minted or checked; the
// next process reads it, and refuses it.
func (k *Keeper) Ensure(ctx context.Context, c client.Client, r client.Reader, m *migrationv1alpha1.Migration) (*Bundle, error) {
	if b := k.get(m); b != nil {
		return b, nil
	}
	b, err := ensure(ctx, c, r, m)
	if err == nil {
		k.put(m, b)
	}
	return b, err
}

// Keeper mints, reads back and deletes migrations' credentials, keeping
// the bundles it trusted in memory. Its zero value is ready for use.
type Keeper struct {
	mu    sync.Mutex
	known map[types.UID]kept
}

type kept struct {
	fingerprint string
	b           *Bundle
}

func (k *Keeper) get(m *migrationv1alpha1.Migration) *Bundle {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e, ok := k.known[m.UID]; ok && e.fingerprint != "" && e.fingerprint == m.Status.CredentialsFingerprint {
		return e.b
	}
	return nil
}

func (k *Keeper) put(m *migrationv1alpha1.Migration, b *Bundle) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.known == nil {
		k.known = map[types.UID]kept{}
	}
	k.known[m.UID] = kept{fingerprint: Fingerprint(b.Server.CA), b: b}
}

func ensure(ctx context.Context, c client.Client, r client.Reader, m *migrationv1alpha1.Migration) (*Bundle, error) {
	s := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: SecretName(m)}, s)
	switch {
	case err == nil:
		b, err := trusted(s, m)
		if err == nil || !errors.Is(err, errUnrecorded) {
			return b, err
		}
		// Stored but not recorded: either the status write that records it
		// was lost (nothing has trusted it yet: mint anew), or m is a stale
		// copy from the cache, and a fresh one has it recorded.
		fresh := &migrationv1alpha1.Migration{}
		if err := r.Get(ctx, client.ObjectKeyFromObject(m), fresh); err != nil {
			return nil, err
		}
		if fresh.ResourceVersion != m.ResourceVersion {
			return nil, fmt.Errorf("migration %s/%s changed since it was read; retrying", m.Namespace, m.Name)
		}
		if err := c.Delete(ctx, s, client.Preconditions{UID: &s.UID}); client.IgnoreNotFound(err) != nil {
			return nil, err
		}
	case !apierrors.IsNotFound(err):
		return nil, err
	}
	b, err := Mint(Validity)
	if err != nil {
		return nil, err
	}
	s = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      SecretName(m),
			Namespace: m.Namespace,
			Labels: map[string]string{
				migrationv1alpha1.ManagedByLabel: migrationv1alpha1.ManagedByValue,
			},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			KeyCA:         b.Server.CA,
			KeyServerCert: b.Server.Cert,
			KeyServerKey:  b.Server.Key,
			KeyClientCert: b.Client.Cert,
			KeyClientKey:  b.Client.Key,
		},
	}
	if err := controllerutil.SetControllerReference(m, s, c.Scheme()); err != nil {
		return nil, err
	}
	if err := c.Create(ctx, s); err != nil {
		return nil, fmt.Errorf("storing credentials: %w", err)
	}
	m.Status.CredentialsFingerprint = Fingerprint(b.Server.CA)
	return b, nil
}

var errUnrecorded = errors.New("credentials not recorded in the Migration's status")

// trusted returns the bundle in s if m controls s and s holds the CA m's
// status recorded.
func trusted(s *corev1.Secret, m *migrationv1alpha1.Migration) (*Bundle, error) {
	owner := metav1.GetControllerOf(s)
	if owner == nil || owner.UID != m.UID {
		return nil, fmt.Errorf("%w: Secret %s/%s exists but was not created for Migration %s (uid %s); delete or rename it",
			ErrRefused, s.Namespace, s.Name, m.Name, m.UID)
	}
	if m.Status.CredentialsFingerprint == "" {
		return nil, errUnrecorded
	}
	if got := Fingerprint(s.Data[KeyCA]); got != m.Status.CredentialsFingerprint {
		return nil, fmt.Errorf("%w: Secret %s/%s holds a CA (sha256 %s) other than the one minted for Migration %s (%s)",
			ErrRefused, s.Namespace, s.Name, got[:12], m.Name, m.Status.CredentialsFingerprint[:min(12, len(m.Status.CredentialsFingerprint))])
	}
	return fromSecret(s)
}

// Fingerprint is the hex SHA-256 of a PEM CA certificate.
func Fingerprint(caPEM []byte) string {
	sum := sha256.Sum256(caPEM)
	return hex.EncodeToString(sum[:])
}

// Delete revokes the hub copy of m's credentials; a Secret of that name the
// hub did not mint for m is left alone.
func (k *Keeper) Delete(ctx context.Context, c client.Client, r client.Reader, m *migrationv1alpha1.Migration) error {
	k.mu.Lock()
	delete(k.known, m.UID)
	k.mu.Unlock()
	s := &corev1.Secret{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: SecretName(m)}, s); err != nil {
		return client.IgnoreNotFound(err)
	}
	if _, err := trusted(s, m); err != nil && !errors.Is(err, errUnrecorded) {
		return nil
	}
	return client.IgnoreNotFound(c.Delete(ctx, s, client.Preconditions{UID: &s.UID}))
}

func fromSecret(s *corev1.Secret) (*Bundle, error) {
	for _, k := range []string{KeyCA, KeyServerCert, KeyServerKey, KeyClientCert, KeyClientKey} {
		if len(s.Data[k]) == 0 {
			return nil, fmt.Errorf("credentials secret %s/%s lacks %s", s.Namespace, s.Name, k)
		}
	}
	return &Bundle{
		Server: Pair{CA: s.Data[KeyCA], Cert: s.Data[KeyServerCert], Key: s.Data[KeyServerKey]},
		Client: Pair{CA: s.Data[KeyCA], Cert: s.Data[KeyClientCert], Key: s.Data[KeyClientKey]},
	}, nil
}
