package wal

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// TestStartupLargeLog measures how long Open takes to recover a large log
// from the real disk. It writes WAL_STARTUP_MIB MiB (unset: skipped) of
// 4 KiB entries in 16 MiB synced batches, closes, drops nothing from the
// page cache (run `sync; echo 3 > /proc/sys/vm/drop_caches` between the
// phases by hand for a cold figure), and times Open:
//
//	WAL_STARTUP_MIB=1024 go test -run TestStartupLargeLog -v ./internal/wal/
func TestStartupLargeLog(t *testing.T) {
	mib, _ := strconv.Atoi(os.Getenv("WAL_STARTUP_MIB"))
	if mib <= 0 {
		t.Skip("set WAL_STARTUP_MIB to the log size to recover, in MiB")
	}
	dir := t.TempDir()
	if d := os.Getenv("WAL_STARTUP_DIR"); d != "" {
		dir = d
	}
	opts := Options{NodeID: 1}
	w, _ := mustOpen(t, dir, opts)
	const size = 4 << 10
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	total := uint64(mib) << 20 / size
	batch := make([]Entry, 0, 4096)
	start := time.Now()
	for i := uint64(1); i <= total; i++ {
		batch = append(batch, Entry{Index: i, Term: 1, Data: data})
		if len(batch) == cap(batch) || i == total {
			if err := w.Append(batch); err != nil {
				t.Fatal(err)
			}
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d MiB (%d entries of %d bytes) in %v", mib, total, size, time.Since(start))

	start = time.Now()
	w, st := mustOpen(t, dir, opts)
	elapsed := time.Since(start)
	defer w.Close()
	if uint64(len(st.Entries)) != total || st.Entries[len(st.Entries)-1].Index != total {
		t.Fatalf("recovered %d entries, want %d", len(st.Entries), total)
	}
	t.Logf("Open recovered %d MiB, %d entries, in %v (%.0f MiB/s)", mib, total, elapsed, float64(mib)/elapsed.Seconds())
}
