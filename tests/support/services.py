"""The scale-out profile's services on this machine: PostgreSQL (127.0.0.1:5432, trust auth), Redis (:6379) and
RabbitMQ (:5672, guest/guest). Each test gets a PostgreSQL database of its own; a test whose service is absent is
skipped with the reason, never passed."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

POSTGRES = os.environ.get("FLYWHEEL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


def require_port(name: str, port: int, host: str = "127.0.0.1") -> None:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as error:
        pytest.skip(f"{name} is not reachable on {host}:{port} ({error}): the scale-out profile's tests need it")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database, dropped afterwards; its URL."""
    import psycopg2

    require_port("PostgreSQL", 5432)
    name = f"flywheel_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(f"{POSTGRES}/postgres")
    admin.autocommit = True
    try:
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
        yield f"{POSTGRES}/{name}"
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def scale_environment(postgres_url: str, broker_url: str = "pyamqp://guest:guest@127.0.0.1:5672//"
                      ) -> dict[str, str]:
    return {"FLYWHEEL_PROFILE": "scale", "FLYWHEEL_POSTGRES_URL": postgres_url, "FLYWHEEL_BROKER_URL": broker_url}


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A RabbitMQ virtual host of its own (so no other test run's workers take this test's steps); the broker
    URL. Made with rabbitmqctl, which needs to run as root beside the broker, as on these machines."""
    import shutil
    import subprocess

    require_port("RabbitMQ", 5672)
    if not shutil.which("rabbitmqctl"):
        pytest.skip("rabbitmqctl is not installed: a test's own RabbitMQ virtual host cannot be made")
    vhost = f"flywheel-test-{uuid.uuid4().hex[:10]}"

    def ctl(*args: str) -> None:
        done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
        if done.returncode:
            pytest.skip(f"rabbitmqctl {args[0]} failed ({done.stderr.strip()[:200]}): no virtual host for the test")

    ctl("add_vhost", vhost)
    try:
        ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


@contextmanager
def s3_bucket() -> Iterator[tuple[str, dict[str, str]]]:
    """An S3-compatible object store on 127.0.0.1 (moto's server, a real HTTP server speaking the S3 API) with one
    empty bucket: its name and the AWS_* variables that reach it."""
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.support.ports import free_port

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        credentials = {"AWS_ACCESS_KEY_ID": "flywheel-test", "AWS_SECRET_ACCESS_KEY": "flywheel-test-secret",
                       "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
        bucket = f"flywheel-{uuid.uuid4().hex[:10]}"
        boto3.client("s3", endpoint_url=credentials["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=bucket)
        yield bucket, credentials
    finally:
        server.stop()
