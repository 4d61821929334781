package raft_test

// Disk faults under running clusters: a disk that fills up (ENOSPC) under a
// single node, a leader and a follower, and crashes as hard as kill -9 and
// power loss. Each node's storage is a faultDisk: a FilePersister that
// rafttest's Cluster.Crash kills (the log's unwritten buffer is lost, as
// with kill -9) and then, on the in-memory faultfs, may also power off
// (the writes no fsync covered are dropped or cut, per faultfs's model),
// before it reopens the directory for the restart. The ENOSPC and power
// loss tests run on faultfs; the kill -9 variants of existing scenarios
// run on real files.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/internal/faultfs"
	"github.com/raftkit/raft/rafttest"
)

// crashMode is what a faultDisk's Crash does.
type crashMode int

const (
	// crashKill is kill -9 of the node's process: the log's buffer is lost,
	// what reached the file system stays (in the page cache, on faultfs
	// too).
	crashKill crashMode = iota
	// crashPowerLoss is kill -9 and then a power loss of the machine (on
	// faultfs only): the file system also drops or cuts, at random, the
	// writes no fsync covered. The machine comes back with a disk that has
	// space again.
	crashPowerLoss
)

// faultDisk is one node's storage: a Persister that forwards to the
// FilePersister open on the node's directory, and whose Crash (called by
// rafttest's Cluster.Crash once the node has stopped) abandons it the hard
// way and opens the directory afresh for the next incarnation.
type faultDisk struct {
	t     *testing.T
	id    raft.NodeID
	dir   string
	mode  crashMode
	fopts raft.FileOptions

	mu    sync.Mutex
	fsys  *faultfs.FS // nil: the operating system's file system
	fp    *raft.FilePersister
	err   error      // why the last open failed (fp is nil then)
	rng   *rand.Rand // chooses what each power loss keeps
	stats diskStats
}

// diskStats counts what a faultDisk's crashes did.
type diskStats struct {
	crashes      int   // Crash calls (Cluster.Close's included)
	bufDropped   int   // bytes of the log's buffer the kills dropped
	powerLosses  int   // crashes that were power losses
	withUnsynced int   // power losses that found unsynced writes to drop or cut
	unsynced     int64 // bytes of those writes
	segsDeleted  int   // WAL segments deleted, summed over the nodes at the end
}

func (s *diskStats) add(o diskStats) {
	s.crashes += o.crashes
	s.bufDropped += o.bufDropped
	s.powerLosses += o.powerLosses
	s.withUnsynced += o.withUnsynced
	s.unsynced += o.unsynced
}

// faultDiskFiles returns the segment files (in log order) and the snapshot
// files in dir on fsys.
func faultDiskFiles(fsys *faultfs.FS, dir string) (segs, snaps []string) {
	names, _ := fsys.ReadDir(dir) // sorted
	for _, n := range names {
		switch {
		case strings.HasSuffix(n, ".wal"):
			segs = append(segs, n)
		case strings.HasSuffix(n, ".snap"):
			snaps = append(snaps, n)
		}
	}
	return segs, snaps
}

// open opens the directory on the current file system. Call with d.mu held.
func (d *faultDisk) open() (*raft.FilePersister, error) {
	if d.fsys == nil {
		return raft.OpenFilePersister(d.dir, d.id, d.fopts)
	}
	return raft.OpenFilePersisterOn(d.fsys, d.dir, d.id, d.fopts)
}

func (d *faultDisk) current() (*raft.FilePersister, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fp == nil {
		return nil, fmt.Errorf("node %d's storage did not reopen: %w", d.id, d.err)
	}
	return d.fp, nil
}

// Load implements raft.Persister.
func (d *faultDisk) Load() (raft.PersistentState, error) {
	p, err := d.current()
	if err != nil {
		return raft.PersistentState{}, err
	}
	return p.Load()
}

// Append implements raft.Persister.
func (d *faultDisk) Append(entries []raft.Entry) error {
	p, err := d.current()
	if err != nil {
		return err
	}
	return p.Append(entries)
}

