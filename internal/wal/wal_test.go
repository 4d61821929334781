package wal

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft/internal/faultfs"
)

func TestOpen_NewDirectory(t *testing.T) {
	fsys := faultfs.New()
	w, st := mustOpen(t, testDir, memOpts(t, fsys))
	assert.Equal(t, State{FirstIndex: 1}, st)
	assert.Equal(t, []string{"0000000000000000-0000000000000001.wal"}, segments(t, fsys, testDir))
	require.NoError(t, w.Close())

	w, st = mustOpen(t, testDir, memOpts(t, fsys))
	assert.Equal(t, State{FirstIndex: 1}, st)
	require.NoError(t, w.Close())
}

func TestOpen_InvalidOptions(t *testing.T) {
	fsys := faultfs.New()
	_, _, err := Open(testDir, Options{FS: fsys, SegmentSize: 100})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NodeID is zero")
	assert.Contains(t, err.Error(), "SegmentSize 100")
	_, err = fsys.ReadDir("/") // MkdirAll would have created it
	assert.ErrorIs(t, err, fs.ErrNotExist, "nothing created")
}

// TestRoundTrip writes every kind of record over many segments, on the
// in-memory and the real file system, and reads it back.
func TestRoundTrip(t *testing.T) {
	for _, name := range []string{"memfs", "os"} {
		t.Run(name, func(t *testing.T) {
			dir, opts := testDir, memOpts(t, faultfs.New())
			if name == "os" {
				dir, opts.FS = filepath.Join(t.TempDir(), "wal"), nil
			}
			w, _ := mustOpen(t, dir, opts)
			var m model
			apply := func(ents []Entry) {
				require.NoError(t, w.Append(ents))
				m = m.appendEnts(ents)
			}
			apply(makeEntries(1, 10, 1, 50))
			require.NoError(t, w.SetHardState(HardState{Term: 1, Vote: 2, Commit: 5}))
			m.hs = HardState{Term: 1, Vote: 2, Commit: 5}
			require.NoError(t, w.TruncateFrom(7))
			m = m.truncate(7)
			apply(makeEntries(7, 20, 2, 100))
			apply(makeEntries(27, 1, 2, 3000)) // one record larger than a segment
			apply(makeEntries(28, 3, 2, 0))
			require.NoError(t, w.Sync())
			require.NoError(t, w.SetHardState(HardState{Term: 3, Vote: 1, Commit: 20}))
			m.hs = HardState{Term: 3, Vote: 1, Commit: 20}
			require.NoError(t, w.TruncateFrom(15)) // into an earlier segment
			m = m.truncate(15)
			apply(makeEntries(15, 5, 3, 10))
			require.NoError(t, w.Close()) // syncs

			w, st := mustOpen(t, dir, opts)
			requireState(t, m, st)
			if name == "memfs" {
				assert.Greater(t, len(segments(t, opts.FS, dir)), 3)
			}
			// The WAL goes on from where it was.
			apply(makeEntries(20, 2, 3, 10))
			require.NoError(t, w.Close())
			w, st = mustOpen(t, dir, opts)
			requireState(t, m, st)
			require.NoError(t, w.Close())
		})
	}
}

func TestAppend_WrongIndexWritesNothing(t *testing.T) {
	fsys := faultfs.New()
	w, _ := mustOpen(t, testDir, memOpts(t, fsys))
	require.NoError(t, w.Append(makeEntries(1, 3, 1, 10)))
	require.NoError(t, w.Sync())
	before := fsys.Files(testDir)

	err := w.Append(makeEntries(5, 1, 1, 10))
	require.ErrorContains(t, err, "first index 5, want 4")
	err = w.Append(makeEntries(3, 1, 1, 10))
	require.ErrorContains(t, err, "first index 3, want 4")
	gap := append(makeEntries(4, 1, 1, 10), makeEntries(6, 1, 1, 10)...)
	require.ErrorContains(t, w.Append(gap), "entry 1 has index 6, want 5")
	big := []Entry{{Index: 4, Term: 1, Data: make([]byte, maxEntryDataSize+1)}}
	require.ErrorContains(t, w.Append(big), "more than the")
	require.NoError(t, w.Sync())
	assert.Equal(t, before, fsys.Files(testDir), "refused appends wrote nothing")

	// A refused Append is not a failure of the WAL: it goes on.
	require.NoError(t, w.Append(makeEntries(4, 1, 1, 10)))
	require.NoError(t, w.Close())
	_, st := mustOpen(t, testDir, memOpts(t, fsys))
	requireState(t, model{}.appendEnts(makeEntries(1, 4, 1, 10)), st)
}

