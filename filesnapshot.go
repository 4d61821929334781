package raft

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/raftkit/raft/internal/wal"
)

// Snapshot files of a FilePersister live in its directory, beside the WAL's
// segments, one per snapshot:
//
//	snap-IIIIIIIIIIIIIIII-TTTTTTTTTTTTTTTT.snap   index and term, 16 hex digits each
//
// so that names sort by index. A file is
//
//	header   magic "raftsnap", u32 format version (1), u32 flags (0),
//	         u64 node ID, u64 cluster ID, u64 index, u64 term (48 bytes)
//	data     the application's snapshot, as written
//	trailer  u64 data length, u32 CRC-32C (Castagnoli) of every byte
//	         before it (header, data and the length)
//
// little-endian. It is written as NAME.N.tmp (N tells concurrent writers
// apart), fsynced, renamed to NAME and the directory fsynced: a crash
// leaves either no file or a whole one. Leftover .tmp files are removed
// when the directory is opened. Once a new snapshot is durable, the older
// files are deleted; a reader that has one open goes on reading it.
const (
	snapPrefix     = "snap-"
	snapSuffix     = ".snap"
	snapTmpSuffix  = ".tmp"
	snapHeaderSize = 48
	snapTrailer    = 12
	snapVersion    = 1
	snapBufSize    = 64 << 10
)

var (
	snapMagic      = [8]byte{'r', 'a', 'f', 't', 's', 'n', 'a', 'p'}
	snapCastagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// snapFile is a committed snapshot file.
type snapFile struct {
	meta SnapshotMeta
	path string
}

func snapName(m SnapshotMeta) string {
	return fmt.Sprintf("%s%016x-%016x%s", snapPrefix, m.Index, m.Term, snapSuffix)
}

// parseSnapName parses a snapshot file name (not a temporary one).
func parseSnapName(name string) (SnapshotMeta, bool) {
	base, ok := strings.CutPrefix(name, snapPrefix)
	if !ok {
		return SnapshotMeta{}, false
	}
	base, ok = strings.CutSuffix(base, snapSuffix)
	if !ok || len(base) != 33 || base[16] != '-' {
		return SnapshotMeta{}, false
	}
	index, err1 := strconv.ParseUint(base[:16], 16, 64)
	term, err2 := strconv.ParseUint(base[17:], 16, 64)
	m := SnapshotMeta{Index: index, Term: term}
	if err1 != nil || err2 != nil || index == 0 || snapName(m) != name {
		return SnapshotMeta{}, false
	}
	return m, true
}

func isSnapTmp(name string) bool {
	return strings.HasPrefix(name, snapPrefix) && strings.HasSuffix(name, snapTmpSuffix)
}

func (p *FilePersister) snapCorrupt(path, format string, args ...any) error {
	return fmt.Errorf("%w: snapshot file %s: %s", ErrCorrupt, path, fmt.Sprintf(format, args...))
}

// scanSnapshots finds the newest snapshot file in the directory and
// removes the temporary files of interrupted writes. It is called once, at
// open, with the directory locked.
func (p *FilePersister) scanSnapshots() error {
	names, err := p.fsys.ReadDir(p.dir)
	if err != nil {
		return fmt.Errorf("raft: read directory %s: %w", p.dir, err)
	}
	removed := false
	for _, name := range names {
		if isSnapTmp(name) {
			if err := p.fsys.Remove(filepath.Join(p.dir, name)); err != nil {
				return fmt.Errorf("raft: remove leftover %s: %w", name, err)
			}
			removed = true
			continue
		}
		if m, ok := parseSnapName(name); ok && m.Index > p.snap.meta.Index {
			p.snap = snapFile{meta: m, path: filepath.Join(p.dir, name)}
		}
	}
	if removed {
		if err := p.fsys.SyncDir(p.dir); err != nil {
			return fmt.Errorf("raft: fsync directory %s: %w", p.dir, err)
		}
	}
	return nil
}

// CreateSnapshot implements Persister: the data goes to a temporary file
// in the directory, which Commit makes the newest snapshot.
func (p *FilePersister) CreateSnapshot(meta SnapshotMeta) (SnapshotWriter, error) {
	if meta.Index == 0 {
		return nil, fmt.Errorf("raft: FilePersister.CreateSnapshot: index 0")
	}
	p.snapMu.Lock()
	if p.snapClosed {
		p.snapMu.Unlock()
		return nil, errFileClosed
	}
	p.tmpSeq++
	path := filepath.Join(p.dir, snapName(meta))
	tmp := path + "." + strconv.FormatUint(p.tmpSeq, 10) + snapTmpSuffix
	p.snapMu.Unlock()
	f, err := p.fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("raft: create snapshot file %s: %w", tmp, err)
	}
	w := &fileSnapshotWriter{p: p, meta: meta, f: f, path: path, tmp: tmp, bw: bufio.NewWriterSize(f, snapBufSize)}
	var hdr [snapHeaderSize]byte
	p.encodeSnapHeader(hdr[:], meta)
	if _, err := w.write(hdr[:]); err != nil {
		w.Abort()
		return nil, err
	}
	w.n = 0 // the data length excludes the header
	return w, nil
}

