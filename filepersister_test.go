package raft_test

// Tests of FilePersister through its public API: bad input to
// OpenFilePersister, what a round trip through the directory preserves,
// what recovery does with a damaged or torn log, and a Node that restarts
// on the same directory.

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft"
)

// fpOpen opens node id's FilePersister in dir and closes it when the test
// ends (a second Close is harmless, so the test may close it first).
func fpOpen(t *testing.T, dir string, id raft.NodeID, opts raft.FileOptions) *raft.FilePersister {
	t.Helper()
	p, err := raft.OpenFilePersister(dir, id, opts)
	require.NoError(t, err, "OpenFilePersister(%s, %d)", dir, id)
	t.Cleanup(func() { p.Close() })
	return p
}

// fpFiles returns every regular file under dir with its content, by path
// relative to dir.
func fpFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		out[rel] = b
		return err
	})
	require.NoError(t, err)
	return out
}

// fpSegments returns the paths of dir's segment files, in log order.
func fpSegments(t *testing.T, dir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	require.NoError(t, err)
	slices.Sort(segs)
	require.NotEmpty(t, segs, "no segment in %s", dir)
	return segs
}

// fpEntries returns entries lo..hi of the given term, each with a data
// payload that is unique and easy to find in a segment file.
func fpEntries(lo, hi, term uint64, size int) []raft.Entry {
	var out []raft.Entry
	for i := lo; i <= hi; i++ {
		data := fmt.Appendf(nil, "<entry %d term %d>", i, term)
		for len(data) < size {
			data = append(data, byte('a'+i%26))
		}
		out = append(out, raft.Entry{Index: i, Term: term, Data: data})
	}
	return out
}

// fpEqualState fails the test unless got is want, entry by entry.
func fpEqualState(t *testing.T, want, got raft.PersistentState) {
	t.Helper()
	require.Equal(t, want.HardState, got.HardState, "hard state")
	require.Len(t, got.Entries, len(want.Entries), "number of entries")
	for i := range want.Entries {
		w, g := want.Entries[i], got.Entries[i]
		if w.Index != g.Index || w.Term != g.Term || w.Type != g.Type || !bytes.Equal(w.Data, g.Data) {
			t.Fatalf("entry %d: got {%d %d %d %q}, want {%d %d %d %q}", i, g.Index, g.Term, g.Type, g.Data, w.Index, w.Term, w.Type, w.Data)
		}
	}
}

// fpWriteSynced writes hs, then each entry as its own synced batch, so that
// every entry is a record of its own and the last record holds the last
// entry. It returns the state written.
func fpWriteSynced(t *testing.T, p *raft.FilePersister, hs raft.HardState, ents []raft.Entry) raft.PersistentState {
	t.Helper()
	require.NoError(t, p.SetHardState(hs))
	require.NoError(t, p.Sync())
	for i := range ents {
		require.NoError(t, p.Append(ents[i:i+1]))
		require.NoError(t, p.Sync())
	}
	return raft.PersistentState{HardState: hs, Entries: ents}
}

func TestFilePersisterOpenPathIsFile(t *testing.T) {
	parent := t.TempDir()
	path := filepath.Join(parent, "not-a-dir")
	require.NoError(t, os.WriteFile(path, []byte("user data"), 0o600))
	before := fpFiles(t, parent)

	p, err := raft.OpenFilePersister(path, 1, raft.FileOptions{})
	require.Error(t, err, "a regular file is not a storage directory")
	require.Nil(t, p)
	t.Logf("error: %v", err)
	require.Contains(t, err.Error(), path, "the error names the path")
	require.NotErrorIs(t, err, raft.ErrLocked)
	require.NotErrorIs(t, err, raft.ErrWrongDirectory)
	require.NotErrorIs(t, err, raft.ErrCorrupt)
	require.Equal(t, before, fpFiles(t, parent), "nothing written next to or into the file")
}

