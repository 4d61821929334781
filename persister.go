package raft

import (
	"fmt"
	"sync"
)

// EntryType distinguishes entries that carry a user's command from the
// entries the protocol writes for itself.
type EntryType uint8

const (
	// EntryNormal carries a command passed to Propose; it is delivered on the
	// ApplyMsg channel once committed.
	EntryNormal EntryType = iota
	// EntryNoop is the empty entry a new leader appends at the start of its
	// term (paper §8) so that entries of earlier terms can commit. It is never
	// delivered to the application.
	EntryNoop
)

// Entry is one entry of the replicated log.
type Entry struct {
	Index uint64
	Term  uint64
	Type  EntryType
	// Data is the command. It is shared between the log, the persister and
	// messages, and must not be modified once proposed.
	Data []byte
}

// HardState is the state a node must make durable before it answers any
// message that depends on it (paper Figure 2, "Persistent state on all
// servers"): the current term and the vote cast in it. Commit is persisted
// too, lazily, so that a restarted node applies at once the entries it knew
// to be committed, and never more (pitfall 6).
type HardState struct {
	Term   uint64
	Vote   NodeID
	Commit uint64
}

// PersistentState is what a Persister returns on Load: the last hard state
// saved and the log, in index order starting at index 1.
type PersistentState struct {
	HardState HardState
	Entries   []Entry
}

// Persister stores a node's hard state and log. It is written incrementally:
// the Node appends entries, truncates a suffix after a conflict and saves the
// hard state, then calls Sync once for the whole batch; it never rewrites the
// whole state. Only what a Sync has covered counts as durable: the Node
// acknowledges nothing, votes for nobody and counts no entry of its own
// before the Sync that covers it has returned.
//
// The Node calls these methods from a single goroutine, never concurrently.
// Implementations must apply writes in call order, so that after a crash
// what survives of the unsynced writes is at most a prefix of them.
type Persister interface {
	// Load returns the state as of the last write. NewNode calls it once.
	// The returned entries must be contiguous, starting at index 1.
	Load() (PersistentState, error)
	// Append adds entries to the end of the log. entries[0].Index is one
	// more than the last index held (after any TruncateFrom). The
	// Persister may keep the slice but must not modify it.
	Append(entries []Entry) error
	// TruncateFrom removes every entry with index >= index.
	TruncateFrom(index uint64) error
	// SetHardState replaces the saved hard state.
	SetHardState(hs HardState) error
	// Sync makes every write before it durable.
	Sync() error
}

// MemoryPersister is a Persister that keeps its state in memory. It outlives
// the Node that uses it, so a test can stop a node ("crash" it), keep the
// persister and start a new Node on it. Crash discards the writes no Sync has
// covered, as a machine losing power would. It is safe for concurrent use.
type MemoryPersister struct {
	mu      sync.Mutex
	current PersistentState // every write, synced or not
	durable PersistentState // as of the last Sync
	syncs   uint64
}

// NewMemoryPersister returns an empty MemoryPersister.
func NewMemoryPersister() *MemoryPersister { return &MemoryPersister{} }

// Load implements Persister.
func (p *MemoryPersister) Load() (PersistentState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return clonePersistentState(p.current), nil
}

// Append implements Persister.
func (p *MemoryPersister) Append(entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	want := uint64(len(p.current.Entries)) + 1
	if entries[0].Index != want {
		return fmt.Errorf("raft: MemoryPersister.Append: first index %d, want %d", entries[0].Index, want)
	}
	p.current.Entries = append(p.current.Entries, entries...)
	return nil
}

// TruncateFrom implements Persister.
func (p *MemoryPersister) TruncateFrom(index uint64) error {
	if index == 0 {
		return fmt.Errorf("raft: MemoryPersister.TruncateFrom: index 0")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := uint64(len(p.current.Entries)); index <= n {
		// Cap the slice so that a later Append cannot write into an array
		// that the durable copy or a caller still shares.
		p.current.Entries = p.current.Entries[: index-1 : index-1]
	}
	return nil
}

// SetHardState implements Persister.
func (p *MemoryPersister) SetHardState(hs HardState) error {
	p.mu.Lock()
	p.current.HardState = hs
	p.mu.Unlock()
	return nil
}

// Sync implements Persister.
func (p *MemoryPersister) Sync() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.syncs++
	// Entries are append-only between truncations and truncation caps the
	// slice, so sharing the backing array with current is safe.
	n := len(p.current.Entries)
	p.durable = PersistentState{HardState: p.current.HardState, Entries: p.current.Entries[:n:n]}
	return nil
}

// Crash discards every write made since the last Sync, as a power loss
// would. Call it only while no Node is using the persister.
func (p *MemoryPersister) Crash() {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.durable.Entries)
	p.current = PersistentState{HardState: p.durable.HardState, Entries: p.durable.Entries[:n:n]}
}

// Syncs returns how many times Sync has been called.
func (p *MemoryPersister) Syncs() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.syncs
}

func clonePersistentState(s PersistentState) PersistentState {
	return PersistentState{HardState: s.HardState, Entries: append([]Entry(nil), s.Entries...)}
}
