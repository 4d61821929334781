package raft_test

// The Persister contract (persister.go, snapshot.go), checked the same way
// against every implementation: MemoryPersister, FilePersister on the
// operating system's files, and FilePersister on faultfs.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/internal/faultfs"
)

// persisterTarget makes a Persister for one conformance test. restart
// returns the Persister a restarted process would have on the same
// storage (the old one is closed; a MemoryPersister is its own restart).
type persisterTarget struct {
	name string
	make func(t *testing.T) (p raft.Persister, restart func() raft.Persister)
}

func persisterTargets() []persisterTarget {
	fileOn := func(t *testing.T, open func() (*raft.FilePersister, error)) (raft.Persister, func() raft.Persister) {
		p, err := open()
		require.NoError(t, err)
		cur := p
		t.Cleanup(func() { cur.Close() })
		return p, func() raft.Persister {
			require.NoError(t, cur.Close())
			np, err := open()
			require.NoError(t, err)
			cur = np
			return np
		}
	}
	return []persisterTarget{{
		name: "memory",
		make: func(t *testing.T) (raft.Persister, func() raft.Persister) {
			p := raft.NewMemoryPersister()
			return p, func() raft.Persister { return p }
		},
	}, {
		name: "file-os",
		make: func(t *testing.T) (raft.Persister, func() raft.Persister) {
			dir := filepath.Join(t.TempDir(), "n1")
			return fileOn(t, func() (*raft.FilePersister, error) {
				return raft.OpenFilePersister(dir, 1, raft.FileOptions{ClusterID: 9, SegmentSize: 1024})
			})
		},
	}, {
		name: "file-faultfs",
		make: func(t *testing.T) (raft.Persister, func() raft.Persister) {
			fsys := faultfs.New()
			return fileOn(t, func() (*raft.FilePersister, error) {
				return raft.OpenFilePersisterOn(fsys, "/data/n1", 1, raft.FileOptions{ClusterID: 9, SegmentSize: 1024})
			})
		},
	}}
}

// cfEnts returns entries lo..hi of term, with data naming them.
func cfEnts(lo, hi, term uint64) []raft.Entry {
	var ents []raft.Entry
	for i := lo; i <= hi; i++ {
		ents = append(ents, raft.Entry{Index: i, Term: term, Type: raft.EntryType(i % 2), Data: []byte(fmt.Sprintf("entry %d of term %d", i, term))})
	}
	return ents
}

// cfLoad checks what Load returns.
func cfLoad(t *testing.T, p raft.Persister, snap raft.SnapshotMeta, hs raft.HardState, ents []raft.Entry) {
	t.Helper()
	st, err := p.Load()
	require.NoError(t, err)
	assert.Equal(t, snap, st.Snapshot, "snapshot")
	assert.Equal(t, hs, st.HardState, "hard state")
	require.Len(t, st.Entries, len(ents), "entries")
	for i, e := range ents {
		g := st.Entries[i]
		assert.True(t, e.Index == g.Index && e.Term == g.Term && e.Type == g.Type && bytes.Equal(e.Data, g.Data),
			"entry %d: got %d/%d %q, want %d/%d %q", i, g.Index, g.Term, g.Data, e.Index, e.Term, e.Data)
	}
}

// cfSnap writes and commits a snapshot.
func cfSnap(p raft.Persister, meta raft.SnapshotMeta, data []byte) error {
	w, err := p.CreateSnapshot(meta)
	if err != nil {
		return err
	}
	for len(data) > 0 {
		n := min(len(data), 1000)
		if _, err := w.Write(data[:n]); err != nil {
			w.Abort()
			return err
		}
		data = data[n:]
	}
	return w.Commit()
}

// cfReadSnap opens the newest snapshot and reads it whole.
func cfReadSnap(t *testing.T, p raft.Persister) (raft.SnapshotMeta, []byte) {
	t.Helper()
	meta, r, err := p.OpenSnapshot()
	require.NoError(t, err)
	defer r.Close()
	data, err := io.ReadAll(r)
	require.NoError(t, err)
	return meta, data
}

func cfData(meta raft.SnapshotMeta, n int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("[state at %d/%d]", meta.Index, meta.Term)), n)
}

func TestPersisterConformance(t *testing.T) {
	for _, target := range persisterTargets() {
		t.Run(target.name, func(t *testing.T) {
			for _, c := range persisterConformanceCases {
				t.Run(c.name, func(t *testing.T) {
					p, restart := target.make(t)
					c.run(t, p, restart)
				})
			}
		})
	}
}

