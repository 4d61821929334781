package wal

import (
	"encoding/binary"
	"errors"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft/internal/faultfs"
)

// syncedWAL writes a WAL over several segments, all synced, whose last
// record is a one-entry append. It returns the file system, the state
// before and after that last record, and the offset of the last record in
// the last segment.
func syncedWAL(t *testing.T) (fsys *faultfs.FS, before, after model, lastOff int64) {
	fsys = faultfs.New()
	w, _ := mustOpen(t, testDir, quietOpts(fsys))
	var m model
	for i := 0; i < 12; i++ {
		ents := makeEntries(m.next(), 1+i%3, uint64(1+i/4), 40+i*7)
		require.NoError(t, w.Append(ents))
		m = m.appendEnts(ents)
		if i%4 == 3 {
			m.hs = HardState{Term: uint64(1 + i/4), Vote: 1, Commit: m.next() - 2}
			require.NoError(t, w.SetHardState(m.hs))
		}
		if i == 7 {
			require.NoError(t, w.TruncateFrom(m.next()-2))
			m = m.truncate(m.next() - 2)
		}
	}
	require.NoError(t, w.Sync())
	lastOff = w.end()
	last := makeEntries(m.next(), 1, 9, 20)
	require.NoError(t, w.Append(last))
	require.NoError(t, w.Close())
	require.GreaterOrEqual(t, len(segments(t, fsys, testDir)), 3)
	return fsys, m, m.appendEnts(last), lastOff
}

// TestBitFlips flips one bit in every byte of every synced segment, in
// turn. Open must report ErrCorrupt, or, only when the flip is in the last
// record of the last segment, cut that record; it must never return wrong
// data.
func TestBitFlips(t *testing.T) {
	fsys, before, _, lastOff := syncedWAL(t)
	orig := fsys.Files(testDir)
	segs := segments(t, fsys, testDir)
	lastSeg := segs[len(segs)-1]
	flips, corrupt, cut := 0, 0, 0
	for _, name := range segs {
		for i := range orig[name] {
			for _, n := range segs {
				fsys.SetFile(segPath(n), orig[n])
			}
			data := slices.Clone(orig[name])
			data[i] ^= 1 << (i % 8)
			fsys.SetFile(segPath(name), data)
			flips++
			w, st, err := Open(testDir, quietOpts(fsys))
			if err != nil {
				require.ErrorIs(t, err, ErrCorrupt, "%s byte %d", name, i)
				var ce *CorruptError
				require.True(t, errors.As(err, &ce))
				require.NotEmpty(t, ce.File)
				corrupt++
				continue
			}
			w.Close()
			cut++
			require.True(t, name == lastSeg && int64(i) >= lastOff,
				"flip at %s byte %d (last record at %d) was not detected", name, i, lastOff)
			require.NoError(t, before.matches(st, 0), "%s byte %d", name, i)
			require.Len(t, fsys.Files(testDir)[name], int(lastOff), "the last record is cut")
		}
	}
	t.Logf("%d flips: %d ErrCorrupt, %d cut the last record", flips, corrupt, cut)
	require.Positive(t, cut)
}

// TestRecovery_TornTail cuts the last segment at every byte of its last
// record, and appends zeros or garbage after it: Open cuts the damage and
// keeps everything before it.
func TestRecovery_TornTail(t *testing.T) {
	fsys, before, after, lastOff := syncedWAL(t)
	segs := segments(t, fsys, testDir)
	lastPath := segPath(segs[len(segs)-1])
	orig := fsys.Files(testDir)[segs[len(segs)-1]]

	for n := lastOff; n < int64(len(orig)); n++ {
		fsys.SetFile(lastPath, orig[:n])
		w, st := mustOpen(t, testDir, quietOpts(fsys))
		require.NoError(t, w.Close())
		require.NoError(t, before.matches(st, 0), "cut at %d", n)
		require.Len(t, fsys.Files(testDir)[segs[len(segs)-1]], int(lastOff))
	}
	for _, tail := range [][]byte{make([]byte, 1), make([]byte, 4096), []byte("garbage after the log"), orig[lastOff : lastOff+20]} {
		fsys.SetFile(lastPath, append(slices.Clone(orig), tail...))
		w, st := mustOpen(t, testDir, quietOpts(fsys))
		require.NoError(t, w.Close())
		require.NoError(t, after.matches(st, 0))
		require.Equal(t, orig, fsys.Files(testDir)[segs[len(segs)-1]])
	}
}

