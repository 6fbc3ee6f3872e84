"""The training service's HTTP API (FastAPI, OpenAPI at `/docs` and `/openapi.json`):

- `POST /v1/jobs` queues a training job (the model, the bundled data or a CSV, hyperparameters,
  the quality gate's metric and tolerance): 202 with the job; data that cannot be trained on
  is a 422 naming the problem, and no job starts.
- `POST /v1/jobs/upload`: the same with a CSV file sent as a multipart form (`model`, `file`,
  and optionally `settings`, the other fields of a job as JSON).
- `GET /v1/jobs/{id}` and `GET /v1/jobs`: state, stage, metrics, the version published or why
  none was.
- `POST /v1/alerts`: Alertmanager's webhook; every firing alert with a `model` label starts a
  job on the bundled data for that model, unless one is queued or running already.
- `GET /healthz`.

Settings come from the environment: `TRAINER_MODELS_URI` (`s3://bucket/prefix` or a
directory; with S3, boto3's usual variables, `AWS_ENDPOINT_URL` among them).
Errors are RFC 9457 problem+json.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from penguins import MODELS
from service import data
from service.jobs import Jobs
from service.store import Repository

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Data(Strict):
    """Which rows to train on: the bundled Palmer penguins set, or a CSV sent inline."""

    source: Literal["bundled", "csv"] = "bundled"
    csv: str | None = Field(None, description="the CSV's text, with a header row")
    min_rows_per_class: int = Field(10, ge=2, description="fewer rows of any class: 422")


class Gate(Strict):
    """The quality gate: publish only if the candidate's metric on the held-out rows is at
    least the published version's minus `tolerance`."""

    metric: Literal["accuracy", "f1_macro"] = "accuracy"
    tolerance: float = Field(0.01, ge=0.0, le=1.0)


class LinearHyperparameters(Strict):
    C: float = Field(0.5, gt=0.0, le=1e4)
    max_iter: int = Field(1000, ge=10, le=100_000)


class ForestHyperparameters(Strict):
    n_estimators: int = Field(25, ge=1, le=500)
    max_depth: int = Field(5, ge=1, le=30)


HYPERPARAMETERS = {"penguins-linear": LinearHyperparameters, "penguins-forest": ForestHyperparameters}


class JobRequest(Strict):
    model: Literal["penguins-linear", "penguins-forest"]
    data: Data = Data()
    hyperparameters: dict = Field(
        default_factory=dict,
        description="penguins-linear: C, max_iter; penguins-forest: n_estimators, max_depth",
    )
    gate: Gate = Gate()
    test_size: float = Field(0.3, ge=0.1, le=0.5, description="share of rows held out")


class Alert(BaseModel):
    status: str
    labels: dict[str, str] = {}


class AlertmanagerWebhook(BaseModel):
    """The body Alertmanager posts to a webhook receiver (only the fields used here)."""

    status: str
    alerts: list[Alert]


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str):
        self.status, self.title, self.detail = status, title, detail


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.jobs = Jobs(Repository(os.environ["TRAINER_MODELS_URI"]))
    yield
    app.state.jobs.shutdown()


app = FastAPI(
    title="oxiserve training service",
    version="0.1.0",
    description="Retrains the penguin models, gates them against the published version and "
    "publishes them to the model repository oxiserve serves from.",
    lifespan=lifespan,
)


def problem(request: Request, status: int, title: str, detail) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body["instance"] = request.url.path
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


@app.exception_handler(Problem)
async def on_problem(request: Request, error: Problem):
    return problem(request, error.status, error.title, error.detail)


@app.exception_handler(RequestValidationError)
async def on_invalid_request(request: Request, error: RequestValidationError):
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
        for e in error.errors()
    )
    return problem(request, 422, "Invalid request", detail)


def rows_of(request: JobRequest):
    """The validated rows a job trains on, or a 422 naming what is wrong with them."""
    try:
        if request.data.source == "csv":
            if not request.data.csv:
                raise data.DataError("`data.csv` is required when `data.source` is `csv`")
            frame = data.parse_csv(request.data.csv)
        else:
            frame = data.bundled()
        return data.validate(frame, request.data.min_rows_per_class)
    except data.DataError as error:
        raise Problem(422, "Unusable training data", str(error)) from error