func TestTruncateFrom(t *testing.T) {
	fsys := faultfs.New()
	w, _ := mustOpen(t, testDir, memOpts(t, fsys))
	require.ErrorContains(t, w.TruncateFrom(0), "index 0")
	require.NoError(t, w.Append(makeEntries(1, 5, 1, 10)))
	require.NoError(t, w.Sync())
	before := fsys.Files(testDir)
	require.NoError(t, w.TruncateFrom(6), "nothing to remove")
	require.NoError(t, w.TruncateFrom(100), "nothing to remove")
	require.NoError(t, w.Sync())
	assert.Equal(t, before, fsys.Files(testDir), "a truncation that removes nothing writes nothing")
	require.ErrorContains(t, w.Append(makeEntries(7, 1, 1, 10)), "want 6")

	require.NoError(t, w.TruncateFrom(2))
	require.NoError(t, w.Append(makeEntries(2, 1, 2, 10)))
	require.NoError(t, w.TruncateFrom(1)) // everything
	require.NoError(t, w.Append(makeEntries(1, 2, 3, 10)))
	require.NoError(t, w.Close())
	w, st := mustOpen(t, testDir, memOpts(t, fsys))
	requireState(t, model{}.appendEnts(makeEntries(1, 2, 3, 10)), st)
	require.NoError(t, w.Close())
}

func TestSetHardState_SameWritesNothing(t *testing.T) {
	fsys := faultfs.New()
	w, _ := mustOpen(t, testDir, memOpts(t, fsys))
	hs := HardState{Term: 2, Vote: 1, Commit: 0}
	require.NoError(t, w.SetHardState(hs))
	require.NoError(t, w.Sync())
	before := fsys.Files(testDir)
	require.NoError(t, w.SetHardState(hs))
	require.NoError(t, w.Sync())
	assert.Equal(t, before, fsys.Files(testDir))
	require.NoError(t, w.Close())
	w, st := mustOpen(t, testDir, memOpts(t, fsys))
	assert.Equal(t, hs, st.HardState)
	require.NoError(t, w.Close())
}

// TestSync_GroupCommit checks that Sync costs one fsync for any number of
// writes, and none when nothing was written.
func TestSync_GroupCommit(t *testing.T) {
	fsys := faultfs.New()
	syncs := 0
	fsys.SetFault(func(op, path string) error {
		if op == "sync" {
			syncs++
		}
		return nil
	})
	opts := memOpts(t, fsys)
	opts.SegmentSize = DefaultSegmentSize
	w, _ := mustOpen(t, testDir, opts)
	syncs = 0
	for i := uint64(1); i <= 100; i++ {
		require.NoError(t, w.Append(makeEntries(i, 1, 1, 100)))
		require.NoError(t, w.SetHardState(HardState{Term: 1, Commit: i}))
	}
	require.NoError(t, w.Sync())
	assert.Equal(t, 1, syncs)
	require.NoError(t, w.Sync())
	assert.Equal(t, 1, syncs, "nothing to sync")
	require.NoError(t, w.Close())
	assert.Equal(t, 1, syncs, "Close had nothing to sync")
}

func TestLock_SecondOpenFails(t *testing.T) {
	for _, name := range []string{"memfs", "os"} {
		t.Run(name, func(t *testing.T) {
			dir, opts := testDir, memOpts(t, faultfs.New())
			if name == "os" {
				dir, opts.FS = t.TempDir(), nil
			}
			w, _ := mustOpen(t, dir, opts)
			_, _, err := Open(dir, opts)
			require.ErrorIs(t, err, ErrLocked)
			t.Log(err)
			require.NoError(t, w.Close())
			w, _ = mustOpen(t, dir, opts)
			require.NoError(t, w.Close())
		})
	}
}

func TestOpen_DirectoryIsAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(path, []byte("data"), 0o600))
	_, _, err := Open(path, Options{NodeID: 1})
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.ENOTDIR)
	t.Log(err)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "data", string(data))

	_, _, err = Open(filepath.Join(path, "wal"), Options{NodeID: 1})
	require.ErrorIs(t, err, syscall.ENOTDIR)
}

