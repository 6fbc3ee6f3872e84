"""Servers for the training service's tests, each on 127.0.0.1 and a free port, always
stopped: moto (a real S3 API, `MOTO_SERVER` names its program) and the service itself under
uvicorn, publishing to a bucket there."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import requests

TRAINER = Path(__file__).resolve().parents[1]
BUCKET, PREFIX = "models", "prod"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def s3_env():
    """A moto server with an empty bucket; the environment a client of it needs."""
    port = free_port()
    moto = subprocess.Popen(
        [os.environ["MOTO_SERVER"], "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_until_up(endpoint, moto)
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "oxiserve-test",
            "AWS_SECRET_ACCESS_KEY": "oxiserve-test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        os.environ.update(env)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield env
    finally:
        stop(moto)


@pytest.fixture(scope="session")
def trainer(s3_env):
    """The training service's base URL, publishing to `s3://models/prod` on moto."""
    port = free_port()
    env = {**os.environ, **s3_env, "TRAINER_MODELS_URI": f"s3://{BUCKET}/{PREFIX}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=TRAINER,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/healthz", process)
        yield url
    finally:
        stop(process)


@pytest.fixture
def s3():
    return boto3.client("s3")
