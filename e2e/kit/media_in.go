package kit

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// PeakRSS is the bridge process's peak resident memory so far (VmHWM), in bytes, for
// telling how much a transfer made it grow.
func (b *Bridge) PeakRSS() (int64, error) {
	if b.cmd == nil || b.cmd.Process == nil {
		return 0, fmt.Errorf("the bridge is not running")
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("failed to read the bridge's memory status: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("failed to parse VmHWM %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in the bridge's memory status")
}
