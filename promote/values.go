package promote

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// valueEdit is one string value to write at a dotted key path of a Helm
// values file, as image.tag.
type valueEdit struct {
	Path  string
	Value string
}

// setValues writes string values at dotted key paths into a Helm values
// file by splicing the file's bytes: a value that is there is replaced in
// place, keeping its quoting style when the new value allows it, its
// comment and every other byte, so the diff is that one line; a key path
// that is not there is added with the mappings it needs, at the end of the
// innermost mapping that exists (a flow mapping such as {} gets the keys
// inside its braces, on its line). Values are always strings: one that
// would read as another type (1.10, 01, true) is quoted. An edit that would
// change anything besides its key path (through an anchor, say) fails, as
// do multi-line values, aliases and files of several documents; so does a
// file that is not YAML.
func setValues(data []byte, edits []valueEdit) ([]byte, error) {
	before, err := decodeValues(data)
	if err != nil {
		return nil, err
	}
	out := data
	for _, e := range edits {
		if out, err = setValue(out, e.Path, e.Value); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Path, err)
		}
	}
	// Whatever the splice did, the file must read as before with the edits
	// applied, and nothing else changed.
	want := before
	for _, e := range edits {
		want = withValue(want, strings.Split(e.Path, "."), e.Value)
	}
	after, err := decodeValues(out)
	if err != nil || !reflect.DeepEqual(after, want) {
		paths := make([]string, len(edits))
		for i, e := range edits {
			paths[i] = e.Path
		}
		return nil, fmt.Errorf("%s: %w", strings.Join(paths, ", "), errCannotEdit)
	}
	return out, nil
}

// errCannotEdit is an edit that setValues cannot make in place without
// changing something else.
var errCannotEdit = errors.New("cannot be set in place without changing other values (anchors or an unusual layout); set it by hand")

// decodeValues reads a values file as helm does, for comparing contents.
func decodeValues(data []byte) (any, error) {
	if _, err := parseValues(data); err != nil {
		return nil, err
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// parseValues returns a values file's top node: a mapping, or nil for a
// file with no content (empty, comments, a lone ---).
func parseValues(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, errors.New("holds several YAML documents; a values file is one mapping")
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if isNull(root) {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("is not a mapping of values but %s", kindName(root))
	}
	return root, nil
}

// isEncrypted reports a SOPS-encrypted values file (as helm-secrets writes
// them): one whose top-level sops mapping holds the MAC.
func isEncrypted(root *yaml.Node) bool {
	sops := literal(root, "sops")
	return sops != nil && sops.Kind == yaml.MappingNode && literal(sops, "mac") != nil
}

// literal returns the value of key written in mapping m itself (merge keys
// and aliases are not followed), or nil.
func literal(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	var v *yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			v = m.Content[i+1]
		}
	}
	return v
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias (*" + n.Value + ")"
	}
	switch {
	case isNull(n) && n.Value == "":
		return "empty"
	case isNull(n):
		return "null"
	default:
		return fmt.Sprintf("the value %q", n.Value)
	}
}

