package decision

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
)

// StandbyClusters returns the clusters a policy's standby may be kept on,
// sorted: its spec.standby.clusterName, or what its standby Placement
// decides (none while that Placement is missing or unscheduled).
func StandbyClusters(ctx context.Context, r client.Reader, p *migrationv1alpha1.MigrationPolicy) ([]string, error) {
	sb := p.Spec.Standby
	switch {
	case sb == nil:
		return nil, nil
	case sb.PlacementRef != nil:
		return Clusters(ctx, r, p.Namespace, sb.PlacementRef.Name)
	default:
		return []string{sb.ClusterName}, nil
	}
}