func TestOpen_NotWritable(t *testing.T) {
	t.Run("memfs", func(t *testing.T) {
		fsys := faultfs.New()
		w, _ := mustOpen(t, testDir, memOpts(t, fsys))
		require.NoError(t, w.Append(makeEntries(1, 3, 1, 10)))
		require.NoError(t, w.Close())
		before := fsys.Files(testDir)
		fsys.SetReadOnly(true)
		_, _, err := Open(testDir, memOpts(t, fsys))
		require.ErrorIs(t, err, syscall.EROFS)
		t.Log(err)
		_, _, err = Open("/elsewhere", memOpts(t, fsys))
		require.ErrorIs(t, err, syscall.EROFS)
		assert.Equal(t, before, fsys.Files(testDir))
	})
	t.Run("os", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores permissions")
		}
		dir := t.TempDir()
		require.NoError(t, os.Chmod(dir, 0o500))
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		_, _, err := Open(dir, Options{NodeID: 1})
		require.ErrorIs(t, err, os.ErrPermission)
		names, _ := os.ReadDir(dir)
		assert.Empty(t, names)
	})
}

func TestOpen_MismatchWritesNothing(t *testing.T) {
	fsys := faultfs.New()
	w, _ := mustOpen(t, testDir, memOpts(t, fsys))
	require.NoError(t, w.Append(makeEntries(1, 40, 1, 50))) // several segments
	require.NoError(t, w.Close())
	// Something for Open to repair, which it must not touch either.
	fsys.SetFile(segPath("0000000000000099-0000000000000001.wal.tmp"), []byte("x"))
	before := fsys.Files(testDir)
	var ops int
	fsys.SetFault(func(op, path string) error { ops++; return nil })

	for _, o := range []Options{{NodeID: 2, ClusterID: 7}, {NodeID: 1, ClusterID: 8}} {
		o.FS = fsys
		_, _, err := Open(testDir, o)
		require.ErrorIs(t, err, ErrMismatch)
		assert.Contains(t, err.Error(), "written by node 1 of cluster 7")
	}
	assert.Zero(t, ops, "no write of any kind")
	assert.Equal(t, before, fsys.Files(testDir))
}

// TestAbandon_LikeKill9 abandons a WAL as a killed process would: what it
// had only buffered is gone, what it had written stays (synced or not), the
// lock is free, and the WAL refuses further use.
func TestAbandon_LikeKill9(t *testing.T) {
	fsys := faultfs.New()
	opts := memOpts(t, fsys)
	opts.flushBytes = 300
	w, _ := mustOpen(t, testDir, opts)
	m := model{}.appendEnts(makeEntries(1, 3, 1, 20))
	require.NoError(t, w.Append(m.ents))
	require.NoError(t, w.Sync())
	// Written to the file by the flush at 300 bytes, but never synced.
	written := makeEntries(4, 1, 1, 400)
	require.NoError(t, w.Append(written))
	require.Positive(t, fsys.Unsynced())
	// Only buffered.
	require.NoError(t, w.Append(makeEntries(5, 1, 1, 10)))
	require.NoError(t, w.SetHardState(HardState{Term: 1, Commit: 5}))

	require.Positive(t, w.Abandon())
	require.Zero(t, w.Abandon())
	require.NoError(t, w.Close())
	require.ErrorIs(t, w.Append(makeEntries(5, 1, 1, 1)), ErrClosed)
	require.ErrorIs(t, w.Sync(), ErrClosed)

	// A power loss now may drop the unsynced write: the synced state stays.
	_, st := mustOpen(t, testDir, memOpts(t, fsys.Crash(faultfs.CrashPlan{})))
	requireState(t, m, st)
	// The process restarts on the same machine: the written entry is there,
	// the buffered ones are not; and the lock was released.
	w, st = mustOpen(t, testDir, memOpts(t, fsys))
	requireState(t, m.appendEnts(written), st)
	require.NoError(t, w.Close())
}

func TestClose_Idempotent(t *testing.T) {
	w, _ := mustOpen(t, testDir, memOpts(t, faultfs.New()))
	require.NoError(t, w.Close())
	require.NoError(t, w.Close())
	require.ErrorIs(t, w.Append(makeEntries(1, 1, 1, 1)), ErrClosed)
	require.ErrorIs(t, w.TruncateFrom(1), ErrClosed)
	require.ErrorIs(t, w.SetHardState(HardState{Term: 1}), ErrClosed)
	require.ErrorIs(t, w.Sync(), ErrClosed)
	require.ErrorIs(t, w.ReleaseBefore(1), ErrClosed)
}

