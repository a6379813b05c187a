"""What to do when a Python dependency is missing or too old: one instruction per module.

On a stock ROS 2 Jazzy install rosdep resolves `python3-websockets`, `python3-aiortc`,
`python3-av` and `python3-zmq` to Ubuntu packages, and some are too old (Ubuntu 24.04's
python3-websockets is 10.4; the uplink needs the asyncio client of websockets >= 13). The
nodes then stop with the instruction below (exit code 2), not with an ImportError traceback.
"""

from __future__ import annotations

_PIP = 'python3 -m pip install -r requirements/agent.txt'
_INSTRUCTIONS = {
    'websockets': ('the fleet uplink needs websockets >= 13 (Ubuntu 24.04 ships 10.4): '
                   f'`{_PIP}` (or `python3 -m pip install "websockets==17.4"`) in the '
                   'environment that runs the agent'),
    'aiortc': f'the WebRTC streamer needs aiortc 1.16: `{_PIP}`, or launch with webrtc:=false',
    'av': f'the WebRTC streamer needs PyAV (av): `{_PIP}`, or launch with webrtc:=false',
    'zmq': f'lekiwi_zmq_bridge needs pyzmq 27: `{_PIP}` (or `apt install python3-zmq`)',
}


def explain(exc: ImportError) -> str:
    """Return what to do about a failed import, naming the module and the fix."""
    name = (exc.name or '').split('.')[0]
    for module, instruction in _INSTRUCTIONS.items():
        if name == module or f"'{module}" in str(exc):
            return f'missing or too old Python module {module!r} ({exc}): {instruction}'
    return f'a Python module is missing ({exc}): `{_PIP}` and `rosdep install --from-paths src`'
