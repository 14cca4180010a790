# chainfs — see README.md. Every target installs what it needs first.
SHELL := /bin/bash
GO ?= go
BIN := bin/chainfs
DEMO_DIR ?= /tmp/chainfs-demo
# Debian packages the project and its tests use.
DEB_PACKAGES := fuse3 rsync attr acl restic librsvg2-bin e2fsprogs mount man-db zsh fish systemd systemd-container
# Packages only the side-by-side benchmarks use.
BENCH_PACKAGES := borgbackup python3-llfuse time qemu-utils
# Where make install puts things (DESTDIR for a staging root). mount(8)
# looks for its helpers in /sbin; systemd, bash-completion, zsh and fish
# look under /usr/local too.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= /sbin
UNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
CONFDIR ?= /etc/chainfs
# The version chainfs version reports.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# Packages whose code runs goroutines concurrently: tested under -race.
RACE_PKGS := ./store/... ./fs/... ./cmd/chainfs/daemon/...

# The MinIO server that tests of object storage run against: a pinned
# version, built once per machine into a cache outside the repository
# (a few minutes on 2 cores) and reused after.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
MINIO_DIR ?= $(HOME)/.cache/chainfs-test/minio-$(MINIO_VERSION)
MINIO := $(MINIO_DIR)/minio
# SeaweedFS, the second S3 engine the store's tests run on (make
# test-engines): its module has replace directives, which go install
# refuses, so it is built from a copy of its module's source.
WEED_VERSION := v0.0.0-20261109003541-7506e5f91cd6
WEED_DIR ?= $(HOME)/.cache/chainfs-test/weed-$(WEED_VERSION)
WEED := $(WEED_DIR)/weed
# The store's tests that make sense on any engine: the bucket's calls,
# conditional writes, the probe, packs, and repositories shared by hosts.
ENGINE_TESTS := 'TestBucket$$|TestPutIfOneWins|TestProbe|TestWrongCredentials|TestObjectPacksConformance|TestRepositoryInABucket$$|TestHostsRacingCommits|TestHostsSnapshotAtOnce|TestLostAnswerIsNoLostCommit|TestCheckpoint|TestBlockCache|TestCopyIntoABucketResumes'

# Fuzz targets, as "Target package".
FUZZ_TARGETS := "FuzzDecodeTree ./store" "FuzzDecodeContent ./store" "FuzzDecodeChunks ./store" "FuzzDecodeEntry ./store" "FuzzParseClock ./store/policy" \
	"FuzzParseCommand ./fs" "FuzzCompile ./fs/source/ignore" "FuzzParseRequest ./cmd/chainfs/daemon" \
	"FuzzReadNative ./store/imagefile" "FuzzReadTar ./store/imagefile"
FUZZTIME ?= 5m
# Minimizing a new input can outlast a short -fuzztime; a bounded number
# of tries keeps it short.
FUZZMINIMIZE ?= 200x

.PHONY: all deps minio test-engines bench-s3 build install uninstall systemd-check test unit integration stress fuzz demo bench bench-compare bench-topics clean

all: build

