package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/raftkit/raft/internal/wal/walfs"
)

// Entry is one entry of the replicated log, as the WAL stores it.
type Entry struct {
	Index uint64 // position in the log, from 1
	Term  uint64 // term of the leader that created it
	Type  uint8  // the caller's entry type, stored as is
	Data  []byte // the command, possibly empty
}

// HardState is the state Raft must make durable besides the log: the
// current term, the vote cast in it and the commit index.
type HardState struct {
	Term   uint64
	Vote   uint64
	Commit uint64
}

// State is what Open recovers: the last hard state written and the log.
type State struct {
	// HardState is the last hard state written (zero in a new WAL).
	HardState HardState
	// FirstIndex is the index of Entries[0], or, when Entries is empty,
	// the index the next appended entry must have. It is 1 unless
	// ReleaseBefore has removed a prefix of the log.
	FirstIndex uint64
	// Entries are contiguous: Entries[i].Index == FirstIndex+i. Their Data
	// alias buffers that belong to the caller from now on.
	Entries []Entry
}

// DefaultSegmentSize is the segment size used when Options.SegmentSize is
// zero.
const DefaultSegmentSize = 64 << 20

// minSegmentSize is the smallest Options.SegmentSize accepted.
const minSegmentSize = 1 << 10

const (
	lockName = "LOCK"
	// recordTarget is the body size at which Append starts a new record,
	// so that a huge batch does not need a huge buffer.
	recordTarget = 1 << 20
	// defaultFlushBytes is the buffered size at which Append writes the
	// buffer to the file without waiting for Sync.
	defaultFlushBytes = 1 << 20
	// maxRetainedBuf is the buffer capacity kept after a flush; a buffer
	// grown beyond it by a huge entry is dropped.
	maxRetainedBuf = 8 << 20
)

// Options configure Open. The zero value is not valid: NodeID is required.
type Options struct {
	// NodeID is the ID of the node that owns the directory; it must not be
	// zero. Open refuses, with ErrMismatch, a directory written with
	// another NodeID.
	NodeID uint64
	// ClusterID is the ID of the node's cluster, any value. Open refuses,
	// with ErrMismatch, a directory written with another ClusterID.
	ClusterID uint64
	// SegmentSize is the size in bytes at which the WAL closes a segment
	// and starts the next one. A segment exceeds it only when a single
	// record is larger. Zero means DefaultSegmentSize; otherwise it must be
	// at least 1 KiB. It may change between opens.
	SegmentSize int64
	// FS is the file system. Nil means OSFS{}.
	FS FS
	// Logger receives a warning when Open cuts a torn tail off the log and
	// debug messages on segment changes. Nil means discard.
	Logger *slog.Logger

	// flushBytes overrides defaultFlushBytes; for tests.
	flushBytes int
}

func (o *Options) validate() error {
	var errs []error
	if o.NodeID == 0 {
		errs = append(errs, errors.New("wal: Options.NodeID is zero"))
	}
	if o.SegmentSize < 0 || (o.SegmentSize > 0 && o.SegmentSize < minSegmentSize) {
		errs = append(errs, fmt.Errorf("wal: Options.SegmentSize %d: must be 0 (default) or at least %d", o.SegmentSize, minSegmentSize))
	}
	return errors.Join(errs...)
}

var (
	// ErrLocked is returned by Open when another process, or another WAL
	// in this process, has the directory open. It is walfs.ErrLocked, the
	// error an FS's Lock wraps.
	ErrLocked = walfs.ErrLocked
	// ErrMismatch is returned by Open when the directory holds the WAL of
	// another node or cluster (its NodeID or ClusterID differ from
	// Options). Open writes nothing in that case.
	ErrMismatch = errors.New("wal: directory belongs to another node or cluster")
	// ErrCorrupt is matched (with errors.Is) by the *CorruptError that
	// Open returns when the directory's content is damaged in a way that
	// cutting a torn tail cannot repair without losing data that may have
	// been synced.
	ErrCorrupt = errors.New("wal: corrupt")
	// ErrClosed is returned by the methods of a closed WAL.
	ErrClosed = errors.New("wal: closed")
)

// CorruptError describes damage found by Open. errors.Is(err, ErrCorrupt)
// holds for it.
type CorruptError struct {
	// File is the path of the damaged segment, or of the directory when
	// the damage is in the set of segments (a missing one).
	File string
	// Offset is the byte offset in File of the damaged record, or -1.
	Offset int64
	// Reason says what is wrong.
	Reason string
}

