// Package v1alpha1 is the hub API of stateful-migration: MigrationPolicy enrols
// an OCM Placement, Migration records one move of an app and its data.
// +kubebuilder:object:generate=true
// +groupName=migration.open-cluster-management.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "migration.open-cluster-management.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Labels and annotations written by the hub controllers.
const (
	// PolicyLabel on a Migration names the MigrationPolicy it belongs to.
	PolicyLabel = "migration.open-cluster-management.io/policy"
	// PlacementLabel on a Migration names the enrolled Placement.
	PlacementLabel = "migration.open-cluster-management.io/placement"
	// DesiredForLabel on a companion Placement names the user's Placement it mirrors.
	DesiredForLabel = "migration.open-cluster-management.io/desired-for"
	// PolicyAnnotation on an enrolled Placement is "<namespace>/<name>" of its policy.
	PolicyAnnotation = "migration.open-cluster-management.io/policy"
	// ManagedByLabel marks objects the hub controllers create.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of ManagedByLabel.
	ManagedByValue = "stateful-migration"
)
