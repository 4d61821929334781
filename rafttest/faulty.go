package rafttest

import (
	"io"
	"sync"
	"testing"

	"github.com/raftkit/raft"
)

// FaultyPersister wraps a raft.Persister and injects disk faults into its
// Sync: a test can make every Sync block (a stalled disk, see Stall) or fail
// (FailNext, FailAlways), and can count the Syncs the node asked for. Every
// other method passes straight through.
//
// It is safe for concurrent use: the Node calls the Persister methods from
// its persist goroutine while the test calls the fault methods from its own.
// The zero value is not usable; create one with NewFaultyPersister.
type FaultyPersister struct {
	inner raft.Persister

	mu         sync.Mutex
	gate       chan struct{} // non-nil while stalled; closed by Resume
	closed     bool          // after Close, Stall does nothing
	blocked    int           // Syncs currently waiting at the gate
	syncs      uint64        // Sync calls, faulty or not
	failNext   error
	failAlways error
}

// NewFaultyPersister returns a FaultyPersister that forwards to inner and
// injects no fault until told to. If tb is not nil, Close is registered
// with tb.Cleanup, so a Sync still stalled at the end of the test is
// released and the node's persist goroutine can exit.
//
// Cleanups run last registered first. A node whose Sync is stalled cannot
// stop (Node.Stop waits for the persist in progress), so create the
// persister after the Cluster (for instance in Options.Persister, which
// NewCluster calls after registering its own Close), or call Resume before
// the test ends.
func NewFaultyPersister(tb testing.TB, inner raft.Persister) *FaultyPersister {
	p := &FaultyPersister{inner: inner}
	if tb != nil {
		tb.Cleanup(p.Close)
	}
	return p
}

// Inner returns the wrapped Persister.
func (p *FaultyPersister) Inner() raft.Persister { return p.inner }

// Load implements raft.Persister by forwarding to the wrapped Persister.
func (p *FaultyPersister) Load() (raft.PersistentState, error) { return p.inner.Load() }

// Append implements raft.Persister by forwarding to the wrapped Persister.
func (p *FaultyPersister) Append(entries []raft.Entry) error { return p.inner.Append(entries) }

// TruncateFrom implements raft.Persister by forwarding to the wrapped
// Persister.
func (p *FaultyPersister) TruncateFrom(index uint64) error { return p.inner.TruncateFrom(index) }

// SetHardState implements raft.Persister by forwarding to the wrapped
// Persister.
func (p *FaultyPersister) SetHardState(hs raft.HardState) error { return p.inner.SetHardState(hs) }

// Compact implements raft.Persister by forwarding to the wrapped Persister.
func (p *FaultyPersister) Compact(index uint64) error { return p.inner.Compact(index) }

// CreateSnapshot implements raft.Persister by forwarding to the wrapped
// Persister.
func (p *FaultyPersister) CreateSnapshot(meta raft.SnapshotMeta) (raft.SnapshotWriter, error) {
	return p.inner.CreateSnapshot(meta)
}

// OpenSnapshot implements raft.Persister by forwarding to the wrapped
// Persister.
func (p *FaultyPersister) OpenSnapshot() (raft.SnapshotMeta, io.ReadCloser, error) {
	return p.inner.OpenSnapshot()
}

// Sync implements raft.Persister. It counts the call; while the persister
// is stalled it blocks until Resume or Close; then it returns the injected
// error, if any (without syncing the wrapped Persister, so the writes since
// the last successful Sync stay undurable), or forwards to the wrapped
// Persister.
func (p *FaultyPersister) Sync() error {
	p.mu.Lock()
	p.syncs++
	gate := p.gate
	if gate != nil {
		p.blocked++
	}
	p.mu.Unlock()
	if gate != nil {
		<-gate
		p.mu.Lock()
		p.blocked--
		p.mu.Unlock()
	}
	p.mu.Lock()
	err := p.failAlways
	if err == nil && p.failNext != nil {
		err, p.failNext = p.failNext, nil
	}
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return p.inner.Sync()
}

// Stall makes every Sync from now on block until Resume (or Close), as a
// disk that stopped completing writes would. A Sync already past the stall
// check is not affected. Stall on a stalled or closed persister does
// nothing.
func (p *FaultyPersister) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate == nil && !p.closed {
		p.gate = make(chan struct{})
	}
}

// Resume ends a stall: every blocked Sync proceeds and later ones do not
// block. Resume on a persister that is not stalled does nothing.
func (p *FaultyPersister) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}

// Blocked returns how many Sync calls are blocked by a stall right now.
func (p *FaultyPersister) Blocked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blocked
}

// FailNext makes the next Sync return err instead of syncing. A nil err
// cancels a pending FailNext.
func (p *FaultyPersister) FailNext(err error) {
	p.mu.Lock()
	p.failNext = err
	p.mu.Unlock()
}

// FailAlways makes every Sync from now on return err instead of syncing,
// until FailAlways(nil).
func (p *FaultyPersister) FailAlways(err error) {
	p.mu.Lock()
	p.failAlways = err
	p.mu.Unlock()
}

// Syncs returns how many times Sync has been called, including calls that
// failed or are blocked.
func (p *FaultyPersister) Syncs() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.syncs
}

// Crash discards the writes no Sync has covered by calling the wrapped
// Persister's Crash method, if it has one (raft.MemoryPersister does), and
// does nothing otherwise. Cluster.Crash calls it after stopping the node.
func (p *FaultyPersister) Crash() {
	if c, ok := p.inner.(interface{ Crash() }); ok {
		c.Crash()
	}
}

// Close releases every blocked Sync and disables Stall for good, so that no
// goroutine stays blocked in Sync after the test. Injected failures stay in
// force. Close is idempotent; NewFaultyPersister registers it with the
// test's Cleanup.
func (p *FaultyPersister) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}
