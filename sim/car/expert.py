"""`CarExpert`: a stateless IDM/MOBIL driver for `CarEnv`, queryable at any state (DAgger).

highway-env has no continuous autopilot, but its `IDMVehicle` (IDM car following, MOBIL lane
changes, proportional lane tracking) can be evaluated anywhere. On every `act(env)` the expert
copies the ego's position, heading and speed into a hidden IDM vehicle (never added to the road;
it stands in for the ego in `road.vehicles` only during the query, so neighbour searches skip the
ego) and returns its (acceleration, steering), clipped to the car spec. It reads everything from
the env: the command (`speed` is the IDM target, capped by the lane's speed limit; `lane`
left/right moves one lane, towards `env.lane_target`, once MOBIL's safety criterion holds, easing
off behind the target lane's leader until a gap opens), the scenario's destination (at junctions
the lane followed is the nearby one with the shortest route to it) and the traffic. On top of
lane-based IDM it brakes for anything on its own path ahead (vehicles cutting in or on
overlapping junction lanes) and, at junctions, predicts constant-speed paths: on an approach it
stops at the line while entering could conflict with another vehicle; inside it brakes for a
vehicle from an approach that will get to the conflict first. No state is kept between calls,
so relabelling arbitrary (learner-visited) states is exact and queries never change the
simulation. Discretionary MOBIL lane changes under a "keep" command are off by default ("keep"
means keep the lane) and can be enabled. Steering uses softer gains than upstream because each
command is held for a whole 0.2 s control period.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
from highway_env import utils
from highway_env.road.regulation import RegulatedRoad
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.objects import Landmark

from physai.errors import ConfigError


class _ExpertIDM(IDMVehicle):
    """Hidden IDM vehicle; parameters pinned here so upstream class mutations cannot leak in."""

    ACC_MAX = 5.0  # m/s^2, the car spec bound
    COMFORT_ACC_MAX = 3.0
    COMFORT_ACC_MIN = -5.0
    DISTANCE_WANTED = 10.0  # jam distance incl. one car length [m]
    TIME_WANTED = 1.5  # s
    DELTA = 4.0
    POLITENESS = 0.0
    LANE_CHANGE_MIN_ACC_GAIN = 0.2
    LANE_CHANGE_MAX_BRAKING_IMPOSED = 2.0
    # lane tracking, softer than upstream (tau 0.2 s / 0.6 s) because the command is held for a
    # whole 0.2 s control period: no heading overshoot, ~3 s lane changes
    TAU_HEADING, TAU_LATERAL = 0.4, 1.0  # s
    KP_HEADING, KP_LATERAL = 1 / TAU_HEADING, 1 / TAU_LATERAL
    TAU_PURSUIT = 0.2  # s of look-ahead on the lane heading


class CarExpert:
    def __init__(
        self,
        discretionary_lane_changes: bool = False,  # MOBIL overtaking under a "keep" command
        time_wanted: float = 1.5,  # IDM desired time gap [s]
        distance_wanted: float = 10.0,  # IDM jam distance incl. one car length [m]
        max_braking_imposed: float = 2.0,  # MOBIL safety: braking a lane change may impose [m/s^2]
        yield_radius: float = 80.0,  # junctions: vehicles closer than this are checked for conflicts [m]
    ):
        if time_wanted <= 0 or distance_wanted <= 0 or max_braking_imposed <= 0 or yield_radius < 0:
            raise ConfigError("CarExpert: time_wanted, distance_wanted, max_braking_imposed must be > 0, "
                              "yield_radius >= 0")
        self.discretionary = bool(discretionary_lane_changes)
        self.params = dict(TIME_WANTED=float(time_wanted), DISTANCE_WANTED=float(distance_wanted),
                           LANE_CHANGE_MAX_BRAKING_IMPOSED=float(max_braking_imposed))
        self.yield_radius = float(yield_radius)

    def reset(self, env) -> None:
        """Nothing to reset (the expert is stateless); checks the env type."""
        self._car(env)

    # ---- public -------------------------------------------------------------------------------
    def act(self, env) -> np.ndarray:
        """float32 [accel m/s^2, steer rad] for the env's current state and command."""
        car = self._car(env)
        sim = car.sim
        road, ego = sim.road, sim.vehicle
        h = self._hidden(car)
        with _stand_in(road, ego, h):
            h.target_lane_index = self._target_lane(car, h)
            acc = min(self._longitudinal(h), self._gap_seeking(car, h))
            stop = self._yield_accel(car, h) if car.scenario.yield_at else None
            if stop is not None:
                acc = min(acc, stop)
            if car.stop_at is not None:
                acc = min(acc, _stop_accel(max(h.speed, 0.0), car.stop_remaining(), float(car._prev_action[0]), car.dt))
            speed, h.speed = h.speed, max(h.speed, _STEER_MIN_SPEED)
            steer = h.steering_control(h.target_lane_index)  # upstream controller is bang-bang near 0 m/s
            h.speed = speed
        lo, hi = car.car_spec.low, car.car_spec.high
        return np.clip(np.array([acc, steer], dtype=np.float32), lo, hi)

    # ---- pieces -------------------------------------------------------------------------------
    @staticmethod
    def _car(env):
        car = getattr(env, "unwrapped", env)
        if not all(hasattr(car, a) for a in ("sim", "scenario", "lane_target", "destination", "command")):
            raise ConfigError(f"CarExpert needs a physai CarEnv, got {type(car).__name__}")
        return car

    def _hidden(self, car) -> _ExpertIDM:
        ego = car.sim.vehicle
        network = car.sim.road.network
        lane_index, route = ego.lane_index, None
        if car.destination is not None:
            lane_index, route = _route_lane(network, ego, car.destination)
        h = _ExpertIDM(car.sim.road, ego.position.copy(), heading=ego.heading, speed=ego.speed,
                       target_lane_index=lane_index, target_speed=float(car.command["speed"]), route=route,
                       enable_lane_change=False, timer=0.0)
        for k, v in self.params.items():
            setattr(h, k, v)
        h.lane_index, h.lane = lane_index, network.get_lane(lane_index)
        h.target_speed = float(car.command["speed"])  # `or self.speed` in upstream would turn 0 into speed
        return h

    def _target_lane(self, car, h: _ExpertIDM):
        network = car.sim.road.network
        cur = h.lane_index
        n_lanes = len(network.graph[cur[0]][cur[1]])
        want = car.lane_target
        s, lat = h.lane.local_coordinates(h.position)
        heading = h.lane.local_angle(h.heading, s)

        def started(side: int) -> bool:  # already >0.5 m towards that side and still heading there
            return side * lat > 0.5 and side * heading > 0.0

        if want is not None and want != cur[2]:
            side = int(np.sign(want - cur[2]))
            cand = (cur[0], cur[1], cur[2] + side)
            if 0 <= cand[2] < n_lanes and self._safe(h, cand, started=started(side)):
                return cand
            return cur
        if self.discretionary and want is None and abs(h.speed) >= 1.0:
            for cand in network.side_lanes(cur):
                if not network.get_lane(cand).is_reachable_from(h.position):
                    continue
                # a change already under way continues while it is safe
                if started(int(np.sign(cand[2] - cur[2]))):
                    if self._safe(h, cand, started=True):
                        return cand
                elif self._safe(h, cand) and h.mobil(cand):
                    return cand
        return cur

    def _safe(self, h: _ExpertIDM, lane_index, started: bool = False) -> bool:
        """MOBIL's safety criterion for moving into `lane_index`: the new follower need not brake
        harder than LANE_CHANGE_MAX_BRAKING_IMPOSED, the ego not harder than 4 m/s². A change already
        under way is only aborted when it would force (near-)emergency braking."""
        lane = h.road.network.get_lane(lane_index)
        if lane.forbidden or not lane.is_reachable_from(h.position):
            return False
        front, rear = h.road.neighbour_vehicles(h, lane_index)
        b_rear, b_own = (4.0, 4.5) if started else (h.LANE_CHANGE_MAX_BRAKING_IMPOSED, 4.0)
        if rear is not None and h.acceleration(ego_vehicle=rear, front_vehicle=h) < -b_rear:
            return False
        if front is not None and h.acceleration(ego_vehicle=h, front_vehicle=front) < -b_own:
            return False
        if started:
            return True
        s = lane.local_coordinates(h.position)[0]
        for v in (front, rear):  # never start beside someone
            if v is not None and abs(lane.local_coordinates(v.position)[0] - s) < h.LENGTH + 2.0:
                return False
        return True

    @staticmethod
    def _gap_seeking(car, h: _ExpertIDM) -> float:
        """While a commanded lane change waits for a safe gap: drop behind the target lane's leader
        (IDM towards it, braking at most 2 m/s²) so that a gap opens."""
        want, cur = car.lane_target, h.lane_index
        if want is None or want == cur[2] or h.target_lane_index != cur:
            return math.inf
        cand = (cur[0], cur[1], cur[2] + int(np.sign(want - cur[2])))
        if not 0 <= cand[2] < len(h.road.network.graph[cur[0]][cur[1]]):
            return math.inf
        front, _ = h.road.neighbour_vehicles(h, cand)
        return max(-2.0, float(h.acceleration(ego_vehicle=h, front_vehicle=front))) if front else math.inf

    @staticmethod
    def _longitudinal(h: _ExpertIDM) -> float:
        front, rear = h.road.neighbour_vehicles(h, h.lane_index)
        acc = h.acceleration(ego_vehicle=h, front_vehicle=front, rear_vehicle=rear)
        if h.target_lane_index != h.lane_index:  # changing lane: respect both lanes' leaders
            front, rear = h.road.neighbour_vehicles(h, h.target_lane_index)
            acc = min(acc, h.acceleration(ego_vehicle=h, front_vehicle=front, rear_vehicle=rear))
        return min(float(acc), _path_accel(h))

    def _yield_accel(self, car, h: _ExpertIDM) -> float | None:
        """Junctions. On an approach (`scenario.yield_at`): the deceleration that stops at the end of
        the lane when entering now could conflict with another vehicle (None once too close to stop:
        committed). Inside the junction / on the ring: braking for a vehicle coming from an approach
        that gets to the conflict first (upstream traffic does not always yield). None: go on."""
        lane_index = h.lane_index
        on_approach = lane_index[:2] in car.scenario.yield_at
        v = max(h.speed, 0.0)
        s, _ = h.lane.local_coordinates(h.position)
        to_line = h.lane.length - s - (h.LENGTH / 2 + 1.0)  # m until the nose is 1 m before the junction
        if on_approach and to_line + 2.0 < v * v / (2 * 5.0):  # cannot stop before entering: commit
            return None
        v_goal = max(v, min(h.target_speed, h.lane.speed_limit or math.inf))
        t_acc = (v_goal - v) / _GO_ACC  # the ego is predicted going on: accelerate to its target
        dists = np.where(_TIMES < t_acc, v * _TIMES + 0.5 * _GO_ACC * _TIMES**2,
                         v * t_acc + 0.5 * _GO_ACC * t_acc**2 + v_goal * (_TIMES - t_acc))
        p_ego = _route_points(h, dists, _route_of(h))
        r2 = self.yield_radius**2
        for other in h.road.vehicles:
            if other is h or not hasattr(other, "route") or other.lane_index[:2] == lane_index[:2]:
                continue  # not a vehicle with a plan, or on the ego's own road (IDM handles those)
            d = other.position - h.position
            if float(d @ d) > r2:
                continue
            same_way = abs(utils.wrap_to_pi(other.heading - h.heading)) < math.pi / 4
            if h.front_distance_to(other) < -h.LENGTH and same_way:
                continue  # a follower (one alongside, e.g. merging in, still counts)
            if not on_approach and other.lane_index[:2] not in car.scenario.yield_at:
                continue
            hit = next((c for p in _predict(other) if (c := _conflict(p_ego, p)) is not None), None)
            if hit is None:
                continue
            if on_approach:
                return -min(5.0, v * v / (2 * max(to_line, 0.25)))
            # brake for a vehicle that gets to the conflict first; on unregulated roads (roundabout)
            # entering traffic does not yield at all, so also for one arriving about together
            margin = 0.0 if isinstance(h.road, RegulatedRoad) else 0.5
            if hit[1] <= hit[0] + margin:
                return -5.0 if hit[0] < 1.5 else -3.0
        return None


