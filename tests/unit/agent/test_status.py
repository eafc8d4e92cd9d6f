"""Pod phase and conditions as kubelet derives them."""

from __future__ import annotations

from kubesvc.agent.status import PodConditions, pod_phase

RUN = {"state": {"running": {}}}
WAIT_NEW = {"state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}
CRASHED = {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}}
DONE_OK = {"state": {"terminated": {"exitCode": 0}}}
DONE_BAD = {"state": {"terminated": {"exitCode": 2}}}


def test_phase():
    assert pod_phase("Always", [WAIT_NEW]) == "Pending"
    assert pod_phase("Always", [RUN, WAIT_NEW]) == "Pending"
    assert pod_phase("Always", [RUN]) == "Running"
    assert pod_phase("Always", [CRASHED]) == "Running"
    assert pod_phase("Never", [DONE_OK]) == "Succeeded"
    assert pod_phase("Never", [DONE_OK, DONE_BAD]) == "Failed"
    assert pod_phase("OnFailure", [DONE_BAD]) == "Running"
    assert pod_phase("OnFailure", [DONE_OK]) == "Succeeded"


def test_conditions_keep_transition_time_and_name_unready_containers():
    pc = PodConditions()
    first = {c["type"]: c for c in pc.compute([{"name": "a", "ready": False}, {"name": "b", "ready": True}],
                                              "Running", True)}
    assert first["Ready"]["status"] == "False"
    assert first["Ready"]["message"] == "containers with unready status: [a]"
    assert first["ContainersReady"]["reason"] == "ContainersNotReady"
    again = {c["type"]: c for c in pc.compute([{"name": "a", "ready": False}], "Running", True)}
    assert again["Ready"]["lastTransitionTime"] == first["Ready"]["lastTransitionTime"]
    done = {c["type"]: c for c in pc.compute([{"name": "a", "ready": False}], "Succeeded", True)}
    assert done["Ready"]["reason"] == "PodCompleted"