// TruncateFrom implements raft.Persister.
func (d *faultDisk) TruncateFrom(index uint64) error {
	p, err := d.current()
	if err != nil {
		return err
	}
	return p.TruncateFrom(index)
}

// SetHardState implements raft.Persister.
func (d *faultDisk) SetHardState(hs raft.HardState) error {
	p, err := d.current()
	if err != nil {
		return err
	}
	return p.SetHardState(hs)
}

// Sync implements raft.Persister.
func (d *faultDisk) Sync() error {
	p, err := d.current()
	if err != nil {
		return err
	}
	return p.Sync()
}

// Compact implements raft.Persister.
func (d *faultDisk) Compact(index uint64) error {
	p, err := d.current()
	if err != nil {
		return err
	}
	return p.Compact(index)
}

// CreateSnapshot implements raft.Persister.
func (d *faultDisk) CreateSnapshot(meta raft.SnapshotMeta) (raft.SnapshotWriter, error) {
	p, err := d.current()
	if err != nil {
		return nil, err
	}
	return p.CreateSnapshot(meta)
}

// OpenSnapshot implements raft.Persister.
func (d *faultDisk) OpenSnapshot() (raft.SnapshotMeta, io.ReadCloser, error) {
	p, err := d.current()
	if err != nil {
		return raft.SnapshotMeta{}, nil, err
	}
	return p.OpenSnapshot()
}

// Crash kills the FilePersister (its unwritten buffer is lost), on faultfs
// then powers the machine off if the mode says so, and opens the directory
// again, for the next Load. Cluster.Crash calls it once the node has
// stopped.
func (d *faultDisk) Crash() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.crashes++
	if d.fp != nil {
		d.stats.bufDropped += d.fp.Kill()
	}
	if d.fsys != nil {
		switch d.mode {
		case crashPowerLoss:
			d.stats.powerLosses++
			if n := d.fsys.Unsynced(); n > 0 {
				d.stats.withUnsynced++
				d.stats.unsynced += n
			}
			pick := func(n int) int { return d.rng.IntN(n + 1) }
			d.fsys = d.fsys.Crash(faultfs.CrashPlan{
				DirKeep:  pick,
				FileKeep: pick,
				Cut:      func(n int) int { return d.rng.IntN(n) },
			})
		case crashKill:
			d.fsys.Restart() // the dead process's lock and faults go
		}
	}
	d.fp, d.err = d.open()
	if d.err != nil {
		d.t.Errorf("node %d: open the directory after a crash: %v", d.id, d.err)
	}
}

// FS returns the faultfs the disk is on now (a power loss replaces it), or
// nil on real files.
func (d *faultDisk) FS() *faultfs.FS {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fsys
}

// durable returns what the directory holds, as the next Load would. Call it
// while the node is crashed: it reads through the FilePersister the next
// incarnation will use (whose Load then reopens the directory).
func (d *faultDisk) durable(t *testing.T) raft.PersistentState {
	t.Helper()
	p, err := d.current()
	require.NoError(t, err)
	st, err := p.Load()
	require.NoError(t, err, "node %d: load", d.id)
	return st
}

// faultDisks makes the nodes' faultDisks for a Cluster and checks their
// directories when the test ends.
type faultDisks struct {
	t     *testing.T
	mode  crashMode
	onOS  bool
	seed  uint64
	root  string
	fopts raft.FileOptions

	mu    sync.Mutex
	disks map[raft.NodeID]*faultDisk
}

