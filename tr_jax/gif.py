"""Brax states drawn as an animated GIF on the CPU: ``tr-jax render RUN_DIR --gif FILE.gif``.

:func:`render_frames` draws every geom of a Brax system -- planes (a grid),
spheres, capsules, ellipsoids, cylinders, boxes and meshes, in their MJCF
colours -- at the body poses of each state (``state.x``) with pytinyrenderer,
a software rasterizer that needs no display and no OpenGL, seen from a camera
at a fixed distance that follows the first body if it walks away
(:func:`camera_path`). :func:`write_gif` writes the frames with Pillow.
(Brax's own ``brax.io.image`` draws with MuJoCo's OpenGL renderer, which needs
a display or an EGL/OSMesa library and ``MUJOCO_GL``.)
Install the extra dependency with ``pip install 'tr_jax[render]'``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import jax
import numpy as np

INSTALL_HINT = "pip install 'tr_jax[render]'"
MAX_FPS = 50  # GIF frame times are centiseconds, and viewers slow down frames shorter than 20 ms
_DEFAULT_MJCF_RGBA = (0.5, 0.5, 0.5, 1.0)  # shown in Brax's brown, as Brax's HTML viewer does
_BRAX_RGBA = (0.4, 0.33, 0.26, 1.0)
_SKY = (206, 222, 240)  # background RGB
_GRID = 64  # texels per ground tile edge (a dark line on two sides)
_TILE = 1.0  # ground tile edge in metres
_HFOV = 58.0


def import_renderer() -> ModuleType:
    """The ``pytinyrenderer`` module; ``RuntimeError`` naming the install command if it is missing."""
    try:
        import pytinyrenderer
    except ImportError as e:
        raise RuntimeError(f"GIF frames are drawn with pytinyrenderer, which is not installed: {INSTALL_HINT}") from e
    return pytinyrenderer


def check_options(width: int, height: int, fps: float, stride: int | None) -> None:
    """``ValueError`` naming the first bad GIF option: frame size, frames per second, state stride (None: default)."""
    if width < 1 or height < 1:
        raise ValueError(f"--width {width} --height {height}: a frame is at least 1x1 pixels")
    if not 0 < fps <= MAX_FPS:
        raise ValueError(
            f"--fps {fps}: a GIF plays at most {MAX_FPS} frames per second (viewers slow down shorter "
            "frames) and more than 0; show fewer states with a larger --stride"
        )
    if stride is not None and stride < 1:
        raise ValueError(f"--stride {stride}: every stride-th state is a frame; it is at least 1")


def geom_poses(sys: Any, states: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """World poses of every geom of ``sys`` in each of the ``F`` states.

    Returns ``(pos [F, G, 3], quat [F, G, 4])`` (quaternions ``w, x, y, z``), ``G = sys.ngeom``; a geom
    of the world body (``geom_bodyid`` 0) stays where the MJCF puts it.
    """
    from brax import math as bm

    num = len(states)
    body_pos = np.concatenate([np.zeros((num, 1, 3)), np.stack([np.asarray(s.x.pos) for s in states])], axis=1)
    body_rot = np.concatenate(
        [np.tile([1.0, 0.0, 0.0, 0.0], (num, 1, 1)), np.stack([np.asarray(s.x.rot) for s in states])], axis=1
    )
    body = np.asarray(sys.geom_bodyid)
    rot = body_rot[:, body].reshape(-1, 4)  # [F * G, 4]
    local_pos = np.tile(np.asarray(sys.geom_pos, np.float64), (num, 1))
    local_quat = np.tile(np.asarray(sys.geom_quat, np.float64), (num, 1))
    pos = body_pos[:, body].reshape(-1, 3) + np.asarray(jax.vmap(bm.rotate)(local_pos, rot))
    quat = np.asarray(jax.vmap(bm.quat_mul)(rot, local_quat))
    return pos.reshape(num, -1, 3), quat.reshape(num, -1, 4)


def _vertex_normals(vert: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Unit normals ``[V, 3]`` of a triangle mesh (``vert [V, 3]``, ``face [T, 3]``): area-weighted face normals
    summed per vertex."""
    tri = vert[face]  # [T, 3, 3]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    out = np.zeros_like(vert)
    for k in range(3):
        np.add.at(out, face[:, k], normal)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _cylinder(radius: float, half_length: float, sides: int = 24) -> tuple:
    """A closed cylinder along z: ``(vert [4 * sides + 2, 3], face [4 * sides, 3])``; the caps have their own
    vertices, so the side's normals point outwards and the caps' along z."""
    a = 2 * np.pi * np.arange(sides) / sides
    ring = np.stack([radius * np.cos(a), radius * np.sin(a), np.zeros(sides)], axis=1)
    bottom, top = ring - [0, 0, half_length], ring + [0, 0, half_length]
    vert = np.concatenate([bottom, top, bottom, top, [[0, 0, -half_length], [0, 0, half_length]]])
    i, j = np.arange(sides), (np.arange(sides) + 1) % sides
    side = np.concatenate([np.stack([i, j, sides + j], 1), np.stack([i, sides + j, sides + i], 1)])
    centre = 4 * sides
    caps = np.concatenate(
        [
            np.stack([np.full(sides, centre), 2 * sides + j, 2 * sides + i], 1),
            np.stack([np.full(sides, centre + 1), 3 * sides + i, 3 * sides + j], 1),
        ]
    )
    return vert, np.concatenate([side, caps])


