"""The training service against a real S3 API (moto): jobs train, pass or fail the quality
gate, and publish by the protocol with golden examples that Python onnxruntime reproduces;
data that cannot be trained on is a 422 naming the problem, and nothing is published."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import requests

from conftest import BUCKET, PREFIX, TRAINER

sys.path.insert(0, str(TRAINER))
from service.data import bundled  # noqa: E402


def published(s3, model: str) -> list[int]:
    """The versions of `model` whose manifest is in the bucket."""
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{model}/")
    keys = [item["Key"] for item in listing.get("Contents", [])]
    return sorted(int(k.split("/")[2]) for k in keys if k.endswith("/manifest.json"))


def finished(trainer: str, job_id: str, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = requests.get(f"{trainer}/v1/jobs/{job_id}", timeout=5).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish within {seconds} s: {job}")


def run_job(trainer: str, body: dict) -> dict:
    response = requests.post(f"{trainer}/v1/jobs", json=body, timeout=30)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/jobs/{response.json()['id']}"
    return finished(trainer, response.json()["id"])


def jobs(trainer: str) -> list[dict]:
    return requests.get(f"{trainer}/v1/jobs", timeout=5).json()["jobs"]


def csv_of(frame) -> str:
    return frame.to_csv(index=False)


def test_health_and_openapi(trainer):
    assert requests.get(f"{trainer}/healthz", timeout=5).json()["status"] == "ok"
    spec = requests.get(f"{trainer}/openapi.json", timeout=5).json()
    assert {"/v1/jobs", "/v1/jobs/upload", "/v1/jobs/{job_id}", "/v1/alerts", "/healthz"} <= set(spec["paths"])


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda f: f.drop(columns=["flipper_length_mm"]), "missing column(s): `flipper_length_mm`"),
        (lambda f: f.assign(body_mass_g=f["body_mass_g"].astype(object).where(f.index != 4, "heavy")),
         "column `body_mass_g` must hold numbers: row 5 has 'heavy'"),
        (lambda f: f[f["species"] == "Adelie"], "one class only (`Adelie`)"),
        (lambda f: f.assign(bill_depth_mm=f["bill_depth_mm"].where(f.index != 2, 180.0)),
         "column `bill_depth_mm` must lie in [5, 40]: row 3 has 180"),
        (lambda f: pd.concat([f[f["species"] != "Chinstrap"], f[f["species"] == "Chinstrap"].head(5)]),
         "too few rows of class `Chinstrap` (5 rows): at least 10 each"),
        (lambda f: f.assign(species=f["species"].where(f.index != 7, None)), "column `species` is empty in 1 rows"),
    ],
)
def test_unusable_csv_is_a_422_naming_the_problem_and_publishes_nothing(trainer, s3, change, named):
    before = published(s3, "penguins-forest"), jobs(trainer)
    body = {"model": "penguins-forest", "data": {"source": "csv", "csv": csv_of(change(bundled()))}}
    response = requests.post(f"{trainer}/v1/jobs", json=body, timeout=30)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert named in response.json()["detail"], response.json()
    assert (published(s3, "penguins-forest"), jobs(trainer)) == before, "no job, nothing published"


def test_invalid_requests_are_422(trainer):
    cases = [
        ({"model": "penguins-forest", "hyperparameters": {"n_estimators": 0}}, "hyperparameters.n_estimators"),
        ({"model": "penguins-forest", "hyperparameters": {"C": 1.0}}, "hyperparameters.C"),
        ({"model": "penguins-tree"}, "model"),
        ({"model": "penguins-forest", "data": {"source": "csv"}}, "`data.csv` is required"),
        ({"model": "penguins-forest", "data": {"source": "csv", "csv": "a,b\n\"1,2\n"}}, "cannot be read"),
    ]
    for body, named in cases:
        response = requests.post(f"{trainer}/v1/jobs", json=body, timeout=30)
        assert response.status_code == 422, (body, response.text)
        assert named in response.json()["detail"], (body, response.json())
    missing = requests.get(f"{trainer}/v1/jobs/nope", timeout=5)
    assert missing.status_code == 404 and missing.json()["detail"] == "no job `nope`"


def test_a_job_publishes_files_then_manifest_with_metrics_and_golden_examples(trainer, s3):
    before = published(s3, "penguins-forest")
    job = run_job(trainer, {"model": "penguins-forest", "hyperparameters": {"n_estimators": 10}})
    assert job["state"] == "published", job
    assert job["version"] == (before[-1] if before else 0) + 1
    assert published(s3, "penguins-forest") == [*before, job["version"]]
    prefix = f"{PREFIX}/penguins-forest/{job['version']}"
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}/manifest.json")["Body"].read())
    assert manifest["name"] == "penguins-forest" and manifest["version"] == job["version"]
    files = {}
    for name, entry in manifest["files"].items():
        files[name] = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{name}")["Body"].read()
        assert hashlib.sha256(files[name]).hexdigest() == entry["sha256"]
        assert len(files[name]) == entry["size"]
    training = manifest["metadata"]["training"]
    assert training["data"]["fingerprint"] == job["data"]["fingerprint"]
    assert training["data"]["fingerprint"].startswith("sha256:")
    assert training["hyperparameters"] == {"n_estimators": 10, "max_depth": 5}
    assert 0.9 < training["metrics"]["reference"]["accuracy"] <= 1.0
    assert training["metrics"]["reference"]["accuracy"] == job["metrics"]["candidate"]
    assert training["metrics"]["held_out"]["accuracy"] == job["metrics"]["held_out"]
    # The golden examples are what onnxruntime gives for their inputs, held-out rows.
    golden = manifest["golden"]["examples"]
    assert len(golden) == 5
    session = ort.InferenceSession(files["model.onnx"])
    for example in golden:
        features = example["inputs"]["features"]
        row = np.asarray(features["data"], dtype=np.float32).reshape(features["shape"])
        label, probabilities = session.run(["label", "probabilities"], {"features": row})
        assert example["outputs"]["label"]["data"] == label.reshape(-1).tolist()
        assert example["outputs"]["probabilities"]["data"] == probabilities.reshape(-1).tolist()


def test_corrupted_labels_are_rejected_by_the_gate_and_nothing_is_published(trainer, s3):
    first = run_job(trainer, {"model": "penguins-linear"})
    assert first["state"] == "published", first
    versions = published(s3, "penguins-linear")
    frame = bundled()
    frame["species"] = frame["species"].sample(frac=1.0, random_state=3).to_numpy()
    job = run_job(trainer, {"model": "penguins-linear", "data": {"source": "csv", "csv": csv_of(frame)}})
    assert job["state"] == "rejected", job
    assert job["compared_with"] == versions[-1]
    candidate, current = job["metrics"]["candidate"], job["metrics"]["published"]
    assert candidate < current - 0.01 and current > 0.95, job
    assert f"{candidate:.4f}" in job["reason"] and f"{current:.4f}" in job["reason"], job
    assert published(s3, "penguins-linear") == versions


def test_jobs_of_one_model_run_one_at_a_time(trainer):
    body = {"model": "penguins-forest", "hyperparameters": {"n_estimators": 200}, "gate": {"tolerance": 1.0}}
    ids = [requests.post(f"{trainer}/v1/jobs", json=body, timeout=30).json()["id"] for _ in range(2)]
    second = requests.get(f"{trainer}/v1/jobs/{ids[1]}", timeout=5).json()
    assert second["state"] == "queued", second
    first, second = finished(trainer, ids[0]), finished(trainer, ids[1])
    assert first["state"] == second["state"] == "published", (first, second)
    assert second["started_at"] >= first["finished_at"], (first, second)
    assert second["version"] == first["version"] + 1


def test_a_job_outlives_the_client_that_asked_for_it(trainer):
    host, port = trainer.removeprefix("http://").split(":")
    body = json.dumps({"model": "penguins-linear", "gate": {"tolerance": 1.0}}).encode()
    with socket.create_connection((host, int(port))) as client:
        client.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: trainer\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
    # The client is gone; the job it started runs to the end.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        jobs = requests.get(f"{trainer}/v1/jobs", timeout=5).json()["jobs"]
        mine = [j for j in jobs if j["model"] == "penguins-linear" and j["gate"]["tolerance"] == 1.0]
        if mine:
            break
        time.sleep(0.1)
    assert len(mine) == 1
    assert finished(trainer, mine[0]["id"])["state"] == "published"


def test_an_alert_starts_one_job_per_model(trainer):
    def alert(model):
        return {"status": "firing", "labels": {"alertname": "OxiserveLowConfidence", "model": model}}

    body = {
        "version": "4",
        "status": "firing",
        "receiver": "trainer",
        "alerts": [alert("penguins-forest"), alert("penguins-forest"), {"status": "resolved", "labels": {"model": "penguins-linear"}}],
    }
    answer = requests.post(f"{trainer}/v1/alerts", json=body, timeout=30).json()
    assert len(answer["started"]) == 1 and answer["started"][0]["model"] == "penguins-forest"
    assert answer["started"][0]["trigger"] == "alert OxiserveLowConfidence"
    assert answer["already_running"] == [{"model": "penguins-forest", "job": answer["started"][0]["id"]}]
    assert finished(trainer, answer["started"][0]["id"])["state"] in ("published", "rejected")


def test_the_scheduled_run_starts_a_job_of_every_model_and_waits_for_them(trainer):
    before = {job["id"] for job in jobs(trainer)}
    env = {**os.environ, "TRAINER_URL": trainer}
    run = subprocess.run(
        [sys.executable, "-m", "service.schedule", "--wait", "120"],
        cwd=TRAINER, env=env, capture_output=True, text=True, timeout=180,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    started = [job for job in jobs(trainer) if job["id"] not in before]
    assert sorted(job["model"] for job in started) == ["penguins-forest", "penguins-linear"]
    assert all(job["state"] in ("published", "rejected") for job in started), started
    for job in started:
        assert f"{job['model']}: {job['state']}" in run.stdout, run.stdout


def test_a_csv_file_can_be_uploaded_as_a_form(trainer, s3):
    frame = bundled()
    upload = {"file": ("penguins.csv", csv_of(frame).encode(), "text/csv")}
    settings = json.dumps({"hyperparameters": {"n_estimators": 5}, "gate": {"tolerance": 1.0}})
    form = {"model": "penguins-forest", "settings": settings}
    response = requests.post(f"{trainer}/v1/jobs/upload", data=form, files=upload, timeout=30)
    assert response.status_code == 202, response.text
    job = finished(trainer, response.json()["id"])
    assert job["state"] == "published", job
    assert job["data"]["source"] == "csv" and job["data"]["rows"] == len(frame)
    assert job["hyperparameters"]["n_estimators"] == 5
    # The same checks as inline CSVs, and the form's own.
    one_class = {"file": ("a.csv", csv_of(frame[frame["species"] == "Gentoo"]).encode(), "text/csv")}
    refused = requests.post(f"{trainer}/v1/jobs/upload", data={"model": "penguins-forest"}, files=one_class, timeout=30)
    assert refused.status_code == 422 and "one class only (`Gentoo`)" in refused.json()["detail"]
    bad_settings = {"model": "penguins-forest", "settings": "{not json"}
    refused = requests.post(f"{trainer}/v1/jobs/upload", data=bad_settings, files=upload, timeout=30)
    assert refused.status_code == 422 and "JSONDecodeError" in refused.json()["detail"]
    unknown = {"model": "penguins-tree"}
    refused = requests.post(f"{trainer}/v1/jobs/upload", data=unknown, files=upload, timeout=30)
    assert refused.status_code == 422 and "model" in refused.json()["detail"], refused.text
