// Package credentials mints and keeps the per-migration mutual-TLS material
// (docs/protocol.md, "Downlink"): a fresh CA, a server pair for the
// destination's receivers and a client pair for the source's senders, ECDSA
// P-256 from crypto/rand (pkg/mover/certs). It lives in one hub Secret owned
// by the Migration and is delivered only inside the two ManifestWorks of that
// migration. The CA key is not kept: nothing is signed after minting.
package credentials

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// Ensure returns the bundle of m, minting and storing it on first use.
// Idempotent: a restarted manager reads back what it stored, so both sides
// always get pairs of the same CA. r should read around the cache: the hub
// has no business caching every Secret of the cluster.
func Ensure(ctx context.Context, c client.Client, r client.Reader, m *migrationv1alpha1.Migration) (*Bundle, error) {
	s := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: SecretName(m)}, s)
	switch {
	case err == nil:
		return fromSecret(s)
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
		if apierrors.IsAlreadyExists(err) {
			// Someone (an earlier reconcile whose read was stale) won: use theirs.
			if err := r.Get(ctx, client.ObjectKeyFromObject(s), s); err != nil {
				return nil, err
			}
			return fromSecret(s)
		}
		return nil, fmt.Errorf("storing credentials: %w", err)
	}
	return b, nil
}

// Delete revokes the hub copy of m's credentials.
func Delete(ctx context.Context, c client.Client, m *migrationv1alpha1.Migration) error {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: SecretName(m)}}
	return client.IgnoreNotFound(c.Delete(ctx, s))
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
