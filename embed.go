// Package matrixmetainterop only embeds example-config.yaml, the network section of
// the bridge's config that admins read. It lives at the repository root because
// go:embed cannot reach a parent folder; it must import nothing.
package matrixmetainterop

import _ "embed"

// ExampleConfig is the commented network section of the config, with defaults.
//
//go:embed example-config.yaml
var ExampleConfig string
