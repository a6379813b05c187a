import lekiwi_fleet_server


def test_version_is_semver():
    assert lekiwi_fleet_server.__version__.count('.') == 2
