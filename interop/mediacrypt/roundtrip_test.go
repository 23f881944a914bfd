package mediacrypt

import (
	"bytes"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	sizes := []int64{0, 1, 15, 16, 17, chunkSize - 1, chunkSize, chunkSize + 1, 3*chunkSize + 5}
	for _, mt := range []MediaType{Image, Video, Audio, Document} {
		for _, n := range sizes {
			var want bytes.Buffer
			if _, err := io.Copy(&want, gen(uint64(n), n)); err != nil {
				t.Fatal(err)
			}
			var blob bytes.Buffer
			res, err := Encrypt(&blob, bytes.NewReader(want.Bytes()), testKey, mt)
			if err != nil {
				t.Fatalf("%v/%d: %v", mt, n, err)
			}
			if got := sha256.Sum256(want.Bytes()); !bytes.Equal(res.FileSHA256, got[:]) {
				t.Errorf("%v/%d: FileSHA256 %x, want %x", mt, n, res.FileSHA256, got)
			}
			if !bytes.Equal(res.FileEncSHA256, sha(blob.Bytes())) {
				t.Errorf("%v/%d: FileEncSHA256 does not hash the blob", mt, n)
			}
			wantEnc := uint64((n/16+1)*16 + 10)
			if res.FileLength != uint64(n) || res.EncLength != wantEnc || uint64(blob.Len()) != wantEnc {
				t.Errorf("%v/%d: lengths %d/%d (blob %d), want %d/%d", mt, n, res.FileLength, res.EncLength, blob.Len(), n, wantEnc)
			}
			exp := Expected{MediaKey: testKey, Type: mt, FileSHA256: res.FileSHA256, FileEncSHA256: res.FileEncSHA256}
			got, err := DecryptBytes(blob.Bytes(), exp)
			if err != nil || !bytes.Equal(got, want.Bytes()) {
				t.Errorf("%v/%d: DecryptBytes mismatch, err %v", mt, n, err)
			}
			exp.FileLength = uint64(n)
			var out bytes.Buffer
			dres, err := Decrypt(&out, bytes.NewReader(blob.Bytes()), int64(blob.Len()), exp)
			if err != nil || !bytes.Equal(out.Bytes(), want.Bytes()) {
				t.Errorf("%v/%d: Decrypt mismatch, err %v", mt, n, err)
			}
			if dres.FileLength != uint64(n) || dres.EncLength != wantEnc {
				t.Errorf("%v/%d: Decrypt result lengths %d/%d", mt, n, dres.FileLength, dres.EncLength)
			}
			if _, err := DecryptBytes(blob.Bytes(), Expected{MediaKey: testKey, Type: otherType(mt), FileSHA256: res.FileSHA256, FileEncSHA256: res.FileEncSHA256}); err == nil {
				t.Errorf("%v/%d: decrypted with the keys of another media type", mt, n)
			}
		}
	}
}

func otherType(mt MediaType) MediaType {
	if mt == Image {
		return Document
	}
	return Image
}

// allocated runs f and returns the bytes it allocated on the heap, all goroutines
// together; the test must not run in parallel with others for this to mean anything.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestLargeRoundTripConstantMemory streams 50 MiB through every entry point except
// DecryptBytes and checks that none of them allocates anywhere near the file size.
func TestLargeRoundTripConstantMemory(t *testing.T) {
	const n = 50 << 20
	const budget = 2 << 20 // a few chunk buffers and hash states; far below n
	dir := t.TempDir()
	blobPath := filepath.Join(dir, "blob")
	blobFile, err := os.Create(blobPath)
	if err != nil {
		t.Fatal(err)
	}
	defer blobFile.Close()

	wantSum := sha256.New()
	if _, err := io.Copy(wantSum, gen(7, n)); err != nil {
		t.Fatal(err)
	}

	var res Result
	if a := allocated(func() { res, err = Encrypt(blobFile, gen(7, n), testKey, Video) }); a > budget {
		t.Errorf("Encrypt allocated %d bytes for %d", a, n)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.FileSHA256, wantSum.Sum(nil)) || res.FileLength != n {
		t.Fatalf("Encrypt result %x/%d does not match the generator", res.FileSHA256, res.FileLength)
	}
	st, err := blobFile.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if uint64(st.Size()) != res.EncLength {
		t.Fatalf("blob file of %d bytes, Encrypt says %d", st.Size(), res.EncLength)
	}
	exp := Expected{MediaKey: testKey, Type: Video, FileSHA256: res.FileSHA256, FileEncSHA256: res.FileEncSHA256, FileLength: n}

	// Decrypt into a writer that compares on the fly and keeps nothing.
	cmp := &compareWriter{want: gen(7, n)}
	if a := allocated(func() { _, err = Decrypt(cmp, blobFile, st.Size(), exp) }); a > budget {
		t.Errorf("Decrypt allocated %d bytes for %d", a, n)
	}
	if err != nil || cmp.bad || cmp.off != n {
		t.Fatalf("Decrypt: err %v, mismatch %v, %d bytes", err, cmp.bad, cmp.off)
	}

	outDir := t.TempDir()
	if _, err := blobFile.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	var plain *os.File
	if a := allocated(func() { plain, err = DecryptToFile(outDir, blobFile, exp) }); a > budget {
		t.Errorf("DecryptToFile allocated %d bytes for %d", a, n)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if !sameStream(t, plain, gen(7, n)) {
		t.Error("DecryptToFile plaintext differs from the original")
	}
	if names := dirEntries(t, outDir); len(names) != 1 || filepath.Join(outDir, names[0]) != plain.Name() {
		t.Errorf("after DecryptToFile the directory holds %v, want only %s", names, plain.Name())
	}
}