func TestFilePersisterOpenNotWritable(t *testing.T) {
	// Under a regular file no directory can be created, whoever we are
	// (root ignores permission bits, not ENOTDIR).
	t.Run("under a regular file", func(t *testing.T) {
		parent := t.TempDir()
		file := filepath.Join(parent, "file")
		require.NoError(t, os.WriteFile(file, []byte("user data"), 0o600))
		before := fpFiles(t, parent)
		path := filepath.Join(file, "sub")

		_, err := raft.OpenFilePersister(path, 1, raft.FileOptions{})
		require.Error(t, err)
		t.Logf("error: %v", err)
		require.Contains(t, err.Error(), path, "the error names the path")
		require.Equal(t, before, fpFiles(t, parent), "nothing written")
	})
	t.Run("read-only parent", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("running as root, which may write to a read-only directory; the case above covers an unwritable path for root")
		}
		parent := filepath.Join(t.TempDir(), "ro")
		require.NoError(t, os.Mkdir(parent, 0o500))
		t.Cleanup(func() { os.Chmod(parent, 0o700) }) // so that TempDir's cleanup can remove it
		_, err := raft.OpenFilePersister(filepath.Join(parent, "node1"), 1, raft.FileOptions{})
		require.ErrorIs(t, err, fs.ErrPermission)
		entries, err := os.ReadDir(parent)
		require.NoError(t, err)
		require.Empty(t, entries, "nothing written")
	})
}

func TestFilePersisterOpenNodeIDZero(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node0")
	p, err := raft.OpenFilePersister(dir, 0, raft.FileOptions{})
	require.Error(t, err)
	require.Nil(t, p)
	_, statErr := os.Stat(dir)
	require.ErrorIs(t, statErr, fs.ErrNotExist, "no directory created for an invalid node ID")
}

func TestFilePersisterOpenLocked(t *testing.T) {
	dir := t.TempDir()
	first := fpOpen(t, dir, 1, raft.FileOptions{})
	require.NoError(t, first.Append(fpEntries(1, 3, 1, 10)))
	require.NoError(t, first.Sync())

	second, err := raft.OpenFilePersister(dir, 1, raft.FileOptions{})
	require.ErrorIs(t, err, raft.ErrLocked)
	require.Nil(t, second)

	// The failed open disturbed nothing: the first keeps working.
	more := fpEntries(4, 5, 2, 10)
	require.NoError(t, first.Append(more))
	require.NoError(t, first.SetHardState(raft.HardState{Term: 2, Vote: 1, Commit: 4}))
	require.NoError(t, first.Sync())
	st, err := first.Load()
	require.NoError(t, err)
	fpEqualState(t, raft.PersistentState{
		HardState: raft.HardState{Term: 2, Vote: 1, Commit: 4},
		Entries:   append(fpEntries(1, 3, 1, 10), more...),
	}, st)

	// Once the first is closed, the directory can be opened again.
	require.NoError(t, first.Close())
	fpOpen(t, dir, 1, raft.FileOptions{})
}

func TestFilePersisterOpenWrongDirectory(t *testing.T) {
	dir := t.TempDir()
	p := fpOpen(t, dir, 1, raft.FileOptions{ClusterID: 7})
	fpWriteSynced(t, p, raft.HardState{Term: 3, Vote: 1, Commit: 2}, fpEntries(1, 4, 3, 20))
	require.NoError(t, p.Close())
	before := fpFiles(t, dir)

	for _, tc := range []struct {
		name string
		id   raft.NodeID
		opts raft.FileOptions
	}{
		{"other node", 2, raft.FileOptions{ClusterID: 7}},
		{"other cluster", 1, raft.FileOptions{ClusterID: 8}},
		{"default cluster", 1, raft.FileOptions{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := raft.OpenFilePersister(dir, tc.id, tc.opts)
			require.ErrorIs(t, err, raft.ErrWrongDirectory)
			require.Nil(t, q)
			t.Logf("error: %v", err)
			require.Equal(t, before, fpFiles(t, dir), "the directory's files changed")
		})
	}

	// The rightful owner still opens it, with its state intact.
	q := fpOpen(t, dir, 1, raft.FileOptions{ClusterID: 7})
	st, err := q.Load()
	require.NoError(t, err)
	fpEqualState(t, raft.PersistentState{HardState: raft.HardState{Term: 3, Vote: 1, Commit: 2}, Entries: fpEntries(1, 4, 3, 20)}, st)
}

