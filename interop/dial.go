package interop

import (
	"context"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/socket"
)

var (
	_ FrameConn = (*socket.Conn)(nil)
)

// SocketDialer is the Dialer of a real connection: WebSocket + Noise to the gateway
// with its certificate chain verified (interop/socket). The options are used for every
// dial; their payload holds the account's token.
func SocketDialer(opts socket.DialOptions) Dialer {
	return func(ctx context.Context) (FrameConn, error) {
		conn, err := socket.Dial(ctx, opts)
		if err != nil {
			// Never a typed nil inside the interface.
			return nil, err
		}
		return conn, nil
	}
}
