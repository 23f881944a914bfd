//go:build synapse

// The end-to-end tests: the real Synapse (from the cached Debian sid chroot), metasim
// and the bridge as its own process, all on 127.0.0.1 with free ports. A Matrix user
// is driven through the client-server API as a real client would; the Meta side
// through metasim's control API. Run with `make e2e` (or `go test -tags
// goolm,synapse ./e2e/`), as root, since Synapse runs under chroot.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim"
)

// The bridge binary and the checkout, set up once by TestMain.
var (
	bridgeBinary string
	repoRoot     string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := kit.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := kit.BuildBridge(ctx, root, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Build the chroot now (progress on stderr) rather than inside the first test's
	// timeout.
	if _, err := kit.ChrootRoot(root, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	bridgeBinary, repoRoot = bin, root
	return m.Run()
}

// env is one test's stack with a logged-in Matrix user.
type env struct {
	t     *testing.T
	ctx   context.Context
	st    *kit.Stack
	alice *kit.User
}

var userSeq atomic.Int64

// startStack starts Synapse, metasim and the bridge for one test, on SQLite or, with
// postgres, a fresh PostgreSQL database. Logs are dumped when the test fails.
func startStack(t *testing.T, postgres bool, adjust func(*kit.StackOptions)) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	o := kit.StackOptions{RepoRoot: repoRoot, BridgeBinary: bridgeBinary, Dir: t.TempDir(),
		Admins: []string{"@admin:" + kit.ServerName}}
	if postgres {
		o.Postgres = postgresDSN()
	}
	o.Metasim = func(c *metasim.Config) {
		for _, name := range metasim.Networks() {
			n := c.Network(name)
			n.Limits.PushInterval = metasim.Duration(100 * time.Millisecond)
		}
	}
	if adjust != nil {
		adjust(&o)
	}
	simLog := filepath.Join(o.Dir, "metasim.log")
	if o.MetasimLog == nil {
		if f, err := os.Create(simLog); err == nil {
			t.Cleanup(func() { _ = f.Close() })
			o.MetasimLog = f
		}
	}
	st, err := kit.StartStack(ctx, o)
	if err != nil {
		t.Fatalf("failed to start the stack: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs at failure:\n%s", st.Logs(60))
			keepLogs(t, st, simLog)
		}
		st.Close()
	})
	return &env{t: t, ctx: ctx, st: st}
}

func postgresDSN() string {
	if dsn := os.Getenv("INTEROP_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// user registers a fresh Matrix user.
func (e *env) user(name string) *kit.User {
	e.t.Helper()
	u, err := e.st.Synapse.NewUser(e.ctx, fmt.Sprintf("%s%d", name, userSeq.Add(1)), false)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(u.Close)
	return u
}

// must fails the test on err.
func (e *env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// waitMessage waits for a message with body in room from sender (any sender when
// empty) received after mark.
func waitMessage(t *testing.T, u *kit.User, mark int, room id.RoomID, sender id.UserID, body string) *event.Event {
	t.Helper()
	evt, err := u.WaitEventAfter(context.Background(), mark, 30*time.Second, fmt.Sprintf("message %q", body), kit.IsMessage(room, sender, body))
	if err != nil {
		t.Fatal(err)
	}
	return evt
}

// inboxText matches a simulated user's inbox item of kind text with this text.
func inboxText(text string) func(map[string]any) bool {
	return func(item map[string]any) bool {
		data, _ := item["data"].(map[string]any)
		return item["kind"] == "text" && data != nil && data["text"] == text
	}
}

// keepLogs copies the bridge's and Synapse's whole logs to
// $E2E_LOG_DIR (default /tmp/e2e-logs) when a test fails.
func keepLogs(t *testing.T, st *kit.Stack, simLog string) {
	dir := os.Getenv("E2E_LOG_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "e2e-logs")
	}
	name := strings.ReplaceAll(t.Name(), "/", "_")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return
	}
	for suffix, path := range map[string]string{"bridge": st.Bridge.LogPath, "synapse": st.Synapse.LogPath, "metasim": simLog} {
		if data, err := os.ReadFile(path); err == nil {
			_ = os.WriteFile(filepath.Join(dir, name+"."+suffix+".log"), data, 0o600)
		}
	}
	t.Logf("full logs kept in %s/%s.*.log", dir, name)
}