func TestFilePersisterRoundTrip(t *testing.T) {
	dir := t.TempDir()
	opts := raft.FileOptions{ClusterID: 42, SegmentSize: 4 << 10}
	p := fpOpen(t, dir, 3, opts)
	st, err := p.Load()
	require.NoError(t, err)
	fpEqualState(t, raft.PersistentState{}, st)

	// Several batches, a conflict that truncates a suffix, hard states,
	// an entry of each type and an empty command; enough data to fill
	// several segments.
	want := fpEntries(1, 40, 1, 200)
	require.NoError(t, p.SetHardState(raft.HardState{Term: 1, Vote: 2}))
	require.NoError(t, p.Append(want[:25]))
	require.NoError(t, p.Sync())
	require.NoError(t, p.Append(want[25:]))
	require.NoError(t, p.SetHardState(raft.HardState{Term: 1, Vote: 2, Commit: 30}))
	require.NoError(t, p.Sync())
	require.NoError(t, p.TruncateFrom(36))
	tail := []raft.Entry{
		{Index: 36, Term: 2, Type: raft.EntryNoop},
		{Index: 37, Term: 2, Type: raft.EntryNormal, Data: []byte{}},
		{Index: 38, Term: 2, Type: raft.EntryNormal, Data: []byte("after the conflict")},
	}
	require.NoError(t, p.Append(tail))
	hs := raft.HardState{Term: 2, Vote: 3, Commit: 37}
	require.NoError(t, p.SetHardState(hs))
	require.NoError(t, p.Sync())
	want = append(want[:35:35], tail...)
	require.Greater(t, len(fpSegments(t, dir)), 1, "the log should span several segments")

	// Load after writes, without Close, returns the current state.
	st, err = p.Load()
	require.NoError(t, err)
	fpEqualState(t, raft.PersistentState{HardState: hs, Entries: want}, st)
	// And the persister keeps working after that Load.
	next := raft.Entry{Index: 39, Term: 2, Data: []byte("after a Load")}
	require.NoError(t, p.Append([]raft.Entry{next}))
	require.NoError(t, p.Sync())
	want = append(want, next)

	require.NoError(t, p.Close())
	q := fpOpen(t, dir, 3, opts)
	st, err = q.Load()
	require.NoError(t, err)
	fpEqualState(t, raft.PersistentState{HardState: hs, Entries: want}, st)
	// Loading again without writes returns the same.
	st, err = q.Load()
	require.NoError(t, err)
	fpEqualState(t, raft.PersistentState{HardState: hs, Entries: want}, st)
}

func TestFilePersisterAfterClose(t *testing.T) {
	p := fpOpen(t, t.TempDir(), 1, raft.FileOptions{})
	require.NoError(t, p.Append(fpEntries(1, 2, 1, 10)))
	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "a second Close does nothing")

	_, err := p.Load()
	require.Error(t, err, "Load")
	require.Error(t, p.Append(fpEntries(3, 3, 1, 10)), "Append")
	require.Error(t, p.TruncateFrom(1), "TruncateFrom")
	require.Error(t, p.SetHardState(raft.HardState{Term: 1}), "SetHardState")
	require.Error(t, p.Sync(), "Sync")
}

// fpCorruptOffset matches the offset a corruption error names.
var fpCorruptOffset = regexp.MustCompile(`at offset (\d+)`)

func TestFilePersisterCorruptMiddle(t *testing.T) {
	dir := t.TempDir()
	p := fpOpen(t, dir, 1, raft.FileOptions{})
	ents := fpEntries(1, 20, 1, 64)
	fpWriteSynced(t, p, raft.HardState{Term: 1, Vote: 1, Commit: 20}, ents)
	require.NoError(t, p.Close())

	// Flip a byte of entry 10's data: a synced record with ten after it.
	segs := fpSegments(t, dir)
	require.Len(t, segs, 1)
	seg := segs[0]
	b, err := os.ReadFile(seg)
	require.NoError(t, err)
	at := bytes.Index(b, ents[9].Data)
	require.Positive(t, at, "entry 10's data not found in %s", seg)
	at += len(ents[9].Data) / 2
	b[at] ^= 0x40
	require.NoError(t, os.WriteFile(seg, b, 0o600))
	before := fpFiles(t, dir)

	q, err := raft.OpenFilePersister(dir, 1, raft.FileOptions{})
	require.ErrorIs(t, err, raft.ErrCorrupt)
	require.Nil(t, q)
	t.Logf("error: %v", err)
	require.Contains(t, err.Error(), filepath.Base(seg), "the error names the file")
	m := fpCorruptOffset.FindStringSubmatch(err.Error())
	require.NotNil(t, m, "the error names the offset: %v", err)
	off, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	// The offset is that of the damaged record: at or before the flipped
	// byte, within one record of it.
	require.LessOrEqual(t, off, at)
	require.Less(t, at-off, 16+64+64, "offset %d is not the record holding byte %d", off, at)
	require.Zero(t, off%8, "records start at multiples of 8")
	require.Equal(t, before, fpFiles(t, dir), "a failed open changed the directory")
}

