package signal

import (
	"github.com/rs/zerolog"
	"go.mau.fi/libsignal/logger"
)

// libLogger routes libsignal's log calls to zerolog.
type libLogger struct{ log zerolog.Logger }

// Debug drops the message: libsignal's debug lines print key material and
// ciphertexts.
func (l *libLogger) Debug(caller, msg string) {}

func (l *libLogger) Info(caller, msg string) {
	l.log.Debug().Str("caller", caller).Msg(msg)
}

// Warning and Error report per-message failures that this package also returns as
// errors, so they stay below the caller's own error logging.
func (l *libLogger) Warning(caller, msg string) {
	l.log.Debug().Str("caller", caller).Msg(msg)
}

func (l *libLogger) Error(caller, msg string) {
	l.log.Warn().Str("caller", caller).Msg(msg)
}

func (l *libLogger) Configure(string) {}

// RouteLibraryLogs sends libsignal's logging (a process-wide setting of that library,
// which prints to stdout by default) to log. This is the only place that touches it;
// call it once at start-up (tests: from TestMain).
func RouteLibraryLogs(log zerolog.Logger) {
	var l logger.Loggable = &libLogger{log: log.With().Str("component", "libsignal").Logger()}
	logger.Setup(&l)
}
