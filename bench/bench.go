// Package bench measures github.com/raftkit/raft beside hashicorp/raft and
// etcd-io/raft on the same machine, in the same process, with the same
// workload: a cluster of in-process nodes, concurrent proposers on the
// leader, each proposal waiting until it is applied there.
//
// It is a module of its own so that the other libraries never become
// dependencies of raftkit/raft. cmd/compare runs the cells and prints the
// table (make compare, make compare-scaling at the repository's root).
package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// Libs are the libraries compared, in table order.
var Libs = []string{"raftkit", "hashicorp", "etcd"}

// starters start a cluster of each library.
var starters = map[string]func(ctx context.Context, s spec) (cluster, error){
	"raftkit":   startRaftkit,
	"hashicorp": startHashicorp,
	"etcd":      startEtcd,
}

// Cell is one measurement: one library, one cluster, one workload.
type Cell struct {
	Lib       string        `json:"lib"`
	Nodes     int           `json:"nodes"`
	Size      int           `json:"size"`      // bytes per command, at least 8
	Proposers int           `json:"proposers"` // concurrent proposers on the leader
	Duration  time.Duration `json:"duration"`  // measured window
	Warmup    time.Duration `json:"warmup"`    // unmeasured load before it
	Disk      bool          `json:"disk"`      // durable storage, else in memory
	Dir       string        `json:"dir"`       // parent of the cell's fresh directory (disk)
}

// Mode is "disk" or "mem".
func (c Cell) Mode() string {
	if c.Disk {
		return "disk"
	}
	return "mem"
}

func (c Cell) String() string {
	return fmt.Sprintf("%s/%s/nodes=%d/bytes=%d/proposers=%d", c.Lib, c.Mode(), c.Nodes, c.Size, c.Proposers)
}

