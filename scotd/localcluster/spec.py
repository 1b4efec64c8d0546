"""Pure: the local cluster's autoscaling config, derived from the cluster launcher's YAML.

Every worker type of ``cluster/aws.yaml`` becomes a local type with the same name, ``min_workers``
and ``max_workers``; the head keeps its resources (``CPU: 0``: drivers only). Resources are the
instance type's (or the ones the YAML declares) capped to what a laptop can hold, and GPUs become
the custom resource ``accelerator``: a stage asks for it locally where it asks for ``GPU`` on the
real cluster, so the scheduler and the autoscaler place it exactly as they would there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ACCELERATOR = "accelerator"  # the local stand-in for GPUs
HEAD_TYPE = "ray.head.default"  # the fake provider's name for the head node type

# What the cluster launcher auto-detects for the instance types our YAML uses (AWS specs).
INSTANCE_RESOURCES: dict[str, dict[str, float]] = {
    "m5.large": {"CPU": 2},
    "m5.xlarge": {"CPU": 4},
    "m5.2xlarge": {"CPU": 8},
    "m5.4xlarge": {"CPU": 16},
    "g5.xlarge": {"CPU": 4, "GPU": 1},
    "g5.2xlarge": {"CPU": 8, "GPU": 1},
    "g5.12xlarge": {"CPU": 48, "GPU": 4},
    "g5.48xlarge": {"CPU": 192, "GPU": 8},
    "p4d.24xlarge": {"CPU": 96, "GPU": 8},
}


@dataclass(frozen=True)
class LocalScale:
    """How far the real node types are scaled down to fit one machine."""

    max_cpus_per_node: float = 2  # logical CPUs of a local node (Ray's, not cores)
    max_accelerators_per_node: float = 1
    max_custom_per_node: float = 1  # other custom resources (e.g. ``sampler`` slots)
    idle_timeout_minutes: float = 0.25  # the real 5 minutes, scaled for tests
    heartbeat_timeout_s: float = 10  # a node silent this long is replaced (Ray's default: 30)


class SpecError(ValueError):
    """The launcher YAML has something the local cluster cannot mirror; the message names it."""


def declared_resources(name: str, node_type: dict[str, Any]) -> dict[str, float]:
    """What a node of this type has on the real cluster: the instance's, then what the YAML declares."""
    instance = (node_type.get("node_config") or {}).get("InstanceType")
    declared = dict(node_type.get("resources") or {})
    if instance is None and "CPU" not in declared:
        raise SpecError(f"node type {name!r}: no node_config.InstanceType and no resources.CPU")
    if instance is not None and instance not in INSTANCE_RESOURCES and "CPU" not in declared:
        raise SpecError(
            f"node type {name!r}: instance type {instance!r} is not in scotd.localcluster.spec."
            "INSTANCE_RESOURCES; add it there or declare resources.CPU (and GPU) in the YAML"
        )
    return {**INSTANCE_RESOURCES.get(instance or "", {}), **{k: float(v) for k, v in declared.items()}}


def local_resources(real: dict[str, float], scale: LocalScale) -> dict[str, float]:
    """A real node's resources scaled to a local node: GPUs become ``accelerator``."""
    out: dict[str, float] = {}
    for key, value in real.items():
        if key == "CPU":
            out["CPU"] = min(value, scale.max_cpus_per_node)
        elif key == "GPU":
            if value > 0:
                out[ACCELERATOR] = min(value, scale.max_accelerators_per_node)
        elif key in {"memory", "object_store_memory"}:
            continue  # the machine's, not the instance's
        else:
            out[key] = min(value, scale.max_custom_per_node)
    return out


def local_node_types(launcher: dict[str, Any], scale: LocalScale) -> dict[str, dict[str, Any]]:
    """The fake provider's ``available_node_types``: the launcher's types, same names and bounds."""
    types = launcher.get("available_node_types") or {}
    head = str(launcher.get("head_node_type"))
    if head not in types:
        raise SpecError(f"head_node_type {head!r} is not one of available_node_types {sorted(types)}")
    out: dict[str, dict[str, Any]] = {
        HEAD_TYPE: {"resources": local_resources(declared_resources(head, types[head]), scale),
                    "node_config": {}, "max_workers": 0},
    }  # fmt: skip
    for name, t in types.items():
        if name == head:
            continue
        out[name] = {
            "resources": local_resources(declared_resources(name, t), scale),
            "node_config": {},
            "min_workers": int(t.get("min_workers", 0)),
            "max_workers": int(t.get("max_workers", launcher.get("max_workers", 0))),
        }
    return out


def autoscaling_config(
    launcher: dict[str, Any], scale: LocalScale, gcs_address: str, provider_module: str
) -> dict[str, Any]:
    """The whole autoscaling config ``ray start --head --autoscaling-config`` takes."""
    return {
        "cluster_name": f"{launcher.get('cluster_name', 'scotd')}-local",
        "max_workers": int(launcher.get("max_workers", 0)),
        "upscaling_speed": float(launcher.get("upscaling_speed", 1.0)),
        "idle_timeout_minutes": scale.idle_timeout_minutes,
        "provider": {
            "type": "external",
            "module": provider_module,
            "gcs_address": gcs_address,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "auth": {},
        "available_node_types": local_node_types(launcher, scale),
        "head_node_type": HEAD_TYPE,
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }
