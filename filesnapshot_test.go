package raft_test

// FilePersister's snapshot files and log compaction: the files it leaves,
// damage it detects, and crashes at every file-system operation of the
// local snapshot path and of a snapshot installation.

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/internal/faultfs"
)

const fsDir = "/data/n1"

var fsOpts = raft.FileOptions{ClusterID: 9, SegmentSize: 1024}

// fsNames returns the names of the files in fsDir on fsys whose names end
// with suffix, sorted.
func fsNames(fsys *faultfs.FS, suffix string) []string {
	names, _ := fsys.ReadDir(fsDir)
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, suffix) {
			out = append(out, n)
		}
	}
	return out
}

func fsOpen(t *testing.T, fsys *faultfs.FS) *raft.FilePersister {
	t.Helper()
	p, err := raft.OpenFilePersisterOn(fsys, fsDir, 1, fsOpts)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// TestFileSnapshotFiles: what the directory holds as snapshots are
// committed and the log compacted: one snapshot file, no leftovers, and
// segments deleted only once the compaction is durable.
func TestFileSnapshotFiles(t *testing.T) {
	fsys := faultfs.New()
	p := fsOpen(t, fsys)
	require.NoError(t, p.Append(fpEntries(1, 100, 1, 40)))
	require.NoError(t, p.Sync())
	segs := len(fsNames(fsys, ".wal"))
	require.Greater(t, segs, 4)

	s1 := raft.SnapshotMeta{Index: 60, Term: 1}
	w, err := p.CreateSnapshot(s1)
	require.NoError(t, err)
	_, err = w.Write(cfData(s1, 100))
	require.NoError(t, err)
	require.Len(t, fsNames(fsys, ".tmp"), 1, "written as a temporary file")
	require.Empty(t, fsNames(fsys, ".snap"))
	require.NoError(t, w.Commit())
	require.Empty(t, fsNames(fsys, ".tmp"))
	require.Equal(t, []string{"snap-000000000000003c-0000000000000001.snap"}, fsNames(fsys, ".snap"))

	require.NoError(t, p.Compact(60))
	require.Len(t, fsNames(fsys, ".wal"), segs, "no segment deleted before the compaction is durable")
	require.NoError(t, p.Sync())
	left := fsNames(fsys, ".wal")
	require.Less(t, len(left), segs)
	t.Logf("compaction to 60 deleted %d of %d segments", segs-len(left), segs)

	s2 := raft.SnapshotMeta{Index: 90, Term: 1}
	require.NoError(t, cfSnap(p, s2, cfData(s2, 10)))
	require.Equal(t, []string{"snap-000000000000005a-0000000000000001.snap"}, fsNames(fsys, ".snap"), "the older snapshot is deleted")

	// A writer abandoned by a dead process leaves a .tmp; the next open
	// removes it.
	w, err = p.CreateSnapshot(raft.SnapshotMeta{Index: 95, Term: 1})
	require.NoError(t, err)
	_, err = w.Write([]byte("never committed"))
	require.NoError(t, err)
	p.Kill()
	require.Len(t, fsNames(fsys, ".tmp"), 1)
	fsys.Restart()
	p = fsOpen(t, fsys)
	require.Empty(t, fsNames(fsys, ".tmp"))
	require.Error(t, w.Commit(), "the dead process's writer cannot commit into the new process's directory")
	require.Len(t, fsNames(fsys, ".snap"), 1)
	cfLoad(t, p, s2, raft.HardState{}, fpEntries(91, 100, 1, 40))
	w2, err := p.CreateSnapshot(raft.SnapshotMeta{Index: 99, Term: 1})
	require.NoError(t, err)
	require.NoError(t, w2.Abort())
	require.Empty(t, fsNames(fsys, ".tmp"), "Abort removes the temporary file")
}

// TestFileSnapshotCorrupt: a snapshot file whose checksum fails, or that
// is truncated, is reported as ErrCorrupt naming the file: by its reader at
// the end of the data, by Load, and NewNode does not start from it.
func TestFileSnapshotCorrupt(t *testing.T) {
	meta := raft.SnapshotMeta{Index: 5, Term: 1}
	name := "snap-0000000000000005-0000000000000001.snap"
	for _, tc := range []struct {
		what   string
		damage func([]byte) []byte
	}{
		{"a flipped data byte", func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }},
		{"a flipped checksum byte", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		{"a flipped header byte", func(b []byte) []byte { b[20] ^= 1; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-100] }},
		{"truncated to the header", func(b []byte) []byte { return b[:30] }},
		{"a byte appended", func(b []byte) []byte { return append(b, 0) }},
	} {
		t.Run(tc.what, func(t *testing.T) {
			fsys := faultfs.New()
			p := fsOpen(t, fsys)
			require.NoError(t, p.Append(fpEntries(1, 8, 1, 10)))
			require.NoError(t, p.Sync())
			require.NoError(t, cfSnap(p, meta, cfData(meta, 1000)))
			require.NoError(t, p.Compact(5))
			require.NoError(t, p.Sync())
			require.NoError(t, p.Close())
			path := filepath.Join(fsDir, name)
			fsys.SetFile(path, tc.damage(fsys.Files(fsDir)[name]))

			p = fsOpen(t, fsys)
			if _, r, err := p.OpenSnapshot(); err == nil {
				_, err = io.ReadAll(r)
				r.Close()
				require.ErrorIs(t, err, raft.ErrCorrupt, "the reader")
				require.ErrorContains(t, err, path)
			} else {
				require.ErrorIs(t, err, raft.ErrCorrupt, "OpenSnapshot")
				require.ErrorContains(t, err, path)
			}
			_, err := p.Load()
			require.ErrorIs(t, err, raft.ErrCorrupt, "Load")
			require.ErrorContains(t, err, path)
			t.Log(err)
			_, err = raft.NewNode(raft.Config{ID: 1, Peers: []raft.NodeID{1}, Persister: p, Transport: nopTransport{}})
			require.ErrorIs(t, err, raft.ErrCorrupt, "NewNode")
		})
	}
}

