"""Humanoid envs (`physai/g1-walk`, `physai/t1-walk`), their holosoma experts, metrics, GL backend
selection and MP4 writing. Fast by default; the >=10-episode expert measurement is `slow`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from physai.embodiments import get_spec  # noqa: E402
from physai.errors import BackendUnavailableError, ConfigError, ObservationError  # noqa: E402
from physai.sim import render  # noqa: E402
from physai.sim.humanoid import ENV_ID_BY_ROBOT, ENV_IDS, register_envs  # noqa: E402
from physai.sim.humanoid.env import HumanoidWalkEnv  # noqa: E402
from physai.sim.humanoid.expert import HumanoidExpert  # noqa: E402
from physai.sim.humanoid.metrics import WalkMetrics, run_episode  # noqa: E402

ROBOTS = ["g1", "t1"]


@pytest.fixture(scope="module")
def gl() -> str:
    try:
        return render.select_backend()
    except BackendUnavailableError as e:
        pytest.skip(f"no GL backend here: {e}")


@pytest.fixture(scope="module")
def experts() -> dict[str, HumanoidExpert]:
    return {r: HumanoidExpert(r) for r in ROBOTS}


def _walk(env, expert, seconds, command=None, seed=0):
    obs, info = env.reset(seed=seed, options=None if command is None else {"command": command})
    expert.reset(env)
    out = []
    for _ in range(int(seconds * 50)):
        obs, r, term, trunc, info = env.step(expert.act(env))
        out.append((obs, info))
        if term or trunc:
            break
    return out


def test_register_is_idempotent():
    register_envs()
    register_envs()
    assert ENV_IDS == ("physai/g1-walk", "physai/t1-walk") and ENV_ID_BY_ROBOT["t1"] == "physai/t1-walk"
    for env_id in ENV_IDS:
        assert env_id in gym.registry


@pytest.mark.parametrize("robot", ROBOTS)
def test_check_env(robot, gl):
    from gymnasium.utils.env_checker import check_env

    register_envs()
    env = gym.make(ENV_ID_BY_ROBOT[robot], episode_seconds=2.0)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("robot", ROBOTS)
def test_spaces_follow_spec_and_obs_stay_inside(robot, experts):
    spec = get_spec(robot)
    env = HumanoidWalkEnv(robot, render_images=False, episode_seconds=1.0)
    assert env.action_space.shape == (spec.action_dim,)
    assert np.allclose(env.action_space.low, spec.low) and np.allclose(env.action_space.high, spec.high)
    assert env.observation_space["proprio"].shape == (spec.proprio_dim,)
    assert env.observation_space["image"].shape == (64, 64, 3)
    assert set(env.observation_space["command"].spaces) == {"vx", "vy", "yaw_rate"}
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    for obs, info in _walk(env, experts[robot], 0.4, seed=3):
        assert env.observation_space.contains(obs)
        assert {"fell", "base_lin_vel", "command", "tracking_error", "energy"} <= set(info)
        assert info["energy"] >= 0
    # proprio layout: q, dq, ang vel, gravity, sin l/r, cos l/r, last action (= previous env action)
    p, A = obs["proprio"], spec.action_dim
    assert np.allclose(p[:A], env.data.qpos[env.setup.qpos_adr], atol=1e-5)
    assert p.shape == (3 * A + 10,) and np.allclose(p[2 * A + 10 :], env.last_action)
    assert -1.05 < p[2 * A + 5] < -0.9  # gravity z: upright
    assert np.allclose(p[2 * A + 6 : 2 * A + 8] ** 2 + p[2 * A + 8 : 2 * A + 10] ** 2, 1.0, atol=1e-5)


def test_deterministic_per_seed():
    def roll(seed):
        env = HumanoidWalkEnv("g1", render_images=False, episode_seconds=30.0)
        env.reset(seed=seed)
        sched = [(t, dict(c)) for t, c in env.schedule]
        rng = np.random.default_rng(0)
        for _ in range(20):
            obs, *_ = env.step(env.setup.default_pose + rng.normal(0, 0.02, env.setup.action_dim))
        return sched, obs["proprio"]

    s1, p1 = roll(7)
    s2, p2 = roll(7)
    s3, _ = roll(8)
    assert s1 == s2 and np.array_equal(p1, p2)
    assert s1 != s3
    assert len(s1) >= 5 and all(-1 <= v <= 1 for _, c in s1 for v in c.values())


def test_pd_targets_in_radians():
    """Commanding the default pose keeps the robot up for 1 s; a joint moves toward its target."""
    env = HumanoidWalkEnv("g1", render_images=False, init_noise=0.0)
    env.reset(seed=0, options={"command": {}})
    for _ in range(50):
        _, _, term, _, info = env.step(env.setup.default_pose)
        assert not term
    assert env.data.qpos[2] > 0.85 * env.setup.stand_height
    names = env.setup.joint_names
    j = names.index("left_elbow_joint")
    target = env.setup.default_pose.copy()
    target[j] -= 0.4  # rad
    for _ in range(15):
        env.step(target)
    q = env.data.qpos[env.setup.qpos_adr[j]]
    assert abs(q - target[j]) < 0.1, (q, target[j])


def test_bad_actions_and_commands_raise():
    env = HumanoidWalkEnv("g1", render_images=False)
    env.reset(seed=0)
    a = env.setup.default_pose.astype(np.float32)
    a[3] = np.nan
    with pytest.raises(ObservationError, match="action"):
        env.step(a)
    with pytest.raises(ObservationError, match="shape"):
        env.step(np.zeros(5, np.float32))
    with pytest.raises(ObservationError):
        env.set_command({"vx": 3.0})
    with pytest.raises(ObservationError):
        env.reset(options={"command": {"speed": 1.0}})
    with pytest.raises(ConfigError):
        HumanoidWalkEnv("g1", command_schedule=[("soon", {})])
    # out-of-range targets are clipped to the joint ranges, not an error
    env.step(np.full(env.setup.action_dim, 50.0, np.float32))
    assert np.allclose(env.last_action, env.action_space.high)


def test_command_schedule_and_set_command():
    env = HumanoidWalkEnv("g1", render_images=False, command_schedule=[(0.0, {}), (0.1, {"vx": 0.5, "yaw_rate": 0.2})])
    obs, info = env.reset(seed=0)
    assert info["command"] == {"vx": 0.0, "vy": 0.0, "yaw_rate": 0.0}
    assert np.allclose(env.phase, np.pi)  # standing: both legs held at pi
    for _ in range(5):
        obs, *_ = env.step(env.setup.default_pose)
    assert float(obs["command"]["vx"][0]) == pytest.approx(0.5) and env.command["yaw_rate"] == pytest.approx(0.2)
    assert not np.allclose(env.phase, np.pi)
    assert np.isclose(abs(env.phase[0] - env.phase[1]), np.pi)  # legs offset by pi
    env.set_command({"vy": -0.3})
    assert env.command == {"vx": 0.0, "vy": -0.3, "yaw_rate": 0.0}
    env.reset(seed=1)  # random schedule: set_command stops it for the rest of the episode
    env2 = HumanoidWalkEnv("g1", render_images=False, episode_seconds=30.0)
    env2.reset(seed=1)
    env2.set_command({"vx": 0.2})
    for _ in range(3):
        env2.step(env2.setup.default_pose)
    assert all(t <= env2.time_s for t, _ in env2.schedule)


def test_g1_expert_walks_forward(experts):
    env = HumanoidWalkEnv("g1", render_images=False, episode_seconds=10.0)
    steps = _walk(env, experts["g1"], 4.0, command={"vx": 0.5})
    assert len(steps) == 200 and not any(i["fell"] for _, i in steps)
    vx = np.mean([i["base_lin_vel"][0] for _, i in steps[100:]])
    assert 0.25 < vx < 0.75, vx
    assert env.data.qpos[0] > 1.0  # metres travelled forward (heading starts along +x)


def test_t1_expert_stays_up(experts):
    env = HumanoidWalkEnv("t1", render_images=False)
    steps = _walk(env, experts["t1"], 3.0, command={"vx": 0.4, "yaw_rate": 0.3})
    assert len(steps) == 150 and not any(i["fell"] for _, i in steps)
    assert np.mean([i["base_lin_vel"][0] for _, i in steps[75:]]) > 0.15


def test_expert_labels_arbitrary_states(experts):
    """DAgger: the expert acts from any state, using phase and last action kept by the env."""
    env = HumanoidWalkEnv("g1", render_images=False)
    env.reset(seed=0, options={"command": {"vx": 0.3}})
    rng = np.random.default_rng(0)
    for _ in range(5):
        env.step(env.setup.default_pose + rng.normal(0, 0.05, env.setup.action_dim))
    a1 = experts["g1"].act(env)
    a2 = experts["g1"].act_from_obs(env.proprio(), env.command)
    assert a1.shape == (29,) and a1.dtype == np.float32 and np.array_equal(a1, a2)
    assert np.all(a1 >= env.action_space.low) and np.all(a1 <= env.action_space.high)


def test_images_render_and_frames(gl):
    env = HumanoidWalkEnv("g1", render_images=True)
    obs, _ = env.reset(seed=0)
    img = obs["image"]
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert img.std() > 5 and len(np.unique(img.reshape(-1, 3), axis=0)) > 20
    from physai.sim.video import render_frame

    frame = render_frame(gym.wrappers.PassiveEnvChecker(env), 96)
    assert frame.shape == (96, 96, 3) and frame.std() > 5
    off = HumanoidWalkEnv("g1", render_images=False)
    assert not off.reset(seed=0)[0]["image"].any()
    env.close()


def _run(code: str, **env_vars) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    env.update(env_vars)
    cmd = [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_bogus_mujoco_gl_is_a_clear_error():
    r = _run(
        """
        from physai.errors import BackendUnavailableError
        try:
            from physai.sim.humanoid.env import HumanoidWalkEnv
        except BackendUnavailableError as e:
            print("OK", e)
        """,
        MUJOCO_GL="bogus",
    )
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stderr
    assert "bogus" in r.stdout and "egl" in r.stdout and "libosmesa6" in r.stdout


def test_auto_backend_choice_in_fresh_process(gl):
    r = _run("import os; from physai.sim import render as R; print(R.select_backend(), os.environ['MUJOCO_GL'])")
    assert r.returncode == 0, r.stderr
    chosen, exported = r.stdout.split()
    assert chosen in render.AUTO_ORDER and exported == chosen


def test_backend_fallback_order_and_message(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    monkeypatch.setattr(render, "_chosen", None)
    tried = []
    monkeypatch.setattr(render, "_probe", lambda b: tried.append(b) or (None if b == "osmesa" else "no EGL display"))
    assert render.select_backend() == "osmesa" and tried == ["egl", "osmesa"]
    assert os.environ["MUJOCO_GL"] == "osmesa"  # exported for mujoco imported later
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setattr(render, "_chosen", None)
    monkeypatch.setattr(render, "_probe", lambda b: f"{b} is broken")
    with pytest.raises(BackendUnavailableError) as e:
        render.select_backend()
    msg = str(e.value)
    assert "egl is broken" in msg and "osmesa is broken" in msg and "libegl1" in msg and "libosmesa6" in msg
    monkeypatch.setattr(render, "_chosen", None)


def test_write_mp4_roundtrip(tmp_path):
    import imageio.v2 as imageio

    from physai.sim.video import write_mp4

    frames = [np.full((48, 64, 3), (i * 9) % 255, np.uint8) for i in range(12)]
    path = write_mp4(frames, tmp_path / "sub" / "clip.mp4", fps=10)
    reader = imageio.get_reader(str(path))
    got = [f for f in reader]
    reader.close()
    assert len(got) == 12 and got[0].shape == (48, 64, 3)
    assert abs(int(got[11].mean()) - 99) < 6
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.mp4"]  # no temp files left
    with pytest.raises(ConfigError):
        write_mp4([], tmp_path / "empty.mp4", fps=10)
    with pytest.raises(ConfigError):
        write_mp4([frames[0], frames[0][:10]], tmp_path / "bad.mp4", fps=10)
    assert not (tmp_path / "bad.mp4").exists()


def test_metrics_on_synthetic_steps():
    m = WalkMetrics(dt=0.02)
    cmd = {"vx": 0.5, "vy": 0.0, "yaw_rate": 0.0}
    acts = [np.zeros(3), np.full(3, 0.1), np.full(3, 0.3)]
    for i, a in enumerate(acts):
        info = {"tracking_error": 0.1 * (i + 1), "command": cmd, "base_lin_vel": np.array([0.4, 0.0]), "yaw_rate": 0.1,
                "energy": 2.0, "fell": i == 2}
        m.update(a, info)
    s = m.summary()
    assert s["tracking_error"] == pytest.approx(0.2)
    assert s["lin_vel_error"] == pytest.approx(0.1) and s["yaw_rate_error"] == pytest.approx(0.1)
    assert s["fell"] == 1.0 and s["survival_s"] == pytest.approx(0.06) and s["steps"] == 3
    assert s["energy_J"] == pytest.approx(6.0) and s["power_W"] == pytest.approx(100.0)
    assert s["action_smoothness"] == pytest.approx(0.15)
    with pytest.raises(ConfigError):
        WalkMetrics(dt=0)


def test_run_episode_with_expert(experts):
    env = HumanoidWalkEnv("g1", render_images=False, episode_seconds=1.0)
    m = run_episode(env, lambda obs, e: experts["g1"].act(e), seed=0)
    assert m["fell"] == 0.0 and m["length_s"] == pytest.approx(1.0) and m["steps"] == 50
    assert m["energy_J"] > 0 and 0 < m["action_smoothness"] < 0.1


@pytest.mark.slow
@pytest.mark.parametrize("robot", ROBOTS)
def test_expert_measurement(robot, request):
    if "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("slow (~30 s per robot): run with -m slow")
    from physai.sim.humanoid.measure import measure_expert

    r = measure_expert(robot, episodes=10, seconds=20.0)
    print(robot, {k: v for k, v in r.items() if k != "per_episode"})
    assert r["episodes"] == 10
    if robot == "g1":
        assert r["fall_rate"] <= 0.1 and r["tracking_error"] < 0.6


def test_stand_prob_changes_only_which_commands_stand():
    def schedule(**kw):
        env = HumanoidWalkEnv("g1", render_images=False, episode_seconds=60.0, **kw)
        env.reset(seed=3)
        return env.schedule

    default, same = schedule(), schedule(stand_prob=0.1)
    assert default == same  # 0.1 is the default evaluation uses
    never, always = schedule(stand_prob=0.0), schedule(stand_prob=1.0)
    assert all(c == {"vx": 0.0, "vy": 0.0, "yaw_rate": 0.0} for _, c in always)
    assert not any(c == {"vx": 0.0, "vy": 0.0, "yaw_rate": 0.0} for _, c in never)
    with pytest.raises(ConfigError, match="stand_prob"):
        HumanoidWalkEnv("g1", render_images=False, stand_prob=1.5)
