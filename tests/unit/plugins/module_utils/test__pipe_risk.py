"""Credentials from /proc/PID/status and the kernel's exemption rule."""
import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_risk

STATUS_ROOT_SHIM = """Name:\tcontainerd-shim
Umask:\t0022
State:\tS (sleeping)
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
Groups:\t
CapInh:\t0000000000000000
CapPrm:\t000001fffeffffff
CapEff:\t000001fffeffffff
CapBnd:\t000001fffeffffff
"""

STATUS_ROOTLESS = """Name:\tcontainerd-shim
Uid:\t1000\t1000\t1000\t1000
Gid:\t1000\t1000\t1000\t1000
Groups:\t4 24 1000
CapInh:\t0000000000000000
CapPrm:\t0000000000000000
CapEff:\t0000000000000000
"""


def test_parse_credentials():
    c = _pipe_risk.parse_credentials(STATUS_ROOT_SHIM)
    assert c["uid"] == [0, 0, 0, 0] and c["groups"] == [] and c["capeff"] == 0x1fffeffffff
    c = _pipe_risk.parse_credentials(STATUS_ROOTLESS)
    assert c["uid"][0] == 1000 and c["groups"] == [4, 24, 1000] and c["capeff"] == 0


def test_exemption_needs_sys_resource_or_sys_admin_in_the_host_user_namespace():
    root = dict(_pipe_risk.parse_credentials(STATUS_ROOT_SHIM), foreign_userns=False)
    assert _pipe_risk.exempt(root)  # CAP_SYS_ADMIN (bit 21) even without CAP_SYS_RESOURCE (bit 24)
    assert not _pipe_risk.exempt(dict(root, capeff=root["capeff"] & ~(1 << 21)))
    assert _pipe_risk.exempt(dict(root, capeff=1 << 24))
    assert not _pipe_risk.exempt(dict(root, foreign_userns=True))
    assert not _pipe_risk.exempt(dict(_pipe_risk.parse_credentials(STATUS_ROOTLESS), foreign_userns=False))


@pytest.mark.parametrize("text", ["Name:\tx\n", "Uid:\t0\t0\nGid:\t0\t0\t0\t0\nCapEff:\t0\n", "Uid:\tzero\n"])
def test_bad_status_is_a_clear_error(text):
    with pytest.raises(_pipe_risk.PipeRiskError):
        _pipe_risk.parse_credentials(text)


def test_engine_label():
    root = dict(_pipe_risk.parse_credentials(STATUS_ROOT_SHIM), foreign_userns=False)
    assert _pipe_risk.engine_label("docker", root) == "docker"
    assert _pipe_risk.engine_label("docker", dict(root, foreign_userns=True)) == "docker-uid0"
    assert _pipe_risk.engine_label("containerd", dict(root, uid=[1000] * 4)) == "containerd-uid1000"
