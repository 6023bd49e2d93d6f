"""Can MuJoCo render offscreen here?  One check, one line saying what is missing and how to install it.

OGBench's visual environments render every observation with MuJoCo's offscreen renderer, through the OpenGL backend
that ``$MUJOCO_GL`` names: ``egl`` (libEGL, e.g. Mesa's software llvmpipe or a GPU driver) or ``osmesa`` (libOSMesa,
software only); ``glfw`` needs a display.  ``require_rendering`` is called before a visual dataset is generated and
before a pixel run or checkpoint is evaluated (floq_jax.training.compose.check_rendering), so a machine that cannot
render fails before anything is written; loading an existing visual file renders nothing and needs no GL backend.
"""
import ctypes.util
import os
import subprocess
import sys

from floq_jax.data.errors import DatasetError

INSTALL_HINT = ('run `make render-deps` (apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6; '
                'pip install PyOpenGL)')
_HEADLESS = {'egl': 'EGL', 'osmesa': 'OSMesa'}
_VALID = ('egl', 'osmesa', 'glfw', 'glx')
# The smallest real render: a model with one box, an 8x8 frame through MuJoCo's own Renderer.
_PROBE = ("import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\"1 1 1\" type=\"box\"/>"
          "</worldbody></mujoco>'); d = mujoco.MjData(m); r = mujoco.Renderer(m, 8, 8); r.update_scene(d); "
          "assert r.render().shape == (8, 8, 3)")
_PROBED = {}


def missing_backend(environ=None, find_library=ctypes.util.find_library):
    """What stops MuJoCo from rendering offscreen, judged from ``$MUJOCO_GL`` and the libraries present, as one
    sentence; None when the backend and its library are there (a real render is :func:`probe_rendering`'s job)."""
    environ = os.environ if environ is None else environ
    backend = environ.get('MUJOCO_GL', '').strip().lower()
    display = environ.get('DISPLAY') or environ.get('WAYLAND_DISPLAY')
    headless = any(find_library(lib) for lib in _HEADLESS.values())
    none_installed = 'no display, and neither libEGL nor libOSMesa is installed'
    if not backend:  # GLFW on the display, or the headless backend quiet_setup picks
        return None if display or headless else f'MUJOCO_GL is unset, {none_installed}'
    if backend in ('disable', 'disabled', 'off', 'false', '0'):  # (quiet_setup's pick when nothing can render)
        return (f'MUJOCO_GL={backend} turns rendering off; set MUJOCO_GL=egl (or osmesa)' if headless or display
                else f'MUJOCO_GL={backend}, {none_installed}')
    if backend not in _VALID:
        return f'MUJOCO_GL={backend!r} is not a MuJoCo rendering backend; accepted: egl or osmesa (offscreen), glfw'
    if backend in _HEADLESS and not find_library(_HEADLESS[backend]):
        return f'MUJOCO_GL={backend} but lib{_HEADLESS[backend]} is not installed'
    if backend in ('glfw', 'glx') and not display:
        return f'MUJOCO_GL={backend} needs a display and there is none; set MUJOCO_GL=egl (or osmesa)'
    return None


def probe_rendering(timeout=120):
    """Render one 8x8 frame in a child process (a broken GL stack may crash the process that tries); returns None
    when it works, else the child's last error line.  Remembered per $MUJOCO_GL for this process."""
    key = (os.environ.get('MUJOCO_GL'), os.environ.get('PYOPENGL_PLATFORM'))
    if key not in _PROBED:
        try:
            out = subprocess.run([sys.executable, '-c', _PROBE], capture_output=True, text=True, timeout=timeout)
            lines = [ln.strip() for ln in out.stderr.splitlines() if ln.strip()]
            _PROBED[key] = None if out.returncode == 0 else (lines[-1] if lines else f'exit code {out.returncode}')
        except subprocess.TimeoutExpired:
            _PROBED[key] = f'a one-frame render did not finish in {timeout} s'
    return _PROBED[key]


def require_rendering(what):
    """Raise DatasetError (one line: what is missing, how to install it) unless MuJoCo can render offscreen here.

    ``what`` names the thing that needs frames (e.g. the dataset).  Picks a headless backend first, as the
    entrypoints do (floq_jax.console.quiet_setup), when $MUJOCO_GL is unset and there is no display.
    """
    from floq_jax.console import quiet_setup

    problem = missing_backend()
    if problem is None:
        quiet_setup()
        error = probe_rendering()
        if error is not None:
            problem = f'MUJOCO_GL={os.environ.get("MUJOCO_GL", "")} cannot render ({error})'
    if problem is not None:
        raise DatasetError(f'{what} needs offscreen rendering: {problem}; {INSTALL_HINT}')
