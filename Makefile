# One-command set-up: `make test` and `make demo` create .venv and install everything first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch/torchvision are pinned to the pair that the project's machines carry on disk;
# any other version pulls several GB of CUDA wheels.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
FASHION_MNIST := /usr/share/datasets/fashion-mnist
# faiss for `jestfilter dedup`: `make install FAISS=gpu` installs faiss-gpu-cu12 instead of faiss-cpu.
FAISS ?= cpu
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install test demo bench data packages clean

install: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[test,$(FAISS)]'
	touch $(STAMP)

# Real demo/test images: Debian's dataset-fashion-mnist. apt-get runs only when you say yes
# (asked on a terminal); otherwise the command is printed for you to run.
APT_INSTALL := apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist
data:
	@if [ -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && [ -t 0 ]; then \
		printf 'Fashion-MNIST not found. Run "%s" now? [y/N] ' '$(APT_INSTALL)'; read answer; \
		case "$$answer" in [yY]*) $(APT_INSTALL) >/dev/null;; *) echo "skipped";; esac; \
	else \
		echo "Fashion-MNIST not found: install Debian's dataset-fashion-mnist,"; \
		echo "    as root: $(APT_INSTALL)"; \
		echo "or pass --source DIR (a folder holding the four idx files train-/t10k-images-idx3-ubyte[.gz],"; \
		echo "-labels-idx1-ubyte[.gz]) to 'python -m jestfilter demo-data' / 'bootstrap', or set JESTFILTER_FASHION_MNIST=DIR."; \
	fi

# The validation suite's real images (docs/benchmarks.md): Fashion-MNIST, OpenCV's handwritten digits,
# openclipart's drawings and the fonts the colour symbols are drawn from. Installed as root where
# apt-get exists; tests of a set whose package is missing skip, saying what to install.
SUITE_PACKAGES := dataset-fashion-mnist opencv-doc openclipart-png $(shell cat jestfilter/datasets/font-packages.txt)
packages:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$(SUITE_PACKAGES) >/dev/null || echo "could not install some of: $(SUITE_PACKAGES)"; \
	else echo "as root: apt-get install $(SUITE_PACKAGES)"; fi

# One torch thread a process: the tests start many small processes (DataLoader workers, torchrun
# ranks) whose default thread pools would fight over the cores (about twice as slow on two).
test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

# The demo: Fashion-MNIST demo data → reference → JEST vs uniform and easy-reference → report.
demo: install
	$(PY) -m jestfilter bootstrap --out runs/demo

bench: install
	$(PY) tools/bench_selector.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
