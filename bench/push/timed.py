#!/usr/bin/env python3
"""Timing helpers for bench/push/run.sh.

  timed.py push LOG -- git push ...   runs the command, writes `START <t>`, then `<t> <line>`
                                      for each line of its stderr (and stdout) as it arrives,
                                      then `EXIT <t> <status>` to LOG; exits with its status.
  timed.py phases LOG SERVED          prints receive build slug release boot total (seconds)
                                      from LOG and SERVED (epoch seconds of the first good answer).
  timed.py lines LOG                  prints each line with seconds since the push started.
  timed.py runner LOG RUNNER_LOG APP SERVED
                                      prints, from the runner's log, when (seconds since the push
                                      started) the build dyno started, and how the boot phase splits:
                                      the runner sees the release, builds the slug image, starts
                                      the web dyno, which then answers through the router.
"""
from datetime import datetime
import subprocess
import sys
import time


def push(log_path, command):
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"START {time.time():.6f}\n")
        log.flush()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for raw in iter(child.stdout.readline, b""):
            now = time.time()
            # git ends progress lines with \r; keep the last part of each.
            line = raw.decode("utf-8", "replace").rstrip("\n").split("\r")[-1]
            log.write(f"{now:.6f} {line}\n")
            log.flush()
        status = child.wait()
        log.write(f"EXIT {time.time():.6f} {status}\n")
    return status


def read(log_path):
    start = end = None
    lines = []
    with open(log_path, encoding="utf-8") as log:
        for entry in log:
            entry = entry.rstrip("\n")
            if entry.startswith("START "):
                start = float(entry.split()[1])
            elif entry.startswith("EXIT "):
                end = float(entry.split()[1])
            else:
                t, _, text = entry.partition(" ")
                lines.append((float(t), text))
    return start, end, lines


def first(lines, marker):
    for t, text in lines:
        if marker in text:
            return t
    raise SystemExit(f"`{marker}` not in the push's output")


def phases(log_path, served):
    start, end, lines = read(log_path)
    marks = [
        start,
        first(lines, "-----> Building on"),
        first(lines, "-----> Compressing..."),
        first(lines, "-----> Launching..."),
        end,
        float(served),
    ]
    spans = [b - a for a, b in zip(marks, marks[1:])]
    print(" ".join(f"{s:.2f}" for s in spans + [marks[-1] - start]))


def show(log_path):
    start, end, lines = read(log_path)
    for t, text in lines:
        print(f"  +{t - start:6.2f}s  {text}")
    print(f"  +{end - start:6.2f}s  (git push exits)")


def runner(log_path, runner_log, app, served):
    start, end, _ = read(log_path)
    events = []
    with open(runner_log, encoding="utf-8", errors="replace") as log:
        for line in log:
            stamp, _, rest = line.partition(" ")
            try:
                t = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
            if t >= start:
                events.append((t, rest))

    def at(*needles):
        for t, rest in events:
            if all(n in rest for n in needles):
                return t
        return None

    builder = at("dyno started", "app=ouro-builder")
    building = at("building slug image", f"app={app} ")
    built = at("slug image built", f"app={app} ")
    web = at("dyno started", f"app={app} ", "dyno=web.")
    served = float(served)
    if None in (builder, web):
        print("  (runner log: events not found)")
        return
    parts = [f"  runner: build dyno started +{builder - start:.2f}s"]
    if building and built:
        parts.append(f"after the push: runner starts the slug image {building - end:+.2f}s, "
                     f"slug image built in {built - building:.2f}s, web dyno started +{web - built:.2f}s")
    else:
        parts.append(f"after the push: web dyno started +{web - end:.2f}s (slug image existed)")
    parts.append(f"answers +{served - web:.2f}s")
    print("; ".join(parts))


if __name__ == "__main__":
    if sys.argv[1] == "push" and sys.argv[3] == "--":
        sys.exit(push(sys.argv[2], sys.argv[4:]))
    elif sys.argv[1] == "phases":
        phases(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "runner":
        runner(*sys.argv[2:6])
    elif sys.argv[1] == "lines":
        show(sys.argv[2])
    else:
        raise SystemExit(__doc__)
