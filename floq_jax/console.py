"""Console hygiene shared by the entrypoints and the env worker processes (no heavy imports here).

``quiet_setup()`` (idempotent; call it before mujoco / dm_control / ogbench are imported, and in each worker process):

* Without a display (no $DISPLAY / $WAYLAND_DISPLAY) and no $MUJOCO_GL, MuJoCo's default GLFW backend cannot render and
  GLFW prints "X11: The DISPLAY environment variable is missing" once per process; pick a headless backend instead: EGL
  if libEGL is present, else OSMesa, else none (rendering was impossible anyway).  A $MUJOCO_GL you set is kept.
* gymnasium warns "Box low's/high's precision lowered by casting to float32" for every OGBench env (OGBench declares
  float64 bounds on float32 spaces; harmless).  Only those two messages are filtered; every other warning still shows.
"""

import os
import warnings

_BOX_PRECISION = r".*Box (low|high)'s precision lowered by casting to float32"


def headless_gl_backend():
    """The MUJOCO_GL value quiet_setup picks on a machine without a display, or None when one is not needed."""
    if os.environ.get('MUJOCO_GL') or os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY'):
        return None
    import ctypes.util

    if ctypes.util.find_library('EGL'):
        return 'egl'
    if ctypes.util.find_library('OSMesa'):
        return 'osmesa'
    return 'disable'


def quiet_setup() -> None:
    backend = headless_gl_backend()
    if backend is not None:
        os.environ['MUJOCO_GL'] = backend
        if backend in ('egl', 'osmesa'):
            os.environ.setdefault('PYOPENGL_PLATFORM', backend)
    warnings.filterwarnings('ignore', message=_BOX_PRECISION, category=UserWarning)
