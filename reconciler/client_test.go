package reconciler

import (
	"context"
	"errors"
	"sync"
	"testing"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
)

// TestClientLimits: against an API server with Priority and Fairness, the
// client-side rate limiter steps aside after the first answer; when the
// server throttles trueup (a priority level of one seat, rejecting what
// does not fit), the 429 answers are counted.
func TestClientLimits(t *testing.T) {
	ctx := context.Background()
	cs := clientset(t)
	const user = "trueup-throttled"
	one, zero := int32(1), int32(0)
	level := &flowcontrolv1.PriorityLevelConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "trueup-test-tiny"},
		Spec: flowcontrolv1.PriorityLevelConfigurationSpec{Type: flowcontrolv1.PriorityLevelEnablementLimited,
			Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{NominalConcurrencyShares: &one, LendablePercent: &zero,
				LimitResponse: flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeReject}}},
	}
	schema := &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: "trueup-test-tiny"},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: level.Name},
			MatchingPrecedence:         500,
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects:      []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindUser, User: &flowcontrolv1.UserSubject{Name: user}}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}, Namespaces: []string{"*"}, ClusterScope: true}},
			}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "trueup-test-throttled"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}}
	if _, err := cs.FlowcontrolV1().PriorityLevelConfigurations().Create(ctx, level, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.FlowcontrolV1().PriorityLevelConfigurations().Delete(ctx, level.Name, metav1.DeleteOptions{})
	})
	if _, err := cs.FlowcontrolV1().FlowSchemas().Create(ctx, schema, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.FlowcontrolV1().FlowSchemas().Delete(ctx, schema.Name, metav1.DeleteOptions{}) })
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{}) })

	kubeconfig := clustertest.Kubeconfig(t)
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &kubeconfig
	impersonate := user
	flags.Impersonate = &impersonate
	reg := prometheus.NewRegistry()
	c, err := NewCluster(flags, ClusterOptions{Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the 429s are counted", func() error {
		var wg sync.WaitGroup
		for range 40 {
			wg.Go(func() { _, _ = c.clientset.CoreV1().ConfigMaps("kube-system").List(ctx, metav1.ListOptions{}) })
		}
		wg.Wait()
		if n := gathered(reg, "trueup_api_throttled_total"); n < 1 {
			return errors.New("no 429 counted (the flow schema may not be in effect yet)")
		}
		return nil
	})
	if !c.limits.apf.Load() {
		t.Error("the API server's Priority and Fairness was not noticed")
	}
	if w := gathered(reg, "trueup_client_rate_limiter_wait_seconds_total"); w != 0 {
		t.Errorf("waited %vs on the client-side rate limiter with APF on", w)
	}
}
