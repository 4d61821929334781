package raft

import "fmt"

// raftLog is a node's copy of the replicated log, with the positions the
// protocol and the runtime track in it.
//
// Layout: offset and snapTerm are the index and term of the last entry
// covered by a snapshot (0 and 0 before any); the entries after it, up to
// last, are held in chunks of 1<<chunkBits entries (logChunkBits but in
// the simulator): the entry at index i is chunks[p>>chunkBits][p&mask] with
// p = i-first. Every chunk but the last is full. Compaction moves offset
// forward and drops whole chunks; the entries at or below offset exist only
// in a snapshot.
//
// Why chunks, not one array: appending to one array copies the whole log
// each time it outgrows its capacity, and the old array cannot be reused
// (see the last invariant); on a busy leader those copies and the garbage
// they made were a fifth of its CPU. A chunk, once allocated, is only ever
// appended to.
//
// Invariant: offset <= applied <= committed <= lastIndex().
// Invariant: durable <= lastIndex(), and every entry at or below durable was
// covered by a completed Persister.Sync with the term it has now, or by a
// committed snapshot.
// Invariant: persisted < unstable <= lastIndex()+1 where persisted is the last
// index handed to the Persister; entries from unstable on have not yet been
// handed to it.
// Invariant: a chunk is never written in place below its length: messages
// and persist batches share it (slice caps their capacity), so truncation
// and compaction always move to a new array.
type raftLog struct {
	chunkBits uint // a chunk holds 1<<chunkBits entries
	chunks    [][]Entry
	first     uint64 // index of chunks[0][0]; meaningless while chunks is empty
	offset    uint64
	snapTerm  uint64
	last      uint64

	committed uint64 // highest index known committed (Figure 2 commitIndex)
	applied   uint64 // highest index handed to the runtime for delivery (lastApplied)
	durable   uint64 // highest index known durable on this node

	// unstable is the first index not yet handed to the Persister.
	unstable uint64
	// truncateFrom, when nonzero, is the lowest index at which entries already
	// handed to the Persister were replaced; the next persist batch must
	// truncate there before appending.
	truncateFrom uint64
	// compactTo, when nonzero, is the index up to which the next persist
	// batch must compact the Persister's log (after truncating, before
	// appending).
	compactTo uint64
	// replacedFrom, when nonzero, is the lowest index at which any entry was
	// replaced since the runtime last asked (see core.takeReplaced).
	replacedFrom uint64

	// bugTruncateOnStaleAppend plants pitfall 2 for the simulator's tests
	// (see plantedBugs); always false in a Node.
	bugTruncateOnStaleAppend bool
}

// newRaftLog builds the log from a Persister's state: the snapshot's position
// and the entries that follow it.
// chunkBits 0 means logChunkBits.
func newRaftLog(snap SnapshotMeta, ents []Entry, commit uint64, chunkBits uint) (*raftLog, error) {
	if chunkBits == 0 {
		chunkBits = logChunkBits
	}
	l := &raftLog{chunkBits: chunkBits, offset: snap.Index, snapTerm: snap.Term, last: snap.Index}
	for i, e := range ents {
		// Gateway check: the Persister's data must be contiguous from the
		// snapshot with non-decreasing terms; past this point the code
		// assumes it.
		if want := snap.Index + uint64(i) + 1; e.Index != want {
			return nil, fmt.Errorf("raft: %w: loaded entry %d has index %d, want %d", ErrCorrupt, i, e.Index, want)
		}
		prev := snap.Term
		if i > 0 {
			prev = ents[i-1].Term
		}
		if e.Term < prev {
			return nil, fmt.Errorf("raft: %w: loaded entry %d has term %d after term %d", ErrCorrupt, e.Index, e.Term, prev)
		}
	}
	l.append(ents...)
	last := l.lastIndex()
	// Deviation from Figure 2 (commitIndex is volatile there): we persist the
	// commit index lazily so a restarted node can apply at once; it is only a
	// lower bound of the real one and is clamped to the log we actually hold.
	// A snapshot holds only committed entries, so it is a lower bound too.
	l.committed = min(max(commit, snap.Index), last)
	l.applied = snap.Index // the runtime delivers the snapshot first
	l.durable = last
	l.unstable = last + 1
	if snap.Index > 0 {
		// The Persister's log may still hold what the snapshot replaced: a
		// crash can come between committing a snapshot and the batch that
		// truncates and compacts the log behind it, and Load then drops,
		// in what it returns only, a log that does not lead to the
		// snapshot. Reconcile the Persister in the first batch, before
		// anything is appended after the snapshot: compact to it, and if
		// no entry followed it, truncate whatever remains.
		l.compactTo = snap.Index
		if len(ents) == 0 {
			l.truncateFrom = 1
		}
	}
	return l, nil
}

