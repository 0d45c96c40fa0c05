# The two commands of the README, and what they need.  Each target sets up
# what is missing: Debian packages, the virtual environment, the build.
#
#   make demo    a real calibration reduction on synthetic data, in parallel
#   make test    the test suite
#   make bench   the benchmarks (against python-cpl and esorex)

PYTHON ?= python3
VENV   ?= .venv
DEMO_DIR ?= demo-output

# What the project uses from Debian: CPL, esorex, pipelines, gdb for crash
# backtraces, python-cpl as the benchmark's anchor, tmux for the progress
# display test, a FAT file system (no hard links) for the output-folder
# test: mkfs.vfat, and fusefat where the kernel cannot mount vfat.
DEBIAN_PACKAGES = libcpl-dev esorex gdb gcc make python3-venv \
                  cpl-plugin-uves cpl-plugin-naco cpl-plugin-muse \
                  python3-cpl tmux slurm-wlm munge dosfstools fusefat

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
STAMP_DEBIAN = $(VENV)/.debian-packages
STAMP_INSTALL = $(VENV)/.installed

.PHONY: demo test bench setup clean

demo: $(STAMP_INSTALL)
	$(VENV)/bin/cplrun demo $(DEMO_DIR)

test: $(STAMP_INSTALL)
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP_INSTALL)
	$(VENV)/bin/python bench/bench_call.py
	$(VENV)/bin/python bench/bench_makespan.py

setup: $(STAMP_INSTALL)

$(STAMP_DEBIAN):
	@missing=$$(for p in $(DEBIAN_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $$missing || exit 1; \
	fi
	@mkdir -p $(VENV) && touch $@

$(VENV)/bin/python: | $(STAMP_DEBIAN)
	$(PYTHON) -m venv $(VENV)

$(STAMP_INSTALL): $(VENV)/bin/python $(STAMP_DEBIAN) setup.py \
                  $(wildcard src_c/*.c src_c/*.h)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf build *.egg-info cpl/_bin src_c/cplrun-runner $(DEMO_DIR)
