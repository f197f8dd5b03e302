#!/usr/bin/env python3
"""Writes the benchmark's AdmissionReview template (about 4.6 KB) from a real fixture.

The base is tests/data/0004 (a Deployment CREATE that kube-apiserver sent). It is made to look
like what `kubectl apply` of an ordinary production Deployment produces: a container with ports,
env, resources and a readiness probe, and the kubectl.kubernetes.io/last-applied-configuration
annotation that repeats the manifest (token included). The load generator replaces three
placeholders per request: @USER@ (userInfo.username), @CODE@ (the token annotation, in the
object and inside last-applied-configuration) and @UID@ (request.uid).

Usage: bench/make-review.py [FIXTURE] > bench/review-4.6k.json
"""
import copy
import json
import sys

fixture = sys.argv[1] if len(sys.argv) > 1 else "tests/data/0004-CREATE-deployments-demo-ok.json"
review = json.load(open(fixture))
request = review["request"]
request["uid"] = "@UID@"
request["name"] = "checkout"
request["namespace"] = "shop"
request["userInfo"] = {"username": "@USER@", "uid": "0b6c7e3e-1b64-4c1e-9d3a-5a2f0f7f9e21",
                       "groups": ["developers", "system:authenticated"],
                       "extra": {"authentication.kubernetes.io/credential-id": ["X509SHA256=5f4c2a"]}}
request["options"]["fieldManager"] = "kubectl-client-side-apply"

obj = request["object"]
meta = obj["metadata"]
meta["name"] = "checkout"
meta["namespace"] = "shop"
meta["labels"] = {"app": "checkout", "tier": "web", "team": "payments"}
meta["annotations"] = {"twostep.dev/token": "@CODE@"}

app = {
    "name": "checkout",
    "image": "registry.example.com/shop/checkout:1.42.3",
    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
    "env": [{"name": "LOG_LEVEL", "value": "info"},
            {"name": "DB_HOST", "value": "postgres.shop.svc.cluster.local"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                           "fieldPath": "metadata.name"}}}],
    "resources": {"limits": {"cpu": "500m", "memory": "256Mi"},
                  "requests": {"cpu": "100m", "memory": "128Mi"}},
    "readinessProbe": {"httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"},
                       "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1,
                       "failureThreshold": 3},
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
    "imagePullPolicy": "IfNotPresent",
}
spec = obj["spec"]
spec["replicas"] = 3
spec["selector"] = {"matchLabels": {"app": "checkout"}}
template = spec["template"]
template["metadata"]["labels"] = {"app": "checkout", "tier": "web"}
template["spec"]["containers"] = [app]

# What the user applied, as kubectl stores it (compact JSON plus a newline).
applied = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"annotations": {"twostep.dev/token": "@CODE@"},
                        "labels": copy.deepcopy(meta["labels"]),
                        "name": "checkout", "namespace": "shop"},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "checkout"}},
                    "template": {"metadata": {"labels": {"app": "checkout", "tier": "web"}},
                                 "spec": {"containers": [
                                     {k: app[k] for k in ("name", "image", "ports", "env",
                                                          "resources", "readinessProbe")}]}}}}
meta["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = (
    json.dumps(applied, separators=(",", ":"), sort_keys=True) + "\n")

fields = meta["managedFields"][0]
fields["manager"] = "kubectl-client-side-apply"
fields["fieldsV1"]["f:metadata"]["f:annotations"]["f:kubectl.kubernetes.io/last-applied-configuration"] = {}
fields["fieldsV1"]["f:metadata"]["f:labels"]["f:team"] = {}
fields["fieldsV1"]["f:metadata"]["f:labels"]["f:tier"] = {}
container = fields["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
container.clear()
container['k:{"name":"checkout"}'] = {
    ".": {}, "f:env": {".": {}, 'k:{"name":"DB_HOST"}': {".": {}, "f:name": {}, "f:value": {}},
                       'k:{"name":"LOG_LEVEL"}': {".": {}, "f:name": {}, "f:value": {}},
                       'k:{"name":"POD_NAME"}': {".": {}, "f:name": {}, "f:valueFrom": {}}},
    "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
    "f:ports": {".": {}, 'k:{"containerPort":8080,"protocol":"TCP"}': {}},
    "f:readinessProbe": {}, "f:resources": {}, "f:terminationMessagePath": {},
    "f:terminationMessagePolicy": {}}

sys.stdout.write(json.dumps(review, separators=(",", ":")))
