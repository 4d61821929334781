package bench

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestCells runs every library's cell briefly, in memory, with 1 and 16
// proposers: each must elect, commit, shut down cleanly and measure.
func TestCells(t *testing.T) {
	for _, lib := range Libs {
		for _, proposers := range []int{1, 16} {
			c := Cell{Lib: lib, Nodes: 3, Size: 128, Proposers: proposers, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond}
			t.Run(c.String(), func(t *testing.T) {
				r := Run(c)
				checkResult(t, r)
				if r.Fsyncs != 0 {
					t.Errorf("%d fsyncs in memory", r.Fsyncs)
				}
			})
		}
	}
}

// TestDiskCells runs every library on disk, where each must count fsyncs.
func TestDiskCells(t *testing.T) {
	if testing.Short() {
		t.Skip("disk cells take a few seconds")
	}
	for _, lib := range Libs {
		c := Cell{Lib: lib, Nodes: 3, Size: 128, Proposers: 16, Duration: 300 * time.Millisecond, Disk: true, Dir: t.TempDir()}
		t.Run(c.String(), func(t *testing.T) {
			r := Run(c)
			checkResult(t, r)
			if r.Fsyncs <= 0 || r.FsyncsPerEntry <= 0 {
				t.Errorf("fsyncs %d (%.3f per entry): none counted on disk", r.Fsyncs, r.FsyncsPerEntry)
			}
		})
	}
}

func checkResult(t *testing.T, r Result) {
	t.Helper()
	if r.Err != "" {
		t.Fatalf("%v: %s", r.Cell, r.Err)
	}
	if r.PropsPerSec <= 0 || r.Proposals <= 0 {
		t.Fatalf("%v: %d proposals, %.0f/s", r.Cell, r.Proposals, r.PropsPerSec)
	}
	if r.P50 <= 0 || r.P99 < r.P50 {
		t.Errorf("latency p50 %v p99 %v", r.P50, r.P99)
	}
	if r.Entries < uint64(r.Proposals)/2 {
		t.Errorf("commit index moved %d for %d proposals", r.Entries, r.Proposals)
	}
	if r.AllocsPerOp < 1 || r.BytesPerOp < float64(r.Size) {
		t.Errorf("%.1f allocs, %.0f B per proposal: less than the command itself", r.AllocsPerOp, r.BytesPerOp)
	}
	if r.Leaked != 0 {
		t.Errorf("%d goroutines left after shutdown", r.Leaked)
	}
	t.Logf("%.0f props/s p50 %v p99 %v %.1f allocs/op %.0f B/op fsyncs/entry %.3f", r.PropsPerSec, r.P50, r.P99, r.AllocsPerOp, r.BytesPerOp, r.FsyncsPerEntry)
}

// TestBadInput: a cell that cannot run says why in its result.
func TestBadInput(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing", "deeper")
	for _, tc := range []struct {
		c    Cell
		want string
	}{
		{Cell{Lib: "nope", Nodes: 3, Size: 128, Proposers: 1, Duration: time.Millisecond}, "unknown library"},
		{Cell{Lib: "etcd", Nodes: 3, Size: 4, Proposers: 1, Duration: time.Millisecond}, "at least 8"},
		{Cell{Lib: "raftkit", Nodes: 0, Size: 128, Proposers: 1, Duration: time.Millisecond}, "positive"},
		{Cell{Lib: "hashicorp", Nodes: 3, Size: 128, Proposers: 1, Duration: time.Millisecond, Disk: true, Dir: missing}, "no such file"},
	} {
		r := Run(tc.c)
		if !strings.Contains(r.Err, tc.want) {
			t.Errorf("%v: Err %q, want it to mention %q", tc.c, r.Err, tc.want)
		}
	}
}

func TestHistogram(t *testing.T) {
	h := new(histogram)
	if h.percentile(0.5) != 0 {
		t.Fatal("empty histogram has a median")
	}
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.percentile(tc.p)
		if diff := float64(got-tc.want) / float64(tc.want); diff < -0.01 || diff > 0.01 {
			t.Errorf("p%v = %v, want %v within 1%%", tc.p*100, got, tc.want)
		}
	}
	for _, ns := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 40, 1<<63 + 12345} {
		b := bucketOf(ns)
		if b < 0 || b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d out of range", ns, b)
		}
		if v := bucketValue(b); float64(v) < float64(ns)*0.99 || float64(v) > float64(ns)*1.01+1 {
			t.Errorf("bucket of %d is worth %d", ns, v)
		}
	}
}

func TestRawFsync(t *testing.T) {
	r := RawFsync(t.TempDir(), 20*time.Millisecond, 3)
	if r.Err != "" {
		t.Fatal(r.Err)
	}
	if r.Fsync50 <= 0 || r.Datasync50 <= 0 || r.Ops < 40 {
		t.Fatalf("%+v", r)
	}
	if r.Writers != 3 || r.Parallel50 <= 0 || r.Parallel99 < r.Parallel50 || r.ParallelOps <= 0 {
		t.Fatalf("parallel fsync: %+v", r)
	}
	if one := RawFsync(t.TempDir(), 20*time.Millisecond, 1); one.Writers != 0 || one.Parallel50 != 0 {
		t.Fatalf("one writer measured in parallel: %+v", one)
	}
}

// fakeCluster fails every proposal after the first failAfter.
type fakeCluster struct {
	n         atomic.Int64
	failAfter int64
}

func (f *fakeCluster) propose(ctx context.Context, cmd []byte) error {
	if f.n.Add(1) > f.failAfter {
		return errors.New("disk on fire")
	}
	return nil
}
func (f *fakeCluster) commitIndex() (uint64, error) { return uint64(f.n.Load()), nil }
func (f *fakeCluster) fsyncs() int64                { return 0 }
func (f *fakeCluster) close() error                 { return nil }

// TestPeerErrors: a peer that fails to start, or fails a proposal mid-run,
// yields a result that says so rather than figures.
func TestPeerErrors(t *testing.T) {
	starters["fail-start"] = func(context.Context, spec) (cluster, error) { return nil, errors.New("no quorum today") }
	starters["fail-midrun"] = func(context.Context, spec) (cluster, error) { return &fakeCluster{failAfter: 1000}, nil }
	t.Cleanup(func() { delete(starters, "fail-start"); delete(starters, "fail-midrun") })
	for lib, want := range map[string]string{"fail-start": "start: no quorum today", "fail-midrun": "proposal failed: disk on fire"} {
		r := Run(Cell{Lib: lib, Nodes: 3, Size: 128, Proposers: 4, Duration: time.Second})
		if !strings.Contains(r.Err, want) {
			t.Errorf("%s: Err %q, want %q", lib, r.Err, want)
		}
	}
}
