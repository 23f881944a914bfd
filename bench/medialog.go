package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// Media mode reads timings of files from the bridge's JSON log (at debug level). Of
// an outgoing file, connector/media_out.go's "Hosted the encrypted file of an outgoing
// message" says how long downloading, encrypting and hosting it took. Of an incoming
// file, connector/media_in.go's "Bridged incoming media" (with the file's
// size and how long fetching it from Meta's media host, verifying, decrypting and
// uploading it took) and the Matrix client's "Request completed" of the upload to the
// homeserver, whose URL names the file. Neither is a contract: when a line is
// missing the figures are left out, and the rest of the row stands.

// incomingTimes are the bridge's timings of one incoming file.
type incomingTimes struct {
	// Took is the bridge's handling of the file: fetch, verify, decrypt, upload.
	Took time.Duration
	// Upload is the upload to the homeserver within it.
	Upload time.Duration
}

// logSize is how long the bridge's log is now, to read only what follows.
func logSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// readIncomingTimes reads the log at path from offset on.
func readIncomingTimes(path string, offset, size int64, fileName string) (incomingTimes, error) {
	f, err := os.Open(path)
	if err != nil {
		return incomingTimes{}, fmt.Errorf("failed to open the bridge's log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return incomingTimes{}, fmt.Errorf("failed to read the bridge's log: %w", err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return incomingTimes{}, fmt.Errorf("failed to read the bridge's log: %w", err)
	}
	return parseIncomingTimes(buf.Bytes(), size, fileName)
}

// parseIncomingTimes finds the first "Bridged incoming media" line of size bytes and
// the upload request of fileName in JSON log lines. Durations are zerolog's
// milliseconds.
func parseIncomingTimes(log []byte, size int64, fileName string) (incomingTimes, error) {
	var t incomingTimes
	var tookOK, uploadOK bool
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() && !(tookOK && uploadOK) {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte("Bridged incoming media")) && !bytes.Contains(line, []byte("/upload")) {
			continue
		}
		var entry struct {
			Message  string   `json:"message"`
			Size     *int64   `json:"size"`
			Took     *float64 `json:"took"`
			Method   string   `json:"method"`
			URL      string   `json:"url"`
			Duration *float64 `json:"duration"`
		}
		if json.Unmarshal(line, &entry) != nil {
			continue
		}
		switch {
		case !tookOK && entry.Message == "Bridged incoming media" && entry.Size != nil && *entry.Size == size && entry.Took != nil:
			t.Took, tookOK = msDuration(*entry.Took), true
		case !uploadOK && entry.Message == "Request completed" && entry.Method == "POST" && entry.Duration != nil &&
			strings.Contains(entry.URL, "/upload") && strings.Contains(entry.URL, "filename="+fileName):
			t.Upload, uploadOK = msDuration(*entry.Duration), true
		}
	}
	if !tookOK || !uploadOK {
		return t, fmt.Errorf("the bridge's log has no timings of the incoming %s (bridged: %v, upload: %v)", fileName, tookOK, uploadOK)
	}
	return t, nil
}

// readOutgoingTook reads the log at path from offset on for connector/media_out.go's
// "Hosted the encrypted file of an outgoing message" of a file of size bytes: how long
// the bridge took to download the file from the homeserver, encrypt and host it.
func readOutgoingTook(path string, offset, size int64) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("failed to open the bridge's log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return 0, fmt.Errorf("failed to read the bridge's log: %w", err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return 0, fmt.Errorf("failed to read the bridge's log: %w", err)
	}
	return parseOutgoingTook(buf.Bytes(), size)
}

// parseOutgoingTook finds the first hosting line of a file of size bytes in JSON log
// lines.
func parseOutgoingTook(log []byte, size int64) (time.Duration, error) {
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte("Hosted the encrypted file")) {
			continue
		}
		var entry struct {
			Message    string   `json:"message"`
			FileLength *int64   `json:"file_length"`
			Took       *float64 `json:"took"`
		}
		if json.Unmarshal(line, &entry) != nil {
			continue
		}
		if entry.Message == "Hosted the encrypted file of an outgoing message" && entry.FileLength != nil &&
			*entry.FileLength == size && entry.Took != nil {
			return msDuration(*entry.Took), nil
		}
	}
	return 0, fmt.Errorf("the bridge's log has no hosting time of an outgoing file of %d bytes", size)
}

func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }
