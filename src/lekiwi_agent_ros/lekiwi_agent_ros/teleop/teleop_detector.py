"""TeleopDetector: four live signals -> a teleop score, hysteresis and sessions (pure core).

Signals, each 0..1 over a sliding window:
- joystick (command activity): joystick messages off their learned rest pose (see `JoyRest`:
  an idle pad whose triggers rest at +1.0 is not input) and commands of other channels
  (`observe_command`: ZeroMQ actions that changed), counted over `joystick_window_s` against
  `joystick_full_rate_hz`. Freshness is the time of receipt: a publisher's clock that is off
  by seconds does not hide a person (the node warns once about the skew);
- video: video streams leaving the robot (WebRTC tracks sent plus outside subscribers of live
  video topics), time-averaged over `video_window_s`;
- webrtc: connected operator peers, time-averaged over `webrtc_window_s`;
- latency: a fresh command round trip under `latency_threshold_ms`, per operator
  (`observe_round_trip`: a data-channel command's ack answered, a ZeroMQ action seen in the
  next observation); the best fresh operator's loop counts. A ping is not a command: a viewer
  that only answers pings has no latency signal.
The score is their weighted sum. Two answers come from it:
- `teleop_active` (also `active`): someone is driving. Command activity is necessary: it turns
  on once the score has stayed at or above `on_threshold` for `on_hold_s` with commands in the
  joystick window, and off once the score has stayed below `off_threshold`, or no command has
  come for `command_idle_s`, for `off_hold_s`. A passive viewer (video and a peer but no
  commands, 0.5) is therefore never driving. Sessions follow `teleop_active`.
- `operator_present`: someone is connected or watching (a WebRTC peer, a video stream, an
  operator of another channel such as ZeroMQ, or recent commands).
Time comes from the injected monotonic `now`; `wall_now` (Unix seconds) only
dates sessions, so a wall clock step cannot stretch or cut a window.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields

from lekiwi_agent_ros.teleop.teleop_signals import (
    EventWindow,
    JoyRest,
    LevelWindow,
    latency_level,
    stamp_is_fresh,
)

SESSION_STARTED = 'teleop.session_started'
SESSION_ENDED = 'teleop.session_ended'
_WEIGHT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class TeleopConfig:
    """Tuning of the detector; field names are the node's parameter names."""

    weight_joystick: float = 0.4
    weight_video: float = 0.3
    weight_webrtc: float = 0.2
    weight_latency: float = 0.1
    joystick_window_s: float = 0.5
    joystick_full_rate_hz: float = 8.0
    joystick_deadzone: float = 0.1
    joystick_axis_rest: tuple[float, ...] = ()
    joystick_rest_learn_s: float = 10.0
    command_idle_s: float = 2.0
    joystick_max_age_s: float = 0.5
    stamp_max_future_s: float = 0.2
    video_window_s: float = 1.0
    video_full_streams: int = 1
    video_frame_timeout_s: float = 1.0
    webrtc_window_s: float = 1.0
    webrtc_full_peers: int = 1
    webrtc_status_timeout_s: float = 2.5
    latency_threshold_ms: float = 250.0
    latency_max_age_s: float = 2.0
    on_threshold: float = 0.35
    off_threshold: float = 0.25
    on_hold_s: float = 0.1
    off_hold_s: float = 1.0

    def problems(self) -> list[str]:
        """List every reason this configuration does not make sense (empty when it does)."""
        found: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            if any(not math.isfinite(v) for v in values):
                found.append(f'{f.name} must be finite, got {value!r}')
        if found:
            return found
        weights = {
            'weight_joystick': self.weight_joystick,
            'weight_video': self.weight_video,
            'weight_webrtc': self.weight_webrtc,
            'weight_latency': self.weight_latency,
        }
        for name, weight in weights.items():
            if not 0.0 <= weight <= 1.0:
                found.append(f'{name} must be within 0..1, got {weight}')
        total = sum(weights.values())
        if abs(total - 1.0) > _WEIGHT_TOLERANCE:
            found.append(f'weights must sum to 1, they sum to {total:.6g}')
        for name in ('joystick_window_s', 'video_window_s', 'webrtc_window_s',
                     'joystick_full_rate_hz', 'joystick_max_age_s', 'video_frame_timeout_s',
                     'webrtc_status_timeout_s', 'latency_threshold_ms', 'latency_max_age_s',
                     'joystick_rest_learn_s', 'command_idle_s'):
            if getattr(self, name) <= 0.0:
                found.append(f'{name} must be > 0, got {getattr(self, name)}')
        for name in ('stamp_max_future_s', 'on_hold_s', 'off_hold_s'):
            if getattr(self, name) < 0.0:
                found.append(f'{name} must be >= 0, got {getattr(self, name)}')
        if not 0.0 <= self.joystick_deadzone < 1.0:
            found.append(f'joystick_deadzone must be within [0, 1), got {self.joystick_deadzone}')
        for name in ('video_full_streams', 'webrtc_full_peers'):
            if getattr(self, name) < 1:
                found.append(f'{name} must be >= 1, got {getattr(self, name)}')
        if not 0.0 < self.on_threshold <= 1.0:
            found.append(f'on_threshold must be within (0, 1], got {self.on_threshold}')
        if not 0.0 < self.off_threshold <= self.on_threshold:
            found.append(
                f'off_threshold must be > 0 and <= on_threshold ({self.on_threshold}), '
                f'got {self.off_threshold}'
            )
        return found

    def validated(self) -> TeleopConfig:
        """Return self, or raise ValueError naming every problem."""
        found = self.problems()
        if found:
            raise ValueError('invalid teleop parameters: ' + '; '.join(found))
        return self

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> TeleopConfig:
        """Build a validated config from parameter values; unknown names are an error."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError('unknown teleop parameters: ' + ', '.join(unknown))
        kwargs: dict[str, object] = {}
        for name, value in values.items():
            kwargs[name] = _coerce(name, known[name].type, value)
        return cls(**kwargs).validated()  # type: ignore[arg-type]


def _coerce(name: str, type_name: object, value: object) -> object:
    """Convert one parameter value to its field's type, or raise ValueError."""
    if isinstance(value, bool):
        raise ValueError(f'{name} must be a number, got {value!r}')
    if type_name in ('int', int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        raise ValueError(f'{name} must be an integer, got {value!r}')
    if type_name in ('float', float):
        if isinstance(value, int | float):
            return float(value)
        raise ValueError(f'{name} must be a number, got {value!r}')
    # tuple[float, ...]: ROS hands arrays over as lists or array.array.
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError(f'{name} must be a list of numbers, got {value!r}')
    numbers: list[float] = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f'{name} must be a list of numbers, got {value!r}')
        numbers.append(float(v))
    return tuple(numbers)


