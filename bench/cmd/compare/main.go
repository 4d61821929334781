// Command compare runs raftkit/raft, hashicorp/raft and etcd-io/raft side by
// side, each as an in-process cluster on this machine, with the same
// workload, and prints one table: proposals/s, p50 and p99 commit latency,
// allocations and bytes per proposal, fsyncs per committed entry, and the
// peak live heap. Before the disk rows it measures the disk's raw fsync.
//
// Each cell runs in a child process of its own (-isolate, the default), so
// that one library's heap, goroutines or crash cannot touch another's
// figures; a cell that fails shows its error in its row and the others
// still run.
//
//	go run ./cmd/compare                                   # the default table
//	go run ./cmd/compare -nodes 5                          # 5-node clusters
//	go run ./cmd/compare -size 1024,16384                  # larger commands
//	go run ./cmd/compare -proposers 1,16,256,1024,4096     # proposer scaling
package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftkit/raft/bench"
)

func main() {
	var (
		libs      = flag.String("libs", strings.Join(bench.Libs, ","), "libraries to run, comma-separated")
		modes     = flag.String("modes", "mem,disk", "storage modes to run: mem, disk")
		nodes     = flag.String("nodes", "3", "cluster sizes, comma-separated")
		sizes     = flag.String("size", "128", "command sizes in bytes (at least 8), comma-separated")
		proposers = flag.String("proposers", "1,16,256", "numbers of concurrent proposers, comma-separated")
		duration  = flag.Duration("duration", 3*time.Second, "measured window of each cell")
		warmup    = flag.Duration("warmup", 300*time.Millisecond, "unmeasured load before each window")
		diskDir   = flag.String("disk", defaultDiskDir(), "directory for the disk cells, a fresh one per cell inside it (default $RAFT_BENCH_DIR, else the temporary directory)")
		fsyncDur  = flag.Duration("fsync", time.Second, "how long to measure the raw fsync before the disk rows (0: skip)")
		isolate   = flag.Bool("isolate", true, "run each cell in a child process of its own")
		jsonOut   = flag.String("json", "", "also write the results as JSON to this file")
		csvOut    = flag.String("csv", "", "also write the results as CSV to this file")
		rev       = flag.String("rev", "", "raftkit/raft revision to print (the Makefile passes git's)")
		cellJSON  = flag.String("cell", "", "internal: run this one cell (JSON) and print its result as JSON")
	)
	flag.Parse()
	if *cellJSON != "" {
		os.Exit(runChild(*cellJSON))
	}

	cells, err := plan(*libs, *modes, *nodes, *sizes, *proposers, *duration, *warmup, *diskDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(2)
	}
	out := os.Stdout
	printHeader(out, *rev, *diskDir, cells)
	tw := newTable(out)
	var results []bench.Result
	var fsync *bench.FsyncResult
	failed := false
	for i, c := range cells {
		if c.Disk && (i == 0 || !cells[i-1].Disk) {
			if *fsyncDur > 0 {
				f := bench.RawFsync(*diskDir, *fsyncDur, c.Nodes)
				fsync = &f
				tw.fsync(f)
			}
		}
		var r bench.Result
		if *isolate {
			r = runIsolated(c)
		} else {
			r = bench.Run(c)
		}
		tw.row(r)
		results = append(results, r)
		failed = failed || r.Err != ""
	}
	tw.footer()
	if *jsonOut != "" {
		if err := writeJSON(*jsonOut, results, fsync); err != nil {
			fmt.Fprintln(os.Stderr, "compare:", err)
			failed = true
		}
	}
	if *csvOut != "" {
		if err := writeCSV(*csvOut, results); err != nil {
			fmt.Fprintln(os.Stderr, "compare:", err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

// defaultDiskDir is $RAFT_BENCH_DIR, as for make bench-disk, else
// os.TempDir().
func defaultDiskDir() string {
	if d := os.Getenv("RAFT_BENCH_DIR"); d != "" {
		return d
	}
	return os.TempDir()
}

// plan lists the cells: every memory cell, then every disk cell; within a
// mode by cluster size, command size and proposers, the libraries side by
// side.
func plan(libs, modes, nodes, sizes, proposers string, d, warmup time.Duration, dir string) ([]bench.Cell, error) {
	libList := splitList(libs)
	for _, l := range libList {
		if !slices.Contains(bench.Libs, l) {
			return nil, fmt.Errorf("-libs: unknown library %q (known: %s)", l, strings.Join(bench.Libs, ", "))
		}
	}
	modeList := splitList(modes)
	for _, m := range modeList {
		if m != "mem" && m != "disk" {
			return nil, fmt.Errorf("-modes: unknown mode %q (mem, disk)", m)
		}
	}
	nodeList, err := intList("-nodes", nodes, 1)
	if err != nil {
		return nil, err
	}
	sizeList, err := intList("-size", sizes, 8)
	if err != nil {
		return nil, err
	}
	propList, err := intList("-proposers", proposers, 1)
	if err != nil {
		return nil, err
	}
	if d <= 0 || warmup < 0 {
		return nil, fmt.Errorf("-duration must be positive and -warmup not negative")
	}
	if len(libList) == 0 || len(modeList) == 0 {
		return nil, fmt.Errorf("nothing to run")
	}
	var cells []bench.Cell
	for _, mode := range []string{"mem", "disk"} {
		if !slices.Contains(modeList, mode) {
			continue
		}
		for _, n := range nodeList {
			for _, size := range sizeList {
				for _, p := range propList {
					for _, lib := range libList {
						cells = append(cells, bench.Cell{
							Lib: lib, Nodes: n, Size: size, Proposers: p,
							Duration: d, Warmup: warmup, Disk: mode == "disk", Dir: dir,
						})
					}
				}
			}
		}
	}
	return cells, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(flagName, s string, min int) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < min {
			return nil, fmt.Errorf("%s: %q is not an integer of at least %d", flagName, f, min)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: empty", flagName)
	}
	return out, nil
}

// runChild runs one cell in this process and prints its result as JSON.
func runChild(cellJSON string) int {
	var c bench.Cell
	if err := json.Unmarshal([]byte(cellJSON), &c); err != nil {
		fmt.Fprintln(os.Stderr, "compare -cell:", err)
		return 2
	}
	r := bench.Run(c)
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		fmt.Fprintln(os.Stderr, "compare -cell:", err)
		return 2
	}
	return 0
}

// runIsolated runs c in a child process and returns its result, or a result
// whose Err says how the child failed (crash, timeout, garbage).
func runIsolated(c bench.Cell) bench.Result {
	fail := func(format string, args ...any) bench.Result {
		return bench.Result{Cell: c, Err: fmt.Sprintf(format, args...)}
	}
	exe, err := os.Executable()
	if err != nil {
		return fail("cannot find this program to run the cell: %v", err)
	}
	spec, err := json.Marshal(c)
	if err != nil {
		return fail("%v", err)
	}
	// Generous: the cell bounds itself (start, warm-up, window, drain,
	// close, leak check); this catches a child that hangs regardless.
	limit := 2*time.Minute + c.Warmup + c.Duration
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-cell", string(spec))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if ctx.Err() != nil {
		return fail("timed out after %v", limit)
	}
	if err != nil {
		return fail("child %v: %s", err, lastLines(stderr.String(), 3))
	}
	var r bench.Result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return fail("child printed no result (%v): %s", err, lastLines(stderr.String(), 3))
	}
	return r
}

// lastLines returns the last n non-empty lines of s, joined with " | ".
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// printHeader says what ran, where and how.
func printHeader(w io.Writer, rev, dir string, cells []bench.Cell) {
	m := describeMachine()
	fmt.Fprintf(w, "raft library comparison, %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %s\n", m)
	fmt.Fprintf(w, "libraries: %s\n", libraryVersions(rev))
	hasDisk := slices.ContainsFunc(cells, func(c bench.Cell) bool { return c.Disk })
	if hasDisk {
		fmt.Fprintf(w, "disk: %s (%s)\n", dir, bench.FSType(dir))
		if bench.IsTmpfs(dir) {
			fmt.Fprintf(w, "WARNING: %s is tmpfs, where fsync does nothing: the disk rows do not measure a disk (use -disk DIR)\n", dir)
		}
	}
	c := cells[0]
	fmt.Fprintf(w, "each cell: %v warm-up, then %v measured; all nodes in one process; a proposal counts once applied on the leader\n", c.Warmup, c.Duration)
	fmt.Fprintln(w)
}

// libraryVersions reads the peers' versions from the build, so the table
// says what it measured.
func libraryVersions(rev string) string {
	want := []struct{ path, name string }{
		{"github.com/hashicorp/raft", "hashicorp/raft"},
		{"github.com/hashicorp/raft-boltdb/v2", "raft-boltdb/v2"},
		{"go.etcd.io/bbolt", "bbolt"},
		{"go.etcd.io/raft/v3", "etcd-io/raft"},
	}
	ours := "raftkit/raft (this tree)"
	if rev != "" {
		ours = "raftkit/raft " + rev
	}
	parts := []string{ours}
	info, ok := debug.ReadBuildInfo()
	for _, w := range want {
		v := "?"
		if ok {
			for _, d := range info.Deps {
				if d.Path == w.path {
					v = d.Version
					if d.Replace != nil {
						v = d.Replace.Version
					}
				}
			}
		}
		parts = append(parts, w.name+" "+v)
	}
	return strings.Join(parts, ", ") + ", " + runtime.Version()
}

func writeJSON(path string, results []bench.Result, fsync *bench.FsyncResult) error {
	data, err := json.MarshalIndent(struct {
		Machine string             `json:"machine"`
		Fsync   *bench.FsyncResult `json:"fsync,omitempty"`
		Results []bench.Result     `json:"results"`
	}{describeMachine(), fsync, results}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func writeCSV(path string, results []bench.Result) error {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"lib", "mode", "nodes", "bytes", "proposers", "props_per_sec", "p50_us", "p99_us",
		"allocs_per_op", "bytes_per_op", "fsyncs_per_entry", "peak_live_heap_bytes", "leaked_goroutines", "err"})
	for _, r := range results {
		w.Write([]string{r.Lib, r.Mode(), strconv.Itoa(r.Nodes), strconv.Itoa(r.Size), strconv.Itoa(r.Proposers),
			fmt.Sprintf("%.0f", r.PropsPerSec),
			fmt.Sprintf("%.1f", float64(r.P50)/1e3), fmt.Sprintf("%.1f", float64(r.P99)/1e3),
			fmt.Sprintf("%.2f", r.AllocsPerOp), fmt.Sprintf("%.0f", r.BytesPerOp),
			fmt.Sprintf("%.3f", r.FsyncsPerEntry), strconv.FormatUint(r.PeakLiveHeap, 10),
			strconv.Itoa(r.Leaked), r.Err})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
