package s3

import (
	"bytes"
	"io"
	"testing"
)

// TestUploadBodyKeepsWhatMinioWants: a body that can be rewound and read
// at offsets stays so behind the progress it tells (minio-go retries a
// PUT only with a Seeker, and sends parts in parallel from a ReaderAt),
// and every read that returns bytes tells progress.
func TestUploadBodyKeepsWhatMinioWants(t *testing.T) {
	told := 0
	body := uploadBody(bytes.NewReader([]byte("abcdef")), func() { told++ })
	s, ok := body.(io.ReadSeeker)
	if !ok {
		t.Fatal("a bytes.Reader body is no longer an io.Seeker: minio-go would not retry its PUT")
	}
	if _, ok := body.(io.ReaderAt); !ok {
		t.Fatal("a bytes.Reader body is no longer an io.ReaderAt")
	}
	first, _ := io.ReadAll(s)
	if _, err := s.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	again, _ := io.ReadAll(s)
	if string(first) != "abcdef" || string(again) != "abcdef" || told < 2 {
		t.Errorf("read %q, after a rewind %q, progress told %d times", first, again, told)
	}
	// A body that cannot seek does not pretend to.
	if _, ok := uploadBody(io.MultiReader(bytes.NewReader(nil)), func() {}).(io.Seeker); ok {
		t.Error("a body that cannot seek claims to")
	}
}