// setValue makes one edit. It walks the key path through block and flow
// mappings and either replaces the value found or inserts the missing keys.
func setValue(data []byte, keyPath, value string) ([]byte, error) {
	keys := strings.Split(keyPath, ".")
	root, err := parseValues(data)
	if err != nil {
		return nil, err
	}
	s := splicer{data: data, nl: "\n", step: 2}
	if bytes.Contains(data, []byte("\r\n")) {
		s.nl = "\r\n"
	}
	if root == nil {
		return s.appendEnd(keys, value), nil
	}
	s.step = indentStep(root)
	if root.Style&yaml.FlowStyle != 0 {
		return nil, errors.New("the file is one flow mapping ({...}); trueup edits block mappings")
	}
	m, flow := root, false
	for i, k := range keys {
		v := literal(m, k)
		rest := keys[i+1:]
		switch {
		case v == nil:
			return s.insert(m, root, keys[i:], value)
		case v.Kind == yaml.AliasNode:
			return nil, fmt.Errorf("%s is %s: trueup does not edit through anchors", strings.Join(keys[:i+1], "."), kindName(v))
		case len(rest) == 0 && v.Anchor != "":
			return nil, fmt.Errorf("has an anchor (&%s): trueup does not edit through anchors", v.Anchor)
		case len(rest) == 0 && v.Kind == yaml.ScalarNode:
			return s.replace(v, flow, value)
		case len(rest) == 0:
			return nil, fmt.Errorf("is %s, not a value", kindName(v))
		case v.Kind == yaml.MappingNode:
			m, flow = v, flow || v.Style&yaml.FlowStyle != 0
		case isNull(v) && v.Value == "" && !flow:
			return s.fillEmpty(keyNode(m, k), rest, value)
		default:
			return nil, fmt.Errorf("%s is %s, not a mapping", strings.Join(keys[:i+1], "."), kindName(v))
		}
	}
	return nil, errCannotEdit // not reached: the last key returns above
}

// splicer edits a file's bytes at the positions its nodes were parsed at.
type splicer struct {
	data []byte
	nl   string // the file's line break
	step int    // how far the file indents a nested mapping
}

// offset is the byte offset of a node's 1-based line and column; yaml
// counts columns in characters.
func (s splicer) offset(line, col int) (int, error) {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(s.data[off:], '\n')
		if i < 0 {
			return 0, errCannotEdit
		}
		off += i + 1
	}
	for c := 1; c < col; c++ {
		if off >= len(s.data) || s.data[off] == '\n' {
			return 0, errCannotEdit
		}
		_, size := utf8.DecodeRune(s.data[off:])
		off += size
	}
	return off, nil
}

// lineEnd is the offset of the end of the line off is on, before its line
// break.
func (s splicer) lineEnd(off int) int {
	i := bytes.IndexByte(s.data[off:], '\n')
	if i < 0 {
		return len(s.data)
	}
	end := off + i
	if end > 0 && s.data[end-1] == '\r' {
		end--
	}
	return end
}

func (s splicer) splice(start, end int, text string) []byte {
	out := make([]byte, 0, len(s.data)+len(text))
	out = append(out, s.data[:start]...)
	out = append(out, text...)
	return append(out, s.data[end:]...)
}

// scalarEnd returns the offset just past a one-line scalar token that
// starts at off.
func (s splicer) scalarEnd(n *yaml.Node, off int) (int, error) {
	line := s.data[off:s.lineEnd(off)]
	switch {
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		return 0, errors.New("is a multi-line value; set it by hand")
	case n.Style&yaml.TaggedStyle != 0:
		return 0, fmt.Errorf("is an explicitly tagged value (%s); set it by hand", n.Tag)
	case n.Style&yaml.DoubleQuotedStyle != 0:
		for i := 1; i < len(line); i++ {
			switch line[i] {
			case '\\':
				i++
			case '"':
				return off + i + 1, nil
			}
		}
	case n.Style&yaml.SingleQuotedStyle != 0:
		for i := 1; i < len(line); i++ {
			if line[i] == '\'' {
				if i+1 < len(line) && line[i+1] == '\'' {
					i++
					continue
				}
				return off + i + 1, nil
			}
		}
	default:
		if bytes.HasPrefix(line, []byte(n.Value)) {
			return off + len(n.Value), nil
		}
	}
	return 0, errors.New("is a multi-line value; set it by hand")
}

