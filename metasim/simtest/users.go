package simtest

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simuser"
)

// CreateUsers makes n simulated WhatsApp users (+49160000000, +49160000001, …) with
// devices devices each, opted in to IntegratorID, eight at a time; it returns the
// users and all their devices.
func CreateUsers(ctx context.Context, users *simuser.Manager, n, devices int) (members, all []jid.JID, err error) {
	members = make([]jid.JID, n)
	devs := make([][]jid.JID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range members {
		members[i] = jid.New(strconv.Itoa(491600000000+i), jid.ServerGateway)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			devs[i], errs[i] = users.CreateUser(ctx, members[i], devices, simuser.UserOptions{OptIn: []uint16{IntegratorID}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, nil, fmt.Errorf("failed to create simulated user %s: %w", members[i], err)
		}
		all = append(all, devs[i]...)
	}
	if len(all) != n*devices {
		return nil, nil, fmt.Errorf("%d simulated devices, want %d", len(all), n*devices)
	}
	return members, all, nil
}
