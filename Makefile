# The README's two commands: `make demo` and `make test` (the full suite). All set up a virtualenv first.
# `make test-fast`: the suite less the tests marked slow or subprocess (setup.cfg); `make lint`: ruff (pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast lint clean render-deps

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

demo: setup
	$(BIN)/python -m experiments.demo

test: setup
	$(BIN)/python -m pytest -q -rxf -n 2 --dist loadfile --durations=15 tests

test-fast: setup
	$(BIN)/python -m pytest -q -rxf -n 2 --dist loadfile -m "not slow and not subprocess" tests

lint: setup
	$(BIN)/ruff check .

# Offscreen rendering for OGBench's visual (pixel) envs on a fresh Debian/Ubuntu machine: EGL (MUJOCO_GL=egl; Mesa's
# software llvmpipe, or a GPU's own libEGL) and OSMesa (MUJOCO_GL=osmesa); PyOpenGL is MuJoCo's Python binding to
# either (mujoco's requirement, in the venv already).  Needs root (or sudo).  docs/pixel_datasets.md.
RENDER_APT := libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libosmesa6
render-deps: setup
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q
	$(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(RENDER_APT)
	$(BIN)/pip install -q PyOpenGL
	MUJOCO_GL=egl PYOPENGL_PLATFORM=egl $(BIN)/python -c "from floq_jax.data.rendering import require_rendering; require_rendering('make render-deps'); print('offscreen rendering works (MUJOCO_GL=egl)')"

clean:
	rm -rf $(VENV) runs data_cache