// snapshot returns the position of the last entry covered by a snapshot.
func (l *raftLog) snapshot() SnapshotMeta {
	return SnapshotMeta{Index: l.offset, Term: l.snapTerm}
}

// logChunkBits sets the number of entries in a full chunk, 4096: large
// enough that a message or persist batch seldom ends early at a chunk's end,
// small enough (192 KiB) not to matter to a node with a short log. The
// first chunk of a log starts small and doubles up to it. The simulator uses
// tiny chunks, so that its logs cross many chunk boundaries.
const logChunkBits = 12

// chunk returns the number of entries in a full chunk.
func (l *raftLog) chunk() uint64 { return 1 << l.chunkBits }

func (l *raftLog) lastIndex() uint64 { return l.last }
func (l *raftLog) lastTerm() uint64 {
	t, _ := l.term(l.last)
	return t
}

// term returns the term of the entry at index i, and false if the log does
// not hold i (the snapshot's last entry counts as held).
func (l *raftLog) term(i uint64) (uint64, bool) {
	if i < l.offset || i > l.last {
		return 0, false
	}
	if i == l.offset {
		return l.snapTerm, true
	}
	return l.at(i).Term, true
}

func (l *raftLog) matchTerm(i, term uint64) bool {
	t, ok := l.term(i)
	return ok && t == term
}

// at returns the entry at index i, which must be in the log and above
// offset.
func (l *raftLog) at(i uint64) *Entry {
	p := i - l.first
	return &l.chunks[p>>l.chunkBits][p&(l.chunk()-1)]
}

// isUpToDate reports whether a log ending at (lastIndex, lastTerm) is at least
// as up-to-date as ours (paper §5.4.1): a later last term wins, and with equal
// last terms the longer log wins.
func (l *raftLog) isUpToDate(lastIndex, lastTerm uint64) bool {
	return lastTerm > l.lastTerm() || (lastTerm == l.lastTerm() && lastIndex >= l.lastIndex())
}

// slice returns the entries in [lo, hi) but stops at the end of a chunk,
// or once they total more than maxBytes (it always returns at least one entry
// when lo < hi). The result shares the log's array; callers must not modify
// it. offset < lo and hi <= lastIndex()+1.
func (l *raftLog) slice(lo, hi uint64, maxBytes int) []Entry {
	if lo >= hi {
		return nil
	}
	p := lo - l.first
	chunk := l.chunks[p>>l.chunkBits]
	from := p & (l.chunk() - 1)
	ents := chunk[from:min(uint64(len(chunk)), from+hi-lo)]
	size := 0
	for i := range ents {
		size += len(ents[i].Data)
		if size > maxBytes && i > 0 {
			ents = ents[:i]
			break
		}
	}
	// Cap the capacity: an append by the receiver must never write into our
	// array.
	return ents[:len(ents):len(ents)]
}

// append adds entries at the end of the log. The caller has checked that they
// follow lastIndex.
func (l *raftLog) append(ents ...Entry) {
	if len(ents) == 0 {
		return
	}
	if len(l.chunks) == 0 {
		l.first = l.last + 1
	}
	l.last += uint64(len(ents))
	for len(ents) > 0 {
		k := len(l.chunks) - 1
		if k < 0 || uint64(len(l.chunks[k])) == l.chunk() {
			l.chunks = append(l.chunks, nil)
			k++
		}
		c := l.chunks[k]
		n := min(len(ents), int(l.chunk())-len(c))
		if len(c)+n > cap(c) {
			// Only a log's first chunk grows (new ones start full size):
			// into a new array, leaving the old one to whoever shares it.
			size := int(l.chunk())
			if k == 0 {
				size = min(max(2*cap(c), len(c)+n, 64), size)
			}
			grown := make([]Entry, len(c), size)
			copy(grown, c)
			c = grown
		}
		l.chunks[k] = append(c, ents[:n]...)
		ents = ents[n:]
	}
}

