package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// MaxRecordSize is the largest record body, in bytes, that the WAL writes
// or accepts when reading. Append splits large batches into several
// records, so it limits only the size of one entry: an entry whose Data is
// longer than MaxRecordSize-25 bytes is refused. A length prefix above it,
// or beyond the end of the file, is treated as damage before anything is
// allocated.
const MaxRecordSize = 64 << 20

// Record layout; see doc.go.
const (
	headerSize  = 16 // length u32, type u8, 3 zero bytes, body CRC u32, header CRC u32
	recordAlign = 8  // every record starts at a multiple of 8 in its segment

	entriesHeaderSize = 12 // first index u64, count u32
	entryHeaderSize   = 13 // term u64, type u8, data length u32
	hardStateSize     = 24 // term, vote, commit: u64 each
	truncateSize      = 8  // index u64
	compactSize       = 8  // index u64
	metaSize          = 72 // see encodeMeta

	maxEntryDataSize = MaxRecordSize - entriesHeaderSize - entryHeaderSize
)

// Record types. Zero is not a type, so that a zero-filled header never
// passes for a record.
const (
	recMeta      byte = 1 // first record of every segment
	recEntries   byte = 2 // a batch of contiguous entries
	recHardState byte = 3 // the new hard state
	recTruncate  byte = 4 // remove every entry with index >= the one given
	recCompact   byte = 5 // entries at or below the index given are gone
)

// formatVersion is written in every segment's metadata record. A reader
// refuses segments with another version.
const formatVersion = 1

// magic opens the body of every segment's metadata record.
var magic = [8]byte{'r', 'a', 'f', 't', 'w', 'a', 'l', 0}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcU64 extends a CRC-32C with the 8 little-endian bytes of v, without
// building a slice (so that it never allocates).
func crcU64(crc uint32, v uint64) uint32 {
	crc = ^crc
	for i := 0; i < 8; i++ {
		crc = castagnoli[byte(crc)^byte(v)] ^ (crc >> 8)
		v >>= 8
	}
	return ^crc
}

// headerCRC is the checksum stored in a header's last 4 bytes: CRC-32C of
// the first 12 header bytes (which hold the body's CRC) followed by the
// record's offset in its segment. The offset makes a record valid only
// where it was written, so that the bytes of a record found inside another
// record's data, or left over from earlier content, are never taken for a
// record when recovery scans past damage.
func headerCRC(hdr []byte, off int64) uint32 {
	return crcU64(crc32.Update(0, castagnoli, hdr[:12]), uint64(off))
}

// alignUp rounds n up to a multiple of recordAlign.
func alignUp(n int64) int64 { return (n + recordAlign - 1) &^ (recordAlign - 1) }

// recordSize is the size on disk of a record whose body has n bytes.
func recordSize(n int) int64 { return alignUp(int64(headerSize + n)) }

// sealRecord fills in the header of the record that occupies rec (header,
// body and padding, already zeroed) and that starts at offset off of its
// segment.
func sealRecord(rec []byte, typ byte, bodyLen int, off int64) {
	hdr := rec[:headerSize]
	binary.LittleEndian.PutUint32(hdr[0:4], uint32(bodyLen))
	hdr[4] = typ
	hdr[5], hdr[6], hdr[7] = 0, 0, 0
	binary.LittleEndian.PutUint32(hdr[8:12], crc32.Checksum(rec[headerSize:headerSize+bodyLen], castagnoli))
	binary.LittleEndian.PutUint32(hdr[12:16], headerCRC(hdr, off))
}

// readRecord decodes the record at offset off of a segment's content data.
// It returns the record's type, its body (a subslice of data) and its size
// on disk including padding; or, if the bytes at off are not a whole valid
// record, why not. It allocates nothing: a length is checked against the
// bytes present before it is used.
func readRecord(data []byte, off int64) (typ byte, body []byte, size int64, bad string) {
	rest := int64(len(data)) - off
	if rest < headerSize {
		return 0, nil, 0, "incomplete record header"
	}
	hdr := data[off : off+headerSize]
	if binary.LittleEndian.Uint32(hdr[12:16]) != headerCRC(hdr, off) {
		return 0, nil, 0, "record header checksum mismatch"
	}
	n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
	if n > MaxRecordSize {
		return 0, nil, 0, "record length above MaxRecordSize"
	}
	size = alignUp(headerSize + n)
	if size > rest {
		return 0, nil, 0, "record extends past the end of the file"
	}
	body = data[off+headerSize : off+headerSize+n]
	if binary.LittleEndian.Uint32(hdr[8:12]) != crc32.Checksum(body, castagnoli) {
		return 0, nil, 0, "record body checksum mismatch"
	}
	for _, b := range data[off+headerSize+n : off+size] {
		if b != 0 {
			return 0, nil, 0, "nonzero record padding"
		}
	}
	typ = hdr[4]
	if hdr[5]|hdr[6]|hdr[7] != 0 || typ < recMeta || typ > recCompact {
		return 0, nil, 0, "unknown record type"
	}
	return typ, body, size, ""
}