// TestFileSnapshotMissing: a log compacted past every snapshot file (one
// was deleted by hand) is ErrCorrupt.
func TestFileSnapshotMissing(t *testing.T) {
	fsys := faultfs.New()
	p := fsOpen(t, fsys)
	require.NoError(t, p.Append(fpEntries(1, 80, 1, 40)))
	meta := raft.SnapshotMeta{Index: 70, Term: 1}
	require.NoError(t, cfSnap(p, meta, []byte("x")))
	require.NoError(t, p.Compact(70))
	require.NoError(t, p.Sync())
	require.NoError(t, p.Close())
	fsys.RemoveFile(filepath.Join(fsDir, fsNames(fsys, ".snap")[0]))
	p = fsOpen(t, fsys)
	_, err := p.Load()
	require.ErrorIs(t, err, raft.ErrCorrupt)
	require.ErrorContains(t, err, "snapshot file is missing")
}

// nopTransport sends nothing and receives nothing.
type nopTransport struct{}

func (nopTransport) Send(raft.Message)            {}
func (nopTransport) Receive() <-chan raft.Message { return nil }

// snapCrashPlans are the ways a power loss treats the changes no fsync
// covered (see internal/faultfs): all dropped, all kept, the last write of
// each file torn, and random prefixes.
func snapCrashPlans() map[string]faultfs.CrashPlan {
	all := func(n int) int { return n }
	none := func(int) int { return 0 }
	plans := map[string]faultfs.CrashPlan{
		"drop-all": {DirKeep: none, FileKeep: none, Cut: none},
		"keep-all": {DirKeep: all, FileKeep: all, Cut: none},
		"tear":     {DirKeep: all, FileKeep: func(n int) int { return max(0, n-1) }, Cut: func(n int) int { return n / 2 }},
	}
	for seed := range uint64(2) {
		rng := rand.New(rand.NewPCG(seed, 5))
		pick := func(n int) int { return rng.IntN(n + 1) }
		plans["random-"+strconv.Itoa(int(seed))] = faultfs.CrashPlan{DirKeep: pick, FileKeep: pick, Cut: func(n int) int { return rng.IntN(n) }}
	}
	return plans
}