# "stop within D m", comfortably: brake once the constant deceleration that stops at the point
# (minus a margin) reaches STOP_START, easing in at no more than STOP_JERK and out over the last
# STOP_EASE_S (deceleration <= speed / STOP_EASE_S), as a driver releases the brake
STOP_MARGIN_M, STOP_START, STOP_JERK, STOP_EASE_S = 2.0, 1.2, 2.5, 1.0  # m, m/s^2, m/s^3, s


def _stop_accel(v: float, left: float, prev_acc: float, dt: float) -> float:
    """The acceleration (m/s^2) that brings the car from `v` to a standstill within `left` metres
    with bounded jerk; +inf when braking need not start yet."""
    d = left - STOP_MARGIN_M
    if d > 0.1:
        need = v * v / (2.0 * d)  # the constant deceleration that stops at the point
        if need < STOP_START and prev_acc > -0.5 * STOP_START:
            return math.inf
    if d <= 0.1 or v <= 1.0:
        need = 5.0  # at (or past) the point, or nearly stopped: the ease-out term decides
    return max(-min(need, v / STOP_EASE_S, 5.0), prev_acc - STOP_JERK * dt)


_STEER_MIN_SPEED = 4.0  # m/s: steering is computed as if at least this fast
_TIMES = np.arange(0.0, 4.01, 0.25)  # s: prediction horizon of the conflict check
_GO_ACC = 2.5  # m/s^2: the ego's predicted acceleration towards its target speed when going on
_WINDOW = 1.0  # s: two predicted positions this close in time ...
_CLEARANCE = 3.6  # m: ... and this close in space are a conflict (lanes are 4 m apart)


