#!/usr/bin/env python3
"""Points the webhook configurations rendered from deploy/ at a webhook on a loopback URL.

Reads the `kubectl kustomize` output (a YAML stream) on stdin and writes it to stdout with, in
every entry of every Mutating- or ValidatingWebhookConfiguration, `clientConfig.service` replaced
by `clientConfig.url` (BASE + the service's path) and `caBundle` set to the given CA. Everything
else is kept as rendered, so the API server gets the manifests users apply, however many entries
they have; with --webhooks-only, the webhook configurations alone. Fails when there is no
webhook configuration, or an entry has no service to replace (the manifests changed shape: this
script must follow).

Usage: register.py [--webhooks-only] BASE_URL CA_FILE < rendered.yaml > registered.yaml
"""
import base64
import sys

import yaml

WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def point_at(doc, base_url, ca_bundle):
    """Rewrites one webhook configuration in place; returns the number of entries."""
    name = doc.get("metadata", {}).get("name", "?")
    entries = doc.get("webhooks") or []
    if not entries:
        raise SystemExit(f"register.py: {doc['kind']} {name} has no webhooks")
    for entry in entries:
        config = entry.get("clientConfig") or {}
        service = config.pop("service", None)
        if service is None:
            raise SystemExit(
                f"register.py: entry {entry.get('name')} of {name} has no clientConfig.service")
        config["url"] = base_url.rstrip("/") + service.get("path", "/")
        config["caBundle"] = ca_bundle
        entry["clientConfig"] = config
    return len(entries)


def main():
    args = sys.argv[1:]
    webhooks_only = bool(args) and args[0] == "--webhooks-only"
    if webhooks_only:
        args = args[1:]
    if len(args) != 2:
        raise SystemExit("usage: register.py [--webhooks-only] BASE_URL CA_FILE < rendered.yaml")
    base_url, ca_file = args
    with open(ca_file, "rb") as f:
        ca_bundle = base64.b64encode(f.read()).decode("ascii")
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d is not None]
    configs = [d for d in docs if d.get("kind") in WEBHOOK_KINDS]
    if not configs:
        raise SystemExit("register.py: the rendered manifests hold no webhook configuration")
    entries = sum(point_at(d, base_url, ca_bundle) for d in configs)
    yaml.safe_dump_all(configs if webhooks_only else docs, sys.stdout, sort_keys=False)
    print(f"register.py: {len(configs)} webhook configuration(s), {entries} entries -> "
          f"{base_url}", file=sys.stderr)


if __name__ == "__main__":
    main()