// newFaultDisks returns the disks of a cluster whose crashes are mode, on
// real files in a temporary directory if onOS, else each node on a
// faultfs of its own (a machine of its own). seed seeds the power losses.
// Call it before rafttest.NewCluster: its cleanup, registered here, then
// runs after the Cluster's (once every node has stopped); it closes each
// FilePersister, reopens the directory and checks the log it holds.
func newFaultDisks(t *testing.T, mode crashMode, onOS bool, seed uint64) *faultDisks {
	t.Helper()
	ds := &faultDisks{
		t: t, mode: mode, onOS: onOS, seed: seed, root: "/data",
		fopts: raft.FileOptions{ClusterID: diskClusterID, SegmentSize: diskSegmentSize},
		disks: map[raft.NodeID]*faultDisk{},
	}
	if onOS {
		ds.root = t.TempDir() // its removal, registered first, runs last
	}
	t.Cleanup(func() {
		ds.mu.Lock()
		defer ds.mu.Unlock()
		var total diskStats
		for id, d := range ds.disks {
			d.mu.Lock()
			total.add(d.stats)
			if d.fp != nil {
				if err := d.fp.Close(); err != nil {
					t.Errorf("close node %d's FilePersister: %v", id, err)
				}
			}
			p, err := d.open()
			d.mu.Unlock()
			if err != nil {
				t.Errorf("reopen node %d's directory: %v", id, err)
				continue
			}
			st, err := p.Load()
			if err != nil {
				t.Errorf("load node %d's directory: %v", id, err)
			} else {
				diskCheckState(t, id, st)
				if fsys := d.FS(); fsys != nil {
					segs, snaps := faultDiskFiles(fsys, d.dir)
					total.segsDeleted += diskSegmentsDeleted(segs)
					t.Logf("node %d: snapshot %d/%d, %d entries after it, %d segments (%d deleted), snapshot files %v",
						id, st.Snapshot.Index, st.Snapshot.Term, len(st.Entries), len(segs), diskSegmentsDeleted(segs), snaps)
				}
			}
			if err := p.Close(); err != nil {
				t.Errorf("close node %d's directory: %v", id, err)
			}
		}
		t.Logf("crashes %d (power losses %d, %d with %d unsynced bytes to drop or cut), %d buffered bytes dropped by kills; %d segments deleted in all",
			total.crashes, total.powerLosses, total.withUnsynced, total.unsynced, total.bufDropped, total.segsDeleted)
	})
	return ds
}

// options returns Options whose Persister makes node id's faultDisk.
func (ds *faultDisks) options() rafttest.Options {
	return rafttest.Options{Persister: func(id raft.NodeID) raft.Persister {
		d := &faultDisk{
			t: ds.t, id: id, mode: ds.mode, fopts: ds.fopts,
			dir: filepath.Join(ds.root, fmt.Sprintf("node%d", id)),
			rng: rand.New(rand.NewPCG(ds.seed, uint64(id))),
		}
		if !ds.onOS {
			d.fsys = faultfs.New()
		}
		var err error
		d.fp, err = d.open()
		if err != nil {
			ds.t.Fatalf("open node %d's FilePersister: %v", id, err)
		}
		ds.mu.Lock()
		ds.disks[id] = d
		ds.mu.Unlock()
		return d
	}}
}

func (ds *faultDisks) get(id raft.NodeID) *faultDisk {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.disks[id]
}

// stats sums the disks' crash counts so far.
func (ds *faultDisks) stats() diskStats {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	var total diskStats
	for _, d := range ds.disks {
		d.mu.Lock()
		total.add(d.stats)
		d.mu.Unlock()
	}
	return total
}

// diskProposeWait records cmd in c's history, proposes it on node id with
// ProposeWait and returns its index, or the error.
func diskProposeWait(c *rafttest.Cluster, id raft.NodeID, cmd string) (uint64, error) {
	n := c.Node(id)
	if n == nil || !faultRecordProposed(c, id, []byte(cmd)) {
		return 0, raft.ErrStopped
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultWait)
	defer cancel()
	index, _, err := n.ProposeWait(ctx, []byte(cmd))
	return index, err
}

// diskCommit has node id commit n commands named prefix-NN, one at a time
// with ProposeWait, records each in into by index, and returns the first
// and last index.
func diskCommit(t *testing.T, c *rafttest.Cluster, id raft.NodeID, prefix string, n int, into map[uint64]string) (first, last uint64) {
	t.Helper()
	for i := range n {
		cmd := fmt.Sprintf("%s-%02d", prefix, i)
		index, err := diskProposeWait(c, id, cmd)
		require.NoError(t, err, cmd)
		into[index] = cmd
		if first == 0 {
			first = index
		}
		last = index
	}
	return first, last
}