// dropChunks lets go of every chunk (the entries' last index is the
// caller's to set).
func (l *raftLog) dropChunks() {
	clear(l.chunks)
	l.chunks = l.chunks[:0]
}

// cutAfter drops every entry after index i (offset <= i < last). The chunk
// holding i is copied: its array is shared.
func (l *raftLog) cutAfter(i uint64) {
	l.last = i
	if i == l.offset {
		l.dropChunks()
		return
	}
	p := i + 1 - l.first // position of the first entry dropped
	k, keep := p>>l.chunkBits, p&(l.chunk()-1)
	if keep == 0 {
		clear(l.chunks[k:])
		l.chunks = l.chunks[:k]
		return
	}
	c := make([]Entry, keep, max(cap(l.chunks[k]), int(keep)))
	copy(c, l.chunks[k])
	clear(l.chunks[k:])
	l.chunks = l.chunks[:k+1]
	l.chunks[k] = c
}

// truncateAndAppend replaces every entry from ents[0].Index on by ents. It is
// called only at a real conflict (see maybeAppend); truncating a committed
// entry would violate State Machine Safety and is refused by the caller.
func (l *raftLog) truncateAndAppend(ents []Entry) {
	from := ents[0].Index
	if from <= l.lastIndex() {
		// Capacity is cut so the append below reallocates: messages already
		// sent and batches handed to the Persister still share the old array
		// and must not see it change.
		l.cutAfter(from - 1)
		if l.replacedFrom == 0 || from < l.replacedFrom {
			l.replacedFrom = from
		}
		if from < l.unstable {
			if l.truncateFrom == 0 || from < l.truncateFrom {
				l.truncateFrom = from
			}
			l.unstable = from
		}
		l.durable = min(l.durable, from-1)
	}
	l.append(ents...)
}

// compact drops the entries below index from memory, making index the new
// sentinel, and asks the next persist batch to compact the Persister's log
// to index. The caller has made sure that a committed snapshot covers index
// and that offset < index <= applied.
func (l *raftLog) compact(index uint64) {
	l.snapTerm, _ = l.term(index)
	l.offset = index
	if index == l.last {
		l.dropChunks()
	} else {
		// Drop the chunks that hold only compacted entries, and copy the
		// first one left without them, so that their commands can be
		// freed (a copy: the old array is shared, see the type's comment).
		p := index + 1 - l.first
		k := p >> l.chunkBits
		clear(l.chunks[:k])
		l.chunks = l.chunks[k:]
		l.first += k << l.chunkBits
		if dead := p & (l.chunk() - 1); dead > 0 {
			old := l.chunks[0]
			c := make([]Entry, len(old), cap(old))
			copy(c[dead:], old[dead:])
			l.chunks[0] = c
		}
	}
	l.compactTo = index
	l.unstable = max(l.unstable, index+1)
	// A pending truncation is written before the compaction, and entries
	// at or below index it would have replaced are covered by the
	// snapshot: both stay as they are.
	l.durable = max(l.durable, index)
}

