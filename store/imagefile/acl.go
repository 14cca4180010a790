package imagefile

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"os/user"
	"slices"
	"strconv"
	"strings"
)

// POSIX ACL tags as Linux stores them in system.posix_acl_* xattrs.
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
	aclVersion  = 2
	aclNoID     = 1<<32 - 1
)

type aclEntry struct {
	tag  uint16
	perm uint16
	id   uint32
}

// aclFromText turns an ACL in the text form GNU tar writes
// ("user::rw-\nuser:alice:r--\n...", names or numeric ids) into the xattr
// value Linux keeps. A minimal ACL (owner, group, other only) is what the
// mode says already: nil.
func aclFromText(text string) ([]byte, error) {
	var entries []aclEntry
	extended := false
	for _, f := range strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == ',' }) {
		f, _, _ = strings.Cut(f, "#")
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		parts := strings.Split(f, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("ACL entry %q", f)
		}
		var e aclEntry
		switch parts[0] {
		case "user", "u":
			e.tag = aclUserObj
		case "group", "g":
			e.tag = aclGroupObj
		case "mask", "m":
			e.tag = aclMask
		case "other", "o":
			e.tag = aclOther
		default:
			return nil, fmt.Errorf("ACL entry %q: unknown tag", f)
		}
		e.id = aclNoID
		if q := parts[1]; q != "" {
			id, err := aclID(e.tag, q)
			if err != nil {
				return nil, fmt.Errorf("ACL entry %q: %v", f, err)
			}
			e.id = id
			e.tag <<= 1 // user → named user, group → named group
			if e.tag != aclUser && e.tag != aclGroup {
				return nil, fmt.Errorf("ACL entry %q: a qualifier on %s", f, parts[0])
			}
		}
		for _, c := range parts[2] {
			switch c {
			case 'r':
				e.perm |= 4
			case 'w':
				e.perm |= 2
			case 'x':
				e.perm |= 1
			case '-':
			default:
				return nil, fmt.Errorf("ACL entry %q: permissions", f)
			}
		}
		if e.tag == aclUser || e.tag == aclGroup || e.tag == aclMask {
			extended = true
		}
		entries = append(entries, e)
	}
	if !extended {
		return nil, nil
	}
	slices.SortFunc(entries, func(a, b aclEntry) int { return cmp.Or(cmp.Compare(a.tag, b.tag), cmp.Compare(a.id, b.id)) })
	b := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b, nil
}

// aclID reads an ACL qualifier: a number, or a user or group name of this
// machine.
func aclID(tag uint16, q string) (uint32, error) {
	if n, err := strconv.ParseUint(q, 10, 32); err == nil && n != aclNoID {
		return uint32(n), nil
	}
	var id string
	if tag == aclUserObj {
		u, err := user.Lookup(q)
		if err != nil {
			return 0, err
		}
		id = u.Uid
	} else {
		g, err := user.LookupGroup(q)
		if err != nil {
			return 0, err
		}
		id = g.Gid
	}
	n, err := strconv.ParseUint(id, 10, 32)
	return uint32(n), err
}
