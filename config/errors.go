package config

import (
	"fmt"
	"strings"
)

// Error is one problem in a config file, at a place in it. Its text reads
// like a compiler's, file:line:column: key: problem, so editors can jump to it.
type Error struct {
	// File is the file name given to Parse or Load.
	File string
	// Line and Column are 1-based; 0 when the problem has no position (an
	// empty file, or YAML that did not parse far enough to say).
	Line, Column int
	// Key is the path of the offending key, e.g. environments[1].selfHeal;
	// empty for problems with the document as a whole.
	Key string
	// Err is the problem itself.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in a config file, in file order. It prints
// them on one line, separated by "; ", because CLI errors are one line;
// Unwrap gives them one by one.
type Errors []*Error

func (e Errors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	// One line, so that a CLI error stays one line; Unwrap gives them apart.
	return strings.Join(msgs, "; ")
}

func (e Errors) Unwrap() []error {
	errs := make([]error, len(e))
	for i, err := range e {
		errs[i] = err
	}
	return errs
}
