package raft_test

// The crash/restart and partition scenarios of raft_test.go and
// raft_faults_test.go, run on FilePersisters in temporary directories
// instead of MemoryPersisters: the same test bodies, with diskOptions
// choosing the persister. FilePersister has no Crash method, so the
// Cluster's Crash is a kill -9 of the node: what it handed the persister
// survives (a restart's Load reopens the directory, as a new process
// would), and recovery reads it back from the segment files. Each node
// writes small segments, so the runs also cross segment boundaries.

import (
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

// diskSegmentSize is the smallest the WAL accepts, so that even the
// shortest scenario here rolls over to a new segment (a hard state record
// alone is 40 bytes), and a restart recovers across segment boundaries.
const diskSegmentSize = 1 << 10

// diskClusterID is the cluster ID every disk test's nodes write.
const diskClusterID = 0xd15c

// diskOptions returns Options whose Persister opens a FilePersister per
// node in a temporary directory. Call it before rafttest.NewCluster: the
// persisters are closed by a cleanup registered here, which therefore runs
// after the Cluster's own (cleanups run last-registered first), once every
// node has stopped. That cleanup also reopens each directory, checks that
// the log it holds is well formed, and logs how many segments it spans.
func diskOptions(t *testing.T) rafttest.Options {
	t.Helper()
	root := t.TempDir() // its removal, registered first, runs last
	var (
		mu         sync.Mutex
		persisters = map[raft.NodeID]*raft.FilePersister{}
	)
	dirOf := func(id raft.NodeID) string { return filepath.Join(root, fmt.Sprintf("node%d", id)) }
	fopts := raft.FileOptions{ClusterID: diskClusterID, SegmentSize: diskSegmentSize}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for id, p := range persisters {
			if err := p.Close(); err != nil {
				t.Errorf("close node %d's FilePersister: %v", id, err)
			}
		}
		for id := range persisters {
			diskCheckDir(t, dirOf(id), id, fopts)
		}
	})
	return rafttest.Options{
		Persister: func(id raft.NodeID) raft.Persister {
			p, err := raft.OpenFilePersister(dirOf(id), id, fopts)
			if err != nil {
				t.Fatalf("open node %d's FilePersister: %v", id, err)
			}
			mu.Lock()
			persisters[id] = p
			mu.Unlock()
			return p
		},
	}
}

// diskCheckDir reopens node id's closed directory and checks that what it
// recovers is a log a Node would accept: entries 1..n, terms never
// decreasing, commit within the log.
func diskCheckDir(t *testing.T, dir string, id raft.NodeID, fopts raft.FileOptions) {
	t.Helper()
	p, err := raft.OpenFilePersister(dir, id, fopts)
	if err != nil {
		t.Errorf("reopen node %d's directory: %v", id, err)
		return
	}
	defer p.Close()
	st, err := p.Load()
	if err != nil {
		t.Errorf("load node %d's directory: %v", id, err)
		return
	}
	diskCheckState(t, id, st)
	segs := fpSegments(t, dir)
	snaps, err := filepath.Glob(filepath.Join(dir, "*.snap"))
	if err != nil {
		t.Error(err)
	}
	t.Logf("node %d: snapshot %d/%d, %d entries after it, hard state %+v, %d segments (%d deleted), snapshot files %v",
		id, st.Snapshot.Index, st.Snapshot.Term, len(st.Entries), st.HardState, len(segs), diskSegmentsDeleted(segs), diskBase(snaps))
}

// diskSegmentsDeleted returns how many segments were deleted before the
// first of segs (paths in log order): segment sequence numbers start at 0
// and have no gaps, so it is the first one's.
func diskSegmentsDeleted(segs []string) int {
	if len(segs) == 0 {
		return 0
	}
	n, _ := strconv.ParseUint(filepath.Base(segs[0])[:16], 16, 64)
	return int(n)
}

// diskBase returns the base names of paths.
func diskBase(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

// diskCheckState checks that st is a log a Node would accept: entries
// contiguous from the snapshot's index + 1 (from 1 without a snapshot),
// terms never decreasing (nor below the snapshot's), commit within the log.
func diskCheckState(t *testing.T, id raft.NodeID, st raft.PersistentState) {
	t.Helper()
	snap := st.Snapshot
	for i, e := range st.Entries {
		prev := snap.Term
		if i > 0 {
			prev = st.Entries[i-1].Term
		}
		if e.Index != snap.Index+uint64(i)+1 || e.Term < prev {
			t.Errorf("node %d: entry %d is {index %d, term %d} after term %d (snapshot %d/%d)", id, i, e.Index, e.Term, prev, snap.Index, snap.Term)
			return
		}
	}
	if last := snap.Index + uint64(len(st.Entries)); st.HardState.Commit > last {
		t.Errorf("node %d: commit %d beyond the last index %d", id, st.HardState.Commit, last)
	}
}

func TestDisk_Persist1(t *testing.T) { testPersist1(t, diskOptions(t)) }
func TestDisk_Persist2(t *testing.T) { testPersist2(t, diskOptions(t)) }
func TestDisk_Persist3(t *testing.T) { testPersist3(t, diskOptions(t)) }

func TestDisk_PersistOneNodeKeepsAcknowledged(t *testing.T) {
	testPersistOneNodeKeepsAcknowledged(t, diskOptions(t))
}

func TestDisk_FailAgree(t *testing.T) { testFailAgree(t, diskOptions(t)) }
func TestDisk_Rejoin(t *testing.T)    { testRejoin(t, diskOptions(t)) }

// TestDisk_Figure8 runs the Figure 8 scenario for half as long as
// TestFigure8, to keep the package's run time down; it still crashes and
// restarts a dozen or more leaders.
func TestDisk_Figure8(t *testing.T) { faultFigure8(t, diskOptions(t), 8, false, 5*time.Second) }

// TestDisk_ReliableChurn uses seed 4 rather than TestReliableChurn's 21:
// with 21 the random crashes happen to spare the first leader, so the
// whole run stays in term 1; with 4 leaders crash too and the term
// changes a few times (how often depends on scheduling), so the logs
// nodes recover hold entries of several terms.
func TestDisk_ReliableChurn(t *testing.T) { faultChurn(t, diskOptions(t), 4, false) }
