// Package depwarm is temporary: it pins dependencies while packages are written.
package depwarm

import (
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/getsops/sops/v3/age"
	_ "github.com/getsops/sops/v3/decrypt"
	_ "github.com/getsops/sops/v3/pgp"
	_ "github.com/go-git/go-git/v5"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "k8s.io/cli-runtime/pkg/genericclioptions"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/kubectl/pkg/cmd/util"
	_ "sigs.k8s.io/cli-utils/pkg/apply"
	_ "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	_ "sigs.k8s.io/controller-runtime/pkg/envtest"
	_ "sigs.k8s.io/kustomize/api/krusty"
	_ "sigs.k8s.io/kustomize/kyaml/filesys"
	_ "sigs.k8s.io/yaml"
)
