"""Training jobs: each runs in the background, one at a time per model (jobs of one model
queue behind each other, models train side by side), whatever happens to the client that
asked for it. A job trains a candidate, scores it and the version published now on the
reference set (the quality gate, see `service.data`), and publishes it only if it is not worse.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import pandas as pd
import sklearn
import skl2onnx

from artifacts import golden_examples, manifest
from service import training
from service.data import fingerprint, reference
from service.store import Repository, VersionTaken

log = logging.getLogger("trainer.jobs")

# Golden examples per published version: enough to catch a wrong graph or runtime, few
# enough to keep the manifest small and the server's check quick.
GOLDEN_EXAMPLES = 5


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Job:
    """A training job as `GET /v1/jobs/{id}` shows it."""

    id: str
    model: str
    trigger: str
    data: dict
    hyperparameters: dict
    gate: dict
    test_size: float
    state: str = "queued"  # queued, running, published, rejected, failed
    stage: str = "waiting for earlier jobs of this model"
    created_at: str = field(default_factory=now)
    started_at: str | None = None
    finished_at: str | None = None
    metrics: dict = field(default_factory=dict)
    compared_with: int | None = None
    version: int | None = None
    reason: str | None = None

    def view(self) -> dict:
        return asdict(self)


class Jobs:
    """Every job since the service started, and the workers that run them."""

    def __init__(self, repository: Repository):
        self.repository = repository
        self._jobs: dict[str, Job] = {}
        self._frames: dict[str, pd.DataFrame] = {}
        self._workers: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def submit(self, model: str, frame: pd.DataFrame, source: str, trigger: str, **settings) -> Job:
        """Queues a job of `model` on validated rows `frame` (from `source`)."""
        data = {"source": source, "rows": len(frame), "fingerprint": fingerprint(frame)}
        job = Job(id=uuid.uuid4().hex, model=model, trigger=trigger, data=data, **settings)
        with self._lock:
            self._jobs[job.id] = job
            self._frames[job.id] = frame
            worker = self._workers.setdefault(
                model, ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"train-{model}")
            )
        worker.submit(self._run, job)
        log.info("job %s queued: %s on %s (%s)", job.id, model, source, trigger)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def active(self, model: str) -> Job | None:
        """A queued or running job of `model`, if there is one."""
        with self._lock:
            return next(
                (j for j in self._jobs.values() if j.model == model and j.state in ("queued", "running")),
                None,
            )

    def shutdown(self) -> None:
        for worker in self._workers.values():
            worker.shutdown(wait=False, cancel_futures=True)

    def _run(self, job: Job) -> None:
        job.state, job.started_at = "running", now()
        try:
            self._train_and_publish(job)
        except Exception as error:  # noqa: BLE001 - a job records why it failed, and the service lives on
            log.exception("job %s failed", job.id)
            job.state, job.reason = "failed", f"{type(error).__name__}: {error}"
        finally:
            job.finished_at = now()
            with self._lock:
                self._frames.pop(job.id, None)
        log.info("job %s %s: %s", job.id, job.state, job.reason or f"v{job.version}")

    def _train_and_publish(self, job: Job) -> None:
        with self._lock:
            frame = self._frames[job.id]
        job.stage = "training"
        candidate = training.train(frame, job.model, job.hyperparameters, job.test_size)
        job.stage = "evaluating"
        metric, tolerance = job.gate["metric"], job.gate["tolerance"]
        metadata = {"classes": candidate.classes, "preprocessing": candidate.preprocessing}
        job.metrics["held_out"] = training.score(
            candidate.graph, metadata, candidate.held_out, metric
        )
        yardstick = reference()
        job.metrics["candidate"] = training.score(candidate.graph, metadata, yardstick, metric)
        published = self.repository.versions(job.model)
        if published:
            current = published[-1]
            job.compared_with = current
            manifest_now = self.repository.manifest(job.model, current)
            graph_now = self.repository.read(job.model, current, "model.onnx")
            job.metrics["published"] = training.score(
                graph_now, manifest_now["metadata"], yardstick, metric
            )
            if job.metrics["candidate"] < job.metrics["published"] - tolerance:
                job.state = "rejected"
                job.reason = (
                    f"{metric} {job.metrics['candidate']:.4f} on the reference set is worse than "
                    f"v{current}'s {job.metrics['published']:.4f} by more than {tolerance:g}"
                )
                job.stage = "done"
                return
        job.stage = "publishing"
        golden = golden_examples(candidate.graph, training.feeds(candidate, GOLDEN_EXAMPLES))
        metadata["training"] = {
            "job": job.id,
            "trigger": job.trigger,
            "data": job.data,
            "rows": candidate.rows,
            "hyperparameters": job.hyperparameters,
            "gate": {**job.gate, "compared_with": job.compared_with},
            "metrics": {
                "reference": {metric: job.metrics["candidate"]},
                "held_out": {metric: job.metrics["held_out"]},
            },
            "sklearn": sklearn.__version__,
            "skl2onnx": skl2onnx.__version__,
        }
        files = {"model.onnx": candidate.graph}
        version = (published[-1] if published else 0) + 1
        while True:
            written = manifest(job.model, version, files, metadata, golden)
            try:
                self.repository.publish(job.model, version, files, written)
                break
            except VersionTaken:
                version += 1
        job.state, job.version, job.stage = "published", version, "done"
