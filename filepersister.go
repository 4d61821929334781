package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/raftkit/raft/internal/wal"
)

// Errors of OpenFilePersister, matched with errors.Is.
var (
	// ErrLocked: another process (or another open FilePersister) holds the
	// directory.
	ErrLocked = errors.New("raft: storage directory is locked")
	// ErrWrongDirectory: the directory holds the log of another node or
	// another cluster.
	ErrWrongDirectory = errors.New("raft: storage directory belongs to another node or cluster")
)

// FileOptions configure OpenFilePersister. The zero value is valid.
type FileOptions struct {
	// ClusterID is stored in the directory when it is created; opening it
	// later with another ClusterID (or node ID) fails with
	// ErrWrongDirectory, so a misconfigured node cannot join the wrong
	// cluster with someone else's log. Zero is a valid ID.
	ClusterID uint64
	// SegmentSize is the size at which the log starts a new file. Zero
	// means 64 MiB.
	SegmentSize int64
	// Logger receives a warning when recovery cuts off a write torn by a
	// crash. Nil means no logging.
	Logger *slog.Logger
}

// FilePersister is a Persister that stores a node's log and hard state in a
// directory: a write-ahead log of append-only segment files, each record
// checksummed (CRC-32C), written in call order and made durable by one
// fsync per Sync, however many entries the batch holds (group commit).
//
// Snapshots are files in the same directory (see filesnapshot.go for the
// format), each written to a temporary file, fsynced, renamed and the
// directory fsynced on Commit, and checked (CRC-32C) whenever it is read.
// Compact writes a record in the log; once it is durable (at the next
// Sync), the log segments that hold only entries it covers are deleted, so
// that the directory holds the newest snapshot and about the log after it.
// Snapshot data is never held whole in memory, and the snapshot methods
// run concurrently with the log methods without waiting for them.
//
// A node survives kill -9 and power loss with everything a Sync covered:
// on open, a record torn by a crash at the end of the log is cut off; any
// other damage (a checksum failure before the end, a missing segment, a gap
// in the indexes, a snapshot file that fails its checksum, a log compacted
// past the newest snapshot) is an error wrapping ErrCorrupt that names the
// file, and the node does not start. Nothing is ever silently dropped.
//
// The directory is locked while the FilePersister is open. Close it after
// the Node using it has stopped. Safe for concurrent use.
type FilePersister struct {
	dir    string
	opts   wal.Options
	fsys   wal.FS
	logger *slog.Logger

	// mu serializes the log methods (and Load, Close).
	mu     sync.Mutex
	w      *wal.WAL
	state  wal.State // recovered by the last open, until Load hands it out
	stale  bool      // state was handed out or written since: Load must reopen
	closed bool
	buf    []wal.Entry // reused by Append
	// base is the log's compaction point: the entries at or below it are
	// gone (compacted, or in deleted segments). TruncateFrom never goes
	// below it, so the next Append after truncating there is at base+1.
	base uint64

	// snapMu guards the snapshot files' state. It is never held while a
	// snapshot's data is written or read, only to commit (rename, delete)
	// or open one. Lock order: mu, then snapMu.
	snapMu     sync.Mutex
	snap       snapFile // newest committed snapshot, zero if none
	snapClosed bool
	tmpSeq     uint64 // tells temporary snapshot files apart
}

// OpenFilePersister opens the storage of node id in dir, creating the
// directory if need be, and recovers what it holds. It fails with
// ErrLocked if the directory is in use, ErrWrongDirectory if it belongs to
// another node or cluster, ErrCorrupt if its log is damaged, or the
// file-system error (for a path that is a file or not writable); on any
// error nothing is written.
func OpenFilePersister(dir string, id NodeID, opts FileOptions) (*FilePersister, error) {
	return openFilePersister(dir, id, opts, nil)
}