@dataclass(frozen=True)
class TeleopReading:
    """The detector's view at one instant."""

    active: bool
    score: float
    joystick_signal: float
    video_signal: float
    webrtc_signal: float
    latency_signal: float
    joystick_rate_hz: float
    active_video_streams: int
    webrtc_peers: int
    control_latency_ms: float  # NaN when no fresh round trip is known
    active_since: float | None  # Unix seconds the current session started; None when inactive
    operator_present: bool = False  # someone is connected or watching

    @property
    def teleop_active(self) -> bool:
        """Say whether someone is driving (the same as `active`)."""
        return self.active


@dataclass(frozen=True)
class SessionStarted:
    """A teleop session began."""

    session_id: str
    started_at: float
    score: float
    event_type: str = field(default=SESSION_STARTED, init=False)

    def payload(self) -> dict[str, object]:
        """Return the event payload ARCHITECTURE.md reserves for teleop.session_started."""
        return {'session_id': self.session_id, 'started_at': self.started_at,
                'score': round(self.score, 4)}


@dataclass(frozen=True)
class SessionEnded:
    """A teleop session ended."""

    session_id: str
    started_at: float
    ended_at: float
    duration_s: float
    reason: str  # 'inactive' or 'shutdown'
    event_type: str = field(default=SESSION_ENDED, init=False)

    def payload(self) -> dict[str, object]:
        """Return the event payload ARCHITECTURE.md reserves for teleop.session_ended."""
        return {'session_id': self.session_id, 'started_at': self.started_at,
                'ended_at': self.ended_at, 'duration_s': round(self.duration_s, 3),
                'reason': self.reason}


