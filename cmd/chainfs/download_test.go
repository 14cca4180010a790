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

// TestDownloadHidesPassword: the label a download gives (the image's
// recorded origin, what import prints) and its errors carry no password,
// while the request still sends it.
func TestDownloadHidesPassword(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "secret" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "data")
	}))
	defer srv.Close()
	withAuth := strings.Replace(srv.URL, "http://", "http://user:secret@", 1)
	body, _, label, err := download(context.Background(), withAuth+"/x")
	if err != nil {
		t.Fatal(err)
	}
	body.Close()
	if strings.Contains(label, "secret") || !strings.Contains(label, "user:xxxxx@") {
		t.Errorf("label %q", label)
	}
	wrong := strings.Replace(srv.URL, "http://", "http://user:wrong@", 1)
	if _, _, _, err := download(context.Background(), wrong+"/x"); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Errorf("refused download: %v", err)
	}
	// A token alone, to a port where nothing listens: the transport's own
	// error quotes the URL with the token in it.
	if _, _, _, err := download(context.Background(), "http://TOKEN123@127.0.0.1:1/x"); err == nil || strings.Contains(err.Error(), "TOKEN123") {
		t.Errorf("download with a token to a closed port: %v", err)
	}
}
