package bench

import (
	"os"
	"path/filepath"
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
	Err         string        `json:"err,omitempty"`
}

// RawFsync measures append+fsync and append+fdatasync of 4 KiB on a new file
// in a new directory under dir, each for about d/2 (at least 20 ops each).
// No log can commit faster than one of these: it is the reference for the
// disk rows.
func RawFsync(dir string, d time.Duration) (r FsyncResult) {
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
		for n < 20 || time.Since(start) < d/2 {
			t := time.Now()
			if _, err := f.Write(data); err != nil {
				return 0, 0, 0, n, err
			}
			if err := sync(f); err != nil {
				return 0, 0, 0, n, err
			}
			h.record(time.Since(t))
			n++
		}
		return h.percentile(0.5), h.percentile(0.99), float64(n) / time.Since(start).Seconds(), n, nil
	}
	var n1, n2 int
	r.Fsync50, r.Fsync99, r.FsyncOps, n1, err = measure((*os.File).Sync)
	if err == nil {
		r.Datasync50, r.Datasync99, r.DatasyncOps, n2, err = measure(fdatasync)
	}
	r.Ops = n1 + n2
	if err != nil {
		r.Err = err.Error()
	}
	return r
}