def _route_of(h) -> list:
    """The lanes the hidden vehicle will follow: its route, or its target lane and what follows."""
    if h.route and h.route[0] == h.target_lane_index:
        return h.route
    network, route = h.road.network, [h.target_lane_index]
    for _ in range(3):
        nxt = network.next_lane(route[-1], position=h.position)
        if nxt == route[-1] or nxt in route:
            break
        route.append(nxt)
    return route


def _route_points(v, dists: np.ndarray, route: list | None = None) -> np.ndarray:
    """[N, 2] points `dists` metres ahead of `v` along `route` (default: its own)."""
    s0 = v.lane.local_coordinates(v.position)[0]
    route = list(route or v.route or [v.lane_index])
    roads = [r[:2] for r in route]
    if v.lane_index[:2] in roads:  # start the route where `v` is (upstream pops it lazily) ...
        route = route[roads.index(v.lane_index[:2]):]
    else:  # ... or from its lane when it is already past the route's first segment
        route = [v.lane_index] + route
    try:
        return np.array([v.road.network.position_heading_along_route(route, s0 + d, 0, v.lane_index)[0]
                         for d in dists])
    except (IndexError, KeyError):  # upstream route lookup can fail where the lane count changes
        return v.position + dists[:, None] * v.direction[None, :]


