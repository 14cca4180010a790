package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chainfs/chainfs/store/imagefile"
)

// TestDownload: a body is read whole; one shorter than its length, and one
// that stops arriving, are malformed images, each said in words.
func TestDownload(t *testing.T) {
	defer func(d time.Duration) { stallTimeout = d }(stallTimeout)
	stallTimeout = 300 * time.Millisecond
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/whole":
			io.WriteString(w, "all of it")
		case "/short":
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "less")
		case "/stall":
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "a start")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	read := func(path string) (string, error) {
		body, _, _, err := download(context.Background(), srv.URL+path)
		if err != nil {
			return "", err
		}
		defer body.Close()
		b, err := io.ReadAll(body)
		return string(b), err
	}
	if got, err := read("/whole"); got != "all of it" || err != nil {
		t.Errorf("whole: %q %v", got, err)
	}
	if _, err := read("/short"); !errors.Is(err, imagefile.ErrMalformed) || !strings.Contains(err.Error(), "after 4 of 100 bytes") {
		t.Errorf("short: %v", err)
	}
	// A server that is not there is named as such, not as a cancellation.
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	if _, _, _, err := download(context.Background(), gone.URL+"/x"); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("no server: %v", err)
	}
	start := time.Now()
	if _, err := read("/stall"); !errors.Is(err, imagefile.ErrMalformed) || !strings.Contains(err.Error(), "nothing received for 300ms") {
		t.Errorf("stall: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stall noticed after %s", d)
	}
}
