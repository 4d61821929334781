// Package faultfs is an in-memory file system for tests of the WAL and of
// what is built on it: it implements walfs.FS (and so wal.FS), models what
// a crash of the machine leaves on disk, and injects faults (a full disk, a
// failing operation, a read-only disk, a machine that dies at a chosen
// operation). It is internal and meant for tests only.
//
// # Durability model
//
// A file's content is durable once its Sync returns; the writes and
// truncations made since are pending. A directory's entries (files
// created, renamed, removed) are durable once SyncDir returns; the changes
// since are pending. Crash builds the file system a restarted machine
// would see: for each directory a prefix of its pending changes, for each
// file a prefix of its pending writes, the next write possibly cut at any
// byte; files choose independently of each other, so unsynced writes to
// different files survive or not independently. Directories created by
// MkdirAll are durable at once (the WAL does not depend on it). Restart
// models the process dying alone: nothing written is lost.
//
// # Faults
//
// SetCrashAt makes the n'th mutating operation (create, write, sync,
// truncate, rename, remove, syncdir), and every one after it, fail with
// ErrCrashed without effect: the machine died there. SetFault may fail any
// mutating operation with an error of its choice, without effect.
// SetSpace limits how many more bytes writes may add: a write beyond it
// writes what fits and fails with ENOSPC. SetReadOnly makes every mutating
// operation fail with EROFS.
package faultfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/raftkit/raft/internal/wal/walfs"
)

// FS is the in-memory file system; see the package documentation for its
// crash model and faults. Create it with New. It is safe for concurrent
// use.
type FS struct {
	mu    sync.Mutex
	dirs  map[string]*memDir
	locks map[string]bool

	ops      int // mutating operations so far
	crashAt  int // 0: never
	crashed  bool
	fault    func(op, path string) error
	space    int64
	readOnly bool
}

var _ walfs.FS = (*FS)(nil)

// ErrCrashed is the error (wrapped in an *fs.PathError) of every mutating
// operation from the one SetCrashAt chose: the machine died there.
var ErrCrashed = errors.New("faultfs: machine crashed")

type memDir struct {
	cur     map[string]*inode
	durable map[string]*inode
	pending []dirOp
}

type dirOp struct {
	kind     byte // 'c'reate, 'r'ename, 'd'elete
	name, to string
	ino      *inode
}

type inode struct {
	data    []byte
	synced  []byte
	pending []fileOp
}

type fileOp struct {
	trunc bool
	off   int64 // write offset, or truncation size
	data  []byte
}

// New returns an empty file system with unlimited space and no faults.
func New() *FS {
	return &FS{dirs: map[string]*memDir{}, locks: map[string]bool{}, space: -1}
}

func newMemDir() *memDir {
	return &memDir{cur: map[string]*inode{}, durable: map[string]*inode{}}
}

func pathErr(op, path string, err error) error { return &fs.PathError{Op: op, Path: path, Err: err} }

// step counts a mutating operation and says whether it may proceed.
func (m *FS) step(op, path string) error {
	m.ops++
	if m.crashAt > 0 && m.ops >= m.crashAt {
		m.crashed = true
	}
	if m.crashed {
		return pathErr(op, path, ErrCrashed)
	}
	if m.readOnly {
		return pathErr(op, path, syscall.EROFS)
	}
	if m.fault != nil {
		if err := m.fault(op, path); err != nil {
			return pathErr(op, path, err)
		}
	}
	return nil
}

func (m *FS) lookup(path string) (*memDir, string, error) {
	path = filepath.Clean(path)
	d := m.dirs[filepath.Dir(path)]
	if d == nil {
		return nil, "", syscall.ENOENT
	}
	return d, filepath.Base(path), nil
}