// restore replaces the log by a snapshot received from the leader, which
// covers more than this log has committed (paper §7, receiver steps 6-8): if
// the log holds the snapshot's last entry with its term, the entries after
// it stay; otherwise the whole log goes. The commit and applied indexes
// move to the snapshot's.
func (l *raftLog) restore(snap SnapshotMeta) {
	if l.matchTerm(snap.Index, snap.Term) {
		l.compact(snap.Index)
	} else {
		// Nothing of the log survives: the Persister drops what it holds
		// from the first index it may have been given on (truncate), then
		// records the snapshot's position (compact).
		if l.unstable > l.offset+1 {
			from := l.offset + 1
			if l.truncateFrom == 0 || from < l.truncateFrom {
				l.truncateFrom = from
			}
		}
		if l.lastIndex() > l.committed {
			from := l.committed + 1
			if l.replacedFrom == 0 || from < l.replacedFrom {
				l.replacedFrom = from
			}
		}
		l.dropChunks()
		l.offset, l.snapTerm, l.last = snap.Index, snap.Term, snap.Index
		l.compactTo = snap.Index
		l.unstable = snap.Index + 1
		l.durable = snap.Index
	}
	l.committed = snap.Index
	l.applied = snap.Index
}

// maybeAppend is the follower's side of AppendEntries (Figure 2, receiver
// implementation, steps 2-4). It returns the index of the last entry the
// message covers and true if the log matched at (prevIndex, prevTerm).
//
// Entries the log already holds with the same term are left alone; only at the
// first index whose term really differs is the suffix cut. A stale, duplicated
// or reordered message whose entries all match therefore changes nothing
// (pitfall 2), and the returned index is prevIndex+len(ents), not our last
// index: entries past what the message covers may not match the leader.
func (l *raftLog) maybeAppend(prevIndex, prevTerm uint64, ents []Entry) (lastNew uint64, ok bool, err error) {
	if !l.matchTerm(prevIndex, prevTerm) {
		return 0, false, nil
	}
	lastNew = prevIndex + uint64(len(ents))
	if l.bugTruncateOnStaleAppend && len(ents) > 0 && ents[0].Index > l.committed {
		l.truncateAndAppend(ents) // planted bug: cut the suffix even where it matches
		return lastNew, true, nil
	}
	// The caller has validated ents (validateAppend): contiguous from
	// prevIndex+1, terms non-decreasing.
	for i := range ents {
		e := &ents[i]
		t, held := l.term(e.Index)
		if held && t == e.Term {
			continue
		}
		if held && e.Index <= l.committed {
			return 0, false, fmt.Errorf("raft: MsgApp conflicts with committed entry %d (term %d, message term %d)", e.Index, t, e.Term)
		}
		l.truncateAndAppend(ents[i:])
		break
	}
	return lastNew, true, nil
}

// conflictHint returns the hint a follower sends with a rejection of
// prevIndex: the term of its entry there (zero if it has none) and the first
// index it holds of that term (or lastIndex+1). The leader can then skip a
// whole term per round trip instead of one entry.
func (l *raftLog) conflictHint(prevIndex uint64) (index, term uint64) {
	if prevIndex > l.lastIndex() {
		return l.lastIndex() + 1, 0
	}
	term, _ = l.term(prevIndex)
	index = prevIndex
	for index > l.offset+1 {
		if t, _ := l.term(index - 1); t != term {
			break
		}
		index--
	}
	return index, term
}

// lastIndexOfTerm returns the highest index at or below hi whose entry has the
// given term, or 0 if there is none. Terms never decrease along the log, so
// the scan stops as soon as it passes below term.
func (l *raftLog) lastIndexOfTerm(term, hi uint64) uint64 {
	for i := min(hi, l.lastIndex()); i > l.offset; i-- {
		t, _ := l.term(i)
		if t == term {
			return i
		}
		if t < term {
			return 0
		}
	}
	return 0
}

// commitTo raises the commit index; it never lowers it.
func (l *raftLog) commitTo(i uint64) {
	if i > l.committed {
		if i > l.lastIndex() {
			panic(fmt.Sprintf("raft: invariant committed <= lastIndex broken: commit %d, last %d", i, l.lastIndex()))
		}
		l.committed = i
	}
}

// stableTo records that the Persister has made the log durable up to index i
// as of when its entry had term t. If the entry at i has since been replaced
// (another term), the acknowledgement is for a different entry and is ignored
// (pitfall 5: acknowledge durability by index and term, not index alone).
func (l *raftLog) stableTo(i, t uint64) {
	if i > l.durable && l.matchTerm(i, t) {
		l.durable = i
	}
}

