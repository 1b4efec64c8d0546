"""Ray's fake multi-node provider as an ``external`` provider, which notices lost nodes.

The ``fake_multinode`` type's defaults file is not shipped in Ray's wheel, so the type cannot be
named directly; as an external module the same provider runs with our full config.

A cloud provider reports an instance that died (a reclaimed spot node, a crashed machine) as
terminated, and the autoscaler then launches a replacement. The fake provider never notices a
node whose raylet died: it keeps counting it toward ``max_workers``, and the stage waits forever.
This subclass reports such a node terminated (and reaps what is left of it), as a cloud would.

Local nodes share this machine's disk, and so, by default, one runtime-env directory: a node that
goes away would delete a job's unpacked working dir under the feet of the driver still using it
(its cwd vanishes mid-run). Each node here gets its own runtime-env directory, as each machine of a
real cluster has its own disk.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import ray
from ray._private import ray_constants
from ray._private.parameter import RayParams
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider
from ray.autoscaler.tags import (
    NODE_KIND_WORKER,
    STATUS_UP_TO_DATE,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_NAME,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)

log = logging.getLogger(__name__)


class LocalNodeProvider(FakeMultiNodeProvider):
    """Nodes are raylets on this machine, started by the autoscaler with their type's resources."""

    def _create_node_with_resources_and_labels(
        self, node_config: dict[str, Any], tags: dict[str, str], count: int, resources: dict[str, Any],
        labels: dict[str, str],
    ) -> None:  # fmt: skip
        """Start one raylet with the type's resources (as Ray's fake provider does), with its own
        runtime-env directory."""
        resources = copy.deepcopy(resources)
        with self.lock:
            node_type = tags[TAG_RAY_USER_NODE_TYPE]
            node_id = self._next_hex_node_id()
            params = RayParams(
                min_worker_port=0,
                max_worker_port=0,
                dashboard_port=None,
                dashboard_agent_listen_port=0,
                num_cpus=resources.pop("CPU", 0),
                num_gpus=resources.pop("GPU", 0),
                object_store_memory=resources.pop("object_store_memory", None),
                resources=resources,
                labels=labels,
                redis_address=self._gcs_address,
                gcs_address=self._gcs_address,
                runtime_env_dir_name=f"runtime_resources_{node_id[-5:]}",
                env_vars={
                    "RAY_OVERRIDE_NODE_ID_FOR_TESTING": node_id,
                    "RAY_CLOUD_INSTANCE_ID": node_id,
                    "RAY_NODE_TYPE_NAME": node_type,
                    ray_constants.RESOURCES_ENVIRONMENT_VARIABLE: json.dumps(resources),
                    ray_constants.LABELS_ENVIRONMENT_VARIABLE: json.dumps(labels),
                },
            )
            node = ray._private.node.Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)
            entry: dict[str, Any] = {
                "tags": {
                    TAG_RAY_NODE_KIND: NODE_KIND_WORKER,
                    TAG_RAY_USER_NODE_TYPE: node_type,
                    TAG_RAY_NODE_NAME: node_id,
                    TAG_RAY_NODE_STATUS: STATUS_UP_TO_DATE,
                    **tags,
                },
                "node": node,
            }
            self._nodes[node_id] = entry

    def non_terminated_nodes(self, tag_filters: dict[str, str]) -> list[str]:
        self._reap_lost_nodes()
        return list(super().non_terminated_nodes(tag_filters))

    def _reap_lost_nodes(self) -> None:
        with self.lock:
            for node_id, entry in list(self._nodes.items()):
                node: Any = entry.get("node")  # the head has none: it is not ours to lose
                if node is None:
                    continue
                raylets = node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET, [])
                if raylets and all(p.process.poll() is not None for p in raylets):
                    log.warning("node %s lost its raylet: reported terminated", node_id)
                    self._nodes.pop(node_id)
                    node.kill_all_processes(check_alive=False, allow_graceful=False)
