package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/raftkit/raft/bench"
)

// table prints rows as they come, in fixed-width columns, so that a long
// run shows its progress and still reads as one table.
type table struct {
	w       io.Writer
	started bool
	group   string
}

func newTable(w io.Writer) *table { return &table{w: w} }

const rowFormat = "%-4s %5s %6s  %-9s %9s %10s %9s %9s %9s %8s %12s %9s"

func (t *table) header() {
	if t.started {
		return
	}
	t.started = true
	fmt.Fprintf(t.w, rowFormat+"\n", "mode", "nodes", "bytes", "library", "proposers",
		"props/s", "p50", "p99", "allocs/op", "B/op", "fsyncs/entry", "live heap")
}

func (t *table) row(r bench.Result) {
	t.header()
	group := fmt.Sprintf("%s/%d/%d/%d", r.Mode(), r.Nodes, r.Size, r.Proposers)
	if t.group != "" && group != t.group {
		fmt.Fprintln(t.w)
	}
	t.group = group
	head := fmt.Sprintf("%-4s %5d %6d  %-9s %9d", r.Mode(), r.Nodes, r.Size, r.Lib, r.Proposers)
	if r.Err != "" {
		fmt.Fprintf(t.w, "%s  ERROR: %s\n", head, oneLine(r.Err, 160))
		return
	}
	fsyncs := "-"
	if r.Disk {
		fsyncs = fmt.Sprintf("%.3f", r.FsyncsPerEntry)
	}
	line := fmt.Sprintf("%s %10s %9s %9s %9.1f %8.0f %12s %9s", head,
		thousands(r.PropsPerSec), dur(r.P50), dur(r.P99), r.AllocsPerOp, r.BytesPerOp, fsyncs, mib(r.PeakLiveHeap))
	if r.Leaked > 0 {
		line += fmt.Sprintf("  [%d goroutines left after shutdown]", r.Leaked)
	}
	fmt.Fprintln(t.w, line)
}

// fsync prints the raw disk reference, before the disk rows.
func (t *table) fsync(f bench.FsyncResult) {
	if t.started {
		fmt.Fprintln(t.w)
	}
	if f.Err != "" {
		fmt.Fprintf(t.w, "raw disk on %s: ERROR: %s\n", f.Dir, oneLine(f.Err, 160))
		return
	}
	fmt.Fprintf(t.w, "raw disk on %s (%s), %d KiB appends one at a time: fsync p50 %s p99 %s (%s/s), fdatasync p50 %s p99 %s (%s/s)\n",
		f.Dir, f.FS, f.Size>>10, dur(f.Fsync50), dur(f.Fsync99), thousands(f.FsyncOps),
		dur(f.Datasync50), dur(f.Datasync99), thousands(f.DatasyncOps))
	if f.Writers > 1 {
		fmt.Fprintf(t.w, "raw disk, %d writers at once (a file each, as a disk row's nodes): fsync p50 %s p99 %s (%s/s in all)\n",
			f.Writers, dur(f.Parallel50), dur(f.Parallel99), thousands(f.ParallelOps))
	}
	t.group = ""
	if t.started {
		fmt.Fprintln(t.w)
	}
}

func (t *table) footer() {
	fmt.Fprintln(t.w)
	for _, l := range []string{
		"props/s: proposals applied on the leader per second; p50, p99: from the call until applied on the leader.",
		"allocs/op, B/op: heap allocations of the whole process (every node) per proposal, the harness's one command buffer included.",
		"fsyncs/entry: fsync and fdatasync calls on all nodes per entry the leader committed; live heap: the process's peak live heap.",
	} {
		fmt.Fprintln(t.w, l)
	}
}

// dur prints d with three significant digits, in µs, ms or s.
func dur(d time.Duration) string {
	us := float64(d) / 1e3
	switch {
	case us < 10:
		return fmt.Sprintf("%.2fµs", us)
	case us < 100:
		return fmt.Sprintf("%.1fµs", us)
	case us < 1000:
		return fmt.Sprintf("%.0fµs", us)
	case us < 10e3:
		return fmt.Sprintf("%.2fms", us/1e3)
	case us < 100e3:
		return fmt.Sprintf("%.1fms", us/1e3)
	case us < 1e6:
		return fmt.Sprintf("%.0fms", us/1e3)
	}
	return fmt.Sprintf("%.2fs", us/1e6)
}

func mib(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// thousands prints x rounded, with thin commas: 123,456.
func thousands(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}
