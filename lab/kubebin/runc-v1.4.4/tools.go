//go:build tools

// Package bin only pins the programs the lab builds.
package bin

import (
	_ "github.com/opencontainers/runc"
)