func TestRecovery_MissingSegment(t *testing.T) {
	fsys, _, _, _ := syncedWAL(t)
	segs := segments(t, fsys, testDir)
	fsys.RemoveFile(segPath(segs[1]))
	_, _, err := Open(testDir, quietOpts(fsys))
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "missing segment")
	t.Log(err)
}

func TestRecovery_CorruptNamesFileAndOffset(t *testing.T) {
	fsys, _, _, _ := syncedWAL(t)
	segs := segments(t, fsys, testDir)
	data := fsys.Files(testDir)[segs[0]]
	_, _, size, bad := readRecord(data, 0)
	require.Empty(t, bad)
	data[size+headerSize+3] ^= 0xff // the body of the record after the metadata
	fsys.SetFile(segPath(segs[0]), data)
	_, _, err := Open(testDir, quietOpts(fsys))
	var ce *CorruptError
	require.True(t, errors.As(err, &ce), "%v", err)
	assert.Equal(t, segPath(segs[0]), ce.File)
	assert.Equal(t, size, ce.Offset)
	assert.Equal(t, "wal: corrupt: /data/wal/"+segs[0]+" at offset 88: record body checksum mismatch (not the last segment)", err.Error())
}

// buildSegment returns a segment holding a metadata record and the given
// records, each a type byte followed by its body.
func buildSegment(meta segMeta, recs ...[]byte) []byte {
	meta.version = formatVersion
	meta.nodeID, meta.clusterID = 1, 7
	var out []byte
	add := func(typ byte, body []byte) {
		rec := make([]byte, recordSize(len(body)))
		copy(rec[headerSize:], body)
		sealRecord(rec, typ, len(body), int64(len(out)))
		out = append(out, rec...)
	}
	mb := make([]byte, metaSize)
	encodeMeta(mb, meta)
	add(recMeta, mb)
	for _, r := range recs {
		add(r[0], r[1:])
	}
	return out
}

func entriesRec(first uint64, n int) []byte {
	b := []byte{recEntries}
	b = binary.LittleEndian.AppendUint64(b, first)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	for i := 0; i < n; i++ {
		b = binary.LittleEndian.AppendUint64(b, 1)
		b = append(b, 0)
		b = binary.LittleEndian.AppendUint32(b, 2)
		b = append(b, 'h', 'i')
	}
	return b
}

func metaRec(m segMeta) []byte {
	b := make([]byte, 1+metaSize)
	b[0] = recMeta
	m.version, m.nodeID, m.clusterID = formatVersion, 1, 7
	encodeMeta(b[1:], m)
	return b
}

func compactRec(index uint64) []byte {
	return binary.LittleEndian.AppendUint64([]byte{recCompact}, index)
}

func truncateRec(index uint64) []byte {
	return binary.LittleEndian.AppendUint64([]byte{recTruncate}, index)
}

func hardStateRec(hs HardState) []byte {
	b := make([]byte, 1+hardStateSize)
	b[0] = recHardState
	encodeHardState(b[1:], hs)
	return b
}

