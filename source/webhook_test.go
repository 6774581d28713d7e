package source_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/trueup-dev/trueup/source"
)

func sign(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func TestWebhooks(t *testing.T) {
	const secret = "s3cret"
	github := `{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/Acme/Deploy.git","ssh_url":"git@github.com:Acme/Deploy.git"}}`
	gitlab := `{"object_kind":"push","project":{"git_http_url":"https://gitlab.example.com/ops/deploy.git"}}`
	cases := []struct {
		name, path, body string
		headers          map[string]string
		status           int
		triggered        []string
	}{
		{"github signed", "/hooks/github", github, map[string]string{"X-Hub-Signature-256": sign(secret, github)}, 200, []string{"deploy"}},
		{"github bad signature", "/hooks/github", github, map[string]string{"X-Hub-Signature-256": sign("wrong", github)}, 401, nil},
		{"github unsigned", "/hooks/github", github, nil, 401, nil},
		{"github body changed after signing", "/hooks/github", strings.Replace(github, "main", "evil", 1), map[string]string{"X-Hub-Signature-256": sign(secret, github)}, 401, nil},
		{"gitlab token", "/hooks/gitlab", gitlab, map[string]string{"X-Gitlab-Token": secret}, 200, []string{"infra"}},
		{"gitlab wrong token", "/hooks/gitlab", gitlab, map[string]string{"X-Gitlab-Token": "nope"}, 401, nil},
		{"generic by name", "/hooks/generic", `{"source":"infra"}`, map[string]string{source.GenericSignatureHeader: sign(secret, `{"source":"infra"}`)}, 200, []string{"infra"}},
		{"generic unknown repo", "/hooks/generic", `{"url":"https://elsewhere.example.com/x.git"}`, map[string]string{source.GenericSignatureHeader: sign(secret, `{"url":"https://elsewhere.example.com/x.git"}`)}, 202, nil},
		{"oversized", "/hooks/github", strings.Repeat("x", source.MaxWebhookBody+1), map[string]string{"X-Hub-Signature-256": "sha256=00"}, 413, nil},
		{"not json", "/hooks/generic", "{", map[string]string{source.GenericSignatureHeader: sign(secret, "{")}, 400, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var triggered []string
			var observed []string
			h := source.WebhookHandler(source.WebhookOptions{
				Secret: []byte(secret),
				Sources: func() map[string]string {
					return map[string]string{
						"deploy": "ssh://git@github.com/acme/deploy",
						"infra":  "https://ops:token@gitlab.example.com/ops/deploy.git",
					}
				},
				Trigger: func(s string) { triggered = append(triggered, s) },
				Observe: func(provider, result string) { observed = append(observed, provider+"/"+result) },
			})
			req := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(tc.body))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d (%s)", rec.Code, tc.status, rec.Body)
			}
			if strings.Join(triggered, ",") != strings.Join(tc.triggered, ",") {
				t.Errorf("triggered %v, want %v", triggered, tc.triggered)
			}
			if len(observed) != 1 {
				t.Errorf("observed %v, want one request counted", observed)
			}
		})
	}
	// Only POST is served.
	rec := httptest.NewRecorder()
	source.WebhookHandler(source.WebhookOptions{Secret: []byte(secret)}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/hooks/github", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", rec.Code)
	}
}

// unreadable is a body that fails the test when read.
type unreadable struct{ t *testing.T }

func (u unreadable) Read([]byte) (int, error) {
	u.t.Error("the body was read")
	return 0, io.ErrUnexpectedEOF
}

// TestWebhookDeclaredTooLarge: a Content-Length over the cap is refused
// without reading the body, which a slow client would send for as long as
// the server waits.
func TestWebhookDeclaredTooLarge(t *testing.T) {
	var observed []string
	h := source.WebhookHandler(source.WebhookOptions{
		Secret: []byte("s3cret"), Sources: func() map[string]string { return nil }, Trigger: func(string) {},
		Observe: func(provider, result string) { observed = append(observed, provider+"/"+result) },
	})
	req := httptest.NewRequest(http.MethodPost, "/hooks/github", unreadable{t})
	req.ContentLength = source.MaxWebhookBody + 1
	req.Header.Set("X-Hub-Signature-256", "sha256=00")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge || strings.Join(observed, ",") != "github/too_large" {
		t.Errorf("status %d, observed %v; want 413, github/too_large", rec.Code, observed)
	}
}

func FuzzWebhookPayload(f *testing.F) {
	f.Add([]byte(`{"repository":{"clone_url":"https://github.com/a/b.git"}}`), "git@github.com:a/b.git")
	f.Add([]byte(`{"project":{"git_ssh_url":"git@gitlab.com:a/b.git"}}`), "https://gitlab.com/a/b")
	f.Fuzz(func(t *testing.T, body []byte, sourceURL string) {
		h := source.WebhookHandler(source.WebhookOptions{
			Secret: []byte("k"), Sources: func() map[string]string { return map[string]string{"s": sourceURL} }, Trigger: func(string) {},
		})
		req := httptest.NewRequest(http.MethodPost, "/hooks/generic", strings.NewReader(string(body)))
		req.Header.Set(source.GenericSignatureHeader, sign("k", string(body)))
		h.ServeHTTP(httptest.NewRecorder(), req)
	})
}
