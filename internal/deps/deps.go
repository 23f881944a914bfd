//go:build deps

// Package deps pins the chosen dependencies in go.mod until real code imports them all.
package deps

import (
	_ "github.com/coder/websocket"
	_ "github.com/flynn/noise"
	_ "github.com/lib/pq"
	_ "github.com/mattn/go-sqlite3"
	_ "github.com/rs/zerolog"
	_ "go.mau.fi/libsignal/session"
	_ "go.mau.fi/util/dbutil"
	_ "golang.org/x/crypto/hkdf"
	_ "google.golang.org/protobuf/proto"
	_ "maunium.net/go/mautrix/bridgev2"
	_ "maunium.net/go/mautrix/bridgev2/matrix/mxmain"
)
