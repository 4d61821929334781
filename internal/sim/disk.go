package sim

import (
	"fmt"

	"github.com/raftkit/raft/internal/simcore"
)

// disk models a node's storage as the Persister contract describes it: a
// log and a hard state, whose writes land in order and count only once a
// Sync covered them (a crash keeps an arbitrary prefix of the others), and
// the newest committed snapshot, durable as soon as it is committed.
type disk struct {
	hs      simcore.HardState
	base    uint64          // the log's entries at or below base were compacted away
	entries []simcore.Entry // entries[i].Index == base+1+i
	snap    diskSnapshot
	// unsynced are the log writes issued and not yet covered by a Sync.
	unsynced []diskWrite
	// err is the first write that broke the Persister contract (an append
	// that does not follow the log): the core handed out a bad batch.
	err error
}

// diskSnapshot is a committed snapshot: the state machine's state at
// meta.Index, as its Snapshot encoded it.
type diskSnapshot struct {
	meta simcore.SnapshotMeta
	data []byte // never modified
}

type diskWrite struct {
	truncateFrom uint64
	compactTo    uint64
	entry        *simcore.Entry
	hs           *simcore.HardState
}

// last returns the index of the log's last entry (base if it holds none).
func (d *disk) last() uint64 { return d.base + uint64(len(d.entries)) }

// load returns what a Persister's Load returns: the newest snapshot, then
// the log entries after it if the log holds the snapshot's last entry with
// its term (or was compacted exactly to it), else none: the snapshot
// replaces a log that does not lead to it. The entries share the disk's
// array. It fails if the log was compacted past the snapshot, which no
// committed snapshot would then cover.
func (d *disk) load() (simcore.DiskState, error) {
	st := simcore.DiskState{HardState: d.hs, Snapshot: d.snap.meta}
	s := d.snap.meta.Index
	switch {
	case s < d.base:
		return st, fmt.Errorf("log compacted to %d, past the newest snapshot at %d", d.base, s)
	case s == d.base:
		st.Entries = d.entries
	case s > d.last() || d.entries[s-d.base-1].Term != d.snap.meta.Term:
	default:
		st.Entries = d.entries[s-d.base:]
	}
	return st, nil
}

// replaceLog makes the log what load returned: compacted to the snapshot,
// with the entries after it that load kept. The core that starts from load
// appends right after those entries, with no TruncateFrom or Compact
// first, so a Persister must treat the snapshot as replacing a log that
// does not lead to it (Load's contract says "the snapshot replaces that
// log"). MemoryPersister does not: see snapshot_sim_regress_test.go.
func (d *disk) replaceLog(st simcore.DiskState) {
	if s := st.Snapshot.Index; s > d.base {
		d.base = s
		d.entries = st.Entries[:len(st.Entries):len(st.Entries)]
	}
}

// commitSnapshot commits a snapshot, durable at once. It returns false,
// changing nothing, if one at the same or a higher index is committed
// already (a Persister's ErrStaleSnapshot).
func (d *disk) commitSnapshot(meta simcore.SnapshotMeta, data []byte) bool {
	if meta.Index <= d.snap.meta.Index {
		return false
	}
	d.snap = diskSnapshot{meta: meta, data: data}
	return true
}

// start records that a batch's writes have been issued, in the order a
// Node issues them: truncate, compact, append, hard state.
func (d *disk) start(b *simcore.Batch) {
	if b.TruncateFrom != 0 {
		d.unsynced = append(d.unsynced, diskWrite{truncateFrom: b.TruncateFrom})
	}
	if b.CompactTo != 0 {
		d.unsynced = append(d.unsynced, diskWrite{compactTo: b.CompactTo})
	}
	for i := range b.Entries {
		d.unsynced = append(d.unsynced, diskWrite{entry: &b.Entries[i]})
	}
	if b.HardState != nil {
		d.unsynced = append(d.unsynced, diskWrite{hs: b.HardState})
	}
}

// complete finishes a batch. If it syncs, every write issued before its end
// is durable: all unsynced writes but those of the later batches, which
// have been issued (they may survive a crash) but are not covered.
func (d *disk) complete(b *simcore.Batch, later []*simcore.Batch) {
	if !b.MustSync {
		return
	}
	k := len(d.unsynced)
	for _, l := range later {
		k -= writeCount(l)
	}
	d.applyWrites(k)
}

func writeCount(b *simcore.Batch) int {
	n := len(b.Entries)
	if b.TruncateFrom != 0 {
		n++
	}
	if b.CompactTo != 0 {
		n++
	}
	if b.HardState != nil {
		n++
	}
	return n
}

// applyWrites makes the first k unsynced writes durable.
func (d *disk) applyWrites(k int) {
	for _, wr := range d.unsynced[:k] {
		switch {
		case wr.truncateFrom != 0:
			if wr.truncateFrom <= d.last() {
				n := max(wr.truncateFrom, d.base+1) - d.base - 1
				d.entries = d.entries[:n:n]
			}
		case wr.compactTo != 0:
			if c := wr.compactTo; c > d.base {
				if c >= d.last() {
					d.entries = nil
				} else {
					d.entries = d.entries[c-d.base:]
				}
				d.base = c
			}
		case wr.entry != nil:
			if want := d.last() + 1; wr.entry.Index != want && d.err == nil {
				d.err = fmt.Errorf("append of index %d to a log whose next index is %d", wr.entry.Index, want)
			}
			d.entries = append(d.entries, *wr.entry)
		case wr.hs != nil:
			d.hs = *wr.hs
		}
	}
	d.unsynced = append(d.unsynced[:0], d.unsynced[k:]...)
}

// crash keeps a random prefix of the unsynced writes and drops the rest.
func (d *disk) crash(rng interface{ IntN(int) int }) int {
	k := rng.IntN(len(d.unsynced) + 1)
	d.applyWrites(k)
	d.unsynced = d.unsynced[:0]
	return k
}
