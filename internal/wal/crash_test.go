package wal

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft/internal/faultfs"
)

// op is one call of a workload on a WAL.
type op struct {
	kind    byte // 'a'ppend, 't'runcate, 'h'ard state, 's'ync, 'r'elease, 'c'ompact
	ents    []Entry
	index   uint64
	hs      HardState
	segSize int64
}

// genWorkload returns a random workload: appends of varied sizes (some
// larger than a segment), truncations (some below the compaction point),
// hard states, syncs, releases and compactions (some beyond the end of the
// log); with compact false, no compactions.
func genWorkload(seed uint64, n int, compact bool) []op {
	rng := rand.New(rand.NewPCG(seed, 0))
	var ops []op
	var m model
	hs := HardState{}
	for len(ops) < n {
		r := rng.IntN(23)
		if r >= 20 && !compact {
			continue
		}
		switch {
		case r >= 20:
			// Mostly within the log, sometimes beyond its end.
			idx := m.next() - 1 - uint64(rng.IntN(int(m.next()-m.base)))
			if rng.IntN(4) == 0 {
				idx = m.next() + uint64(rng.IntN(4))
			}
			if idx == 0 {
				continue
			}
			ops = append(ops, op{kind: 'c', index: idx})
			m = m.compact(idx)
		case r < 9:
			size := rng.IntN(120)
			if rng.IntN(8) == 0 {
				size = 900 + rng.IntN(800)
			}
			ents := makeEntries(m.next(), 1+rng.IntN(5), hs.Term+1, size)
			ops = append(ops, op{kind: 'a', ents: ents})
			m = m.appendEnts(ents)
		case r < 11 && m.next() > 1:
			idx := max(1, m.next()-1-uint64(rng.IntN(6)))
			ops = append(ops, op{kind: 't', index: idx})
			m = m.truncate(idx)
		case r < 14:
			hs.Term += uint64(rng.IntN(2))
			hs.Vote = uint64(rng.IntN(3))
			hs.Commit = uint64(rng.IntN(int(m.next())))
			ops = append(ops, op{kind: 'h', hs: hs})
		case r < 19:
			ops = append(ops, op{kind: 's'})
		default:
			ops = append(ops, op{kind: 'r', index: uint64(rng.IntN(int(m.next()) + 1))})
		}
	}
	return append(ops, op{kind: 's'})
}

// history records the states a WAL may recover after a crash during a
// workload.
type history struct {
	states   []model // after each write; an append adds one per entry
	synced   int     // states[synced] is covered by the last completed Sync
	released uint64  // largest index passed to ReleaseBefore
}