// requireDiskFull fails the test unless err says that a persist failed
// because the disk is full.
func requireDiskFull(t *testing.T, err error, what string) {
	t.Helper()
	require.ErrorIs(t, err, raft.ErrPersist, what)
	require.ErrorIs(t, err, syscall.ENOSPC, what)
}

// requireHolds fails the test unless st holds every command of acked
// (index -> command) at its index.
func requireHolds(t *testing.T, st raft.PersistentState, acked map[uint64]string, what string) {
	t.Helper()
	for index, cmd := range acked {
		require.LessOrEqual(t, index, uint64(len(st.Entries)), "%s: acknowledged index %d lost (log ends at %d)", what, index, len(st.Entries))
		e := st.Entries[index-1]
		require.Equal(t, raft.EntryNormal, e.Type, "%s: index %d", what, index)
		require.Equal(t, cmd, string(e.Data), "%s: index %d", what, index)
	}
}

// TestDisk_FullSingleNode fills the disk of a one-node cluster: the
// proposal whose write runs out of space fails with an error that is both
// ErrPersist and ENOSPC, Status says so, and nothing is acknowledged any
// more. The directory then holds every acknowledged entry however the
// machine goes down (a process restart keeps what the failed write put in
// the files, a power loss any part of that), opens without ErrCorrupt,
// and a new node on it works.
func TestDisk_FullSingleNode(t *testing.T) {
	disks := newFaultDisks(t, crashPowerLoss, false, 1)
	c := rafttest.NewCluster(t, 1, disks.options())
	const id = raft.NodeID(1)
	d := disks.get(id)
	c.Leader()

	acked := map[uint64]string{}
	_, last := diskCommit(t, c, id, "full-one", 40, acked) // over 1 KiB segments: several rollovers

	fsys := d.FS()
	fsys.SetSpace(10) // less than any record: the next write is torn
	_, err := diskProposeWait(c, id, "full-one-refused")
	requireDiskFull(t, err, "ProposeWait on the full disk")
	t.Log(err)
	requireDiskFull(t, c.Node(id).Status().Err, "Status().Err")
	for i := range 3 {
		_, err := diskProposeWait(c, id, fmt.Sprintf("full-one-after-%d", i))
		requireDiskFull(t, err, "a later ProposeWait")
	}
	_, _, err = c.Propose(context.Background(), id, []byte("full-one-after-propose"))
	requireDiskFull(t, err, "a later Propose")
	require.Equal(t, last, c.LastApplied(id), "applied after the disk filled up")

	// Stop the node: a kill -9 and a power loss (Crash). Then look at the
	// disk as each way down would leave it, with space freed.
	c.Crash(id)
	fsys.SetSpace(-1)
	fsys.Restart()
	keepAll := func(n int) int { return n }
	views := map[string]*faultfs.FS{
		"process restart":            fsys,
		"power loss, none kept":      fsys.Crash(faultfs.CrashPlan{}),
		"power loss, all kept":       fsys.Crash(faultfs.CrashPlan{DirKeep: keepAll, FileKeep: keepAll}),
		"power loss, last write cut": fsys.Crash(faultfs.CrashPlan{DirKeep: keepAll, FileKeep: func(n int) int { return max(n-1, 0) }, Cut: func(n int) int { return n / 2 }}),
	}
	for name, v := range views {
		p, err := raft.OpenFilePersisterOn(v, d.dir, id, d.fopts)
		require.NoError(t, err, name) // ErrCorrupt in particular
		st, err := p.Load()
		require.NoError(t, err, name)
		requireHolds(t, st, acked, name)
		for _, e := range st.Entries {
			require.NotEqual(t, "full-one-refused", string(e.Data), "%s: a torn write survived whole", name)
		}
		require.NoError(t, p.Close(), name)
	}

	// A new node on the directory the crash left replays what was
	// acknowledged and accepts proposals.
	require.Len(t, d.durable(t).Entries, int(last), "the power loss kept exactly the acknowledged log (and the leader's no-op)")
	c.Restart(id)
	c.Leader()
	index, err := diskProposeWait(c, id, "full-one-after-restart")
	require.NoError(t, err)
	require.Greater(t, index, last)
	for index, cmd := range acked {
		wantApplied(t, c, index, 1, cmd)
	}
}

