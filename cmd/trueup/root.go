package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes follow kubectl diff: 1 is reserved for "there is a difference",
// so every failure exits 2 or more.
const (
	exitOK      = 0
	exitChanges = 1
	exitError   = 2
)

// exitError carries a specific exit code up to execute.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitCodeError) Unwrap() error { return e.err }

// globalOptions are the flags every command shares.
type globalOptions struct {
	ConfigPath string
	Repo       string
	LogFormat  string
	LogLevel   string
}

func (o *globalOptions) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.ConfigPath, "config", "trueup.yaml", "path to the trueup configuration file")
	fs.StringVar(&o.Repo, "repo", "", "read every source from this local directory (a checkout) instead of fetching it")
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// logger builds the one logger a command run uses; it is passed down, never global.
func (o *globalOptions) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch o.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: %q is not text or json", o.LogFormat)
	}
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:           "trueup",
		Short:         "Keep Kubernetes clusters equal to git, environment by environment",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	g.BindFlags(root.PersistentFlags())
	root.AddCommand(
		newBuildCmd(g),
		newDiffCmd(g),
		newApplyCmd(g),
		newRunCmd(g),
		newSetImageCmd(g),
		newPromoteCmd(g),
		newStatusCmd(g),
		newDestroyCmd(g),
		newVersionCmd(),
	)
	return root
}

// execute runs the CLI and maps its outcome to an exit code. Errors print as
// one line, prefixed like kubectl's.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return executeIn(ctx, args, nil, stdout, stderr)
}

// executeIn is execute with stdin read from in (nil: os.Stdin), which
// destroy asks for confirmation on.
func executeIn(ctx context.Context, args []string, in io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	if in != nil {
		root.SetIn(in)
	}
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ec *exitCodeError
	if errors.As(err, &ec) && ec.err == nil {
		return ec.code
	}
	fmt.Fprintf(stderr, "error: %s\n", strings.TrimSpace(err.Error()))
	if errors.As(err, &ec) {
		return ec.code
	}
	return exitError
}
