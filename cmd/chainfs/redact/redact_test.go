package redact

import "testing"

func TestURLs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"image import x https://user:secret@example.com/a.tar", "image import x https://user:xxxxx@example.com/a.tar"},
		{"--from=https://u:p@h/x", "--from=https://u:xxxxx@h/x"},
		{"--from https://u:p@h/x --to s3://k:s@bucket/y", "--from https://u:xxxxx@h/x --to s3://k:xxxxx@bucket/y"},
		{"https://TOKEN@github.com/a", "https://xxxxx@github.com/a"},
		{"https://u:p@ss@host/x", "https://u:xxxxx@host/x"},
		{"https://u:p%40ss@host", "https://u:xxxxx@host"},
		{"download https://u:secret@127.0.0.1:1/x: connection refused", "download https://u:xxxxx@127.0.0.1:1/x: connection refused"},
		{"https://host/path@notuser", "https://host/path@notuser"},
		{"https://host/?q=a@b", "https://host/?q=a@b"},
		{"user@host:/path mail@example.com", "user@host:/path mail@example.com"},
		{"https://example.com/plain", "https://example.com/plain"},
		{"", ""},
	} {
		if got := URLs(tc.in); got != tc.want {
			t.Errorf("URLs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := Arg("http://a:b@h/"); got != "http://a:xxxxx@h/" {
		t.Errorf("Arg: %q", got)
	}
}

// TestArgWithSpaces: a password with a space (a malformed URL still
// carries what someone typed) is redacted within its argument.
func TestArgWithSpaces(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pa ss@127.0.0.1:1/a": "https://user:xxxxx@127.0.0.1:1/a",
		"--from=https://tok en@h/x":        "--from=https://xxxxx@h/x",
	} {
		if got := Arg(in); got != want {
			t.Errorf("Arg(%q) = %q, want %q", in, got, want)
		}
	}
}
