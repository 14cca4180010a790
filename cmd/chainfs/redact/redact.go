// Package redact hides the secrets that URLs carry in their userinfo
// (https://user:password@host/...) before a request, a command or a message
// is recorded: in the daemon's job list, its log (or the journal), an
// image's recorded origin, --json output.
package redact

import (
	"regexp"
	"strings"
)

// Mask replaces a password, or a whole userinfo without one.
const Mask = "xxxxx"

// userinfo finds the userinfo of every URL in a text, wherever it stands
// (an argument of its own, --from=URL, inside a message): a scheme, "//",
// then everything up to the last '@' before the host's end, since a
// password with an unescaped '@' is still the password (net/url parses it
// so). Group 1 is the scheme and "//", group 2 the userinfo.
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#\s]*)@`)

// argUserinfo is userinfo within one argument, which is all one URL or
// --flag=URL: everything up to the last '@' before the path, spaces too (a
// malformed URL still carries the password someone typed).
var argUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#]*)@`)

// URLs returns s with the userinfo of every URL in it redacted:
// "user:password" becomes "user:xxxxx" (as net/url's URL.Redacted does),
// and a userinfo without a password becomes "xxxxx" entirely, since that
// is how access tokens travel (https://TOKEN@host/...).
func URLs(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return mask(userinfo, s)
}

// Arg returns one argument (a URL, or --flag=URL) with its URL's userinfo
// redacted, also where it holds spaces.
func Arg(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return mask(argUserinfo, s)
}

func mask(re *regexp.Regexp, s string) string {
	return re.ReplaceAllStringFunc(s, func(m string) string {
		sub := re.FindStringSubmatch(m)
		user, _, hasPassword := strings.Cut(sub[2], ":")
		if !hasPassword {
			return sub[1] + Mask + "@"
		}
		return sub[1] + user + ":" + Mask + "@"
	})
}
