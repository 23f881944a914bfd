package metasim

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/socket"
)

// networkKeys are one gateway's long-term keys: the Noise static key the clients see
// in the handshake and the root key that signs its certificate chain.
type networkKeys struct {
	static  noise.DHKey
	root    ed25519.PrivateKey
	pubFile string // where the root public key was written ("" in memory)
}

// keyFiles names the files of one network's keys in the data dir.
func keyFiles(dataDir, network string) (static, root, rootPub string) {
	return filepath.Join(dataDir, network+"-noise.key"),
		filepath.Join(dataDir, network+"-root.key"),
		filepath.Join(dataDir, network+"-root.pub")
}

// loadOrCreateKeys reads a network's keys from dataDir, generating and persisting
// them on the first start; with no dataDir they are made fresh and kept in memory.
// The root public key file is (re)written every time, so the bridge's config can
// point at it even if someone deleted it.
func loadOrCreateKeys(dataDir, network string) (networkKeys, error) {
	if dataDir == "" {
		static, err := socket.GenerateStaticKey()
		if err != nil {
			return networkKeys{}, fmt.Errorf("failed to generate the noise key: %w", err)
		}
		_, root, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return networkKeys{}, fmt.Errorf("failed to generate the root key: %w", err)
		}
		return networkKeys{static: static, root: root}, nil
	}
	staticPath, rootPath, pubPath := keyFiles(dataDir, network)
	staticPriv, err := loadOrCreateSecret(staticPath, curve25519.ScalarSize)
	if err != nil {
		return networkKeys{}, err
	}
	staticPub, err := curve25519.X25519(staticPriv, curve25519.Basepoint)
	if err != nil {
		return networkKeys{}, fmt.Errorf("failed to derive the noise public key from %s: %w", staticPath, err)
	}
	seed, err := loadOrCreateSecret(rootPath, ed25519.SeedSize)
	if err != nil {
		return networkKeys{}, err
	}
	root := ed25519.NewKeyFromSeed(seed)
	pub := base64.StdEncoding.EncodeToString(root.Public().(ed25519.PublicKey)) + "\n"
	if err := writeFileAtomic(pubPath, []byte(pub), 0o644); err != nil {
		return networkKeys{}, fmt.Errorf("failed to write the root public key: %w", err)
	}
	return networkKeys{
		static:  noise.DHKey{Private: staticPriv, Public: staticPub},
		root:    root,
		pubFile: pubPath,
	}, nil
}

// loadOrCreateSecret reads a base64 secret of size bytes, or makes and stores one.
func loadOrCreateSecret(path string, size int) ([]byte, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
		if err != nil || len(b) != size {
			return nil, fmt.Errorf("key file %s is not %d bytes of base64", path, size)
		}
		return b, nil
	case errors.Is(err, fs.ErrNotExist):
		b := make([]byte, size)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("failed to generate a key: %w", err)
		}
		if err := writeFileAtomic(path, []byte(base64.StdEncoding.EncodeToString(b)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("failed to store a new key: %w", err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("failed to read key file: %w", err)
	}
}

// ReadRootPublicKey reads a root public key file written by the simulator (base64 of
// the 32-byte Ed25519 key).
func ReadRootPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read the root public key: %w", err)
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("root public key file %s is not %d bytes of base64", path, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// writeFileAtomic writes through a temporary file and a rename, so a crash never
// leaves a half-written key behind.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer func() { _ = os.Remove(name) }()
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(name, path)
}
