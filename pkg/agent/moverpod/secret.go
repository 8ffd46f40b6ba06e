package moverpod

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// WaitingForTLS returns why a mover cannot start yet for want of the
// migration's TLS Secret, or "" once it is there. The agent may read that
// Secret only through a Role the same ManifestWork carries, so Forbidden
// means that Role has not been applied yet, and is waited out like NotFound.
func WaitingForTLS(ctx context.Context, r client.Reader, namespace, name string) (string, error) {
	err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &corev1.Secret{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("waiting for TLS Secret %s", name), nil
	case apierrors.IsForbidden(err):
		return fmt.Sprintf("waiting for TLS Secret %s (the Role %s-reader that lets the agent read it is not there yet)", name, name), nil
	}
	return "", err
}
