package playbook

import (
	"context"
	"fmt"

	"github.com/responder-sec/responder/internal/event"
)

// Exported for the external tests (package playbook_test), which use the
// benchmark harness's corpus and rule sets.

// MatchReference is the reference evaluation of the set (reference_test.go).
func (s *Set) MatchReference(ctx context.Context, env *event.Envelope, counter Counter) ([]Match, error) {
	return s.matchReference(ctx, env, counter)
}

// SigmaSet is sigmaSet.
func SigmaSet(rules []*SigmaRule, copies int) *Set { return sigmaSet(rules, copies) }

// sigmaSet builds a set with one detection-only playbook (no steps) per
// rule, copies times over.
func sigmaSet(rules []*SigmaRule, copies int) *Set {
	s := &Set{verified: map[string]bool{}}
	for k := 0; k < copies; k++ {
		for i, r := range rules {
			s.playbooks = append(s.playbooks, &Playbook{
				Name:    fmt.Sprintf("sigma-%d-%d", k, i),
				Enabled: true,
				File:    r.File,
				Line:    r.Line,
				Trigger: Trigger{Source: r.Source, Sigma: []*SigmaRule{r}},
			})
		}
	}
	s.buildIndex()
	return s
}
