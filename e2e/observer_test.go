package e2e

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// observer watches the writer app on every cluster from outside: it follows
// each writer pod's log (acks are printed only after fsync) and samples, every
// samplePeriod, on which clusters a writer container is running.
type observer struct {
	ns, selector string
	clusters     []*cluster

	mu       sync.Mutex
	pods     []*appView // in the order they were first seen
	followed map[types.UID]*appView
	samples  int
	overlaps []string
	// setAside: pods whose running does not count as an overlap (a lost
	// cluster's frozen process resuming; its own spec measures it).
	setAside map[string]bool
}

// appView is what one writer pod said.
type appView struct {
	cluster, pod string
	start        map[string]string // its "start" line: the records it found on the volume
	firstAck     ack
	lastAck      ack
	acks         int
}

type ack struct {
	seq uint64
	t   time.Time
}

const samplePeriod = 100 * time.Millisecond

func observe(ctx context.Context, ns, selector string, clusters ...*cluster) *observer {
	o := &observer{ns: ns, selector: selector, clusters: clusters, followed: map[types.UID]*appView{}}
	go o.sample(ctx)
	return o
}

func (o *observer) sample(ctx context.Context) {
	defer GinkgoRecover()
	tick := time.NewTicker(samplePeriod)
	defer tick.Stop()
	failing := map[string]bool{} // clusters whose last listing failed
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var running []string // cluster/pod of every writer container running now
		clusters := 0        // clusters with one
		for _, c := range o.clusters {
			pods, err := o.list(ctx, c)
			if err != nil {
				// A missed sample is not an overlap; the order of acks is the hard proof.
				if !failing[c.name] {
					GinkgoWriter.Printf("%s observer: listing pods on %s fails (said once until it works): %v\n", time.Now().Format("15:04:05.000"), c.name, err)
				}
				failing[c.name] = true
				continue
			}
			failing[c.name] = false
			here := false
			for i := range pods.Items {
				p := &pods.Items[i]
				o.follow(ctx, c, p)
				if containerRunning(p) && !o.isSetAside(c.name+"/"+p.Name) {
					running = append(running, c.name+"/"+p.Name)
					here = true
				}
			}
			if here {
				clusters++
			}
		}
		o.mu.Lock()
		o.samples++
		if clusters > 1 {
			o.overlaps = append(o.overlaps, fmt.Sprintf("%s: %v", time.Now().Format(time.RFC3339Nano), running))
		}
		o.mu.Unlock()
	}
}

// list is bounded: a paused cluster's API server accepts connections but
// never answers, and one such cluster must not stop the sampling of the others.
func (o *observer) list(ctx context.Context, c *cluster) (*corev1.PodList, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.kube.CoreV1().Pods(o.ns).List(ctx, metav1.ListOptions{LabelSelector: o.selector})
}

// setAsideRunning stops counting cluster/pod as running in the overlap samples.
func (o *observer) setAsideRunning(clusterName, pod string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.setAside == nil {
		o.setAside = map[string]bool{}
	}
	o.setAside[clusterName+"/"+pod] = true
}

func (o *observer) isSetAside(key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.setAside[key]
}

// podsOn lists the names of the writer pods ever seen on a cluster.
func (o *observer) podsOn(clusterName string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, v := range o.pods {
		if v.cluster == clusterName {
			out = append(out, v.pod)
		}
	}
	return out
}

func containerRunning(p *corev1.Pod) bool {
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Running != nil {
			return true
		}
	}
	return false
}

// follow streams a pod's log once per pod. A stream can end early (container
// not started yet, API server hiccup): it is reopened, skipping the lines
// already read, until the pod is gone or its container has exited.
func (o *observer) follow(ctx context.Context, c *cluster, p *corev1.Pod) {
	o.mu.Lock()
	_, seen := o.followed[p.UID]
	v := &appView{cluster: c.name, pod: p.Name}
	if !seen {
		o.followed[p.UID] = v
		o.pods = append(o.pods, v)
	}
	o.mu.Unlock()
	if seen {
		return
	}
	GinkgoWriter.Printf("observer: following %s/%s on %s\n", p.Namespace, p.Name, c.name)
	go func() {
		defer GinkgoRecover()
		pods := c.kube.CoreV1().Pods(p.Namespace)
		read := 0
		for ctx.Err() == nil {
			if rc, err := pods.GetLogs(p.Name, &corev1.PodLogOptions{Follow: true}).Stream(ctx); err == nil {
				sc := bufio.NewScanner(rc)
				for n := 1; sc.Scan(); n++ {
					if n > read {
						o.line(v, sc.Text())
						read = n
					}
				}
				_ = rc.Close()
			}
			cur, err := pods.Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil || cur.UID != p.UID || exited(cur) {
				GinkgoWriter.Printf("observer: %s on %s done after %d lines\n", p.Name, c.name, read)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
}

func exited(p *corev1.Pod) bool {
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Terminated != nil {
			return true
		}
	}
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func (o *observer) line(v *appView, line string) {
	kind, _, _ := strings.Cut(line, " ")
	f := fields(line)
	o.mu.Lock()
	defer o.mu.Unlock()
	switch kind {
	case "start":
		v.start = f
	case "ack":
		seq, _ := strconv.ParseUint(f["seq"], 10, 64)
		ns, _ := strconv.ParseInt(f["t"], 10, 64)
		a := ack{seq: seq, t: time.Unix(0, ns)}
		if v.acks == 0 {
			v.firstAck = a
		}
		if a.seq > v.lastAck.seq {
			v.lastAck = a
		}
		v.acks++
	}
}

// view returns a copy of what the newest writer pod of a cluster said so far
// (zero when none was seen).
func (o *observer) view(clusterName string) appView {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := len(o.pods) - 1; i >= 0; i-- {
		if o.pods[i].cluster == clusterName {
			return *o.pods[i]
		}
	}
	return appView{}
}

func (o *observer) result() (samples int, overlaps []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.samples, append([]string(nil), o.overlaps...)
}
