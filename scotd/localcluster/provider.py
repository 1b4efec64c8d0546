"""Ray's fake multi-node provider as an ``external`` provider, which notices lost nodes.

The ``fake_multinode`` type's defaults file is not shipped in Ray's wheel, so the type cannot be
named directly; as an external module the same provider runs with our full config.

A cloud provider reports an instance that died (a reclaimed spot node, a crashed machine) as
terminated, and the autoscaler then launches a replacement. The fake provider never notices a
node whose raylet died: it keeps counting it toward ``max_workers``, and the stage waits forever.
This subclass reports such a node terminated (and reaps what is left of it), as a cloud would.
"""

from __future__ import annotations

import logging
from typing import Any

from ray._private import ray_constants
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider

log = logging.getLogger(__name__)


class LocalNodeProvider(FakeMultiNodeProvider):
    """Nodes are raylets on this machine, started by the autoscaler with their type's resources."""

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
