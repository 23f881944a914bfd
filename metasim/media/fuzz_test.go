package media

import (
	"net/url"
	"testing"
)

// FuzzCheckOrigin feeds hostile URLs and origins to the proxy's origin check: it must
// never panic, and whatever it lets through must have the registered origin.
func FuzzCheckOrigin(f *testing.F) {
	f.Add("https://media.example", "https://media.example/blob")
	f.Add("https://media.example:443/", "https://MEDIA.example:443/a?b#c")
	f.Add("http://127.0.0.1:8080", "http://127.0.0.1:8080@evil.example/x")
	f.Add("https://media.example", "https://media.example.evil.example/x")
	f.Add("https://[::1]:8443", "https://[::1]:8443/%2e%2e/")
	f.Fuzz(func(t *testing.T, registered, raw string) {
		u, err := checkOrigin(registered, raw)
		if err != nil {
			return
		}
		want, err1 := originOf(registered)
		got, err2 := originOf((&url.URL{Scheme: u.Scheme, Host: u.Host}).String())
		if err1 != nil || err2 != nil || got != want || u.User != nil {
			t.Fatalf("checkOrigin(%q, %q) let through %q (origin %q, want %q)", registered, raw, u, got, want)
		}
	})
}

// FuzzBlobNameOf checks that only paths of the host's own shape map to a blob name,
// and that a name never carries a path separator.
func FuzzBlobNameOf(f *testing.F) {
	f.Add(directPathOf("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
	f.Add("/v/t62.7118-24/../../etc/passwd.enc")
	f.Fuzz(func(t *testing.T, p string) {
		name, ok := blobNameOf(p)
		if !ok {
			return
		}
		if directPathOf(name) != p || len(name) != blobNameLength {
			t.Fatalf("blobNameOf(%q) = %q", p, name)
		}
		for _, c := range name {
			if c == '/' || c == '.' || c == '\\' {
				t.Fatalf("blob name %q holds a separator", name)
			}
		}
	})
}
