package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const (
	segmentSuffix = ".wal"
	tmpSuffix     = ".tmp" // after segmentSuffix: a segment being created
	osCreateFlags = os.O_RDWR | os.O_CREATE | os.O_TRUNC | os.O_APPEND
)

// segName is a segment file name parsed.
type segName struct {
	name  string
	seq   uint64
	first uint64
}

// parseSegmentName parses "%016x-%016x.wal".
func parseSegmentName(name string) (segName, bool) {
	base, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(base) != 33 || base[16] != '-' {
		return segName{}, false
	}
	seq, err1 := strconv.ParseUint(base[:16], 16, 64)
	first, err2 := strconv.ParseUint(base[17:], 16, 64)
	if err1 != nil || err2 != nil || segmentName(seq, first) != name {
		return segName{}, false
	}
	return segName{name: name, seq: seq, first: first}, true
}

// replay is the log being rebuilt from records. It applies records exactly
// as the WAL's writes changed its own counters, so that what Open returns
// is what the writes described.
type replay struct {
	hs    HardState
	first uint64 // index of ents[0], or the next index when ents is empty
	ents  []Entry
	base  uint64 // largest index of a compact record replayed, 0 if none
}

func (r *replay) next() uint64 { return r.first + uint64(len(r.ents)) }

// apply applies one record (not a metadata record) and returns the largest
// entry index it added, or why the record cannot be applied.
func (r *replay) apply(typ byte, body []byte) (maxIndex uint64, bad string) {
	switch typ {
	case recEntries:
		ents, bad := decodeEntries(r.ents, body, r.next())
		if bad != "" {
			return 0, bad
		}
		r.ents = ents
		return r.next() - 1, ""
	case recHardState:
		if len(body) != hardStateSize {
			return 0, "hard state record of the wrong size"
		}
		r.hs = decodeHardState(body)
	case recTruncate:
		if len(body) != truncateSize {
			return 0, "truncate record of the wrong size"
		}
		index := binary.LittleEndian.Uint64(body)
		if index == 0 || index >= r.next() {
			return 0, fmt.Sprintf("truncate record at index %d, beyond the last index %d", index, r.next()-1)
		}
		if index <= r.base {
			return 0, fmt.Sprintf("truncate record at index %d, at or below the compaction point %d", index, r.base)
		}
		if index >= r.first {
			r.ents = r.ents[:index-r.first]
		} else {
			r.ents, r.first = nil, index
		}
	case recCompact:
		if len(body) != compactSize {
			return 0, "compact record of the wrong size"
		}
		index := binary.LittleEndian.Uint64(body)
		if index == 0 || index == ^uint64(0) {
			return 0, fmt.Sprintf("compact record at index %d", index)
		}
		r.compact(index)
	default:
		return 0, fmt.Sprintf("unexpected record type %d", typ)
	}
	return 0, ""
}

// compact drops the entries at or below index; if the log ends before
// index, it becomes empty and positioned after index. A compact record at
// or below the first index replayed (its entries were in segments that
// were released) changes nothing but base.
func (r *replay) compact(index uint64) {
	r.base = max(r.base, index)
	switch {
	case index < r.first:
	case index < r.next():
		k := index - r.first + 1
		clear(r.ents[:k]) // let the dropped entries' data go
		r.ents = r.ents[k:]
		r.first = index + 1
	default:
		r.ents, r.first = nil, index+1
	}
}

// readFile reads a whole segment.
func (w *WAL) readFile(path string) ([]byte, error) {
	f, err := w.fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("wal: stat %s: %w", path, err)
	}
	size := fi.Size()
	if size < 0 || int64(int(size)) != size {
		return nil, fmt.Errorf("wal: %s: size %d out of range", path, size)
	}
	data := make([]byte, size)
	n, err := f.ReadAt(data, 0)
	if n == len(data) {
		err = nil
	} else if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // the file shrank under us
	}
	if err != nil {
		return nil, fmt.Errorf("wal: read %s: %w", path, err)
	}
	return data, nil
}