// TestRecovery_Rules checks the replay rules on hand-built segments. Each
// bad case is followed by a valid record, so that it is never mistaken for
// a torn tail.
func TestRecovery_Rules(t *testing.T) {
	seg0 := "0000000000000000-0000000000000001.wal"
	tests := []struct {
		name    string
		files   map[string][]byte
		wantErr string // "" means success
		want    State
	}{{
		name: "valid",
		files: map[string][]byte{
			seg0: buildSegment(segMeta{seq: 0, firstIndex: 1}, entriesRec(1, 3), truncateRec(2), entriesRec(2, 1)),
			"0000000000000001-0000000000000003.wal": buildSegment(segMeta{seq: 1, firstIndex: 3},
				hardStateRec(HardState{Term: 1}), truncateRec(1), entriesRec(1, 1)),
		},
		want: State{HardState: HardState{Term: 1}, FirstIndex: 1, Entries: []Entry{{Index: 1, Term: 1, Data: []byte("hi")}}},
	}, {
		name: "release left a later first segment",
		files: map[string][]byte{
			"0000000000000005-0000000000000064.wal": buildSegment(segMeta{seq: 5, firstIndex: 100, hardState: HardState{Term: 4}}, entriesRec(100, 1)),
		},
		want: State{HardState: HardState{Term: 4}, FirstIndex: 100, Entries: []Entry{{Index: 100, Term: 1, Data: []byte("hi")}}},
	}, {
		name:  "compact within the log",
		files: map[string][]byte{seg0: buildSegment(segMeta{seq: 0, firstIndex: 1}, entriesRec(1, 4), compactRec(3))},
		want:  State{FirstIndex: 4, Entries: []Entry{{Index: 4, Term: 1, Data: []byte("hi")}}},
	}, {
		name:  "compact beyond the end, then entries after it",
		files: map[string][]byte{seg0: buildSegment(segMeta{seq: 0, firstIndex: 1}, entriesRec(1, 2), compactRec(9), entriesRec(10, 1))},
		want:  State{FirstIndex: 10, Entries: []Entry{{Index: 10, Term: 1, Data: []byte("hi")}}},
	}, {
		name: "compaction point restated after release, next segment after a compact beyond the end",
		files: map[string][]byte{
			"0000000000000003-0000000000000014.wal": buildSegment(segMeta{seq: 3, firstIndex: 20}, compactRec(12), entriesRec(20, 2), compactRec(30)),
			"0000000000000004-000000000000001f.wal": buildSegment(segMeta{seq: 4, firstIndex: 31}, compactRec(30)),
		},
		want: State{FirstIndex: 31},
	}, {
		name:    "truncate at the compaction point",
		files:   map[string][]byte{seg0: buildSegment(segMeta{seq: 0, firstIndex: 1}, entriesRec(1, 4), compactRec(2), truncateRec(2), hardStateRec(HardState{Term: 1}))},
		wantErr: "truncate record at index 2, at or below the compaction point 2",
	}, {
		name:    "compact record at index 0",
		files:   map[string][]byte{seg0: buildSegment(segMeta{seq: 0, firstIndex: 1}, compactRec(0), hardStateRec(HardState{Term: 1}))},
		wantErr: "compact record at index 0",
	}, {
		name:    "index gap",
		files:   map[string][]byte{seg0: buildSegment(segMeta{seq: 0, firstIndex: 1}, entriesRec(1, 3), entriesRec(5, 1), hardStateRec(HardState{Term: 1}))},
		wantErr: "index gap: entries start at index 5, want 4",
	}, {
		name:    "truncate beyond the end",
		files:   map[string][]byte{seg0: buildSegment(segMeta{seq: 0, firstIndex: 1}, entriesRec(1, 3), truncateRec(4), hardStateRec(HardState{Term: 1}))},
		wantErr: "truncate record at index 4, beyond the last index 3",
	}, {
		name: "first index does not follow",
		files: map[string][]byte{
			seg0:                                    buildSegment(segMeta{seq: 0, firstIndex: 1}, entriesRec(1, 3)),
			"0000000000000001-0000000000000005.wal": buildSegment(segMeta{seq: 1, firstIndex: 5}),
		},
		wantErr: "segment starts at index 5 but the log before it ends at 3",
	}, {
		name: "hard state differs",
		files: map[string][]byte{
			seg0:                                    buildSegment(segMeta{seq: 0, firstIndex: 1}, hardStateRec(HardState{Term: 2})),
			"0000000000000001-0000000000000001.wal": buildSegment(segMeta{seq: 1, firstIndex: 1, hardState: HardState{Term: 1}}),
		},
		wantErr: "hard state",
	}, {
		name:    "name and metadata disagree",
		files:   map[string][]byte{"0000000000000000-0000000000000002.wal": buildSegment(segMeta{seq: 0, firstIndex: 1})},
		wantErr: "unlike the file name",
	}, {
		name: "duplicate sequence number",
		files: map[string][]byte{
			seg0:                                    buildSegment(segMeta{seq: 0, firstIndex: 1}),
			"0000000000000000-0000000000000002.wal": buildSegment(segMeta{seq: 0, firstIndex: 2}),
		},
		wantErr: "two segments with sequence number 0",
	}, {
		name:    "metadata record missing",
		files:   map[string][]byte{seg0: buildSegment(segMeta{seq: 0, firstIndex: 1})[recordSize(metaSize):]},
		wantErr: "at offset 0: incomplete record header",
	}, {
		name:    "second metadata record",
		files:   map[string][]byte{seg0: buildSegment(segMeta{seq: 0, firstIndex: 1}, metaRec(segMeta{seq: 0, firstIndex: 1}), hardStateRec(HardState{Term: 1}))},
		wantErr: "metadata record after the start of the segment",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := faultfs.New()
			require.NoError(t, fsys.MkdirAll(testDir, 0o700))
			for name, data := range tt.files {
				fsys.SetFile(segPath(name), data)
			}
			w, st, err := Open(testDir, quietOpts(fsys))
			if tt.wantErr != "" {
				require.ErrorIs(t, err, ErrCorrupt)
				assert.Contains(t, err.Error(), tt.wantErr)
				t.Log(err)
				return
			}
			require.NoError(t, err)
			require.NoError(t, w.Close())
			assert.Equal(t, tt.want, st)
		})
	}
}