def _grid_texture() -> list:
    """The ground's texture: ``_GRID x _GRID`` light grey RGB texels with a dark line along two edges."""
    tex = np.full((_GRID, _GRID, 3), 200, np.int64)
    tex[0], tex[:, 0] = 120, 120
    return tex.ravel().tolist()


class _Scene:
    """A pytinyrenderer scene with one object instance per geom of a Brax system (``instances[g]`` is geom
    ``g``'s, None for a geom not drawn)."""

    def __init__(self, ptr: ModuleType, sys: Any):
        import mujoco

        self.scene = ptr.TinySceneRenderer()
        kinds, mj = mujoco.mjtGeom, sys.mj_model
        self.instances: list[Any] = []
        for g in range(sys.ngeom):
            kind, size = int(sys.geom_type[g]), [float(s) for s in sys.geom_size[g]]
            rgba = tuple(float(c) for c in mj.geom_rgba[g])
            rgba = _BRAX_RGBA if np.allclose(rgba, _DEFAULT_MJCF_RGBA) else rgba
            if rgba[3] == 0:  # invisible geoms (sites, collision-only helpers)
                self.instances.append(None)
                continue
            tex = [int(round(255 * c)) for c in rgba[:3]], 1, 1
            if kind == kinds.mjGEOM_PLANE:
                half = [s if s > 0 else 1000.0 for s in size[:2]]
                model = self.scene.create_cube([*half, 1e-4], _grid_texture(), _GRID, _GRID, 2 * max(half) / _TILE)
            elif kind in (kinds.mjGEOM_SPHERE, kinds.mjGEOM_ELLIPSOID):
                model = self.scene.create_capsule(1.0 if kind == kinds.mjGEOM_ELLIPSOID else size[0], 0.0, 2, *tex)
            elif kind == kinds.mjGEOM_CAPSULE:
                model = self.scene.create_capsule(size[0], size[1], 2, *tex)
            elif kind == kinds.mjGEOM_BOX:
                model = self.scene.create_cube(size, *tex, 1.0)
            elif kind in (kinds.mjGEOM_CYLINDER, kinds.mjGEOM_MESH):
                if kind == kinds.mjGEOM_CYLINDER:
                    vert, face = _cylinder(size[0], size[1])
                else:
                    m = int(sys.geom_dataid[g])
                    vert = np.asarray(mj.mesh_vert[mj.mesh_vertadr[m] : mj.mesh_vertadr[m] + mj.mesh_vertnum[m]])
                    face = np.asarray(mj.mesh_face[mj.mesh_faceadr[m] : mj.mesh_faceadr[m] + mj.mesh_facenum[m]])
                model = self.scene.create_mesh(
                    vert.ravel().tolist(),
                    _vertex_normals(vert, face).ravel().tolist(),
                    [0.0] * (2 * len(vert)),
                    face.ravel().tolist(),
                    *tex,
                    1.0,
                )
            else:
                raise ValueError(
                    f"geom {g} of the system is a {mujoco.mjtGeom(kind).name[7:].lower()}, which "
                    "the GIF renderer does not draw"
                )
            instance = self.scene.create_object_instance(model)
            self.scene.set_object_segmentation_uid(instance, g + 1)  # 0 is the background
            if kind == kinds.mjGEOM_ELLIPSOID:
                self.scene.set_object_local_scaling(instance, size)
            self.instances.append(instance)

    def draw(self, pos: np.ndarray, quat: np.ndarray, light: Any, camera: Any) -> np.ndarray:
        """One image ``[camera height, camera width, 3]`` uint8 with geom ``g`` at ``pos[g]``, ``quat[g]``
        (``w, x, y, z``)."""
        drawn = []
        for g, instance in enumerate(self.instances):
            if instance is not None:
                self.scene.set_object_position(instance, pos[g].tolist())
                self.scene.set_object_orientation(instance, [*quat[g, 1:].tolist(), float(quat[g, 0])])
                drawn.append(instance)
        buffers = self.scene.get_camera_image(drawn, light, camera)
        shape = camera.view_height, camera.view_width
        image = np.asarray(buffers.rgb, np.uint8).reshape(*shape, 3)
        image[np.asarray(buffers.segmentation_mask).reshape(shape) == 0] = _SKY
        return image


