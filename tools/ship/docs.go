package ship

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strings"
	"unicode"
)

// MetricsTable is the table of docs/metrics.md: every metric
// reconciler.NewMetrics registers, with its type, labels and help text.
func MetricsTable() (string, error) {
	ms, err := Metrics()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("| metric | type | labels | meaning |\n|---|---|---|---|\n")
	for _, m := range ms {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", m.Name, m.Type, strings.Join(m.Labels, ", "), escapeCell(m.Help))
	}
	return b.String(), nil
}

// configSection is one table of docs/config.md: a struct of config/config.go
// and the YAML path its keys sit under.
type configSection struct {
	title, prefix, typ string
	// nested structs whose fields are listed inline as parent.child keys;
	// "-" leaves a field out.
	inline map[string]string
}

var configSections = []configSection{
	{"Top level", "", "Config", map[string]string{"Limits": "Limits"}},
	{"`clusters[]`", "", "Cluster", nil},
	{"`sources[]`", "", "Source", map[string]string{"Auth": "Auth", "Commit": "Commit"}},
	{"`decryption`", "", "Decryption", nil},
	{"`environments[]`", "", "Environment", map[string]string{"Promotion": "Promotion", "Limits": "Limits"}},
	{"`environments[].helm`", "", "Helm", map[string]string{"Auth": "ChartAuth"}},
	{"`environments[].helm.images[]`", "", "HelmImage", nil},
	{"`environments[].ignore[]`", "", "IgnoreRule", map[string]string{"Target": "IgnoreTarget"}},
	// A preview's template is every environments[] key, written beside
	// its own: the field is not a key.
	{"`previews[]`", "", "Preview", map[string]string{"Environment": "-"}},
}

// ConfigTables renders docs/config.md's key tables from the doc comments of
// the structs in config/config.go: each field's comment is its meaning, and
// its "Default ..." or "Required." sentence its default. The YAML key is the
// field name in lower camel case, as config.Parse spells keys.
func ConfigTables(configGo string) (string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, configGo, nil, parser.ParseComments)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", configGo, err)
	}
	structs := map[string]*ast.StructType{}
	ast.Inspect(f, func(n ast.Node) bool {
		if ts, ok := n.(*ast.TypeSpec); ok {
			if st, ok := ts.Type.(*ast.StructType); ok {
				structs[ts.Name.Name] = st
			}
		}
		return true
	})
	// Doc comments name fields the Go way; the docs name them as keys.
	keys := map[string]string{}
	for _, st := range structs {
		for _, fld := range st.Fields.List {
			for _, n := range fld.Names {
				keys[n.Name] = yamlKey(n.Name)
			}
		}
	}
	fieldNames = keys
	var b strings.Builder
	for i, s := range configSections {
		st := structs[s.typ]
		if st == nil {
			return "", fmt.Errorf("%s: no struct %s", configGo, s.typ)
		}
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "## %s\n\n| key | type | default | meaning |\n|---|---|---|---|\n", s.title)
		if err := writeFields(&b, structs, st, "", s.inline); err != nil {
			return "", fmt.Errorf("%s %s: %w", configGo, s.typ, err)
		}
	}
	return b.String(), nil
}

