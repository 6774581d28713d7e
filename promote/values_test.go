package promote

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pmezard/go-difflib/difflib"
	"go.yaml.in/yaml/v3"
)

// chartValuesFile is a values file as charts' authors write them: a
// header, blank lines between sections, four-space indentation, comments
// on keys and on values, flow mappings and anchors elsewhere.
const chartValuesFile = `# Values for todo in production.
# Tags are bumped by trueup set-image and promote.

replicaCount: 3

image:
    repository: ghcr.io/acme/todo   # the app
    # Pinned per environment.
    tag: "1.3.0"
    pullPolicy: IfNotPresent

defaults: &defaults
    cpu: 100m
resources:
    requests: *defaults
podAnnotations: {}

# The service in front of it.
service:
    type: ClusterIP
    port: 80
`

// changedLines returns the lines a change removed and added.
func changedLines(before, after string) (removed, added string) {
	a, b := difflib.SplitLines(before), difflib.SplitLines(after)
	for _, op := range difflib.NewMatcher(a, b).GetOpCodes() {
		if op.Tag == 'e' {
			continue
		}
		removed += strings.Join(a[op.I1:op.I2], "")
		added += strings.Join(b[op.J1:op.J2], "")
	}
	return removed, added
}

// TestSetValuesOneLine: a tag bump of an existing key is a one-line diff,
// its quoting and everything else in the file kept; the same value again
// gives the same bytes back.
func TestSetValuesOneLine(t *testing.T) {
	for _, tt := range []struct {
		path, value, removed, added string
	}{
		{"image.tag", "1.4.2", `    tag: "1.3.0"` + "\n", `    tag: "1.4.2"` + "\n"},
		{"image.repository", "mirror.example.com/acme/todo", "    repository: ghcr.io/acme/todo   # the app\n", "    repository: mirror.example.com/acme/todo   # the app\n"},
		{"replicaCount", "01", "replicaCount: 3\n", `replicaCount: "01"` + "\n"},
		{"image.pullPolicy", "1.10", "    pullPolicy: IfNotPresent\n", `    pullPolicy: "1.10"` + "\n"},
		{"image.pullPolicy", "true", "    pullPolicy: IfNotPresent\n", `    pullPolicy: "true"` + "\n"},
		{"image.pullPolicy", "Always", "    pullPolicy: IfNotPresent\n", "    pullPolicy: Always\n"},
	} {
		t.Run(tt.path+"="+tt.value, func(t *testing.T) {
			out, err := setValues([]byte(chartValuesFile), []valueEdit{{tt.path, tt.value}})
			if err != nil {
				t.Fatal(err)
			}
			if removed, added := changedLines(chartValuesFile, string(out)); removed != tt.removed || added != tt.added {
				t.Errorf("diff removed %q, added %q; want %q, %q", removed, added, tt.removed, tt.added)
			}
			again, err := setValues(out, []valueEdit{{tt.path, tt.value}})
			if err != nil || string(again) != string(out) {
				t.Errorf("setting the same value again changed the file (%v):\n%s", err, again)
			}
		})
	}
}

