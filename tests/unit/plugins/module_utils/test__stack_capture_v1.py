"""_stack_capture and v1 shims: whether containerd's config turns shim_debug
on (the real v1 shim is signalled or not in tests/integration/test_stack_capture_v1.py)."""
import os

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _stack_capture


@pytest.mark.parametrize("text,on", [
    ('[plugins."io.containerd.runtime.v1.linux"]\n  shim = "containerd-shim"\n  shim_debug = true\n', True),
    ('[plugins.linux]\nshim_debug=true # v1 config layout\n', True),
    ('[plugins."io.containerd.runtime.v1.linux"]\n  shim_debug = false\n', False),
    ('# shim_debug = true\n', False),
    ('[plugins."io.containerd.runtime.v1.linux"]\n  no_shim = false\n', False),
])
def test_shim_debug_from_the_config(tmp_path, text, on):
    proc_root = tmp_path / "proc"
    d = proc_root / "77"
    d.mkdir(parents=True)
    os.symlink("/", str(d / "root"))
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    (d / "cmdline").write_bytes(b"containerd\0--config\0" + str(cfg).encode() + b"\0")
    assert _stack_capture._shim_debug(_procfs.Proc(str(proc_root)), 77, 1.0) == (on, str(cfg))
    # no config file: containerd's defaults, shim_debug off
    (d / "cmdline").write_bytes(b"containerd\0-c\0" + str(tmp_path / "none.toml").encode() + b"\0")
    assert _stack_capture._shim_debug(_procfs.Proc(str(proc_root)), 77, 1.0) == (False, str(tmp_path / "none.toml"))


def test_a_v1_shim_is_told_by_its_executable():
    t = _stack_capture.Target(pid=1, starttime=1, comm="containerd-shim", exe="/usr/bin/containerd-shim", kind="shim")
    assert _stack_capture.is_v1_shim(t)
    assert not _stack_capture.is_v1_shim(t._replace(exe="/usr/bin/containerd-shim-runc-v2"))
    assert not _stack_capture.is_v1_shim(t._replace(kind="containerd", exe="/usr/bin/containerd"))
