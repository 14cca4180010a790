package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// An encrypted repository's master key is kept only wrapped, once per
// key: a key file holds the master key sealed with a key derived from a
// password by argon2id, a memory-hard function, so that guessing
// passwords costs memory as well as time. Any key opens the repository;
// adding, removing or changing one touches no other and nothing else.

// keysDir is where a repository keeps its key files: a directory of a
// repository on disk, a prefix of one in a bucket.
const keysDir = "keys"

// KDFParams are argon2id's parameters for one key, kept in its file, so
// that new keys can take larger ones (KDF) while old ones still open.
type KDFParams struct {
	Name string `json:"name"` // "argon2id"
	// Time is the number of passes over the memory.
	Time uint32 `json:"time"`
	// MemoryKiB is the memory it takes, in KiB.
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
	Salt      []byte `json:"salt"`
}

// KDF are the parameters new keys get: about a quarter of a second on
// a core of 2026, and 64 MiB, per guess.
var KDF = KDFParams{Name: "argon2id", Time: 3, MemoryKiB: 64 << 10, Threads: 2}

// keyFile is one key's file, JSON.
type keyFile struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Host    string    `json:"host,omitempty"`
	User    string    `json:"user,omitempty"`
	KDF     KDFParams `json:"kdf"`
	// Master is the master key, sealed with the key the password
	// derives, bound to the repository and the key's id.
	Master []byte `json:"master"`
}

// KeyInfo describes one key of an encrypted repository.
type KeyInfo struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Host    string    `json:"host,omitempty"`
	User    string    `json:"user,omitempty"`
	KDF     string    `json:"kdf"`
	// Current is the key this process opened the repository with.
	Current bool `json:"current"`
	// Damaged, when set, says why the key file cannot be read.
	Damaged string `json:"damaged,omitempty"`
}

// maxKeyFile bounds a key file read: a few hundred bytes.
const maxKeyFile = 64 << 10

// keyPlace is where a repository's key files are: files of a directory,
// or objects in a bucket.
type keyPlace struct {
	dir    string
	remote *Remote
}

func keyPlaceOf(opts Options) keyPlace {
	if opts.Remote != nil {
		return keyPlace{remote: opts.Remote}
	}
	return keyPlace{dir: filepath.Join(opts.Dir, keysDir)}
}

func (p keyPlace) objectKey(id string) string { return p.remote.Prefix + keysDir + "/" + id }

