import lekiwi_agent_ros


def test_version_is_semver():
    assert lekiwi_agent_ros.__version__.count('.') == 2