// Result is what a cell measured. Err is set, and the figures are not to be
// read, if the cluster failed to start, a proposal failed, or the cluster
// failed to shut down.
type Result struct {
	Cell
	Proposals   int64         `json:"proposals"`     // applied on the leader in the window
	Elapsed     time.Duration `json:"elapsed"`       // window, until the last proposal returned
	PropsPerSec float64       `json:"props_per_sec"` // Proposals / Elapsed
	P50         time.Duration `json:"p50"`           // commit latency: call to applied on the leader
	P99         time.Duration `json:"p99"`
	// AllocsPerOp and BytesPerOp are the process's heap allocations in the
	// window (runtime.MemStats Mallocs and TotalAlloc; every node runs in
	// this process) over Proposals. They include the one Size-byte command
	// the harness allocates per proposal, the same for every library.
	AllocsPerOp float64 `json:"allocs_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	// Entries is how far the leader's commit index moved in the window;
	// Fsyncs how many fsync/fdatasync calls all nodes made meanwhile.
	Entries        uint64  `json:"entries"`
	Fsyncs         int64   `json:"fsyncs"`
	FsyncsPerEntry float64 `json:"fsyncs_per_entry"`
	// PeakLiveHeap is the largest live heap (as of the latest GC) seen
	// in the window, sampled every 20ms: the whole process, all nodes.
	PeakLiveHeap uint64 `json:"peak_live_heap"`
	// Leaked is how many goroutines were left 5s after the cluster shut
	// down, beyond those running before it started.
	Leaked int    `json:"leaked"`
	Err    string `json:"err,omitempty"`
}

// spec is what a starter needs: the number of nodes, and the directory to
// keep them in ("" for memory).
type spec struct {
	nodes int
	dir   string
}

// cluster is one library's running cluster, its leader elected.
type cluster interface {
	// propose proposes cmd on the leader and returns once the leader has
	// applied it. Safe for concurrent use. The cluster may keep cmd.
	propose(ctx context.Context, cmd []byte) error
	// commitIndex is the leader's commit index.
	commitIndex() (uint64, error)
	// fsyncs is how many fsync or fdatasync calls the nodes made so far.
	fsyncs() int64
	// close stops every node and releases their storage. Safe to call
	// more than once and concurrently; later calls return the first's error.
	close() error
}

// Timeouts of a cell beyond its warm-up and window.
const (
	startTimeout = 30 * time.Second // to elect a leader and commit a first entry
	drainTimeout = 30 * time.Second // for the proposals in flight at the deadline
	closeTimeout = 30 * time.Second
	leakTimeout  = 5 * time.Second
)

// Run measures one cell. It never panics on a library's error: the error is
// in Result.Err. A cell on disk runs in a new directory under c.Dir,
// removed afterwards.
func Run(c Cell) (r Result) {
	r.Cell = c
	start, ok := starters[c.Lib]
	switch {
	case !ok:
		r.Err = fmt.Sprintf("unknown library %q", c.Lib)
		return r
	case c.Nodes < 1 || c.Proposers < 1 || c.Duration <= 0:
		r.Err = "nodes, proposers and duration must be positive"
		return r
	case c.Size < 8:
		r.Err = "size must be at least 8 bytes (the command carries a request ID)"
		return r
	}
	before := runtime.NumGoroutine()
	defer func() { r.Leaked = waitGoroutines(before) }()

	s := spec{nodes: c.Nodes}
	if c.Disk {
		dir, err := os.MkdirTemp(c.Dir, "raft-compare-"+c.Lib+"-")
		if err != nil {
			r.Err = err.Error()
			return r
		}
		defer os.RemoveAll(dir)
		s.dir = dir
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout+c.Warmup+c.Duration+drainTimeout)
	defer cancel()
	cl, err := start(ctx, s)
	if err != nil {
		r.Err = "start: " + err.Error()
		return r
	}
	// A proposal that hangs past the cell's deadline is failed by closing
	// the cluster under it (hashicorp's ApplyFuture takes no context).
	stopAbort := context.AfterFunc(ctx, func() { cl.close() })
	defer func() {
		stopAbort()
		if err := closeWithin(cl, closeTimeout); err != nil && r.Err == "" {
			r.Err = "close: " + err.Error()
		}
	}()

	var ids atomic.Uint64 // request IDs, unique over the cell
	if c.Warmup > 0 {
		if _, err := drive(ctx, cl, c, c.Warmup, &ids, nil); err != nil {
			r.Err = "warm-up: " + err.Error()
			return r
		}
	}

	h := new(histogram)
	runtime.GC()
	commit0, err := cl.commitIndex()
	if err != nil {
		r.Err = err.Error()
		return r
	}
	fsync0 := cl.fsyncs()
	peak := sampleLiveHeap()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	t0 := time.Now()
	n, err := drive(ctx, cl, c, c.Duration, &ids, h)
	r.Elapsed = time.Since(t0)
	runtime.ReadMemStats(&ms1)
	r.PeakLiveHeap = peak()
	fsync1 := cl.fsyncs()
	commit1, cerr := cl.commitIndex()
	if err != nil {
		r.Err = err.Error()
		return r
	}
	if cerr != nil {
		r.Err = cerr.Error()
		return r
	}
	r.Proposals = n
	if n == 0 {
		r.Err = "no proposal completed"
		return r
	}
	r.PropsPerSec = float64(n) / r.Elapsed.Seconds()
	r.P50, r.P99 = h.percentile(0.50), h.percentile(0.99)
	r.AllocsPerOp = float64(ms1.Mallocs-ms0.Mallocs) / float64(n)
	r.BytesPerOp = float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(n)
	r.Entries = commit1 - commit0
	r.Fsyncs = fsync1 - fsync0
	if r.Entries > 0 {
		r.FsyncsPerEntry = float64(r.Fsyncs) / float64(r.Entries)
	}
	return r
}

// drive runs c.Proposers goroutines that each propose fresh c.Size-byte
// commands (a unique request ID in the first 8 bytes) in a loop until d has
// passed, and returns how many were applied. The first failure stops every
// proposer and is returned. Latencies go to h, if not nil.
func drive(ctx context.Context, cl cluster, c Cell, d time.Duration, ids *atomic.Uint64, h *histogram) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	deadline := time.Now().Add(d)
	var done atomic.Int64
	var wg sync.WaitGroup
	for range c.Proposers {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				// A new buffer per command, as an application encoding
				// requests would: etcd-io/raft needs the request ID in
				// the data, and every library may keep cmd.
				cmd := make([]byte, c.Size)
				binary.LittleEndian.PutUint64(cmd, ids.Add(1))
				t := time.Now()
				if err := cl.propose(ctx, cmd); err != nil {
					cancel(err) // the first cause stays
					return
				}
				if h != nil {
					h.record(time.Since(t))
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return done.Load(), fmt.Errorf("proposal failed: %w", err)
	}
	return done.Load(), nil
}

// sampleLiveHeap samples the live heap every 20ms until the returned
// function is called, which returns the largest sample. It allocates
// nothing while it samples.
func sampleLiveHeap() func() uint64 {
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var peak uint64
	read := func() {
		metrics.Read(samples)
		if samples[0].Value.Kind() == metrics.KindUint64 {
			peak = max(peak, samples[0].Value.Uint64())
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				read()
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		return peak
	}
}

// closeWithin closes cl, giving up after d.
func closeWithin(cl cluster, d time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- cl.close() }()
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		return fmt.Errorf("cluster did not shut down within %v", d)
	}
}

// waitGoroutines waits up to leakTimeout for the number of goroutines to
// fall back to before, and returns how many more there still are.
func waitGoroutines(before int) int {
	deadline := time.Now().Add(leakTimeout)
	for {
		n := runtime.NumGoroutine() - before
		if n <= 0 || time.Now().After(deadline) {
			return max(n, 0)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLeader polls find every 10ms until it returns true or ctx ends.
func waitLeader(ctx context.Context, find func() bool) error {
	for {
		if find() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no leader elected: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