// replace rewrites a scalar's token with value.
func (s splicer) replace(n *yaml.Node, flow bool, value string) ([]byte, error) {
	if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) == 0 && isNull(n) && n.Value == "" {
		// "tag:" with nothing after it: the empty value's position is just
		// after the colon.
		off, err := s.offset(n.Line, n.Column)
		if err != nil || off == 0 || s.data[off-1] != ':' {
			return nil, errCannotEdit
		}
		return s.splice(off, off, " "+formatValue(value, n.Style, flow)), nil
	}
	start, err := s.offset(n.Line, n.Column)
	if err != nil {
		return nil, err
	}
	end, err := s.scalarEnd(n, start)
	if err != nil {
		return nil, err
	}
	return s.splice(start, end, formatValue(value, n.Style, flow)), nil
}

// fillEmpty gives the empty value of key k (a line "image:") the mapping
// of the rest of the key path, in the lines after it.
func (s splicer) fillEmpty(k *yaml.Node, rest []string, value string) ([]byte, error) {
	off, err := s.offset(k.Line, k.Column)
	if err != nil {
		return nil, err
	}
	at := s.lineEnd(off)
	return s.splice(at, at, s.nl+s.block(rest, value, k.Column-1+s.step)), nil
}

func keyNode(m *yaml.Node, key string) *yaml.Node {
	var k *yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			k = m.Content[i]
		}
	}
	return k
}

// insert adds keys (the missing rest of a key path) to mapping m.
func (s splicer) insert(m, root *yaml.Node, keys []string, value string) ([]byte, error) {
	if m.Style&yaml.FlowStyle != 0 {
		return s.insertFlow(m, keys, value)
	}
	if m == root {
		return s.appendEnd(keys, value), nil
	}
	// The mapping's lines are those after its first key's that are
	// indented at least as far as its keys, and blank lines and comments
	// between them; the new key goes after the last of them that is not
	// blank, before comments that lead to the next key of an outer mapping.
	indent := m.Content[0].Column - 1
	first, err := s.offset(m.Content[0].Line, m.Content[0].Column)
	if err != nil {
		return nil, err
	}
	at := s.lineEnd(first)
	for start := nextLine(s.data, first); start < len(s.data); start = nextLine(s.data, start) {
		text := strings.TrimRight(string(s.data[start:s.lineEnd(start)]), " \t")
		trimmed := strings.TrimLeft(text, " ")
		switch {
		case trimmed == "" || (len(text)-len(trimmed) < indent && strings.HasPrefix(trimmed, "#")):
			continue
		case len(text)-len(trimmed) < indent:
			return s.splice(at, at, s.nl+s.block(keys, value, indent)), nil
		}
		at = s.lineEnd(start)
	}
	return s.splice(at, at, s.nl+s.block(keys, value, indent)), nil
}

// nextLine is the offset of the line after the one off is on.
func nextLine(data []byte, off int) int {
	i := bytes.IndexByte(data[off:], '\n')
	if i < 0 {
		return len(data)
	}
	return off + i + 1
}

// appendEnd adds keys at the end of the file, as top-level keys.
func (s splicer) appendEnd(keys []string, value string) []byte {
	text := s.block(keys, value, 0)
	if len(s.data) > 0 && s.data[len(s.data)-1] != '\n' {
		text = s.nl + text
	}
	return s.splice(len(s.data), len(s.data), text+s.nl)
}

// insertFlow adds keys inside the braces of a flow mapping.
func (s splicer) insertFlow(m *yaml.Node, keys []string, value string) ([]byte, error) {
	start, err := s.offset(m.Line, m.Column)
	if err != nil {
		return nil, err
	}
	if start >= len(s.data) || s.data[start] != '{' {
		return nil, errCannotEdit
	}
	end, ok := flowEnd(s.data, start)
	if !ok {
		return nil, errCannotEdit
	}
	inner := bytes.TrimRight(s.data[start+1:end], " \t")
	text := flowPair(keys, value)
	if len(m.Content) > 0 {
		text = ", " + text
	}
	if len(bytes.TrimSpace(inner)) == 0 {
		return s.splice(start+1, end, text), nil
	}
	at := start + 1 + len(inner)
	if bytes.HasSuffix(inner, []byte(",")) { // a trailing comma
		text = " " + strings.TrimPrefix(text, ", ")
	}
	return s.splice(at, at, text), nil
}

// flowEnd finds the brace or bracket that closes the one at start, past
// quoted scalars and comments.
func flowEnd(data []byte, start int) (int, bool) {
	depth := 0
	for i := start; i < len(data); i++ {
		switch c := data[i]; c {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i, true
			}
		case '"':
			for i++; i < len(data) && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
		case '\'':
			for i++; i < len(data) && data[i] != '\''; i++ {
			}
		case '#':
			if data[i-1] == ' ' || data[i-1] == '\t' || data[i-1] == '\n' {
				for i < len(data) && data[i] != '\n' {
					i++
				}
			}
		}
	}
	return 0, false
}

// block writes keys as nested block mappings at indent, the value on the
// last: "image:\n  tag: 1.4.2".
func (s splicer) block(keys []string, value string, indent int) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(s.nl)
		}
		b.WriteString(strings.Repeat(" ", indent+i*s.step))
		b.WriteString(formatValue(k, 0, false))
		b.WriteString(":")
	}
	b.WriteString(" " + formatValue(value, 0, false))
	return b.String()
}

// flowPair writes keys as nested flow mappings: "image: {tag: 1.4.2}".
func flowPair(keys []string, value string) string {
	text := formatValue(value, 0, true)
	for i := len(keys) - 1; i >= 0; i-- {
		if i < len(keys)-1 {
			text = "{" + text + "}"
		}
		text = formatValue(keys[i], 0, true) + ": " + text
	}
	return text
}

// indentStep is how far the file indents a nested mapping, from its first
// one; 2 when it has none.
func indentStep(root *yaml.Node) int {
	var step func(m *yaml.Node) int
	step = func(m *yaml.Node) int {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			if v.Kind == yaml.MappingNode && v.Style&yaml.FlowStyle == 0 && len(v.Content) > 0 && v.Content[0].Line > k.Line {
				if d := v.Content[0].Column - k.Column; d > 0 {
					return d
				}
			}
			if v.Kind == yaml.MappingNode {
				if d := step(v); d > 0 {
					return d
				}
			}
		}
		return 0
	}
	if d := step(root); d > 0 {
		return d
	}
	return 2
}

// formatValue writes value as a YAML string in the style of the token it
// replaces: quoted as it was, or unquoted when it reads as that string
// unquoted (1.4.2; but "1.10", "01" and "true" are quoted). In a flow
// mapping, a value with flow indicators or a colon is quoted too.
func formatValue(value string, style yaml.Style, flow bool) string {
	switch {
	case strings.ContainsAny(value, "\n\r\t"):
		return strconv.Quote(value)
	case style&yaml.SingleQuotedStyle != 0:
		return "'" + strings.ReplaceAll(value, "'", "''") + "'"
	case style&yaml.DoubleQuotedStyle != 0:
		return strconv.Quote(value)
	}
	out, err := yaml.Marshal(&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value})
	text := strings.TrimSuffix(string(out), "\n")
	switch {
	case err != nil || strings.Contains(text, "\n"):
		return strconv.Quote(value)
	case text == value && flow && strings.ContainsAny(value, ":,[]{}#"):
		return strconv.Quote(value)
	}
	return text
}

// withValue returns v, a decoded values file, with value set at keys,
// creating mappings on the way; it may change v.
func withValue(v any, keys []string, value string) any {
	if len(keys) == 0 {
		return value
	}
	switch m := v.(type) {
	case map[string]any:
		m[keys[0]] = withValue(m[keys[0]], keys[1:], value)
		return m
	case map[any]any:
		m[keys[0]] = withValue(m[keys[0]], keys[1:], value)
		return m
	}
	return map[string]any{keys[0]: withValue(nil, keys[1:], value)}
}