// snapCrashCase is a sequence of persister calls to crash at every
// file-system operation. setup runs first, without crash; then run, which
// stops at the first error (the machine died) and reports progress.
type snapCrashCase struct {
	name  string
	setup func(p *raft.FilePersister) error
	run   func(p *raft.FilePersister, pr *snapProgress) error
	// valid says whether a recovered state is one the sequence may leave.
	valid func(st raft.PersistentState, pr *snapProgress) error
}

// snapProgress is how far run got before the crash.
type snapProgress struct {
	committed bool // the new snapshot's Commit returned nil
	synced    bool // the Sync after the new entries returned nil
}

// snapEntriesMatch checks that ents are contiguous after snap and each is
// the entry of the same index in one of logs.
func snapEntriesMatch(st raft.PersistentState, logs ...[]raft.Entry) error {
	for i, e := range st.Entries {
		if e.Index != st.Snapshot.Index+uint64(i)+1 {
			return fmt.Errorf("entry %d has index %d after snapshot %d: not contiguous", i, e.Index, st.Snapshot.Index)
		}
		ok := false
		for _, l := range logs {
			for _, w := range l {
				if w.Index == e.Index && w.Term == e.Term && bytes.Equal(w.Data, e.Data) {
					ok = true
				}
			}
		}
		if !ok {
			return fmt.Errorf("entry %d (term %d) is in none of the logs written", e.Index, e.Term)
		}
	}
	return nil
}

// snapHas checks that st holds every entry of want above its snapshot.
func snapHas(st raft.PersistentState, want []raft.Entry) error {
	for _, w := range want {
		if w.Index <= st.Snapshot.Index {
			continue
		}
		i := w.Index - st.Snapshot.Index - 1
		if i >= uint64(len(st.Entries)) || st.Entries[i].Term != w.Term {
			return fmt.Errorf("synced entry %d (term %d) above snapshot %d lost", w.Index, w.Term, st.Snapshot.Index)
		}
	}
	return nil
}

var (
	snapOld   = raft.SnapshotMeta{Index: 10, Term: 1}
	snapLog   = fpEntries(1, 40, 1, 60) // term 1, synced in setup
	snapLocal = raft.SnapshotMeta{Index: 35, Term: 1}
	snapInst  = raft.SnapshotMeta{Index: 50, Term: 2} // beyond the log: replaces it
	snapMore  = fpEntries(41, 44, 1, 60)
	snapAfter = fpEntries(51, 53, 2, 60)
)

func snapSetup(p *raft.FilePersister) error {
	if err := p.Append(snapLog); err != nil {
		return err
	}
	if err := p.SetHardState(raft.HardState{Term: 1, Vote: 1, Commit: 40}); err != nil {
		return err
	}
	if err := cfSnap(p, snapOld, cfData(snapOld, 300)); err != nil {
		return err
	}
	if err := p.Compact(snapOld.Index); err != nil {
		return err
	}
	return p.Sync()
}

