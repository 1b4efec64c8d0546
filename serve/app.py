"""The Ray Serve application, by the import path that deployments name (``serve.app:app_builder``).

The code lives in ``scotd.serve.app``; this module keeps the path that ``serve/config.yaml``,
``cluster/serve.yaml`` and the KubeRay ``RayService`` deploy.
"""

from scotd.serve.app import app_builder, build_app

__all__ = ["app_builder", "build_app"]
