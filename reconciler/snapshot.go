package reconciler

import "time"

// Snapshot is everything the status page shows, read at one moment: what
// the daemon knows of each environment, and of itself. It holds no secret
// value: diffs are masked as trueup diff masks them, and errors and
// messages are trueup's own, which never carry one.
type Snapshot struct {
	Daemon       DaemonInfo        `json:"daemon"`
	Environments []EnvironmentView `json:"environments"`
	// Promotions are the config's promotion chains, each in order
	// (development, staging, production): the page's promotion matrix.
	Promotions [][]string `json:"promotions,omitempty"`
}

// DaemonInfo is the daemon itself.
type DaemonInfo struct {
	Version  string `json:"version"`
	Instance string `json:"instance"`
	// Leader is false on a follower, which reconciles nothing.
	Leader  bool         `json:"leader"`
	Sources []SourceView `json:"sources"`
	// RateLimitWait is how long requests waited for the client-side rate
	// limiter, in all, by cluster.
	RateLimitWait map[string]time.Duration `json:"rateLimitWait,omitempty"`
}

// SourceView is one source's last fetch.
type SourceView struct {
	Name      string        `json:"name"`
	URL       string        `json:"url"` // without credentials (source.Redact)
	LastFetch time.Time     `json:"lastFetch"`
	Duration  time.Duration `json:"duration"`
	Error     string        `json:"error,omitempty"` // of the last fetch; "" when it succeeded
}

// EnvironmentView is one environment as the page shows it.
type EnvironmentView struct {
	EnvStatus
	Source string `json:"source"`
	Branch string `json:"branch"`
	// Applied is the commit last applied; Head the branch's head as the
	// source last read it.
	Applied *CommitView `json:"applied,omitempty"`
	Head    *CommitView `json:"head,omitempty"`
	// BlockedOn says what the environment waits for (a dependency, a
	// failing source); "" when nothing.
	BlockedOn string `json:"blockedOn,omitempty"`
	// Images are the images the applied revision runs, by name without
	// the tag (ghcr.io/acme/shop-api): their tags.
	Images map[string]string `json:"images,omitempty"`
	// LastPromotion is the last promotion commit into this environment.
	LastPromotion *CommitView  `json:"lastPromotion,omitempty"`
	Objects       []ObjectView `json:"objects,omitempty"`
	// PendingDiff is the diff of the last plan that found changes not yet
	// applied (drift without selfHeal, a held or failing apply), masked.
	PendingDiff []Change `json:"pendingDiff,omitempty"`
	// Reconciles are the last reconciles, newest first.
	Reconciles []ReconcileView `json:"reconciles,omitempty"`
	// Events are the Events recorded about the environment, newest first.
	Events []EventView `json:"events,omitempty"`
}

// CommitView is a commit as the page names it.
type CommitView struct {
	SHA     string    `json:"sha"`
	Subject string    `json:"subject,omitempty"`
	Author  string    `json:"author,omitempty"`
	Time    time.Time `json:"time,omitzero"`
}

// ObjectView is one object of an environment.
type ObjectView struct {
	Group     string `json:"group,omitempty"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Health is healthy, progressing, failed or unknown, with why.
	Health       string `json:"health"`
	HealthReason string `json:"healthReason,omitempty"`
	Drifted      bool   `json:"drifted"`
}

// ReconcileView is one reconcile.
type ReconcileView struct {
	Revision string        `json:"revision"`
	Result   string        `json:"result"` // synced, out_of_sync, failed, held
	Error    string        `json:"error,omitempty"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration"`
	// Changed is how many objects the reconcile created, configured,
	// replaced or pruned.
	Changed int `json:"changed"`
}

// EventView is one Event trueup recorded.
type EventView struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"` // Normal or Warning
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
}
