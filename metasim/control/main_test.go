package control_test

import (
	"os"
	"testing"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
)

func TestMain(m *testing.M) {
	signal.RouteLibraryLogs(zerolog.Nop())
	os.Exit(m.Run())
}
