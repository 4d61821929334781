package faultfs

// The model itself, briefly: the WAL's tests (internal/wal) exercise it
// thoroughly.

import (
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft/internal/wal/walfs"
)

func create(t *testing.T, m *FS, path string) walfs.File {
	t.Helper()
	f, err := m.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	require.NoError(t, err)
	return f
}

func TestCrash_KeepsSyncedDropsOrCutsTheRest(t *testing.T) {
	m := New()
	require.NoError(t, m.MkdirAll("/d", 0o700))
	f := create(t, m, "/d/f")
	require.NoError(t, m.SyncDir("/d"))
	_, err := f.Write([]byte("synced"))
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	_, err = f.Write([]byte("-pending"))
	require.NoError(t, err)
	require.EqualValues(t, len("-pending"), m.Unsynced())
	g := create(t, m, "/d/g") // its creation is not durable

	all := func(n int) int { return n }
	for name, tc := range map[string]struct {
		plan  CrashPlan
		f     string
		hasG  bool
		files int
	}{
		"drop-all": {CrashPlan{}, "synced", false, 1},
		"keep-all": {CrashPlan{DirKeep: all, FileKeep: all}, "synced-pending", true, 2},
		"cut-3":    {CrashPlan{Cut: func(int) int { return 3 }}, "synced-pe", false, 1},
	} {
		got := m.Crash(tc.plan).Files("/d")
		require.Len(t, got, tc.files, name)
		require.Equal(t, tc.f, string(got["f"]), name)
		_, hasG := got["g"]
		require.Equal(t, tc.hasG, hasG, name)
	}
	require.Equal(t, "synced-pending", string(m.Files("/d")["f"]), "Crash leaves m as it was")
	require.NoError(t, g.Close())
	require.NoError(t, f.Close())
}

func TestSetSpace_WritesWhatFitsThenENOSPC(t *testing.T) {
	m := New()
	require.NoError(t, m.MkdirAll("/d", 0o700))
	f := create(t, m, "/d/f")
	m.SetSpace(4)
	n, err := f.Write([]byte("abcdef"))
	require.Equal(t, 4, n)
	require.ErrorIs(t, err, syscall.ENOSPC)
	_, err = f.Write([]byte("x"))
	require.ErrorIs(t, err, syscall.ENOSPC)
	m.SetSpace(-1)
	_, err = f.Write([]byte("gh"))
	require.NoError(t, err)
	require.Equal(t, "abcdgh", string(m.Files("/d")["f"]))
	require.NoError(t, f.Close())
}

func TestSetCrashAt_FailsThatOpAndEveryLater(t *testing.T) {
	m := New()
	require.NoError(t, m.MkdirAll("/d", 0o700))
	f := create(t, m, "/d/f") // op 1
	m.SetCrashAt(m.Ops() + 2)
	_, err := f.Write([]byte("a")) // op 2
	require.NoError(t, err)
	require.False(t, m.Crashed())
	require.ErrorIs(t, f.Sync(), ErrCrashed) // op 3
	require.True(t, m.Crashed())
	_, err = f.Write([]byte("b"))
	require.ErrorIs(t, err, ErrCrashed)
	require.Equal(t, "a", string(m.Files("/d")["f"]))
	m.Restart()
	require.False(t, m.Crashed())
	_, err = f.Write([]byte("c"))
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

func TestLock_ExclusiveUntilCloseOrRestart(t *testing.T) {
	m := New()
	require.NoError(t, m.MkdirAll("/d", 0o700))
	l, err := m.Lock("/d/LOCK")
	require.NoError(t, err)
	_, err = m.Lock("/d/LOCK")
	require.ErrorIs(t, err, walfs.ErrLocked)
	require.NoError(t, l.Close())
	_, err = m.Lock("/d/LOCK")
	require.NoError(t, err)
	m.Restart() // the holder died
	_, err = m.Lock("/d/LOCK")
	require.NoError(t, err)
}

func TestSetFault_FailsWithoutEffect(t *testing.T) {
	m := New()
	require.NoError(t, m.MkdirAll("/d", 0o700))
	f := create(t, m, "/d/f")
	errBoom := errors.New("boom")
	m.SetFault(func(op, path string) error {
		if op == "write" {
			return errBoom
		}
		return nil
	})
	_, err := f.Write([]byte("a"))
	require.ErrorIs(t, err, errBoom)
	require.Empty(t, m.Files("/d")["f"])
	m.SetFault(nil)
	require.NoError(t, f.Close())
}