// TestDisk_FullLeaderStepsAside fills the leader's disk: its proposal
// fails with ErrPersist and ENOSPC, it stops acknowledging and leading,
// the other two elect a leader and commit without it, and after space is
// freed it restarts with its durable log intact and catches up.
func TestDisk_FullLeaderStepsAside(t *testing.T) {
	disks := newFaultDisks(t, crashPowerLoss, false, 2)
	c := rafttest.NewCluster(t, 3, disks.options())
	old := waitStableLeader(t, c, faultWait, c.IDs...)

	acked := map[uint64]string{} // acknowledged by the full node
	_, last := diskCommit(t, c, old, "full-leader", 20, acked)
	c.WaitApplied(last, 3)

	disks.get(old).FS().SetSpace(0)
	refused, err := diskProposeWait(c, old, "full-leader-refused")
	if err == nil {
		// The two followers' acknowledgements can commit the entry before
		// the leader's own write of it fails: a majority holds it, so the
		// leader may apply it and answer (it never counts itself without
		// its Sync). Its disk is full all the same: it fails right after.
		t.Logf("the followers committed index %d before the full leader's write failed", refused)
		faultWaitFor(t, faultWait, "the full leader to fail", func() bool { return c.Node(old).Status().Err != nil })
	} else {
		requireDiskFull(t, err, "ProposeWait on the full leader")
	}
	requireDiskFull(t, c.Node(old).Status().Err, "Status().Err of the full leader")
	_, isLeader := c.Node(old).State()
	require.False(t, isLeader, "the full node still says it leads")

	leader := waitStableLeader(t, c, faultWait, others(c.IDs, old)...)
	require.NotEqual(t, old, leader)
	later := map[uint64]string{} // committed without the full node
	first, last := diskCommit(t, c, leader, "full-leader-later", 20, later)
	c.WaitApplied(last, 2)
	_, err = diskProposeWait(c, old, "full-leader-after")
	requireDiskFull(t, err, "ProposeWait on the full node later")
	require.Less(t, c.LastApplied(old), first, "the full node applied entries it never stored")
	require.Less(t, c.Node(leader).Status().Progress[old].Match, first, "the full node acknowledged entries")
	require.NoError(t, c.Check())

	// The machine goes down (power loss) and comes back with space.
	c.Crash(old)
	st := disks.get(old).durable(t)
	requireHolds(t, st, acked, fmt.Sprintf("node %d's durable log", old))
	c.Restart(old)
	faultWaitCaughtUp(t, c, leader, old)
	for index, cmd := range later {
		wantApplied(t, c, index, 3, cmd)
	}
	for index, cmd := range acked {
		wantApplied(t, c, index, 3, cmd)
	}
	c.One([]byte("full-leader-final"), 3, true)
}

