"""dependencies.explain: an ImportError becomes the instruction that fixes it."""

from lekiwi_agent_ros.dependencies import explain


def test_a_known_module_gets_its_instruction() -> None:
    text = explain(ImportError('fleet_uplink needs websockets >= 13', name='websockets'))
    assert "missing or too old Python module 'websockets'" in text
    assert 'pip install -r requirements/agent.txt' in text and '10.4' in text
    assert "'zmq'" in explain(ModuleNotFoundError("No module named 'zmq'", name='zmq'))
    assert 'webrtc:=false' in explain(ImportError('x', name='aiortc.rtcpeerconnection'))


def test_an_unknown_module_gets_the_general_instruction() -> None:
    text = explain(ModuleNotFoundError("No module named 'frobnicate'", name='frobnicate'))
    assert 'rosdep install --from-paths src' in text and 'frobnicate' in text