func TestSetValues(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		set   []valueEdit
		want  string
		error string
	}{{
		name: "a key added to its mapping, at the mapping's indentation, before the next section's comment",
		in:   "image:\n    repository: ghcr.io/acme/todo # the app\n    # Pinned.\n\n# The service.\nservice:\n    port: 80\n",
		set:  []valueEdit{{"image.tag", "1.10"}},
		want: "image:\n    repository: ghcr.io/acme/todo # the app\n    # Pinned.\n    tag: \"1.10\"\n\n# The service.\nservice:\n    port: 80\n",
	}, {
		name: "missing mappings are created at the end, indented as the file indents",
		in:   "# Values.\nservice:\n    port: 80\n",
		set:  []valueEdit{{"image.tag", "1.4.2"}, {"image.repository", "ghcr.io/acme/todo"}},
		want: "# Values.\nservice:\n    port: 80\nimage:\n    tag: 1.4.2\n    repository: ghcr.io/acme/todo\n",
	}, {
		name: "a nested mapping on the way is created inside the one that exists",
		in:   "app:\n  name: todo\nservice: {}\n",
		set:  []valueEdit{{"app.image.tag", "2"}},
		want: "app:\n  name: todo\n  image:\n    tag: \"2\"\nservice: {}\n",
	}, {
		name: "an empty file",
		in:   "",
		set:  []valueEdit{{"image.tag", "1.4.2"}},
		want: "image:\n  tag: 1.4.2\n",
	}, {
		name: "a file of comments and no newline at the end",
		in:   "# nothing set here yet",
		set:  []valueEdit{{"image.tag", "1.4.2"}},
		want: "# nothing set here yet\nimage:\n  tag: 1.4.2\n",
	}, {
		name: "an empty flow mapping gets the key inside its braces",
		in:   "image: {}\nother: 1\n",
		set:  []valueEdit{{"image.tag", "1.4.2"}},
		want: "image: {tag: 1.4.2}\nother: 1\n",
	}, {
		name: "a flow mapping gets the key at its end, quoted where flow needs it",
		in:   "image: {repository: ghcr.io/acme/todo} # the app\n",
		set:  []valueEdit{{"image.tag", "01"}, {"image.registry", "registry:5000"}},
		want: "image: {repository: ghcr.io/acme/todo, tag: \"01\", registry: \"registry:5000\"} # the app\n",
	}, {
		name: "a value in a flow mapping is replaced in place",
		in:   "image: {repository: ghcr.io/acme/todo, tag: 1.3.0}\n",
		set:  []valueEdit{{"image.tag", "1.4.2"}},
		want: "image: {repository: ghcr.io/acme/todo, tag: 1.4.2}\n",
	}, {
		name: "an empty value is filled",
		in:   "image:\n  tag: # set per environment\n  pullPolicy: Always\n",
		set:  []valueEdit{{"image.tag", "1.4.2"}},
		want: "image:\n  tag: 1.4.2 # set per environment\n  pullPolicy: Always\n",
	}, {
		name: "an empty mapping key gets its keys on the lines after it",
		in:   "image: # filled in per environment\nservice:\n  port: 80\n",
		set:  []valueEdit{{"image.tag", "1.4.2"}},
		want: "image: # filled in per environment\n  tag: 1.4.2\nservice:\n  port: 80\n",
	}, {
		name: "single quotes stay",
		in:   "image:\n  tag: '1.3.0'\n",
		set:  []valueEdit{{"image.tag", "1.10"}},
		want: "image:\n  tag: '1.10'\n",
	}, {
		name: "a number becomes a string",
		in:   "image:\n  tag: 3\n",
		set:  []valueEdit{{"image.tag", "4"}},
		want: "image:\n  tag: \"4\"\n",
	}, {
		name: "CRLF line breaks",
		in:   "image:\r\n  repository: x\r\nservice: {}\r\n",
		set:  []valueEdit{{"image.tag", "1.4.2"}},
		want: "image:\r\n  repository: x\r\n  tag: 1.4.2\r\nservice: {}\r\n",
	}, {
		name: "a key in a mapping inside a list item's mapping",
		in:   "sidecar:\n  image:\n    tag: 1.0.0\n  args:\n  - --port=80\nnext: 1\n",
		set:  []valueEdit{{"sidecar.image.repository", "ghcr.io/acme/proxy"}},
		want: "sidecar:\n  image:\n    tag: 1.0.0\n    repository: ghcr.io/acme/proxy\n  args:\n  - --port=80\nnext: 1\n",
	}, {
		name:  "a key that is a mapping",
		in:    "image:\n  tag:\n    value: 1\n",
		set:   []valueEdit{{"image.tag", "1"}},
		error: "image.tag: is a mapping, not a value",
	}, {
		name:  "a mapping on the way that is a value",
		in:    "image: nginx:1.25\n",
		set:   []valueEdit{{"image.tag", "1"}},
		error: `image is the value "nginx:1.25", not a mapping`,
	}, {
		name:  "an alias on the way",
		in:    "base: &base\n  tag: 1\nimage: *base\n",
		set:   []valueEdit{{"image.tag", "2"}},
		error: "image is an alias (*base)",
	}, {
		name:  "an anchored value",
		in:    "image:\n  tag: &t 1\nother: *t\n",
		set:   []valueEdit{{"image.tag", "2"}},
		error: "has an anchor (&t)",
	}, {
		name:  "a mapping other values alias",
		in:    "image: &img\n  tag: 1\nworker:\n  image: *img\n",
		set:   []valueEdit{{"image.tag", "2"}},
		error: "without changing other values",
	}, {
		name:  "a multi-line value",
		in:    "image:\n  tag: >-\n    1.0\n",
		set:   []valueEdit{{"image.tag", "2"}},
		error: "multi-line",
	}, {
		name:  "several documents",
		in:    "image: {tag: 1}\n---\nimage: {tag: 2}\n",
		set:   []valueEdit{{"image.tag", "2"}},
		error: "several YAML documents",
	}, {
		name:  "not a mapping",
		in:    "- a\n- b\n",
		set:   []valueEdit{{"image.tag", "2"}},
		error: "not a mapping of values but a list",
	}, {
		name:  "not YAML",
		in:    "image: [\n",
		set:   []valueEdit{{"image.tag", "2"}},
		error: "yaml",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := setValues([]byte(tt.in), tt.set)
			if tt.error != "" {
				if err == nil || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("error %v, want one containing %q; wrote\n%s", err, tt.error, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestIsEncrypted(t *testing.T) {
	for in, want := range map[string]bool{
		"db:\n  password: ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]\nsops:\n  mac: ENC[AES256_GCM,data:m,iv:i,tag:t,type:str]\n  version: 3.9.0\n": true,
		"sops:\n  enabled: true\n": false, // a chart's own "sops" values
		"image: {tag: 1}\n":        false,
		"sops: mac\n":              false,
	} {
		root, err := parseValues([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if got := isEncrypted(root); got != want {
			t.Errorf("%q: encrypted %v, want %v", in, got, want)
		}
	}
}

// FuzzSetValues: whatever a values file holds, setValues either fails or
// writes a file that reads back with the value at the key path and every
// other value as it was.
func FuzzSetValues(f *testing.F) {
	f.Add([]byte(chartValuesFile), "image.tag", "1.10")
	f.Add([]byte("image: {repository: x}\n"), "image.tag", "01")
	f.Add([]byte("a:\n  b: # c\n"), "a.b.c", "v")
	f.Add([]byte(""), "tag", "true")
	f.Fuzz(func(t *testing.T, data []byte, path, value string) {
		if path == "" || strings.Contains(path, "..") || strings.HasPrefix(path, ".") || strings.HasSuffix(path, ".") {
			return // not a key path; config rejects these
		}
		out, err := setValues(data, []valueEdit{{path, value}})
		if err != nil {
			return
		}
		var after any
		if err := yaml.Unmarshal(out, &after); err != nil {
			t.Fatalf("wrote a file that does not read back: %v\n%s", err, out)
		}
		v := after
		for _, k := range strings.Split(path, ".") {
			switch m := v.(type) {
			case map[string]any:
				v = m[k]
			case map[any]any: // a mapping with keys that are not strings
				v = m[k]
			default:
				t.Fatalf("%s is not in the written file\n%s", path, out)
			}
		}
		if v != value {
			t.Fatalf("%s reads back as %#v, set %q\n%s", path, v, value, out)
		}
		// setValues checks that nothing else changed; check it again here,
		// apart from the code under test.
		before, _ := decodeValues(data)
		if want := withValue(before, strings.Split(path, "."), value); !reflect.DeepEqual(after, want) {
			t.Fatalf("the edit changed other values:\n%s", out)
		}
	})
}
