//go:build !linux || arm

package mediahost

import "os"

// startWriteback does nothing where the syscall package has no sync_file_range.
func startWriteback(*os.File, int64, int64) {}

// syncData is f.Sync.
func syncData(f *os.File) error { return f.Sync() }
