//go:build linux && !arm

package mediahost

import (
	"os"
	"syscall"
)

// startWriteback asks the kernel to start writing the range [off, off+n) of f to disk
// without waiting for it (sync_file_range with SYNC_FILE_RANGE_WRITE), so that the
// sync at the end of a Create finds little left to write. Errors are ignored: the
// sync reports what matters.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SyncFileRange(int(fd), off, n, syscallSyncFileRangeWrite)
	})
}

// syscallSyncFileRangeWrite is SYNC_FILE_RANGE_WRITE.
const syscallSyncFileRangeWrite = 2

// syncData flushes f's data and the metadata needed to read it (fdatasync): the
// blob's bytes and size, not its times.
func syncData(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}