func (p *FilePersister) encodeSnapHeader(b []byte, m SnapshotMeta) {
	copy(b[0:8], snapMagic[:])
	binary.LittleEndian.PutUint32(b[8:12], snapVersion)
	binary.LittleEndian.PutUint32(b[12:16], 0)
	binary.LittleEndian.PutUint64(b[16:24], p.opts.NodeID)
	binary.LittleEndian.PutUint64(b[24:32], p.opts.ClusterID)
	binary.LittleEndian.PutUint64(b[32:40], m.Index)
	binary.LittleEndian.PutUint64(b[40:48], m.Term)
}

type fileSnapshotWriter struct {
	p         *FilePersister
	meta      SnapshotMeta
	f         wal.File
	path, tmp string
	bw        *bufio.Writer
	crc       uint32
	n         uint64 // data bytes written
	done      bool
	err       error // first write failure: sticky
}

func (w *fileSnapshotWriter) write(b []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.bw.Write(b)
	w.crc = crc32.Update(w.crc, snapCastagnoli, b[:n])
	w.n += uint64(n)
	if err != nil {
		w.err = fmt.Errorf("raft: write snapshot file %s: %w", w.tmp, err)
		return n, w.err
	}
	return n, nil
}

// Write implements SnapshotWriter.
func (w *fileSnapshotWriter) Write(b []byte) (int, error) {
	if w.done {
		return 0, errSnapshotWriterDone
	}
	return w.write(b)
}

// Commit implements SnapshotWriter: trailer, fsync, then, if no snapshot
// at the same or a higher index was committed meanwhile, rename and
// directory fsync; then the older snapshot files are deleted.
func (w *fileSnapshotWriter) Commit() error {
	if w.done {
		return errSnapshotWriterDone
	}
	w.done = true
	p := w.p
	fail := func(err error) error {
		w.f.Close()
		p.fsys.Remove(w.tmp) // best effort: the next open removes leftovers too
		return err
	}
	var tr [snapTrailer]byte
	binary.LittleEndian.PutUint64(tr[0:8], w.n)
	w.crc = crc32.Update(w.crc, snapCastagnoli, tr[0:8])
	binary.LittleEndian.PutUint32(tr[8:12], w.crc)
	if w.err != nil {
		return fail(w.err)
	}
	if _, err := w.bw.Write(tr[:]); err != nil {
		return fail(fmt.Errorf("raft: write snapshot file %s: %w", w.tmp, err))
	}
	if err := w.bw.Flush(); err != nil {
		return fail(fmt.Errorf("raft: write snapshot file %s: %w", w.tmp, err))
	}
	if err := w.f.Sync(); err != nil {
		return fail(fmt.Errorf("raft: fsync snapshot file %s: %w", w.tmp, err))
	}
	if err := w.f.Close(); err != nil {
		p.fsys.Remove(w.tmp)
		return fmt.Errorf("raft: close snapshot file %s: %w", w.tmp, err)
	}
	p.snapMu.Lock()
	defer p.snapMu.Unlock()
	if p.snapClosed {
		p.fsys.Remove(w.tmp)
		return errFileClosed
	}
	if have := p.snap.meta; have.Index >= w.meta.Index {
		p.fsys.Remove(w.tmp)
		return fmt.Errorf("raft: FilePersister: commit snapshot at %d: %w (have %d)", w.meta.Index, ErrStaleSnapshot, have.Index)
	}
	if err := p.fsys.Rename(w.tmp, w.path); err != nil {
		p.fsys.Remove(w.tmp)
		return fmt.Errorf("raft: commit snapshot: rename %s: %w", w.tmp, err)
	}
	// The file is in place: a reopen finds it whatever happens next, so
	// it is the newest from now on, even if the directory fsync fails
	// (then Commit fails: whether a crash keeps it is unknown).
	p.snap = snapFile{meta: w.meta, path: w.path}
	if err := p.fsys.SyncDir(p.dir); err != nil {
		return fmt.Errorf("raft: commit snapshot %s: fsync directory: %w", w.path, err)
	}
	p.removeOldSnapshots(w.meta.Index)
	return nil
}

