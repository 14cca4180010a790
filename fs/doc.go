//go:build linux

// Package fs shows a chainfs repository as a read-only FUSE file system,
// with go-fuse v2 (imported as gofs), and takes commands through its
// control directory.
//
//	<mountpoint>/
//	  volumes/<volume>/<snapshot>/...   every snapshot, the source's tree
//	  volumes/<volume>/latest           symlink to the newest snapshot
//	  images/<image>/...                the images the caller may see
//	  .control/snapshot, delete, export, status  the control directory
//
// # Structure
//
// The fixed top (root, volumes/, images/, .control/) is made of persistent
// inodes. A volume directory lists its snapshots from the store at every
// Readdir and resolves one by name at Lookup, so a volume with 10,000
// snapshots costs nothing until it is listed, and a snapshot's tree is
// loaded only when it is visited. Below a snapshot every node is an
// entryNode holding its attributes and the tree its entry lies in;
// directories decode their tree blob through a cache shared by all
// snapshots (unchanged directories have the same hash in every snapshot),
// where a node finds its entry again when a request wants more than its
// attributes. Each snapshot's or image's nodes
// read through a store.Reader: the repository, or the file of a catalog
// image.
//
// # Images and callers
//
// images/ shows each caller the images images.Image.VisibleTo allows for
// the uid FUSE gives; an image's entry is never cached (timeout 0), since
// the kernel shares cached entries among callers. The mount has no default
// entry timeout, so that 0 stays 0: every lookup sets its own. Below
// images/<name> every lookup, opendir, open, getattr, readlink and xattr
// read that reaches the daemon checks the caller again (mayReadImage), so
// that an image unshared from a user whose working directory is inside it
// is gone for the next one (what the kernel keeps, attributes and POSIX
// ACLs of files already looked up, it answers itself); who sees each image is kept in memory (imageAccess), dropped at
// every change of the image (ImageChanged) and asked again after a second.
//
// # Inode numbers
//
// One function, inodeNumber, makes every number from what names the
// object: (volume id, snapshot seq, path), or (volume id, snapshot seq,
// source dev, source ino) for the names of a hard-link group, so that they
// share one inode with the right link count. The same file of the same
// snapshot has the same number in every listing and after a remount; the
// number is also what Getattr and Readdir report. Numbers are the first 8
// bytes of a BLAKE3 hash, never below firstHashedIno or all ones.
//
// # Caching
//
// Snapshots never change, so entries, misses and attributes below a
// snapshot get an hour's timeout, files open with FOPEN_KEEP_CACHE and
// FOPEN_NOFLUSH, directories with FOPEN_CACHE_DIR, the kernel checks and
// keeps POSIX ACLs, and reads are up to 1 MiB with as much read ahead;
// symlink targets are cached too. The lists of
// volumes and snapshots, and latest, get a one-second timeout (their
// misses are not cached), and the daemon tells the kernel at once when a
// snapshot appears or goes (Changed: the entries, the lists, and latest's
// cached target), outside any FUSE operation on those directories and any
// lock.
//
// # Errors
//
// errno maps store errors to errnos in one place: not found is ENOENT,
// canceled EINTR, busy EBUSY, invalid EINVAL, corrupt EIO (with one log
// line naming the volume, snapshot and path). Every call that would
// change the tree is EROFS on every node (readOnlyNode, embedded by each
// node type: go-fuse answers success for an unlink or rmdir a node lacks),
// except mkdir and rmdir in a volume directory (snapshots), writing a
// control file, and the truncation a shell's '>' asks of one; a control
// file's other attribute changes are EPERM.
//
// # Locking
//
// No lock is held across I/O or a kernel notification. The tree cache and
// each open file's block cache have their own mutexes for in-memory state.
package fs