// TestDiskFull runs out of space mid-write: the error is returned and
// sticky, and reopening (with space again) recovers what was synced.
func TestDiskFull(t *testing.T) {
	for _, space := range []int64{0, 1, 100, 1000, 3000} {
		fsys := faultfs.New()
		w, _ := mustOpen(t, testDir, memOpts(t, fsys))
		m := model{}.appendEnts(makeEntries(1, 10, 1, 50))
		require.NoError(t, w.Append(m.ents))
		require.NoError(t, w.SetHardState(HardState{Term: 1, Commit: 3}))
		m.hs = HardState{Term: 1, Commit: 3}
		require.NoError(t, w.Sync())

		fsys.SetSpace(space)
		var err error
		for i := uint64(11); err == nil; i++ {
			if err = w.Append(makeEntries(i, 1, 1, 200)); err == nil {
				err = w.Sync()
			}
			if err == nil {
				m = m.appendEnts(makeEntries(i, 1, 1, 200))
			}
		}
		require.ErrorIs(t, err, syscall.ENOSPC)
		t.Log(err)
		fsys.SetSpace(-1) // space again: the WAL must still refuse
		require.ErrorIs(t, w.Append(makeEntries(m.next(), 1, 1, 1)), syscall.ENOSPC)
		require.ErrorIs(t, w.Sync(), syscall.ENOSPC)
		require.ErrorIs(t, w.SetHardState(HardState{Term: 9}), syscall.ENOSPC)
		require.ErrorIs(t, w.Close(), syscall.ENOSPC)

		w, st := mustOpen(t, testDir, memOpts(t, fsys))
		requireState(t, m, st) // torn record cut, synced data intact
		require.NoError(t, w.Append(makeEntries(m.next(), 1, 2, 10)))
		require.NoError(t, w.Close())
		_, st = mustOpen(t, testDir, memOpts(t, fsys))
		requireState(t, m.appendEnts(makeEntries(m.next(), 1, 2, 10)), st)
	}
}

// TestSyncFailure_Sticky: after a failed fsync nobody knows what is on
// disk, so every later write fails until the WAL is reopened.
func TestSyncFailure_Sticky(t *testing.T) {
	fsys := faultfs.New()
	w, _ := mustOpen(t, testDir, memOpts(t, fsys))
	require.NoError(t, w.Append(makeEntries(1, 2, 1, 10)))
	require.NoError(t, w.Sync())
	errEIO := syscall.EIO
	fsys.SetFault(func(op, path string) error {
		if op == "sync" {
			return errEIO
		}
		return nil
	})
	require.NoError(t, w.Append(makeEntries(3, 1, 1, 10)))
	require.ErrorIs(t, w.Sync(), syscall.EIO)
	fsys.SetFault(nil) // the disk recovers: the WAL must not pretend it did
	for _, err := range []error{
		w.Append(makeEntries(4, 1, 1, 10)),
		w.TruncateFrom(1),
		w.SetHardState(HardState{Term: 2}),
		w.Sync(),
		w.ReleaseBefore(1),
	} {
		require.ErrorIs(t, err, syscall.EIO)
		assert.Contains(t, err.Error(), "reopen")
	}
	require.ErrorIs(t, w.Close(), syscall.EIO)
	require.NoError(t, w.Close())

	w, st := mustOpen(t, testDir, memOpts(t, fsys))
	m := model{}.appendEnts(makeEntries(1, 2, 1, 10))
	if len(st.Entries) == 3 { // the unsynced write reached the file
		m = m.appendEnts(makeEntries(3, 1, 1, 10))
	}
	requireState(t, m, st)
	require.NoError(t, w.Close())
}