// openFilePersister is OpenFilePersister on the file system fsys; nil means
// the operating system's. Tests pass an in-memory one that injects faults
// (see export_test.go).
func openFilePersister(dir string, id NodeID, opts FileOptions, fsys wal.FS) (*FilePersister, error) {
	if id == 0 {
		return nil, fmt.Errorf("raft: OpenFilePersister %s: node ID 0 is not valid", dir)
	}
	p := &FilePersister{dir: dir, fsys: fsys, logger: opts.Logger, opts: wal.Options{
		NodeID: uint64(id), ClusterID: opts.ClusterID, SegmentSize: opts.SegmentSize, FS: fsys, Logger: opts.Logger,
	}}
	if p.fsys == nil {
		p.fsys = wal.OSFS{}
	}
	if err := p.open(); err != nil {
		return nil, err
	}
	// The WAL holds the directory's lock: no one else writes snapshots.
	if err := p.scanSnapshots(); err != nil {
		p.w.Close()
		return nil, err
	}
	return p, nil
}

func (p *FilePersister) open() error {
	w, st, err := wal.Open(p.dir, p.opts)
	switch {
	case err == nil:
	case errors.Is(err, wal.ErrLocked):
		return fmt.Errorf("%w: %w", ErrLocked, err)
	case errors.Is(err, wal.ErrMismatch):
		return fmt.Errorf("%w: %w", ErrWrongDirectory, err)
	case errors.Is(err, wal.ErrCorrupt):
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	default:
		return fmt.Errorf("raft: open storage %s: %w", p.dir, err)
	}
	p.w, p.state, p.stale = w, st, false
	p.base = st.FirstIndex - 1
	return nil
}

// Load implements Persister. It returns the state as of the last write: what
// the directory held when opened, or, after writes, what it holds now (it
// closes and reopens the log, as a restarted process would). After a failed
// write or sync (a full disk, say), which fails every later write, Load
// still reopens the directory and returns what reached the disk, as after a
// crash: the Node reported nothing durable that the failure lost.
//
// The snapshot is the newest snapshot file, whose checksum Load verifies
// (streaming it) before it returns: a damaged one fails Load with an error
// wrapping ErrCorrupt that names the file, and so does a log compacted
// beyond the newest snapshot (a snapshot file is missing). The entries are
// those after the snapshot; if the log does not hold the snapshot's last
// entry with its term, there are none, and the log is emptied and
// positioned after the snapshot (durable at the next Sync), so that the
// next Append starts there.
func (p *FilePersister) Load() (PersistentState, error) {
	// Verify the snapshot before taking mu: the log methods need not wait
	// for a large file to be read.
	var snap snapFile
	for {
		p.snapMu.Lock()
		s, closed := p.snap, p.snapClosed
		p.snapMu.Unlock()
		if closed {
			return PersistentState{}, errFileClosed
		}
		if s == snap {
			break // verified, and still the newest
		}
		snap = s
		if snap.meta.Index > 0 {
			if err := p.verifySnapshot(snap); err != nil {
				if p.newestSnapshot() != snap {
					continue // a concurrent Commit replaced (and deleted) it
				}
				return PersistentState{}, fmt.Errorf("raft: load %s: %w", p.dir, err)
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return PersistentState{}, errFileClosed
	}
	if p.stale {
		// Reopen, as a restarted process would. The directory is unlocked
		// between the two: another opener could take it, and this Load
		// then fails with ErrLocked. Close fails if the log failed
		// before (its error is sticky) or cannot sync what it buffered;
		// it releases the directory all the same, and a restarted
		// process would not see that error either, so it does not stop
		// the reopen: recovery reads what is on disk.
		if err := p.w.Close(); err != nil && p.opts.Logger != nil {
			p.opts.Logger.Warn("raft: closing the storage before reopening it failed; reopening recovers what reached the disk", "dir", p.dir, "err", err)
		}
		if err := p.open(); err != nil {
			p.closed = true
			p.closeSnapshots()
			return PersistentState{}, fmt.Errorf("raft: reopen storage %s: %w", p.dir, err)
		}
	}
	// Hand the recovered state out and keep nothing of it: the Node holds
	// the log, and a second copy would double the memory of a large one.
	p.stale = true
	defer func() { p.state = wal.State{} }()
	hs := p.state.HardState
	ents, err := p.afterSnapshot(p.state, snap)
	if err != nil {
		return PersistentState{}, err
	}
	out := PersistentState{
		HardState: HardState{Term: hs.Term, Vote: NodeID(hs.Vote), Commit: hs.Commit},
		Snapshot:  snap.meta,
		Entries:   make([]Entry, len(ents)),
	}
	for i, e := range ents {
		out.Entries[i] = Entry{Index: e.Index, Term: e.Term, Type: EntryType(e.Type), Data: e.Data}
	}
	return out, nil
}

// afterSnapshot returns the entries of the recovered log st that follow
// the snapshot s (see Load).
func (p *FilePersister) afterSnapshot(st wal.State, s snapFile) ([]wal.Entry, error) {
	first, ents := st.FirstIndex, st.Entries
	base, last := first-1, first-1+uint64(len(ents))
	idx := s.meta.Index
	switch {
	case idx < base:
		what := "there is no snapshot file"
		if idx > 0 {
			what = fmt.Sprintf("the newest snapshot file, %s, is at index %d", filepath.Base(s.path), idx)
		}
		return nil, fmt.Errorf("raft: %w: the log in %s is compacted to index %d but %s (a snapshot file is missing)", ErrCorrupt, p.dir, base, what)
	case idx == base:
		return ents, nil
	case idx <= last && ents[idx-first].Term == s.meta.Term:
		return ents[idx-first+1:], nil
	}
	// The snapshot replaces a log that does not lead to it (a crash came
	// between its commit and the compaction that goes with it): do that
	// compaction now, so that the next Append, at idx+1, fits.
	if len(ents) > 0 {
		if err := p.w.TruncateFrom(first); err != nil {
			return nil, err
		}
	}
	if err := p.w.Compact(idx); err != nil {
		return nil, err
	}
	p.base = max(p.base, idx)
	return nil, nil
}

var errFileClosed = errors.New("raft: FilePersister is closed")

// write runs f, a write to the log, with the mutex held, unless the
// persister is closed. Any write makes the state recovered at open stale.
func (p *FilePersister) write(f func() error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errFileClosed
	}
	p.stale = true
	return f()
}

// Append implements Persister.
func (p *FilePersister) Append(entries []Entry) error {
	return p.write(func() error {
		p.buf = p.buf[:0]
		for i := range entries {
			e := &entries[i]
			p.buf = append(p.buf, wal.Entry{Index: e.Index, Term: e.Term, Type: uint8(e.Type), Data: e.Data})
		}
		err := p.w.Append(p.buf)
		clear(p.buf) // drop references to the entries' data
		return err
	})
}

// TruncateFrom implements Persister.
func (p *FilePersister) TruncateFrom(index uint64) error {
	return p.write(func() error { return p.w.TruncateFrom(max(index, p.base+1)) })
}

// SetHardState implements Persister.
func (p *FilePersister) SetHardState(hs HardState) error {
	return p.write(func() error {
		return p.w.SetHardState(wal.HardState{Term: hs.Term, Vote: uint64(hs.Vote), Commit: hs.Commit})
	})
}

// Sync implements Persister: one fsync makes every earlier write durable.
func (p *FilePersister) Sync() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errFileClosed
	}
	return p.w.Sync()
}

