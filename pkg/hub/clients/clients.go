// Package clients is what every hub controller reads and writes through.
package clients

import (
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Set is a controller's clients: the cached client it writes with, a
// reader around the cache, and its event recorder.
type Set struct {
	client.Client
	// APIReader reads straight from the API server where a stale cached
	// read could act twice (a second Migration, a decision already changed).
	APIReader client.Reader
	Recorder  events.EventRecorder
}

// Fill takes from mgr what is not set; events are recorded as name.
func (c *Set) Fill(mgr ctrl.Manager, name string) {
	if c.Client == nil {
		c.Client = mgr.GetClient()
	}
	if c.APIReader == nil {
		c.APIReader = mgr.GetAPIReader()
	}
	if c.Recorder == nil {
		c.Recorder = mgr.GetEventRecorder(name)
	}
}
