"""A local S3-compatible server (moto) on 127.0.0.1: object storage for a cluster whose nodes share no disk.

pyarrow's S3 filesystem takes the endpoint from ``AWS_ENDPOINT_URL`` and credentials from the usual
variables, so every stage writes ``s3://BUCKET/...`` here exactly as it would to S3, MinIO or R2.
moto is a development dependency (``pip install -e '.[dev]'``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

BUCKET = "scotd"


def s3_env(endpoint: str) -> dict[str, str]:
    """The variables that point boto3 and pyarrow at ``endpoint`` (moto accepts any credentials)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # never look for an instance role
    }


@contextlib.contextmanager
def local_s3(bucket: str = BUCKET, port: int = 0) -> Iterator[dict[str, str]]:
    """Run the server in this process (a thread) with ``bucket`` created; yield its variables."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as e:  # pragma: no cover - dev dependency
        raise RuntimeError("the local S3 server needs moto: pip install -e '.[dev]'") from e
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per S3 call otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        host, bound = server.get_host_and_port()
        env = s3_env(f"http://{host}:{bound}")
        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=bucket)
        yield env
    finally:
        server.stop()


def main() -> None:
    """``python -m scotd.localcluster.s3 --port P``: serve until SIGTERM (``scotd cluster-local up --s3``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", default=BUCKET)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with local_s3(args.bucket, args.port):
        print(f"S3 on http://127.0.0.1:{args.port}, bucket {args.bucket}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
