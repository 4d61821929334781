// Package walfs defines the file-system seam of package wal: the FS and File
// interfaces the WAL works on, and the ErrLocked error an FS's Lock returns.
// It is a package of its own, with no dependencies inside the module, so
// that a file system for tests (internal/faultfs) can implement the seam and
// still be imported by the tests of package wal itself. Package wal
// re-exports all three names; use them from there.
package walfs

import (
	"errors"
	"io"
	"io/fs"
)

// ErrLocked is the error an FS's Lock wraps when someone else holds the
// lock. Package wal re-exports it as wal.ErrLocked, which Open returns.
var ErrLocked = errors.New("wal: directory is locked")

// FS is the file system the WAL works on. It is a seam for tests: wal.OSFS
// is the real one, and a test can substitute one that injects faults or
// models a crash. Paths are those of package os (joined with
// filepath.Join).
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