// list returns the ids of the key files there, sorted.
func (p keyPlace) list(ctx context.Context) ([]string, error) {
	var ids []string
	if p.remote != nil {
		for obj, err := range p.remote.Objects.List(ctx, p.remote.Prefix+keysDir+"/") {
			if err != nil {
				return nil, err
			}
			if id := path.Base(obj.Key); validKeyID(id) {
				ids = append(ids, id)
			}
		}
	} else {
		names, err := readDirNames(p.dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("keys: %w", err)
		}
		for _, n := range names {
			if validKeyID(n) {
				ids = append(ids, n)
			}
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func (p keyPlace) read(ctx context.Context, id string) (*keyFile, error) {
	var b []byte
	if p.remote != nil {
		obj, err := p.remote.Objects.Stat(ctx, p.objectKey(id))
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", id, err)
		}
		if obj.Size > maxKeyFile {
			return nil, fmt.Errorf("key %s: %d bytes: %w", id, obj.Size, ErrCorrupt)
		}
		b = make([]byte, obj.Size)
		if err := p.remote.Objects.ReadAt(ctx, p.objectKey(id), b, 0); err != nil {
			return nil, fmt.Errorf("key %s: %w", id, err)
		}
	} else {
		f, err := os.OpenFile(filepath.Join(p.dir, id), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", id, err)
		}
		defer f.Close()
		if b, err = io.ReadAll(io.LimitReader(f, maxKeyFile+1)); err != nil {
			return nil, fmt.Errorf("key %s: %w", id, err)
		}
		if len(b) > maxKeyFile {
			return nil, fmt.Errorf("key %s: more than %d bytes: %w", id, maxKeyFile, ErrCorrupt)
		}
	}
	var kf keyFile
	if err := json.Unmarshal(b, &kf); err != nil || kf.ID != id || !kf.KDF.valid() {
		return nil, fmt.Errorf("key %s: unreadable or out of bounds: %w", id, ErrCorrupt)
	}
	return &kf, nil
}

// write creates key file kf; one of its id is never replaced.
func (p keyPlace) write(ctx context.Context, kf *keyFile) error {
	b, _ := json.MarshalIndent(kf, "", "  ")
	b = append(b, '\n')
	if p.remote != nil {
		_, err := p.remote.Objects.PutIf(ctx, p.objectKey(kf.ID), b, "")
		return err
	}
	// The directory is the repository's own (CheckTrusted): made here,
	// never followed through a symlink.
	if err := os.Mkdir(p.dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if st, err := os.Lstat(p.dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%s is not a directory: %w", p.dir, ErrCorrupt)
	}
	tmp := filepath.Join(p.dir, "."+kf.ID+".tmp")
	if err := writeFileSync(tmp, b); err != nil {
		return err
	}
	// A link, not a rename: it fails rather than replace a key.
	err := os.Link(tmp, filepath.Join(p.dir, kf.ID))
	os.Remove(tmp)
	if err != nil {
		return err
	}
	return syncDir(p.dir)
}

func (p keyPlace) remove(ctx context.Context, id string) error {
	if p.remote != nil {
		return p.remote.Objects.Remove(ctx, p.objectKey(id))
	}
	if err := os.Remove(filepath.Join(p.dir, id)); err != nil {
		return err
	}
	return syncDir(p.dir)
}

func writeFileSync(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func validKeyID(id string) bool {
	if len(id) != 16 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// keyAD binds a wrapped master key to its repository and its key id.
func keyAD(repoID, keyID string) []byte { return []byte("chainfs key " + repoID + " " + keyID) }

// wrapKey makes a new key file holding master, sealed with password.
func wrapKey(repoID string, master, password []byte) (*keyFile, error) {
	if len(password) == 0 {
		return nil, fmt.Errorf("an empty password: %w", ErrInvalid)
	}
	var id [8]byte
	rand.Read(id[:])
	kf := &keyFile{ID: hex.EncodeToString(id[:]), Created: time.Now().UTC(), KDF: KDF}
	kf.Host, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		kf.User = u.Username
	}
	kf.KDF.Salt = make([]byte, 16)
	rand.Read(kf.KDF.Salt)
	aead, err := chacha20poly1305.NewX(kf.KDF.derive(password))
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	rand.Read(nonce)
	kf.Master = aead.Seal(nonce, nonce, master, keyAD(repoID, kf.ID))
	return kf, nil
}

// valid reports whether the parameters are argon2id's, within bounds a
// damaged or hostile file (a key planted in a bucket, an image file)
// cannot turn into more than a few seconds' and 256 MiB's work: up to 8
// passes over 256 MiB (four times the default's memory), 8 lanes.
func (k KDFParams) valid() bool {
	return k.Name == "argon2id" && k.Time > 0 && k.Time <= 8 && k.MemoryKiB >= 8 && k.MemoryKiB <= 256<<10 &&
		k.Threads > 0 && k.Threads <= 8 && len(k.Salt) >= 8
}

// cost orders parameters by the work a guess takes.
func (k KDFParams) cost() uint64 { return uint64(k.Time) * uint64(k.MemoryKiB) }

// deriving lets one derivation run at a time in a process: a daemon
// importing several sealed image files at once holds one KDF's memory,
// not one per import.
var deriving sync.Mutex

func (k KDFParams) derive(password []byte) []byte {
	deriving.Lock()
	defer deriving.Unlock()
	key := argon2.IDKey(password, k.Salt, k.Time, k.MemoryKiB, k.Threads, chacha20poly1305.KeySize)
	if k.MemoryKiB > KDF.MemoryKiB {
		// Tens or hundreds of MiB the process would otherwise keep
		// until its heap grows again.
		debug.FreeOSMemory()
	}
	return key
}

// unwrap returns the master key kf holds, if password opens it.
func (kf *keyFile) unwrap(repoID string, password []byte) ([]byte, bool) {
	if len(kf.Master) < sealOverhead {
		return nil, false
	}
	aead, err := chacha20poly1305.NewX(kf.KDF.derive(password))
	if err != nil {
		return nil, false
	}
	master, err := aead.Open(nil, kf.Master[:sealNonce], kf.Master[sealNonce:], keyAD(repoID, kf.ID))
	return master, err == nil && len(master) == masterKeySize
}

// unlock opens the keys of the encrypted repository info with the
// password opts gives: the keyring, the id of the key that opened, and
// the password.
func unlock(ctx context.Context, opts Options, info Info) (*keyring, string, []byte, error) {
	place := keyPlaceOf(opts)
	ids, err := place.list(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	if len(ids) == 0 {
		return nil, "", nil, fmt.Errorf("the repository is encrypted and holds no key: %w", ErrCorrupt)
	}
	if opts.Password == nil {
		return nil, "", nil, fmt.Errorf("the repository is encrypted: give its password (docs/cli.md, \"Passwords\"): %w", ErrWrongPassword)
	}
	password, err := opts.Password(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	var damaged error
	var files []*keyFile
	for _, id := range ids {
		kf, err := place.read(ctx, id)
		if err != nil {
			damaged = err
			continue
		}
		files = append(files, kf)
	}
	// The cheapest first: a key planted with costly parameters is tried
	// only when no usual one opens.
	slices.SortStableFunc(files, func(a, b *keyFile) int { return cmp.Compare(a.KDF.cost(), b.KDF.cost()) })
	for _, kf := range files {
		if err := ctx.Err(); err != nil {
			return nil, "", nil, err
		}
		if master, ok := kf.unwrap(info.ID, password); ok {
			k, err := newKeyring(master)
			return k, kf.ID, password, err
		}
	}
	if damaged != nil {
		return nil, "", nil, fmt.Errorf("no key opens with this password (and %v): %w", damaged, ErrWrongPassword)
	}
	return nil, "", nil, fmt.Errorf("no key opens with this password: %w", ErrWrongPassword)
}

// KeyFiles are an encrypted repository's keys, opened with one of them:
// what adding, listing, removing and changing keys works on. They need
// no lock of the repository, which a daemon may hold meanwhile: a key
// file is created whole, under a new name, and removed whole.
type KeyFiles struct {
	place  keyPlace
	info   Info
	master []byte
	// current is the key the password opened, and password that
	// password.
	current  string
	password []byte
}

// OpenKeyFiles opens the keys of the encrypted repository opts names,
// with the password opts gives.
func OpenKeyFiles(ctx context.Context, opts Options) (*KeyFiles, error) {
	var info *Info
	var err error
	if opts.Remote != nil {
		info, err = readRemoteInfo(ctx, *opts.Remote)
	} else {
		info, err = ReadInfo(opts.Dir)
	}
	if err != nil {
		return nil, err
	}
	if info.Encryption == "" {
		return nil, fmt.Errorf("the repository is not encrypted: it has no keys (chainfs init --encrypt makes one that is): %w", ErrInvalid)
	}
	if opts.Remote == nil {
		if err := CheckTrusted(opts.Dir); err != nil {
			return nil, err
		}
	}
	keys, id, password, err := unlock(ctx, opts, *info)
	if err != nil {
		return nil, err
	}
	return &KeyFiles{place: keyPlaceOf(opts), info: *info, master: keys.master[:], current: id, password: password}, nil
}

// List lists the keys.
func (k *KeyFiles) List(ctx context.Context) ([]KeyInfo, error) {
	ids, err := k.place.list(ctx)
	if err != nil {
		return nil, err
	}
	var out []KeyInfo
	for _, id := range ids {
		kf, err := k.place.read(ctx, id)
		if err != nil {
			// Listed, so that it can be found and removed.
			out = append(out, KeyInfo{ID: id, Damaged: err.Error()})
			continue
		}
		out = append(out, kf.describe(id == k.current))
	}
	return out, nil
}

func (kf *keyFile) describe(current bool) KeyInfo {
	return KeyInfo{ID: kf.ID, Created: kf.Created, Host: kf.Host, User: kf.User,
		KDF: fmt.Sprintf("argon2id t=%d m=%dMiB p=%d", kf.KDF.Time, kf.KDF.MemoryKiB>>10, kf.KDF.Threads), Current: current}
}

// Add adds a key that opens the repository with password.
func (k *KeyFiles) Add(ctx context.Context, password []byte) (KeyInfo, error) {
	kf, err := wrapKey(k.info.ID, k.master, password)
	if err != nil {
		return KeyInfo{}, err
	}
	if err := k.place.write(ctx, kf); err != nil {
		return KeyInfo{}, fmt.Errorf("add key: %w", err)
	}
	return kf.describe(false), nil
}

// Remove removes key id. The key the password opened is refused (change
// it with ChangePassword), and so, by that, is the last.
func (k *KeyFiles) Remove(ctx context.Context, id string) error {
	ids, err := k.place.list(ctx)
	if err != nil {
		return err
	}
	switch {
	case !slices.Contains(ids, id):
		return fmt.Errorf("key %q: no such key (chainfs key list): %w", id, ErrNotFound)
	case id == k.current:
		return fmt.Errorf("key %s is the one this password opens: change its password with 'chainfs key passwd', or remove it with another key's: %w", id, ErrInvalid)
	}
	if err := k.place.remove(ctx, id); err != nil {
		return err
	}
	// Two holders removing each other's keys at once would leave none:
	// the one that finds its own gone says so while it still holds the
	// master key, which a new key can keep.
	if left, err := k.place.list(ctx); err == nil && !slices.Contains(left, k.current) {
		again, err := k.Add(ctx, k.password)
		if err != nil {
			return fmt.Errorf("key %s is removed, and so, meanwhile, was this password's own, which could not be added again (%v): the repository may have no key left: %w", id, err, ErrChanged)
		}
		k.current = again.ID
		return fmt.Errorf("key %s is removed, and so, meanwhile, was this password's own: added again as key %s: %w", id, again.ID, ErrChanged)
	}
	return nil
}

// ChangePassword replaces the key the password opened by one of
// password: the new key is added, then the old one removed.
func (k *KeyFiles) ChangePassword(ctx context.Context, password []byte) (KeyInfo, error) {
	n, err := k.Add(ctx, password)
	if err != nil {
		return n, err
	}
	if err := k.place.remove(ctx, k.current); err != nil {
		return n, fmt.Errorf("the new key %s is added; removing the old one, %s, failed: %w", n.ID, k.current, err)
	}
	k.current, n.Current = n.ID, true
	return n, nil
}
