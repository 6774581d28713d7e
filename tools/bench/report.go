package bench

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Markdown is the report written to docs/benchmarks.md.
func (r *Results) Markdown() []byte {
	var b bytes.Buffer
	r.writeIntro(&b)
	r.writeTargets(&b)
	r.writeMachine(&b)
	r.writeCases(&b)
	r.writeCeiling(&b)
	r.writeDaemon(&b)
	r.writeMethod(&b)
	return b.Bytes()
}

func (r *Results) writeIntro(b *bytes.Buffer) {
	fmt.Fprintf(b, "# Benchmarks\n\n")
	fmt.Fprintf(b, "<!-- Written by `make bench` (tools/cmd/bench); edits are overwritten. -->\n\n")
	fmt.Fprintf(b, "trueup, kubectl and Flux's apply engine doing the same work, in one run on the local control plane "+
		"(`tools/localcluster`: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a simulated node), "+
		"on %s; the run took %s. Sizes: %s objects; daemon: %s environments.\n\n",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Took.Round(time.Second), join(r.Options.Sizes), join(r.Options.Envs))
	fmt.Fprintf(b, "The machine has %d cores shared by the control plane, the proxy and the engines: "+
		"absolute times are noise from one run to the next, ratios within a run are what to read.\n\n", r.Machine.Cores)
	fmt.Fprintf(b, "Reproduce with `make bench` (builds `bin/trueup` and the control plane, then runs "+
		"`cd tools && go run ./cmd/bench`; `-h` lists its flags, `-sizes 20 -envs 5` is a quick smoke run).\n\n")
}

func (r *Results) writeTargets(b *bytes.Buffer) {
	fmt.Fprintf(b, "## Targets\n\n")
	if r.Reference != ReferenceSize {
		fmt.Fprintf(b, "This run has no size of %s; the apply targets are read at %s objects.\n\n", count(ReferenceSize), count(r.Reference))
	}
	table(b, []string{"target", "goal", "measured", "verdict"}, func(row func(...string)) {
		for _, t := range r.Targets() {
			row(t.Name, t.Goal, t.Measured, "**"+t.Verdict()+"**")
		}
	})
}

func (r *Results) writeMachine(b *bytes.Buffer) {
	fmt.Fprintf(b, "## Machine\n\n")
	m := r.Machine
	table(b, []string{"", ""}, func(row func(...string)) {
		row("CPU", m.CPU)
		row("cores", strconv.Itoa(m.Cores))
		row("memory", fmt.Sprintf("%.1f GiB", float64(m.Memory)/(1<<30)))
		row("kernel", m.Kernel)
		row("Go", m.Go)
		row("kube-apiserver", m.KubeAPIServer)
		row("trueup", "`"+m.Trueup+"`")
		row("kubectl", m.Kubectl)
		row("Flux ssa", "github.com/fluxcd/pkg/ssa "+m.FluxSSA)
	})
}

// requestColumns are the classes shown for each run.
var requestColumns = []Class{Discovery, Get, List, DryRun, Patch, Put, Post, Delete, Other, Watch}

func requestHeader() []string {
	var h []string
	for _, c := range requestColumns {
		h = append(h, c.String())
	}
	return h
}

func requestCells(c Counts) []string {
	var cells []string
	for _, cl := range requestColumns {
		cells = append(cells, count(c[cl]))
	}
	return cells
}

func (r *Results) writeCases(b *bytes.Buffer) {
	fmt.Fprintf(b, "## Applying N objects\n\n")
	fmt.Fprintf(b, "A Namespace and N objects in it: 60%% ConfigMaps, 20%% headless Services, 20%% Deployments with `replicas: 0`. "+
		"*requests* counts every request but watches; *per object* divides it by the objects applied (N and the Namespace). "+
		"*apply phase* is trueup's own figure (`phases.apply` of `trueup apply -o json`), where it reports one.\n\n")
	for _, size := range r.Options.Sizes {
		fmt.Fprintf(b, "### %s objects\n\n", count(size))
		header := append([]string{"case", "engine", "wall", "apply phase", "requests", "per object"}, requestHeader()...)
		table(b, header, func(row func(...string)) {
			for _, c := range r.Cases {
				if c.Size != size {
					continue
				}
				phase := "–"
				if c.HasPhase {
					phase = secs(c.ApplyPhase)
				}
				cells := []string{c.Case, c.Engine, secs(c.Wall), phase, count(c.Requests.Requests()),
					fmt.Sprintf("%.2f", float64(c.Requests.Requests())/float64(c.Objects))}
				row(append(cells, requestCells(c.Requests)...)...)
			}
		})
	}
}

