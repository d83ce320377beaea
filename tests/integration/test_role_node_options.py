"""The scan and triage options of node_doctor are role variables of the
detect and remediate roles (scripts/role_options.yml): through
ansible-playbook, each role variable reaches the module on the node, a value
out of the module's range fails with node_doctor's own message, and the
defaults keep the safe actions off."""
import json
import subprocess
import sys

from conftest import ansible_env

# No engine is asked, only a container id no node has is looked at, no file is
# written on the node: the runs read /proc and change nothing.
QUIET = {"ansible_python_interpreter": sys.executable, "hangdoctor_check_engine": False,
         "hangdoctor_container_ids": ["fffffffffff0"], "hangdoctor_metrics_dir": "",
         "hangdoctor_confirm_interval": 0.1, "hangdoctor_kube_guard": "never", "hangdoctor_drain": False}

PLAYBOOK = """
- name: The role on this node
  hosts: all
  gather_facts: false
  roles:
    - name: hangdoctor.runtime.%s
"""


def play(tmp_path, role, extra, *flags):
    (tmp_path / "play.yml").write_text(PLAYBOOK % role)
    evars = dict(QUIET, hangdoctor_report_dir=str(tmp_path / "reports"), **extra)
    cmd = ["ansible-playbook", "-vvv", "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
           "-e", json.dumps(evars)] + list(flags)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ansible_env(), check=False)


def node_doctor_result(r, role):
    """node_doctor's result as the play printed it (-v, JSON)."""
    out = r.stdout
    task = out.index("TASK [hangdoctor.runtime.%s : Check the node" % role)
    start = out.index("[localhost] => ", task) + len("[localhost] => ")
    return json.JSONDecoder().raw_decode(out[start:])[0]


def test_detect_role_variables_reach_node_doctor(tmp_path):
    r = play(tmp_path, "detect", {"hangdoctor_scan_method": "full", "hangdoctor_triage": False,
                                  "hangdoctor_stale_exec_min_age_seconds": 42.5, "hangdoctor_pileup_min_count": 7})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    res = node_doctor_result(r, "detect")
    assert res["scan_method"] == "full"  # the method that ran
    args = res["invocation"]["module_args"]
    assert (args["scan_method"], args["triage"], args["stale_exec_min_age_seconds"], args["pileup_min_count"]) == (
        "full", False, 42.5, 7)
    # the role's defaults keep the module's: auto, triage on
    r = play(tmp_path, "detect", {})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    args = node_doctor_result(r, "detect")["invocation"]["module_args"]
    assert (args["scan_method"], args["triage"], args["stale_exec_min_age_seconds"], args["pileup_min_count"]) == (
        "auto", True, 300, 3)


def test_a_value_out_of_range_fails_with_node_doctors_message(tmp_path):
    r = play(tmp_path, "detect", {"hangdoctor_pileup_min_count": 0})
    assert r.returncode != 0
    assert "pileup_min_count must be between 1 and 100000, got 0" in r.stdout, r.stdout[-4000:]
    r = play(tmp_path, "detect", {"hangdoctor_scan_method": "fast"})
    assert r.returncode != 0 and "hangdoctor_scan_method" in r.stdout and "fast" in r.stdout, r.stdout[-4000:]


def test_remediate_role_hands_thaw_and_reap_to_node_doctor_and_keeps_them_off_by_default(tmp_path):
    # check mode: node_doctor never thaws or kills there, whatever it is given
    r = play(tmp_path, "remediate", {"hangdoctor_thaw": True, "hangdoctor_reap_stale_execs": True,
                                     "hangdoctor_pileup_min_count": 5}, "--check")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    args = node_doctor_result(r, "remediate")["invocation"]["module_args"]
    assert (args["thaw"], args["reap_stale_execs"], args["pileup_min_count"]) == (True, True, 5)
    r = play(tmp_path, "remediate", {}, "--check")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    args = node_doctor_result(r, "remediate")["invocation"]["module_args"]
    assert (args["thaw"], args["reap_stale_execs"], args["scan_method"]) == (False, False, "auto")


def test_every_shape_of_role_variable_reaches_node_doctor_as_ansible_templates_it(tmp_path):
    """node_doctor's action plugin takes a role variable whose value needs no
    templating as it is (no Jinja compile per argument and host); every other
    shape still goes through Ansible's templating.  Each shape here must reach
    the module with the value and type Ansible's own templating gives."""
    extra = {
        # plain values of each type the role hands over
        "hangdoctor_inspect_timeout": 2.5, "hangdoctor_pileup_min_count": 9, "hangdoctor_scan_method": "full",
        "hangdoctor_container_ids": ["fffffffffff0", "fffffffffff1"],
        # a value that is itself a template, a filter, a template inside a list
        "hd_dir": str(tmp_path), "hd_n": 4,
        "hangdoctor_docker_host": "unix://{{ hd_dir }}/none.sock",
        "hangdoctor_stale_exec_min_age_seconds": "{{ hd_n * 10 }}",
        "hangdoctor_engines": ["{{ 'doc' ~ 'ker' }}"],
        # a string that merely holds a brace is still a string
        "hangdoctor_metrics_file": "hd-{x}.prom", "hangdoctor_metrics_dir": "",
    }
    r = play(tmp_path, "detect", extra)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    args = node_doctor_result(r, "detect")["invocation"]["module_args"]
    assert args["inspect_timeout"] == 2.5 and args["pileup_min_count"] == 9 and args["scan_method"] == "full"
    assert args["container_ids"] == ["fffffffffff0", "fffffffffff1"]
    assert args["docker_host"] == "unix://%s/none.sock" % tmp_path
    assert args["stale_exec_min_age_seconds"] == 40
    assert args["engines"] == ["docker"]
    assert args["metrics_file"] == "hd-{x}.prom"
    # role defaults, plain values all: as the role's defaults file says
    assert args["triage"] is True and args["shim_probe_timeout"] == 2 and args["check_engine"] is False
    # an undefined variable fails the way Ansible's templating fails
    (tmp_path / "undef.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - hangdoctor.runtime.node_doctor:\n"
        "        proc_root: '{{ hd_not_defined }}'\n")
    r = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(tmp_path / "undef.yml"),
                        "-e", json.dumps({"ansible_python_interpreter": sys.executable})],
                       capture_output=True, text=True, timeout=600, env=ansible_env(), check=False)
    assert r.returncode != 0 and "hd_not_defined" in r.stdout + r.stderr, r.stdout[-4000:]