def _predict_along_route(v, speed: float, route: list | None = None) -> np.ndarray:
    """[T, 2] positions of `v` driving along its route at constant `speed`."""
    return _route_points(v, speed * _TIMES, route)


def _predict(v) -> list[np.ndarray]:
    """Hypotheses for another vehicle: its current speed, and (re)starting at half its speed limit
    at least (a vehicle waiting at a line may be yielding only for a while: upstream yields are timed)."""
    limit = v.lane.speed_limit if v.lane is not None and v.lane.speed_limit is not None else 10.0
    speeds = {max(v.speed, 0.0)}
    if not getattr(v, "is_yielding", False):  # a vehicle yielding (to the ego, maybe) stays put
        speeds.add(max(v.speed, 0.5 * limit))
    return [_predict_along_route(v, sp) for sp in sorted(speeds)]


def _path_accel(h) -> float:
    """IDM braking for the nearest vehicle or obstacle on the ego's path ahead (the lane-based search
    misses vehicles straddling lanes, cutting in, or on overlapping junction/exit lanes)."""
    ahead = max(30.0, 3.0 * h.speed)
    dists = np.arange(1.5, ahead + 1e-6, 1.5)
    path = _route_points(h, dists, _route_of(h))  # [N, 2]
    best_d, best = math.inf, None
    for v in h.road.vehicles + h.road.objects:
        if v is h or isinstance(v, Landmark):
            continue
        rel = v.position - h.position
        if float(rel @ rel) > (ahead + 10.0) ** 2 or h.front_distance_to(v) <= 0:
            continue
        dd = np.linalg.norm(path - v.position[None, :], axis=1)
        i = int(np.argmin(dd))
        if dd[i] < (h.WIDTH + getattr(v, "WIDTH", 2.0)) / 2 + 0.5 and dists[i] < best_d:
            best_d, best = float(dists[i]), v
    if best is None:
        return math.inf
    free = h.acceleration(ego_vehicle=h, front_vehicle=None)
    return float(free - h.COMFORT_ACC_MAX * (h.desired_gap(h, best) / best_d) ** 2)