func (r *Results) writeCeiling(b *bytes.Buffer) {
	fmt.Fprintf(b, "## The API server's ceiling\n\n")
	fmt.Fprintf(b, "%s server-side applies of new ConfigMaps from client-go through the same proxy, without client-side "+
		"rate limit, at each concurrency, after a warm-up round (concurrency %d) that is not shown: what the server does "+
		"with no engine around it.\n\n", count(r.Reference), warmUpConcurrency)
	table(b, []string{"concurrency", "wall", "applies/s", "requests"}, func(row func(...string)) {
		for _, c := range r.Ceiling {
			row(strconv.Itoa(c.Concurrency), secs(c.Wall), fmt.Sprintf("%.0f", float64(c.N)/c.Wall.Seconds()), count(c.Requests.Requests()))
		}
	})
	if m := r.MixCeiling; m != nil {
		fmt.Fprintf(b, "The same bare applies of the cases' own %s objects (their Namespace first, then the ConfigMaps, "+
			"Services and Deployments, %d at a time), which cost the server more than ConfigMaps: %s, %.0f applies/s, %s requests.\n\n",
			count(m.N), m.Concurrency, secs(m.Wall), float64(m.N)/m.Wall.Seconds(), count(m.Requests.Requests()))
	}
}

func (r *Results) writeDaemon(b *bytes.Buffer) {
	fmt.Fprintf(b, "## The daemon\n\n")
	fmt.Fprintf(b, "`trueup run --concurrency %d` with N environments from one git repository (served as a `file://` URL), "+
		"one overlay each: its own Namespace, a ConfigMap, a headless Service and a Deployment with `replicas: 0`; "+
		"`wait: false`, source and environment `interval: %s`. *cold start* runs from the process start until "+
		"`/api/v1/environments` (polled every 200 ms) shows every environment `synced`. Then come two windows of one "+
		"resync interval plus 10%% (%s) each: the *settle window*, in which the cold start's Events are still sent and "+
		"each environment resyncs once, and the *idle window*, whose requests are what keeping everything in sync costs "+
		"(watches apart: they are long-lived). Then the process is stopped with SIGTERM and must exit cleanly.\n\n",
		r.Options.DaemonConcurrency, r.Options.Resync, secs(idleWindow(r.Options.Resync)))
	header := []string{"environments", "objects", "cold start", "startup requests", "startup watches", "peak RSS", "RSS at end", "idle window", "idle requests", "idle watches"}
	table(b, header, func(row func(...string)) {
		for _, d := range r.Daemon {
			row(count(d.Environments), count(d.Objects), secs(d.ColdStart), count(d.Startup.Requests()), count(d.Startup[Watch]),
				mib(d.PeakRSS), mib(d.EndRSS), secs(d.Window), count(d.Idle.Requests()), count(d.Idle[Watch]))
		}
	})
	if k := r.KubectlAll; k != nil {
		fmt.Fprintf(b, "For comparison, one `kubectl apply --server-side` of the same %s objects (%s environments' worth, "+
			"in namespaces of their own) in one file: %s, %s requests.\n\n", count(k.Objects), count(k.Environments), secs(k.Wall), count(k.Requests.Requests()))
	}
	fmt.Fprintf(b, "Requests by class:\n\n")
	table(b, append([]string{"environments", "phase"}, requestHeader()...), func(row func(...string)) {
		for _, d := range r.Daemon {
			row(append([]string{count(d.Environments), "cold start"}, requestCells(d.Startup)...)...)
			row(append([]string{count(d.Environments), "settle window"}, requestCells(d.Settle)...)...)
			row(append([]string{count(d.Environments), "idle window"}, requestCells(d.Idle)...)...)
		}
	})
}

