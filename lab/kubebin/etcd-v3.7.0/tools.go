//go:build tools

// Package etcdbin only pins the programs the lab builds.
package etcdbin

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
)
