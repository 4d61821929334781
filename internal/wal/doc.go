// Package wal is the write-ahead log under raft's file persister: it stores
// a node's Raft log and hard state in a directory of append-only segment
// files, and recovers them after a crash.
//
// # Use
//
// Open returns the WAL and the State it recovered. Append, TruncateFrom and
// SetHardState and Compact buffer records in call order; Sync makes all of
// them durable with one fsync (group commit). A write or fsync failure is
// sticky: Close, fix the cause and Open again, which recovers what reached
// the disk. Compact records that a snapshot covers a prefix of the log;
// once that record is durable, Sync deletes the whole segments it made
// unnecessary (ReleaseBefore does the same for an index the caller gives).
// Close releases the directory lock.
//
// # Directory
//
//	LOCK                                  flock(2)ed while a WAL is open
//	0000000000000000-0000000000000001.wal segment 0, first index 1
//	0000000000000001-00000000000003e9.wal segment 1, first index 1001
//	...
//
// A segment is named by its sequence number and the index of the first
// entry it may hold, both as 16 lowercase hex digits, so names sort in log
// order. Sequence numbers are consecutive. A new segment is written as
// NAME.wal.tmp, fsynced, renamed to NAME.wal and the directory fsynced, so
// a segment file always begins with a whole metadata record (and, once the
// log was compacted, a compact record restating the compaction point);
// Open removes leftover .wal.tmp files and ignores files of other names
// (raft's FilePersister keeps its snapshot files in the same directory). A segment is closed (fsynced) once it reaches
// Options.SegmentSize, before the next is created; only the last segment
// is ever written to.
//
// # Records
//
// A segment is a sequence of records, each starting at a multiple of 8
// bytes. All integers are little-endian.
//
//	offset 0   u32  body length n (at most MaxRecordSize)
//	offset 4   u8   record type
//	offset 5   3 zero bytes
//	offset 8   u32  CRC-32C (Castagnoli) of the body
//	offset 12  u32  CRC-32C of bytes 0..11 followed by the record's offset
//	                in the segment as a u64
//	offset 16  body, n bytes
//	           zero padding up to a multiple of 8
//
// The header checksum covers the length, the type and the body's checksum,
// so a damaged length is caught before it is used, and it covers the
// record's own offset, so a valid record is only ever found where it was
// written (never inside another record's data). The types are:
//
//	1 metadata   first record of every segment, and only there (72 bytes):
//	             magic "raftwal\x00", u32 format version (1), u32 flags (0),
//	             u64 node ID, u64 cluster ID, u64 sequence number,
//	             u64 first index, and the hard state when the segment was
//	             created (u64 term, vote, commit)
//	2 entries    u64 index of the first entry, u32 count, then per entry
//	             u64 term, u8 type, u32 data length, data
//	3 hard state u64 term, vote, commit
//	4 truncate   u64 index: every entry with index >= it is removed
//	5 compact    u64 index: every entry with index <= it is removed; if
//	             the log ends before index, it becomes empty and the
//	             next entry has index+1
//
// Because each segment carries the hard state, the first index and the
// compaction point (a compact record right after the metadata, written with
// it, when the log was compacted before the segment was created), the
// segments before any segment can be deleted (ReleaseBefore) without
// losing anything but the entries they held.
//
// # Compaction
//
// Compact(i) writes a compact record; the WAL never writes a truncate
// record at or below the compaction point (TruncateFrom clamps to it, so
// truncating there empties the log, positioned after it). Segment
// deletion waits until the compact record is durable: Sync, after its
// fsync, deletes the oldest closed segments while every entry written to
// them (truncated ones included) lies at or below the compaction point as
// of that fsync, never the active segment, one at a time, each removal
// followed by a directory fsync, so that a crash leaves a suffix of the
// segments, each still beginning with a whole metadata record. The log a
// later Open recovers then starts after the compaction point, or at the
// first index of the first segment left, whichever is later.
//
// # Recovery
//
// Open reads every segment in sequence order and replays its records: an
// entries record must start at the index after the log's last (after any
// truncation), a truncate record must remove something, and each segment's
// metadata must name the node and cluster given in Options (else
// ErrMismatch), its own sequence number and first index, a first index
// following the log before it and the hard state the log had. A compact
// record removes the entries at or below its index (one at or below the
// first index replayed, left from released segments, removes nothing); a
// truncate record at or below the largest compact index replayed is
// damage. The first segment may start at any index: the segments before
// it were released. Then:
//
//   - A record that is incomplete or fails a check at the end of the LAST
//     segment, with no valid record anywhere after it, is a torn write from
//     a crash: Open truncates the file just before it, fsyncs, logs a
//     warning and succeeds. Only writes not covered by a Sync can have been
//     torn, except in one case nobody can tell apart from a torn write:
//     damage to the very last record.
//   - Any other damage is ErrCorrupt, as a *CorruptError naming the file
//     and byte offset: a bad record followed by a valid one, a bad record
//     in any segment but the last, a bad or missing metadata record, a
//     missing segment (a gap in sequence numbers), a segment whose first
//     index does not follow, an index gap. Open never drops data that may
//     have been synced.
//
// Open checks everything before it writes anything, so an error leaves the
// directory as it was. Before it returns, it fsyncs the last segment and
// the directory, so that everything it returns is durable even if the
// previous process died with writes that no Sync covered (the caller will
// treat what Open returns as persisted). Lengths are checked against MaxRecordSize and the
// bytes present before anything is allocated.
//
// Limits: a deleted last segment, or a segment deleted at the front other
// than by ReleaseBefore or compaction, cannot be detected by the WAL (raft's
// FilePersister detects a log compacted past its newest snapshot file). On a file system that may
// persist unsynced pages of a file out of order, a crash can leave a hole
// of zeros followed by valid unsynced records; Open then reports
// ErrCorrupt rather than guess, and an operator can truncate the last
// segment at the reported offset.
package wal
