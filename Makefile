# Two entry points for a fresh clone:  `make verify` (the main job) and `make test`.
# Each creates .venv if missing and installs what it needs.  Where no torch is installed,
# the CPU build of torch is installed first (set TORCH_PIP_ARGS, e.g. to an --index-url of
# CPU wheels, on platforms whose default torch wheel is a CUDA build).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
TORCH_PIP_ARGS ?=
SCALE ?= quick
DEVICE ?= cpu
VERIFY_ARGS ?=

.PHONY: verify test bench clean

# theorylab alone (what `make verify` needs), then the test extras on top (what `make test` needs)
$(VENV)/.core: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==$(TORCH_VERSION) $(TORCH_PIP_ARGS)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.core
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# peers of the cross-check tests and benchmarks, installed without their dependencies: curvlinops needs
# backpack-for-pytorch, which pulls torchvision (a CUDA build); what curvlinops imports is pure Python
PEERS := curvlinops-for-pytorch==3.0.1 linear_operator==0.6.1 einconv==0.1.0 einops==0.8.2 opt_einsum==3.4.0 \
	hessian-eigenthings==1.0.0a5
$(VENV)/.peers: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps $(PEERS)
	touch $@

# rewrites no recorded file unless a verdict or a number changes; SCALE=full refuses to replace the recorded
# figures/full/ unless VERIFY_ARGS has --force (or --out DIR)
verify: $(VENV)/.core
	$(VENV)/bin/theorylab verify --scale $(SCALE) $(VERIFY_ARGS)

# two single-threaded workers: the tests are many small problems (threads would only contend)
test: $(VENV)/.peers
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2

bench: $(VENV)/.peers
	$(PY) benchmarks/run_all.py --device $(DEVICE)

clean:
	rm -rf $(VENV)