// removeOldSnapshots deletes the snapshot files below index, now that the
// one at index is durable. Failures are only logged: the new snapshot is
// committed, and the next commit tries again. Called with snapMu held.
func (p *FilePersister) removeOldSnapshots(index uint64) {
	names, err := p.fsys.ReadDir(p.dir)
	if err != nil {
		p.warn("raft: cannot list old snapshots to delete them", "dir", p.dir, "err", err)
		return
	}
	removed := false
	for _, name := range names {
		m, ok := parseSnapName(name)
		if !ok || m.Index >= index {
			continue
		}
		if err := p.fsys.Remove(filepath.Join(p.dir, name)); err != nil {
			p.warn("raft: cannot delete an old snapshot", "file", name, "err", err)
			continue
		}
		removed = true
	}
	if removed {
		if err := p.fsys.SyncDir(p.dir); err != nil {
			p.warn("raft: cannot fsync the directory after deleting old snapshots", "dir", p.dir, "err", err)
		}
	}
}

func (p *FilePersister) warn(msg string, args ...any) {
	if p.logger != nil {
		p.logger.Warn(msg, args...)
	}
}

// Abort implements SnapshotWriter.
func (w *fileSnapshotWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if err := w.p.fsys.Remove(w.tmp); err != nil {
		return fmt.Errorf("raft: abort snapshot: remove %s: %w", w.tmp, err)
	}
	return nil
}

// OpenSnapshot implements Persister. The reader checks the file's
// checksum as it streams: at the end of the data, a mismatch (or a
// truncated file) is an error wrapping ErrCorrupt that names the file.
func (p *FilePersister) OpenSnapshot() (SnapshotMeta, io.ReadCloser, error) {
	p.snapMu.Lock()
	if p.snapClosed {
		p.snapMu.Unlock()
		return SnapshotMeta{}, nil, errFileClosed
	}
	s := p.snap
	if s.meta.Index == 0 {
		p.snapMu.Unlock()
		return SnapshotMeta{}, nil, fmt.Errorf("raft: FilePersister %s: %w", p.dir, ErrNoSnapshot)
	}
	// Open under the lock: a Commit deletes older files once it holds it.
	f, err := p.fsys.OpenFile(s.path, os.O_RDONLY, 0)
	p.snapMu.Unlock()
	if err != nil {
		return SnapshotMeta{}, nil, fmt.Errorf("raft: open snapshot: %w", err)
	}
	r, err := p.newSnapReader(f, s)
	if err != nil {
		f.Close()
		return SnapshotMeta{}, nil, err
	}
	return s.meta, r, nil
}

// snapReader streams a snapshot file's data and checks its checksum.
type snapReader struct {
	f    wal.File
	path string
	off  int64 // file offset of the next data byte
	end  int64 // file offset of the trailer
	crc  uint32
	err  error // sticky: io.EOF once checked, or the failure
	fail func(format string, args ...any) error
}