var snapCrashCases = []snapCrashCase{{
	// The local path: Node.Snapshot commits a snapshot of its own applied
	// state, then compacts its log behind it (keeping a few entries).
	name:  "local",
	setup: snapSetup,
	run: func(p *raft.FilePersister, pr *snapProgress) error {
		if err := cfSnap(p, snapLocal, cfData(snapLocal, 20000)); err != nil {
			return err
		}
		pr.committed = true
		if err := p.Compact(snapLocal.Index - 3); err != nil {
			return err
		}
		if err := p.Append(snapMore); err != nil {
			return err
		}
		if err := p.Sync(); err != nil {
			return err
		}
		pr.synced = true
		return nil
	},
	valid: func(st raft.PersistentState, pr *snapProgress) error {
		if st.Snapshot != snapOld && st.Snapshot != snapLocal || pr.committed && st.Snapshot != snapLocal {
			return fmt.Errorf("snapshot %+v", st.Snapshot)
		}
		if err := snapEntriesMatch(st, snapLog, snapMore); err != nil {
			return err
		}
		if err := snapHas(st, snapLog); err != nil {
			return err
		}
		if pr.synced {
			return snapHas(st, snapMore)
		}
		return nil
	},
}, {
	// The install path: the receiver commits a leader's snapshot that the
	// log does not lead to, then the persist batch truncates, compacts,
	// appends the entries after it and saves the hard state.
	name:  "install",
	setup: snapSetup,
	run: func(p *raft.FilePersister, pr *snapProgress) error {
		if err := cfSnap(p, snapInst, cfData(snapInst, 20000)); err != nil {
			return err
		}
		pr.committed = true
		_, r, err := p.OpenSnapshot() // the receiver opens it at once
		if err != nil {
			return err
		}
		r.Close()
		if err := p.TruncateFrom(snapOld.Index + 1); err != nil {
			return err
		}
		if err := p.Compact(snapInst.Index); err != nil {
			return err
		}
		if err := p.Append(snapAfter); err != nil {
			return err
		}
		if err := p.SetHardState(raft.HardState{Term: 2, Commit: 53}); err != nil {
			return err
		}
		if err := p.Sync(); err != nil {
			return err
		}
		pr.synced = true
		return nil
	},
	valid: func(st raft.PersistentState, pr *snapProgress) error {
		switch {
		case st.Snapshot == snapOld && !pr.committed:
			if err := snapEntriesMatch(st, snapLog); err != nil {
				return err
			}
			return snapHas(st, snapLog)
		case st.Snapshot == snapInst:
			if err := snapEntriesMatch(st, snapAfter); err != nil {
				return err
			}
			if pr.synced {
				return snapHas(st, snapAfter)
			}
			return nil
		}
		return fmt.Errorf("snapshot %+v (committed %v)", st.Snapshot, pr.committed)
	},
}}

// TestFileSnapshotCrash crashes the machine at every file-system operation
// of the local snapshot path and of an installation, under several crash
// plans, and a process (kill -9) there too. Each time the directory must
// reopen to a valid state: Load succeeds, the snapshot is the old or the
// new one (the new one once its Commit returned), its data reads back
// whole, the entries are contiguous after it and none that a Sync covered
// above it is lost; the node can go on writing. At every crash point, the
// recovered snapshot file, damaged or truncated, is then reported as
// ErrCorrupt naming it.
func TestFileSnapshotCrash(t *testing.T) {
	plans := snapCrashPlans()
	total := 0
	for _, c := range snapCrashCases {
		t.Run(c.name, func(t *testing.T) {
			// A run without crash counts the operations.
			fsys := faultfs.New()
			p := fsOpen(t, fsys)
			require.NoError(t, c.setup(p))
			start := fsys.Ops()
			var pr snapProgress
			require.NoError(t, c.run(p, &pr))
			require.NoError(t, p.Close())
			end := fsys.Ops()
			points := 0
			for crashAt := start + 1; crashAt <= end+1; crashAt++ {
				points++
				fsys := faultfs.New()
				p, err := raft.OpenFilePersisterOn(fsys, fsDir, 1, fsOpts)
				require.NoError(t, err)
				require.NoError(t, c.setup(p))
				fsys.SetCrashAt(crashAt)
				var pr snapProgress
				err = c.run(p, &pr)
				if crashAt <= end {
					require.ErrorIs(t, err, faultfs.ErrCrashed, "crash at %d", crashAt)
				}
				p.Kill()
				for name, plan := range plans {
					where := fmt.Sprintf("crash at op %d (%d..%d), plan %s", crashAt, start+1, end, name)
					snapCheckRecovery(t, where, fsys.Crash(plan), c, &pr, name == "keep-all")
				}
				fsys.Restart()
				snapCheckRecovery(t, fmt.Sprintf("process crash at op %d", crashAt), fsys, c, &pr, false)
			}
			t.Logf("%s: %d crash points (file-system operations %d..%d), %d plans each and a process crash", c.name, points, start+1, end+1, len(plans))
			total += points
		})
	}
	t.Logf("%d crash points in all", total)
}

