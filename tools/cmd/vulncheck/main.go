// Command vulncheck runs govulncheck (golang.org/x/vuln/scan) over a module
// and fails when the module's code reaches a known vulnerability in a
// dependency. A vulnerability in the standard library is reported with the
// Go release that fixes it, without failing: it is fixed by the Go that
// builds the binary (the Dockerfile's builder image), not by go.mod.
//
//	go run ./cmd/vulncheck -db file:///path/to/db -C .. ./...
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/vuln/scan"
)

// The parts of govulncheck's JSON stream this command reads.
type message struct {
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV          string `json:"osv"`
		FixedVersion string `json:"fixed_version"`
		Trace        []struct {
			Module   string `json:"module"`
			Version  string `json:"version"`
			Package  string `json:"package"`
			Function string `json:"function"`
		} `json:"trace"`
	} `json:"finding"`
}

type vuln struct {
	id, summary, module, found, fixed string
	stdlib                            bool
}

func main() {
	db := flag.String("db", "", "vulnerability database URL (file:///dir or https://)")
	dir := flag.String("C", ".", "the module's directory")
	flag.Parse()
	found, err := check(context.Background(), *db, *dir, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulncheck:", err)
		os.Exit(2)
	}
	failed := false
	for _, v := range found {
		kind := "module " + v.module
		if v.stdlib {
			kind = "the standard library (fixed by building with Go " + strings.TrimPrefix(v.fixed, "v") + ")"
		} else {
			failed = true
		}
		fmt.Printf("%s %s@%s, fixed in %s: %s [%s]\n", v.id, v.module, v.found, v.fixed, v.summary, kind)
	}
	if failed {
		fmt.Println("vulncheck: the code reaches vulnerable dependencies: upgrade them (go get module@fixed)")
		os.Exit(1)
	}
	fmt.Printf("vulncheck: no vulnerable dependency reached (%d in the standard library)\n", len(found))
}

// check returns the vulnerabilities the code calls into, one per ID and
// module, in ID order.
func check(ctx context.Context, db, dir string, patterns []string) ([]vuln, error) {
	args := []string{"-format", "json", "-C", dir}
	if db != "" {
		args = append(args, "-db", db)
	}
	cmd := scan.Command(ctx, append(args, patterns...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("govulncheck: %w: %s", err, errOut.String())
	}
	summaries := map[string]string{}
	seen := map[string]bool{}
	var found []vuln
	dec := json.NewDecoder(&out)
	for {
		var m message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("govulncheck output: %w", err)
		}
		if m.OSV != nil {
			summaries[m.OSV.ID] = m.OSV.Summary
		}
		// A finding whose first frame names a function is one the code
		// calls; the others are imported or required only.
		if f := m.Finding; f != nil && len(f.Trace) > 0 && f.Trace[0].Function != "" {
			key := f.OSV + " " + f.Trace[0].Module
			if seen[key] {
				continue
			}
			seen[key] = true
			found = append(found, vuln{id: f.OSV, module: f.Trace[0].Module, found: f.Trace[0].Version,
				fixed: f.FixedVersion, stdlib: f.Trace[0].Module == "stdlib"})
		}
	}
	for i := range found {
		found[i].summary = summaries[found[i].id]
	}
	slices.SortFunc(found, func(a, b vuln) int { return strings.Compare(a.id+a.module, b.id+b.module) })
	return found, nil
}
