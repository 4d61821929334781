package wal

import (
	"errors"
	"io"
	"io/fs"
	"os"

	"github.com/raftkit/raft/internal/wal/walfs"
)

// FS is the file system the WAL works on: see walfs.FS, which it names
// here. OSFS is the real one; a test can substitute one that injects faults
// or models a crash (internal/faultfs).
type FS = walfs.FS

// File is an open file of an FS: see walfs.File. *os.File implements it.
type File = walfs.File

// OSFS is the FS of the operating system, the default. Its zero value is
// ready to use. Lock uses flock(2) where the platform has it (see Lock).
type OSFS struct{}

var _ FS = OSFS{}

// MkdirAll implements FS with os.MkdirAll.
func (OSFS) MkdirAll(dir string, perm fs.FileMode) error { return os.MkdirAll(dir, perm) }

// ReadDir implements FS.
func (OSFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}

// OpenFile implements FS with os.OpenFile.
func (OSFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		// A nil *os.File in a non-nil File interface would be a trap.
		return nil, err
	}
	return f, nil
}

// Rename implements FS with os.Rename.
func (OSFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// Remove implements FS with os.Remove.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// SyncDir implements FS. On unix it opens the directory and fsyncs it; see
// the platform notes on Lock for other systems.
func (OSFS) SyncDir(dir string) error { return syncDir(dir) }

// Lock implements FS. On unix systems that have flock(2) (all but Solaris
// and AIX) it takes flock(LOCK_EX|LOCK_NB) on the file: the lock excludes
// other processes and other opens in the same process, and the kernel
// releases it when the process dies. Elsewhere (Windows, Solaris, AIX, Plan
// 9, wasm) it falls back to a lock held in this process only: it stops a
// second Open of the same directory by this process but NOT by another
// process, so there the caller must make sure that only one process uses a
// directory; SyncDir is then a no-op as well.
func (OSFS) Lock(name string) (io.Closer, error) { return lockFile(name) }

// errLockedOS is what lockFile wraps with ErrLocked, with the OS's reason.
var errLockedOS = errors.New("held by another process or another open WAL")
