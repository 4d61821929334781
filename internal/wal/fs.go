package wal

import (
	"errors"
	"io"
	"io/fs"
	"os"
)

// FS is the file system the WAL works on. It is a seam for tests: OSFS is
// the real one, and a test can substitute one that injects faults or models
// a crash. Paths are those of package os (joined with filepath.Join).
//
// Implementations must be safe for concurrent use by several WALs; one WAL
// calls them from one goroutine at a time.
type FS interface {
	// MkdirAll creates dir and any missing parents, like os.MkdirAll.
	MkdirAll(dir string, perm fs.FileMode) error
	// ReadDir returns the names of the entries of dir, in any order.
	ReadDir(dir string) ([]string, error)
	// OpenFile opens a file like os.OpenFile. The WAL uses the flags
	// os.O_RDONLY, os.O_RDWR, os.O_CREATE, os.O_TRUNC and os.O_APPEND.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// Rename renames a file, replacing newname if it exists, like
	// os.Rename. It is durable only once SyncDir of its directory returns.
	Rename(oldname, newname string) error
	// Remove removes a file, like os.Remove. It is durable only once
	// SyncDir of its directory returns.
	Remove(name string) error
	// SyncDir makes the entries of directory dir (files created, renamed
	// and removed in it) durable.
	SyncDir(dir string) error
	// Lock takes an exclusive lock named by the file name, creating the
	// file if needed, or returns an error wrapping ErrLocked at once if
	// someone else holds it. Closing the returned io.Closer releases it.
	// The lock must also be released when the process dies.
	Lock(name string) (io.Closer, error)
}

// File is an open file of an FS. *os.File implements it.
type File interface {
	io.Writer
	io.ReaderAt
	io.Closer
	// Sync makes everything written to the file durable (fsync).
	Sync() error
	// Truncate changes the size of the file.
	Truncate(size int64) error
	// Stat returns the file's FileInfo; the WAL uses only its Size.
	Stat() (fs.FileInfo, error)
}

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
