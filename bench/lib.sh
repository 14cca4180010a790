# Helpers shared by the bench scripts; sourced, not run.

# cold drops the page cache (needs root) so the next read comes from disk.
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# gen SEED SIZE writes SIZE bytes of deterministic incompressible data.
gen() { head -c "$2" < <(openssl enc -aes-128-ctr -pass "pass:$1" -nosalt -pbkdf2 </dev/zero 2>/dev/null); }

# ratio A B prints A/B with two decimals.
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }

# workdir NAME makes $work, a new directory under /var/tmp, removed on
# exit after the daemon whose pid is in $daemon (if any) is stopped and
# $work/mnt unmounted.
workdir() {
	work=$(mktemp -d "/var/tmp/chainfs-$1.XXXXXX")
	daemon=
	trap workdir_cleanup EXIT
}
workdir_cleanup() {
	[ -n "$daemon" ] && kill "$daemon" 2>/dev/null
	mountpoint -q "$work/mnt" 2>/dev/null && umount -l "$work/mnt"
	rm -rf "$work"
}