// run runs ops on w, recording in h, until one fails. Each op's possible
// outcomes are recorded before it is called, since a failing op may still
// have reached the disk in part.
func (h *history) run(w *WAL, ops []op) error {
	h.states = []model{{}}
	cur := model{}
	for _, o := range ops {
		var err error
		switch o.kind {
		case 'a':
			for i := range o.ents {
				h.states = append(h.states, cur.appendEnts(o.ents[:i+1]))
			}
			cur = cur.appendEnts(o.ents)
			err = w.Append(o.ents)
		case 't':
			cur = cur.truncate(o.index)
			h.states = append(h.states, cur)
			err = w.TruncateFrom(o.index)
		case 'h':
			cur.hs = o.hs
			h.states = append(h.states, cur)
			err = w.SetHardState(o.hs)
		case 's':
			if err = w.Sync(); err == nil {
				h.synced = len(h.states) - 1
			}
		case 'r':
			h.released = max(h.released, o.index)
			err = w.ReleaseBefore(o.index)
		case 'c':
			cur = cur.compact(o.index)
			h.states = append(h.states, cur)
			err = w.Compact(o.index)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// check returns an error unless st is one of the states the WAL may have
// recovered: one after the last completed Sync.
func (h *history) check(st State) error {
	var first error
	for i := len(h.states) - 1; i >= h.synced; i-- {
		err := h.states[i].matches(st, h.released)
		if err == nil {
			return nil
		}
		if first == nil {
			first = fmt.Errorf("closest state %d: %w", i, err)
		}
	}
	return fmt.Errorf("recovered state (first index %d, %d entries, %+v) is none of states %d..%d: %w",
		st.FirstIndex, len(st.Entries), st.HardState, h.synced, len(h.states)-1, first)
}

// crashPlans are the ways a crash may treat pending changes: drop them
// all, keep them all, tear the last write of every file at several places,
// and random prefixes per file and directory.
func crashPlans() map[string]faultfs.CrashPlan {
	all := func(n int) int { return n }
	plans := map[string]faultfs.CrashPlan{
		"drop-all": {DirKeep: func(int) int { return 0 }, FileKeep: func(int) int { return 0 }, Cut: func(int) int { return 0 }},
		"keep-all": {DirKeep: all, FileKeep: all, Cut: func(int) int { return 0 }},
	}
	for name, cut := range map[string]func(n int) int{
		"tear-1":    func(int) int { return 1 },
		"tear-half": func(n int) int { return n / 2 },
		"tear-n-1":  func(n int) int { return n - 1 },
	} {
		plans[name] = faultfs.CrashPlan{DirKeep: all, FileKeep: func(n int) int { return max(0, n-1) }, Cut: cut}
	}
	for seed := range uint64(3) {
		rng := rand.New(rand.NewPCG(seed, 1))
		pick := func(n int) int { return rng.IntN(n + 1) }
		plans["random-"+strconv.Itoa(int(seed))] = faultfs.CrashPlan{
			DirKeep: pick, FileKeep: pick, Cut: func(n int) int { return rng.IntN(n) },
		}
	}
	return plans
}

// TestCrashConsistency runs workloads and crashes them at every mutating
// file system operation (every write, fsync, truncation, create, rename,
// remove and directory fsync), under every crash plan. Each time, Open
// must succeed and recover a state the workload passed through at or
// after its last completed Sync, and the recovered WAL must accept writes
// that a further reopen returns.
//
// WAL_CRASH_SEEDS=n runs n workloads instead of 4 (the odd ones compact).
func TestCrashConsistency(t *testing.T) {
	seeds, length := 4, 60
	if s := os.Getenv("WAL_CRASH_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err)
		seeds = n
	}
	if testing.Short() {
		seeds, length = 2, 40
	}
	plans := crashPlans()
	points, recoveries, compacts, released := 0, 0, 0, 0
	for seed := range uint64(seeds) {
		// Odd seeds compact too: crash points across compact records,
		// segment deletion at Sync and segments that restate the
		// compaction point.
		ops := genWorkload(seed, length, seed%2 == 1)
		opts := quietOpts(nil)
		opts.flushBytes = 300 // flush inside appends too, not only at Sync

		// A run without crash counts the operations.
		fsys := faultfs.New()
		opts.FS = fsys
		w, _, err := Open(testDir, opts)
		require.NoError(t, err)
		var h history
		require.NoError(t, h.run(w, ops))
		released += w.Released()
		for _, o := range ops {
			if o.kind == 'c' {
				compacts++
			}
		}
		require.NoError(t, w.Close())
		total := fsys.Ops()

		for crashAt := 1; crashAt <= total+1; crashAt++ {
			points++
			fsys := faultfs.New()
			fsys.SetCrashAt(crashAt)
			opts.FS = fsys
			var h history
			w, _, err := Open(testDir, opts)
			if err == nil {
				if err = h.run(w, ops); err == nil {
					err = w.Close()
				}
			}
			if crashAt <= total {
				require.ErrorIs(t, err, faultfs.ErrCrashed, "seed %d crash at %d", seed, crashAt)
			}
			for name, plan := range plans {
				recoveries++
				where := fmt.Sprintf("seed %d, crash at op %d of %d, plan %s", seed, crashAt, total, name)
				if err := checkRecovery(t, fsys.Crash(plan), opts, &h); err != nil {
					t.Fatalf("%s: %v", where, err)
				}
			}
			recoveries++
			if err := checkProcessCrash(fsys, opts, &h); err != nil {
				t.Fatalf("seed %d, process crash at op %d of %d: %v", seed, crashAt, total, err)
			}
		}
	}
	t.Logf("%d crash points, %d recoveries; the workloads compacted %d times and deleted %d segments", points, recoveries, compacts, released)
	minPoints := 300
	if testing.Short() {
		minPoints = 50
	}
	require.GreaterOrEqual(t, points, minPoints, "crash points tried")
	require.Positive(t, compacts, "compactions in the workloads")
}

// checkProcessCrash restarts the process on fsys, whose unsynced writes
// are still in the page cache: Open must recover a valid state and make it
// durable, so that a machine crash right after Open (dropping everything
// unsynced) leaves the same state. It changes fsys.
func checkProcessCrash(fsys *faultfs.FS, opts Options, h *history) error {
	fsys.Restart()
	opts.FS = fsys
	if h.states == nil {
		h.states = []model{{}}
	}
	_, st, err := Open(testDir, opts) // and the process dies again: no Close
	if err != nil {
		return fmt.Errorf("Open: %w", err)
	}
	if err := h.check(st); err != nil {
		return err
	}
	opts.FS = fsys.Crash(faultfs.CrashPlan{
		DirKeep:  func(int) int { return 0 },
		FileKeep: func(int) int { return 0 },
		Cut:      func(int) int { return 0 },
	})
	w, st2, err := Open(testDir, opts)
	if err != nil {
		return fmt.Errorf("Open after the machine crash: %w", err)
	}
	defer w.Close()
	if st2.HardState != st.HardState || st2.FirstIndex != st.FirstIndex || !slices.EqualFunc(st.Entries, st2.Entries, entryEqual) {
		return fmt.Errorf("a machine crash after Open lost what Open returned: %d entries from %d %+v, then %d from %d %+v",
			len(st.Entries), st.FirstIndex, st.HardState, len(st2.Entries), st2.FirstIndex, st2.HardState)
	}
	return nil
}

// checkRecovery opens a crashed file system, checks what it recovers
// against h, then checks that the WAL works on.
func checkRecovery(t *testing.T, fsys *faultfs.FS, opts Options, h *history) error {
	opts.FS = fsys
	if h.states == nil { // crashed inside the first Open
		h.states = []model{{}}
	}
	w, st, err := Open(testDir, opts)
	if err != nil {
		return fmt.Errorf("Open: %w", err)
	}
	if err := h.check(st); err != nil {
		w.Close()
		return err
	}
	// Go on: one more entry and hard state, then reopen.
	next := st.FirstIndex + uint64(len(st.Entries))
	more := makeEntries(next, 1, st.HardState.Term+1, 33)
	hs := HardState{Term: st.HardState.Term + 1, Commit: next}
	if err := w.Append(more); err != nil {
		return fmt.Errorf("append after recovery: %w", err)
	}
	if err := w.SetHardState(hs); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	w, st2, err := Open(testDir, opts)
	if err != nil {
		return fmt.Errorf("reopen after recovery: %w", err)
	}
	defer w.Close()
	want := append(st.Entries[:len(st.Entries):len(st.Entries)], more...)
	if st2.HardState != hs || st2.FirstIndex != st.FirstIndex || len(st2.Entries) != len(want) {
		return fmt.Errorf("reopen after recovery: got %d entries from %d, %+v", len(st2.Entries), st2.FirstIndex, st2.HardState)
	}
	for i := range want {
		if !entryEqual(want[i], st2.Entries[i]) {
			return fmt.Errorf("reopen after recovery: entry %d differs", want[i].Index)
		}
	}
	return nil
}
