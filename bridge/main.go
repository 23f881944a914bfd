// Command bridge runs matrix-meta-interop, the Matrix bridge to WhatsApp and Messenger
// through Meta's DMA interop. mxmain does everything else: flags, config, logging,
// database, the appservice.
package main

import (
	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector"
)

// Filled at build time with -ldflags "-X main.Tag=… -X main.Commit=… -X main.BuildTime=…".
var (
	Tag       = "unknown"
	Commit    = "unknown"
	BuildTime = "unknown"
)

var m = mxmain.BridgeMain{
	Name:        "matrix-meta-interop",
	URL:         "https://github.com/matrix-meta-interop/matrix-meta-interop",
	Description: "A Matrix bridge to WhatsApp and Messenger through Meta's DMA interoperability offer.",
	Version:     "0.1.0",
	Connector:   &connector.InteropConnector{},
}

func main() {
	m.InitVersion(Tag, Commit, BuildTime)
	m.Run()
}
