package credentials

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
)

func secretOf(b *Bundle, owner *migrationv1alpha1.Migration) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: SecretName(owner)},
		Data: map[string][]byte{KeyCA: b.Server.CA, KeyServerCert: b.Server.Cert, KeyServerKey: b.Server.Key,
			KeyClientCert: b.Client.Cert, KeyClientKey: b.Client.Key}}
	s.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Migration", Name: owner.Name, UID: owner.UID, Controller: ptr.To(true)}}
	return s
}

func TestMintedBundlesAreFreshAndTrustedOnlyByTheirMigration(t *testing.T) {
	a, err := Mint(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Mint(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(a.Server.CA) == Fingerprint(b.Server.CA) || string(a.Server.Key) == string(b.Server.Key) {
		t.Fatal("each migration gets its own CA and keys")
	}
	if string(a.Server.CA) != string(a.Client.CA) || string(a.Server.Cert) == string(a.Client.Cert) {
		t.Fatal("both sides share the CA, each has its own pair")
	}

	m := &migrationv1alpha1.Migration{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web", UID: "u1"}}
	m.Status.CredentialsFingerprint = Fingerprint(a.Server.CA)
	got, err := trusted(secretOf(a, m), m)
	if err != nil || string(got.Client.Key) != string(a.Client.Key) {
		t.Fatalf("the Migration's own Secret: %v", err)
	}

	// Same name, same owner, another CA: someone swapped the material.
	if _, err := trusted(secretOf(b, m), m); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "other than the one minted") {
		t.Errorf("a swapped CA must be refused: %v", err)
	}
	// Another owner: not ours to use or delete.
	other := m.DeepCopy()
	other.UID = "u2"
	if _, err := trusted(secretOf(a, other), m); !errors.Is(err, ErrRefused) {
		t.Errorf("a Secret of another Migration must be refused: %v", err)
	}
	// Incomplete material.
	s := secretOf(a, m)
	delete(s.Data, KeyClientKey)
	if _, err := trusted(s, m); err == nil || !strings.Contains(err.Error(), KeyClientKey) {
		t.Errorf("a Secret without %s: %v", KeyClientKey, err)
	}
}