def _conflict(p1: np.ndarray, p2: np.ndarray) -> tuple[float, float] | None:
    """First (t1, t2) at which two predicted paths [T, 2] come within _CLEARANCE of each other
    less than _WINDOW seconds apart, or None."""
    dist = np.linalg.norm(p1[:, None, :] - p2[None, :, :], axis=-1)  # [T, T]
    hit = (dist < _CLEARANCE) & (np.abs(_TIMES[:, None] - _TIMES[None, :]) <= _WINDOW)
    if not hit.any():
        return None
    i, j = np.argwhere(hit)[0]
    return float(_TIMES[i]), float(_TIMES[j])


def _route_lane(network, ego, destination: str):
    """Among the lanes the ego is on (within one lane width, heading within 90°), the one whose end
    is fewest road segments from `destination`; returns (lane index, route to destination)."""
    best, best_cost, best_path = ego.lane_index, math.inf, None
    for _from, to_dict in network.graph.items():
        for _to, lanes in to_dict.items():
            path = network.shortest_path(_to, destination) if _to != destination else [_to]
            if not path:
                continue
            for _id, lane in enumerate(lanes):
                s, lat = lane.local_coordinates(ego.position)
                if not (-1.0 <= s <= lane.length + 1.0) or abs(lat) > lane.width_at(s):
                    continue
                if abs(utils.wrap_to_pi(ego.heading - lane.heading_at(s))) > math.pi / 2:
                    continue
                cost = 10.0 * len(path) + abs(lat)
                if cost < best_cost:
                    best, best_cost, best_path = (_from, _to, _id), cost, path
    if best_path is None:
        return ego.lane_index, None
    route, lane_id = [best], best[2]
    for a, b in zip(best_path[:-1], best_path[1:]):
        lane_id = min(lane_id, len(network.graph[a][b]) - 1)  # keep the lane id where it exists
        route.append((a, b, lane_id))
    return best, route


@contextlib.contextmanager
def _stand_in(road, ego, hidden):
    """Let `hidden` take the ego's slot in `road.vehicles` for the duration of a query."""
    i = next(k for k, v in enumerate(road.vehicles) if v is ego)
    road.vehicles[i] = hidden
    try:
        yield
    finally:
        road.vehicles[i] = ego
