package raft

// Test-only access for package raft_test to what the public API leaves out.

import "github.com/raftkit/raft/internal/wal"

// OpenFilePersisterOn is OpenFilePersister on the file system fsys (in
// tests an *faultfs.FS) instead of the operating system's.
func OpenFilePersisterOn(fsys wal.FS, dir string, id NodeID, opts FileOptions) (*FilePersister, error) {
	return openFilePersister(dir, id, opts, fsys)
}

// Kill abandons p as kill -9 of its process would: the log's unwritten
// buffer is dropped, nothing is synced, the files are closed and the
// directory lock is released. It returns how many buffered bytes were
// dropped. p is closed afterwards; open the directory again to go on.
func (p *FilePersister) Kill() int { return p.kill() }
