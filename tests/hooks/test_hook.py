#!/usr/bin/env python3
"""Test hook for OSA runners: implements the hook contract with scripted behaviour.

Standard library only. The runner conformance suite (`osa_core::testing::runner`)
drives it through `$OSA_IN/config.json`; `examples/test_hook.rs` is the same hook in
Rust and both must behave identically.

Config keys (all optional):

    mode           default action for every record (default "pass"), or a batch mode:
                   "reject_batch" (progress.jsonl rejection), "big_output"
    sleep_seconds  for "sleep" (default 60)
    alloc_mb       for "alloc" (default 0)
    exit_code      for "exit" (default 1)
    port           for "net" (default 5432)
    spawn_child    a marker string: start a background child that sleeps with the
                   marker in its argv, so a test can look for leftover processes
    log_kb         write this many KiB to stdout and to stderr before working
    big_output_mb  for "big_output" (default 2)

A record's metadata may override the action (`{"action": "reject"}`) and the
parameters (`reason`, `error`, `retryable`, `alloc_mb`, `exit_code`, `sleep_seconds`),
so one batch can mix outcomes.

Actions per record: pass, reject, error, alloc, exit, sleep, net, write_outside,
files, env. Every passing record gets one row `{"label": <action>, "detail": {...}}`.
Outcome lines are flushed one by one, so outcomes written before a crash survive.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time


def record_dir_name(record_id):
    """The files directory of a record, as osa_core::contract::record_dir_name maps it."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", record_id)


def probe_write(path):
    """Tries to create `path`; removes it again when that worked."""
    try:
        with open(path, "w") as handle:
            handle.write("probe\n")
    except OSError as error:
        return "denied: " + (error.strerror or str(error))
    try:
        os.remove(path)
    except OSError:
        pass
    return "written"


def contract_env():
    """The environment the hook was started with (not Python's later additions such
    as the LC_CTYPE locale coercion)."""
    try:
        with open("/proc/self/environ", "rb") as handle:
            entries = handle.read().split(b"\0")
        pairs = (entry.decode("utf-8", "replace").split("=", 1) for entry in entries if entry)
        return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}
    except OSError:
        return dict(os.environ)


class Outputs:
    def __init__(self, out_dir):
        self.files = {}
        self.out_dir = out_dir

    def write(self, name, obj):
        handle = self.files.get(name)
        if handle is None:
            handle = open(os.path.join(self.out_dir, name), "a")
            self.files[name] = handle
        handle.write(json.dumps(obj) + "\n")
        handle.flush()

    def passed(self, record_id, label, detail):
        row = {"label": label, "detail": detail}
        self.write("features.jsonl", {"id": record_id, "features": [row]})


def param(metadata, config, key, default):
    return metadata.get(key, config.get(key, default))


def run_action(action, record, config, out, env):
    record_id = record["id"]
    metadata = record.get("metadata") or {}
    if action == "pass":
        out.passed(record_id, "pass", {"record": record_id})
    elif action == "reject":
        reason = metadata.get("reason", "rejected by the test hook")
        out.write("rejections.jsonl", {"id": record_id, "reason": reason})
    elif action == "error":
        out.write(
            "errors.jsonl",
            {
                "id": record_id,
                "error": metadata.get("error", "test hook error"),
                "retryable": bool(metadata.get("retryable", False)),
            },
        )
    elif action == "alloc":
        mb = int(param(metadata, config, "alloc_mb", 0))
        # Non-zero bytes: every page is written, so the memory is really used.
        data = b"\x01" * (mb << 20)
        out.passed(record_id, "alloc", {"alloc_mb": mb, "last": data[-1] if data else 0})
        del data
    elif action == "exit":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(param(metadata, config, "exit_code", 1)))
    elif action == "sleep":
        time.sleep(float(param(metadata, config, "sleep_seconds", 60)))
        out.passed(record_id, "sleep", {"record": record_id})
    elif action == "net":
        port = int(config.get("port", 5432))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                result, error = "connected", None
        except OSError as e:
            result, error = "blocked", e.strerror or str(e)
        out.passed(record_id, "net", {"net": result, "error": error, "port": port})
    elif action == "write_outside":
        tag = ".osa-write-probe-%d" % os.getpid()
        detail = {
            "in": probe_write(os.path.join(env["OSA_IN"], tag)),
            "files": probe_write(os.path.join(env["OSA_FILES"], tag)),
            "usr": probe_write(os.path.join("/usr", tag)),
            "home_parent": probe_write(os.path.join(env.get("HOME", "/nonexistent"), "..", tag)),
            "out": probe_write(os.path.join(env["OSA_OUT"], tag)),
        }
        out.passed(record_id, "write_outside", detail)
    elif action == "files":
        name = record_dir_name(record_id)
        directory = os.path.join(env["OSA_FILES"], name)
        try:
            listing = {
                entry: os.path.getsize(os.path.join(directory, entry))
                for entry in sorted(os.listdir(directory))
            }
        except OSError as e:
            listing = {"<error>": e.strerror or str(e)}
        write = probe_write(os.path.join(directory, ".osa-write-probe"))
        out.passed(record_id, "files", {"dir": name, "files": listing, "write": write})
    elif action == "env":
        out.passed(record_id, "env", {"env": env})
    else:
        error = "unknown test action " + repr(action)
        out.write("errors.jsonl", {"id": record_id, "error": error, "retryable": False})


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--sleeper":
        time.sleep(float(sys.argv[3]))
        return 0
    env = contract_env()
    in_dir, out_dir = env["OSA_IN"], env["OSA_OUT"]
    config = {}
    config_path = os.path.join(in_dir, "config.json")
    if os.path.exists(config_path):
        with open(config_path) as handle:
            config = json.load(handle)
    mode = config.get("mode", "pass")

    log_kb = int(config.get("log_kb", 0))
    if log_kb:
        line = "x" * 1023 + "\n"
        sys.stdout.write("stdout-start\n" + line * log_kb)
        sys.stderr.write("stderr-start\n" + line * log_kb)
        sys.stdout.flush()
        sys.stderr.flush()

    marker = config.get("spawn_child")
    if marker:
        # Inherits stdout/stderr on purpose: the runner must not wait for it to close them.
        subprocess.Popen([sys.executable, os.path.abspath(__file__), "--sleeper", marker, "300"])

    with open(os.path.join(in_dir, "records.jsonl")) as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    out = Outputs(out_dir)

    if mode == "reject_batch":
        reason = config.get("reason", "batch rejected by the test hook")
        out.write("progress.jsonl", {"step": "check", "status": "rejected", "message": reason})
        return 0
    if mode == "big_output":
        size = int(config.get("big_output_mb", 2)) << 20
        first_id = records[0]["id"] if records else "x"
        row = {"label": "big", "detail": {"pad": "y" * (1 << 16)}}
        line = json.dumps({"id": first_id, "features": [row]}) + "\n"
        with open(os.path.join(out_dir, "features.jsonl"), "w") as handle:
            written = 0
            while written < size:
                handle.write(line)
                written += len(line)
        return 0

    for record in records:
        metadata = record.get("metadata") or {}
        run_action(metadata.get("action", mode), record, config, out, env)
    out.write("progress.jsonl", {"step": "done", "status": "completed"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
