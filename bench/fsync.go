package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// FsyncResult is the disk's floor: appends of Size bytes to a plain file,
// each followed by fsync (or fdatasync), one at a time.
type FsyncResult struct {
	Dir         string        `json:"dir"`
	FS          string        `json:"fs"`
	Size        int           `json:"size"`
	Ops         int           `json:"ops"`
	Fsync50     time.Duration `json:"fsync_p50"`
	Fsync99     time.Duration `json:"fsync_p99"`
	FsyncOps    float64       `json:"fsync_per_sec"`
	Datasync50  time.Duration `json:"fdatasync_p50"`
	Datasync99  time.Duration `json:"fdatasync_p99"`
	DatasyncOps float64       `json:"fdatasync_per_sec"`
	// Writers files appended to and fsynced at once, each by a goroutine
	// of its own, as the nodes of a disk row do: p50 and p99 of one
	// append+fsync, and fsyncs per second in all. Zero if Writers < 2.
	Writers     int           `json:"writers,omitempty"`
	Parallel50  time.Duration `json:"parallel_fsync_p50,omitempty"`
	Parallel99  time.Duration `json:"parallel_fsync_p99,omitempty"`
	ParallelOps float64       `json:"parallel_fsync_per_sec,omitempty"`
	Err         string        `json:"err,omitempty"`
}

// RawFsync measures append+fsync and append+fdatasync of 4 KiB on a new file
// in a new directory under dir, each for about d/2 (at least 20 ops each).
// No log can commit faster than one of these: it is the reference for the
// disk rows. Then, if writers > 1, it measures append+fsync on that many
// files at once, for about d/2, as a cluster's nodes on one device write:
// a commit waits for a majority of such concurrent flushes, so a lone
// fsync is a floor no disk row reaches, and this is the reference to read
// them against (not a floor either: these writers never pause, the nodes
// do between rounds).
func RawFsync(dir string, d time.Duration, writers int) (r FsyncResult) {
	r.Dir, r.FS, r.Size = dir, fsType(dir), 4<<10
	tmp, err := os.MkdirTemp(dir, "raft-compare-fsync-")
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer os.RemoveAll(tmp)
	f, err := os.OpenFile(filepath.Join(tmp, "raw"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer f.Close()
	data := make([]byte, r.Size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	measure := func(sync func(*os.File) error) (p50, p99 time.Duration, perSec float64, n int, err error) {
		h := new(histogram)
		start := time.Now()
		n, err = appendSyncLoop(f, data, sync, h, start, d/2)
		if err != nil {
			return 0, 0, 0, n, err
		}
		return h.percentile(0.5), h.percentile(0.99), float64(n) / time.Since(start).Seconds(), n, nil
	}
	var n1, n2 int
	r.Fsync50, r.Fsync99, r.FsyncOps, n1, err = measure((*os.File).Sync)
	if err == nil {
		r.Datasync50, r.Datasync99, r.DatasyncOps, n2, err = measure(fdatasync)
	}
	r.Ops = n1 + n2
	if err == nil && writers > 1 {
		r.Writers = writers
		r.Parallel50, r.Parallel99, r.ParallelOps, err = parallelFsync(tmp, writers, d/2, data)
	}
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

// parallelFsync has writers goroutines each append data to a file of its
// own, in a directory of its own under dir, and fsync it, over and over for
// about d (at least 20 times each). It returns the p50 and p99 of one
// append+fsync and the fsyncs per second of all of them together.
func parallelFsync(dir string, writers int, d time.Duration, data []byte) (p50, p99 time.Duration, perSec float64, err error) {
	files := make([]*os.File, writers)
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	for i := range files {
		sub := filepath.Join(dir, fmt.Sprintf("writer%d", i))
		if err := os.Mkdir(sub, 0o700); err != nil {
			return 0, 0, 0, err
		}
		if files[i], err = os.OpenFile(filepath.Join(sub, "raw"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
			return 0, 0, 0, err
		}
	}
	h := new(histogram)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	start := time.Now()
	for i, f := range files {
		wg.Go(func() { _, errs[i] = appendSyncLoop(f, data, (*os.File).Sync, h, start, d) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, 0, 0, err
	}
	return h.percentile(0.5), h.percentile(0.99), float64(h.total()) / elapsed.Seconds(), nil
}

// appendSyncLoop appends data to f and syncs it, recording each pair's
// latency in h, at least 20 times and until d has passed since start. It
// returns how many pairs it completed.
func appendSyncLoop(f *os.File, data []byte, sync func(*os.File) error, h *histogram, start time.Time, d time.Duration) (n int, err error) {
	for ; n < 20 || time.Since(start) < d; n++ {
		t := time.Now()
		if _, err := f.Write(data); err != nil {
			return n, err
		}
		if err := sync(f); err != nil {
			return n, err
		}
		h.record(time.Since(t))
	}
	return n, nil
}