func (r *Results) writeMethod(b *bytes.Buffer) {
	concurrency := fmt.Sprintf("`--apply-concurrency %d`", r.Options.ApplyConcurrency)
	if !r.ConcurrencyFlag {
		concurrency = "no `--apply-concurrency` (this binary has no such flag)"
	}
	fmt.Fprintf(b, "## How it was measured\n\n")
	for _, line := range []string{
		"Every engine talks plain HTTP to one loopback reverse proxy, with a kubeconfig that has no credentials; the proxy holds the admin client certificate and talks TLS to kube-apiserver. It counts each request as it arrives: *discovery* (`/api`, `/apis`, `/openapi/...`, `/version`: anything that is not a resource), GET of one object, LIST, WATCH (`watch=true`, long-lived, reported apart), *dry-run* (any request with `dryRun=All`, whatever its method), *apply/PATCH*, PUT, POST and DELETE. Watch responses are flushed as they come. The controllers, the scheduler and the node simulator talk to the server directly and are not counted.",
		"**trueup**: `bin/trueup apply ENV --config CFG --kubeconfig KC -o json` with " + concurrency + ", a new process per case; one environment with `wait: false`, `prune: true` and a local-directory source whose `path` is a kustomize overlay (`kustomization.yaml` listing one file per kind).",
		"**kubectl**: `kubectl apply --server-side -f FILE` (default field manager), a new process per case, all objects in one file, the Namespace first.",
		fmt.Sprintf("**flux-ssa**: `github.com/fluxcd/pkg/ssa` %s in the benchmark's process, set up as kustomize-controller sets it up: a controller-runtime client and dynamic REST mapper without client-side rate limit, a kstatus poller, field manager `kustomize-controller`, concurrency %d (`--concurrent-ssa`'s default), `ApplyAllStaged` with `DefaultApplyOptions()`, objects read from the same one file. Its ResourceManager lives from one case to the next, as in a running controller. No new process per case: it has no such cost.", r.Machine.FluxSSA, r.Options.FluxConcurrency),
		"Each engine applies its own copy of the manifests into its own namespace (`bench-ENGINE-N`) and has its own fresh HOME per size, shared by its three cases: the first apply starts with an empty discovery cache (`$HOME/.kube/cache`), the no-op and the change find it warm. Discovery requests are in their own column.",
		"The cases run in order (first apply, no-op re-apply, one ConfigMap's data edited), each with trueup, then kubectl, then flux-ssa. After each apply the cluster is checked past the proxy (object counts, the edited value), so an engine that does less than it should fails the run; then the run waits until the deployment controller has observed every Deployment of it (`observedGeneration` caught up), so the next engine does not share the machine with the ReplicaSets this one caused. After each size every namespace and trueup's inventory are deleted, and the run waits until the namespaces are gone.",
		"The daemon runs and the kubectl comparison use the same proxy. Peak RSS is the daemon's VmHWM, RSS at the end its VmRSS after the idle window.",
		"Any engine's error stops the run without writing this file.",
	} {
		fmt.Fprintf(b, "- %s\n", line)
	}
}

// table writes a Markdown table; fill calls row once per row.
func table(b *bytes.Buffer, header []string, fill func(row func(...string))) {
	line := func(cells []string) {
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	fill(func(cells ...string) { line(cells) })
	b.WriteString("\n")
}

// count writes n with thousands separators.
func count(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + count(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func join(ns []int) string {
	var parts []string
	for _, n := range ns {
		parts = append(parts, count(n))
	}
	return strings.Join(parts, " / ")
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mib(bytes int64) string { return fmt.Sprintf("%.0f MiB", float64(bytes)/(1<<20)) }
