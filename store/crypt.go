package store

import (
	"bufio"
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/chacha20poly1305"
)

// EncryptionScheme names how an encrypted repository is sealed, in its
// marker (Info.Encryption): block and blob ids are BLAKE3 keyed with a
// key of the repository's, and everything kept is sealed with
// XChaCha20-Poly1305 (docs/format.md, "Encryption").
const EncryptionScheme = "xchacha20poly1305-blake3keyed-1"

// masterKeySize is the size of a repository's master key, from which
// every key it uses is derived.
const masterKeySize = 32

// sealOverhead is what sealing adds to the bytes it seals: the nonce
// before them and the tag after.
const sealOverhead = chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead

// What a sealed thing is, bound into its seal (the additional data), so
// that a sealed object moved to where another kind belongs fails to open.
const (
	sealBlock      byte = 'b'
	sealJournal    byte = 'j'
	sealCheckpoint byte = 'c'
)

// keyring is an encrypted repository's keys, all derived from its
// master key: one for each job, so that no use of one can tell anything
// of another.
type keyring struct {
	master [masterKeySize]byte
	// ids names blocks and blobs (Hasher).
	ids Hasher
	// aead seals blocks in packs, journal entries and checkpoints.
	aead cipher.AEAD
	// meta is the key of badger's own encryption of the metadata.
	meta [32]byte
}

func newKeyring(master []byte) (*keyring, error) {
	if len(master) != masterKeySize {
		return nil, fmt.Errorf("master key of %d bytes: %w", len(master), ErrCorrupt)
	}
	k := &keyring{}
	copy(k.master[:], master)
	var idKey, sealKey [32]byte
	blake3.DeriveKey("chainfs 2026-12 block and blob ids", master, idKey[:])
	blake3.DeriveKey("chainfs 2026-12 sealing", master, sealKey[:])
	blake3.DeriveKey("chainfs 2026-12 metadata", master, k.meta[:])
	k.ids = newKeyedHasher(idKey[:])
	aead, err := chacha20poly1305.NewX(sealKey[:])
	if err != nil {
		return nil, err
	}
	k.aead = aead
	return k, nil
}

// Hasher names blocks and blobs: the BLAKE3 hash of their bytes, keyed in
// an encrypted repository so that nobody without its key can tell whether
// known bytes are stored. The zero Hasher is plain BLAKE3 (Sum). Safe for
// concurrent use.
type Hasher struct {
	keyed *sync.Pool // of *blake3.Hasher with the key; nil: plain
}

func newKeyedHasher(key []byte) Hasher {
	base, err := blake3.NewKeyed(key)
	if err != nil {
		panic(err) // only for a key of another size than 32
	}
	return Hasher{keyed: &sync.Pool{New: func() any { return base.Clone() }}}
}

// Sum names b.
func (h Hasher) Sum(b []byte) Hash {
	if h.keyed == nil {
		return Sum(b)
	}
	d := h.keyed.Get().(*blake3.Hasher)
	d.Reset()
	d.Write(b)
	var out Hash
	d.Sum(out[:0])
	h.keyed.Put(d)
	return out
}

// seal appends to dst a sealing of plain as kind, bound to ad: a random
// nonce, then the ciphertext and its tag. plain and dst must not overlap.
func (k *keyring) seal(dst []byte, kind byte, ad, plain []byte) []byte {
	var nonce [chacha20poly1305.NonceSizeX]byte
	rand.Read(nonce[:])
	dst = append(dst, nonce[:]...)
	return k.aead.Seal(dst, nonce[:], plain, sealAD(kind, ad))
}

// open appends to dst what sealed held, checked: a sealing that fails
// to open (damaged, of another kind, bound to other data, under another
// key) is errUndecodable. dst may be sealed[sealNonce:sealNonce], to open
// in place.
func (k *keyring) open(dst []byte, kind byte, ad, sealed []byte) ([]byte, error) {
	if len(sealed) < sealOverhead {
		return nil, fmt.Errorf("sealed in %d bytes, fewer than a seal takes: %w", len(sealed), errUndecodable)
	}
	nonce, ct := sealed[:chacha20poly1305.NonceSizeX], sealed[chacha20poly1305.NonceSizeX:]
	out, err := k.aead.Open(dst, nonce, ct, sealAD(kind, ad))
	if err != nil {
		return nil, fmt.Errorf("its seal does not open: %w", errUndecodable)
	}
	return out, nil
}

