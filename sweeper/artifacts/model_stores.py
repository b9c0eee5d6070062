"""Where kept models live: a folder (`file:///path`) or an S3-compatible bucket (`s3://bucket/prefix`).

Both are Optuna artifact stores, so `optuna.artifacts.upload_artifact`/`download_artifact` and
optuna-dashboard's trial pages work with either. Optuna's `Boto3ArtifactStore` writes keys at
the bucket's root; `_Prefixed` puts them under the URL's prefix, so one bucket can hold many
studies. Endpoint and credentials come from boto3's own sources (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `~/.aws/credentials`, an instance role) and are
never printed.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from optuna.artifacts import Boto3ArtifactStore, FileSystemArtifactStore

from sweeper.errors import SweeperError
from sweeper.studyfile import check_url

ENV = "SWEEPER_ARTIFACTS"


class ModelStore(Protocol):
    """Optuna's artifact-store protocol: what upload, download, removal and the dashboard use."""

    def open_reader(self, artifact_id: str) -> BinaryIO: ...

    def write(self, artifact_id: str, content_body: BinaryIO) -> None: ...

    def remove(self, artifact_id: str) -> None: ...


class _Prefixed:
    """An artifact store whose keys live under `prefix/`."""

    def __init__(self, store: ModelStore, prefix: str) -> None:
        self._store, self._prefix = store, prefix

    def _key(self, artifact_id: str) -> str:
        return f"{self._prefix}/{artifact_id}" if self._prefix else artifact_id

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._store.open_reader(self._key(artifact_id))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self._store.write(self._key(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        self._store.remove(self._key(artifact_id))


class _NoPartialFiles:
    """A folder store whose failed write (a full disk) removes what it wrote: the space goes back
    to the study's database, whose next write records the trial's result, and no truncated model
    is left to be downloaded later."""

    def __init__(self, store: ModelStore) -> None:
        self._store = store

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._store.open_reader(artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        try:
            self._store.write(artifact_id, content_body)
        except OSError:
            with contextlib.suppress(Exception):  # nothing may have been written at all
                self._store.remove(artifact_id)
            raise

    def remove(self, artifact_id: str) -> None:
        self._store.remove(artifact_id)


def open_store(url: str, *, create: bool = True) -> ModelStore:
    """The store at `url`, checked now (writable when `create`): a worker must not learn it after a trial has trained."""
    try:
        check_url(url)
    except ValueError as exc:
        raise SweeperError(f"model store: {exc}") from None
    if url.startswith("s3://"):
        return _open_s3(url, create=create)
    folder = Path(url.removeprefix("file://"))
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
                pass
        elif not folder.is_dir():
            raise SweeperError(f"model store {url} does not exist (no model was kept there yet)")
    except OSError as exc:
        raise SweeperError(f"model store {url} is not writable: {exc.strerror or exc}") from None
    return _NoPartialFiles(FileSystemArtifactStore(folder))


def _open_s3(url: str, *, create: bool) -> ModelStore:
    import boto3

    parts = urlsplit(url)
    bucket, prefix = parts.netloc, parts.path.strip("/")
    client = boto3.client("s3")
    store = _Prefixed(Boto3ArtifactStore(bucket, client=client), prefix)
    try:
        if create:  # a real write and removal: permissions are what fail in practice
            check = f".write-check-{uuid.uuid4().hex}"
            with tempfile.TemporaryFile() as empty:
                store.write(check, empty)
            store.remove(check)
        else:
            client.head_bucket(Bucket=bucket)
    except store_errors() as exc:
        raise SweeperError(f"model store {url} is not {'writable' if create else 'reachable'}: {exc}") from None
    return store


def store_errors() -> tuple[type[Exception], ...]:
    """What a store raises when it is down or full: the file system's, and boto3's when it is installed."""
    try:
        import botocore.exceptions
    except ImportError:
        return (OSError,)
    return OSError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError
