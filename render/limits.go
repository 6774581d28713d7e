package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/trueup-dev/trueup/config"
)

// ErrLimit marks a render refused because the repository exceeds one of its
// limits (config.Limits). Errors that match it are *LimitError.
var ErrLimit = errors.New("over a render limit")

// LimitError says which limit a file, or the render as a whole, exceeds.
type LimitError struct {
	// File is the repository file over the limit, or the overlay directory
	// for the limits on the rendered objects.
	File string
	// Key is the limit's key in the config, e.g. maxYAMLNodes.
	Key string
	// Decrypted is set when the file is over the limit once decrypted.
	Decrypted bool
	// Problem says what was measured against the limit, e.g. "YAML
	// aliases expand to 1234567919 nodes, more than 1000000".
	Problem string
}

func (e *LimitError) Error() string {
	file := e.File
	if e.Decrypted {
		file += " (decrypted)"
	}
	return fmt.Sprintf("%s: %s (limit limits.%s)", file, e.Problem, e.Key)
}

func (e *LimitError) Unwrap() error { return ErrLimit }

// checkSize refuses a file larger than the limit, before anything parses it.
func checkSize(file string, size int64, l config.Limits) error {
	if size > l.MaxFileSize {
		return &LimitError{File: file, Key: "maxFileSize",
			Problem: fmt.Sprintf("file is %d bytes, more than %s", size, config.FormatSize(l.MaxFileSize))}
	}
	return nil
}

// fileScan measures a file against the limits, with a budget of nodes:
// first from its bytes alone, then, when those do not show it is within
// them, as YAML.
type fileScan struct {
	budget    int64
	quickOnce sync.Once
	quick     quickStats
	fullOnce  sync.Once
	full      yamlStats
}

// check holds the file, whose content is data, to the limits.
func (sc *fileScan) check(file string, data []byte, l config.Limits) error {
	sc.quickOnce.Do(func() { sc.quick = quickScan(string(data)) })
	if sc.quick.within(l) {
		return nil
	}
	sc.fullOnce.Do(func() { sc.full = scanYAML(data, sc.budget) })
	return sc.full.check(file, l)
}

// quickStats bounds the measure of a file from its bytes, without parsing
// it: most manifests are shown within the limits at a small part of the
// cost of decoding them.
type quickStats struct {
	nodes int64 // upperNodes of the file
	depth int   // a bound of its documents' nesting
	// plain is set when there can be no alias (no "*") and no null key
	// (no "~", no "null" in any case, and no tag, "!", that could spell
	// null otherwise), so nothing expands, and when every line ends in
	// "\n": YAML also breaks lines at a lone "\r" and at NEL, LS and PS,
	// which the columns below do not see.
	plain bool
}

func (q quickStats) within(l config.Limits) bool {
	return q.plain && q.nodes <= l.MaxYAMLNodes && q.depth <= l.MaxYAMLDepth
}

// quickScan bounds text's measure. Block collections nest by indentation:
// along a chain of nested ones the column where each starts never falls,
// and only a mapping's list (key:, then - item at the key's column)
// starts at its parent's column, so a document of block collections
// starting at most at column c nests at most 2(c+1) deep. One starts at a
// line's indentation, or after the "- ", "? " or ": " that begin it. Flow
// collections nest by brackets, at most as many as there are.
func quickScan(text string) quickStats {
	q := quickStats{nodes: upperNodes(text), plain: !strings.ContainsAny(text, "*~!\u0085\u2028\u2029") && !containsNull(text) && !loneCR(text)}
	if !q.plain {
		return q // the full scan measures it anyway
	}
	for _, doc := range documentSeparator.Split(text, -1) {
		column, brackets := 0, strings.Count(doc, "[")+strings.Count(doc, "{")
		for line := range strings.SplitSeq(doc, "\n") {
			column = max(column, collectionColumn(line))
		}
		q.depth = max(q.depth, 2*(column+1)+brackets)
	}
	return q
}

// collectionColumn is the last column of line where a block collection
// may start: its indentation, or past what may come before one on the
// line — "- ", "? ", ": ", a "---" that starts a document, an anchor or a
// tag. It errs high, never low.
func collectionColumn(line string) int {
	c := len(line) - len(strings.TrimLeft(line, " "))
	for c < len(line) {
		end := c + 1 // past an indicator
		switch {
		case strings.HasPrefix(line[c:], "---"):
			end = c + 3
		case line[c] == '&' || line[c] == '!':
			end = c + strings.IndexByte(line[c:]+" ", ' ')
		case strings.IndexByte("-?:", line[c]) < 0:
			return c
		}
		if end < len(line) && line[end] != ' ' {
			return c
		}
		for c = end; c < len(line) && line[c] == ' '; c++ {
		}
	}
	return c
}

// loneCR reports whether s has a "\r" that is not followed by "\n".
func loneCR(s string) bool {
	for i := strings.IndexByte(s, '\r'); i >= 0; {
		if i+1 == len(s) || s[i+1] != '\n' {
			return true
		}
		j := strings.IndexByte(s[i+1:], '\r')
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

// containsNull reports whether s has "null" in any case.
func containsNull(s string) bool {
	for i := strings.IndexAny(s, "nN"); i >= 0 && i+4 <= len(s); {
		if s[i+1]|0x20 == 'u' && s[i+2]|0x20 == 'l' && s[i+3]|0x20 == 'l' {
			return true
		}
		j := strings.IndexAny(s[i+1:], "nN")
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

// yamlStats is what the limits measure of a file read as YAML: each
// document's size with its aliases expanded, as kustomize expands them, up
// to the document where the file's nodes pass the budget it was measured
// with. A tree measures each file once for the renders of it with that
// budget.
type yamlStats struct {
	docs []docStats
	// dense is set when a document may hold more nodes than the budget, so
	// many that even decoding it to measure would cost too much memory.
	dense *denseDoc
	// err is a file kustomize must not see at all, within the limits or
	// not: one it would expand without end (walker.walk, walker.key).
	err error
}

// denseDoc is a document too dense to measure: where it starts, and how
// many nodes it may hold.
type denseDoc struct {
	line  int
	nodes int64
}

// docStats measures one YAML document. Counts saturate at math.MaxInt64.
type docStats struct {
	nodes   int64 // mappings, sequences and scalars (keys too), aliases expanded
	bytes   int64 // the scalars' values, aliases expanded
	depth   int   // nesting of mappings and sequences, aliases expanded
	line    int   // where the deepest nesting is, in the file
	start   int   // the line the document starts at
	aliases bool  // the document has aliases
}

// documentSeparator is kustomize's own: it splits a file into documents at
// these lines and decodes each on its own (kio.ByteReader).
var documentSeparator = regexp.MustCompile(`\n---.*\n`)

// scanYAML measures data as YAML documents, up to where they hold more
// than budget nodes. It decodes into yaml.Node trees, in which an alias is
// a pointer to its anchor, not a copy, and works out each anchor's
// expanded size once, so however far the aliases expand the scan costs
// time and memory in proportion to the nodes as written: about 200 bytes
// each. Those it bounds before decoding (upperNodes), so that a file
// dense with nodes cannot cost more than the budget's worth either. data
// that is not YAML, or not from some point on, is measured as far as it
// parses: kustomize fails on the rest before it expands anything.
func scanYAML(data []byte, budget int64) yamlStats {
	var st yamlStats
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	var nodes int64
	// Kustomize decodes the first document of each piece between its
	// separators; other readers decode the stream whole. Every document
	// of every piece covers both.
	prev, lines := 0, 0 // where the piece starts, and the lines before it
	for _, loc := range append(documentSeparator.FindAllStringIndex(text, -1), []int{len(text), len(text)}) {
		if nodes > budget {
			break // over the budget already: what follows is no matter
		}
		piece := text[prev:loc[0]]
		if n := upperNodes(piece); n > budget {
			st.dense = &denseDoc{line: lines + 1, nodes: n}
			return st
		}
		dec := yaml.NewDecoder(strings.NewReader(piece))
		for {
			var doc yaml.Node
			if err := dec.Decode(&doc); err != nil {
				break // io.EOF, or YAML that kustomize will refuse
			}
			w := &walker{sizes: map[*yaml.Node]docStats{}, open: map[*yaml.Node]bool{}, lines: lines}
			d, err := w.walk(&doc)
			if err != nil {
				st.err = err
				return st
			}
			d.start, d.aliases = lines+doc.Line, w.aliases
			st.docs = append(st.docs, d)
			nodes = add(nodes, d.nodes)
		}
		lines += strings.Count(text[prev:loc[1]], "\n")
		prev = loc[1]
	}
	return st
}

// upperNodes bounds the nodes of the YAML in text, as written, without
// parsing it: every node but a document's root follows an indicator — a
// block sequence's "-", a mapping's ":" or "?", a flow collection's "[",
// "{" or "," — and none adds more than three. A document begins at "---" or
// after "...". Quotes and comments are not told apart, so the bound errs
// high, two or three times the nodes of real manifests; it never errs low.
func upperNodes(text string) int64 {
	n := int64(1) + int64(strings.Count(text, "..."))
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '-':
			n++
		case ':', '?', ',':
			n += 2
		case '[', '{':
			n += 3
		}
	}
	return n
}

// walker measures one document.
type walker struct {
	sizes   map[*yaml.Node]docStats // anchors measured
	open    map[*yaml.Node]bool     // anchors being measured, to catch an alias inside its anchor
	lines   int                     // the lines of the file before the document's piece
	aliases bool
}

// walk measures n. Each node is walked once: an alias reuses its anchor's
// measure.
func (w *walker) walk(n *yaml.Node) (docStats, error) {
	if n.Kind == yaml.AliasNode {
		w.aliases = true
		if n.Alias == nil {
			return docStats{line: w.lines + n.Line}, nil
		}
		if w.open[n.Alias] {
			return docStats{}, fmt.Errorf("YAML alias *%s at line %d is inside the node it refers to", n.Value, w.lines+n.Line)
		}
		s, ok := w.sizes[n.Alias]
		if !ok {
			var err error
			if s, err = w.walk(n.Alias); err != nil {
				return docStats{}, err
			}
		}
		s.line = w.lines + n.Line // where it is seen: the alias
		return s, nil
	}
	if n.Anchor != "" {
		w.open[n] = true
		defer delete(w.open, n)
	}
	s := docStats{nodes: 1, line: w.lines + n.Line}
	switch n.Kind {
	case yaml.ScalarNode:
		s.bytes = int64(len(n.Value))
	case yaml.DocumentNode, yaml.MappingNode, yaml.SequenceNode:
		if n.Kind == yaml.DocumentNode {
			s.nodes = 0
		}
		for i, c := range n.Content {
			if n.Kind == yaml.MappingNode && i%2 == 0 {
				if err := w.key(c); err != nil {
					return docStats{}, err
				}
			}
			cs, err := w.walk(c)
			if err != nil {
				return docStats{}, err
			}
			s.nodes = add(s.nodes, cs.nodes)
			s.bytes = add(s.bytes, cs.bytes)
			if cs.depth > s.depth {
				s.depth, s.line = cs.depth, cs.line
			}
		}
		if n.Kind != yaml.DocumentNode {
			s.depth++
		}
	}
	if n.Anchor != "" {
		w.sizes[n] = s
	}
	return s, nil
}

// key refuses a mapping key that is null but spelled (~, null): kustomize
// (kyaml's deAnchor, which sets every field of a mapping again) cannot find
// such a key to set it and adds it once more each time, so that nested in
// one another a few dozen of them expand without end, aliases or none.
func (w *walker) key(k *yaml.Node) error {
	at := k
	for i := 0; i < 8 && k.Kind == yaml.AliasNode && k.Alias != nil; i++ {
		k = k.Alias
	}
	if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!null" && k.Value != "" {
		return fmt.Errorf("YAML key %s at line %d is null, which kustomize copies without end; quote it as a string, %q", at.Value, w.lines+at.Line, k.Value)
	}
	return nil
}

// add adds two counts, saturating instead of overflowing.
func add(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// check holds the measure of file against the limits. Nodes and values add
// up over the file's documents, since kustomize holds them all at once;
// depth is each document's own.
func (st yamlStats) check(file string, l config.Limits) error {
	if st.err != nil {
		return fmt.Errorf("%s: %w", file, st.err)
	}
	var nodes, values int64
	aliases := false
	for i, d := range st.docs {
		nodes, values = add(nodes, d.nodes), add(values, d.bytes)
		aliases = aliases || d.aliases
		// Nodes and values are the file's so far: say how far that is.
		upTo := ""
		if len(st.docs) > 1 {
			upTo = fmt.Sprintf(" up to document %d at line %d", i+1, d.start)
		}
		switch {
		case d.depth > l.MaxYAMLDepth:
			return &LimitError{File: file, Key: "maxYAMLDepth",
				Problem: fmt.Sprintf("YAML nests %d levels deep at line %d, more than %d", d.depth, d.line, l.MaxYAMLDepth)}
		case nodes > l.MaxYAMLNodes && !aliases:
			return &LimitError{File: file, Key: "maxYAMLNodes",
				Problem: fmt.Sprintf("file has %s YAML nodes%s, more than %d", count(nodes), upTo, l.MaxYAMLNodes)}
		case nodes > l.MaxYAMLNodes:
			return &LimitError{File: file, Key: "maxYAMLNodes",
				Problem: fmt.Sprintf("YAML aliases expand to %s nodes%s, more than %d", count(nodes), upTo, l.MaxYAMLNodes)}
		case values > l.MaxFileSize:
			// Without aliases, values are never longer than the file.
			return &LimitError{File: file, Key: "maxFileSize",
				Problem: fmt.Sprintf("YAML aliases expand to %s bytes of values%s, more than %s", count(values), upTo, config.FormatSize(l.MaxFileSize))}
		}
	}
	if st.dense != nil {
		return &LimitError{File: file, Key: "maxYAMLNodes",
			Problem: fmt.Sprintf("YAML from line %d is too dense to measure: it may hold up to %d nodes, more than %d", st.dense.line, st.dense.nodes, l.MaxYAMLNodes)}
	}
	return nil
}

// count writes a measure, which may have saturated.
func count(n int64) string {
	if n == math.MaxInt64 {
		return fmt.Sprintf("more than %d", int64(math.MaxInt64-1))
	}
	return fmt.Sprint(n)
}

// renderLimits counts the rendered objects against the limits as they are
// converted, so that a render far over them stops early.
type renderLimits struct {
	dir    string
	limits config.Limits
	size   int64
}

func (r *renderLimits) objects(n int) error {
	if n > r.limits.MaxObjects {
		return &LimitError{File: r.dir, Key: "maxObjects",
			Problem: fmt.Sprintf("renders %d objects, more than %d", n, r.limits.MaxObjects)}
	}
	return nil
}

func (r *renderLimits) object(json []byte) error {
	r.size = add(r.size, int64(len(json)))
	if r.size > r.limits.MaxRenderedSize {
		return &LimitError{File: r.dir, Key: "maxRenderedSize",
			Problem: fmt.Sprintf("rendered objects add up to more than %s as JSON", config.FormatSize(r.limits.MaxRenderedSize))}
	}
	return nil
}

// readAtMost reads r to its end, or limit+1 bytes of it: enough to know a
// file is over a limit without holding all of it. size is what r is
// likely to hold, to read it in one go; it is not relied on.
func readAtMost(r io.Reader, limit, size int64) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(int(min(max(size, 0), limit) + bytes.MinRead))
	_, err := b.ReadFrom(io.LimitReader(r, limit+1))
	return b.Bytes(), err
}
