//go:build !unix || solaris || aix

package wal

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// On systems without flock(2) the lock is held in this process only: see
// OSFS.Lock. processLocks holds the absolute paths locked.
var (
	processLocksMu sync.Mutex
	processLocks   = map[string]bool{}
)

type processLock struct {
	path string
	once sync.Once
}

func (l *processLock) Close() error {
	l.once.Do(func() {
		processLocksMu.Lock()
		delete(processLocks, l.path)
		processLocksMu.Unlock()
	})
	return nil
}

// lockFile is the fallback lock: it creates the file (so that the directory
// looks the same as on unix) and excludes other opens in this process only.
func lockFile(name string) (io.Closer, error) {
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	f.Close()
	processLocksMu.Lock()
	defer processLocksMu.Unlock()
	if processLocks[abs] {
		return nil, fmt.Errorf("%w: %s: %w", ErrLocked, name, errLockedOS)
	}
	processLocks[abs] = true
	return &processLock{path: abs}, nil
}

// syncDir is a no-op here: these systems either cannot open a directory for
// fsync (Windows) or do not need it. See OSFS.Lock.
func syncDir(dir string) error { return nil }