// TestRecovery_BogusLength gives records lengths far beyond the file: they
// must be rejected before anything is allocated.
func TestRecovery_BogusLength(t *testing.T) {
	for _, n := range []uint32{MaxRecordSize, MaxRecordSize + 1, 1 << 31, 1<<32 - 1} {
		seg := buildSegment(segMeta{seq: 0, firstIndex: 1}, entriesRec(1, 1))
		rec := make([]byte, headerSize)
		binary.LittleEndian.PutUint32(rec[0:4], n)
		rec[4] = recEntries
		binary.LittleEndian.PutUint32(rec[12:16], headerCRC(rec, int64(len(seg))))
		seg = append(seg, rec...)
		fsys := faultfs.New()
		require.NoError(t, fsys.MkdirAll(testDir, 0o700))
		fsys.SetFile(segPath("0000000000000000-0000000000000001.wal"), seg)

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		w, st, err := Open(testDir, quietOpts(fsys))
		runtime.ReadMemStats(&after)
		require.NoError(t, err, "a bogus length in the last record is a torn tail")
		require.Len(t, st.Entries, 1)
		w.Close()
		assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "length %d", n)
	}
}

// TestRecovery_RecordInsideData puts the bytes of a valid record inside an
// entry's data and tears the write after them: the scan past the torn
// record must not take them for a record (the header checksum covers the
// offset a record was written at), so Open cuts the tail instead of
// reporting damage.
func TestRecovery_RecordInsideData(t *testing.T) {
	fsys := faultfs.New()
	w, _ := mustOpen(t, testDir, quietOpts(fsys))
	require.NoError(t, w.Append(makeEntries(1, 1, 1, 10)))
	require.NoError(t, w.Sync())
	off := w.end()
	inner := make([]byte, recordSize(hardStateSize))
	encodeHardState(inner[headerSize:], HardState{Term: 5})
	sealRecord(inner, recHardState, hardStateSize, 0)
	// The entry's data starts 41 bytes into its record: 7 bytes align the
	// inner record to 8 in the segment.
	data := append(append(make([]byte, 7), inner...), make([]byte, 100)...)
	require.NoError(t, w.Append([]Entry{{Index: 2, Term: 1, Data: data}}))
	require.NoError(t, w.Close())
	name := segments(t, fsys, testDir)[0]
	seg := fsys.Files(testDir)[name]
	innerAt := off + headerSize + entriesHeaderSize + entryHeaderSize + 7
	require.Equal(t, inner, seg[innerAt:innerAt+int64(len(inner))])
	require.Zero(t, innerAt%recordAlign)

	fsys.SetFile(segPath(name), seg[:innerAt+int64(len(inner))+10]) // torn after the inner record
	w, st := mustOpen(t, testDir, quietOpts(fsys))
	require.NoError(t, w.Close())
	require.NoError(t, model{}.appendEnts(makeEntries(1, 1, 1, 10)).matches(st, 0))
}
