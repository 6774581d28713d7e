package ship

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines
// joined.
type instruction struct {
	cmd, args string
	line      int
}

// parseDockerfile reads the parts of the Dockerfile syntax the checks need:
// comments, blank lines, backslash continuations and instructions. Heredocs
// are not supported; the check fails on them rather than misread them.
func parseDockerfile(src string) ([]instruction, error) {
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // comments inside a continued instruction are dropped, as BuildKit does
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.Contains(trimmed, "<<") && strings.HasPrefix(strings.ToUpper(trimmed), "RUN") {
			return nil, fmt.Errorf("line %d: heredocs are not supported by this check", i+1)
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("line %d: continuation at end of file", start)
	}
	return out, nil
}

var pinned = regexp.MustCompile(`^[a-z0-9./-]+(:[A-Za-z0-9._-]+)?@sha256:[0-9a-f]{64}$`)

// checkDockerfile returns what is wrong with a Dockerfile by the image rules:
// multi-stage; every base image pinned by digest; a static CGO-free
// -trimpath build; a distroless final stage that runs as the nonroot user,
// never runs a command at build time and starts without a shell.
func checkDockerfile(src string) []string {
	ins, err := parseDockerfile(src)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	type stage struct {
		image, name string
		body        []instruction
	}
	var stages []*stage
	names := map[string]bool{}
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) == 0 {
				problems = append(problems, fmt.Sprintf("line %d: FROM without an image", in.line))
				continue
			}
			s := &stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = strings.ToLower(f[2])
			}
			if !names[strings.ToLower(s.image)] && s.image != "scratch" {
				if !pinned.MatchString(s.image) {
					problems = append(problems, fmt.Sprintf("line %d: base image %s is not pinned by digest (IMAGE:TAG@sha256:...)", in.line, s.image))
				} else if strings.Contains(s.image, ":latest@") {
					problems = append(problems, fmt.Sprintf("line %d: base image %s names the tag latest", in.line, s.image))
				}
			}
			names[s.name] = s.name != ""
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				problems = append(problems, fmt.Sprintf("line %d: %s before the first FROM", in.line, in.cmd))
			}
			continue
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	if len(stages) < 2 {
		return append(problems, fmt.Sprintf("%d stage(s): the image must be built multi-stage", len(stages)))
	}
	build := false
	for _, s := range stages[:len(stages)-1] {
		for _, in := range s.body {
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
				build = true
				if !strings.Contains(in.args, "CGO_ENABLED=0") {
					problems = append(problems, fmt.Sprintf("line %d: go build without CGO_ENABLED=0: the binary must be static", in.line))
				}
				if !strings.Contains(in.args, "-trimpath") {
					problems = append(problems, fmt.Sprintf("line %d: go build without -trimpath", in.line))
				}
			}
		}
	}
	if !build {
		problems = append(problems, "no build stage runs go build")
	}
	final := stages[len(stages)-1]
	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") {
		problems = append(problems, fmt.Sprintf("final stage is %s, not gcr.io/distroless/static", final.image))
	}
	user := ""
	for _, in := range final.body {
		switch in.cmd {
		case "RUN":
			problems = append(problems, fmt.Sprintf("line %d: RUN in the final stage: the runtime image has no shell", in.line))
		case "USER":
			user = in.args
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := json.Unmarshal([]byte(in.args), &argv); err != nil {
				problems = append(problems, fmt.Sprintf("line %d: %s in shell form needs /bin/sh; use the JSON form", in.line, in.cmd))
			}
		}
	}
	u, _, _ := strings.Cut(user, ":")
	if u != "nonroot" && u != "65532" {
		problems = append(problems, fmt.Sprintf("final stage runs as %q, not nonroot (65532)", user))
	}
	return problems
}

func TestDockerfile(t *testing.T) {
	data, err := readFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkDockerfile(string(data)) {
		t.Error("Dockerfile: " + p)
	}
}

// TestDockerfileCheckFails feeds the check Dockerfiles that break each rule.
func TestDockerfileCheckFails(t *testing.T) {
	const digest = "@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d"
	good := "FROM golang:1.26.8-bookworm" + digest + " AS build\nRUN CGO_ENABLED=0 go build \\\n  -trimpath -o /out/x .\n" +
		"FROM gcr.io/distroless/static-debian12:nonroot" + digest + "\nCOPY --from=build /out/x /x\nUSER 65532:65532\nENTRYPOINT [\"/x\"]\n"
	if p := checkDockerfile(good); len(p) != 0 {
		t.Fatalf("a good Dockerfile fails: %v", p)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"unpinned", "golang:1.26.8-bookworm" + digest, "golang:1.26", "not pinned"},
		{"cgo", "CGO_ENABLED=0 go build", "go build", "CGO_ENABLED=0"},
		{"trimpath", "-trimpath ", "", "-trimpath"},
		{"root", "USER 65532:65532", "USER root", "not nonroot"},
		{"no user", "USER 65532:65532\n", "", "not nonroot"},
		{"shell", "COPY --from=build /out/x /x\n", "COPY --from=build /out/x /x\nRUN chmod +x /x\n", "RUN in the final stage"},
		{"shell form", `ENTRYPOINT ["/x"]`, "ENTRYPOINT /x", "shell form"},
		{"not distroless", "gcr.io/distroless/static-debian12:nonroot", "debian:bookworm", "not gcr.io/distroless/static"},
		{"single stage", "FROM gcr.io/distroless/static-debian12:nonroot" + digest + "\nCOPY --from=build /out/x /x\n", "", "multi-stage"},
	} {
		bad := strings.Replace(good, tc.from, tc.to, 1)
		if bad == good {
			t.Fatalf("%s: %q not in the good Dockerfile", tc.name, tc.from)
		}
		p := checkDockerfile(bad)
		if !strings.Contains(strings.Join(p, "\n"), tc.want) {
			t.Errorf("%s: got %q, want a problem with %q", tc.name, p, tc.want)
		}
	}
}
