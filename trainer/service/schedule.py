"""Scheduled retraining (the Kubernetes CronJob's command): asks the training service at
`TRAINER_URL` for a job of every model on the bundled data, and waits until each has ended.
Exits 1 when a job could not be started or failed (a job the gate rejected is a success: the
published version was better).

Usage: TRAINER_URL=http://oxiserve-trainer:8000 python -m service.schedule [--wait SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request

from penguins import MODELS


def call(url: str, method: str = "GET", body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait", type=float, default=540.0, help="longest wait for the jobs")
    args = parser.parse_args()
    base = os.environ["TRAINER_URL"].rstrip("/")
    jobs = {}
    for model in MODELS:
        job = call(f"{base}/v1/jobs", "POST", {"model": model, "data": {"source": "bundled"}})
        jobs[job["id"]] = job
        print(f"{model}: job {job['id']} queued", flush=True)
    deadline = time.monotonic() + args.wait
    while any(job["state"] in ("queued", "running") for job in jobs.values()):
        if time.monotonic() > deadline:
            print("jobs still running at the deadline; they go on in the service", flush=True)
            return 1
        time.sleep(2)
        jobs = {job_id: call(f"{base}/v1/jobs/{job_id}") for job_id in jobs}
    failed = False
    for job in jobs.values():
        outcome = f"v{job['version']}" if job["state"] == "published" else job["reason"]
        print(f"{job['model']}: {job['state']}: {outcome}", flush=True)
        failed |= job["state"] == "failed"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
