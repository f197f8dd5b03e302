#!/usr/bin/env python3
"""Keeps the operator documentation true to the binaries: every flag `twostep-webhook --help`
prints is in docs/operations.md, every metric and decision reason the server exports is in its
metrics table, and every `twostep-enroll` command and audit operation is in docs/admin-guide.md.

usage: docs_test.py REPO_ROOT WEBHOOK_BINARY ENROLL_BINARY
"""
import re
import subprocess
import sys


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def help_text(binary):
    result = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        sys.exit(f"{binary} --help exited {result.returncode}: {result.stderr}")
    return result.stdout


def main():
    root, webhook, enroll = sys.argv[1:4]
    operations = read(f"{root}/docs/operations.md")
    admin_guide = read(f"{root}/docs/admin-guide.md")
    problems = []

    flags = set(re.findall(r"^(?:-\w, )?--([a-z][a-z0-9-]*)", help_text(webhook), re.M))
    flags -= {"help", "version"}
    if len(flags) < 20:
        problems.append(f"found only {len(flags)} flags in twostep-webhook --help: {sorted(flags)}")
    for flag in sorted(flags):
        if f"`--{flag}`" not in operations:
            problems.append(f"docs/operations.md does not describe --{flag}")

    metrics = set(re.findall(r'\.Name\("(twostep_\w+)"\)', read(f"{root}/src/http/Metrics.cpp")))
    if len(metrics) < 10:
        problems.append(f"found only {len(metrics)} metrics in src/http/Metrics.cpp")
    for metric in sorted(metrics):
        if f"`{metric}" not in operations:
            problems.append(f"docs/operations.md does not describe the metric {metric}")

    # The reason ids, as `reasonId` spells them, against the row of the decision counter.
    decision = read(f"{root}/src/core/Decision.cpp")
    reasons = set(re.findall(r'case Reason::\w+:\s*return "(\w+)";', decision))
    row = next((line for line in operations.splitlines()
                if line.startswith("| `twostep_admission_requests_total")), "")
    if len(reasons) < 15:
        problems.append(f"found only {len(reasons)} reason ids in src/core/Decision.cpp")
    for reason in sorted(reasons):
        if f"`{reason}`" not in row:
            problems.append(f"the metrics table of docs/operations.md omits the reason {reason}")

    usage = help_text(enroll)
    commands_block = usage.split("commands:", 1)[1].split("\n\n", 1)[0]
    commands = re.findall(r"^  ([a-z][a-z-]*)\s", commands_block, re.M)
    if len(commands) < 10:
        problems.append(f"found only {len(commands)} commands in twostep-enroll --help")
    headings = [line for line in admin_guide.splitlines() if line.startswith("## ")]
    for command in commands:
        if not any(re.search(rf"(^## |\s){re.escape(command)}(\s|$)", h) for h in headings):
            problems.append(f"docs/admin-guide.md has no section for `twostep-enroll {command}`")

    # Every action the CLI records in the audit log: the third argument of each recordAdmin
    # call, a literal or a choice of literals (force && existing ? "replace" : "add").
    source = read(f"{root}/enroll/Commands.cpp")
    actions = set()
    for action in re.findall(r"recordAdmin\([^,()]+,[^,()]+,([^,]+),", source):
        actions.update(re.findall(r'"([a-z-]+)"', action))
    if len(actions) < 10:
        problems.append(f"found only {len(actions)} audit actions in enroll/Commands.cpp")
    for action in sorted(actions):
        if f"`enroll:{action}`" not in admin_guide:
            problems.append(f"docs/admin-guide.md does not list the audit operation enroll:{action}")

    print(f"checked {len(flags)} flags, {len(metrics)} metrics, {len(reasons)} reasons, "
          f"{len(commands)} commands, {len(actions)} audit actions")
    if problems:
        print("\n".join(problems))
        sys.exit(1)


if __name__ == "__main__":
    main()
