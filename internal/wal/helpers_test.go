package wal

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const testDir = "/data/wal"

// testLogger logs to t.Log, without timestamps.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(tbHandler{t: t})
}

type tbHandler struct{ t testing.TB }

func (h tbHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h tbHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.t.Helper()
	h.t.Log(b.String())
	return nil
}
func (h tbHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h tbHandler) WithGroup(string) slog.Handler      { return h }

// memOpts returns Options on fsys with small segments.
func memOpts(t testing.TB, fsys FS) Options {
	return Options{NodeID: 1, ClusterID: 7, SegmentSize: 1024, FS: fsys, Logger: testLogger(t)}
}

// quietOpts is memOpts without logging, for tests that open thousands of
// times.
func quietOpts(fsys FS) Options {
	return Options{NodeID: 1, ClusterID: 7, SegmentSize: 1024, FS: fsys}
}

func mustOpen(t testing.TB, dir string, opts Options) (*WAL, State) {
	t.Helper()
	w, st, err := Open(dir, opts)
	require.NoError(t, err)
	return w, st
}

// makeEntries returns n entries from index first, with data of size bytes
// derived from the index.
func makeEntries(first uint64, n int, term uint64, size int) []Entry {
	ents := make([]Entry, n)
	for i := range ents {
		idx := first + uint64(i)
		var data []byte
		if size > 0 {
			data = bytes.Repeat([]byte{byte(idx), byte(idx >> 8), byte(term)}, size/3+1)[:size]
		}
		ents[i] = Entry{Index: idx, Term: term, Type: uint8(idx % 2), Data: data}
	}
	return ents
}

// model is what a WAL should hold: the effect of the writes made on it.
type model struct {
	hs   HardState
	ents []Entry // from index 1; those at or below base are placeholders
	base uint64  // compaction point
}

func (m model) next() uint64 { return uint64(len(m.ents)) + 1 }

func (m model) appendEnts(ents []Entry) model {
	m.ents = append(slices.Clip(m.ents), ents...)
	return m
}

func (m model) truncate(index uint64) model {
	index = max(index, m.base+1)
	if index < m.next() {
		m.ents = slices.Clip(m.ents[:index-1])
	}
	return m
}

// compact is the effect of WAL.Compact(index).
func (m model) compact(index uint64) model {
	if index <= m.base {
		return m
	}
	m.base = index
	m.ents = slices.Clip(m.ents)
	for i := m.next(); i <= index; i++ {
		m.ents = append(m.ents, Entry{Index: i})
	}
	return m
}

// matches reports whether a recovered state is m, allowing that segments
// holding entries below released have been deleted.
func (m model) matches(st State, released uint64) error {
	if st.HardState != m.hs {
		return fmt.Errorf("hard state %+v, want %+v", st.HardState, m.hs)
	}
	if next := st.FirstIndex + uint64(len(st.Entries)); next != m.next() {
		return fmt.Errorf("log ends at %d, want %d", next-1, m.next()-1)
	}
	if lo, hi := m.base+1, max(m.base+1, released); st.FirstIndex < lo || st.FirstIndex > hi {
		return fmt.Errorf("first index %d, want %d..%d", st.FirstIndex, lo, hi)
	}
	want := m.ents[st.FirstIndex-1:]
	for i, e := range st.Entries {
		w := want[i]
		if e.Index != w.Index || e.Term != w.Term || e.Type != w.Type || !bytes.Equal(e.Data, w.Data) {
			return fmt.Errorf("entry %d: got {%d %d %d %d bytes}, want {%d %d %d %d bytes}",
				i, e.Index, e.Term, e.Type, len(e.Data), w.Index, w.Term, w.Type, len(w.Data))
		}
	}
	return nil
}

func requireState(t testing.TB, m model, st State) {
	t.Helper()
	require.NoError(t, m.matches(st, 0))
}

// segments returns the names of the segment files in fsys's dir, in order.
func segments(t testing.TB, fsys FS, dir string) []string {
	t.Helper()
	names, err := fsys.ReadDir(dir)
	require.NoError(t, err)
	var segs []string
	for _, n := range names {
		if _, ok := parseSegmentName(n); ok {
			segs = append(segs, n)
		}
	}
	slices.Sort(segs)
	return segs
}

func segPath(name string) string { return filepath.Join(testDir, name) }