// nextValidRecord returns the offset of the first whole valid record that
// starts after off, or -1 if there is none. Recovery uses it to tell a torn
// tail (nothing valid follows the damage) from damage in the middle of the
// log. Only the 16-byte header is checksummed at most positions, so a scan
// costs about one pass over the data.
func nextValidRecord(data []byte, off int64) int64 {
	for p := alignUp(off + 1); p+headerSize <= int64(len(data)); p += recordAlign {
		if _, _, _, bad := readRecord(data, p); bad == "" {
			return p
		}
	}
	return -1
}

// segMeta is the body of a segment's metadata record.
type segMeta struct {
	version    uint32
	nodeID     uint64
	clusterID  uint64
	seq        uint64    // the segment's sequence number, as in its name
	firstIndex uint64    // index of the first entry the segment may hold
	hardState  HardState // the hard state when the segment was created
}

// encodeMeta writes m into b, which must hold metaSize bytes.
func encodeMeta(b []byte, m segMeta) {
	copy(b[0:8], magic[:])
	binary.LittleEndian.PutUint32(b[8:12], m.version)
	binary.LittleEndian.PutUint32(b[12:16], 0) // flags, reserved
	binary.LittleEndian.PutUint64(b[16:24], m.nodeID)
	binary.LittleEndian.PutUint64(b[24:32], m.clusterID)
	binary.LittleEndian.PutUint64(b[32:40], m.seq)
	binary.LittleEndian.PutUint64(b[40:48], m.firstIndex)
	encodeHardState(b[48:72], m.hardState)
}

// decodeMeta decodes a metadata record body.
func decodeMeta(b []byte) (segMeta, string) {
	if len(b) != metaSize {
		return segMeta{}, "metadata record of the wrong size"
	}
	if [8]byte(b[0:8]) != magic {
		return segMeta{}, "bad magic number: not a WAL segment"
	}
	m := segMeta{
		version:    binary.LittleEndian.Uint32(b[8:12]),
		nodeID:     binary.LittleEndian.Uint64(b[16:24]),
		clusterID:  binary.LittleEndian.Uint64(b[24:32]),
		seq:        binary.LittleEndian.Uint64(b[32:40]),
		firstIndex: binary.LittleEndian.Uint64(b[40:48]),
		hardState:  decodeHardState(b[48:72]),
	}
	if m.version != formatVersion {
		return segMeta{}, "unsupported format version"
	}
	if binary.LittleEndian.Uint32(b[12:16]) != 0 {
		return segMeta{}, "unknown metadata flags"
	}
	if m.firstIndex == 0 {
		return segMeta{}, "metadata first index 0"
	}
	return m, ""
}

func encodeHardState(b []byte, hs HardState) {
	binary.LittleEndian.PutUint64(b[0:8], hs.Term)
	binary.LittleEndian.PutUint64(b[8:16], hs.Vote)
	binary.LittleEndian.PutUint64(b[16:24], hs.Commit)
}

func decodeHardState(b []byte) HardState {
	return HardState{
		Term:   binary.LittleEndian.Uint64(b[0:8]),
		Vote:   binary.LittleEndian.Uint64(b[8:16]),
		Commit: binary.LittleEndian.Uint64(b[16:24]),
	}
}

// decodeEntries decodes an entries record body, whose first entry must
// have index want, and appends the entries to ents. Their Data alias b.
// It checks the count against the bytes present before allocating, so a
// bogus count cannot cause a large allocation. On failure it returns ents
// as it was.
func decodeEntries(ents []Entry, b []byte, want uint64) (out []Entry, bad string) {
	if len(b) < entriesHeaderSize {
		return ents, "entries record too short"
	}
	first := binary.LittleEndian.Uint64(b[0:8])
	count := uint64(binary.LittleEndian.Uint32(b[8:12]))
	b = b[entriesHeaderSize:]
	switch {
	case count == 0:
		return ents, "entries record with no entries"
	case first != want:
		return ents, fmt.Sprintf("index gap: entries start at index %d, want %d", first, want)
	case count > uint64(len(b))/entryHeaderSize:
		return ents, "entries record count larger than its body"
	case first+count < first:
		return ents, "entries record index out of range"
	}
	n0 := len(ents)
	if cap(ents)-n0 < int(count) {
		ents = append(make([]Entry, 0, n0+max(n0, int(count))), ents...)
	}
	for i := uint64(0); i < count; i++ {
		if len(b) < entryHeaderSize {
			return ents[:n0], "entries record truncated"
		}
		term := binary.LittleEndian.Uint64(b[0:8])
		typ := b[8]
		dlen := uint64(binary.LittleEndian.Uint32(b[9:13]))
		b = b[entryHeaderSize:]
		if dlen > uint64(len(b)) {
			return ents[:n0], "entry data length larger than its record"
		}
		var data []byte
		if dlen > 0 {
			data = b[:dlen:dlen]
		}
		ents = append(ents, Entry{Index: first + i, Term: term, Type: typ, Data: data})
		b = b[dlen:]
	}
	if len(b) != 0 {
		return ents[:n0], "trailing bytes in entries record"
	}
	return ents, ""
}
