package bench

import (
	"net/http"
	"net/url"
	"strings"
)

// Class is the kind of an API request, for counting.
type Class int

// The classes, in the order the report's columns show them. A dry-run is a
// dry-run whatever its method; a watch is a watch, not a LIST.
const (
	Discovery Class = iota // /api, /apis, /openapi/..., /version: anything that is not a resource
	Get                    // GET of one object
	List                   // GET of a collection
	Watch                  // watch=true (long-lived)
	DryRun                 // dryRun=All, any method
	Patch                  // PATCH: server-side apply and other patches
	Put                    // PUT: update
	Post                   // POST: create
	Delete                 // DELETE
	Other                  // HEAD, OPTIONS, ...
	numClasses
)

var classNames = [numClasses]string{"discovery", "GET", "LIST", "WATCH", "dry-run", "apply/PATCH", "PUT", "POST", "DELETE", "other"}

func (c Class) String() string { return classNames[c] }

// Classify tells what a request to kube-apiserver is.
func Classify(r *http.Request) Class {
	q := r.URL.Query()
	if dryRun(q) {
		return DryRun
	}
	named, watch, ok := resourcePath(r.URL.Path)
	if !ok {
		return Discovery
	}
	watch = watch || q.Get("watch") == "true" || q.Get("watch") == "1"
	switch r.Method {
	case http.MethodGet:
		switch {
		case watch:
			return Watch
		case named:
			return Get
		}
		return List
	case http.MethodPatch:
		return Patch
	case http.MethodPut:
		return Put
	case http.MethodPost:
		return Post
	case http.MethodDelete:
		return Delete
	}
	return Other
}

func dryRun(q url.Values) bool {
	for _, v := range q["dryRun"] {
		if v == "All" {
			return true
		}
	}
	return false
}

// resourcePath parses /api/v1/... and /apis/GROUP/VERSION/...: whether it
// names a resource at all (ok), one object of it (named), and whether it is
// the old /watch/ form.
func resourcePath(path string) (named, watch, ok bool) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(segs) >= 3 && segs[0] == "api":
		segs = segs[2:]
	case len(segs) >= 4 && segs[0] == "apis":
		segs = segs[3:]
	default:
		return false, false, false
	}
	if segs[0] == "watch" {
		watch, segs = true, segs[1:]
	}
	if len(segs) >= 3 && segs[0] == "namespaces" {
		segs = segs[2:] // RESOURCE[/NAME[/SUBRESOURCE]] in a namespace
	}
	return len(segs) >= 2, watch, len(segs) >= 1
}
