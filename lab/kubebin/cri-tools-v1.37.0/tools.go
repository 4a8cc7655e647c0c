//go:build tools

// Package bin only pins the programs the lab builds.
package bin

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
