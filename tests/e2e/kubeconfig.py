#!/usr/bin/env python3
"""Writes users' kubeconfigs for the end-to-end suite, for the cluster of the admin's one.

  kubeconfig.py token ADMIN_KUBECONFIG DIR NAME=TOKEN...
      DIR/NAME.kubeconfig authenticating with a bearer TOKEN (the static token file's users,
      and service account tokens)
  kubeconfig.py impersonate ADMIN_KUBECONFIG DIR NAME=GROUP,GROUP...
      DIR/NAME.kubeconfig with the admin's credentials acting as user NAME in the GROUPs
      (impersonation: on a cluster the suite did not start it cannot add users, but an admin
      may act as any; the API server authorises and admits the request as that user)

ADMIN_KUBECONFIG must hold one cluster, one user and one context (`kubectl config view --raw
--minify --flatten`). Files are written with mode 0600: they hold credentials.
"""
import os
import sys

import yaml


def kubeconfig(cluster, name, user):
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": name}}],
        "current-context": "e2e",
    }


def main(argv):
    if len(argv) < 5 or argv[1] not in ("token", "impersonate"):
        raise SystemExit(__doc__)
    mode, admin_path, directory = argv[1:4]
    with open(admin_path, encoding="utf-8") as f:
        admin = yaml.safe_load(f)
    cluster = admin["clusters"][0]["cluster"]
    for spec in argv[4:]:
        name, sep, value = spec.partition("=")
        if not name or not sep:
            raise SystemExit(f"kubeconfig.py: expected NAME=VALUE, got {spec!r}")
        if mode == "token":
            user = {"token": value}
        else:
            user = dict(admin["users"][0]["user"])
            user["as"] = name
            user["as-groups"] = [g for g in value.split(",") if g]
        path = os.path.join(directory, name + ".kubeconfig")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(kubeconfig(cluster, name, user), f, sort_keys=False)


if __name__ == "__main__":
    main(sys.argv)