// Error implements error.
func (e *CorruptError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("wal: corrupt: %s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("wal: corrupt: %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func corrupt(file string, off int64, format string, args ...any) error {
	return &CorruptError{File: file, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// closedSeg is a segment before the active one.
type closedSeg struct {
	path     string
	maxIndex uint64 // largest entry index written in it, 0 if none
}

// WAL is an open write-ahead log. Its methods are safe for concurrent use
// (they are serialized), but the order of writes is the order of calls, so
// a caller normally writes from one goroutine.
//
// Writes (Append, TruncateFrom, SetHardState) are buffered; only Sync makes
// them durable, all of them with one fsync. After a crash, what survives of
// the writes not covered by a Sync is a prefix of them (cut at an entry
// boundary at worst). A failed write or fsync is sticky: every later call
// returns an error wrapping the first failure, because after a failed fsync
// nobody knows what is on disk. Close and Open again to recover.
type WAL struct {
	mu     sync.Mutex
	fs     FS
	dir    string
	opts   Options
	logger *slog.Logger
	lock   io.Closer

	segSize    int64 // opts.SegmentSize resolved
	flushBytes int

	// The active segment.
	f         File   // nil only after a failed rollover
	path      string // its path
	seq       uint64 // its sequence number
	fileSize  int64  // bytes written to f; buf goes at this offset
	segStart  int64  // size of the records the active segment was created with
	buf       []byte // whole records not yet written to f
	dirty     bool   // f has writes not yet fsynced
	activeMax uint64 // largest entry index written in it

	closed []closedSeg // segments before the active one, oldest first

	next uint64    // index the next appended entry must have
	hs   HardState // last hard state written

	base        uint64 // compaction point: largest index given to Compact (or recovered)
	durableBase uint64 // base as of the last completed Sync: segments at or below it may go

	err      error // first write or sync failure: sticky
	isClosed bool
	released int // segments deleted since Open
}

// segmentName is the file name of segment seq whose first index is first.
func segmentName(seq, first uint64) string {
	return fmt.Sprintf("%016x-%016x.wal", seq, first)
}

// Open opens the WAL in dir, creating the directory and an empty WAL if
// there is none, and returns it with the state it recovered (see the
// package documentation for the recovery rules). Everything in the
// returned State is durable: Open fsyncs the last segment and the
// directory, in case a crashed process left writes that no Sync covered.
// It holds an exclusive lock on the directory until Close: a second Open
// fails with ErrLocked.
//
// Errors: ErrMismatch if the directory belongs to another node or cluster,
// ErrCorrupt (a *CorruptError) if the content is damaged beyond a torn
// tail, ErrLocked, or the file system's error. Open validates the whole
// directory before it writes anything (a torn-tail cut, the removal of
// leftovers), so ErrMismatch and ErrCorrupt leave the directory untouched.
func Open(dir string, opts Options) (*WAL, State, error) {
	if err := opts.validate(); err != nil {
		return nil, State{}, err
	}
	w := &WAL{
		fs:         opts.FS,
		dir:        dir,
		opts:       opts,
		logger:     opts.Logger,
		segSize:    opts.SegmentSize,
		flushBytes: opts.flushBytes,
	}
	if w.fs == nil {
		w.fs = OSFS{}
	}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	if w.segSize == 0 {
		w.segSize = DefaultSegmentSize
	}
	if w.flushBytes <= 0 {
		w.flushBytes = defaultFlushBytes
	}
	if err := w.fs.MkdirAll(dir, 0o700); err != nil {
		return nil, State{}, fmt.Errorf("wal: create directory: %w", err)
	}
	lock, err := w.fs.Lock(filepath.Join(dir, lockName))
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return nil, State{}, err
		}
		return nil, State{}, fmt.Errorf("wal: lock directory %s: %w", dir, err)
	}
	w.lock = lock
	st, err := w.recover()
	if err != nil {
		if w.f != nil {
			w.f.Close()
		}
		lock.Close()
		return nil, State{}, err
	}
	return w, st, nil
}

// usable returns the error a write must return, if any.
func (w *WAL) usable() error {
	if w.isClosed {
		return ErrClosed
	}
	if w.err != nil {
		return fmt.Errorf("wal: unusable after an earlier failure, close and reopen it: %w", w.err)
	}
	return nil
}

// fail makes err sticky and returns it.
func (w *WAL) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// Append adds entries to the end of the log. entries[0].Index must be one
// more than the last index (after any TruncateFrom), and the indexes
// contiguous; otherwise Append returns an error and writes nothing. It
// copies the entries into its buffer and keeps no reference to them. It
// blocks on disk only when the buffer is full or a segment is full (then it
// fsyncs the full segment and creates the next one).
func (w *WAL) Append(entries []Entry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	if entries[0].Index != w.next {
		return fmt.Errorf("wal: Append: first index %d, want %d (one after the last index)", entries[0].Index, w.next)
	}
	for i := range entries {
		e := &entries[i]
		if e.Index != w.next+uint64(i) {
			return fmt.Errorf("wal: Append: entry %d has index %d, want %d (indexes must be contiguous)", i, e.Index, w.next+uint64(i))
		}
		if len(e.Data) > maxEntryDataSize {
			return fmt.Errorf("wal: Append: entry %d has %d bytes of data, more than the %d a record holds", e.Index, len(e.Data), maxEntryDataSize)
		}
	}
	for i := 0; i < len(entries); {
		first := recordSize(entriesHeaderSize + entryHeaderSize + len(entries[i].Data))
		if err := w.makeRoom(first); err != nil {
			return err
		}
		start := w.beginRecord()
		w.buf = binary.LittleEndian.AppendUint64(w.buf, entries[i].Index)
		w.buf = binary.LittleEndian.AppendUint32(w.buf, 0) // count, set below
		body, n := entriesHeaderSize, 0
		for ; i < len(entries); i++ {
			e := &entries[i]
			size := entryHeaderSize + len(e.Data)
			if n > 0 && (body+size > recordTarget || w.end()+recordSize(body+size)-int64(len(w.buf)-start) > w.segSize) {
				break
			}
			w.buf = binary.LittleEndian.AppendUint64(w.buf, e.Term)
			w.buf = append(w.buf, e.Type)
			w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(len(e.Data)))
			w.buf = append(w.buf, e.Data...)
			body += size
			n++
		}
		binary.LittleEndian.PutUint32(w.buf[start+headerSize+8:], uint32(n))
		w.endRecord(start, recEntries)
		w.next += uint64(n)
		w.activeMax = w.next - 1
		if err := w.maybeFlush(); err != nil {
			return err
		}
	}
	return nil
}

// TruncateFrom removes every entry with index >= index, by writing a
// truncate record that recovery applies. The next Append must start at
// index. Removing nothing (index beyond the last entry) writes nothing.
// index may be below the first index Open recovered (the log becomes
// empty and starts at index), but not below the compaction point: an index
// at or below the last Compact's empties the log, and the next Append
// starts after the compaction point.
func (w *WAL) TruncateFrom(index uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if index == 0 {
		return errors.New("wal: TruncateFrom: index 0")
	}
	// Entries at or below the compaction point are gone: truncating there
	// empties the log, which stays positioned after the compaction point.
	index = max(index, w.base+1)
	if index >= w.next {
		return nil
	}
	if err := w.makeRoom(recordSize(truncateSize)); err != nil {
		return err
	}
	start := w.beginRecord()
	w.buf = binary.LittleEndian.AppendUint64(w.buf, index)
	w.endRecord(start, recTruncate)
	w.next = index
	return w.maybeFlush()
}

// Compact records that the entries at or below index are no longer needed
// (a snapshot covers them), by writing a compact record that recovery
// applies: they are dropped from the recovered log, and if the log ends
// before index, the recovered log is empty and the next Append must start
// at index+1. Once the record is durable (at the next Sync), Sync deletes
// the segments all of whose entries are at or below index. An index at or
// below the compaction point writes nothing.
func (w *WAL) Compact(index uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if index <= w.base {
		return nil
	}
	if index == ^uint64(0) {
		return errors.New("wal: Compact: index out of range")
	}
	if err := w.makeRoom(recordSize(compactSize)); err != nil {
		return err
	}
	start := w.beginRecord()
	w.buf = binary.LittleEndian.AppendUint64(w.buf, index)
	w.endRecord(start, recCompact)
	w.base = index
	w.next = max(w.next, index+1)
	return w.maybeFlush()
}

// SetHardState records hs as the hard state. Writing the hard state already
// recorded writes nothing.
func (w *WAL) SetHardState(hs HardState) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if hs == w.hs {
		return nil
	}
	if err := w.makeRoom(recordSize(hardStateSize)); err != nil {
		return err
	}
	start := w.beginRecord()
	w.buf = binary.LittleEndian.AppendUint64(w.buf, hs.Term)
	w.buf = binary.LittleEndian.AppendUint64(w.buf, hs.Vote)
	w.buf = binary.LittleEndian.AppendUint64(w.buf, hs.Commit)
	w.endRecord(start, recHardState)
	w.hs = hs
	return w.maybeFlush()
}

