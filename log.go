package raft

import "fmt"

// raftLog is a node's copy of the replicated log, with the positions the
// protocol and the runtime track in it.
//
// Layout: entries[0] is a sentinel holding the index and term of the last
// entry covered by a snapshot (0 and 0 before any), and entries[i].Index ==
// offset+i for every i. Compaction moves offset forward; the entries at or
// below it exist only in a snapshot.
//
// Invariant: offset <= applied <= committed <= lastIndex().
// Invariant: durable <= lastIndex(), and every entry at or below durable was
// covered by a completed Persister.Sync with the term it has now, or by a
// committed snapshot.
// Invariant: persisted < unstable <= lastIndex()+1 where persisted is the last
// index handed to the Persister; entries from unstable on have not yet been
// handed to it.
// Invariant: the entries array is never written in place below its length:
// messages and persist batches share it (slice caps their capacity), so
// truncation and compaction always move to a new array.
type raftLog struct {
	entries []Entry
	offset  uint64

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
func newRaftLog(snap SnapshotMeta, ents []Entry, commit uint64) (*raftLog, error) {
	l := &raftLog{entries: make([]Entry, 1, len(ents)+1), offset: snap.Index}
	l.entries[0] = Entry{Index: snap.Index, Term: snap.Term}
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
	l.entries = append(l.entries, ents...)
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
	return SnapshotMeta{Index: l.offset, Term: l.entries[0].Term}
}

func (l *raftLog) lastIndex() uint64 { return l.offset + uint64(len(l.entries)) - 1 }
func (l *raftLog) lastTerm() uint64  { return l.entries[len(l.entries)-1].Term }

// term returns the term of the entry at index i, and false if the log does
// not hold i.
func (l *raftLog) term(i uint64) (uint64, bool) {
	if i < l.offset || i > l.lastIndex() {
		return 0, false
	}
	return l.entries[i-l.offset].Term, true
}

func (l *raftLog) matchTerm(i, term uint64) bool {
	t, ok := l.term(i)
	return ok && t == term
}

// at returns the entry at index i, which must be in the log.
func (l *raftLog) at(i uint64) *Entry { return &l.entries[i-l.offset] }

// isUpToDate reports whether a log ending at (lastIndex, lastTerm) is at least
// as up-to-date as ours (paper §5.4.1): a later last term wins, and with equal
// last terms the longer log wins.
func (l *raftLog) isUpToDate(lastIndex, lastTerm uint64) bool {
	return lastTerm > l.lastTerm() || (lastTerm == l.lastTerm() && lastIndex >= l.lastIndex())
}

// slice returns the entries in [lo, hi) but stops once they total more than
// maxBytes (it always returns at least one entry when lo < hi). The result
// shares the log's array; callers must not modify it.
func (l *raftLog) slice(lo, hi uint64, maxBytes int) []Entry {
	if lo >= hi {
		return nil
	}
	ents := l.entries[lo-l.offset : hi-l.offset]
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
	l.entries = appendEntries(l.entries, ents)
}

// appendEntries is append for a log's entries, but it doubles the array
// when it is full: append grows a large slice by about a quarter, so a long
// log would be copied over and over (memmove was a third of the CPU of a
// busy leader). The old array is left as it is, valid for whoever shares it.
func appendEntries(log, ents []Entry) []Entry {
	if need := len(log) + len(ents); need > cap(log) {
		grown := make([]Entry, len(log), max(2*cap(log), need, 64))
		copy(grown, log)
		log = grown
	}
	return append(log, ents...)
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
		n := from - l.offset
		l.entries = l.entries[:n:n]
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
	// A new array, never a write into the old one (see the type's comment);
	// the sentinel keeps only the position, not the command.
	keep := l.entries[index-l.offset:]
	ents := make([]Entry, 1, len(keep)+max(len(keep), 64))
	ents[0] = Entry{Index: index, Term: keep[0].Term}
	l.entries = append(ents, keep[1:]...)
	l.offset = index
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
		l.entries = []Entry{{Index: snap.Index, Term: snap.Term}}
		l.offset = snap.Index
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
	case l.entries[0].Index != l.offset:
		return fmt.Errorf("log: sentinel index %d != offset %d", l.entries[0].Index, l.offset)
	case l.applied > l.committed:
		return fmt.Errorf("log: applied %d > committed %d", l.applied, l.committed)
	case l.committed > last:
		return fmt.Errorf("log: committed %d > last index %d", l.committed, last)
	case l.durable > last:
		return fmt.Errorf("log: durable %d > last index %d", l.durable, last)
	case l.unstable > last+1:
		return fmt.Errorf("log: unstable %d > last index %d + 1", l.unstable, last)
	}
	for i := max(1, int(from-l.offset)); i < len(l.entries); i++ {
		if l.entries[i].Index != l.entries[i-1].Index+1 || l.entries[i].Term < l.entries[i-1].Term {
			return fmt.Errorf("log: entry %d (index %d term %d) does not follow index %d term %d",
				i, l.entries[i].Index, l.entries[i].Term, l.entries[i-1].Index, l.entries[i-1].Term)
		}
	}
	return nil
}
