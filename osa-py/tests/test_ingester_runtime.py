"""`osa-run-ingester` (`run_ingester_entrypoint`): config, environment, outputs, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from osa import Example, IngesterContext, IngesterRecord, MetadataSchema, convention
from osa.runtime.ingester_entrypoint import EXIT_FAILURE, EXIT_OK, run_ingester_entrypoint


class Reading(MetadataSchema):
    __schema_id__ = "reading"
    value: float


class Feed:
    name: ClassVar[str] = "feed"
    schedule = None
    initial_run = None
    max_file_mb: ClassVar[float | None] = None

    class RuntimeConfig(BaseModel):
        scale: float = 1.0
        fail: bool = False

    def __init__(self, config: RuntimeConfig | None = None) -> None:
        self.config = config or Feed.RuntimeConfig()

    async def pull(
        self,
        *,
        ctx: IngesterContext,
        since: Any = None,
        limit: int | None = None,
        offset: int = 0,
        session: dict[str, Any] | None = None,
    ) -> AsyncIterator[IngesterRecord]:
        start = (session or {}).get("next", 0) + offset
        count = limit if limit is not None else 3
        for i in range(start, start + count):
            if self.config.fail and i == start + 1:
                raise RuntimeError("upstream went away")
            files = [await ctx.add_bytes(f"r{i}", "data.bin", data=b"\0" * (i * 400_000))]
            yield IngesterRecord(
                source_id=f"r{i}",
                metadata={"value": i * self.config.scale, "since": str(since)},
                files=files if i else [],
            )
        ctx.set_session({"next": start + count})


def declare(ingester: type) -> None:
    convention(
        title="Feeds",
        description="readings",
        version="1.0.0",
        schema=Reading,
        files={},
        hooks=[],
        purpose="readings",
        examples=[Example(question="q1?", query="q", interpretation="i")],
        example_questions=["q2?", "q3?"],
        ingester=ingester,
    )


@pytest.fixture
def dirs(tmp_path):
    paths = {name: tmp_path / name for name in ("in", "out", "files")}
    paths["in"].mkdir()
    return paths


def run(dirs: dict) -> int:
    return run_ingester_entrypoint(
        input_dir=dirs["in"], output_dir=dirs["out"], files_dir=dirs["files"]
    )


def lines(dirs: dict) -> list[dict]:
    text = (dirs["out"] / "records.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_pull_writes_records_files_and_session(dirs, monkeypatch):
    declare(Feed)
    (dirs["in"] / "config.json").write_text('{"scale": 2.5}')
    (dirs["in"] / "session.json").write_text('{"next": 1}')
    monkeypatch.setenv("OSA_LIMIT", "2")
    monkeypatch.setenv("OSA_SINCE", "2024-05-01T00:00:00+00:00")
    assert run(dirs) == EXIT_OK
    records = lines(dirs)
    assert [(r["source_id"], r["metadata"]["value"]) for r in records] == [
        ("r1", 2.5),
        ("r2", 5.0),
    ]
    assert records[0]["metadata"]["since"] == "2024-05-01 00:00:00+00:00"
    assert records[0]["files"] == [
        {"name": "data.bin", "relative_path": "r1/data.bin", "size_mb": 400_000 / 2**20}
    ]
    assert records[0]["fetched_at"] is None
    assert (dirs["files"] / "r2" / "data.bin").stat().st_size == 800_000
    assert json.loads((dirs["out"] / "session.json").read_text()) == {"next": 3}


def test_records_with_oversized_files_are_skipped_and_their_files_removed(dirs):
    class Small(Feed):
        max_file_mb = 0.5

    declare(Small)
    assert run(dirs) == EXIT_OK
    assert [r["source_id"] for r in lines(dirs)] == ["r0", "r1"]
    assert not (dirs["files"] / "r2" / "data.bin").exists()
    assert (dirs["files"] / "r1" / "data.bin").exists()


@pytest.mark.parametrize(
    ("config", "env"),
    [
        ('{"scale": "lots"}', {}),
        ("[1, 2]", {}),
        ("{not json", {}),
        ("{}", {"OSA_LIMIT": "ten"}),
        ("{}", {"OSA_SINCE": "yesterday"}),
    ],
)
def test_unusable_inputs_fail_cleanly(dirs, monkeypatch, caplog, config, env):
    declare(Feed)
    (dirs["in"] / "config.json").write_text(config)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert run(dirs) == EXIT_FAILURE
    assert not (dirs["out"] / "records.jsonl").exists()
    assert caplog.records[-1].levelname == "ERROR"


def test_a_failing_pull_exits_1(dirs, caplog):
    declare(Feed)
    (dirs["in"] / "config.json").write_text('{"fail": true}')
    assert run(dirs) == EXIT_FAILURE
    assert "INGESTER FAILED" in caplog.text
    assert "upstream went away" in caplog.text


def test_no_ingester_or_an_unknown_name_exits_1(dirs, monkeypatch, caplog):
    assert run(dirs) == EXIT_FAILURE
    assert "no ingester is registered" in caplog.text
    declare(Feed)
    monkeypatch.setenv("OSA_INGESTER_NAME", "other")
    assert run(dirs) == EXIT_FAILURE
    assert "no registered ingester is called 'other' (registered: feed)" in caplog.text


@pytest.fixture
def file_server():
    """A local HTTP server: `/ok` serves 3 MiB, `/missing` is 404, `/short` announces
    more bytes than it sends and closes the connection."""
    import http.server
    import threading

    body = bytes(range(256)) * (3 * 4096)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/ok":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif self.path == "/short":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:1000])
                self.wfile.flush()
                self.close_connection = True
            else:
                self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", body
    finally:
        server.shutdown()
        server.server_close()


def test_add_file_downloads_and_leaves_nothing_behind_on_failure(tmp_path, file_server):
    import asyncio
    import http.client
    import urllib.error

    base, body = file_server
    ctx = IngesterContext(tmp_path / "files", tmp_path / "out")
    ref = asyncio.run(ctx.add_file("rec:1", "data.bin", url=f"{base}/ok"))
    assert ref.name == "data.bin"
    assert (tmp_path / "files" / ref.relative_path).read_bytes() == body
    assert ref.size_mb == pytest.approx(len(body) / 2**20)

    with pytest.raises(urllib.error.HTTPError):
        asyncio.run(ctx.add_file("rec:2", "gone.bin", url=f"{base}/missing"))
    with pytest.raises(http.client.IncompleteRead):
        asyncio.run(ctx.add_file("rec:3", "cut.bin", url=f"{base}/short"))
    left = sorted(p.name for p in (tmp_path / "files").rglob("*") if p.is_file())
    assert left == ["data.bin"]