// sealNonce is where a sealing's ciphertext begins.
const sealNonce = chacha20poly1305.NonceSizeX

// sealAD is the additional data of a seal: its kind, then what it is
// bound to.
func sealAD(kind byte, ad []byte) []byte { return append([]byte{kind}, ad...) }

// blockAD binds a block's seal to its id and its codec: a sealed block
// moved under another record, or a record's codec changed, does not
// open.
func blockAD(h Hash, codec Codec) []byte {
	ad := make([]byte, 0, 1+HashSize)
	ad = append(ad, byte(codec))
	return append(ad, h[:]...)
}

// sealStored returns what a pack keeps of a block whose bytes, kept
// with codec, are stored: sealed in an encrypted repository, as they are
// otherwise. release gives back the buffer the sealing took, once the
// bytes are written.
func (r *Repo) sealStored(h Hash, codec Codec, stored []byte) (_ []byte, release func()) {
	if r.keys == nil {
		return stored, func() {}
	}
	bp := storedBuffer(len(stored) + sealOverhead)
	return r.keys.seal((*bp)[:0], sealBlock, blockAD(h, codec), stored), func() { putStored(bp) }
}

// openStored is the other way: a block's bytes as kept with codec, from
// what its pack holds, appended to dst (which may be stored[sealNonce:
// sealNonce], to open in place). Its failure is errUndecodable.
func (r *Repo) openStored(h Hash, codec Codec, stored, dst []byte) ([]byte, error) {
	if r.keys == nil {
		return append(dst, stored...), nil
	}
	return r.keys.open(dst, sealBlock, blockAD(h, codec), stored)
}

// decodeCopy decodes block h's stored bytes into p, leaving them as
// they are (gc copies them so).
func (r *Repo) decodeCopy(h Hash, codec Codec, stored, p []byte) (int, error) {
	if r.keys != nil {
		bp := storedBuffer(len(stored))
		defer putStored(bp)
		opened, err := r.openStored(h, codec, stored, (*bp)[:0])
		if err != nil {
			return 0, err
		}
		stored = opened
	}
	return decodeBlock(codec, stored, p)
}

// maxStored bounds what a pack keeps of one block: the largest block,
// sealed.
const maxStored = MaxBlockSize + sealOverhead

// sealedStreamMagic begins an object sealed as a stream (a checkpoint):
// its segments follow a random prefix of the nonces.
var sealedStreamMagic = []byte("CFS1")

// streamSegment is the plaintext of each segment of a sealed stream but
// the last, which may be shorter (even empty).
const streamSegment = 1 << 20

// streamPrefix is the random part of a sealed stream's nonces; the rest
// is the segment's number and whether it is the last, so segments cut,
// dropped, repeated or reordered fail to open.
const streamPrefix = 16

// plainSize is the size of what a sealed stream of size bytes holds, or
// -1 when no stream seals to that size.
func plainSize(size int64) int64 {
	n := size - int64(len(sealedStreamMagic)) - streamPrefix
	if n < chacha20poly1305.Overhead {
		return -1
	}
	full := n / (streamSegment + chacha20poly1305.Overhead)
	rest := n % (streamSegment + chacha20poly1305.Overhead)
	if rest < chacha20poly1305.Overhead {
		return -1 // a last segment is always there, if empty
	}
	return full*streamSegment + rest - chacha20poly1305.Overhead
}

func streamNonce(prefix []byte, seg uint64, last bool) []byte {
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	copy(nonce, prefix)
	if last {
		seg |= 1 << 63
	}
	binary.BigEndian.PutUint64(nonce[streamPrefix:], seg)
	return nonce
}

// sealingWriter seals what is written to it as a stream of segments of
// kind; Close writes the last.
type sealingWriter struct {
	k      *keyring
	w      io.Writer
	kind   byte
	prefix [streamPrefix]byte
	buf    []byte
	seg    uint64
	err    error
}

