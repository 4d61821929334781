package raft

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
// saved, the newest committed snapshot (zero if there is none), and the log
// entries after it, in index order.
type PersistentState struct {
	HardState HardState
	// Snapshot describes the newest committed snapshot; its data is read
	// with OpenSnapshot. Zero if no snapshot was ever committed.
	Snapshot SnapshotMeta
	// Entries start at Snapshot.Index+1 (at 1 without a snapshot) and are
	// contiguous.
	Entries []Entry
}

// Persister stores a node's hard state, log and snapshot. The log is written
// incrementally: the Node appends entries, truncates a suffix after a
// conflict, saves the hard state and compacts a prefix covered by a
// snapshot, then calls Sync once for the whole batch; it never rewrites the
// whole state. Only what a Sync has covered counts as durable: the Node
// acknowledges nothing, votes for nobody and counts no entry of its own
// before the Sync that covers it has returned.
//
// The log methods (Append, TruncateFrom, SetHardState, Compact, Sync) are
// called from a single goroutine, never concurrently with each other.
// Implementations must apply them in call order, so that after a crash what
// survives of the unsynced writes is at most a prefix of them. The snapshot
// methods (CreateSnapshot, OpenSnapshot, and the SnapshotWriter) may be
// called from other goroutines at the same time as the log methods.
type Persister interface {
	// Load returns the state as of the last write. NewNode calls it once.
	// The returned entries follow the returned snapshot: if the log held
	// an entry at the snapshot's index with another term, or ended before
	// it, Load returns no entries (the snapshot replaces that log): the
	// Persister then drops that log as TruncateFrom and Compact at the
	// snapshot's index would (durably at the next Sync), so that the next
	// Append starts at the snapshot's index+1.
	Load() (PersistentState, error)
	// Append adds entries to the end of the log. entries[0].Index is one
	// more than the last index held (after any TruncateFrom), or one more
	// than the index of the last Compact if the log ends before it. The
	// Persister may keep the slice but must not modify it.
	Append(entries []Entry) error
	// TruncateFrom removes every entry with index >= index.
	TruncateFrom(index uint64) error
	// SetHardState replaces the saved hard state.
	SetHardState(hs HardState) error
	// Compact says that a committed snapshot covers every entry at or
	// below index: the Persister may discard them (and should, to bound
	// its storage). If the log ends before index, the next Append starts
	// at index+1. Like the other writes it is durable after the next Sync.
	// The Node calls it only after the snapshot's SnapshotWriter.Commit
	// returned nil.
	Compact(index uint64) error
	// Sync makes every write before it durable.
	Sync() error

	// CreateSnapshot starts a snapshot described by meta. Its data is
	// written to the returned SnapshotWriter; it becomes the snapshot only
	// when Commit returns nil.
	CreateSnapshot(meta SnapshotMeta) (SnapshotWriter, error)
	// OpenSnapshot opens the newest committed snapshot for reading. It
	// returns an error wrapping ErrNoSnapshot if there is none. The reader
	// checks the data as it goes: if the data read does not match what
	// was committed, a Read returns an error wrapping ErrCorrupt, at the
	// latest at the end of the data. The caller closes the reader.
	OpenSnapshot() (SnapshotMeta, io.ReadCloser, error)
}

// MemoryPersister is a Persister that keeps its state in memory. It outlives
// the Node that uses it, so a test can stop a node ("crash" it), keep the
// persister and start a new Node on it. Crash discards the log writes no
// Sync has covered, as a machine losing power would; a committed snapshot
// survives it. It is safe for concurrent use.
type MemoryPersister struct {
	mu      sync.Mutex
	current memLog // every write, synced or not
	durable memLog // as of the last Sync
	snap    memSnapshot
	syncs   uint64
}

// memLog is a MemoryPersister's log: the entries base+1 .. base+n, held as
// the slices Append was given, in order. The Persister contract lets it keep
// them unmodified, and keeping them rather than copying them saves a copy of
// every entry (the copy was an eighth of a busy in-memory leader's CPU).
type memLog struct {
	hs   HardState
	base uint64 // entries at or below base were compacted away
	n    int
	segs [][]Entry
}

// last returns the index of the last entry held, or base if there is none.
func (l *memLog) last() uint64 { return l.base + uint64(l.n) }

// capped returns l with its segment list's capacity cut to its length, so
// that an Append to one copy never writes into an array another copy
// shares. Truncation and compaction always build a new list.
func (l memLog) capped() memLog {
	l.segs = l.segs[:len(l.segs):len(l.segs)]
	return l
}

// keep returns, in a new list, the segments' parts holding the entries in
// [lo, hi].
func (l *memLog) keep(lo, hi uint64) [][]Entry {
	var out [][]Entry
	first := l.base + 1 // index of the current segment's first entry
	for _, s := range l.segs {
		sLo, sHi := first, first+uint64(len(s))-1
		first += uint64(len(s))
		if sHi < lo || sLo > hi {
			continue
		}
		a, b := max(lo, sLo)-sLo, min(hi, sHi)-sLo+1
		out = append(out, s[a:b:b])
	}
	return out
}

// entries returns a copy of the entries in [lo, last()].
func (l *memLog) entries(lo uint64) []Entry {
	var out []Entry
	for _, s := range l.keep(lo, l.last()) {
		out = append(out, s...)
	}
	return out
}

