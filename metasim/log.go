package metasim

import (
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
)

// NewLogger makes the program's logger from the log section: console output for
// people by default, JSON lines when asked.
func NewLogger(cfg LogConfig, w io.Writer) (zerolog.Logger, error) {
	level := zerolog.InfoLevel
	if cfg.Level != "" {
		var err error
		if level, err = parseLevel(cfg.Level); err != nil {
			return zerolog.Nop(), err
		}
	}
	if !cfg.JSON {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

func parseLevel(s string) (zerolog.Level, error) {
	level, err := zerolog.ParseLevel(s)
	if err != nil || level == zerolog.NoLevel || s == "" {
		return zerolog.NoLevel, fmt.Errorf("unknown log level %q (trace, debug, info, warn, error)", s)
	}
	return level, nil
}
