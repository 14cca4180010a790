#!/bin/bash
# make systemd-check: chainfs's unit and fstab line under a real systemd.
#
# Boots systemd as PID 1 of a systemd-nspawn container whose root is this
# machine's / seen through an overlay (--volatile=overlay: nothing written
# inside reaches the disk), with cgroup v2 and bpf() allowed so that the
# unit's device rules are enforced. Inside, it runs make install from a
# copy of this checkout and checks, as an operator would: Type=notify
# readiness, the mount seen outside the unit, a snapshot and an exact
# restore run through the sandboxed daemon, structured journal entries,
# stop, and an fstab mount. Everything is torn down on exit, pass or fail.
#
# Needs root, /dev/fuse and systemd-container (make deps installs it).
# make test runs it last, with SYSTEMD_CHECK_OPTIONAL=1: a machine that
# cannot boot a container skips it; a failed check fails.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d /tmp/chainfs-systemd.XXXXXX)
ROOT=$W/root
NAME=chainfs-check-$$
NSPAWN_PID=

leader() { pgrep -P "$NSPAWN_PID" -x systemd | head -1; }
inside() { nsenter -t "$(leader)" -m -p -u -i -n -C -w -r -- "$@"; }

cleanup() {
	set +e
	if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
		L=$(leader)
		[ -n "$L" ] && nsenter -t "$L" -m -p -- systemctl poweroff --no-block >/dev/null 2>&1 || kill -TERM "$NSPAWN_PID"
		for _ in $(seq 60); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 1; done
		kill -0 "$NSPAWN_PID" 2>/dev/null && kill -KILL "$NSPAWN_PID"
	fi
	mountpoint -q /run/systemd/nspawn && umount /run/systemd/nspawn
	mountpoint -q "$ROOT" && umount "$ROOT"
	# nspawn --keep-unit splits this process's cgroup into payload/ and supervisor/.
	for h in /sys/fs/cgroup /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
		for c in payload supervisor; do
			[ -d "$h/$c" ] && find "$h/$c" -depth -type d -exec rmdir {} \; 2>/dev/null
		done
	done
	rm -rf "$W"
}
trap cleanup EXIT

mkdir -p "$ROOT" "$W/src" /run/systemd/nspawn
# The checkout, without build output, for make install inside.
git -C "$HERE" ls-files -z | (cd "$HERE" && xargs -0 cp --parents -t "$W/src")
mount --bind / "$ROOT"
# nspawn removes its propagation directory and refuses to on a disk /run.
mountpoint -q /run/systemd/nspawn || mount -t tmpfs -o mode=755 chainfs-nspawn /run/systemd/nspawn
# --keep-unit and --register=no: no D-Bus or machined on this machine.
# --private-network: services of the image must not take this machine's ports.
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 setsid systemd-nspawn -q -D "$ROOT" -M "$NAME" --volatile=overlay --boot \
	--register=no --keep-unit --private-network --console=read-only \
	--bind=/dev/fuse --system-call-filter=bpf --bind-ro="$W/src:/opt/chainfs-src" \
	systemd.mask=postgresql.service >"$W/nspawn.log" 2>&1 </dev/null &
NSPAWN_PID=$!
for i in $(seq 90); do
	state=$( [ -n "$(leader)" ] && inside systemctl is-system-running 2>/dev/null || true)
	case "$state" in running|degraded) break;; esac
	if [ "$i" = 90 ] || ! kill -0 "$NSPAWN_PID" 2>/dev/null; then
		echo "systemd did not boot in systemd-nspawn here:"; tail -5 "$W/nspawn.log"
		# make test runs this where it can; a machine that cannot boot a
		# container skips it.
		[ -n "${SYSTEMD_CHECK_OPTIONAL:-}" ] && { echo "SKIP  systemd-check"; exit 0; }
		exit 1
	fi
	sleep 1
done
echo "systemd $(inside systemctl --version | head -1 | cut -d' ' -f2) booted"

fails=0
check() { # check NAME COMMAND...: runs COMMAND inside, prints PASS or FAIL
	local name=$1; shift
	if out=$(inside bash -c "$*" 2>&1); then
		echo "PASS  $name"
	else
		echo "FAIL  $name"; echo "$out" | sed 's/^/      /' | tail -20; fails=$((fails + 1))
	fi
}

check "make install" 'cp -a /opt/chainfs-src /root/src && cd /root/src && PATH=$PATH:/usr/local/go/bin make install >/tmp/install.log 2>&1 || { tail /tmp/install.log; exit 1; }'
check "init and doctor" 'chainfs init && chainfs doctor | grep -q "warn  daemon"'
check "start returns once the mount answers" 'systemctl daemon-reload && systemctl enable --now chainfs && ls /mnt/chainfs/volumes &&
	systemctl show -p StatusText chainfs | grep -q "serving /var/lib/chainfs at /mnt/chainfs"'
check "the mount shows outside the unit" 'findmnt -n -t fuse.chainfs /mnt/chainfs && systemd-run --wait -q -p PrivateTmp=yes ls /mnt/chainfs/volumes'
check "snapshot and exact restore through the sandboxed daemon" '
	set -e; src=/srv/src; mkdir -p $src/d; cd $src
	echo data > f; chown 1234:5678 f; echo s > suid; chmod 4755 suid; mknod dev c 1 3; mkfifo fifo; ln f hard
	setfattr -n trusted.x -v 1 f; setfattr -n user.y -v 2 f; truncate -s 1G sparse; echo x > cap
	setcap cap_net_raw+ep cap 2>/dev/null || true
	chainfs volume add src $src; chainfs snapshot create src >/dev/null
	# The daemon holds the repository: it ran the commands.
	[ "$(head -1 /var/lib/chainfs/lock)" = "$(systemctl show -p MainPID --value chainfs)" ]
	chainfs restore src/latest /srv/restored
	[ -z "$(rsync -aHAXn --checksum --itemize-changes $src/ /srv/restored/)" ]
	diff <(getcap $src/cap | cut -d" " -f2-) <(getcap /srv/restored/cap | cut -d" " -f2-)
	cat /mnt/chainfs/volumes/src/latest/f | grep -q data'
check "journal entries are structured" 'systemctl restart chainfs &&
	sed -i "s/^# log_level.*/log_level = \"info\"/" /etc/chainfs/config.toml && systemctl restart chainfs &&
	echo src > /mnt/chainfs/.control/snapshot &&
	for i in $(seq 50); do journalctl --sync; journalctl -u chainfs VOLUME=src -o verbose | grep -q "MESSAGE=snapshot made" && break; sleep 0.2; done &&
	journalctl -u chainfs VOLUME=src -o verbose | grep -q "SYSLOG_IDENTIFIER=chainfs" &&
	journalctl -u chainfs MOUNT=/mnt/chainfs -o cat | grep -q serving'
check "stop unmounts and leaves no process" 'systemctl stop chainfs && ! findmnt /mnt/chainfs && ! pgrep -x chainfs'
check "an fstab line mounts and unmounts" '
	echo "/var/lib/chainfs /mnt/chainfs fuse.chainfs allow_other,nofail 0 0" >> /etc/fstab &&
	systemctl daemon-reload && systemctl start mnt-chainfs.mount && ls /mnt/chainfs/volumes/src >/dev/null &&
	systemctl stop mnt-chainfs.mount && sleep 1 && ! findmnt /mnt/chainfs && ! pgrep -x chainfs'
check "security rating" 'systemd-analyze security chainfs | tail -1 | grep -E "exposure level for chainfs.service: [0-4]\.[0-9]|5\.0"'
check "an encrypted repository, unlocked by the unit from a systemd credential" '
	set -e; rm -rf /var/lib/chainfs
	install -m 0600 /dev/null /etc/chainfs/password; echo "sealed at rest" > /etc/chainfs/password
	CHAINFS_PASSWORD_FILE=/etc/chainfs/password chainfs init --encrypt >/dev/null
	mkdir -p /etc/systemd/system/chainfs.service.d
	printf "[Service]\nLoadCredential=chainfs-password:/etc/chainfs/password\n" >/etc/systemd/system/chainfs.service.d/password.conf
	systemctl daemon-reload; systemctl start chainfs
	# Through the daemon, which unlocked it: no password here.
	chainfs volume add src /srv/src </dev/null; chainfs snapshot create src >/dev/null </dev/null
	cmp /srv/src/f /mnt/chainfs/volumes/src/latest/f
	systemctl stop chainfs
	# No daemon and no password: refused; with it: opened.
	! chainfs snapshot list src </dev/null 2>/dev/null
	CHAINFS_PASSWORD_FILE=/etc/chainfs/password chainfs snapshot list src | grep -q manual
	# Without the credential the unit fails to start, saying why.
	rm /etc/systemd/system/chainfs.service.d/password.conf; systemctl daemon-reload
	! systemctl start chainfs
	journalctl -u chainfs -o cat | grep -q "needs a password"'
echo "$fails failed"
[ "$fails" = 0 ]