type memSnapshot struct {
	meta SnapshotMeta
	data []byte // never modified once committed
}

// NewMemoryPersister returns an empty MemoryPersister.
func NewMemoryPersister() *MemoryPersister { return &MemoryPersister{} }

// Load implements Persister.
func (p *MemoryPersister) Load() (PersistentState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, snap := p.current, p.snap.meta
	st := PersistentState{HardState: l.hs, Snapshot: snap}
	switch {
	case snap.Index < l.base:
		return PersistentState{}, fmt.Errorf("raft: %w: MemoryPersister log compacted to %d, past its newest snapshot at %d", ErrCorrupt, l.base, snap.Index)
	case snap.Index == l.base:
		st.Entries = l.entries(l.base + 1)
	case snap.Index > l.last() || l.keep(snap.Index, snap.Index)[0][0].Term != snap.Term:
		// The snapshot replaces a log that does not lead to it: drop that
		// log, as TruncateFrom and Compact would, so that the next Append
		// (at snap.Index+1) fits.
		l.segs, l.n, l.base = nil, 0, snap.Index
		p.current = l
	default:
		st.Entries = l.entries(snap.Index + 1)
	}
	return st, nil
}

// Append implements Persister.
func (p *MemoryPersister) Append(entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if want := p.current.last() + 1; entries[0].Index != want {
		return fmt.Errorf("raft: MemoryPersister.Append: first index %d, want %d", entries[0].Index, want)
	}
	// The durable copy may share the segment list: it sees only its own
	// length of it.
	p.current.segs = append(p.current.segs, entries[:len(entries):len(entries)])
	p.current.n += len(entries)
	return nil
}

// TruncateFrom implements Persister.
func (p *MemoryPersister) TruncateFrom(index uint64) error {
	if index == 0 {
		return fmt.Errorf("raft: MemoryPersister.TruncateFrom: index 0")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	l := &p.current
	if index <= l.last() {
		// A new list: the durable copy may share the old one.
		l.segs = l.keep(l.base+1, index-1)
		l.n = int(max(index, l.base+1) - l.base - 1)
	}
	return nil
}

// SetHardState implements Persister.
func (p *MemoryPersister) SetHardState(hs HardState) error {
	p.mu.Lock()
	p.current.hs = hs
	p.mu.Unlock()
	return nil
}

// Compact implements Persister.
func (p *MemoryPersister) Compact(index uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := &p.current
	if index <= l.base {
		return nil
	}
	if index >= l.last() {
		l.segs, l.n = nil, 0
	} else {
		// A copy, not l.keep: the segments kept would share their arrays
		// with the compacted entries (in a Node, a raftLog chunk whose
		// compacted commands raftLog.compact just let go of), and keep
		// those commands alive. A new list: the durable copy may share
		// the old one.
		kept := l.entries(index + 1)
		l.segs = [][]Entry{kept[:len(kept):len(kept)]}
		l.n = len(kept)
	}
	l.base = index
	return nil
}

// Sync implements Persister.
func (p *MemoryPersister) Sync() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.syncs++
	// Segments are only added between truncations and compactions, which
	// build a new list, so sharing the list with current is safe.
	p.durable = p.current.capped()
	return nil
}

// Crash discards every log write made since the last Sync, as a power loss
// would. Committed snapshots stay. Call it only while no Node is using the
// persister.
func (p *MemoryPersister) Crash() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = p.durable.capped()
}

// Syncs returns how many times Sync has been called.
func (p *MemoryPersister) Syncs() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.syncs
}

// CreateSnapshot implements Persister. The data is kept in memory.
func (p *MemoryPersister) CreateSnapshot(meta SnapshotMeta) (SnapshotWriter, error) {
	return &memSnapshotWriter{p: p, meta: meta}, nil
}

// OpenSnapshot implements Persister.
func (p *MemoryPersister) OpenSnapshot() (SnapshotMeta, io.ReadCloser, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.snap.meta.Index == 0 {
		return SnapshotMeta{}, nil, fmt.Errorf("raft: MemoryPersister: %w", ErrNoSnapshot)
	}
	return p.snap.meta, io.NopCloser(bytes.NewReader(p.snap.data)), nil
}

type memSnapshotWriter struct {
	p    *MemoryPersister
	meta SnapshotMeta
	buf  bytes.Buffer
	done bool
}

func (w *memSnapshotWriter) Write(b []byte) (int, error) {
	if w.done {
		return 0, errSnapshotWriterDone
	}
	return w.buf.Write(b)
}

func (w *memSnapshotWriter) Commit() error {
	if w.done {
		return errSnapshotWriterDone
	}
	w.done = true
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.meta.Index <= p.snap.meta.Index {
		return fmt.Errorf("raft: MemoryPersister: commit snapshot at %d: %w (have %d)", w.meta.Index, ErrStaleSnapshot, p.snap.meta.Index)
	}
	p.snap = memSnapshot{meta: w.meta, data: w.buf.Bytes()}
	return nil
}

func (w *memSnapshotWriter) Abort() error {
	w.done = true
	w.buf = bytes.Buffer{}
	return nil
}

var errSnapshotWriterDone = errors.New("raft: snapshot writer already committed or aborted")
