package raft_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

// TestLongRunBoundedMemory (make soak-snapshot) commits RAFT_LONG_ENTRIES
// entries (default 1,000,000) on a 3-node cluster whose applications take
// a snapshot every 10,000 commands, and checks that the log, the heap and
// (with RAFT_LONG_DISK=1, on FilePersisters) the disk stay bounded, not
// growing with the entries committed. It reports the peaks. It is skipped
// unless RAFT_LONG is set: it takes tens of seconds.
func TestLongRunBoundedMemory(t *testing.T) {
	if os.Getenv("RAFT_LONG") == "" {
		t.Skip("set RAFT_LONG=1 (make soak-snapshot) to run")
	}
	total := uint64(1_000_000)
	if v := os.Getenv("RAFT_LONG_ENTRIES"); v != "" {
		_, err := fmt.Sscan(v, &total)
		require.NoError(t, err, "RAFT_LONG_ENTRIES")
	}
	const (
		every    = 10_000
		trailing = 1024
		workers  = 64
	)
	onDisk := os.Getenv("RAFT_LONG_DISK") != ""
	root := t.TempDir()
	net := rafttest.NewNetwork(1)
	defer net.Close()
	peers := []raft.NodeID{1, 2, 3}
	var (
		wg    sync.WaitGroup
		nodes []*raft.Node
	)
	for _, id := range peers {
		var p raft.Persister = raft.NewMemoryPersister()
		if onDisk {
			fp, err := raft.OpenFilePersister(filepath.Join(root, fmt.Sprint(id)), id, raft.FileOptions{SegmentSize: 4 << 20})
			require.NoError(t, err)
			defer fp.Close()
			p = fp
		}
		n, err := raft.NewNode(raft.Config{
			ID: id, Peers: peers, Transport: net.Endpoint(id), Persister: p,
			ElectionTimeout: time.Duration(1+int(id)*4) * 100 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond,
			Seed: uint64(id), SnapshotInterval: every, TrailingEntries: trailing,
		})
		require.NoError(t, err)
		nodes = append(nodes, n)
		wg.Add(1)
		go func() { // owner: this test; exits when Stop closes ApplyCh
			defer wg.Done()
			longRunApp(t, n)
		}()
	}
	defer func() {
		for _, n := range nodes {
			n.Stop()
		}
		wg.Wait()
	}()

	var leader *raft.Node
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if _, ok := n.State(); ok {
				leader = n
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)

	var peakHeap, peakLog, peakDisk atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // owner: this test; exits when stop closes
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			atomicMax(&peakHeap, ms.HeapInuse)
			for _, n := range nodes {
				st := n.Status()
				atomicMax(&peakLog, st.LastIndex-st.FirstIndex+1)
			}
			if onDisk {
				atomicMax(&peakDisk, dirSize(root))
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	start := time.Now()
	var next atomic.Uint64
	var pwg sync.WaitGroup
	cmd := make([]byte, 128)
	for range workers {
		pwg.Add(1)
		go func() { // owner: this test; exits when total proposals are taken
			defer pwg.Done()
			for next.Add(1) <= total {
				if _, _, err := leader.ProposeWait(context.Background(), cmd); err != nil {
					t.Errorf("propose: %v", err)
					return
				}
			}
		}()
	}
	pwg.Wait()
	elapsed := time.Since(start)
	close(stop)
	<-sampled

	st := leader.Status()
	t.Logf("%d entries in %v (%.0f/s); snapshot at %d; peak log %d entries held, peak heap %.1f MiB, peak disk %.1f MiB (3 nodes)",
		st.Commit, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), st.Snapshot.Index,
		peakLog.Load(), float64(peakHeap.Load())/(1<<20), float64(peakDisk.Load())/(1<<20))
	require.GreaterOrEqual(t, st.Commit, total)
	require.Greater(t, st.Snapshot.Index, total-3*every, "the log was compacted near its end")
	// Bounds independent of total: one interval, the trailing entries, and
	// what is in flight (an interval's worth of slack for a slow snapshot).
	require.Less(t, peakLog.Load(), uint64(2*every+trailing+workers), "log entries held")
	require.Less(t, peakHeap.Load(), uint64(512<<20), "heap")
	if onDisk {
		require.Less(t, peakDisk.Load(), uint64(256<<20), "disk")
	}
}

// longRunApp is the application of TestLongRunBoundedMemory: its state is
// the count of commands applied, snapshotted when the node says it is due.
func longRunApp(t *testing.T, n *raft.Node) {
	var count uint64
	for msg := range n.ApplyCh() {
		switch {
		case msg.SnapshotValid:
			var b [8]byte
			_, err := io.ReadFull(msg.Snapshot, b[:])
			msg.Snapshot.Close()
			if err != nil {
				t.Errorf("read snapshot: %v", err)
			}
			count = binary.BigEndian.Uint64(b[:])
		case msg.CommandValid:
			count++
			if msg.SnapshotDue {
				c := count
				err := n.Snapshot(context.Background(), msg.CommandIndex, func(w io.Writer) error {
					_, err := w.Write(binary.BigEndian.AppendUint64(nil, c))
					return err
				})
				if err != nil && !errors.Is(err, raft.ErrStopped) && !errors.Is(err, raft.ErrStaleSnapshot) {
					t.Errorf("snapshot: %v", err)
				}
			}
		}
	}
}

func atomicMax(a *atomic.Uint64, v uint64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// dirSize returns the bytes of the regular files under dir.
func dirSize(dir string) uint64 {
	var n uint64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += uint64(info.Size())
			}
		}
		return nil
	})
	return n
}