// TestRollover_FailureIsSticky fails each step of a segment rollover.
func TestRollover_FailureIsSticky(t *testing.T) {
	for _, failOp := range []string{"create", "write", "sync", "rename", "syncdir"} {
		t.Run(failOp, func(t *testing.T) {
			fsys := faultfs.New()
			w, _ := mustOpen(t, testDir, memOpts(t, fsys))
			m := model{}.appendEnts(makeEntries(1, 10, 1, 60))
			require.NoError(t, w.Append(m.ents))
			require.NoError(t, w.Sync())
			armed := false
			fsys.SetFault(func(op, path string) error {
				if op == "create" {
					armed = true // the rollover has started
				}
				if armed && op == failOp {
					return syscall.EIO
				}
				return nil
			})
			var err error
			for i := m.next(); err == nil && i < 200; i++ {
				err = w.Append(makeEntries(i, 1, 1, 60))
			}
			require.ErrorIs(t, err, syscall.EIO)
			require.ErrorIs(t, w.Append(makeEntries(500, 1, 1, 1)), syscall.EIO)
			w.Close()
			fsys.SetFault(nil)
			w, st := mustOpen(t, testDir, memOpts(t, fsys))
			require.NoError(t, m.matches(State{HardState: st.HardState, FirstIndex: 1, Entries: st.Entries[:len(m.ents)]}, 0))
			require.NoError(t, w.Append(makeEntries(st.FirstIndex+uint64(len(st.Entries)), 1, 2, 1)))
			require.NoError(t, w.Close())
		})
	}
}

func TestReleaseBefore(t *testing.T) {
	fsys := faultfs.New()
	opts := memOpts(t, fsys)
	w, _ := mustOpen(t, testDir, opts)
	m := model{}.appendEnts(makeEntries(1, 100, 1, 50))
	require.NoError(t, w.Append(m.ents))
	m.hs = HardState{Term: 1, Vote: 1, Commit: 90}
	require.NoError(t, w.SetHardState(m.hs))
	require.NoError(t, w.Sync())
	n := len(segments(t, fsys, testDir))
	require.Greater(t, n, 5)

	require.NoError(t, w.ReleaseBefore(1))
	assert.Len(t, segments(t, fsys, testDir), n, "nothing below 1")
	require.NoError(t, w.ReleaseBefore(50))
	segs := segments(t, fsys, testDir)
	assert.Less(t, len(segs), n)
	first, _ := parseSegmentName(segs[0])
	assert.LessOrEqual(t, first.first, uint64(50))
	require.NoError(t, w.Close())

	w, st := mustOpen(t, testDir, opts)
	assert.Equal(t, first.first, st.FirstIndex)
	require.NoError(t, m.matches(st, 50))

	// Truncating below the first index recovered empties the log.
	require.NoError(t, w.TruncateFrom(st.FirstIndex-1))
	require.NoError(t, w.Append(makeEntries(st.FirstIndex-1, 2, 2, 10)))
	require.NoError(t, w.Close())
	w, st2 := mustOpen(t, testDir, opts)
	assert.Equal(t, st.FirstIndex-1, st2.FirstIndex)
	require.Len(t, st2.Entries, 2)

	require.NoError(t, w.ReleaseBefore(1<<62))
	assert.Len(t, segments(t, fsys, testDir), 1, "the active segment stays")
	require.NoError(t, w.Close())
	w, st3 := mustOpen(t, testDir, opts)
	assert.Equal(t, m.hs, st3.HardState, "the hard state survives the deletion of its segment")
	assert.Equal(t, st2.FirstIndex+2, st3.FirstIndex+uint64(len(st3.Entries)))
	require.NoError(t, w.Close())
}

func TestReleaseBefore_RemoveFailure(t *testing.T) {
	fsys := faultfs.New()
	w, _ := mustOpen(t, testDir, memOpts(t, fsys))
	require.NoError(t, w.Append(makeEntries(1, 100, 1, 50)))
	fsys.SetFault(func(op, path string) error {
		if op == "remove" {
			return syscall.EACCES
		}
		return nil
	})
	require.ErrorIs(t, w.ReleaseBefore(50), syscall.EACCES)
	fsys.SetFault(nil)
	require.NoError(t, w.ReleaseBefore(50), "a failed remove changes nothing, so it is not sticky")
	require.NoError(t, w.Close())
}

func TestOpen_RemovesLeftoverTmp(t *testing.T) {
	fsys := faultfs.New()
	w, _ := mustOpen(t, testDir, memOpts(t, fsys))
	require.NoError(t, w.Close())
	tmp := "0000000000000001-0000000000000001.wal.tmp"
	fsys.SetFile(segPath(tmp), []byte("half a segment"))
	fsys.SetFile(segPath("README"), []byte("not ours"))
	w, _ = mustOpen(t, testDir, memOpts(t, fsys))
	files := fsys.Files(testDir)
	assert.NotContains(t, files, tmp)
	assert.Contains(t, files, "README", "files that are not the WAL's are left alone")
	require.NoError(t, w.Close())
}

