package agent

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// ConditionAgentReady is the agent's own condition on its ManagedClusterAddOn.
// Migration progress conditions are added next to it by the replication agent.
const ConditionAgentReady = "ReplicationAgentReady"

// readyReporter asserts the agent's condition at start and again every
// interval, so a condition removed by someone else comes back. A hub that
// cannot be reached is retried with backoff and logged with the reason.
type readyReporter struct {
	writer   *StatusWriter
	message  string
	interval time.Duration
	backoff  []time.Duration
	// onAttempt, if set, observes each report's outcome (tests).
	onAttempt func(error)
}

func (r *readyReporter) Start(ctx context.Context) error {
	failures := 0
	for {
		delay := r.interval
		err := r.writer.Update(ctx, []metav1.Condition{{
			Type:    ConditionAgentReady,
			Status:  metav1.ConditionTrue,
			Reason:  "AgentRunning",
			Message: r.message,
		}})
		if r.onAttempt != nil {
			r.onAttempt(err)
		}
		if err != nil {
			delay = r.backoff[min(failures, len(r.backoff)-1)]
			failures++
			klog.ErrorS(err, "Cannot report agent status to the hub; will retry", "retryIn", delay, "attempt", failures)
		} else {
			if failures > 0 {
				klog.InfoS("Reporting to the hub again", "afterFailures", failures)
			}
			failures = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
}

func agentMessage(cluster, version string) string {
	return fmt.Sprintf("agent %s is running on cluster %s", version, cluster)
}
