package bench

import (
	"bufio"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"k8s.io/client-go/rest"
)

// TestProxyStreamsWatches: the proxy counts by class and hands a watch's
// events to the client as the server writes them, not when it ends.
func TestProxyStreamsWatches(t *testing.T) {
	release := make(chan struct{})
	server := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") != "true" {
			fmt.Fprintln(w, `{"kind":"ConfigMapList"}`)
			return
		}
		fmt.Fprintln(w, `{"type":"ADDED"}`)
		w.(http.Flusher).Flush()
		<-release // the client must see the first event before this
		fmt.Fprintln(w, `{"type":"DELETED"}`)
	}))
	defer server.Close()
	defer close(release)

	p, err := StartProxy(&rest.Config{Host: server.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	list, err := http.Get(p.URL + "/api/v1/namespaces/a/configmaps")
	if err != nil {
		t.Fatal(err)
	}
	list.Body.Close()
	watch, err := http.Get(p.URL + "/api/v1/namespaces/a/configmaps?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Body.Close()
	line, err := bufio.NewReader(watch.Body).ReadString('\n')
	if err != nil || line != "{\"type\":\"ADDED\"}\n" {
		t.Fatalf("first watch event: %q, %v", line, err)
	}
	got := p.Snapshot()
	if got[List] != 1 || got[Watch] != 1 || got.Requests() != 1 {
		t.Errorf("counts %v, want one LIST and one WATCH", got)
	}
}
