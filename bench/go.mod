module github.com/raftkit/raft/bench

go 1.26

replace github.com/raftkit/raft => ../

// raft-boltdb/v2 v2.3.1 imports github.com/hashicorp/go-metrics/compat,
// which go-metrics v0.7.0 (required by hashicorp/raft v1.8.0) removed; the
// fix in raft-boltdb is not tagged yet. v0.6.1 is the newest go-metrics that
// still has the package and builds hashicorp/raft v1.8.0 unchanged.
replace github.com/hashicorp/go-metrics => github.com/hashicorp/go-metrics v0.6.1

require (
	github.com/hashicorp/go-hclog v1.6.3
	github.com/hashicorp/raft v1.8.0
	github.com/hashicorp/raft-boltdb/v2 v2.3.1
	github.com/raftkit/raft v0.0.0-00010101000000-000000000000
	go.etcd.io/bbolt v1.5.0
	go.etcd.io/raft/v3 v3.7.0
)

require (
	github.com/armon/go-metrics v0.4.1 // indirect
	github.com/boltdb/bolt v1.3.1 // indirect
	github.com/fatih/color v1.13.0 // indirect
	github.com/hashicorp/go-immutable-radix v1.3.1 // indirect
	github.com/hashicorp/go-metrics v0.7.0 // indirect
	github.com/hashicorp/go-msgpack/v2 v2.1.5 // indirect
	github.com/hashicorp/golang-lru v1.0.2 // indirect
	github.com/mattn/go-colorable v0.1.12 // indirect
	github.com/mattn/go-isatty v0.0.14 // indirect
	golang.org/x/sys v0.47.0 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)
