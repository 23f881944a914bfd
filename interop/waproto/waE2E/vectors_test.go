package waE2E_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

type vectorFile struct {
	Vectors []struct {
		Name        string          `json:"name"`
		MessageJSON json.RawMessage `json:"message_json"`
		EncodedHex  string          `json:"encoded_hex"`
	} `json:"vectors"`
}

// findVectors walks up from the package directory until it finds shared/vectors, which
// lives beside the repository root rather than inside it.
func findVectors(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("failed to get working directory: %v", err)
	}
	for {
		candidate := filepath.Join(dir, "shared", "vectors", name)
		if _, err := os.Stat(candidate); err == nil {
			return candidate
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("test vectors %s not found: no shared/vectors directory in any parent of the package", name)
		}
		dir = parent
	}
}

func TestVectors(t *testing.T) {
	raw, err := os.ReadFile(findVectors(t, "waE2E.json"))
	if err != nil {
		t.Fatalf("failed to read vectors: %v", err)
	}
	var file vectorFile
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatalf("failed to parse vectors: %v", err)
	}
	if len(file.Vectors) == 0 {
		t.Fatal("vector file holds no vectors")
	}
	for _, v := range file.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			want, err := hex.DecodeString(v.EncodedHex)
			if err != nil {
				t.Fatalf("bad encoded_hex: %v", err)
			}
			var fromJSON waE2E.Message
			// DiscardUnknown stays off: a JSON name that does not match the schema must fail
			// here rather than silently drop a field.
			if err := protojson.Unmarshal(v.MessageJSON, &fromJSON); err != nil {
				t.Fatalf("failed to build message from message_json: %v", err)
			}
			got, err := proto.MarshalOptions{Deterministic: true}.Marshal(&fromJSON)
			if err != nil {
				t.Fatalf("failed to marshal: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding mismatch\n got %x\nwant %x", got, want)
			}
			var decoded waE2E.Message
			if err := proto.Unmarshal(want, &decoded); err != nil {
				t.Fatalf("failed to decode encoded_hex: %v", err)
			}
			if !proto.Equal(&decoded, &fromJSON) {
				t.Fatalf("decoded message differs from message_json\n got %v\nwant %v", &decoded, &fromJSON)
			}
			if len(decoded.ProtoReflect().GetUnknown()) != 0 {
				t.Fatalf("decoding left unknown fields: %x", decoded.ProtoReflect().GetUnknown())
			}
		})
	}
}

// TestPresenceKept guards the proto2 choice: an empty reaction text (a removal) and
// fromMe=false must be encoded, not dropped as proto3 would.
func TestPresenceKept(t *testing.T) {
	msg := &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{
		Key:  &waE2E.MessageKey{FromMe: proto.Bool(false)},
		Text: proto.String(""),
	}}
	data, err := proto.Marshal(msg)
	if err != nil {
		t.Fatalf("failed to marshal: %v", err)
	}
	var back waE2E.Message
	if err := proto.Unmarshal(data, &back); err != nil {
		t.Fatalf("failed to unmarshal: %v", err)
	}
	if back.GetReactionMessage().Text == nil {
		t.Error("empty reaction text was dropped")
	}
	if back.GetReactionMessage().GetKey().FromMe == nil {
		t.Error("fromMe=false was dropped")
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte{0x0a, 0x01, 'x'})
	f.Add([]byte{0xf2, 0x02, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		var msg waE2E.Message
		if proto.Unmarshal(data, &msg) != nil {
			return
		}
		if _, err := proto.Marshal(&msg); err != nil {
			t.Fatalf("decoded message does not marshal: %v", err)
		}
	})
}