# deps installs the Debian packages that are missing (as root, or with sudo).
deps:
	@missing=$$(for p in $(DEB_PACKAGES) $(EXTRA_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	fi

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/chainfs

minio: $(MINIO)

$(MINIO):
	@echo "building MinIO $(MINIO_VERSION) into $(MINIO_DIR), once for this machine (a few minutes)"
	GOBIN=$(MINIO_DIR) $(GO) install github.com/minio/minio@$(MINIO_VERSION)

$(WEED):
	@echo "building SeaweedFS $(WEED_VERSION) into $(WEED_DIR), once for this machine (several minutes)"
	set -e; src=$$($(GO) mod download -json github.com/seaweedfs/seaweedfs@$(WEED_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cp -r "$$src/." "$$tmp"; chmod -R u+w "$$tmp"; \
	mkdir -p $(WEED_DIR); cd "$$tmp" && $(GO) build -o $(WEED) ./weed

# test-engines runs the store's engine-neutral tests on MinIO and then on
# SeaweedFS, the same tests, each engine built once per machine.
test-engines: $(MINIO) $(WEED)
	CHAINFS_MINIO=$(MINIO) $(GO) test -count=1 -run $(ENGINE_TESTS) ./store/s3/
	CHAINFS_WEED=$(WEED) CHAINFS_S3_ENGINE=seaweedfs $(GO) test -count=1 -run $(ENGINE_TESTS) ./store/s3/

# install puts in place the binary, mount(8)'s helper (a link to it), the
# systemd unit, the man page and the completions, all generated from the
# binary, and a configuration file and its mount point unless there is a
# configuration already. As root: sudo make install.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/chainfs
	install -d $(DESTDIR)$(SBINDIR)
	ln -sf $(BINDIR)/chainfs $(DESTDIR)$(SBINDIR)/mount.fuse.chainfs
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	sed 's|@BINDIR@|$(BINDIR)|g' cmd/chainfs/dist/chainfs.service > $(DESTDIR)$(UNITDIR)/chainfs.service
	set -o pipefail; $(BIN) man | gzip -9n > $(DESTDIR)$(MANDIR)/man1/chainfs.1.gz
	$(BIN) completion bash > $(DESTDIR)$(BASHCOMPDIR)/chainfs
	$(BIN) completion zsh > $(DESTDIR)$(ZSHCOMPDIR)/_chainfs
	$(BIN) completion fish > $(DESTDIR)$(FISHCOMPDIR)/chainfs.fish
	chmod 0644 $(DESTDIR)$(UNITDIR)/chainfs.service $(DESTDIR)$(MANDIR)/man1/chainfs.1.gz \
		$(DESTDIR)$(BASHCOMPDIR)/chainfs $(DESTDIR)$(ZSHCOMPDIR)/_chainfs $(DESTDIR)$(FISHCOMPDIR)/chainfs.fish
	@if [ ! -e $(DESTDIR)$(CONFDIR)/config.toml ]; then \
		install -D -m 0644 cmd/chainfs/dist/config.toml $(DESTDIR)$(CONFDIR)/config.toml && \
		install -d $(DESTDIR)/mnt/chainfs && \
		echo "installed $(CONFDIR)/config.toml (repository /var/lib/chainfs, mount point /mnt/chainfs)"; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# uninstall removes what install put in place but the configuration file
# and every repository.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/chainfs $(DESTDIR)$(SBINDIR)/mount.fuse.chainfs $(DESTDIR)$(UNITDIR)/chainfs.service \
		$(DESTDIR)$(MANDIR)/man1/chainfs.1.gz $(DESTDIR)$(BASHCOMPDIR)/chainfs $(DESTDIR)$(ZSHCOMPDIR)/_chainfs \
		$(DESTDIR)$(FISHCOMPDIR)/chainfs.fish

# test runs unit tests (with the race detector where code is concurrent)
# and the integration tests that drive the built binary.
test: deps build $(MINIO)
	$(GO) vet ./...
	CHAINFS_MINIO=$(MINIO) $(GO) test -race -count=1 $(RACE_PKGS)
	$(GO) test -count=1 ./cmd/chainfs/ ./cmd/chainfs/config/ ./cmd/chainfs/journal/ ./cmd/chainfs/redact/
	@$(MAKE) --no-print-directory fuzz FUZZTIME=20000x
	CHAINFS_BIN=$(CURDIR)/$(BIN) CHAINFS_MINIO=$(MINIO) $(GO) test -count=1 -timeout 20m ./integration/...
	SYSTEMD_CHECK_OPTIONAL=1 bash integration/systemd/check.sh

# fuzz runs every fuzz target for FUZZTIME (make test: 20,000 inputs each;
# alone: 5 minutes each). Go 1.26's fuzzing coordinator can end a timed
# run with a bare "context deadline exceeded" though nothing failed
# (go.dev/issue/75804, fixed in Go 1.27): that ending counts as a pass
# when no failing input was written.
fuzz:
	@for t in $(FUZZ_TARGETS); do set -- $$t; \
		echo "fuzz $$1 ($(FUZZTIME))"; \
		out=$$($(GO) test -run '^$$' -fuzz "^$$1$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$2 2>&1); rc=$$?; \
		echo "$$out" | grep -E '^fuzz: elapsed' | tail -1; \
		if [ $$rc -ne 0 ]; then \
			if echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
				echo "  (ended by Go's fuzzing deadline race, go.dev/issue/75804; no failing input)"; \
			else echo "$$out" | tail -30; exit 1; fi; \
		fi; \
	done

unit: $(MINIO)
	CHAINFS_MINIO=$(MINIO) $(GO) test -race -count=1 $(RACE_PKGS) ./cmd/chainfs/ ./cmd/chainfs/config/ ./cmd/chainfs/journal/ ./cmd/chainfs/redact/

integration: build $(MINIO)
	CHAINFS_BIN=$(CURDIR)/$(BIN) CHAINFS_MINIO=$(MINIO) $(GO) test -count=1 -v -timeout 20m ./integration/...

# stress runs, with a race-built binary, 16 readers against snapshots,
# deletions and gc for 3 minutes, and kills chainfs at 200 random points of
# each operation (make test: 10 s and 20 kills with the normal binary). About
# 2½ hours on 2 cores: check --read-data after each kill is slow when race-built.
stress: deps
	$(GO) build -race -o bin/chainfs-race ./cmd/chainfs
	CHAINFS_BIN=$(CURDIR)/bin/chainfs-race CHAINFS_CRASH_ROUNDS=200 CHAINFS_STRESS_SECONDS=180 \
		$(GO) test -count=1 -v -timeout 90m -run 'KillAnywhere|GCWhileReading|ConcurrentStress' ./integration/...

# demo makes a repository under $(DEMO_DIR), snapshots a sample tree twice,
# restores it and shows what to look at.
demo: deps build
	CHAINFS=$(CURDIR)/$(BIN) DEMO_DIR=$(DEMO_DIR) bash integration/demo.sh

# bench runs the Go benchmarks and the side-by-side comparison script.
bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem ./store/... ./fs/...
	CHAINFS=$(CURDIR)/$(BIN) bash bench/snapshot.sh

# bench-compare runs every scenario for chainfs, restic, borg and go-fuse's
# loopback in one run and writes the table into docs/benchmarks.md
# (bench/compare.sh; SNAPSHOTS=N and DEPTH=N shorten it).
bench-compare: build $(MINIO)
	@$(MAKE) --no-print-directory deps EXTRA_PACKAGES="$(BENCH_PACKAGES)"
	CHAINFS=$(CURDIR)/$(BIN) MINIO=$(MINIO) bash bench/compare.sh

# bench-topics runs the older per-topic scripts: snapshots and chain depth
# against restic, images against borg, restic and GNU tar, disk volumes
# against qemu-img convert and restic.
bench-topics: build
	@$(MAKE) --no-print-directory deps EXTRA_PACKAGES="$(BENCH_PACKAGES)"
	CHAINFS=$(CURDIR)/$(BIN) bash bench/snapshot.sh
	CHAINFS=$(CURDIR)/$(BIN) bash bench/image.sh
	CHAINFS=$(CURDIR)/$(BIN) bash bench/disk.sh

# bench-s3 is bench-compare's object-storage section alone: chainfs and
# restic into the same MinIO (bench/s3.sh).
bench-s3: build $(MINIO)
	@$(MAKE) --no-print-directory deps EXTRA_PACKAGES="$(BENCH_PACKAGES)"
	CHAINFS=$(CURDIR)/$(BIN) MINIO=$(MINIO) bash bench/s3.sh

# systemd-check boots systemd in a systemd-nspawn container over an overlay
# of this machine's root and checks the unit and an fstab mount there
# (integration/systemd/check.sh); make test runs it too, skipping it where
# no container boots.
systemd-check: deps
	bash integration/systemd/check.sh

clean:
	rm -rf bin
