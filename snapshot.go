package raft

import (
	"errors"
	"io"
)

// SnapshotMeta describes a snapshot: the application's state after applying
// every entry up to and including Index, whose term is Term.
type SnapshotMeta struct {
	Index uint64
	Term  uint64
}

// SnapshotWriter receives a snapshot's data. Nothing of it counts until
// Commit returns nil: a crash or an Abort before that leaves the previous
// snapshot in place.
type SnapshotWriter interface {
	io.Writer
	// Commit makes the snapshot durable and the newest: once it returns
	// nil, OpenSnapshot and Load return it, after a crash too. It fails
	// with an error wrapping ErrStaleSnapshot if a snapshot at the same or
	// a higher index was committed meanwhile; the writer is then discarded.
	Commit() error
	// Abort discards the snapshot. It does nothing after Commit.
	Abort() error
}

// Errors about snapshots, matched with errors.Is.
var (
	// ErrNoSnapshot: no snapshot has been committed.
	ErrNoSnapshot = errors.New("raft: no snapshot")
	// ErrStaleSnapshot: a snapshot at the same or a higher index already
	// exists, or the node's log is already compacted past it.
	ErrStaleSnapshot = errors.New("raft: snapshot is stale")
)