// nextApply returns the committed entries not yet handed out for delivery, at
// most maxBytes of them (at least one), and marks them handed out.
func (l *raftLog) nextApply(maxBytes int) []Entry {
	ents := l.slice(l.applied+1, l.committed+1, maxBytes)
	if n := len(ents); n > 0 {
		l.applied = ents[n-1].Index
	}
	return ents
}

// hasUnstable reports whether anything must be handed to the Persister.
func (l *raftLog) hasUnstable() bool {
	return l.truncateFrom != 0 || l.compactTo != 0 || l.unstable <= l.lastIndex()
}

// takeUnstable returns what the next persist batch must do to the log:
// truncate from an index (0 for none), compact up to an index (0 for none),
// then append ents.
func (l *raftLog) takeUnstable() (truncateFrom, compactTo uint64, ents []Entry) {
	truncateFrom, compactTo = l.truncateFrom, l.compactTo
	ents = l.slice(l.unstable, l.lastIndex()+1, int(^uint(0)>>1))
	if n := uint64(len(ents)); n > 0 && l.unstable+n <= l.lastIndex() {
		// The batch crosses a chunk's end: one array for all of it, a
		// copy the Persister may keep.
		all := make([]Entry, 0, l.lastIndex()+1-l.unstable)
		for lo := l.unstable; lo <= l.lastIndex(); lo += uint64(len(ents)) {
			ents = l.slice(lo, l.lastIndex()+1, int(^uint(0)>>1))
			all = append(all, ents...)
		}
		ents = all
	}
	l.truncateFrom, l.compactTo = 0, 0
	l.unstable = l.lastIndex() + 1
	return truncateFrom, compactTo, ents
}

// checkInvariants returns an error naming the first broken invariant.
func (l *raftLog) checkInvariants() error { return l.checkInvariantsFrom(l.offset + 1) }

// checkInvariantsFrom is checkInvariants with the entry-by-entry scan
// starting at index from: the simulator checks after every event only the
// part of the log that changed.
func (l *raftLog) checkInvariantsFrom(from uint64) error {
	last := l.lastIndex()
	switch {
	case l.offset > l.applied:
		return fmt.Errorf("log: offset %d > applied %d", l.offset, l.applied)
	case l.last < l.offset:
		return fmt.Errorf("log: last index %d < offset %d", l.last, l.offset)
	case len(l.chunks) > 0 && (l.first > l.offset+1 || l.first+uint64(len(l.chunks)-1)*l.chunk()+uint64(len(l.chunks[len(l.chunks)-1]))-1 != l.last):
		return fmt.Errorf("log: chunks from %d do not end at last index %d", l.first, l.last)
	case len(l.chunks) == 0 && l.last != l.offset:
		return fmt.Errorf("log: no chunks but last index %d > offset %d", l.last, l.offset)
	case l.applied > l.committed:
		return fmt.Errorf("log: applied %d > committed %d", l.applied, l.committed)
	case l.committed > last:
		return fmt.Errorf("log: committed %d > last index %d", l.committed, last)
	case l.durable > last:
		return fmt.Errorf("log: durable %d > last index %d", l.durable, last)
	case l.unstable > last+1:
		return fmt.Errorf("log: unstable %d > last index %d + 1", l.unstable, last)
	}
	for k := 0; k+1 < len(l.chunks); k++ {
		if uint64(len(l.chunks[k])) != l.chunk() {
			return fmt.Errorf("log: chunk %d of %d holds %d entries", k, len(l.chunks), len(l.chunks[k]))
		}
	}
	prevIndex, prevTerm := l.offset, l.snapTerm
	for i := max(from, l.offset+1); i <= last; i++ {
		if i > l.offset+1 {
			prevIndex = i - 1
			prevTerm = l.at(i - 1).Term
		}
		if e := l.at(i); e.Index != prevIndex+1 || e.Term < prevTerm {
			return fmt.Errorf("log: entry at %d (index %d term %d) does not follow index %d term %d",
				i, e.Index, e.Term, prevIndex, prevTerm)
		}
	}
	return nil
}
