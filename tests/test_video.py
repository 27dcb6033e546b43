"""Roll-out videos: `evaluate(video_dir=...)` writes one MP4 per agent and scenario, each playing
in real time (frames / fps equals the simulated episode length, whatever frame rate the family
asks for), captioned with the agent, the simulated time and the command."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest

from physai.embodiments import get_spec
from physai.sim.evaluate import ExpertAgent, evaluate
from physai.sim.family import family_for_env
from physai.sim.suite import Scenario
from physai.sim.video import annotate


def _read(path) -> tuple[np.ndarray, float]:
    r = imageio.get_reader(str(path), format="FFMPEG")
    try:
        fps = float(r.get_meta_data()["fps"])
        frames = np.stack(list(r.iter_data()))  # [T, H, W, 3]
    finally:
        r.close()
    return frames, fps


def test_annotate_upscales_small_frames_and_draws_text():
    frame = np.full((64, 64, 3), 90, np.uint8)
    out = annotate(frame, ["physai", "t 1.20 s", "drive: lane left, 25 m/s"])
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    plain = annotate(frame, [])
    assert plain.shape == out.shape and (plain == 90).all()  # upscaled, nothing drawn
    diff = np.abs(out.astype(int) - plain.astype(int)).sum(-1)  # [H, W]
    assert (diff[:64, :128] > 0).mean() > 0.2  # the caption sits in the top-left corner
    assert (diff[128:] == 0).all()  # and nowhere else
    assert annotate(np.zeros((300, 200, 3), np.uint8), ["x"]).shape == (300, 200, 3)  # large frames keep their size


@pytest.mark.parametrize("env_id,seconds,fps_asked", [
    ("physai/car-highway", 1.6, None),  # 5 Hz control, a frame per step
    ("physai/car-highway", 4.0, 2.0),  # asks 2 fps: a frame every 2 steps, so 2.5 fps plays in real time
    ("physai/g1-walk", 0.3, None),  # 50 Hz control, a frame every 2 steps at 25 fps
])
def test_eval_videos_every_scenario_in_real_time(tmp_path, monkeypatch, env_id, seconds, fps_asked):
    fam = family_for_env(env_id)
    if fps_asked is not None:
        monkeypatch.setattr(type(fam), "video_fps", lambda self, spec: fps_asked)
    scenarios = [Scenario(env=env_id, seed=s, seconds=seconds) for s in (3, 4, 5)]
    res = evaluate({"expert": ExpertAgent, "again": ExpertAgent}, scenarios, video_dir=tmp_path, show_progress=False,
                   render_images=False, slots=1, rewards=False)
    for agent in ("expert", "again"):
        videos = sorted(tmp_path.glob(f"{agent}_*.mp4"))
        assert len(videos) == 3 and sorted(r["video"] for r in res[agent]) == [str(v) for v in videos]
        for rec in res[agent]:
            frames, fps = _read(rec["video"])
            sim_s = rec["steps"] / get_spec(fam.embodiment_of(env_id)).control_hz  # simulated episode seconds
            assert sim_s == pytest.approx(seconds)
            late = len(frames) / fps - sim_s  # a frame shows the state before each kept step: up to one frame late
            assert -1e-6 <= late < 1.0 / fps - 1e-6, (rec["video"], len(frames), fps)
            assert frames.shape[1] >= 256  # small renders are upscaled for the caption
    # the expert drives the same seed the same way: the two agents' first frames differ only in the caption
    a, _ = _read(res["expert"][0]["video"])
    b, _ = _read(res["again"][0]["video"])
    h, w = a.shape[1:3]
    diff = np.abs(a[0].astype(int) - b[0].astype(int)).mean(-1)  # [H, W]
    assert diff[: h // 8, : w // 4].mean() > 5 * max(diff[h // 2:].mean(), 0.1)
