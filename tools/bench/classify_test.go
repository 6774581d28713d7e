package bench

import (
	"net/http/httptest"
	"testing"
)

func TestClassify(t *testing.T) {
	for name, tc := range map[string]struct {
		method, target string
		want           Class
	}{
		"core discovery":       {"GET", "/api", Discovery},
		"core version":         {"GET", "/api/v1", Discovery},
		"groups":               {"GET", "/apis", Discovery},
		"group version":        {"GET", "/apis/apps/v1", Discovery},
		"openapi":              {"GET", "/openapi/v3/api/v1", Discovery},
		"server version":       {"GET", "/version", Discovery},
		"get namespace":        {"GET", "/api/v1/namespaces/shop", Get},
		"list namespaces":      {"GET", "/api/v1/namespaces", List},
		"list configmaps":      {"GET", "/api/v1/namespaces/shop/configmaps?labelSelector=a%3Db", List},
		"get configmap":        {"GET", "/api/v1/namespaces/shop/configmaps/app", Get},
		"get status":           {"GET", "/apis/apps/v1/namespaces/shop/deployments/web/status", Get},
		"list all deployments": {"GET", "/apis/apps/v1/deployments", List},
		"watch":                {"GET", "/api/v1/namespaces/shop/configmaps?watch=true&resourceVersion=5", Watch},
		"old watch":            {"GET", "/api/v1/watch/namespaces/shop/configmaps", Watch},
		"apply":                {"PATCH", "/api/v1/namespaces/shop/configmaps/app?fieldManager=trueup&force=true", Patch},
		"dry-run apply":        {"PATCH", "/api/v1/namespaces/shop/configmaps/app?dryRun=All&fieldManager=trueup", DryRun},
		"dry-run create":       {"POST", "/api/v1/namespaces/shop/configmaps?dryRun=All", DryRun},
		"update":               {"PUT", "/api/v1/namespaces/trueup-system/configmaps/trueup-env", Put},
		"create":               {"POST", "/api/v1/namespaces", Post},
		"delete":               {"DELETE", "/apis/apps/v1/namespaces/shop/deployments/web", Delete},
		"head":                 {"HEAD", "/api/v1/namespaces", Other},
	} {
		t.Run(name, func(t *testing.T) {
			if got := Classify(httptest.NewRequest(tc.method, tc.target, nil)); got != tc.want {
				t.Errorf("Classify(%s %s) = %s, want %s", tc.method, tc.target, got, tc.want)
			}
		})
	}
}