// Sync makes every write before it durable: it writes the buffer and
// fsyncs the active segment once (segments closed since the last Sync were
// fsynced when they were closed). Then, the compaction point being
// durable, it deletes the closed segments whose entries all lie at or
// below it (as ReleaseBefore does). It returns at once if there is nothing
// to do. A failure is sticky, except that of removing a segment.
func (w *WAL) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.sync(); err != nil {
		return err
	}
	w.durableBase = w.base
	return w.releaseBefore(w.durableBase + 1)
}

func (w *WAL) sync() error {
	if err := w.flush(); err != nil {
		return err
	}
	if !w.dirty {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		return w.fail(fmt.Errorf("wal: fsync %s: %w", w.path, err))
	}
	w.dirty = false
	return nil
}

// ReleaseBefore deletes the oldest segments whose entries all have indexes
// below index, never the active segment, so that a later Open recovers the
// log from a later FirstIndex (but possibly still below index: segments are
// deleted whole). The caller must no longer need the entries below index,
// typically because a snapshot covers them. A segment counts every entry
// written to it, even one a later TruncateFrom removed. Each deletion is made durable
// (directory fsync) before the next, so a crash leaves a suffix of the
// segments.
func (w *WAL) ReleaseBefore(index uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	return w.releaseBefore(index)
}