func (p *FilePersister) newSnapReader(f wal.File, s snapFile) (*snapReader, error) {
	r := &snapReader{f: f, path: s.path, fail: func(format string, args ...any) error {
		return p.snapCorrupt(s.path, format, args...)
	}}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("raft: stat snapshot file %s: %w", s.path, err)
	}
	size := fi.Size()
	if size < snapHeaderSize+snapTrailer {
		return nil, r.fail("%d bytes, too short for a snapshot file (truncated?)", size)
	}
	var hdr [snapHeaderSize]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("raft: read snapshot file %s: %w", s.path, err)
	}
	switch {
	case [8]byte(hdr[0:8]) != snapMagic:
		return nil, r.fail("bad magic number: not a snapshot file")
	case binary.LittleEndian.Uint32(hdr[8:12]) != snapVersion || binary.LittleEndian.Uint32(hdr[12:16]) != 0:
		return nil, r.fail("unsupported format version or flags")
	}
	// The WAL vouched that the directory is this node's: a header naming
	// another node or cluster is damage (or a file copied in by hand).
	if node, cluster := binary.LittleEndian.Uint64(hdr[16:24]), binary.LittleEndian.Uint64(hdr[24:32]); node != p.opts.NodeID || cluster != p.opts.ClusterID {
		return nil, r.fail("header names node %d of cluster %d, not node %d of cluster %d", node, cluster, p.opts.NodeID, p.opts.ClusterID)
	}
	if m := (SnapshotMeta{Index: binary.LittleEndian.Uint64(hdr[32:40]), Term: binary.LittleEndian.Uint64(hdr[40:48])}); m != s.meta {
		return nil, r.fail("header says index %d term %d, unlike the file name", m.Index, m.Term)
	}
	r.crc = crc32.Update(0, snapCastagnoli, hdr[:])
	r.off, r.end = snapHeaderSize, size-snapTrailer
	return r, nil
}

// Read implements io.Reader.
func (r *snapReader) Read(b []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.off == r.end {
		r.err = r.check()
		return 0, r.err
	}
	if int64(len(b)) > r.end-r.off {
		b = b[:r.end-r.off]
	}
	n, err := r.f.ReadAt(b, r.off)
	r.crc = crc32.Update(r.crc, snapCastagnoli, b[:n])
	r.off += int64(n)
	if n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			r.err = r.fail("the file shrank while being read")
		} else {
			r.err = fmt.Errorf("raft: read snapshot file %s: %w", r.path, err)
		}
		return n, r.err
	}
	return n, nil
}

// check reads the trailer and compares it with what was read.
func (r *snapReader) check() error {
	var tr [snapTrailer]byte
	if n, err := r.f.ReadAt(tr[:], r.end); n != len(tr) {
		if err == nil || errors.Is(err, io.EOF) {
			return r.fail("the file shrank while being read")
		}
		return fmt.Errorf("raft: read snapshot file %s: %w", r.path, err)
	}
	if n := binary.LittleEndian.Uint64(tr[0:8]); n != uint64(r.end-snapHeaderSize) {
		return r.fail("trailer says %d bytes of data, the file holds %d (truncated?)", n, r.end-snapHeaderSize)
	}
	crc := crc32.Update(r.crc, snapCastagnoli, tr[0:8])
	if want := binary.LittleEndian.Uint32(tr[8:12]); crc != want {
		return r.fail("checksum mismatch (CRC-32C %08x, trailer says %08x)", crc, want)
	}
	return io.EOF
}

// Close implements io.Closer.
func (r *snapReader) Close() error {
	if r.err == nil {
		r.err = errors.New("raft: snapshot reader closed")
	}
	return r.f.Close()
}

// verifySnapshot reads the whole snapshot file s and checks its checksum,
// streaming it.
func (p *FilePersister) verifySnapshot(s snapFile) error {
	f, err := p.fsys.OpenFile(s.path, os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return p.snapCorrupt(s.path, "missing")
		}
		return fmt.Errorf("raft: open snapshot: %w", err)
	}
	r, err := p.newSnapReader(f, s)
	if err != nil {
		f.Close()
		return err
	}
	defer r.Close()
	buf := make([]byte, snapBufSize)
	for {
		if _, err := r.Read(buf); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}