func snapCheckRecovery(t *testing.T, where string, fsys *faultfs.FS, c snapCrashCase, pr *snapProgress, damage bool) {
	t.Helper()
	p, err := raft.OpenFilePersisterOn(fsys, fsDir, 1, fsOpts)
	require.NoError(t, err, where)
	st, err := p.Load()
	require.NoError(t, err, where)
	require.NoError(t, c.valid(st, pr), "%s: recovered snapshot %+v, %d entries", where, st.Snapshot, len(st.Entries))
	m, data := cfReadSnap(t, p)
	require.Equal(t, st.Snapshot, m, where)
	require.Equal(t, cfData(m, map[uint64]int{10: 300, 35: 20000, 50: 20000}[m.Index]), data, where)
	// The node goes on: one more entry, then a restart returns it.
	next := st.Snapshot.Index + uint64(len(st.Entries)) + 1
	more := fpEntries(next, next, 3, 10)
	require.NoError(t, p.Sync(), where) // NewNode syncs after Load
	require.NoError(t, p.Append(more), where)
	require.NoError(t, p.Sync(), where)
	require.NoError(t, p.Close(), where)
	p, err = raft.OpenFilePersisterOn(fsys, fsDir, 1, fsOpts)
	require.NoError(t, err, where)
	st2, err := p.Load()
	require.NoError(t, err, where)
	require.Equal(t, st.Snapshot, st2.Snapshot, where)
	require.Equal(t, append(slicesClip(st.Entries), more...), st2.Entries, where)
	require.NoError(t, p.Close(), where)
	if !damage {
		return
	}
	name := snapFileName(m)
	path := filepath.Join(fsDir, name)
	orig := fsys.Files(fsDir)[name]
	for _, bad := range [][]byte{
		append(append([]byte(nil), orig[:len(orig)-1]...), orig[len(orig)-1]^0x40),
		orig[:len(orig)/2],
	} {
		fsys.SetFile(path, bad)
		p, err := raft.OpenFilePersisterOn(fsys, fsDir, 1, fsOpts)
		require.NoError(t, err, where)
		_, err = p.Load()
		require.ErrorIs(t, err, raft.ErrCorrupt, where)
		require.ErrorContains(t, err, path, where)
		require.NoError(t, p.Close())
	}
	fsys.SetFile(path, orig)
}

func snapFileName(m raft.SnapshotMeta) string {
	return fmt.Sprintf("snap-%016x-%016x.snap", m.Index, m.Term)
}

func slicesClip(ents []raft.Entry) []raft.Entry { return ents[:len(ents):len(ents)] }

// TestPitfall07_SnapshotDeletedWhileStillRead (etcd-io/etcd#20657): a reader
// opened before a newer snapshot, a compaction and the deletion of the old
// snapshot file and of segments reads its snapshot to the end, checksum
// verified, on the real file system.
func TestPitfall07_SnapshotDeletedWhileStillRead(t *testing.T) {
	dir := t.TempDir()
	p := fpOpen(t, dir, 1, fsOpts)
	require.NoError(t, p.Append(fpEntries(1, 200, 1, 50)))
	require.NoError(t, p.Sync())
	s1 := raft.SnapshotMeta{Index: 100, Term: 1}
	require.NoError(t, cfSnap(p, s1, cfData(s1, 20000)))
	_, r, err := p.OpenSnapshot()
	require.NoError(t, err)
	defer r.Close()
	s2 := raft.SnapshotMeta{Index: 190, Term: 1}
	require.NoError(t, cfSnap(p, s2, cfData(s2, 10)))
	require.NoError(t, p.Compact(190))
	require.NoError(t, p.Sync())
	files := fpFiles(t, dir)
	_, old := files[snapFileName(s1)]
	assert.False(t, old, "the old snapshot file is deleted")
	data, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, cfData(s1, 20000), data)
}