// TestDisk_FullFollower fills a follower's disk: the cluster keeps
// committing with the other two, the follower fails with ErrPersist and
// ENOSPC and acknowledges nothing more; killed and restarted once space
// is freed, it holds what it had acknowledged and catches up.
func TestDisk_FullFollower(t *testing.T) {
	disks := newFaultDisks(t, crashKill, false, 3)
	c := rafttest.NewCluster(t, 3, disks.options())
	leader := waitStableLeader(t, c, faultWait, c.IDs...)
	f := peer(leader, 1, 3)

	before := map[uint64]string{}
	_, last := diskCommit(t, c, leader, "full-follower", 20, before)
	faultWaitCaughtUp(t, c, leader, f) // f acknowledged everything

	disks.get(f).FS().SetSpace(0)
	later := map[uint64]string{}
	for i := range 10 {
		cmd := fmt.Sprintf("full-follower-later-%02d", i)
		index, err := diskProposeWait(c, leader, cmd)
		require.NoError(t, err, cmd)
		later[index] = cmd
	}
	faultWaitFor(t, faultWait, fmt.Sprintf("node %d to fail on its full disk", f), func() bool {
		return c.Node(f).Status().Err != nil
	})
	requireDiskFull(t, c.Node(f).Status().Err, "Status().Err of the full follower")
	_, err := diskProposeWait(c, f, "full-follower-refused")
	requireDiskFull(t, err, "ProposeWait on the full follower")

	// The others go on committing; the full node acknowledges none of it.
	first, last := diskCommit(t, c, leader, "full-follower-after", 10, later)
	c.WaitApplied(last, 2)
	require.Less(t, c.Node(leader).Status().Progress[f].Match, first, "the full node acknowledged entries")
	require.Less(t, c.LastApplied(f), first, "the full node applied entries it never stored")
	require.NoError(t, c.Check())

	// Free space, kill -9 the node and restart it.
	disks.get(f).FS().SetSpace(-1)
	c.Crash(f)
	st := disks.get(f).durable(t)
	requireHolds(t, st, before, fmt.Sprintf("node %d's durable log", f))
	c.Restart(f)
	faultWaitCaughtUp(t, c, leader, f)
	for index, cmd := range later {
		wantApplied(t, c, index, 3, cmd)
	}
	for index, cmd := range before {
		wantApplied(t, c, index, 3, cmd)
	}
}

// TestDisk_PowerLossChurn crashes random nodes of a five-node cluster many
// times, each a power loss that drops or cuts at random the writes no
// fsync covered, while clients propose with ProposeWait. Most crashes
// take the machine down in the middle of its disk work: at its next fsync
// (after the write it covers) or a few disk operations ahead, so that
// unsynced writes are there to lose. Every acknowledged command must be
// applied at its index by all five nodes in the end, and the Cluster's
// checker must find no disagreement.
func TestDisk_PowerLossChurn(t *testing.T) { diskPowerLossChurn(t, 5, nil) }

// diskPowerLossChurn is TestDisk_PowerLossChurn with defSeed as the
// default seed and mod, if set, adjusting the cluster's Options.
func diskPowerLossChurn(t *testing.T, defSeed uint64, mod func(*rafttest.Options)) {
	seed := faultSeed(t, defSeed)
	rng := rand.New(rand.NewPCG(seed, 2))
	disks := newFaultDisks(t, crashPowerLoss, false, seed)
	opts := disks.options()
	opts.Seed = seed
	if mod != nil {
		mod(&opts)
	}
	c := rafttest.NewCluster(t, 5, opts)

	type ack struct {
		index uint64
		cmd   string
	}
	var (
		stop  atomic.Bool
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked []ack
	)
	for me := range 3 {
		wg.Add(1)
		go func() { // owner: the test; exits when stop is set
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				cmd := fmt.Sprintf("power-%d-%d", me, i)
				done := false
				for _, id := range c.IDs {
					n := c.Node(id)
					if n == nil {
						continue
					}
					if _, isLeader := n.State(); !isLeader || !faultRecordProposed(c, id, []byte(cmd)) {
						continue
					}
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					index, _, err := n.ProposeWait(ctx, []byte(cmd))
					cancel()
					if err == nil {
						mu.Lock()
						acked = append(acked, ack{index, cmd})
						mu.Unlock()
					}
					done = true
					break
				}
				if !done {
					time.Sleep(time.Duration(29+me*7) * time.Millisecond) // no leader: back off
				} else {
					time.Sleep(10 * time.Millisecond) // pace: a few thousand commands in all
				}
			}
		}()
	}

	var down []raft.NodeID // at most two: three nodes can still commit
	const powerLosses = 12
	dying := 0 // crashes that hit the machine in the middle of its disk work
	for crashes := 0; crashes < powerLosses; {
		if len(down) == 2 || (len(down) > 0 && rng.IntN(2) == 0) {
			i := rng.IntN(len(down))
			c.Restart(down[i])
			down = slices.Delete(down, i, i+1)
		} else {
			id := others(c.IDs, down...)[rng.IntN(len(c.IDs)-len(down))]
			fsys := disks.get(id).FS()
			armed := true
			switch rng.IntN(3) {
			case 0: // at the next fsync, after the write it covers
				var dead bool
				fsys.SetFault(func(op, path string) error {
					if op == "sync" {
						dead = true
					}
					if dead {
						return faultfs.ErrCrashed
					}
					return nil
				})
			case 1: // within the next few disk operations
				fsys.SetCrashAt(fsys.Ops() + 1 + rng.IntN(6))
			default: // now, between two persists
				armed = false
			}
			// Let an armed fault strike if the node does disk work soon;
			// a node with nothing to write is simply crashed.
			for deadline := time.Now().Add(3 * time.Second); armed && time.Now().Before(deadline); {
				if err := c.Node(id).Status().Err; err != nil {
					require.ErrorIs(t, err, faultfs.ErrCrashed)
					dying++
					break
				}
				time.Sleep(10 * time.Millisecond) // poll interval
			}
			c.Crash(id)
			down = append(down, id)
			crashes++
		}
		time.Sleep(rafttest.ElectionTimeout / 2) // let the churn act
	}
	for _, id := range down {
		c.Restart(id)
	}
	stop.Store(true)
	wg.Wait()

	last := c.One([]byte("power-last"), 5, true)
	st := disks.stats()
	t.Logf("%d commands acknowledged, last index %d; %d crashes in the middle of disk work", len(acked), last, dying)
	require.Equal(t, powerLosses, st.powerLosses, "power losses")
	require.Positive(t, dying, "no crash hit a node in the middle of its disk work")
	require.Positive(t, st.withUnsynced, "no power loss found unsynced writes to drop")
	require.NotEmpty(t, acked, "no command acknowledged during the churn")
	for _, a := range acked {
		require.Less(t, a.index, last)
		wantApplied(t, c, a.index, 5, a.cmd)
	}
	require.NoError(t, c.Check())
}