func (k *keyring) sealStream(w io.Writer, kind byte) *sealingWriter {
	s := &sealingWriter{k: k, w: w, kind: kind, buf: make([]byte, 0, streamSegment+chacha20poly1305.Overhead)}
	rand.Read(s.prefix[:])
	_, s.err = w.Write(append(append([]byte{}, sealedStreamMagic...), s.prefix[:]...))
	return s
}

func (s *sealingWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && s.err == nil {
		k := copy(s.buf[len(s.buf):streamSegment], p)
		s.buf = s.buf[:len(s.buf)+k]
		p = p[k:]
		if len(s.buf) == streamSegment {
			// The last segment is always shorter, if empty.
			s.flush(false)
		}
	}
	if s.err != nil {
		return 0, s.err
	}
	return n, nil
}

func (s *sealingWriter) flush(last bool) {
	if s.err != nil {
		return
	}
	out := s.k.aead.Seal(s.buf[:0], streamNonce(s.prefix[:], s.seg, last), s.buf, []byte{s.kind})
	_, s.err = s.w.Write(out)
	s.buf = s.buf[:0]
	s.seg++
}

// Close seals and writes the last segment; it does not close the writer
// below.
func (s *sealingWriter) Close() error {
	s.flush(true)
	return s.err
}

// openingReader reads a sealed stream as what it holds, each segment
// checked before any of it is given out. The last segment is the one the
// input ends after, and must have been sealed as the last: a stream cut
// anywhere, even between segments, fails.
type openingReader struct {
	k      *keyring
	r      *bufio.Reader
	kind   byte
	prefix []byte
	seg    uint64
	plain  []byte
	buf    []byte
	done   bool
	err    error
}

// openStream reads a sealed stream of kind from r.
func (k *keyring) openStream(r io.Reader, kind byte) (*openingReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head := make([]byte, len(sealedStreamMagic)+streamPrefix)
	if _, err := io.ReadFull(br, head); err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil, fmt.Errorf("a sealed stream cut short: %w", errUndecodable)
	} else if err != nil {
		return nil, err
	}
	if string(head[:len(sealedStreamMagic)]) != string(sealedStreamMagic) {
		return nil, fmt.Errorf("not a sealed stream: %w", errUndecodable)
	}
	return &openingReader{k: k, r: br, kind: kind, prefix: head[len(sealedStreamMagic):],
		buf: make([]byte, streamSegment+chacha20poly1305.Overhead)}, nil
}

func (o *openingReader) Read(p []byte) (int, error) {
	for len(o.plain) == 0 {
		if o.err != nil {
			return 0, o.err
		}
		if o.done {
			return 0, io.EOF
		}
		n, err := io.ReadFull(o.r, o.buf)
		switch {
		case err == io.ErrUnexpectedEOF || err == io.EOF:
			o.done = true
		case err != nil:
			o.err = err
			return 0, err
		default:
			if _, err := o.r.Peek(1); err == io.EOF {
				o.done = true
			}
		}
		plain, err := o.k.aead.Open(o.buf[:0], streamNonce(o.prefix, o.seg, o.done), o.buf[:n], []byte{o.kind})
		if err != nil {
			o.err = fmt.Errorf("segment %d of a sealed stream does not open (damaged, cut or reordered): %w", o.seg, errUndecodable)
			return 0, o.err
		}
		o.plain = plain
		o.seg++
	}
	n := copy(p, o.plain)
	o.plain = o.plain[n:]
	return n, nil
}

// SealedFileMagic begins a file sealed with a password of its own
// (image export --encrypt): the magic, a version byte, the KDF's
// parameters (uvarint length, JSON), a check that the password opens, then
// a sealed stream.
var SealedFileMagic = []byte("CFSI")

const (
	sealedFileVersion = 1
	sealFile          = 'f'
	sealFileCheck     = 'k'
)

