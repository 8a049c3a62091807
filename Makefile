# clipzero's everyday commands. `make test` is what CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck docs pytest bench demo clean browser

# (Re)create the virtual environment when pyproject.toml or the constraints change.
$(STAMP): pyproject.toml constraints-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints-dev.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the browser test of the web UI (Playwright drives it; never `playwright install`), a CJK
# font so that Chinese labels render in it, and ExifTool, which reads back the XMP keywords `clipzero export` writes.
browser:
	@{ command -v chromium >/dev/null && command -v exiftool >/dev/null && fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; } || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-noto-cjk libimage-exiftool-perl >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check clipzero tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy clipzero

pytest: $(STAMP)
	$(BIN)/pytest -q

# The documentation site (docs/ -> .site/); --strict: a broken link or anchor fails the build.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet

test: lint typecheck docs pytest

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints-dev.txt -e '.[bench]'
	$(BIN)/python benchmarks/precision.py
	$(BIN)/python benchmarks/tagging_speed.py
	$(BIN)/python benchmarks/text_speed.py
	$(BIN)/python benchmarks/first_call.py
	$(BIN)/python benchmarks/time_to_fail.py
	$(BIN)/python benchmarks/shapes_quality.py
	$(BIN)/python benchmarks/rejection.py
	$(BIN)/python benchmarks/multilabel.py
	$(BIN)/python benchmarks/store_search.py
	$(BIN)/python benchmarks/dedup.py
	$(BIN)/python benchmarks/dedup_neighbour.py
	$(BIN)/python benchmarks/video.py
	$(BIN)/python benchmarks/classify_cache.py
	$(BIN)/python benchmarks/adaptation.py
	$(BIN)/python benchmarks/service_load.py
	$(BIN)/python benchmarks/service_fairness.py
	$(BIN)/python benchmarks/ray_overhead.py

# The offline quickstart: the bundled model labels the example images, in English and in Chinese.
demo: $(STAMP)
	@echo '$$ clipzero classify examples/*.png --labels-file examples/labels-en.txt --model clipzero-shapes --templates photo --top-k 3'
	@$(BIN)/clipzero classify examples/*.png --labels-file examples/labels-en.txt --model clipzero-shapes --templates photo --top-k 3
	@echo
	@echo '$$ clipzero classify examples/*.png --labels-file examples/labels-zh.txt --model clipzero-shapes --templates photo-zh --top-k 3'
	@$(BIN)/clipzero classify examples/*.png --labels-file examples/labels-zh.txt --model clipzero-shapes --templates photo-zh --top-k 3

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .site