func writeFields(b *strings.Builder, structs map[string]*ast.StructType, st *ast.StructType, prefix string, inline map[string]string) error {
	for _, fld := range st.Fields.List {
		if len(fld.Names) != 1 || !fld.Names[0].IsExported() {
			continue
		}
		name := fld.Names[0].Name
		key := prefix + yamlKey(name)
		if sub, ok := inline[name]; ok {
			if sub == "-" {
				continue
			}
			if structs[sub] == nil {
				return fmt.Errorf("no struct %s", sub)
			}
			if err := writeFields(b, structs, structs[sub], key+".", nil); err != nil {
				return err
			}
			continue
		}
		doc := strings.Join(strings.Fields(fld.Doc.Text()), " ")
		if doc == "" {
			return fmt.Errorf("field %s has no doc comment", name)
		}
		meaning, def := splitDefault(doc)
		meaning = keyNames(meaning, name)
		if def == "" {
			return fmt.Errorf("field %s: the doc comment says neither %q nor %q", name, "Default ...", "Required.")
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", key, typeName(fld.Type), escapeCell(def), escapeCell(meaning))
	}
	return nil
}

// yamlKey is config.Parse's spelling of a field: lower camel case with a
// leading initialism lowered whole (APIVersion: apiVersion, URL: url,
// SSHKeyFile: sshKeyFile).
func yamlKey(field string) string {
	r := []rune(field)
	n := 0
	for n < len(r) && unicode.IsUpper(r[n]) {
		n++
	}
	if n > 1 && n < len(r) {
		n-- // the last capital starts the next word
	}
	for i := 0; i < n; i++ {
		r[i] = unicode.ToLower(r[i])
	}
	return string(r)
}

func typeName(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.Ident:
		switch t.Name {
		case "string", "bool":
			return t.Name
		case "int", "int64":
			return "int"
		}
		return "map"
	case *ast.SelectorExpr:
		if t.Sel.Name == "Duration" {
			return "duration"
		}
	case *ast.StarExpr:
		return typeName(t.X)
	case *ast.ArrayType:
		if id, ok := t.Elt.(*ast.Ident); ok && id.Name == "string" {
			return "list of strings"
		}
		return "list"
	}
	return "value"
}

var defaultSentence = regexp.MustCompile(`^Default:? ("[^"]*"|[^.:,]+)`)

// splitDefault takes the "Default X." or "Required." sentence out of a doc
// comment and returns the rest and the default.
func splitDefault(doc string) (meaning, def string) {
	var keep []string
	for _, s := range sentences(doc) {
		switch m := defaultSentence.FindStringSubmatch(s); {
		case strings.HasPrefix(s, "Required"):
			def = "required"
			if rest := strings.TrimSpace(strings.TrimLeft(strings.TrimPrefix(s, "Required"), ";,.")); rest != "" {
				keep = append(keep, strings.ToUpper(rest[:1])+rest[1:])
			}
		case m != nil:
			def = strings.Trim(m[1], `"`)
			if def == "nil" {
				def = "none"
			}
			if strings.HasPrefix(m[1], `"`) || strings.Contains("0123456789", def[:1]) || def == "true" || def == "false" {
				def = "`" + def + "`"
			}
		default:
			keep = append(keep, s)
		}
	}
	return strings.Join(keep, " "), def
}

// sentences splits at ". " outside quotes, keeping the periods.
func sentences(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			quoted = !quoted
		case !quoted && s[i] == '.' && (i+1 == len(s) || s[i+1] == ' '):
			out = append(out, strings.TrimSpace(s[start:i+1]))
			start = i + 1
		}
	}
	if rest := strings.TrimSpace(s[start:]); rest != "" {
		out = append(out, rest)
	}
	return out
}

// fieldNames maps config struct field names to their keys, for keyNames.
var fieldNames map[string]string

var word = regexp.MustCompile(`[A-Za-z][A-Za-z0-9]*`)

// keyNames rewrites a field comment for readers of YAML: the field's own
// name, which starts the comment, becomes its key, and other fields'
// CamelCase names become theirs.
func keyNames(doc, field string) string {
	if rest, ok := strings.CutPrefix(doc, field+" "); ok {
		doc = "`" + yamlKey(field) + "` " + rest
	}
	return word.ReplaceAllStringFunc(doc, func(w string) string {
		upper := 0
		for _, r := range w {
			if unicode.IsUpper(r) {
				upper++
			}
		}
		if k, ok := fieldNames[w]; ok && (upper > 1 || w == "Auth") {
			return "`" + k + "`"
		}
		return w
	})
}

func escapeCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// replaceGenerated swaps the text between doc's BEGIN and END markers for
// body, so a generated doc keeps its hand-written parts.
func replaceGenerated(doc, name, body string) (string, error) {
	begin := "<!-- BEGIN GENERATED " + name + " (make docs) -->\n"
	end := "<!-- END GENERATED " + name + " -->"
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("no %q ... %q markers", strings.TrimSpace(begin), end)
	}
	return doc[:i+len(begin)] + body + doc[j:], nil
}