func TestFilePersisterTornTail(t *testing.T) {
	dir := t.TempDir()
	opts := raft.FileOptions{SegmentSize: 1 << 10}
	p := fpOpen(t, dir, 1, opts)
	ents := fpEntries(1, 30, 1, 100)
	hs := raft.HardState{Term: 1, Vote: 1, Commit: 25}
	fpWriteSynced(t, p, hs, ents)
	require.NoError(t, p.Close())
	segs := fpSegments(t, dir)
	require.Greater(t, len(segs), 1, "the log should span several segments")

	// A crash tore the last write: the last segment loses its last bytes,
	// which belong to the last record (entry 30's).
	last := segs[len(segs)-1]
	info, err := os.Stat(last)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(last, info.Size()-5))

	var logged bytes.Buffer
	logOpts := opts
	logOpts.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
	q := fpOpen(t, dir, 1, logOpts)
	st, err := q.Load()
	require.NoError(t, err)
	fpEqualState(t, raft.PersistentState{HardState: hs, Entries: ents[:29]}, st)
	t.Logf("log: %s", logged.String())
	require.Contains(t, logged.String(), "level=WARN", "the cut is logged as a warning")
	require.Contains(t, logged.String(), filepath.Base(last), "the warning names the file")

	// The cut is made durable and the log goes on from there.
	next := raft.Entry{Index: 30, Term: 2, Data: []byte("rewritten")}
	require.NoError(t, q.Append([]raft.Entry{next}))
	require.NoError(t, q.Sync())
	require.NoError(t, q.Close())
	r := fpOpen(t, dir, 1, opts)
	st, err = r.Load()
	require.NoError(t, err)
	fpEqualState(t, raft.PersistentState{HardState: hs, Entries: append(ents[:29:29], next)}, st)
}

// TestFilePersisterNodeRestart runs a one-node cluster on a FilePersister,
// stops it, and starts a new Node (as a new process would) on the reopened
// directory: it delivers the same commands at the same indexes.
func TestFilePersisterNodeRestart(t *testing.T) {
	dir := t.TempDir()
	opts := raft.FileOptions{ClusterID: 9}
	cmds := []string{"x=1", "y=2", "x=3", "z=4"}

	p := fpOpen(t, dir, 1, opts)
	n := nodeSingle(t, func(cfg *raft.Config) { cfg.Persister = p })
	cons := nodeConsume(n)
	nodeWaitLeader(t, n)
	want := map[uint64]string{}
	for _, cmd := range cmds {
		ctx, cancel := context.WithTimeout(context.Background(), nodeWait)
		index, _, err := n.ProposeWait(ctx, []byte(cmd))
		cancel()
		require.NoError(t, err, "ProposeWait(%q)", cmd)
		want[index] = cmd
	}
	nodeStop(t, n)
	<-cons.done
	require.Equal(t, want, fpCommands(cons.received()), "first run")
	require.NoError(t, p.Close())

	q := fpOpen(t, dir, 1, opts)
	n2 := nodeSingle(t, func(cfg *raft.Config) { cfg.Persister = q })
	cons2 := nodeConsume(n2)
	var top uint64
	for index := range want {
		top = max(top, index)
	}
	faultWaitFor(t, nodeWait, fmt.Sprintf("the restarted node to deliver up to index %d", top), func() bool {
		msgs := cons2.received()
		return len(msgs) > 0 && msgs[len(msgs)-1].CommandIndex >= top
	})
	nodeStop(t, n2)
	<-cons2.done
	require.Equal(t, want, fpCommands(cons2.received()), "the restarted node replays the same commands at the same indexes")
}

// fpCommands returns the commands in msgs by index.
func fpCommands(msgs []raft.ApplyMsg) map[uint64]string {
	out := map[uint64]string{}
	for _, m := range msgs {
		if m.CommandValid {
			out[m.CommandIndex] = string(m.Command)
		}
	}
	return out
}
