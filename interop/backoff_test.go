package interop

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
)

func TestBackoffDefaults(t *testing.T) {
	b := Backoff{Jitter: -1}
	var got []time.Duration
	for range 11 {
		got = append(got, b.Next())
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}
	for i, w := range want {
		if got[i] != w*time.Second {
			t.Fatalf("delay %d = %s, want %s (all: %v)", i, got[i], w*time.Second, got)
		}
	}
	b.Reset()
	if d := b.Next(); d != time.Second {
		t.Fatalf("after Reset: %s", d)
	}
}

func TestBackoffJitter(t *testing.T) {
	tests := []struct {
		r    float64
		want time.Duration
	}{
		{0, 4 * time.Second},
		{0.5, 3500 * time.Millisecond}, // 4 s less 0.25 · 0.5 · 4 s
		{0.75, 3250 * time.Millisecond},
		{1, 4 * time.Second}, // out of range: treated as 0
	}
	for _, tt := range tests {
		b := Backoff{Jitter: 0.25, Rand: func() float64 { return tt.r }}
		b.Next()
		b.Next()
		if d := b.Next(); d != tt.want {
			t.Errorf("r=%v: %s, want %s", tt.r, d, tt.want)
		}
	}
	// With the default source, delays spread within [0.75d, d] and never pass Max.
	b := Backoff{}
	seen := map[time.Duration]bool{}
	for range 200 {
		b.Reset()
		d := b.Next()
		if d < 750*time.Millisecond || d > time.Second {
			t.Fatalf("jittered first delay %s out of range", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatalf("jitter produced only %d distinct delays", len(seen))
	}
	for range 40 {
		if d := b.Next(); d > 5*time.Minute {
			t.Fatalf("delay %s over the cap", d)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	tests := []struct {
		err   error
		delay time.Duration
		retry bool
	}{
		{errcode.Parse("429", "", "", "30"), 30 * time.Second, true},
		{errcode.Parse("429", "", "", ""), time.Second, true},
		{fmt.Errorf("wrapped: %w", errcode.New(503)), time.Second, true},
		{errcode.New(500), time.Second, true},
		{errcode.New(409), 0, true},
		{errcode.New(412), 0, true},
		{errcode.New(403), 0, false},
		{errcode.New(406), 0, false},
		{ErrDisconnected, time.Second, true},
		{ErrAckTimeout, time.Second, true},
		{errors.New("other"), 0, false},
		{nil, 0, false},
	}
	for _, tt := range tests {
		b := &Backoff{Jitter: -1}
		d, retry := RetryDelay(tt.err, b)
		if d != tt.delay || retry != tt.retry {
			t.Errorf("%v: %s %v, want %s %v", tt.err, d, retry, tt.delay, tt.retry)
		}
	}
}
