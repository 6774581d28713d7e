package reconciler

import (
	"context"
	"testing"
)

// BenchmarkDiffInSync measures the diff of an environment that matches the
// cluster — what every drift check between commits costs.
func BenchmarkDiffInSync(b *testing.B) {
	ctx := context.Background()
	d, err := examplesRenderer(b).Render(ctx, "staging")
	if err != nil {
		b.Fatal(err)
	}
	c := connect(b, nil)
	if _, err := c.Apply(ctx, plan(b, c, d), waitOpts); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p, err := c.Plan(ctx, d, PlanOptions{Prune: true})
		if err != nil {
			b.Fatal(err)
		}
		if p.HasChanges() {
			b.Fatal("staging drifted during the benchmark")
		}
	}
}
