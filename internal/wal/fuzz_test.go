package wal

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"maps"
	"runtime"
	"slices"
	"testing"

	"github.com/raftkit/raft/internal/faultfs"
)

// fuzzSegName is the name the fuzzed bytes get: segment 0 from index 1.
const fuzzSegName = "0000000000000000-0000000000000001.wal"

// fixCRCs walks data as records and rewrites their checksums, so that the
// fuzzer gets past them and exercises the decoding of record bodies and the
// replay rules. It stops at the first length that does not fit.
func fixCRCs(data []byte) {
	for off := int64(0); off+headerSize <= int64(len(data)); {
		n := int64(binary.LittleEndian.Uint32(data[off:]))
		size := alignUp(headerSize + n)
		if n > MaxRecordSize || off+size > int64(len(data)) {
			return
		}
		rec := data[off : off+size]
		binary.LittleEndian.PutUint32(rec[8:12], crc32c(rec[headerSize:headerSize+n]))
		binary.LittleEndian.PutUint32(rec[12:16], headerCRC(rec, off))
		off += size
	}
}

// fuzzSeeds returns the segments of a WAL that holds every kind of record
// (compact records included).
func fuzzSeeds(t testing.TB) [][]byte {
	fsys := faultfs.New()
	w, _, err := Open(testDir, quietOpts(fsys))
	if err != nil {
		t.Fatal(err)
	}
	steps := []func() error{
		func() error { return w.Append(makeEntries(1, 3, 1, 20)) },
		func() error { return w.SetHardState(HardState{Term: 1, Vote: 1, Commit: 2}) },
		func() error { return w.TruncateFrom(2) },
		func() error { return w.Append(makeEntries(2, 2, 2, 0)) },
		func() error { return w.Sync() },
		func() error { return w.Compact(2) },
		func() error { return w.Append(makeEntries(4, 8, 2, 150)) }, // rolls over, restating the compaction point
		func() error { return w.SetHardState(HardState{Term: 2, Vote: 1, Commit: 7}) },
		func() error { return w.Close() },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	files := fsys.Files(testDir)
	var out [][]byte
	for _, name := range slices.Sorted(maps.Keys(files)) {
		out = append(out, files[name])
	}
	return out
}

// FuzzReadSegment feeds arbitrary bytes to Open as the only segment (or,
// with second set, as the first of two). Open must not panic or hang,
// must allocate no more than the input allows, must return only ErrCorrupt
// or ErrMismatch (and then leave the file alone), and when it succeeds must
// return a well-formed state that a second Open returns again unchanged.
func FuzzReadSegment(f *testing.F) {
	for _, seg := range fuzzSeeds(f) {
		f.Add(seg, false, false)
		f.Add(seg[:len(seg)-5], true, false)
		f.Add(seg, false, true)
	}
	f.Add([]byte{}, false, false)
	f.Add(make([]byte, 200), false, false)
	f.Fuzz(func(t *testing.T, data []byte, fix, second bool) {
		data = slices.Clone(data)
		if fix {
			fixCRCs(data)
		}
		fsys := faultfs.New()
		if err := fsys.MkdirAll(testDir, 0o700); err != nil {
			t.Fatal(err)
		}
		fsys.SetFile(segPath(fuzzSegName), data)
		if second {
			rec := make([]byte, recordSize(metaSize))
			encodeMeta(rec[headerSize:], segMeta{version: formatVersion, nodeID: 1, clusterID: 7, seq: 1, firstIndex: 1})
			sealRecord(rec, recMeta, metaSize, 0)
			fsys.SetFile(segPath("0000000000000001-0000000000000001.wal"), rec)
		}

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		w, st, err := Open(testDir, quietOpts(fsys))
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(64*len(data)+1<<20) {
			t.Fatalf("Open of %d bytes allocated %d bytes", len(data), alloc)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrMismatch) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			if got := fsys.Files(testDir)[fuzzSegName]; !slices.Equal(got, data) {
				t.Fatalf("failed Open changed the segment")
			}
			return
		}
		if st.FirstIndex == 0 {
			t.Fatalf("first index 0")
		}
		for i, e := range st.Entries {
			if e.Index != st.FirstIndex+uint64(i) {
				t.Fatalf("entry %d has index %d, first index %d", i, e.Index, st.FirstIndex)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		files := fsys.Files(testDir)
		w, st2, err := Open(testDir, quietOpts(fsys))
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		w.Close()
		if !slices.EqualFunc(st.Entries, st2.Entries, entryEqual) || st.HardState != st2.HardState || st.FirstIndex != st2.FirstIndex {
			t.Fatalf("second Open recovered another state")
		}
		for name, content := range fsys.Files(testDir) {
			if !slices.Equal(content, files[name]) {
				t.Fatalf("second Open changed %s", name)
			}
		}
	})
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func entryEqual(a, b Entry) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type && slices.Equal(a.Data, b.Data)
}
