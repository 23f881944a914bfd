package mediahost

import (
	"context"
	"errors"
	"time"
)

// sweepBatch is how many expired blobs one query lists.
const sweepBatch = 500

// firstSweepDelay is how soon after start the first sweep runs (or after interval,
// if that is shorter): soon enough to catch up after downtime, late enough not to
// slow the start.
const firstSweepDelay = time.Minute

// staleTempAge is when a store's temporary file is surely left over from a crash.
const staleTempAge = 24 * time.Hour

// tempRemover is a store that can delete what crashed writes left behind.
type tempRemover interface {
	RemoveStaleTemp(before time.Time) (int, error)
}

// Sweep deletes every blob (blob, then row) created before cutoff and returns how many
// it deleted. A blob that cannot be deleted is kept for the next sweep.
func (h *Hosting) Sweep(ctx context.Context, cutoff time.Time) (int, error) {
	deleted := 0
	for {
		names, err := h.records.HostedMediaBefore(ctx, cutoff, sweepBatch)
		if err != nil {
			return deleted, err
		}
		var errs []error
		for _, name := range names {
			if err := h.remove(ctx, name); err != nil {
				errs = append(errs, err)
				continue
			}
			deleted++
		}
		// A failed blob would be listed again: stop here and retry next sweep.
		if err := errors.Join(errs...); err != nil {
			return deleted, err
		}
		if len(names) < sweepBatch || ctx.Err() != nil {
			return deleted, ctx.Err()
		}
	}
}

// SweepLoop deletes blobs older than retention every interval (the first time soon
// after it starts) until ctx is done. An interval of 0 or less means an hour.
func (h *Hosting) SweepLoop(ctx context.Context, interval, retention time.Duration) {
	log := h.logger(ctx).With().Str("component", "media_sweeper").Logger()
	if interval <= 0 {
		interval = time.Hour
	}
	timer := time.NewTimer(min(interval, firstSweepDelay))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := h.now()
		n, err := h.Sweep(ctx, now.Add(-retention))
		if err != nil && ctx.Err() == nil {
			log.Err(err).Int("deleted", n).Msg("Failed to delete some expired hosted media; retrying next sweep")
		} else if n > 0 {
			log.Info().Int("deleted", n).Dur("retention", retention).Msg("Deleted expired hosted media")
		}
		if tr, ok := h.store.(tempRemover); ok {
			if n, err := tr.RemoveStaleTemp(now.Add(-staleTempAge)); err != nil {
				log.Err(err).Msg("Failed to clean the media store's leftover temporary files")
			} else if n > 0 {
				log.Info().Int("removed", n).Msg("Removed temporary files left by interrupted media uploads")
			}
		}
		timer.Reset(interval)
	}
}
