"""The local engine binding (`osa.local`) and `osa test`, end to end on temp archives.

Every test deploys the sample convention "Protein Structures" (installed with the test
venv) to a fresh SQLite archive; its hooks run as real processes of this venv's Python
through the process runner, and features are read back with their provenance.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import threading
import time
from typing import Any

import pytest

from conftest import CIF, run, script, write_records
from osa import Example, Record, _registry, convention
from osa import hook as osa_hook
from osa.cli.local_test import records_from_file
from osa.cli.main import main as cli_main
from osa.errors import DeployError
from osa.local import (
    EngineError,
    InvalidRequestError,
    LocalArchive,
    LocalRecord,
    NotFoundError,
    RunEvent,
    VerdictCounts,
    find_convention,
    local_payload,
)

TITLE = "Protein Structures"


@pytest.fixture
def structures(sample_installed):
    # The registry starts empty in every test: register the sample's convention anew.
    import osa_sample.convention

    importlib.reload(osa_sample.convention)
    return find_convention(TITLE)


def test_a_relative_archive_runs_its_hooks(structures, records, tmp_path, monkeypatch):
    # The README's first step: an archive named relative to the working directory.
    # Hooks run in their batch directory, so they must be given absolute paths.
    monkeypatch.chdir(tmp_path)
    archive = LocalArchive("./archive")
    deployed = archive.deploy_convention(structures, principal="alice")
    result = archive.validate(deployed.slug, records)
    assert result.status == "completed"
    assert result.accepted == ["good"]
    assert (tmp_path / "archive" / "archive.db").is_file()


def test_payload_has_a_process_release_per_hook(structures):
    body = local_payload(structures)
    assert [h["name"] for h in body["hooks"]] == ["validate_structure", "find_pockets"]
    for hook in body["hooks"]:
        release = hook["release"]
        assert release["command"] == [sys.executable, "-m", "osa.runtime.entrypoint"]
        assert release["digest"].startswith("sha256:")
        assert len(release["digest"]) == len("sha256:") + 64
        assert release["source_ref"] == "local:osa_sample.convention"
    # The digest names the hook's code: two hooks of one package differ by name.
    assert body["hooks"][0]["release"]["digest"] != body["hooks"][1]["release"]["digest"]
    assert local_payload(structures) == body


def test_deploy_validate_features_and_provenance(structures, records, tmp_path):
    archive = LocalArchive(tmp_path / "archive")
    deployed = archive.deploy_convention(structures, principal="alice")
    assert deployed.slug == "protein-structures"
    assert [(r.hook, r.version) for r in deployed.releases] == [
        ("validate_structure", 1),
        ("find_pockets", 1),
    ]
    assert deployed.created == [True, True]
    assert deployed.deployment["status"] == "succeeded"
    assert deployed.deployment["principal"] == "alice"

    events: list[RunEvent] = []
    result = archive.validate(deployed.slug, records, on_event=events.append)

    assert result.status == "completed"
    assert result.accepted == ["good"]
    coarse = result.verdict("coarse")
    assert (coarse.verdict, coarse.hook) == ("rejected", "validate_structure")
    assert coarse.reason == "Resolution too low for reliable analysis"
    assert result.verdict("no-cif").reason == "At least one CIF file is required"
    assert [(s.hook, s.passed, s.rejected) for s in result.steps] == [
        ("validate_structure", 1, 2),
        ("find_pockets", 1, 0),
    ]
    kinds = [e.type for e in events]
    assert kinds[0] == "submitted"
    assert kinds[-1] == "finished"
    assert kinds.count("step_finished") == 2
    assert [e.seq for e in events] == list(range(1, len(events) + 1))

    page = archive.features("find_pockets")
    assert [c["name"] for c in page.columns] == ["pocket_id", "score", "volume"]
    assert len(page.rows) == 1
    row = page.rows[0]
    size_kb = len(CIF.encode()) / 1024
    assert row.record_id == "good"
    assert row.values == {"pocket_id": 1, "score": round(size_kb / 100, 2), "volume": size_kb}
    assert row.validation_run_id == result.id
    assert archive.features("validate_structure").rows == []
    assert archive.features("find_pockets", record_id="coarse").rows == []

    prov = archive.provenance("find_pockets", row.id)
    assert prov.row == row
    assert prov.run.id == row.run_id == result.steps[1].hook_run_id
    assert prov.run.status == "passed"
    assert prov.run.duration_s > 0
    assert prov.release.hook == "find_pockets"
    assert prov.release.version == 1
    assert prov.release.command == [sys.executable, "-m", "osa.runtime.entrypoint"]
    assert prov.release.built_by == "alice"
    assert prov.release == deployed.releases[1]

    # Redeploying unchanged code is audited again but makes no release.
    again = archive.deploy_convention(structures)
    assert again.created == [False, False]
    assert [r.version for r in again.releases] == [1, 1]
    assert again.deployment["payload_sha256"] == deployed.deployment["payload_sha256"]
    assert again.deployment["id"] != deployed.deployment["id"]


def test_rows_without_columns_or_with_system_names_are_stored(sample_installed, tmp_path):
    import osa_sample.runtime_hooks as runtime_hooks

    importlib.reload(runtime_hooks)
    convention(
        title="Loose Rows",
        description="Rows of any shape",
        version="1.0.0",
        schema=runtime_hooks.Sample,
        files={"accepted_types": [".txt"], "max_count": 1, "max_file_size": 1024},
        hooks=[runtime_hooks.loose_rows, runtime_hooks.named_rows],
        purpose="Keep what a hook returns as it is.",
        examples=[Example(question="q?", query="loose_rows", interpretation="i")],
        example_questions=["What came back?", "Which keys were there?"],
    )
    archive = LocalArchive(tmp_path / "archive")
    deployed = archive.deploy_convention(find_convention("Loose Rows"))
    result = archive.validate(deployed.slug, [{"id": "r-1", "metadata": {"label": "x"}}])
    assert result.status == "completed", result
    page = archive.features("loose_rows")
    assert [c["name"] for c in page.columns] == ["row"]
    (row,) = page.rows
    assert row.record_id == "r-1"
    assert row.values == {"row": {"label": "x", "Any Key": [1, None], "record_id": "r-1"}}
    (named,) = archive.features("named_rows").rows
    assert named.record_id == "r-1"
    assert named.run_id == result.steps[1].hook_run_id
    assert named.values == {
        "id": 7,
        "record_id": "not r-1",
        "run_id": "mine",
        "created_at": "today",
    }


def test_a_run_is_read_a_page_at_a_time(structures, records, tmp_path):
    archive = LocalArchive(tmp_path / "archive")
    slug = archive.deploy_convention(structures).slug
    more = [{**records[0], "id": "good-2"}, {**records[1], "id": "coarse-2"}]
    ids = ["good", "coarse", "no-cif", "good-2", "coarse-2"]
    run_id = archive.submit(slug, [*records, *more])

    # Before any step: every record pending.
    pending = archive.summary(run_id, limit=2)
    assert (pending.status, pending.record_count, pending.finished) == ("pending", 5, False)
    assert pending.counts == VerdictCounts(pending=5, accepted=0, rejected=0, errored=0)
    assert [(v.record_id, v.verdict) for v in pending.verdicts] == [
        ("good", "pending"),
        ("coarse", "pending"),
    ]
    assert pending.next == 2

    result = archive.wait(run_id)
    assert result.status == "completed"
    assert [v.record_id for v in result.verdicts] == ids

    # Pages of 2: [0, 1], [2, 3], [4], each with the cursor of the next.
    pages = []
    start: int | None = 0
    while start is not None:
        page = archive.records(run_id, from_=start, limit=2)
        pages.append(([v.record_id for v in page.records], page.next))
        start = page.next
        assert len(pages) <= 3, pages
    assert pages == [(ids[0:2], 2), (ids[2:4], 4), (ids[4:], None)]
    assert list(archive.iter_records(run_id, page_size=2)) == result.verdicts
    assert list(archive.iter_records(run_id)) == result.verdicts
    assert archive.records(run_id, from_=5).records == []
    assert archive.records(run_id, from_=3, limit=2).next is None

    summary = archive.summary(run_id, limit=2)
    assert (summary.id, summary.status, summary.finished) == (run_id, "completed", True)
    assert summary.steps == result.steps
    assert summary.counts == VerdictCounts(pending=0, accepted=2, rejected=3, errored=0)
    assert summary.counts.total == summary.record_count == 5
    assert summary.verdicts == result.verdicts[:2]
    assert summary.next == 2
    whole = archive.summary(run_id)
    assert (whole.verdicts, whole.next) == (result.verdicts, None)

    for limit in (0, 10_001):
        with pytest.raises(InvalidRequestError, match="limit") as bad:
            archive.records(run_id, limit=limit)
        assert bad.value.kind == "invalid"
        with pytest.raises(InvalidRequestError, match="limit"):
            archive.summary(run_id, limit=limit)
    unknown = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(NotFoundError):
        archive.records(unknown)
    with pytest.raises(NotFoundError):
        archive.summary(unknown)
    with pytest.raises(InvalidRequestError, match="run_id"):
        archive.records("not-a-uuid")


def test_the_archive_is_durable_across_reopening(structures, records, tmp_path):
    first = LocalArchive(tmp_path / "archive")
    slug = first.deploy_convention(structures).slug
    run_id = first.submit(slug, records[:1])
    del first
    reopened = LocalArchive(tmp_path / "archive")
    assert reopened.run(run_id).status == "pending"
    assert reopened.wait(run_id).status == "completed"
    assert [c["slug"] for c in reopened.conventions()] == [slug]
    assert [r.version for r in reopened.releases("find_pockets")] == [1]


def test_wait_releases_the_gil(structures, records, tmp_path):
    archive = LocalArchive(tmp_path / "archive")
    slug = archive.deploy_convention(structures).slug
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        before = ticks
        started = time.monotonic()
        result = archive.validate(slug, records)
        elapsed = time.monotonic() - started
        during = ticks - before
    finally:
        stop.set()
        counter.join()
    assert result.status == "completed"
    # Two hook processes ran (hundreds of ms); a thread that needs the GIL kept
    # running throughout instead of being frozen out.
    assert elapsed > 0.2
    assert during > 20


def test_wait_async_keeps_the_event_loop_running(structures, records, tmp_path):
    archive = LocalArchive(tmp_path / "archive")
    slug = archive.deploy_convention(structures).slug

    async def main() -> tuple[str, int]:
        beats = 0

        async def heartbeat() -> None:
            nonlocal beats
            while True:
                beats += 1
                await asyncio.sleep(0.005)

        beat = asyncio.create_task(heartbeat())
        result = await archive.validate_async(slug, records)
        beat.cancel()
        return result.status, beats

    status, beats = asyncio.run(main())
    assert status == "completed"
    assert beats > 10


def test_timeout_stops_the_wait_and_the_run_goes_on(structures, records, tmp_path):
    archive = LocalArchive(tmp_path / "archive")
    slug = archive.deploy_convention(structures).slug
    run_id = archive.submit(slug, records)
    with pytest.raises(TimeoutError, match=r"did not end within 0\.0 s"):
        archive.wait(run_id, timeout=0.01)
    assert not archive.run(run_id).finished
    assert archive.wait(run_id).status == "completed"


def test_an_error_in_the_callback_stops_the_wait(structures, records, tmp_path):
    archive = LocalArchive(tmp_path / "archive")
    slug = archive.deploy_convention(structures).slug
    run_id = archive.submit(slug, records)

    def explode(event: RunEvent) -> None:
        raise RuntimeError(f"callback saw {event.type}")

    with pytest.raises(RuntimeError, match="callback saw submitted"):
        archive.wait(run_id, on_event=explode)
    assert archive.wait(run_id).status == "completed"


def test_engine_errors_are_typed(structures, records, tmp_path):
    archive = LocalArchive(tmp_path / "archive")
    with pytest.raises(NotFoundError) as missing:
        archive.submit("protein-structures", records)
    assert missing.value.kind == "not_found"
    assert isinstance(missing.value, EngineError)
    slug = archive.deploy_convention(structures).slug

    hostile = [{"id": "bad\nid", "metadata": {}}]
    with pytest.raises(InvalidRequestError, match=r"\[0\]\.id") as invalid:
        archive.submit(slug, hostile)
    assert invalid.value.kind == "invalid"
    with pytest.raises(InvalidRequestError, match="unknown keys") as unknown_keys:
        archive.submit(slug, [{"id": "a", "metadata": {}, "colour": "red"}])
    assert unknown_keys.value.kind == "invalid"
    with pytest.raises(NotFoundError, match="hook no_such_hook not found") as no_hook:
        archive.hook_columns("no_such_hook")
    assert no_hook.value.kind == "not_found"
    with pytest.raises(InvalidRequestError, match="timeout") as negative:
        archive.wait("00000000-0000-4000-8000-000000000000", timeout=-1)
    assert negative.value.kind == "invalid"
    with pytest.raises(InvalidRequestError, match="run_id"):
        archive.run("not-a-uuid")
    with pytest.raises(NotFoundError):
        archive.run("00000000-0000-4000-8000-000000000000")
    with pytest.raises(NotFoundError):
        archive.features("no_such_hook")
    with pytest.raises(NotFoundError):
        archive.provenance("find_pockets", 12345)
    with pytest.raises(FileNotFoundError):
        archive.submit(slug, [LocalRecord("x", {}, files=tmp_path / "missing")])
    # A refused deploy is audited and leaves no release behind.
    with pytest.raises(InvalidRequestError, match="hooks"):
        archive.deploy({"title": "Broken", "hooks": "nope"})
    assert [r.version for r in archive.releases("find_pockets")] == [1]


def test_a_crashing_hook_fails_the_run_with_a_readable_log(structures, tmp_path):
    archive = LocalArchive(tmp_path / "archive")
    body = local_payload(structures)
    # The same contract, but the hook process cannot start its module.
    body["hooks"][0]["release"] = {
        "command": [
            sys.executable,
            "-c",
            "import sys; print('boom', file=sys.stderr); sys.exit(3)",
        ],
        "digest": "sha256:" + "ab" * 32,
        "source_ref": "test:crash",
    }
    slug = archive.deploy(body).slug
    result = archive.validate(slug, [{"id": "r1", "metadata": {}}])
    assert result.status == "failed"
    assert result.failure == "no record was accepted: 1 errored, 0 rejected"
    verdict = result.verdict("r1")
    assert (verdict.verdict, verdict.hook) == ("errored", "validate_structure")
    assert verdict.reason == "hook failed: hook exited with code 3"
    assert result.steps[0].status == "error"
    hook_run = result.steps[0].hook_run_id
    assert hook_run is not None
    assert "boom" in archive.hook_log(hook_run)


def test_osa_test_runs_the_convention_end_to_end(sample_installed, records, tmp_path):
    jsonl, files = write_records(records, tmp_path)
    archive = tmp_path / "kept"
    args = [
        script("osa"),
        "test",
        "--convention",
        TITLE,
        "--records",
        str(jsonl),
        "--files",
        str(files),
        "--archive",
        str(archive),
        "--json",
    ]
    proc = run(args)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "completed"
    assert [(r["id"], r["verdict"]) for r in out["records"]] == [
        ("good", "accepted"),
        ("coarse", "rejected"),
        ("no-cif", "rejected"),
    ]
    assert [row["record_id"] for row in out["features"]["find_pockets"]] == ["good"]
    assert out["provenance"]["hook"] == "find_pockets"
    assert out["provenance"]["release_version"] == 1
    assert "3 record(s): 1 accepted, 2 rejected" in proc.stderr
    assert "✓ good" in proc.stderr
    assert "✗ coarse  rejected by validate_structure" in proc.stderr
    assert "provenance of find_pockets row" in proc.stderr

    # The archive was kept: the same code deploys as the same releases.
    again = run(args)
    assert again.returncode == 0, again.stderr
    assert "validate_structure v1 (unchanged)" in again.stderr
    assert LocalArchive(archive).features("find_pockets").rows[0].record_id == "good"


def test_osa_test_failures_are_clear(sample_installed, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    empty = run(
        [script("osa"), "test", "--convention", TITLE, "--records", str(tmp_path / "empty.jsonl")]
    )
    assert empty.returncode == 1
    assert "0 record(s)" in empty.stderr

    no_ingester = run([script("osa"), "test", "--convention", TITLE])
    assert no_ingester.returncode == 1
    assert "has no ingester" in no_ingester.stderr
    assert "hint: Pass --records" in no_ingester.stderr

    unknown = run([script("osa"), "test", "--convention", "Nope"])
    assert unknown.returncode == 1
    assert "no convention titled 'Nope' (registered: 'Protein Structures')" in unknown.stderr

    (tmp_path / "bad.jsonl").write_text('{"metadata": {}}\n')
    bad = run(
        [script("osa"), "test", "--convention", TITLE, "--records", str(tmp_path / "bad.jsonl")]
    )
    assert bad.returncode == 1
    assert "bad.jsonl:1: a record needs a string `id`" in bad.stderr


def test_manifest_process_flag_gives_deployable_bodies(sample_installed, tmp_path):
    proc = run([script("osa"), "manifest", "--process"])
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    body = next(c for c in document["conventions"] if c["title"] == TITLE)
    assert all(
        h["release"]["command"][1:] == ["-m", "osa.runtime.entrypoint"] for h in body["hooks"]
    )
    deployed = LocalArchive(tmp_path / "archive").deploy(body)
    assert [r.version for r in deployed.releases] == [1, 1]


def test_hook_logs_start_without_a_runpy_warning(structures, tmp_path):
    archive = LocalArchive(tmp_path / "archive")
    slug = archive.deploy_convention(structures).slug
    # Invalid metadata: the record errors, so the hook run keeps its log.
    result = archive.validate(slug, [{"id": "r1", "metadata": {}}])
    assert result.verdict("r1").verdict == "errored"
    hook_run = result.steps[0].hook_run_id
    assert hook_run is not None
    log = archive.hook_log(hook_run)
    assert "HOOK START hook=validate_structure" in log
    assert "RuntimeWarning" not in log


def in_process_convention(*hooks, title="Local Only") -> Any:
    """Registers a convention defined in this module (no entry point) and returns it."""
    convention(
        title=title,
        description="a convention defined in the test module",
        version="1.0.0",
        schema=structures_schema(),
        files={"accepted_types": [".cif"], "max_count": 1, "max_file_size": 1024},
        hooks=list(hooks),
        purpose="Nothing",
        examples=[Example(question="q1?", query="q", interpretation="i")],
        example_questions=["q2?", "q3?"],
    )
    return _registry.conventions()[-1]


def structures_schema() -> type:
    from osa_sample.convention import PDBStructure

    return PDBStructure


def test_a_hook_the_hook_process_cannot_find_is_refused_at_deploy(sample_installed, tmp_path):
    @osa_hook
    def local_check(record: Record[Any]) -> None: ...

    conv = in_process_convention(local_check)
    archive = LocalArchive(tmp_path / "archive")
    message = (
        r"hook 'local_check' \(test_local_engine\..*local_check\) cannot run as a local "
        r"process: the hook process finds hooks only through the `osa.conventions` entry "
        r"points, and none of them registers it"
    )
    with pytest.raises(DeployError, match=message) as refused:
        archive.deploy_convention(conv)
    assert "osa.conventions" in (refused.value.hint or "")
    with pytest.raises(DeployError, match=message):
        local_payload(conv)
    assert archive.conventions() == []


def test_a_hook_shadowed_by_an_entry_point_hook_is_refused(sample_installed, tmp_path):
    # The hook process would run the sample package's hook of the same name.
    @osa_hook
    def validate_structure(record: Record[Any]) -> None: ...

    conv = in_process_convention(validate_structure)
    with pytest.raises(
        DeployError,
        match=r"the hook process would run osa_sample\.convention\.validate_structure",
    ):
        LocalArchive(tmp_path / "archive").deploy_convention(conv)


def test_records_file_lines_end_at_newlines_only(tmp_path):
    # JSON strings may hold U+2028, U+2029 and U+0085 unescaped.
    label = "a\u2028b\u2029c\x85d"
    path = tmp_path / "records.jsonl"
    path.write_text(
        json.dumps({"id": "r1", "metadata": {"label": label}}, ensure_ascii=False)
        + "\r\n\n"
        + json.dumps({"id": "r2", "metadata": {}})
        + "\n",
        encoding="utf-8",
    )
    assert "\u2028" in path.read_text(encoding="utf-8")
    records = records_from_file(path, None, None)
    assert [(r["id"], r["metadata"]) for r in records] == [
        ("r1", {"label": label}),
        ("r2", {}),
    ]


def test_a_records_file_that_is_not_utf8_is_a_clean_error(tmp_path):
    from osa.cli.local_test import TestCommandError

    path = tmp_path / "records.jsonl"
    path.write_bytes(b'{"id": "r\xff1", "metadata": {}}\n')
    with pytest.raises(TestCommandError, match="is not UTF-8 text"):
        records_from_file(path, None, None)


def test_a_title_without_a_slug_hides_no_other_convention(sample_installed, capsys):
    import osa_sample.convention

    in_process_convention(title="结构")  # no ASCII letters or digits: no slug
    # Registered after the one without a slug.
    importlib.reload(osa_sample.convention)
    structures = _registry.conventions()[-1]
    assert find_convention(TITLE) is structures
    assert find_convention("protein-structures") is structures
    with pytest.raises(DeployError, match=r"convention '结构' cannot be deployed: .*slug"):
        find_convention("结构")
    with pytest.raises(DeployError, match="no convention titled 'nope'"):
        find_convention("nope")
    # `osa test` reports it as an error, without a traceback.
    assert cli_main(["test", "--convention", "结构"]) == 1
    err = capsys.readouterr().err
    assert "error: convention '结构' cannot be deployed" in err
    assert "Traceback" not in err
