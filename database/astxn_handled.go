package database

import (
	"context"
	"fmt"
	"strings"
)

// HandledOf says, for each of eventIDs that is stored, whether it was handled (true) or
// is still waiting (false); event IDs never stored are absent from the map. The
// appservice middleware uses it to drop events a homeserver re-sends after they were
// already handled or replayed.
func (d *Database) HandledOf(ctx context.Context, eventIDs []string) (map[string]bool, error) {
	out := make(map[string]bool, len(eventIDs))
	if len(eventIDs) == 0 {
		return out, nil
	}
	placeholders := make([]string, len(eventIDs))
	args := make([]any, len(eventIDs))
	for i, evtID := range eventIDs {
		placeholders[i] = fmt.Sprintf("$%d", i+1)
		args[i] = evtID
	}
	rows, err := d.db.Query(ctx, `
		SELECT event_id, handled_at IS NOT NULL FROM interop_bridge_as_txn
		WHERE event_id IN (`+strings.Join(placeholders, ",")+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to look up stored events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var evtID string
		var handled bool
		if err := rows.Scan(&evtID, &handled); err != nil {
			return nil, fmt.Errorf("failed to read stored event: %w", err)
		}
		out[evtID] = handled
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to look up stored events: %w", err)
	}
	return out, nil
}
