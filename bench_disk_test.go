//go:build linux

package raft_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftkit/raft"
)

// BenchmarkDisk measures the library against the limit the disk sets, in one
// run on one file system (the directory in $RAFT_BENCH_DIR, default
// os.TempDir()):
//
//   - fsync: append then fsync of a plain os.File, 4 KiB and 1 MiB per op:
//     p50/p99 latency and MB/s. This is the floor: no log can commit faster
//     than one fsync.
//   - propose: the 3-node cluster of BenchmarkPropose, each node on its own
//     FilePersister in its own directory, 1, 16 and 256 proposers calling
//     ProposeWait on the leader with 128-byte commands: proposals/s, p50/p99
//     commit latency, allocations per proposal (-benchmem), Sync calls across
//     the three nodes per committed entry (fsyncs/entry), and the p50 commit
//     latency over the 4 KiB fsync p50 of the same process (p50/fsync).
//
// The fsync cases run first, so the ratio uses the last 4 KiB p50 measured;
// if they were filtered out (-bench), the propose cases measure it themselves
// before their timer starts. Run it with make bench-disk.
//
// On tmpfs fsync does nothing, and every figure is meaningless as a disk
// measurement: each case then logs a warning.
func BenchmarkDisk(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("fsync/bytes=%d", size), func(b *testing.B) { benchFsync(b, size) })
	}
	for _, proposers := range []int{1, 16, 256, 1024} {
		name := fmt.Sprintf("propose/nodes=3/bytes=128/proposers=%d", proposers)
		b.Run(name, func(b *testing.B) { benchProposeDisk(b, 3, 128, proposers) })
	}
}

// fsyncP50 is the p50 latency of a 4 KiB append+fsync, measured in this
// process on the benchmark directory's file system by the last
// BenchmarkDisk/fsync/bytes=4096 run (or by fsyncReference). Benchmarks run
// one at a time, so no lock.
var fsyncP50 time.Duration

// minFsyncSamples is the number of fsyncs a run needs before its p50 becomes
// the reference: the b.N=1 probe run of the testing package would
// otherwise set it from one sample.
const minFsyncSamples = 100

func benchFsync(b *testing.B, size int) {
	dir := benchDir(b)
	f, err := os.OpenFile(filepath.Join(dir, "raw"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		lat = append(lat, writeSync(b, f, data))
	}
	b.StopTimer()
	slices.Sort(lat)
	p50 := lat[len(lat)/2]
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	if size == 4<<10 && len(lat) >= minFsyncSamples {
		fsyncP50 = p50
	}
}

// writeSync appends data to f and fsyncs it, returning how long both took.
func writeSync(b *testing.B, f *os.File, data []byte) time.Duration {
	t0 := time.Now()
	if _, err := f.Write(data); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

// fsyncReference returns fsyncP50, measuring it first (500 appends of 4 KiB,
// each followed by fsync) if no fsync case has run in this process.
func fsyncReference(b *testing.B) time.Duration {
	if fsyncP50 != 0 {
		return fsyncP50
	}
	f, err := os.OpenFile(filepath.Join(benchDir(b), "raw"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	data := make([]byte, 4<<10)
	lat := make([]time.Duration, 0, 500)
	for range cap(lat) {
		lat = append(lat, writeSync(b, f, data))
	}
	slices.Sort(lat)
	fsyncP50 = lat[len(lat)/2]
	return fsyncP50
}

func benchProposeDisk(b *testing.B, nodes, size, proposers int) {
	ref := fsyncReference(b)
	dir := benchDir(b)
	// Open every persister before any node starts, so that a failure
	// leaves nothing running.
	var syncs atomic.Int64
	ps := make([]raft.Persister, nodes)
	for i := range ps {
		id := raft.NodeID(i + 1)
		p, err := raft.OpenFilePersister(filepath.Join(dir, fmt.Sprintf("node%d", id)), id, raft.FileOptions{})
		if err != nil {
			for _, p := range ps[:i] {
				p.(io.Closer).Close()
			}
			b.Fatal(err)
		}
		ps[i] = countingPersister{Persister: p, syncs: &syncs}
	}
	bc := newBenchCluster(b, nodes, func(id raft.NodeID) raft.Persister { return ps[id-1] }, false)
	defer bc.stop()
	leader := bc.waitLeader(b)

	commit0, syncs0 := leader.Status().Commit, syncs.Load()
	r := runProposers(b, leader, size, proposers)
	committed, synced := leader.Status().Commit-commit0, syncs.Load()-syncs0

	reportLatency(b, r)
	if committed > 0 {
		b.ReportMetric(float64(synced)/float64(committed), "fsyncs/entry")
	}
	if ref > 0 {
		b.ReportMetric(float64(r.p50())/float64(ref), "p50/fsync")
	}
}

// countingPersister counts Sync calls into syncs, shared by every node of a
// cluster, and closes the Persister it wraps.
type countingPersister struct {
	raft.Persister
	syncs *atomic.Int64
}

func (p countingPersister) Sync() error {
	p.syncs.Add(1)
	return p.Persister.Sync()
}

func (p countingPersister) Close() error {
	if c, ok := p.Persister.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// tmpfsMagic is the f_type statfs(2) reports for tmpfs (TMPFS_MAGIC).
const tmpfsMagic = 0x01021994

// tmpfsWarned holds the benchmarks that have logged the tmpfs warning, so
// that each logs it once, not once per b.N tried.
var tmpfsWarned = map[string]bool{}

// benchDir returns a new directory under $RAFT_BENCH_DIR (default
// os.TempDir()), removed when b's run ends. It logs a warning, once per
// benchmark, if the file system is tmpfs, where fsync is a no-op.
func benchDir(b *testing.B) string {
	root := os.Getenv("RAFT_BENCH_DIR")
	if root == "" {
		root = os.TempDir()
	}
	dir, err := os.MkdirTemp(root, "raft-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			b.Error(err)
		}
	})
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		b.Fatalf("statfs %s: %v", dir, err)
	}
	if st.Type == tmpfsMagic && !tmpfsWarned[b.Name()] {
		tmpfsWarned[b.Name()] = true
		b.Logf("WARNING: %s is on tmpfs, where fsync is a no-op: these figures do not measure a disk (set RAFT_BENCH_DIR to a directory on one)", root)
	}
	return dir
}
