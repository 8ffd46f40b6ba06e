package migration

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
)

// bytesIEC renders n as kubectl users read sizes: 620MiB, 1.2GiB, 512B.
func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	suffix := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}[exp]
	if v < 10 {
		return fmt.Sprintf("%.1f%s", v, suffix)
	}
	return fmt.Sprintf("%.0f%s", v, suffix)
}

// seconds renders a duration rounded for reading: 950ms, 3.2s, 1m12s.
func seconds(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// humanize restates progress and timings in the status's text fields.
func humanize(st *migrationv1alpha1.MigrationStatus) {
	p := &st.Progress
	p.Copied, p.Lag, p.Rate = "", "", ""
	if p.BytesTotal > 0 || p.BytesCopied > 0 {
		// Bytes sent again (changed while copied) count in BytesCopied; the
		// column reads as progress, so it stops at the total, like Percent.
		copied := p.BytesCopied
		if p.BytesTotal > 0 {
			copied = min(copied, p.BytesTotal)
		}
		p.Copied = bytesIEC(copied) + "/" + bytesIEC(p.BytesTotal)
	}
	if p.LagBytes > 0 || p.LagSeconds > 0 {
		p.Lag = bytesIEC(p.LagBytes) + " " + seconds(time.Duration(p.LagSeconds)*time.Second)
	}
	if p.ThroughputBytesPerSecond > 0 {
		p.Rate = bytesIEC(p.ThroughputBytesPerSecond) + "/s"
	}
	t := &st.Timings
	t.Summary = ""
	if t.Downtime != nil {
		part := func(d *metav1.Duration) string {
			if d == nil {
				return "-"
			}
			return seconds(d.Duration)
		}
		t.Summary = fmt.Sprintf("%s (term %s, copy %s, launch %s)", seconds(t.Downtime.Duration), part(t.Termination), part(t.FinalSync), part(t.Launch))
	}
}