// Close syncs and closes the log and releases the directory. Call it after
// the Node has stopped; a second call does nothing.
func (p *FilePersister) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.closeSnapshots()
	return p.w.Close()
}

// newestSnapshot returns the newest committed snapshot file.
func (p *FilePersister) newestSnapshot() snapFile {
	p.snapMu.Lock()
	defer p.snapMu.Unlock()
	return p.snap
}

// closeSnapshots makes the snapshot methods fail from now on: the
// directory is about to be released. Readers already open go on.
func (p *FilePersister) closeSnapshots() {
	p.snapMu.Lock()
	p.snapClosed = true
	p.snapMu.Unlock()
}

// kill abandons the storage as the death of the process would: what the
// log had buffered and not yet written is dropped, nothing is synced, the
// files are closed and the directory released (see wal.WAL.Abandon). It
// returns how many buffered bytes were dropped. For crash tests; the
// FilePersister is closed afterwards.
func (p *FilePersister) kill() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0
	}
	p.closed = true
	p.closeSnapshots()
	return p.w.Abandon()
}

// Compact implements Persister: a compact record in the log; once it is
// durable (at the next Sync), the log's segments that hold only entries at
// or below index are deleted.
func (p *FilePersister) Compact(index uint64) error {
	return p.write(func() error {
		if index <= p.base {
			return nil
		}
		if err := p.w.Compact(index); err != nil {
			return err
		}
		p.base = index
		return nil
	})
}
