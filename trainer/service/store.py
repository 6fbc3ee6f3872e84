"""The model repository the service publishes to, `s3://bucket/prefix` or a directory, laid
out as oxiserve reads it: `<model>/<version>/<files>` with `manifest.json`. Publication follows
the protocol: every file first, the manifest last, so a reader never sees a partial version;
a version whose manifest exists is never written again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlparse

MANIFEST = "manifest.json"


class VersionTaken(Exception):
    """Another writer published this version first."""


class Repository:
    """Reads and publishes model versions at `uri`: `s3://bucket/prefix` (the endpoint from
    `AWS_ENDPOINT_URL` when set, as boto3 reads it) or a local directory."""

    def __init__(self, uri: str):
        self.uri = uri
        parsed = urlparse(uri)
        if parsed.scheme == "s3":
            import boto3

            self._s3 = boto3.client("s3")
            self._bucket = parsed.netloc
            self._prefix = parsed.path.strip("/")
            self._root = None
        else:
            self._s3 = None
            self._root = Path(uri)

    def _key(self, *parts) -> str:
        return "/".join(p for p in [self._prefix, *map(str, parts)] if p)

    def versions(self, model: str) -> list[int]:
        """The published versions of `model` (those with a manifest), ascending."""
        found = set()
        if self._s3 is not None:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=self._key(model) + "/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    version, _, name = item["Key"][len(self._key(model)) + 1 :].partition("/")
                    if name == MANIFEST and version.isdigit():
                        found.add(int(version))
        else:
            directory = self._root / model
            if directory.is_dir():
                found = {
                    int(d.name)
                    for d in directory.iterdir()
                    if d.name.isdigit() and (d / MANIFEST).is_file()
                }
        return sorted(found)

    def read(self, model: str, version: int, file: str) -> bytes:
        """One file of a published version."""
        if self._s3 is not None:
            body = self._s3.get_object(Bucket=self._bucket, Key=self._key(model, version, file))
            return body["Body"].read()
        return (self._root / model / str(version) / file).read_bytes()

    def manifest(self, model: str, version: int) -> dict:
        """The manifest of a published version."""
        return json.loads(self.read(model, version, MANIFEST))

    def publish(self, model: str, version: int, files: dict, manifest: dict) -> None:
        """Writes `files` (name -> bytes), then the manifest; `VersionTaken` if the version
        is published already."""
        if version in self.versions(model):
            raise VersionTaken(f"{model} v{version} is published already")
        body = (json.dumps(manifest, indent=2) + "\n").encode()
        if self._s3 is not None:
            for name, data in files.items():
                self._s3.put_object(
                    Bucket=self._bucket, Key=self._key(model, version, name), Body=data
                )
            # Written only if no manifest is there yet: two writers never both publish it.
            try:
                self._s3.put_object(
                    Bucket=self._bucket,
                    Key=self._key(model, version, MANIFEST),
                    Body=body,
                    IfNoneMatch="*",
                )
            except self._s3.exceptions.ClientError as error:
                if error.response["Error"]["Code"] in ("PreconditionFailed", "412"):
                    raise VersionTaken(f"{model} v{version} was published meanwhile") from error
                raise
            return
        directory = self._root / model / str(version)
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (directory / name).write_bytes(data)
        staged = directory / f".{MANIFEST}.{os.getpid()}"
        staged.write_bytes(body)
        try:
            # A hard link fails if the manifest exists: the same "only if absent" as S3's.
            os.link(staged, directory / MANIFEST)
        except FileExistsError as error:
            raise VersionTaken(f"{model} v{version} was published meanwhile") from error
        finally:
            staged.unlink()