// TestAppend_NoAllocs checks that Append, SetHardState and Sync allocate
// nothing in steady state.
func TestAppend_NoAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("instrumentation allocates")
	}
	w, _ := mustOpen(t, t.TempDir(), Options{NodeID: 1})
	defer w.Close()
	ents := makeEntries(1, 4, 1, 100)
	next := uint64(1)
	step := func() {
		for i := range ents {
			ents[i].Index = next + uint64(i)
		}
		next += uint64(len(ents))
		if err := w.Append(ents); err != nil {
			t.Fatal(err)
		}
		if err := w.SetHardState(HardState{Term: 1, Commit: next}); err != nil {
			t.Fatal(err)
		}
	}
	step()
	assert.Zero(t, testing.AllocsPerRun(1000, step), "Append")
	assert.Zero(t, testing.AllocsPerRun(20, func() {
		step()
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
	}), "Append+Sync")
}

// TestCompact: entries at or below a compact record are gone after a
// reopen; the segments holding only such entries are deleted at the Sync
// that makes the record durable, not before; a compaction beyond the end
// positions the log after it; truncation never goes below the compaction
// point, even after the segment that recorded it was deleted.
func TestCompact(t *testing.T) {
	fsys := faultfs.New()
	opts := memOpts(t, fsys)
	w, _ := mustOpen(t, testDir, opts)
	m := model{}.appendEnts(makeEntries(1, 100, 1, 50))
	require.NoError(t, w.Append(m.ents))
	require.NoError(t, w.Sync())
	n := len(segments(t, fsys, testDir))
	require.Greater(t, n, 5)

	require.NoError(t, w.Compact(50))
	m = m.compact(50)
	assert.Len(t, segments(t, fsys, testDir), n, "nothing is deleted before the compact record is durable")
	require.NoError(t, w.Sync())
	segs := segments(t, fsys, testDir)
	assert.Less(t, len(segs), n)
	assert.Equal(t, n-len(segs), w.Released())
	first, _ := parseSegmentName(segs[0])
	assert.LessOrEqual(t, first.first, uint64(51), "no segment holding an entry above 50 is deleted")
	require.NoError(t, w.Compact(40), "an older compaction point does nothing")
	require.NoError(t, w.Close())

	w, st := mustOpen(t, testDir, opts)
	require.NoError(t, m.matches(st, 0))
	assert.Equal(t, uint64(51), st.FirstIndex)

	// Beyond the end: the next Append starts after it.
	require.NoError(t, w.Compact(150))
	m = m.compact(150)
	require.ErrorContains(t, w.Append(makeEntries(101, 1, 1, 5)), "want 151")
	require.NoError(t, w.Append(makeEntries(151, 30, 2, 50)))
	m = m.appendEnts(makeEntries(151, 30, 2, 50))
	require.NoError(t, w.Sync())
	segs = segments(t, fsys, testDir)
	first, _ = parseSegmentName(segs[0])
	assert.Equal(t, uint64(7), first.seq, "every segment before the one that holds 151 (active at the compaction) is gone")
	// Truncating at or below the compaction point empties the log after it.
	require.NoError(t, w.TruncateFrom(100))
	m = m.truncate(100)
	require.NoError(t, w.Close())

	w, st = mustOpen(t, testDir, opts)
	require.NoError(t, m.matches(st, 0))
	assert.Equal(t, State{HardState: st.HardState, FirstIndex: 151}, st)
	// The compaction point was restated in the segments after the one
	// that recorded it: truncation still stops there.
	require.NoError(t, w.Append(makeEntries(151, 3, 3, 5)))
	require.NoError(t, w.TruncateFrom(7))
	require.NoError(t, w.Append(makeEntries(151, 1, 4, 5)))
	require.NoError(t, w.Close())
	w, st = mustOpen(t, testDir, opts)
	require.NoError(t, w.Close())
	assert.Equal(t, uint64(151), st.FirstIndex)
	require.Len(t, st.Entries, 1)
	assert.Equal(t, uint64(4), st.Entries[0].Term)
}
