package reconciler

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRepositoryNamesOneRepositoryOnce holds the URLs of one repository to
// one name, whatever scheme, user or suffix they are written with, and
// different repositories to different names.
func TestRepositoryNamesOneRepositoryOnce(t *testing.T) {
	same := []string{
		"https://git.example.com/acme/deploy.git",
		"https://git.example.com/acme/deploy",
		"https://ci@Git.Example.com/acme/deploy.git/",
		"ssh://git@git.example.com/acme/deploy.git",
		"git@git.example.com:acme/deploy.git",
		"git.example.com:acme/deploy",
		"git://git.example.com/acme/deploy.git",
	}
	for _, u := range same {
		if got := repository(u); got != "git.example.com/acme/deploy" {
			t.Errorf("repository(%q) = %q, want git.example.com/acme/deploy", u, got)
		}
	}
	distinct := map[string]bool{}
	for _, u := range []string{"https://git.example.com/acme/deploy", "https://git.example.com/team-b/deploy",
		"https://other.example.com/acme/deploy", "/srv/git/deploy", "file:///srv/git/other.git"} {
		distinct[repository(u)] = true
	}
	if len(distinct) != 5 {
		t.Errorf("different repositories share a name: %v", distinct)
	}
	if got := repository("file:///srv/git/deploy.git"); got != "srv/git/deploy" {
		t.Errorf("file URL: %q", got)
	}
}

// TestCheckOwner decides whose an inventory is: its own environment's,
// one written before instances (no owner recorded), or another's — which is
// refused with an error that names the owner and what to do.
func TestCheckOwner(t *testing.T) {
	teamA := Owner{Instance: "trueup", Environment: "test", Source: "git.example.com/team-a/deploy", Path: "overlays/test"}
	inventoryOf := func(o *Owner) *corev1.ConfigMap {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "trueup-test", Annotations: map[string]string{RevisionAnnotation: "abc"}}}
		if o != nil {
			o.annotate(cm.Annotations)
		}
		return cm
	}
	teamB := teamA
	teamB.Source = "git.example.com/team-b/deploy"
	// Instance a-b's environment c and instance a's environment b-c meet
	// in one inventory name, a-b-c.
	otherInstance := Owner{Instance: "shop-eu", Environment: "x"}
	cases := []struct {
		name      string
		cm        *corev1.ConfigMap
		want      Owner
		refused   bool
		mentioned []string
	}{
		{name: "never applied", want: teamA},
		{name: "its own", cm: inventoryOf(&teamA), want: teamA},
		{name: "before instances", cm: inventoryOf(nil), want: teamA},
		{name: "another config, same environment name", cm: inventoryOf(&teamA), want: teamB, refused: true,
			mentioned: []string{"trueup-system/trueup-test", "team-a/deploy", "overlays/test", "team-b/deploy",
				"its own top-level name:", "kubectl annotate configmap -n trueup-system trueup-test trueup.dev/instance-"}},
		{name: "another instance", cm: inventoryOf(&otherInstance), want: teamA, refused: true,
			mentioned: []string{`environment "x" of instance "shop-eu"`, "Rename the environment or the config"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := &inventoryState{owner: c.want, cm: c.cm}
			err := st.checkOwner(DefaultInventoryNamespace)
			var oe *OwnerError
			if c.refused != errors.As(err, &oe) {
				t.Fatalf("refused %v, want %v: %v", err != nil, c.refused, err)
			}
			for _, m := range c.mentioned {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error does not mention %q:\n%v", m, err)
				}
			}
		})
	}
}