func (w *WAL) releaseBefore(index uint64) error {
	for len(w.closed) > 0 && w.closed[0].maxIndex < index {
		path := w.closed[0].path
		if err := w.fs.Remove(path); err != nil {
			return fmt.Errorf("wal: ReleaseBefore: remove %s: %w", path, err)
		}
		w.closed = w.closed[1:]
		if err := w.fs.SyncDir(w.dir); err != nil {
			return w.fail(fmt.Errorf("wal: ReleaseBefore: fsync directory %s: %w", w.dir, err))
		}
		w.released++
		w.logger.Debug("wal: released segment", "file", path)
	}
	return nil
}

// Released returns how many segments this WAL has deleted since Open
// (by ReleaseBefore or by Sync after a Compact).
func (w *WAL) Released() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.released
}

// Close writes and fsyncs what is buffered (unless an earlier failure made
// the WAL unusable, whose error it then returns), closes the active segment
// and releases the directory lock. Later calls return nil; the other
// methods then return ErrClosed.
func (w *WAL) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.isClosed {
		return nil
	}
	err := w.usable()
	if err == nil {
		err = w.sync()
	}
	w.isClosed = true
	if w.f != nil {
		if cerr := w.f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("wal: close %s: %w", w.path, cerr)
		}
		w.f = nil
	}
	if cerr := w.lock.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("wal: release lock: %w", cerr)
	}
	w.buf = nil
	return err
}

// Abandon closes the WAL the way the death of its process (kill -9) would:
// the records buffered by Append, TruncateFrom and SetHardState and not
// yet written to the file are dropped, nothing is written or fsynced, the
// active segment is closed and the directory lock released. What was
// already written to the file system stays there, synced or not; whether
// a power loss then keeps the unsynced part is up to the file system. It
// returns how many buffered bytes it dropped. It is meant for tests of
// crash recovery. Later calls, and Close, return zero values; the other
// methods return ErrClosed.
func (w *WAL) Abandon() (dropped int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.isClosed {
		return 0
	}
	dropped = len(w.buf)
	w.isClosed = true
	if w.f != nil {
		w.f.Close() // a dying process does not see close errors either
		w.f = nil
	}
	w.lock.Close()
	w.buf = nil
	return dropped
}

// end is the offset in the active segment at which the next record goes.
func (w *WAL) end() int64 { return w.fileSize + int64(len(w.buf)) }

var zeroHeader [headerSize]byte