// SealFile returns a writer that seals what is written to it onto w with
// a key derived from password by argon2id (KDF); Close writes the last
// segment, without closing w.
func SealFile(w io.Writer, password []byte) (io.WriteCloser, error) {
	if len(password) == 0 {
		return nil, fmt.Errorf("an empty password: %w", ErrInvalid)
	}
	params := KDF
	params.Salt = make([]byte, 16)
	rand.Read(params.Salt)
	k, err := newKeyring(params.derive(password))
	if err != nil {
		return nil, err
	}
	kdf, _ := json.Marshal(params)
	head := append(append([]byte{}, SealedFileMagic...), sealedFileVersion)
	head = binary.AppendUvarint(head, uint64(len(kdf)))
	head = append(head, kdf...)
	head = k.seal(head, sealFileCheck, nil, nil)
	if _, err := w.Write(head); err != nil {
		return nil, err
	}
	return k.sealStream(w, sealFile), nil
}

// IsSealedFile reports whether head, a stream's first bytes (16 are
// enough), begins a sealed file: the magic, the version, and the start of
// the KDF's JSON, so that a tar whose first member's name begins with the
// magic is not taken for one.
func IsSealedFile(head []byte) bool {
	if !bytes.HasPrefix(head, SealedFileMagic) || len(head) < len(SealedFileMagic)+3 || head[len(SealedFileMagic)] != sealedFileVersion {
		return false
	}
	rest := head[len(SealedFileMagic)+1:]
	n, k := binary.Uvarint(rest)
	return k > 0 && n > 0 && n <= 4096 && len(rest) > k && rest[k] == '{'
}

// OpenSealedFile reads a sealed file's header from r and returns a
// reader of what it holds. A password that does not open it is
// ErrWrongPassword; damage found after the header is ErrCorrupt.
func OpenSealedFile(r io.Reader, password []byte) (io.Reader, error) {
	br := bufio.NewReader(r)
	head := make([]byte, len(SealedFileMagic)+1)
	if _, err := io.ReadFull(br, head); err != nil || string(head[:len(SealedFileMagic)]) != string(SealedFileMagic) {
		return nil, fmt.Errorf("not a sealed file: %w", ErrCorrupt)
	}
	if head[len(SealedFileMagic)] != sealedFileVersion {
		return nil, fmt.Errorf("a sealed file of version %d, this chainfs reads %d: %w", head[len(SealedFileMagic)], sealedFileVersion, ErrFormat)
	}
	n, err := binary.ReadUvarint(br)
	if err != nil || n > 4096 {
		return nil, fmt.Errorf("a sealed file's header is damaged: %w", ErrCorrupt)
	}
	kdf := make([]byte, n)
	check := make([]byte, sealOverhead)
	if _, err := io.ReadFull(br, kdf); err != nil {
		return nil, fmt.Errorf("a sealed file's header is cut short: %w", ErrCorrupt)
	}
	if _, err := io.ReadFull(br, check); err != nil {
		return nil, fmt.Errorf("a sealed file's header is cut short: %w", ErrCorrupt)
	}
	var params KDFParams
	if err := json.Unmarshal(kdf, &params); err != nil || !params.valid() {
		return nil, fmt.Errorf("a sealed file's KDF parameters are damaged or out of bounds: %w", ErrCorrupt)
	}
	k, err := newKeyring(params.derive(password))
	if err != nil {
		return nil, err
	}
	if _, err := k.open(nil, sealFileCheck, nil, check); err != nil {
		return nil, fmt.Errorf("the password does not open this file: %w", ErrWrongPassword)
	}
	opened, err := k.openStream(br, sealFile)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrCorrupt)
	}
	return undecodableIsCorrupt{opened}, nil
}

// undecodableIsCorrupt reports a sealed stream's failure to open as
// ErrCorrupt, which callers outside the store know.
type undecodableIsCorrupt struct{ r io.Reader }

func (u undecodableIsCorrupt) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	if errors.Is(err, errUndecodable) {
		err = fmt.Errorf("%v: %w", err, ErrCorrupt)
	}
	return n, err
}

// ErrWrongPassword: no key of an encrypted repository opens with the
// password given.
var ErrWrongPassword = errors.New("wrong password")