SessionChange = SessionStarted | SessionEnded


@dataclass
class _WebRtcReport:
    received: float  # monotonic time the streamer produced it (its stamp, mapped to now)
    peers: int
    tracks: int


class TeleopDetector:
    """Fuse joystick, video, WebRTC peer and latency signals into an active/inactive state."""

    def __init__(
        self,
        config: TeleopConfig,
        now: Callable[[], float],
        wall_now: Callable[[], float],
        new_session_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        """Start inactive with no evidence; `now` is monotonic, `wall_now` Unix seconds."""
        self._config = config.validated()
        self._now = now
        self._wall_now = wall_now
        self._new_session_id = new_session_id
        t0 = now()
        self._joy = EventWindow(config.joystick_window_s)
        self._rest = JoyRest(config.joystick_deadzone, config.joystick_rest_learn_s,
                             config.joystick_axis_rest)
        self._last_command = -math.inf
        self._operators: dict[str, int] = {}
        self._video = LevelWindow(config.video_window_s, 0.0, t0)
        self._webrtc = LevelWindow(config.webrtc_window_s, 0.0, t0)
        self._frames: dict[str, float] = {}
        self._subscribers: dict[str, int] = {}
        self._report: _WebRtcReport | None = None
        # operator id -> (round trip ms, monotonic time it closed)
        self._round_trips: dict[str, tuple[float, float]] = {}
        self._active = False
        self._crossed_at: float | None = None
        self._session: tuple[str, float, float] | None = None  # id, started mono, started wall

    @property
    def config(self) -> TeleopConfig:
        """Return the configuration in force."""
        return self._config

    @property
    def active(self) -> bool:
        """Say whether a session is open."""
        return self._active

    @property
    def operators(self) -> dict[str, int]:
        """Return the operators connected through other channels, by channel."""
        return dict(self._operators)

    def reconfigure(self, config: TeleopConfig) -> None:
        """Apply a new validated configuration, keeping the evidence and any open session."""
        self._config = config.validated()
        self._joy.set_window(config.joystick_window_s)
        self._rest.configure(config.joystick_deadzone, config.joystick_rest_learn_s,
                             config.joystick_axis_rest)
        self._video.set_window(config.video_window_s)
        self._webrtc.set_window(config.webrtc_window_s)

    def observe_joy(
        self, axes: Sequence[float], buttons: Sequence[int], stamp_age_s: float | None
    ) -> bool:
        """Take one joystick message as it is received; say whether it counted as input.

        `stamp_age_s` is not used for freshness: the message arrived now, whatever the
        publisher's clock says (the node reports a skewed stamp).
        """
        del stamp_age_s
        now = self._now()
        if not self._rest.has_input(axes, buttons, now):
            return False
        self.observe_command(now)
        return True

    def observe_command(self, at: float | None = None) -> None:
        """Note one operator command of any channel (a ZeroMQ action that changed, say)."""
        now = self._now() if at is None else at
        self._joy.add(now)
        self._last_command = max(self._last_command, now)

    def set_operators(self, source: str, count: int) -> None:
        """Set how many operators are connected through a channel other than WebRTC."""
        self._operators[source] = max(0, int(count))

    def observe_video_frame(self, topic: str) -> None:
        """Note that a frame arrived on a video topic (the topic is alive)."""
        now = self._now()
        self._frames[topic] = now
        self._refresh_video(now)

    def set_video_subscribers(self, topic: str, count: int) -> None:
        """Set how many outside subscribers a video topic has (from the ROS graph)."""
        self._subscribers[topic] = max(0, int(count))
        self._refresh_video(self._now())

    def observe_webrtc(self, peers: int, tracks: int, status_age_s: float) -> bool:
        """Take one streamer status report; say whether it was fresh enough to use."""
        cfg = self._config
        now = self._now()
        if not stamp_is_fresh(status_age_s, cfg.webrtc_status_timeout_s,
                              cfg.stamp_max_future_s):
            return False
        received = now - max(0.0, status_age_s)
        self._report = _WebRtcReport(received, max(0, int(peers)), max(0, int(tracks)))
        if self._report.peers == 0:
            # Nobody is connected: no WebRTC operator's command loop is live any more.
            for operator in [o for o in self._round_trips if o.startswith('webrtc/')]:
                del self._round_trips[operator]
        self._refresh_webrtc(now)
        self._refresh_video(now)
        return True

    def observe_round_trip(self, operator: str, rtt_ms: float, age_s: float | None) -> bool:
        """Take one operator's command round trip, closed `age_s` ago; say whether it is used."""
        cfg = self._config
        if not math.isfinite(rtt_ms) or rtt_ms < 0.0 or (
                age_s is not None and not stamp_is_fresh(age_s, cfg.latency_max_age_s,
                                                         cfg.stamp_max_future_s)):
            return False
        now = self._now()
        self._round_trips[operator] = (float(rtt_ms), now - max(0.0, age_s or 0.0))
        return True

    def round_trips(self) -> dict[str, float]:
        """Return each operator's fresh command round trip (ms)."""
        now = self._now()
        horizon = now - self._config.latency_max_age_s
        for operator in [o for o, (_, at) in self._round_trips.items() if at < horizon]:
            del self._round_trips[operator]
        return {o: rtt for o, (rtt, _) in self._round_trips.items()}

    def update(self) -> tuple[TeleopReading, SessionChange | None]:
        """Evaluate the signals now; return the reading and a session start or end, if any."""
        cfg = self._config
        now = self._now()
        self._refresh_webrtc(now)
        self._refresh_video(now)
        joy_count = self._joy.count(now)
        joy_signal = min(1.0, joy_count / (cfg.joystick_full_rate_hz * cfg.joystick_window_s))
        video_signal = self._video.mean(now)
        webrtc_signal = self._webrtc.mean(now)
        rtt = self._fresh_rtt(now)
        latency_signal = latency_level(rtt, cfg.latency_threshold_ms)
        score = (cfg.weight_joystick * joy_signal + cfg.weight_video * video_signal
                 + cfg.weight_webrtc * webrtc_signal + cfg.weight_latency * latency_signal)
        score = min(1.0, max(0.0, score))
        recent = now - self._last_command <= cfg.command_idle_s
        change = self._step(now, score, joy_count > 0, recent)
        peers, streams = self._peers(now), self._streams(now)
        present = (self._active or recent or peers > 0 or streams > 0 or video_signal > 0.0
                   or webrtc_signal > 0.0 or any(self._operators.values()))
        reading = TeleopReading(
            active=self._active,
            score=score,
            joystick_signal=joy_signal,
            video_signal=video_signal,
            webrtc_signal=webrtc_signal,
            latency_signal=latency_signal,
            joystick_rate_hz=joy_count / cfg.joystick_window_s,
            active_video_streams=streams,
            webrtc_peers=peers,
            control_latency_ms=rtt,
            active_since=self._session[2] if self._session else None,
            operator_present=present,
        )
        return reading, change

    def hold_running(self) -> bool:
        """Say whether the score has crossed a threshold and waits out its hold.

        While it does, the state flips when the hold ends unless the score crosses back: a
        caller that evaluates rarely should evaluate more often until then.
        """
        return self._crossed_at is not None

    def quiescent(self) -> bool:
        """Say whether nothing can change until new input arrives (no evidence, no session)."""
        now = self._now()
        return (not self._active and self._crossed_at is None
                and self._joy.count(now) == 0
                and self._video.level == 0.0 and self._video.mean(now) == 0.0
                and self._webrtc.level == 0.0 and self._webrtc.mean(now) == 0.0
                and math.isnan(self._fresh_rtt(now))
                and now - self._last_command > self._config.command_idle_s
                and not any(self._operators.values()))

    def end_session(self, reason: str = 'shutdown') -> SessionEnded | None:
        """Close the open session now (at shutdown); return its end, or None if inactive."""
        if self._session is None:
            return None
        session_id, started_mono, started_wall = self._session
        duration = max(0.0, self._now() - started_mono)
        self._active = False
        self._session = None
        self._crossed_at = None
        return SessionEnded(session_id, started_wall, started_wall + duration, duration, reason)

    def _step(self, now: float, score: float, commanding: bool,
              recent: bool) -> SessionChange | None:
        """Advance the hysteresis by one evaluation (commands in the window / recently)."""
        cfg = self._config
        if not self._active:
            if score < cfg.on_threshold or not commanding:
                self._crossed_at = None
                return None
            if self._crossed_at is None:
                self._crossed_at = now
            if now - self._crossed_at < cfg.on_hold_s:
                return None
            # The session began when the score first crossed, not when the hold confirmed it.
            started_mono = self._crossed_at
            started_wall = self._wall_now() - (now - started_mono)
            session_id = self._new_session_id()
            self._active = True
            self._crossed_at = None
            self._session = (session_id, started_mono, started_wall)
            return SessionStarted(session_id, started_wall, score)
        if score >= cfg.off_threshold and recent:
            self._crossed_at = None
            return None
        if self._crossed_at is None:
            self._crossed_at = now
        if now - self._crossed_at < cfg.off_hold_s:
            return None
        assert self._session is not None
        session_id, started_mono, started_wall = self._session
        # The person stopped when the score fell, not when the hold ran out.
        duration = max(0.0, self._crossed_at - started_mono)
        self._active = False
        self._crossed_at = None
        self._session = None
        return SessionEnded(session_id, started_wall, started_wall + duration, duration,
                            'inactive')

    def _fresh_report(self, now: float) -> _WebRtcReport | None:
        """Return the streamer's last report unless it is too old (streamer gone)."""
        report = self._report
        if report is None or now - report.received > self._config.webrtc_status_timeout_s:
            return None
        return report

    def _fresh_rtt(self, now: float) -> float:
        """Return the best fresh command round trip of any operator, else NaN."""
        del now  # round_trips() reads the clock itself
        fresh = self.round_trips().values()
        return min(fresh) if fresh else math.nan

    def _peers(self, now: float) -> int:
        """Return the connected operator peers of a fresh report."""
        report = self._fresh_report(now)
        return report.peers if report else 0

    def _streams(self, now: float) -> int:
        """Return WebRTC tracks sent plus outside subscribers of video topics with live frames."""
        report = self._fresh_report(now)
        streams = report.tracks if report else 0
        timeout = self._config.video_frame_timeout_s
        for topic, count in self._subscribers.items():
            last = self._frames.get(topic)
            if count and last is not None and now - last <= timeout:
                streams += count
        return streams

    def _refresh_webrtc(self, now: float) -> None:
        """Feed the current peer level into its window, dating an expiry when it happened."""
        report = self._report
        at = now
        if report is not None and now - report.received > self._config.webrtc_status_timeout_s:
            at = min(report.received + self._config.webrtc_status_timeout_s, now)
        level = min(1.0, self._peers(now) / self._config.webrtc_full_peers)
        self._webrtc.set(at, level)

    def _refresh_video(self, now: float) -> None:
        """Feed the current video-stream level into its window."""
        level = min(1.0, self._streams(now) / self._config.video_full_streams)
        self._video.set(now, level)