// beginRecord reserves a record header in the buffer and returns where the
// record starts in it. The caller appends the body, then calls endRecord.
func (w *WAL) beginRecord() int {
	start := len(w.buf)
	w.buf = append(w.buf, zeroHeader[:]...)
	return start
}

// endRecord pads the record that starts at buf[start] and fills in its
// header.
func (w *WAL) endRecord(start int, typ byte) {
	bodyLen := len(w.buf) - start - headerSize
	pad := int(recordSize(bodyLen)) - headerSize - bodyLen
	w.buf = append(w.buf, zeroHeader[:pad]...)
	sealRecord(w.buf[start:], typ, bodyLen, w.fileSize+int64(start))
}

// makeRoom rolls over to a new segment if a record of size bytes does not
// fit in the active one and the active one holds more than the records it
// was created with.
func (w *WAL) makeRoom(size int64) error {
	if w.end()+size <= w.segSize || w.end() <= w.segStart {
		return nil
	}
	return w.roll()
}

// maybeFlush writes the buffer to the file once it holds flushBytes.
func (w *WAL) maybeFlush() error {
	if len(w.buf) < w.flushBytes {
		return nil
	}
	return w.flush()
}

// flush writes the buffer to the active segment.
func (w *WAL) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	n, err := w.f.Write(w.buf)
	if n > 0 {
		w.dirty = true
	}
	if err == nil && n != len(w.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return w.fail(fmt.Errorf("wal: write %s: %w", w.path, err))
	}
	w.fileSize += int64(n)
	if cap(w.buf) > maxRetainedBuf {
		w.buf = nil
	} else {
		w.buf = w.buf[:0]
	}
	return nil
}

// roll closes the active segment, fsynced, and starts the next one.
func (w *WAL) roll() error {
	if err := w.sync(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		w.f = nil
		return w.fail(fmt.Errorf("wal: close %s: %w", w.path, err))
	}
	w.f = nil
	w.closed = append(w.closed, closedSeg{path: w.path, maxIndex: w.activeMax})
	return w.createSegment(w.seq + 1)
}

// createSegment makes segment seq, starting at w.next, the active one. The
// segment appears under its name only once its metadata record (followed by
// a compact record restating the compaction point, if any) is durable
// (written to a temporary file, fsynced, renamed, directory fsynced), so a
// segment file never lacks its metadata.
func (w *WAL) createSegment(seq uint64) error {
	path := filepath.Join(w.dir, segmentName(seq, w.next))
	tmp := path + tmpSuffix
	f, err := w.fs.OpenFile(tmp, osCreateFlags, 0o600)
	if err != nil {
		return w.fail(fmt.Errorf("wal: create segment %s: %w", tmp, err))
	}
	metaLen := recordSize(metaSize)
	size := metaLen
	if w.base > 0 {
		size += recordSize(compactSize)
	}
	rec := make([]byte, size)
	encodeMeta(rec[headerSize:], segMeta{
		version:    formatVersion,
		nodeID:     w.opts.NodeID,
		clusterID:  w.opts.ClusterID,
		seq:        seq,
		firstIndex: w.next,
		hardState:  w.hs,
	})
	sealRecord(rec, recMeta, metaSize, 0)
	if w.base > 0 {
		// Restate the compaction point, so that it survives the deletion
		// of the segment that recorded it, as the hard state does.
		binary.LittleEndian.PutUint64(rec[metaLen+headerSize:], w.base)
		sealRecord(rec[metaLen:], recCompact, compactSize, metaLen)
	}
	fail := func(what string, err error) error {
		f.Close()
		w.fs.Remove(tmp) // best effort; Open removes leftovers too
		return w.fail(fmt.Errorf("wal: create segment %s: %s: %w", path, what, err))
	}
	if n, err := f.Write(rec); err != nil || n != len(rec) {
		if err == nil {
			err = io.ErrShortWrite
		}
		return fail("write", err)
	}
	if err := f.Sync(); err != nil {
		return fail("fsync", err)
	}
	if err := w.fs.Rename(tmp, path); err != nil {
		return fail("rename", err)
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		f.Close()
		return w.fail(fmt.Errorf("wal: create segment %s: fsync directory: %w", path, err))
	}
	w.f, w.path, w.seq = f, path, seq
	w.fileSize, w.segStart, w.dirty, w.activeMax = int64(len(rec)), int64(len(rec)), false, 0
	w.logger.Debug("wal: new segment", "file", path, "index", w.next)
	return nil
}