def camera_path(sys: Any, pos: np.ndarray, root: np.ndarray, fov: float) -> tuple[np.ndarray, float]:
    """Where the camera looks in each of ``F`` states and from how far: ``(target [F, 3], distance)``.

    ``pos [F, G, 3]``: the geoms' positions (:func:`geom_poses`); ``root [F, 3]``: the first body's; ``fov``: the
    narrower field of view in degrees. The target is the middle of the first state's geoms (ground planes
    aside), the distance fits them all in view. If the first body goes further than half their size from
    where it starts (a walker), the target follows it along the ground (its height fixed), else it stays.
    """
    solid = np.asarray(sys.geom_type) != 0  # planes are infinite or huge: left out of the fit
    radius = np.asarray(sys.mj_model.geom_rbound)[solid]
    low, high = pos[0, solid] - radius[:, None], pos[0, solid] + radius[:, None]  # [solid geoms, 3]
    middle = (low.min(axis=0) + high.max(axis=0)) / 2 if solid.any() else root[0]
    extent = max(float(np.max(np.linalg.norm(pos[0, solid] - middle, axis=1) + radius, initial=0.0)), 0.1)
    shift = np.zeros_like(root)
    shift[:, :2] = root[:, :2] - root[0, :2]
    if np.linalg.norm(shift, axis=1).max() <= extent / 2:
        shift[:] = 0.0
    return middle + shift, 1.3 * extent / math.tan(math.radians(fov / 2))


def render_frames(
    sys: Any, states: Sequence[Any], width: int = 320, height: int = 240, supersample: int = 2
) -> np.ndarray:
    """Images ``[F, height, width, 3]`` (uint8 RGB) of the ``F`` Brax pipeline states ``states`` of ``sys``, seen
    from the side and a little above (:func:`camera_path`). Each image is drawn at ``supersample`` times the
    size and shrunk (anti-aliasing)."""
    from PIL import Image

    ptr = import_renderer()
    scene = _Scene(ptr, sys)
    pos, quat = geom_poses(sys, states)
    vfov = 2 * math.degrees(math.atan(math.tan(math.radians(_HFOV / 2)) * height / width))
    root = np.stack([np.asarray(s.x.pos[0], np.float64) for s in states])  # [F, 3]
    targets, distance = camera_path(sys, pos, root, min(_HFOV, vfov))
    view = distance * np.array([0.35, -1.0, 0.3]) / np.linalg.norm([0.35, -1.0, 0.3])
    frames = np.empty((len(states), height, width, 3), np.uint8)
    for f, target in enumerate(targets.tolist()):
        light = ptr.TinyRenderLight(
            direction=[0.57735, -0.57735, 0.57735], ambient=0.8, diffuse=0.8, specular=0.6, shadowmap_center=target
        )
        camera = ptr.TinyRenderCamera(
            viewWidth=width * supersample,
            viewHeight=height * supersample,
            position=(targets[f] + view).tolist(),
            target=target,
            up=[0.0, 0.0, 1.0],
            hfov=_HFOV,
            vfov=vfov,
        )
        image = scene.draw(pos[f], quat[f], light, camera)
        frames[f] = (
            np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BOX))
            if supersample > 1
            else image
        )
    return frames


def write_gif(path: str, frames: np.ndarray, fps: float) -> None:
    """Writes ``frames [F, H, W, 3]`` (uint8 RGB) to ``path`` as a looping GIF shown at ``fps`` frames per second
    (``0 < fps <= MAX_FPS``; rounded to GIF's centiseconds; Pillow merges identical consecutive frames, keeping
    their time)."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0)
