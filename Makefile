# edgelog: the two commands a new machine needs are `make run` and `make test` (see README.md).
SWIFT ?= swift
DEBUG_BIN := .build/debug
RELEASE_BIN := .build/release
STORE ?= var/store.img
KILLS ?= 200

.PHONY: all bootstrap build release run test test-swift test-python soak bench clean

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	$(SWIFT) build

release: bootstrap
	$(SWIFT) build -c release

# The main job on an embedded default: a file-backed store under var/ fed a generated stream
# of sensor-like readings until Ctrl-C, then what the store holds.
run: build
	@scripts/run-demo $(DEBUG_BIN)/edgelog $(STORE)

test: bootstrap test-python test-swift

test-python:
	python3 -m pytest -q scripts/test_edgelog_decode.py

test-swift:
	$(SWIFT) build --build-tests
	EDGELOG_KILLS=$(KILLS) $(SWIFT) test --skip-build

# Long runs that do not belong in every CI pass.
soak: build
	$(SWIFT) build --build-tests
	EDGELOG_KILLS=10000 $(SWIFT) test --skip-build --filter ProcessKill

bench: release
	$(RELEASE_BIN)/edgelog-bench

clean:
	rm -rf .build var
