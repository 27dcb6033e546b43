"""Headless MuJoCo rendering: GL backend selection and a small offscreen renderer.

MuJoCo's Python package picks its GL context class from `MUJOCO_GL` once, when `mujoco` is first
imported, and PyOpenGL fixes its platform (`PYOPENGL_PLATFORM`) on first import too. physai does
not depend on that import order: `select_backend()` decides once per process (honouring
`MUJOCO_GL` when set, else probing `egl` then `osmesa` in throw-away subprocesses, so a broken
driver cannot crash or poison this process), exports the choice to `MUJOCO_GL` /
`PYOPENGL_PLATFORM` for anything imported later, and `OffscreenRenderer` creates its context from
the chosen backend module (`mujoco.egl` / `mujoco.osmesa` / `mujoco.glfw`) directly. When nothing
works, `BackendUnavailableError` lists what was tried, why it failed, and the Debian packages to
install. Shadows, reflections, fog, haze and multisampling are switched off, and the renderer draws
a lightened copy of the model (`lighten_for_rendering`: meshes decimated by vertex clustering,
infinite planes made large but finite), because software GL (Mesa llvmpipe) is vertex-bound: for
the G1 this cuts a 64x64 frame from ~45 ms to ~4 ms of CPU. Physics never sees the copy.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import weakref
from typing import Any

import numpy as np

from physai.errors import BackendUnavailableError

AUTO_ORDER = ("egl", "osmesa")  # tried in this order when MUJOCO_GL is unset
KNOWN = ("egl", "osmesa", "glfw")  # MUJOCO_GL values physai renders with (mujoco.<name>.GLContext)
ALIASES = {"glx": "glfw", "enable": "glfw", "enabled": "glfw", "on": "glfw", "true": "glfw", "1": "glfw"}  # as mujoco
DISABLED = ("disable", "disabled", "off", "false", "0")  # MUJOCO_GL values that turn rendering off
DEBIAN_PACKAGES = {
    "egl": "libegl1 libegl-mesa0 libgl1-mesa-dri (or an NVIDIA driver's EGL)",
    "osmesa": "libosmesa6",
    "glfw": "libglfw3 and a running X display",
}
MESH_CELL = 0.01  # m: vertices closer than this are merged for rendering (invisible at 256 px)
PLANE_EXTENT = (500.0, 500.0, 10.0)  # m: half-sizes and grid spacing that replace an infinite plane
_PROBE = "from mujoco.{b} import GLContext\nc = GLContext(8, 8)\nc.make_current()\nc.free()\n"
_chosen: str | None = None
_live: "weakref.WeakSet[OffscreenRenderer]" = weakref.WeakSet()  # freed at exit, before GL libs unload


@atexit.register
def _close_all() -> None:
    for r in list(_live):
        try:
            r.close()
        except Exception:
            pass


def _install_hint() -> str:
    return "; ".join(f"{b}: apt-get install {p}" for b, p in DEBIAN_PACKAGES.items())


def _probe(backend: str, timeout: float = 60.0) -> str | None:
    """Try to create a tiny context in a fresh interpreter. None if it works, else the reason."""
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        r = subprocess.run(
            [sys.executable, "-c", _PROBE.format(b=backend)], env=env, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{type(e).__name__}: {e}"
    if r.returncode == 0:
        return None
    lines = [ln for ln in (r.stderr or r.stdout).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {r.returncode}"


def _unknown_value_error(requested: str) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"MUJOCO_GL={requested!r} is not a GL backend physai can render with; set it to one of "
        f"{list(KNOWN)} or unset it (physai then tries {list(AUTO_ORDER)}). Debian packages: {_install_hint()}"
    )


def check_mujoco_gl() -> None:
    """Raise `BackendUnavailableError` (instead of mujoco's import-time RuntimeError) when MUJOCO_GL
    holds a value MuJoCo rejects. Call it before the first `import mujoco`."""
    requested = os.environ.get("MUJOCO_GL", "").strip().lower()
    if requested and requested not in KNOWN + DISABLED + tuple(ALIASES):
        raise _unknown_value_error(requested)


def import_mujoco() -> Any:
    """`import mujoco`, with MUJOCO_GL problems as `BackendUnavailableError`: mujoco loads the GL
    backend named by MUJOCO_GL while it is imported, and a missing library (e.g. MUJOCO_GL=osmesa
    without libosmesa6) otherwise surfaces as an AttributeError deep inside PyOpenGL."""
    check_mujoco_gl()
    try:
        import mujoco
    except (ImportError, AttributeError, OSError) as e:
        requested = os.environ.get("MUJOCO_GL", "").strip().lower()
        if not requested:
            raise
        b = ALIASES.get(requested, requested)
        raise BackendUnavailableError(
            f"importing mujoco with MUJOCO_GL={requested!r} failed ({type(e).__name__}: {e}); install the "
            f"backend's libraries (Debian: {DEBIAN_PACKAGES.get(b, _install_hint())}) or unset MUJOCO_GL"
        ) from e
    return mujoco


def select_backend(*, refresh: bool = False) -> str:
    """The GL backend this process renders with ('egl' | 'osmesa' | 'glfw'), chosen once.

    `MUJOCO_GL` is honoured when set (an unknown value is an error, not a silent fallback);
    otherwise egl then osmesa are probed. Raises `BackendUnavailableError` when none works.
    """
    global _chosen
    if _chosen is not None and not refresh:
        return _chosen
    requested = os.environ.get("MUJOCO_GL", "").strip().lower()
    if requested:
        if requested in DISABLED:
            raise BackendUnavailableError(
                f"rendering is disabled by MUJOCO_GL={requested!r}; unset it or set one of {list(KNOWN)}, "
                "or pass render_images=False to the env"
            )
        if requested not in KNOWN + tuple(ALIASES):
            raise _unknown_value_error(requested)
        _chosen = ALIASES.get(requested, requested)  # honoured as given; failures surface at context creation
    else:
        failures = []
        for b in AUTO_ORDER:
            why = _probe(b)
            if why is None:
                _chosen = b
                break
            failures.append(f"{b}: {why}")
        if _chosen is None:
            raise BackendUnavailableError(
                "no headless OpenGL backend works for MuJoCo rendering. Tried "
                + " | ".join(failures)
                + f". Install one (Debian packages: {_install_hint()}), set MUJOCO_GL explicitly, "
                "or pass render_images=False to the env for state-only roll-outs."
            )
    os.environ["MUJOCO_GL"] = _chosen
    if "OpenGL" not in sys.modules and _chosen in ("egl", "osmesa"):
        os.environ["PYOPENGL_PLATFORM"] = _chosen
    return _chosen


def _context_class(backend: str) -> Any:
    if backend in ("egl", "osmesa") and "OpenGL" not in sys.modules:
        os.environ["PYOPENGL_PLATFORM"] = backend  # PyOpenGL reads it once, on first import
    try:
        if backend == "egl":
            from mujoco.egl import GLContext
        elif backend == "osmesa":
            from mujoco.osmesa import GLContext
        else:
            from mujoco.glfw import GLContext
    except Exception as e:  # ImportError, AttributeError from PyOpenGL, OSError from ctypes
        raise BackendUnavailableError(
            f"GL backend {backend!r} cannot be loaded ({type(e).__name__}: {e}). "
            f"Debian packages: {DEBIAN_PACKAGES.get(backend, _install_hint())}"
        ) from e
    return GLContext


def _decimate_meshes(model: Any, cell: float) -> None:
    """Vertex clustering, in place: faces are re-pointed at one vertex per `cell`-sized voxel and
    faces that collapse (or duplicate) are dropped; vertex arrays are left as they are."""
    has_tex = model.mesh_facetexcoord.shape[0] == model.mesh_face.shape[0]
    for i in range(model.nmesh):
        va, nv = int(model.mesh_vertadr[i]), int(model.mesh_vertnum[i])
        fa, nf = int(model.mesh_faceadr[i]), int(model.mesh_facenum[i])
        if nf < 64:
            continue
        verts = model.mesh_vert[va : va + nv]  # [V, 3] mesh frame
        voxel = np.floor(verts / cell).astype(np.int64)
        voxel -= voxel.min(axis=0)
        dims = voxel.max(axis=0) + 1
        key = voxel[:, 0] + dims[0] * (voxel[:, 1] + dims[1] * voxel[:, 2])  # [V] one int per voxel
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        faces = first[inverse.reshape(-1)][model.mesh_face[fa : fa + nf]]  # [F, 3] representative vertices
        ok = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
        srt = np.sort(faces[ok], axis=1).astype(np.int64)
        _, uniq = np.unique(srt[:, 0] + nv * (srt[:, 1] + nv * srt[:, 2]), return_index=True)
        keep = np.flatnonzero(ok)[np.sort(uniq)]  # [F'] original face ids kept
        n = len(keep)
        normals = model.mesh_facenormal[fa : fa + nf][keep].copy()
        texcoords = model.mesh_facetexcoord[fa : fa + nf][keep].copy() if has_tex else None
        model.mesh_face[fa : fa + n] = faces[keep]
        model.mesh_facenormal[fa : fa + n] = normals
        if texcoords is not None:
            model.mesh_facetexcoord[fa : fa + n] = texcoords
        model.mesh_facenum[i] = n


def lighten_for_rendering(model: Any, mesh_cell: float = MESH_CELL) -> Any:
    """A copy of `model` that renders fast in software GL (same structure, so any MjData fits)."""
    import copy

    import mujoco

    m = copy.deepcopy(model)
    if mesh_cell > 0:
        _decimate_meshes(m, mesh_cell)
    for g in range(m.ngeom):
        if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_PLANE and (m.geom_size[g, 0] <= 0 or m.geom_size[g, 1] <= 0):
            m.geom_size[g] = PLANE_EXTENT  # an infinite plane is drawn as a fine grid out to zfar: slow
    m.vis.quality.offsamples = 0  # no multisampling
    return m


class OffscreenRenderer:
    """Renders RGB frames [H, W, 3] uint8 of one model from an `MjvCamera`, with its own GL context.

    `model` is copied and lightened (see `lighten_for_rendering`; `mesh_cell=0` keeps full meshes);
    `render(data, camera)` accepts any `MjData` of the original model.
    """

    def __init__(self, model: Any, width: int, height: int, mesh_cell: float = MESH_CELL):
        import mujoco

        backend = select_backend()
        self.width, self.height = int(width), int(height)
        try:
            self._ctx = _context_class(backend)(self.width, self.height)
            self._ctx.make_current()
        except BackendUnavailableError:
            raise
        except Exception as e:
            raise BackendUnavailableError(
                f"could not create a {backend!r} GL context ({type(e).__name__}: {e}). "
                f"Debian packages: {DEBIAN_PACKAGES.get(backend, _install_hint())}"
            ) from e
        model = lighten_for_rendering(model, mesh_cell)
        # the offscreen buffer is sized from the model when the MjrContext is created
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), self.width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), self.height)
        self._mj = mujoco
        self._model = model
        self._scene = mujoco.MjvScene(model, maxgeom=1000)
        rnd = mujoco.mjtRndFlag
        for flag in (rnd.mjRND_SHADOW, rnd.mjRND_REFLECTION, rnd.mjRND_FOG, rnd.mjRND_HAZE):
            self._scene.flags[flag] = 0
        self._opt = mujoco.MjvOption()
        self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        self._viewport = mujoco.MjrRect(0, 0, self.width, self.height)
        self._rgb = np.zeros((self.height, self.width, 3), dtype=np.uint8)  # [H, W, 3]
        _live.add(self)

    def render(self, data: Any, camera: Any) -> np.ndarray:
        """One frame [H, W, 3] uint8 (a fresh array) of `data` seen from `camera`."""
        mj = self._mj
        self._ctx.make_current()
        mj.mjv_updateScene(self._model, data, self._opt, None, camera, mj.mjtCatBit.mjCAT_ALL, self._scene)
        mj.mjr_render(self._viewport, self._scene, self._con)
        mj.mjr_readPixels(self._rgb, None, self._viewport, self._con)
        return np.flipud(self._rgb).copy()  # GL rows start at the bottom

    def close(self) -> None:
        if getattr(self, "_con", None) is not None:
            self._ctx.make_current()
            self._con.free()
            self._con = None
        if getattr(self, "_ctx", None) is not None:
            self._ctx.free()
            self._ctx = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