// TestDisk_KillPersistOneNodeKeepsAcknowledged is
// TestDisk_PersistOneNodeKeepsAcknowledged with each crash a kill -9 on
// real files: what the node's log had buffered and not written is lost,
// not flushed by a Close.
func TestDisk_KillPersistOneNodeKeepsAcknowledged(t *testing.T) {
	disks := newFaultDisks(t, crashKill, true, 0)
	testPersistOneNodeKeepsAcknowledged(t, disks.options())
	require.GreaterOrEqual(t, disks.stats().crashes, 5)
}

// TestDisk_FullNodeRestartsOnSameFilePersister restarts a node whose disk
// filled up on the same FilePersister, as rafttest's Restart does when the
// persister has no Crash method: Load must reopen the directory as a
// restarted process would, not refuse because the log it closes had
// failed.
func TestDisk_FullNodeRestartsOnSameFilePersister(t *testing.T) {
	fsys := faultfs.New()
	fopts := raft.FileOptions{ClusterID: diskClusterID, SegmentSize: diskSegmentSize}
	p, err := raft.OpenFilePersisterOn(fsys, "/data/node1", 1, fopts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) }) // after the Cluster's
	c := rafttest.NewCluster(t, 1, rafttest.Options{Persister: func(raft.NodeID) raft.Persister { return p }})
	c.Leader()
	acked := map[uint64]string{}
	for i := range 10 {
		cmd := fmt.Sprintf("same-%d", i)
		index, err := diskProposeWait(c, 1, cmd)
		require.NoError(t, err)
		acked[index] = cmd
	}
	fsys.SetSpace(10)
	_, err = diskProposeWait(c, 1, "same-refused")
	requireDiskFull(t, err, "ProposeWait on the full disk")

	fsys.SetSpace(-1)
	c.Restart(1) // Load on p, whose log failed
	c.Leader()
	_, err = diskProposeWait(c, 1, "same-after-restart")
	require.NoError(t, err)
	for index, cmd := range acked {
		wantApplied(t, c, index, 1, cmd)
	}
}
