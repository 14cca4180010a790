// Package source reads a volume's source tree into the store as a new
// snapshot.
//
// The walk is single-threaded and cheap (readdir and fstatat per entry);
// file data is read and hashed by a pool of workers, one segment of a file
// per job, so that a single large file uses every core as well as many
// small ones do. A directory's tree blob is written once all its files are.
//
// A file whose size, mtime, ctime, inode and mode match the parent
// snapshot's record is carried over without being read (its xattrs too,
// since any xattr change moves ctime). A file that changes while it is read
// (its size, mtime or ctime differ after the read) is read again, up to
// maxAttempts times; if it keeps changing it is left out with a warning and
// never stored torn.
//
// Entries that vanish or cannot be read during the walk are left out of
// the snapshot, each with a warning; a directory that cannot be listed is
// left out with everything below it. The snapshot is still committed and
// consistent: every entry in it is exactly what was read.
package source
