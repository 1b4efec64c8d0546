"""The Serve proxy's request-size bound, by the path operators set in
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=serve.proxy_limits:middlewares``.

The code lives in ``scotd.serve.proxy_limits``.
"""

from scotd.serve.proxy_limits import middlewares

__all__ = ["middlewares"]
