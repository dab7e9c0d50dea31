#!/usr/bin/env python3
"""Hook used by the saga's end-to-end tests (standard library only).

Config (`$OSA_IN/config.json`):

    name          label written in every row and in the side-effect log
    log           path of a side-effect log: one line "<name> <record count>" per execution
    reject_prefix records whose id starts with it are rejected
    error_prefix  records whose id starts with it get an error line
    sleep_once    path of a marker file: the first execution creates it and sleeps
                  `sleep_seconds` before writing anything (to be killed or time out)
    sleep_seconds see sleep_once (default 30)
    sleep_always  sleep `sleep_seconds` in every execution
    exit_code     exit with this code after writing nothing
    pid_file      path where the hook writes its process id when it starts
    files_log     path of a log of the record files the hook was given: one line
                  "<file name> <content>" per file
    wait_for      path of a file the hook waits for (up to 60 s) before writing
                  anything

Every other record passes with one row {"hook": name, "score": <id length>}.
"""

import json
import os
import sys
import time


def main():
    in_dir, out_dir = os.environ["OSA_IN"], os.environ["OSA_OUT"]
    config_path = os.path.join(in_dir, "config.json")
    config = {}
    if os.path.exists(config_path):
        with open(config_path) as handle:
            config = json.load(handle)
    name = config.get("name", os.environ.get("OSA_HOOK_NAME", "hook"))
    if config.get("pid_file"):
        with open(config["pid_file"] + ".tmp", "w") as handle:
            handle.write(str(os.getpid()))
        os.replace(config["pid_file"] + ".tmp", config["pid_file"])
    with open(os.path.join(in_dir, "records.jsonl")) as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    if config.get("log"):
        with open(config["log"], "a") as log:
            log.write(f"{name} {len(records)}\n")
    if config.get("files_log"):
        with open(config["files_log"], "a") as log:
            for root, _dirs, names in os.walk(os.environ["OSA_FILES"]):
                for file_name in sorted(names):
                    with open(os.path.join(root, file_name)) as handle:
                        log.write(f"{file_name} {handle.read()}\n")
    marker = config.get("sleep_once")
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(float(config.get("sleep_seconds", 30)))
    if config.get("wait_for"):
        deadline = time.monotonic() + 60
        while not os.path.exists(config["wait_for"]) and time.monotonic() < deadline:
            time.sleep(0.02)
    if config.get("sleep_always"):
        time.sleep(float(config.get("sleep_seconds", 30)))
    if config.get("exit_code") is not None:
        print(f"{name}: failing on purpose", file=sys.stderr)
        sys.exit(int(config["exit_code"]))
    reject, error = config.get("reject_prefix"), config.get("error_prefix")
    with open(os.path.join(out_dir, "features.jsonl"), "w") as features, open(
        os.path.join(out_dir, "rejections.jsonl"), "w"
    ) as rejections, open(os.path.join(out_dir, "errors.jsonl"), "w") as errors:
        for record in records:
            rid = record["id"]
            if reject and rid.startswith(reject):
                rejections.write(json.dumps({"id": rid, "reason": f"{name} rejects {rid}"}) + "\n")
            elif error and rid.startswith(error):
                errors.write(json.dumps({"id": rid, "error": f"{name} cannot read {rid}"}) + "\n")
            else:
                row = {"hook": name, "score": float(len(rid))}
                features.write(json.dumps({"id": rid, "features": [row]}) + "\n")
    print(f"{name}: {len(records)} records")


if __name__ == "__main__":
    main()
