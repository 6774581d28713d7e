package source

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

// MaxWebhookBody bounds a push payload; GitHub caps its own at 25 MB, but a
// push event that matters to us is far smaller.
const MaxWebhookBody = 1 << 20

// GenericSignatureHeader carries "sha256=" + hex HMAC-SHA256 of the body for
// /hooks/generic, as GitHub's X-Hub-Signature-256 does.
const GenericSignatureHeader = "X-Trueup-Signature-256"

// WebhookOptions configure the push webhook receiver.
type WebhookOptions struct {
	// Secret verifies every request: HMAC key for GitHub and generic hooks,
	// token for GitLab. Required.
	Secret []byte
	// Sources returns source names and URLs, to find which source a push is
	// for; a func, since the config can change while the daemon runs.
	Sources func() map[string]string
	// Trigger is called with the name of each source a verified push is for.
	Trigger func(source string)
	// Observe, when set, counts requests by provider and result.
	Observe func(provider, result string)
	Logger  *slog.Logger
}

// WebhookHandler serves /hooks/github, /hooks/gitlab and /hooks/generic.
// Unsigned or badly signed requests get 401 and oversized ones 413; neither
// triggers anything.
func WebhookHandler(opts WebhookOptions) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Observe == nil {
		opts.Observe = func(string, string) {}
	}
	mux := http.NewServeMux()
	for provider, verify := range map[string]func(r *http.Request, body []byte) bool{
		"github": func(r *http.Request, body []byte) bool {
			return validHMAC(opts.Secret, body, r.Header.Get("X-Hub-Signature-256"))
		},
		"gitlab": func(r *http.Request, _ []byte) bool {
			token := r.Header.Get("X-Gitlab-Token")
			return token != "" && subtle.ConstantTimeCompare([]byte(token), opts.Secret) == 1
		},
		"generic": func(r *http.Request, body []byte) bool {
			return validHMAC(opts.Secret, body, r.Header.Get(GenericSignatureHeader))
		},
	} {
		mux.HandleFunc("POST /hooks/"+provider, func(w http.ResponseWriter, r *http.Request) {
			status, result := receive(opts, provider, verify, w, r)
			opts.Observe(provider, result)
			w.WriteHeader(status)
			_, _ = io.WriteString(w, result+"\n")
		})
	}
	return mux
}

func receive(opts WebhookOptions, provider string, verify func(*http.Request, []byte) bool, w http.ResponseWriter, r *http.Request) (int, string) {
	if r.ContentLength > MaxWebhookBody {
		// Said up front: refused before a byte of the body is read.
		return http.StatusRequestEntityTooLarge, "too_large"
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, "too_large"
	case err != nil:
		return http.StatusBadRequest, "bad_request"
	case len(opts.Secret) == 0 || !verify(r, body):
		opts.Logger.Warn("webhook rejected: bad or missing signature", "provider", provider, "remote", r.RemoteAddr)
		return http.StatusUnauthorized, "unauthorized"
	}
	urls, err := payloadURLs(body)
	if err != nil {
		return http.StatusBadRequest, "bad_request"
	}
	matched := false
	for name, sourceURL := range opts.Sources() {
		for _, u := range urls {
			if u == name || sameRepo(u, sourceURL) {
				opts.Logger.Info("webhook: fetching", "provider", provider, "source", name)
				opts.Trigger(name)
				matched = true
				break
			}
		}
	}
	if !matched {
		return http.StatusAccepted, "no_matching_source"
	}
	return http.StatusOK, "triggered"
}

// validHMAC checks a "sha256=<hex>" signature of body.
func validHMAC(secret, body []byte, header string) bool {
	sig, ok := strings.CutPrefix(header, "sha256=")
	if !ok || len(secret) == 0 {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// payloadURLs collects the repository URLs a push payload names: GitHub's
// repository.*_url, GitLab's project.*_url, or the generic {"source": name}
// / {"url": ...}.
func payloadURLs(body []byte) ([]string, error) {
	var p struct {
		Source     string `json:"source"`
		URL        string `json:"url"`
		Repository struct {
			CloneURL string `json:"clone_url"`
			SSHURL   string `json:"ssh_url"`
			HTMLURL  string `json:"html_url"`
			GitURL   string `json:"git_http_url"`
		} `json:"repository"`
		Project struct {
			HTTPURL string `json:"git_http_url"`
			SSHURL  string `json:"git_ssh_url"`
			WebURL  string `json:"web_url"`
		} `json:"project"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, err
	}
	var out []string
	for _, u := range []string{p.Source, p.URL, p.Repository.CloneURL, p.Repository.SSHURL, p.Repository.HTMLURL,
		p.Repository.GitURL, p.Project.HTTPURL, p.Project.SSHURL, p.Project.WebURL} {
		if u != "" {
			out = append(out, u)
		}
	}
	return out, nil
}

// sameRepo compares repository URLs by host and path, whatever the scheme,
// user, port or .git suffix: a push payload's https URL must match a source
// configured with the ssh one.
func sameRepo(a, b string) bool {
	ka, kb := repoKey(a), repoKey(b)
	return ka != "" && ka == kb
}

func repoKey(raw string) string {
	if !strings.Contains(raw, "://") {
		// scp-like git@host:org/repo.git
		if user, rest, ok := strings.Cut(raw, "@"); ok && !strings.Contains(user, "/") {
			raw = "ssh://" + user + "@" + strings.Replace(rest, ":", "/", 1)
		} else {
			return ""
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	p := strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), ".git")
	return strings.ToLower(u.Hostname()) + strings.ToLower(p)
}