// MkdirAll implements walfs.FS. New directories are durable at once.
func (m *FS) MkdirAll(dir string, perm fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = filepath.Clean(dir)
	var todo []string
	for p := dir; m.dirs[p] == nil; p = filepath.Dir(p) {
		if d := m.dirs[filepath.Dir(p)]; d != nil && d.cur[filepath.Base(p)] != nil {
			return pathErr("mkdir", p, syscall.ENOTDIR)
		}
		todo = append(todo, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	if len(todo) > 0 && m.readOnly {
		return pathErr("mkdir", dir, syscall.EROFS)
	}
	for _, p := range todo {
		m.dirs[p] = newMemDir()
	}
	return nil
}

// ReadDir implements walfs.FS; it lists files and subdirectories, sorted.
func (m *FS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.dirs[filepath.Clean(dir)]
	if d == nil {
		return nil, pathErr("readdir", dir, syscall.ENOENT)
	}
	var names []string
	for name := range d.cur {
		names = append(names, name)
	}
	for p := range m.dirs {
		if filepath.Dir(p) == filepath.Clean(dir) && p != filepath.Clean(dir) {
			names = append(names, filepath.Base(p))
		}
	}
	slices.Sort(names)
	return names, nil
}

// OpenFile implements walfs.FS. Creating a file and truncating it with
// os.O_TRUNC are mutating operations.
func (m *FS) OpenFile(name string, flag int, perm fs.FileMode) (walfs.File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.lookup(name)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	if m.dirs[filepath.Clean(name)] != nil {
		return nil, pathErr("open", name, syscall.EISDIR)
	}
	writable := flag&(os.O_WRONLY|os.O_RDWR) != 0
	if writable && (m.readOnly || m.crashed) {
		return nil, pathErr("open", name, syscall.EROFS)
	}
	ino := d.cur[base]
	if ino == nil {
		if flag&os.O_CREATE == 0 {
			return nil, pathErr("open", name, syscall.ENOENT)
		}
		if err := m.step("create", name); err != nil {
			return nil, err
		}
		ino = &inode{}
		d.cur[base] = ino
		d.pending = append(d.pending, dirOp{kind: 'c', name: base, ino: ino})
	} else if flag&os.O_TRUNC != 0 && writable && len(ino.data) > 0 {
		if err := m.step("truncate", name); err != nil {
			return nil, err
		}
		ino.data = ino.data[:0:0]
		ino.pending = append(ino.pending, fileOp{trunc: true})
	}
	return &memFile{fs: m, ino: ino, path: name, writable: writable, appendMode: flag&os.O_APPEND != 0}, nil
}

// Rename implements walfs.FS, within one directory only (else EXDEV).
func (m *FS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ob, err := m.lookup(oldname)
	if err != nil {
		return pathErr("rename", oldname, err)
	}
	d2, nb, err := m.lookup(newname)
	if err != nil || d2 != d {
		return pathErr("rename", newname, syscall.EXDEV)
	}
	ino := d.cur[ob]
	if ino == nil {
		return pathErr("rename", oldname, syscall.ENOENT)
	}
	if err := m.step("rename", newname); err != nil {
		return err
	}
	delete(d.cur, ob)
	d.cur[nb] = ino
	d.pending = append(d.pending, dirOp{kind: 'r', name: ob, to: nb})
	return nil
}

// Remove implements walfs.FS.
func (m *FS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.lookup(name)
	if err != nil {
		return pathErr("remove", name, err)
	}
	if d.cur[base] == nil {
		return pathErr("remove", name, syscall.ENOENT)
	}
	if err := m.step("remove", name); err != nil {
		return err
	}
	delete(d.cur, base)
	d.pending = append(d.pending, dirOp{kind: 'd', name: base})
	return nil
}

// SyncDir implements walfs.FS: it makes the directory's entries durable.
func (m *FS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.dirs[filepath.Clean(dir)]
	if d == nil {
		return pathErr("syncdir", dir, syscall.ENOENT)
	}
	if err := m.step("syncdir", dir); err != nil {
		return err
	}
	d.durable = cloneDir(d.cur)
	d.pending = nil
	return nil
}

type memLock struct {
	m    *FS
	name string
	once sync.Once
}

func (l *memLock) Close() error {
	l.once.Do(func() {
		l.m.mu.Lock()
		delete(l.m.locks, l.name)
		l.m.mu.Unlock()
	})
	return nil
}

// Lock implements walfs.FS with a lock held in m, released by closing it
// or by Restart (the process died).
func (m *FS) Lock(name string) (io.Closer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if _, _, err := m.lookup(name); err != nil {
		return nil, pathErr("lock", name, err)
	}
	if m.readOnly {
		return nil, pathErr("open", name, syscall.EROFS)
	}
	if m.locks[name] {
		return nil, fmt.Errorf("%w: %s (faultfs)", walfs.ErrLocked, name)
	}
	m.locks[name] = true
	return &memLock{m: m, name: name}, nil
}

func cloneDir(src map[string]*inode) map[string]*inode {
	dst := make(map[string]*inode, len(src))
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

type memFile struct {
	fs         *FS
	ino        *inode
	path       string
	writable   bool
	appendMode bool
	off        int64
	closed     bool
}

func (f *memFile) Write(p []byte) (int, error) {
	m := f.fs
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.closed || !f.writable {
		return 0, pathErr("write", f.path, syscall.EBADF)
	}
	if err := m.step("write", f.path); err != nil {
		return 0, err
	}
	var err error
	if m.space >= 0 && int64(len(p)) > m.space {
		p, err = p[:m.space], pathErr("write", f.path, syscall.ENOSPC)
	}
	if m.space >= 0 {
		m.space -= int64(len(p))
	}
	if f.appendMode {
		f.off = int64(len(f.ino.data))
	}
	if len(p) > 0 {
		f.ino.writeAt(p, f.off)
		f.ino.pending = append(f.ino.pending, fileOp{off: f.off, data: slices.Clone(p)})
		f.off += int64(len(p))
	}
	return len(p), err
}

func (ino *inode) writeAt(p []byte, off int64) {
	if end := off + int64(len(p)); end > int64(len(ino.data)) {
		ino.data = append(ino.data, make([]byte, end-int64(len(ino.data)))...)
	}
	copy(ino.data[off:], p)
}

func (ino *inode) truncate(size int64) {
	if size <= int64(len(ino.data)) {
		ino.data = ino.data[:size:size]
	} else {
		ino.data = append(ino.data, make([]byte, size-int64(len(ino.data)))...)
	}
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return 0, pathErr("read", f.path, syscall.EBADF)
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Sync() error {
	m := f.fs
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.closed {
		return pathErr("sync", f.path, syscall.EBADF)
	}
	if err := m.step("sync", f.path); err != nil {
		return err
	}
	f.ino.synced = slices.Clone(f.ino.data)
	f.ino.pending = nil
	return nil
}

func (f *memFile) Truncate(size int64) error {
	m := f.fs
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.closed || !f.writable {
		return pathErr("truncate", f.path, syscall.EBADF)
	}
	if err := m.step("truncate", f.path); err != nil {
		return err
	}
	f.ino.truncate(size)
	f.ino.pending = append(f.ino.pending, fileOp{trunc: true, off: size})
	return nil
}

func (f *memFile) Stat() (fs.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return memInfo{name: filepath.Base(f.path), size: int64(len(f.ino.data))}, nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return pathErr("close", f.path, os.ErrClosed)
	}
	f.closed = true
	return nil
}

type memInfo struct {
	name string
	size int64
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return 0o600 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

// CrashPlan chooses what of the pending changes Crash keeps. Each function
// is called with a count n and must return a number in the range it
// names; nil means "keep none" (0).
type CrashPlan struct {
	// DirKeep returns how many of a directory's n pending changes
	// survive, in [0, n].
	DirKeep func(n int) int
	// FileKeep returns how many of a file's n pending operations survive
	// whole, in [0, n].
	FileKeep func(n int) int
	// Cut returns how many bytes, in [0, n), survive of the write that
	// follows the last surviving one.
	Cut func(n int) int
}

func keep(f func(int) int, n int) int {
	if f == nil {
		return 0
	}
	return f(n)
}

// Crash returns the file system a machine restarted after a power loss
// would see: the durable state plus what plan keeps of the pending changes
// (see the package documentation). The result has no locks, no faults and
// unlimited space, and all of its content is durable. m is left as it was,
// so a test may crash it several ways.
func (m *FS) Crash(plan CrashPlan) *FS {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := New()
	inodes := map[*inode]*inode{} // old -> recovered
	recoverInode := func(ino *inode) *inode {
		if r := inodes[ino]; r != nil {
			return r
		}
		r := &inode{data: slices.Clone(ino.synced)}
		n := len(ino.pending)
		k := keep(plan.FileKeep, n)
		for _, op := range ino.pending[:k] {
			r.apply(op, len(op.data))
		}
		if k < n && !ino.pending[k].trunc && len(ino.pending[k].data) > 0 {
			r.apply(ino.pending[k], keep(plan.Cut, len(ino.pending[k].data)))
		}
		r.synced = slices.Clone(r.data)
		inodes[ino] = r
		return r
	}
	dirPaths := make([]string, 0, len(m.dirs))
	for p := range m.dirs {
		dirPaths = append(dirPaths, p)
	}
	slices.Sort(dirPaths) // deterministic order of plan calls
	for _, p := range dirPaths {
		d := m.dirs[p]
		ents := cloneDir(d.durable)
		k := d.pending[:keep(plan.DirKeep, len(d.pending))]
		for _, op := range k {
			switch op.kind {
			case 'c':
				ents[op.name] = op.ino
			case 'r':
				if ino := ents[op.name]; ino != nil {
					delete(ents, op.name)
					ents[op.to] = ino
				}
			case 'd':
				delete(ents, op.name)
			}
		}
		nd := newMemDir()
		names := make([]string, 0, len(ents))
		for name := range ents {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			nd.cur[name] = recoverInode(ents[name])
		}
		nd.durable = cloneDir(nd.cur)
		out.dirs[p] = nd
	}
	return out
}

func (ino *inode) apply(op fileOp, n int) {
	if op.trunc {
		ino.truncate(op.off)
	} else {
		ino.writeAt(op.data[:n], op.off)
	}
}

// Restart models the process dying and starting again on the same
// machine: nothing is lost (unsynced writes stay in the page cache, still
// unsynced), the dead process's locks are released, and SetCrashAt and
// SetFault are off. The space limit and read-only mode stay.
func (m *FS) Restart() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crashAt, m.crashed, m.fault = 0, false, nil
	m.locks = map[string]bool{}
}

// SetCrashAt makes the n'th mutating operation since New (counting from 1),
// and every one after it, fail with ErrCrashed without effect, as if the
// machine died there; n <= Ops() makes the next one fail. Zero turns it
// off, but a crash that happened stays until Restart.
func (m *FS) SetCrashAt(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crashAt = n
}

// Ops returns how many mutating operations have been tried so far, failed
// ones included.
func (m *FS) Ops() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ops
}

// Crashed reports whether the crash SetCrashAt chose has happened (since
// New or the last Restart).
func (m *FS) Crashed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.crashed
}

// SetFault installs f, which is called before every mutating operation
// with its name (create, write, sync, truncate, rename, remove, syncdir)
// and path, with the file system locked (f must not call m); a non-nil
// error fails the operation without effect, wrapped in an *fs.PathError.
// Nil removes it.
func (m *FS) SetFault(f func(op, path string) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fault = f
}

// SetSpace sets how many more bytes writes may add before the disk is
// full: a write that needs more writes what fits and fails with an
// *fs.PathError wrapping syscall.ENOSPC. A negative n means unlimited.
func (m *FS) SetSpace(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.space = n
}

// SetReadOnly makes every mutating operation, and every open for writing,
// fail with EROFS, or lifts that.
func (m *FS) SetReadOnly(ro bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.readOnly = ro
}

// Unsynced returns how many bytes were written to files since each file's
// last Sync: the data a power loss (Crash) may drop or cut.
func (m *FS) Unsynced() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	seen := map[*inode]bool{}
	for _, d := range m.dirs {
		for _, ino := range d.cur {
			if seen[ino] {
				continue
			}
			seen[ino] = true
			for _, op := range ino.pending {
				n += int64(len(op.data))
			}
		}
	}
	return n
}

// Files returns a copy of the current content of every file in dir,
// synced or not.
func (m *FS) Files(dir string) map[string][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]byte{}
	if d := m.dirs[filepath.Clean(dir)]; d != nil {
		for name, ino := range d.cur {
			out[name] = slices.Clone(ino.data)
		}
	}
	return out
}

// SetFile replaces the content of a file (durably), creating it if needed.
// Its directory must exist.
func (m *FS) SetFile(path string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.dirs[filepath.Dir(filepath.Clean(path))]
	ino := d.cur[filepath.Base(path)]
	if ino == nil {
		ino = &inode{}
		d.cur[filepath.Base(path)] = ino
		d.durable = cloneDir(d.cur)
	}
	ino.data, ino.synced, ino.pending = slices.Clone(data), slices.Clone(data), nil
}

// RemoveFile removes a file durably. Its directory must exist.
func (m *FS) RemoveFile(path string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.dirs[filepath.Dir(filepath.Clean(path))]
	delete(d.cur, filepath.Base(path))
	d.durable = cloneDir(d.cur)
}
