package bench

import (
	"bytes"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestParseCryptoBench(t *testing.T) {
	out := []byte(`goos: linux
pkg: github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt
BenchmarkEncrypt/1MiB-2         	     289	   4031233 ns/op	 260.12 MB/s
BenchmarkEncrypt/20MiB-2        	      14	  80080123 ns/op	 261.88 MB/s
BenchmarkDecrypt/20MiB          	      14	  71320000 ns/op	 294.03 MB/s	  1234 B/op	  12 allocs/op
BenchmarkOutgoingMessage/sqlite-2	    5000	    250000 ns/op
PASS
`)
	got := ParseCryptoBench(out)
	want := []CryptoResult{
		{Name: "Encrypt/1MiB", NsPerOp: 4031233, MBPerSec: 260.12},
		{Name: "Encrypt/20MiB", NsPerOp: 80080123, MBPerSec: 261.88},
		{Name: "Decrypt/20MiB", NsPerOp: 71320000, MBPerSec: 294.03},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v (lines without MB/s are left out)", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestBareFor(t *testing.T) {
	crypto := []CryptoResult{
		{Name: "Encrypt/1MiB", MBPerSec: 250},
		{Name: "Encrypt/20MiB", MBPerSec: 260},
		{Name: "Decrypt/1MiB", MBPerSec: 280},
		{Name: "Decrypt/20MiB", MBPerSec: 290},
		{Name: "Decrypt/odd", MBPerSec: 1},
	}
	for _, tc := range []struct {
		name string
		dir  string
		size int64
		want string
	}{
		{"outgoing files are encrypted", MatrixToMeta, 1 << 20, "Encrypt/1MiB"},
		{"incoming files are decrypted", MetaToMatrix, 20 << 20, "Decrypt/20MiB"},
		{"a size not measured takes the largest", MatrixToMeta, 100 << 20, "Encrypt/20MiB"},
		{"also below the smallest", MetaToMatrix, 64 << 10, "Decrypt/20MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := bareFor(crypto, tc.dir, tc.size)
			if !ok || got.Name != tc.want {
				t.Errorf("got %q %v, want %q", got.Name, ok, tc.want)
			}
		})
	}
	if _, ok := bareFor(nil, MetaToMatrix, 1<<20); ok {
		t.Error("found a bare speed without any benchmark")
	}
}

func TestParseMediaSizes(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []int64
		wantErr bool
	}{
		{"1,20,100", []int64{1 << 20, 20 << 20, 100 << 20}, false},
		{" 0.5 , 2,", []int64{512 << 10, 2 << 20}, false},
		{"", nil, true},
		{"1,x", nil, true},
		{"0", nil, true},
		{"-1", nil, true},
		{"2048", nil, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseMediaSizes(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestParseStatusKB(t *testing.T) {
	status := []byte("Name:\tstackbench\nVmPeak:\t 2000000 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\n")
	for _, tc := range []struct {
		status  []byte
		field   string
		want    int64
		wantErr bool
	}{
		{status, "VmHWM", 40 << 20, false},
		{status, "VmRSS", 20 << 20, false},
		{status, "VmSwap", 0, true},
		{[]byte("VmHWM:\t 12 MB\n"), "VmHWM", 0, true},
		{[]byte("VmHWM:\t x kB\n"), "VmHWM", 0, true},
	} {
		t.Run(tc.field, func(t *testing.T) {
			got, err := parseStatusKB(tc.status, tc.field)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("got %d %v, want %d (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestBlobSize(t *testing.T) {
	// PKCS#7 always pads, one to 16 bytes, then the 10-byte MAC.
	for n, want := range map[int64]int64{0: 26, 15: 26, 16: 42, 100 << 20: 100<<20 + 26} {
		if got := blobSize(n); got != want {
			t.Errorf("blobSize(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestMediaResultFill(t *testing.T) {
	m := MediaResult{Direction: MatrixToMeta, Bytes: 100e6, Seconds: 2, TotalSeconds: 4, BridgeSeconds: 1,
		RSSBeforeBytes: 30 << 20, PeakBytes: 35 << 20}
	m.fill([]CryptoResult{{Name: "Encrypt/20MiB", MBPerSec: 200}})
	if m.MBPerSec != 50 || m.TotalMBPerSec != 25 || m.BridgeMBPerSec != 100 || m.PeakGrowthBytes != 5<<20 ||
		m.Bare != "Encrypt/20MiB" || m.BareMBPerSec != 200 || m.RatioToBare != 0.25 {
		t.Errorf("got %+v", m)
	}
	// A peak read below the RSS before (the reset raced a release) is no growth.
	m = MediaResult{Direction: MetaToMatrix, Bytes: 1e6, Seconds: 1, RSSBeforeBytes: 30 << 20, PeakBytes: 29 << 20}
	m.fill(nil)
	if m.PeakGrowthBytes != 0 || m.Bare != "" || m.RatioToBare != 0 {
		t.Errorf("got %+v", m)
	}
}

// The peak reading the media table reports must start from the reset: after a
// large allocation is freed, resetting brings VmHWM back down to about the RSS.
func TestResetPeak(t *testing.T) {
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = 1
	}
	high, err := readPeak(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(buf[:1<<20], []byte{1}) != 1<<20 {
		t.Fatal("buffer not touched")
	}
	buf = nil
	debug.FreeOSMemory()
	rss, err := resetPeak(os.Getpid())
	if err != nil {
		if strings.Contains(err.Error(), "permission") {
			t.Fatalf("this test needs to write /proc/self/clear_refs, as the bench does for the bridge: %v", err)
		}
		t.Fatal(err)
	}
	low, err := readPeak(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if high-low < 32<<20 || low > rss+8<<20 {
		t.Errorf("peak %d MiB before the reset, %d MiB after it with RSS %d MiB", high>>20, low>>20, rss>>20)
	}
}

func TestSummarizeMedia(t *testing.T) {
	row := func(dir string, size int64, round int, secs float64, growth int64) MediaResult {
		return MediaResult{Direction: dir, Bytes: size, Round: round, Seconds: secs, PeakGrowthBytes: growth}
	}
	all := []MediaResult{
		row(MetaToMatrix, 1, 1, 0.9, 1), row(MatrixToMeta, 1, 1, 5, 0),
		row(MetaToMatrix, 1, 2, 0.5, 7), row(MatrixToMeta, 1, 2, 3, 0),
		row(MetaToMatrix, 1, 3, 0.7, 2),
	}
	got := SummarizeMedia(all)
	if len(got) != 2 {
		t.Fatalf("got %d rows, want one per direction and size: %+v", len(got), got)
	}
	// The median of 0.5, 0.7, 0.9 is round 3; the worst growth is round 2's.
	if m := got[0]; m.Direction != MetaToMatrix || m.Round != 3 || m.Seconds != 0.7 || m.PeakGrowthBytes != 7 || m.Rounds != 3 {
		t.Errorf("Meta→Matrix row %+v", m)
	}
	// Of two rounds the faster one stands for them.
	if m := got[1]; m.Direction != MatrixToMeta || m.Round != 2 || m.Rounds != 2 {
		t.Errorf("Matrix→Meta row %+v", m)
	}
	if all[0].Round != 1 || all[2].Seconds != 0.5 {
		t.Error("summarizing reordered the rounds it was given")
	}
}

func TestParseIncomingTimes(t *testing.T) {
	log := []byte(`{"level":"debug","message":"Handling remote event","time":"2026-11-25T23:05:58.608Z"}
{"level":"debug","method":"POST","url":"http://127.0.0.1:1/_matrix/media/v3/upload?filename=other.bin&user_id=%40x","duration":11.5,"message":"Request completed"}
{"level":"debug","size":2048,"encrypted":false,"took":20.5,"message":"Bridged incoming media"}
not json at all, mentions /upload
{"level":"debug","method":"POST","url":"http://127.0.0.1:1/_matrix/media/v3/upload?filename=bench-1.bin&user_id=%40x","duration":276.816686,"status_code":200,"message":"Request completed"}
{"level":"debug","size":104857600,"encrypted":false,"took":794.957672,"message":"Bridged incoming media"}
{"level":"debug","size":104857600,"encrypted":false,"took":1.0,"message":"Bridged incoming media"}
`)
	for _, tc := range []struct {
		name    string
		size    int64
		file    string
		want    incomingTimes
		wantErr bool
	}{
		{"the file's own lines", 100 << 20, "bench-1.bin",
			incomingTimes{Took: 794957672 * time.Nanosecond, Upload: 276816686 * time.Nanosecond}, false},
		{"no upload of that name", 2048, "bench-2.bin", incomingTimes{}, true},
		{"no file of that size", 4096, "bench-1.bin", incomingTimes{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseIncomingTimes(log, tc.size, tc.file)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseOutgoingTook(t *testing.T) {
	log := []byte(`{"level":"debug","message":"Handling remote event"}
{"level":"debug","media_type":"document","file_length":2048,"blob_length":2074,"thumbnail":false,"took":3.5,"message":"Hosted the encrypted file of an outgoing message"}
not json, Hosted the encrypted file
{"level":"debug","media_type":"document","file_length":104857583,"blob_length":104857610,"thumbnail":false,"took":812.25,"message":"Hosted the encrypted file of an outgoing message"}
{"level":"debug","file_length":104857583,"took":1.0,"message":"Hosted the encrypted file of an outgoing message"}
`)
	for _, tc := range []struct {
		name    string
		size    int64
		want    time.Duration
		wantErr bool
	}{
		{"the file's first line", 104857583, 812250 * time.Microsecond, false},
		{"a small file", 2048, 3500 * time.Microsecond, false},
		{"no file of that size", 4096, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseOutgoingTook(log, tc.size)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
