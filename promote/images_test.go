package promote

import (
	"os"
	"strings"
	"testing"

	"github.com/pmezard/go-difflib/difflib"
)

func TestParseImageArg(t *testing.T) {
	for arg, want := range map[string]Image{
		"api=1.4.2":                              {Name: "api", NewTag: "1.4.2"},
		"api=ghcr.io/acme/api:1.4.2":             {Name: "api", NewName: "ghcr.io/acme/api", NewTag: "1.4.2"},
		"api=registry:5000/acme/api:2":           {Name: "api", NewName: "registry:5000/acme/api", NewTag: "2"},
		"api=@sha256:" + strings.Repeat("a", 64): {Name: "api", Digest: "sha256:" + strings.Repeat("a", 64)},
		"ghcr.io/acme/api=ghcr.io/acme/api2@sha256:" + strings.Repeat("b", 64): {
			Name: "ghcr.io/acme/api", NewName: "ghcr.io/acme/api2", Digest: "sha256:" + strings.Repeat("b", 64)},
	} {
		got, err := ParseImageArg(arg)
		if err != nil || got != want {
			t.Errorf("%s: got %+v, %v; want %+v", arg, got, err, want)
		}
	}
	for _, bad := range []string{"api", "=1.0", "api=", "api=1.0 beta", "api=@sha256:short", "api:1=2", "api=x/y:", "api=-tag"} {
		if img, err := ParseImageArg(bad); err == nil {
			t.Errorf("%s: accepted as %+v", bad, img)
		}
	}
}

// TestSetImagesKeepsTheFile: a tag bump in the examples' overlay changes
// the tag line and nothing else — comments, order and indentation stay.
func TestSetImagesKeepsTheFile(t *testing.T) {
	before, err := os.ReadFile("../examples/overlays/staging/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	after, changed, err := SetImages(before, []Image{{Name: "shop-api", NewTag: "1.10"}}, overlay)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 1 || changed[0].Name != "ghcr.io/acme/shop-api" || changed[0].NewTag != "1.10" {
		t.Fatalf("changed %+v", changed)
	}
	var removed, added []string
	for _, op := range difflib.NewMatcher(difflib.SplitLines(string(before)), difflib.SplitLines(string(after))).GetOpCodes() {
		if op.Tag == 'e' {
			continue
		}
		removed = append(removed, difflib.SplitLines(string(before))[op.I1:op.I2]...)
		added = append(added, difflib.SplitLines(string(after))[op.J1:op.J2]...)
	}
	if strings.Join(removed, "") != "    newTag: 1.2.0\n" || strings.Join(added, "") != "    newTag: \"1.10\"\n" {
		t.Errorf("diff removed %q, added %q; want only the tag line", removed, added)
	}
	// The same value again: the very same bytes, so no commit.
	again, changed, err := SetImages(after, []Image{{Name: "ghcr.io/acme/shop-api", NewTag: "1.10"}}, overlay)
	if err != nil || len(changed) != 0 || string(again) != string(after) {
		t.Errorf("setting the same tag changed %+v (%v)", changed, err)
	}
}

func TestSetImages(t *testing.T) {
	const base = "# the overlay\nresources: [../base]\nimages:\n- name: ghcr.io/acme/api # the API\n  newName: mirror.example.com/api\n  newTag: 1.0.0\n- name: ghcr.io/other/api\n  digest: sha256:" + "c0ffee00c0ffee00c0ffee00c0ffee00" + "\n"
	tests := []struct {
		name  string
		in    string
		set   []Image
		mode  setMode
		want  string
		error string
	}{{
		name: "a tag keeps the new name and the comment",
		in:   base, set: []Image{{Name: "ghcr.io/acme/api", NewTag: "1.1.0"}},
		want: strings.Replace(base, "newTag: 1.0.0", "newTag: 1.1.0", 1),
	}, {
		name: "a digest replaces a tag",
		in:   base, set: []Image{{Name: "ghcr.io/acme/api", Digest: "sha256:" + strings.Repeat("d", 64)}},
		want: strings.Replace(base, "newTag: 1.0.0", "digest: sha256:"+strings.Repeat("d", 64), 1),
	}, {
		name: "promotion copies the entry exactly",
		in:   base, set: []Image{{Name: "ghcr.io/acme/api", NewTag: "2.0.0"}}, mode: replace,
		want: strings.Replace(base, "  newName: mirror.example.com/api\n  newTag: 1.0.0", "  newTag: 2.0.0", 1),
	}, {
		name: "a new image is added",
		in:   "resources: [../base]\n", set: []Image{{Name: "ghcr.io/acme/worker", NewTag: "3"}},
		want: "resources: [../base]\nimages:\n- name: ghcr.io/acme/worker\n  newTag: \"3\"\n",
	}, {
		name: "an ambiguous short name",
		in:   base, set: []Image{{Name: "api", NewTag: "1"}},
		error: "matches several entries",
	}, {
		name: "images that are not a list",
		in:   "images: ghcr.io/acme/api\n", set: []Image{{Name: "api", NewTag: "1"}},
		error: "not a list",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := SetImages([]byte(tt.in), tt.set, tt.mode)
			if tt.error != "" {
				if err == nil || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("error %v, want one containing %q", err, tt.error)
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

// FuzzSetImages: whatever a kustomization holds, SetImages either fails or
// writes a file whose images read back as what was set.
func FuzzSetImages(f *testing.F) {
	f.Add([]byte("images:\n- name: a\n  newTag: \"1\"\n"), "a=2")
	f.Add([]byte("# c\nresources: [x]\n"), "b=registry:5000/b:3")
	f.Add([]byte("images: []\n"), "c=@sha256:"+strings.Repeat("e", 64))
	f.Fuzz(func(t *testing.T, data []byte, arg string) {
		img, err := ParseImageArg(arg)
		if err != nil {
			return
		}
		if _, err := ReadImages(data); err != nil {
			return
		}
		out, _, err := SetImages(data, []Image{img}, replace)
		if err != nil {
			return
		}
		images, err := ReadImages(out)
		if err != nil {
			t.Fatalf("wrote a file that does not read back: %v\n%s", err, out)
		}
		for _, got := range images {
			if got.Name == img.Name || got.ShortName() == img.Name {
				img.Name = got.Name
				if got != img {
					t.Fatalf("read back %+v, set %+v\n%s", got, img, out)
				}
				return
			}
		}
		t.Fatalf("%s not in the written file\n%s", img.Name, out)
	})
}

// BenchmarkSetImages: one tag bump of the examples' overlay, the edit every
// set-image and promotion makes.
func BenchmarkSetImages(b *testing.B) {
	data, err := os.ReadFile("../examples/overlays/staging/kustomization.yaml")
	if err != nil {
		b.Fatal(err)
	}
	img := []Image{{Name: "shop-api", NewTag: "1.4.2"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, changed, err := SetImages(data, img, overlay); err != nil || len(changed) != 1 {
			b.Fatal(changed, err)
		}
	}
}