// recover reads the directory, validates and replays every segment, and
// only then repairs what needs repair (a torn tail, leftover temporary
// files) and opens the last segment for appending. It sets up w.
func (w *WAL) recover() (State, error) {
	names, err := w.fs.ReadDir(w.dir)
	if err != nil {
		return State{}, fmt.Errorf("wal: read directory %s: %w", w.dir, err)
	}
	var segs []segName
	var tmps []string
	for _, name := range names {
		if s, ok := parseSegmentName(name); ok {
			segs = append(segs, s)
		} else if strings.HasSuffix(name, segmentSuffix+tmpSuffix) {
			tmps = append(tmps, name)
		}
	}
	slices.SortFunc(segs, func(a, b segName) int {
		if a.seq != b.seq {
			if a.seq < b.seq {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})

	if len(segs) == 0 {
		return w.create(tmps)
	}

	var r replay
	var closed []closedSeg
	var maxIndex uint64
	last := len(segs) - 1
	tornAt, tornReason := int64(-1), ""
	var lastSize, segStart int64
	for i, s := range segs {
		path := filepath.Join(w.dir, s.name)
		if i > 0 && s.seq != segs[i-1].seq+1 {
			if s.seq == segs[i-1].seq {
				return State{}, corrupt(w.dir, -1, "two segments with sequence number %d: %s and %s", s.seq, segs[i-1].name, s.name)
			}
			return State{}, corrupt(w.dir, -1, "missing segment: %s follows %s", s.name, segs[i-1].name)
		}
		data, err := w.readFile(path)
		if err != nil {
			return State{}, err
		}
		typ, body, size, bad := readRecord(data, 0)
		if bad == "" && typ != recMeta {
			bad = "first record is not a metadata record"
		}
		if bad != "" {
			return State{}, corrupt(path, 0, "%s", bad)
		}
		m, bad := decodeMeta(body)
		if bad != "" {
			return State{}, corrupt(path, 0, "%s", bad)
		}
		if m.nodeID != w.opts.NodeID || m.clusterID != w.opts.ClusterID {
			return State{}, fmt.Errorf("%w: %s was written by node %d of cluster %d, not node %d of cluster %d",
				ErrMismatch, path, m.nodeID, m.clusterID, w.opts.NodeID, w.opts.ClusterID)
		}
		if m.seq != s.seq || m.firstIndex != s.first {
			return State{}, corrupt(path, 0, "metadata says segment %d from index %d, unlike the file name", m.seq, m.firstIndex)
		}
		if i == 0 {
			r.first, r.hs = m.firstIndex, m.hardState
		} else {
			if m.firstIndex != r.next() {
				return State{}, corrupt(path, 0, "segment starts at index %d but the log before it ends at %d", m.firstIndex, r.next()-1)
			}
			if m.hardState != r.hs {
				return State{}, corrupt(path, 0, "segment's hard state %+v differs from the log's %+v", m.hardState, r.hs)
			}
		}
		maxIndex = 0
		off := size
		segStart = size
		for off < int64(len(data)) {
			typ, body, size, bad := readRecord(data, off)
			if bad == "" && typ == recMeta {
				bad = "metadata record after the start of the segment"
			}
			if bad != "" {
				if i != last {
					return State{}, corrupt(path, off, "%s (not the last segment)", bad)
				}
				if p := nextValidRecord(data, off); p >= 0 {
					return State{}, corrupt(path, off, "%s, and a valid record follows at offset %d", bad, p)
				}
				tornAt, tornReason = off, bad
				break
			}
			mi, bad := r.apply(typ, body)
			if bad != "" {
				return State{}, corrupt(path, off, "%s", bad)
			}
			maxIndex = max(maxIndex, mi)
			if off == segStart && typ == recCompact {
				segStart += size // the compaction point restated at creation
			}
			off += size
		}
		if i != last {
			closed = append(closed, closedSeg{path: path, maxIndex: maxIndex})
		}
		lastSize = int64(len(data))
	}

	// Everything is validated; from here on we write.
	s := segs[last]
	path := filepath.Join(w.dir, s.name)
	f, err := w.fs.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return State{}, fmt.Errorf("wal: open %s: %w", path, err)
	}
	w.f = f
	if tornAt >= 0 {
		if err := f.Truncate(tornAt); err != nil {
			return State{}, fmt.Errorf("wal: cut torn tail of %s at offset %d: %w", path, tornAt, err)
		}
		w.logger.Warn("wal: cut a torn or damaged record at the end of the log",
			"file", path, "offset", tornAt, "bytes", lastSize-tornAt, "reason", tornReason)
		lastSize = tornAt
	}
	// What Open returns must be durable, as the caller will act on it: the
	// last segment may hold writes that reached the file but no fsync
	// before a process crash, and its directory entry may not be durable
	// if the process died between creating it and fsyncing the directory.
	// (Earlier segments were fsynced before the next one was created.)
	if err := f.Sync(); err != nil {
		return State{}, fmt.Errorf("wal: fsync %s: %w", path, err)
	}
	if err := w.removeTmps(tmps); err != nil {
		return State{}, err
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		return State{}, fmt.Errorf("wal: fsync directory %s: %w", w.dir, err)
	}
	w.path, w.seq, w.fileSize, w.segStart = path, s.seq, lastSize, min(segStart, lastSize)
	w.activeMax, w.closed = maxIndex, closed
	w.next, w.hs = r.next(), r.hs
	w.base, w.durableBase = r.base, r.base
	if len(r.ents) == 0 {
		r.ents = nil
	}
	return State{HardState: r.hs, FirstIndex: r.first, Entries: r.ents}, nil
}

// create sets up an empty WAL in a directory that has no segment.
func (w *WAL) create(tmps []string) (State, error) {
	if err := w.removeTmps(tmps); err != nil {
		return State{}, err
	}
	w.next = 1
	if err := w.createSegment(0); err != nil {
		return State{}, err
	}
	// Make the directory itself durable in its parent, in case Open just
	// created it.
	if parent := filepath.Dir(w.dir); parent != w.dir {
		if err := w.fs.SyncDir(parent); err != nil {
			return State{}, fmt.Errorf("wal: fsync directory %s: %w", parent, err)
		}
	}
	return State{FirstIndex: 1}, nil
}

// removeTmps removes the temporary files of interrupted segment creations.
// The removals are durable once the directory is fsynced.
func (w *WAL) removeTmps(tmps []string) error {
	if len(tmps) == 0 {
		return nil
	}
	for _, name := range tmps {
		if err := w.fs.Remove(filepath.Join(w.dir, name)); err != nil {
			return fmt.Errorf("wal: remove leftover %s: %w", name, err)
		}
	}
	return nil // the caller fsyncs the directory
}