# The largest CSV file an upload may carry.
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


@app.post("/v1/jobs", status_code=202)
def create_job(body: JobRequest, request: Request):
    """Queues a training job; it runs in the background (`GET /v1/jobs/{id}` follows it)."""
    return submit(body, request)


@app.post("/v1/jobs/upload", status_code=202)
async def upload_job(
    request: Request,
    model: str = Form(..., description="penguins-linear or penguins-forest"),
    file: UploadFile = File(..., description="the training data, a CSV with a header row"),
    settings: str = Form("{}", description="the job's other fields as JSON, e.g. "
                         '{"hyperparameters": {"n_estimators": 40}, "gate": {"tolerance": 0.02}}'),
):
    """Queues a training job on an uploaded CSV file (`curl -F model=penguins-forest -F
    file=@data.csv .../v1/jobs/upload`)."""
    raw = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(raw) > MAX_UPLOAD_BYTES:
        raise Problem(413, "Upload too large", f"the CSV may have at most {MAX_UPLOAD_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
        extra = json.loads(settings)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Problem(422, "Invalid upload", f"{type(error).__name__}: {error}") from error
    if not isinstance(extra, dict) or "model" in extra:
        raise Problem(422, "Invalid upload", "`settings` must be a JSON object without `model`")
    job_data = {**extra.pop("data", {}), "source": "csv", "csv": text}
    try:
        body = JobRequest(model=model, data=job_data, **extra)
    except ValidationError as error:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise Problem(422, "Invalid request", detail) from error
    # Parsing and checking the rows is CPU work: off the event loop.
    return await run_in_threadpool(submit, body, request)


def submit(body: JobRequest, request: Request) -> JSONResponse:
    """Checks a job's hyperparameters and data, then queues it: 202 with the job."""
    try:
        hyperparameters = HYPERPARAMETERS[body.model](**body.hyperparameters).model_dump()
    except ValidationError as error:
        detail = "; ".join(f"hyperparameters.{e['loc'][0]}: {e['msg']}" for e in error.errors())
        raise Problem(422, "Invalid hyperparameters", detail) from error
    frame = rows_of(body)
    job = request.app.state.jobs.submit(
        body.model,
        frame,
        body.data.source,
        "api",
        hyperparameters=hyperparameters,
        gate=body.gate.model_dump(),
        test_size=body.test_size,
    )
    return JSONResponse(job.view(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@app.get("/v1/jobs/{job_id}")
def get_job(job_id: str, request: Request):
    """One job: state (queued, running, published, rejected, failed), stage, metrics, the
    version published or the reason none was."""
    job = request.app.state.jobs.get(job_id)
    if job is None:
        raise Problem(404, "No such job", f"no job `{job_id}`")
    return job.view()


@app.get("/v1/jobs")
def list_jobs(request: Request):
    """Every job since the service started, oldest first."""
    return {"jobs": [job.view() for job in request.app.state.jobs.all()]}


@app.post("/v1/alerts", status_code=202)
def on_alerts(body: AlertmanagerWebhook, request: Request):
    """Alertmanager's webhook: a job on the bundled data for each model named by a firing
    alert, unless that model has a job queued or running."""
    jobs = request.app.state.jobs
    started, skipped = [], []
    for alert in body.alerts:
        model = alert.labels.get("model")
        if alert.status != "firing" or model not in MODELS:
            continue
        if (active := jobs.active(model)) is not None:
            skipped.append({"model": model, "job": active.id})
            continue
        job = jobs.submit(
            model,
            data.validate(data.bundled(), Data().min_rows_per_class),
            "bundled",
            f"alert {alert.labels.get('alertname', '?')}",
            hyperparameters=HYPERPARAMETERS[model]().model_dump(),
            gate=Gate().model_dump(),
            test_size=JobRequest.model_fields["test_size"].default,
        )
        started.append(job.view())
    return {"started": started, "already_running": skipped}


@app.get("/healthz")
def healthz(request: Request):
    return {"status": "ok", "repository": request.app.state.jobs.repository.uri}
