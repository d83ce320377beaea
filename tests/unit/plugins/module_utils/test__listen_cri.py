"""The init pid of a CRI container from its task bundle (init.pid), read
without following a symlink the bundle could hold."""
import os

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _listen_cri


def task(tmp_path, cid, pid_text=None, link=None):
    bundle = tmp_path / cid
    bundle.mkdir()
    if pid_text is not None:
        (bundle / "init.pid").write_text(pid_text)
    if link is not None:
        os.symlink(link, str(bundle / "init.pid"))
    return {"id": cid, "bundle": str(bundle), "pod_namespace": "shop", "pod_name": "web-0", "container_name": "web"}


def test_pid_and_identity_from_the_bundle(tmp_path):
    tasks = [task(tmp_path, "aaaa1111", str(os.getpid())), task(tmp_path, "bbbb2222", "1")]
    pid, ident = _listen_cri.container_pid("aaaa", "/run/x.sock", "k8s.io", "/proc", tasks)
    assert pid == os.getpid()
    assert ident == {"container_id": "aaaa1111", "name": "web", "pod_namespace": "shop", "pod_name": "web-0", "pod_container": "web"}


@pytest.mark.parametrize("setup,cid,msg", [
    (lambda t: [task(t, "aaaa1111", "1"), task(t, "aaaa2222", "1")], "aaaa", "ambiguous"),
    (lambda t: [task(t, "aaaa1111", "1")], "cccc", "no containerd task cccc"),
    (lambda t: [task(t, "aaaa1111", "not-a-pid")], "aaaa", "no running init"),
    (lambda t: [task(t, "aaaa1111")], "aaaa", "no running init"),
    (lambda t: [task(t, "aaaa1111", "4194311")], "aaaa", "no running init"),
    # a symlinked init.pid is not followed
    (lambda t: [task(t, "aaaa1111", link="/proc/self/stat")], "aaaa", "no running init"),
])
def test_unknown_ambiguous_or_gone(tmp_path, setup, cid, msg):
    with pytest.raises(_listen_cri.CriListenError) as e:
        _listen_cri.container_pid(cid, "/run/x.sock", "k8s.io", "/proc", setup(tmp_path))
    assert msg in str(e.value)
