"""The local autoscaling cluster mirrors cluster/aws.yaml: same node types and bounds, GPUs as a
custom resource, the head kept for drivers. If aws.yaml changes, the local cluster changes with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from scotd.localcluster.spec import (
    ACCELERATOR,
    HEAD_TYPE,
    LocalScale,
    SpecError,
    autoscaling_config,
    declared_resources,
    local_node_types,
)

AWS = yaml.safe_load((Path(__file__).resolve().parents[2] / "cluster" / "aws.yaml").read_text())


def test_every_worker_type_of_aws_yaml_is_mirrored_with_its_bounds() -> None:
    local = local_node_types(AWS, LocalScale())
    workers = {k for k in AWS["available_node_types"] if k != AWS["head_node_type"]}
    assert set(local) == workers | {HEAD_TYPE}
    for name in workers:
        real = AWS["available_node_types"][name]
        assert local[name]["min_workers"] == real.get("min_workers", 0), name
        assert local[name]["max_workers"] == real["max_workers"], name
    assert local[HEAD_TYPE]["resources"] == {"CPU": 0}  # drivers only, as on the real head
    assert local[HEAD_TYPE]["max_workers"] == 0


def test_gpus_become_the_accelerator_resource_and_custom_slots_stay() -> None:
    local = local_node_types(AWS, LocalScale(max_cpus_per_node=2, max_accelerators_per_node=1))
    gpu = local["gpu_worker"]["resources"]
    assert gpu == {"CPU": 2, ACCELERATOR: 1}  # g5.12xlarge: 48 CPU, 4 GPU, scaled down
    assert "GPU" not in gpu
    sampler = local["cpu_sampler"]["resources"]
    assert sampler["CPU"] == 2 and sampler["sampler"] == 1  # the slot that pins samplers here
    assert ACCELERATOR not in sampler


def test_the_whole_config_runs_the_fake_provider_as_an_external_module() -> None:
    cfg = autoscaling_config(AWS, LocalScale(idle_timeout_minutes=0.1), "127.0.0.1:6399", "x.Provider")
    assert cfg["provider"]["type"] == "external" and cfg["provider"]["module"] == "x.Provider"
    assert cfg["provider"]["gcs_address"] == "127.0.0.1:6399"
    assert cfg["provider"]["use_node_id_as_ip"] and cfg["provider"]["disable_node_updaters"]
    assert cfg["head_node_type"] == HEAD_TYPE
    assert cfg["max_workers"] == AWS["max_workers"] and cfg["idle_timeout_minutes"] == 0.1


@pytest.mark.parametrize(
    ("node_type", "message"),
    [
        ({"node_config": {}}, "no node_config.InstanceType and no resources.CPU"),
        ({"node_config": {"InstanceType": "x9.huge"}}, "'x9.huge' is not in"),
    ],
)
def test_a_type_it_cannot_size_is_named(node_type: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        declared_resources("odd", node_type)


def test_declared_resources_override_the_instance_table() -> None:
    got = declared_resources(
        "t", {"node_config": {"InstanceType": "g5.xlarge"}, "resources": {"GPU": 0, "x": 2}}
    )
    assert got == {"CPU": 4, "GPU": 0, "x": 2}
    assert local_node_types(
        {"head_node_type": "h", "available_node_types": {"h": {"resources": {"CPU": 0}}, "t": {
            "node_config": {"InstanceType": "g5.xlarge"}, "resources": {"GPU": 0}, "max_workers": 3}}},
        LocalScale(),
    )["t"]["resources"] == {"CPU": 2}  # fmt: skip


def test_a_missing_head_type_is_refused() -> None:
    with pytest.raises(SpecError, match="head_node_type"):
        local_node_types({"head_node_type": "nope", "available_node_types": {}}, LocalScale())
