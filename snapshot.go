package raft

import (
	"context"
	"errors"
	"fmt"
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

// ErrSnapshotIndex: Node.Snapshot was given an index the application has
// not received yet (or 0).
var ErrSnapshotIndex = errors.New("raft: snapshot index not applied")

// Snapshot records a snapshot of the application's state and compacts the
// log behind it, so that the log, in memory and in the Persister, stays
// bounded. index is the index of the last command the state includes: the
// application must have received it (CommandIndex), and must
// not have applied any later one to the state that write saves.
//
// write streams the state to w; Snapshot runs it in the calling goroutine
// and stores what it writes through the Persister, never holding it whole in
// memory. The snapshot counts only once it is durable; then the node drops
// the log entries it covers, except the last Config.TrailingEntries (kept so
// that a follower slightly behind catches up from the log). Followers that
// need compacted entries receive the newest snapshot instead, on their
// ApplyCh or ApplyBatchCh.
//
// A typical application calls Snapshot from its apply loop when a command
// arrives with ApplyMsg.SnapshotDue, after applying it. An application whose
// state can be copied cheaply can instead copy it there and run Snapshot on
// another goroutine with the copy.
//
// Snapshot fails with an error wrapping ErrSnapshotIndex if index is 0 or
// not yet received, ErrStaleSnapshot if a snapshot at index or beyond
// already exists, the error write returns, the Persister's error, ctx.Err()
// if ctx ends first (checked between writes), or ErrStopped. Calls are
// serialized.
func (n *Node) Snapshot(ctx context.Context, index uint64, write func(w io.Writer) error) error {
	n.snapMu.Lock()
	defer n.snapMu.Unlock()
	if index == 0 {
		return fmt.Errorf("%w: index 0", ErrSnapshotIndex)
	}
	meta, err := n.snapshotRequest(ctx, snapRequest{index: index})
	if err != nil {
		return err
	}
	w, err := n.cfg.Persister.CreateSnapshot(meta)
	if err != nil {
		return fmt.Errorf("raft: create snapshot: %w", err)
	}
	if err := write(ctxWriter{ctx: ctx, w: w}); err != nil {
		w.Abort()
		return err
	}
	err = w.Commit()
	if err != nil && !errors.Is(err, ErrStaleSnapshot) {
		return fmt.Errorf("raft: commit snapshot: %w", err)
	}
	// Durable (or a newer one is): compact, whatever ctx says now; the
	// run loop answers at once.
	if _, cerr := n.snapshotRequest(context.Background(), snapRequest{index: index, meta: meta, compact: true}); cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("raft: commit snapshot: %w", err)
	}
	return nil
}

// snapRequest asks the run loop for the snapshot position of index (compact
// false) or to compact the log behind a committed snapshot at index.
type snapRequest struct {
	index   uint64
	meta    SnapshotMeta // with compact: the snapshot committed
	compact bool
	reply   chan snapReply
}

type snapReply struct {
	meta SnapshotMeta
	err  error
}

func (n *Node) snapshotRequest(ctx context.Context, req snapRequest) (SnapshotMeta, error) {
	req.reply = make(chan snapReply, 1)
	select {
	case n.snapc <- req:
	case <-ctx.Done():
		return SnapshotMeta{}, ctx.Err()
	case <-n.stopc:
		return SnapshotMeta{}, ErrStopped
	}
	select {
	case r := <-req.reply:
		return r.meta, r.err
	case <-n.stopc:
		return SnapshotMeta{}, ErrStopped
	}
}

// handleSnapshotRequest serves snapshotRequest in the run loop.
func (n *Node) handleSnapshotRequest(req snapRequest) {
	c := n.core
	if !req.compact {
		if req.index <= c.raftLog.offset {
			req.reply <- snapReply{err: fmt.Errorf("%w: index %d, log compacted to %d", ErrStaleSnapshot, req.index, c.raftLog.offset)}
			return
		}
		t, ok := c.raftLog.term(req.index)
		if !ok || req.index > c.raftLog.applied {
			req.reply <- snapReply{err: fmt.Errorf("%w: index %d not in the applied log", ErrSnapshotIndex, req.index)}
			return
		}
		req.reply <- snapReply{meta: SnapshotMeta{Index: req.index, Term: t}}
		return
	}
	n.setSnapshot(req.meta)
	if trail := uint64(n.cfg.trailingEntries()); req.index > trail {
		c.compact(req.index - trail)
	}
	req.reply <- snapReply{}
}

// ctxWriter is w that fails once ctx has ended.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (cw ctxWriter) Write(p []byte) (int, error) {
	if err := cw.ctx.Err(); err != nil {
		return 0, err
	}
	return cw.w.Write(p)
}
