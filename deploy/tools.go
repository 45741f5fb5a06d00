//go:build tools

// Package deploy pins the tools its tests build: the helm command.
package deploy

import _ "helm.sh/helm/v3/cmd/helm"