var persisterConformanceCases = []struct {
	name string
	run  func(t *testing.T, p raft.Persister, restart func() raft.Persister)
}{{
	name: "Empty",
	run: func(t *testing.T, p raft.Persister, restart func() raft.Persister) {
		cfLoad(t, p, raft.SnapshotMeta{}, raft.HardState{}, nil)
		_, _, err := p.OpenSnapshot()
		require.ErrorIs(t, err, raft.ErrNoSnapshot)
		require.NoError(t, p.Sync())
		_, _, err = restart().OpenSnapshot()
		require.ErrorIs(t, err, raft.ErrNoSnapshot)
	},
}, {
	name: "LoadAfterEachWrite",
	run: func(t *testing.T, p raft.Persister, restart func() raft.Persister) {
		none := raft.SnapshotMeta{}
		require.NoError(t, p.Append(cfEnts(1, 5, 1)))
		cfLoad(t, p, none, raft.HardState{}, cfEnts(1, 5, 1))
		hs := raft.HardState{Term: 2, Vote: 3, Commit: 4}
		require.NoError(t, p.SetHardState(hs))
		cfLoad(t, p, none, hs, cfEnts(1, 5, 1))
		require.NoError(t, p.TruncateFrom(3))
		cfLoad(t, p, none, hs, cfEnts(1, 2, 1))
		require.NoError(t, p.TruncateFrom(9), "beyond the end: nothing to do")
		require.NoError(t, p.Append(cfEnts(3, 4, 2)))
		want := append(cfEnts(1, 2, 1), cfEnts(3, 4, 2)...)
		cfLoad(t, p, none, hs, want)
		require.NoError(t, p.Sync())
		cfLoad(t, p, none, hs, want)
		require.NoError(t, cfSnap(p, raft.SnapshotMeta{Index: 3, Term: 2}, []byte("s3")))
		cfLoad(t, p, raft.SnapshotMeta{Index: 3, Term: 2}, hs, want[3:])
		require.NoError(t, p.Compact(2))
		cfLoad(t, p, raft.SnapshotMeta{Index: 3, Term: 2}, hs, want[3:])
		require.NoError(t, p.Sync())
		cfLoad(t, restart(), raft.SnapshotMeta{Index: 3, Term: 2}, hs, want[3:])
	},
}, {
	name: "CompactWithinTheLog",
	run: func(t *testing.T, p raft.Persister, restart func() raft.Persister) {
		require.NoError(t, p.Append(cfEnts(1, 10, 1)))
		snap := raft.SnapshotMeta{Index: 6, Term: 1}
		require.NoError(t, cfSnap(p, snap, cfData(snap, 10)))
		require.NoError(t, p.Compact(4))
		require.NoError(t, p.Sync())
		cfLoad(t, p, snap, raft.HardState{}, cfEnts(7, 10, 1))
		require.NoError(t, p.Compact(6))
		require.NoError(t, p.Compact(5), "below the compaction point: nothing to do")
		require.NoError(t, p.Append(cfEnts(11, 12, 1)))
		require.NoError(t, p.Sync())
		p = restart()
		cfLoad(t, p, snap, raft.HardState{}, cfEnts(7, 12, 1))
		require.NoError(t, p.Append(cfEnts(13, 13, 2)))
		require.NoError(t, p.Sync())
		cfLoad(t, restart(), snap, raft.HardState{}, append(cfEnts(7, 12, 1), cfEnts(13, 13, 2)...))
	},
}, {
	name: "CompactBeyondTheEnd",
	run: func(t *testing.T, p raft.Persister, restart func() raft.Persister) {
		require.NoError(t, p.Append(cfEnts(1, 3, 1)))
		snap := raft.SnapshotMeta{Index: 10, Term: 2}
		require.NoError(t, cfSnap(p, snap, cfData(snap, 3)))
		require.NoError(t, p.Compact(10))
		require.Error(t, p.Append(cfEnts(4, 4, 1)), "the log is positioned after 10")
		require.NoError(t, p.Append(cfEnts(11, 12, 2)))
		require.NoError(t, p.Sync())
		cfLoad(t, p, snap, raft.HardState{}, cfEnts(11, 12, 2))
		cfLoad(t, restart(), snap, raft.HardState{}, cfEnts(11, 12, 2))
	},
}, {
	name: "LoadSnapshotMatchesLog",
	run: func(t *testing.T, p raft.Persister, restart func() raft.Persister) {
		require.NoError(t, p.Append(cfEnts(1, 10, 1)))
		require.NoError(t, p.Sync())
		snap := raft.SnapshotMeta{Index: 5, Term: 1}
		require.NoError(t, cfSnap(p, snap, nil))
		cfLoad(t, p, snap, raft.HardState{}, cfEnts(6, 10, 1))
		require.NoError(t, p.Append(cfEnts(11, 11, 1)), "the log goes on where it was")
		require.NoError(t, p.Sync())
		cfLoad(t, restart(), snap, raft.HardState{}, cfEnts(6, 11, 1))
	},
}, {
	name: "LoadSnapshotConflictsWithLog",
	run: func(t *testing.T, p raft.Persister, restart func() raft.Persister) {
		require.NoError(t, p.Append(cfEnts(1, 10, 1)))
		require.NoError(t, p.Sync())
		snap := raft.SnapshotMeta{Index: 5, Term: 2}
		require.NoError(t, cfSnap(p, snap, []byte("s")))
		cfLoad(t, p, snap, raft.HardState{}, nil)
		// The snapshot replaced the log: the next Append follows it.
		require.NoError(t, p.Append(cfEnts(6, 7, 2)))
		require.NoError(t, p.Sync())
		cfLoad(t, p, snap, raft.HardState{}, cfEnts(6, 7, 2))
		cfLoad(t, restart(), snap, raft.HardState{}, cfEnts(6, 7, 2))
	},
}, {
	name: "LoadSnapshotBeyondShorterLog",
	run: func(t *testing.T, p raft.Persister, restart func() raft.Persister) {
		require.NoError(t, p.Append(cfEnts(1, 3, 1)))
		hs := raft.HardState{Term: 2, Commit: 3}
		require.NoError(t, p.SetHardState(hs))
		require.NoError(t, p.Sync())
		snap := raft.SnapshotMeta{Index: 7, Term: 1}
		require.NoError(t, cfSnap(p, snap, []byte("s")))
		cfLoad(t, p, snap, hs, nil)
		require.NoError(t, p.Append(cfEnts(8, 8, 2)))
		require.NoError(t, p.Sync())
		cfLoad(t, restart(), snap, hs, cfEnts(8, 8, 2))
	},
}, {
	name: "InstallOverConflictingLog",
	run: func(t *testing.T, p raft.Persister, restart func() raft.Persister) {
		// What a follower's persist batch does after installing a leader's
		// snapshot that its log conflicts with: truncate, compact, append.
		require.NoError(t, p.Append(cfEnts(1, 10, 1)))
		require.NoError(t, p.Sync())
		snap := raft.SnapshotMeta{Index: 8, Term: 3}
		require.NoError(t, cfSnap(p, snap, cfData(snap, 50)))
		require.NoError(t, p.TruncateFrom(1))
		require.NoError(t, p.Compact(8))
		require.NoError(t, p.Append(cfEnts(9, 9, 3)))
		hs := raft.HardState{Term: 3, Vote: 2, Commit: 9}
		require.NoError(t, p.SetHardState(hs))
		require.NoError(t, p.Sync())
		cfLoad(t, p, snap, hs, cfEnts(9, 9, 3))
		// Truncating at or below the compaction point empties the log,
		// which stays positioned after it.
		require.NoError(t, p.TruncateFrom(3))
		require.NoError(t, p.Append(cfEnts(9, 10, 4)))
		require.NoError(t, p.Sync())
		p = restart()
		cfLoad(t, p, snap, hs, cfEnts(9, 10, 4))
		m, data := cfReadSnap(t, p)
		assert.Equal(t, snap, m)
		assert.Equal(t, cfData(snap, 50), data)
	},
}, {
	name: "SnapshotCommitAbortStale",
	run: func(t *testing.T, p raft.Persister, restart func() raft.Persister) {
		s5 := raft.SnapshotMeta{Index: 5, Term: 1}
		w, err := p.CreateSnapshot(s5)
		require.NoError(t, err)
		_, _, err = p.OpenSnapshot()
		require.ErrorIs(t, err, raft.ErrNoSnapshot, "nothing counts before Commit")
		_, err = w.Write(cfData(s5, 100))
		require.NoError(t, err)
		require.NoError(t, w.Commit())
		_, err = w.Write([]byte("x"))
		require.Error(t, err, "write after commit")
		require.Error(t, w.Commit(), "second commit")
		require.NoError(t, w.Abort(), "abort after commit does nothing")
		m, data := cfReadSnap(t, p)
		require.Equal(t, s5, m)
		require.Equal(t, cfData(s5, 100), data)

		require.ErrorIs(t, cfSnap(p, raft.SnapshotMeta{Index: 3, Term: 1}, []byte("old")), raft.ErrStaleSnapshot)
		require.ErrorIs(t, cfSnap(p, raft.SnapshotMeta{Index: 5, Term: 2}, []byte("same index")), raft.ErrStaleSnapshot)
		s7 := raft.SnapshotMeta{Index: 7, Term: 1}
		w, err = p.CreateSnapshot(s7)
		require.NoError(t, err)
		_, err = w.Write([]byte("aborted"))
		require.NoError(t, err)
		require.NoError(t, w.Abort())
		_, err = w.Write([]byte("x"))
		require.Error(t, err, "write after abort")
		m, data = cfReadSnap(t, p)
		require.Equal(t, s5, m)
		require.Equal(t, cfData(s5, 100), data)

		// Two writers at once: the first to commit wins if it is newer.
		wa, err := p.CreateSnapshot(raft.SnapshotMeta{Index: 9, Term: 1})
		require.NoError(t, err)
		wb, err := p.CreateSnapshot(raft.SnapshotMeta{Index: 8, Term: 1})
		require.NoError(t, err)
		_, err = wa.Write([]byte("nine"))
		require.NoError(t, err)
		_, err = wb.Write([]byte("eight"))
		require.NoError(t, err)
		require.NoError(t, wa.Commit())
		require.ErrorIs(t, wb.Commit(), raft.ErrStaleSnapshot)
		m, data = cfReadSnap(t, p)
		require.Equal(t, raft.SnapshotMeta{Index: 9, Term: 1}, m)
		require.Equal(t, []byte("nine"), data)

		p = restart()
		m, data = cfReadSnap(t, p)
		require.Equal(t, raft.SnapshotMeta{Index: 9, Term: 1}, m)
		require.Equal(t, []byte("nine"), data)
		cfLoad(t, p, m, raft.HardState{}, nil)
	},
}, {
	name: "OldReaderSurvivesNewerCommit",
	run: func(t *testing.T, p raft.Persister, restart func() raft.Persister) {
		s1 := raft.SnapshotMeta{Index: 4, Term: 1}
		require.NoError(t, cfSnap(p, s1, cfData(s1, 5000)))
		m, r, err := p.OpenSnapshot()
		require.NoError(t, err)
		defer r.Close()
		require.Equal(t, s1, m)
		head := make([]byte, 100)
		_, err = io.ReadFull(r, head)
		require.NoError(t, err)
		s2 := raft.SnapshotMeta{Index: 9, Term: 2}
		require.NoError(t, cfSnap(p, s2, cfData(s2, 10)))
		rest, err := io.ReadAll(r)
		require.NoError(t, err, "the older snapshot's reader goes on after a newer commit")
		require.Equal(t, cfData(s1, 5000), append(head, rest...))
		m2, data := cfReadSnap(t, p)
		require.Equal(t, s2, m2)
		require.Equal(t, cfData(s2, 10), data)
	},
}, {
	name: "ConcurrentSnapshotsAndLogWrites",
	run: func(t *testing.T, p raft.Persister, restart func() raft.Persister) {
		// Run under -race: the snapshot methods from two goroutines while
		// the log methods run from a third.
		const rounds = 30
		var wg sync.WaitGroup
		errc := make(chan error, 3)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= rounds; i++ {
				meta := raft.SnapshotMeta{Index: 10 * i, Term: 1}
				if err := cfSnap(p, meta, cfData(meta, 200)); err != nil {
					errc <- fmt.Errorf("snapshot %d: %w", meta.Index, err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				m, r, err := p.OpenSnapshot()
				if errors.Is(err, raft.ErrNoSnapshot) {
					continue
				}
				if err != nil {
					errc <- err
					return
				}
				data, err := io.ReadAll(r)
				r.Close()
				if err != nil || !bytes.Equal(data, cfData(m, 200)) {
					errc <- fmt.Errorf("read snapshot %d: %v (%d bytes)", m.Index, err, len(data))
					return
				}
			}
		}()
		var hs raft.HardState
		for i := uint64(1); i <= 10*rounds; i += 5 {
			require.NoError(t, p.Append(cfEnts(i, i+4, 1)))
			hs.Term, hs.Commit = 1, i
			require.NoError(t, p.SetHardState(hs))
			require.NoError(t, p.Sync())
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			require.NoError(t, err)
		}
		snap := raft.SnapshotMeta{Index: 10 * rounds, Term: 1}
		require.NoError(t, p.Compact(snap.Index))
		require.NoError(t, p.Sync())
		cfLoad(t, restart(), snap, hs, nil)
	},
}, {
	name: "CompactedPastTheSnapshot",
	run: func(t *testing.T, p raft.Persister, restart func() raft.Persister) {
		// A Node never does this (it compacts only behind a committed
		// snapshot): the entries are gone and no snapshot has them.
		require.NoError(t, p.Append(cfEnts(1, 10, 1)))
		require.NoError(t, cfSnap(p, raft.SnapshotMeta{Index: 3, Term: 1}, nil))
		require.NoError(t, p.Compact(6))
		require.NoError(t, p.Sync())
		_, err := p.Load()
		require.ErrorIs(t, err, raft.ErrCorrupt)
		t.Log(err)
	},
}}
