// Command trueup keeps Kubernetes clusters equal to git: it renders each
// environment's kustomize overlay at an exact commit, decrypts its SOPS
// secrets in memory, and applies and prunes it. See the README.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
