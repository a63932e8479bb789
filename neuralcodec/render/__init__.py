"""Rendering Gaussian splat scenes on the CPU: pinhole and orbit cameras (``camera``) and the
tile-based EWA splatting renderer (``splats``), used by the splat codec (importance) and the
splat benchmark (PSNR / SSIM of renders)."""

from neuralcodec.render.camera import Camera, orbit_cameras, scene_bounds
from neuralcodec.render.splats import Rendered, SceneTensors, render, render_full, to_uint8

__all__ = [
    "Camera",
    "Rendered",
    "SceneTensors",
    "orbit_cameras",
    "render",
    "render_full",
    "scene_bounds",
    "to_uint8",
]
