#!/usr/bin/env python3
"""Renders a deploy/ overlay (or a composition of components) with `kubectl kustomize` and checks
what a cluster admin relies on: the kinds, the webhook entries (own namespace unselectable,
sideEffects, failurePolicy, timeouts, review versions, the Namespace and unlock entries, never
mutating and validating for the same resources), the pod's hardening, probes and resources, the
PDB, the NetworkPolicy, and what each component adds (cert-manager, generated-certs, grants,
legacy, ha, validating, and the deprecated empty match-conditions).

Usage:
  manifests_test.py SOURCE_DIR overlay NAME          render deploy/overlays/NAME
  manifests_test.py SOURCE_DIR compose COMP[,COMP]   render deploy/base plus these components
                                                     ("base": no component)
  (generated-certs is rendered in a copy of deploy/ after certs/generate.sh --no-apply.)
kubectl must be on PATH (scripts/install-kubectl.sh installs it): without it the test fails.
"""

import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

NAMESPACE = "twostep-system"
ENFORCE_LABEL = "twostep.dev/enforce"
NAME_LABEL = "kubernetes.io/metadata.name"
WEBHOOK_NAMES = ["objects.twostep.dev", "namespaces.twostep.dev", "unlock.twostep.dev"]
SERVICE_DNS = [
    "twostep-webhook",
    "twostep-webhook.twostep-system",
    "twostep-webhook.twostep-system.svc",
    "twostep-webhook.twostep-system.svc.cluster.local",
]
# (apiGroup, resource) pairs the objects entry must cover for CREATE and UPDATE.
PROTECTED = [
    ("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"),
    ("apps", "replicasets"), ("batch", "jobs"), ("batch", "cronjobs"), ("", "pods"),
    ("", "configmaps"), ("", "secrets"), ("", "services"), ("", "serviceaccounts"),
    ("networking.k8s.io", "ingresses"), ("networking.k8s.io", "networkpolicies"),
    ("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "rolebindings"),
]
CONNECT_SUBRESOURCES = ["pods/exec", "pods/attach", "pods/portforward"]
COMPONENTS = {"validating", "grants", "legacy", "match-conditions", "cert-manager",
              "generated-certs", "ha"}
# The value of the enforcement label that means "on" (the server's --enforce-value default).
ENFORCED = "enabled"


class Checks:
    def __init__(self, title):
        self.title = title
        self.passed = 0
        self.failed = 0

    def check(self, condition, message):
        if condition:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {message}")
        return bool(condition)

    def finish(self):
        print(f"{self.title}: {self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 and self.passed > 0 else 1


def kubectl():
    path = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not path:
        print("FAIL: kubectl is not on PATH; scripts/install-deps.sh test installs it "
              "(scripts/install-kubectl.sh)")
        sys.exit(1)
    return path


def render(directory):
    result = subprocess.run([kubectl(), "kustomize", directory], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        print(f"FAIL: kubectl kustomize {directory} failed:\n{result.stderr}")
        sys.exit(1)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def components_of(kustomization_dir):
    with open(os.path.join(kustomization_dir, "kustomization.yaml"), encoding="utf-8") as f:
        k = yaml.safe_load(f)
    return {os.path.basename(os.path.normpath(c)) for c in k.get("components", [])}


# ---- label selectors (the API server's semantics for namespaceSelector) ----

def selector_matches(selector, labels):
    if selector is None:
        return True  # an absent selector matches everything
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def namespace_labels(name, enforce):
    # The API server always sets kubernetes.io/metadata.name to the name; users cannot change it.
    labels = {NAME_LABEL: name}
    if enforce:
        labels[ENFORCE_LABEL] = "enabled"
    return labels


def selector_mentions(selector, key):
    if not selector:
        return False
    return key in (selector.get("matchLabels") or {}) or any(
        e.get("key") == key for e in selector.get("matchExpressions") or [])


# ---- quantities ----

def cpu_millis(q):
    q = str(q)
    return float(q[:-1]) if q.endswith("m") else float(q) * 1000


def mem_bytes(q):
    q = str(q)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return float(q[:-len(suffix)]) * factor
    return float(q)


# ---- the checks ----

def rule_covers(rules, group, resource, operation):
    for rule in rules:
        if (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", [])) and \
                resource in rule.get("resources", []) and \
                (operation in rule.get("operations", []) or "*" in rule.get("operations", [])):
            return True
    return False


def covered_triples(webhook):
    out = set()
    for rule in webhook.get("rules", []):
        for g in rule.get("apiGroups", []):
            for r in rule.get("resources", []):
                for op in rule.get("operations", []):
                    out.add((g, r, op))
    return out


def exemption_defaults(source):
    """The server's default exemptions, read from core::PolicyConfig."""
    with open(os.path.join(source, "src/core/Policy.hpp"), encoding="utf-8") as f:
        text = f.read()
    users = re.search(r"exemptUsers\s*=\s*\{([^}]*)\}", text)
    groups = re.search(r"exemptGroups\s*=\s*\{([^}]*)\}", text)
    return (re.findall(r'"([^"]*)"', users.group(1)) if users else [],
            re.findall(r'"([^"]*)"', groups.group(1)) if groups else [])


def check_webhooks(c, docs, comps, source):
    kinds = [d["kind"] for d in docs]
    want = "ValidatingWebhookConfiguration" if "validating" in comps else \
        "MutatingWebhookConfiguration"
    other = "MutatingWebhookConfiguration" if want.startswith("Validating") else \
        "ValidatingWebhookConfiguration"
    c.check(kinds.count(want) == 1, f"exactly one {want}, found {kinds.count(want)}")
    c.check(kinds.count(other) == 0,
            f"no {other} next to the {want}: never both for the same resources")
    configs = [d for d in docs if d["kind"] in (want, other)]
    # Never mutating and validating for the same (group, resource, operation).
    by_kind = {}
    for cfg in configs:
        for wh in cfg.get("webhooks", []):
            by_kind.setdefault(cfg["kind"], set()).update(covered_triples(wh))
    if len(by_kind) == 2:
        both = by_kind[want] & by_kind[other]
        c.check(not both, f"resources sent to both a mutating and a validating webhook: {both}")
    cfg = next((d for d in docs if d["kind"] == want), None)
    if cfg is None:
        return
    c.check(cfg["metadata"]["name"] == "twostep", "the webhook configuration is named twostep")
    webhooks = cfg.get("webhooks", [])
    c.check([w["name"] for w in webhooks] == WEBHOOK_NAMES,
            f"webhook entries {WEBHOOK_NAMES} in this order (overlays patch by index), "
            f"found {[w['name'] for w in webhooks]}")
    path = "/validate" if want.startswith("Validating") else "/mutate"
    annotations = cfg["metadata"].get("annotations") or {}
    legacy = "legacy" in comps
    for wh in webhooks:
        n = wh["name"]
        c.check(wh.get("sideEffects") == "NoneOnDryRun", f"{n}: sideEffects NoneOnDryRun")
        # Legacy sends every SelfSubjectAccessReview in the cluster to the unlock entry: it fails
        # open there (a missed unlock opens no grant). Everything else fails closed.
        policy = "Ignore" if legacy and n == "unlock.twostep.dev" else "Fail"
        c.check(wh.get("failurePolicy") == policy, f"{n}: failurePolicy {policy}")
        t = wh.get("timeoutSeconds")
        c.check(isinstance(t, int) and 1 <= t <= 10, f"{n}: timeoutSeconds in 1..10, got {t}")
        c.check(wh.get("admissionReviewVersions") == ["v1", "v1beta1"],
                f"{n}: admissionReviewVersions [v1, v1beta1]")
        svc = (wh.get("clientConfig") or {}).get("service") or {}
        c.check("url" not in (wh.get("clientConfig") or {}), f"{n}: calls the Service, not a URL")
        c.check(svc.get("name") == "twostep-webhook" and svc.get("namespace") == NAMESPACE and
                svc.get("port") == 443, f"{n}: calls twostep-webhook.{NAMESPACE}:443, got {svc}")
        c.check(svc.get("path") == path, f"{n}: path {path} on a {want}, got {svc.get('path')}")
        if want.startswith("Validating"):
            c.check("reinvocationPolicy" not in wh, f"{n}: no reinvocationPolicy on validating")
        # The webhook's own namespace (and kube-system) can never be selected, even if labelled.
        namespaced = any(r.get("scope") in ("Namespaced", "*", None) for r in wh.get("rules", []))
        is_ns_entry = any("namespaces" in r.get("resources", []) for r in wh.get("rules", []))
        if namespaced or is_ns_entry:
            for ns in (NAMESPACE, "kube-system"):
                c.check(not selector_matches(wh.get("namespaceSelector"), namespace_labels(ns, True)),
                        f"{n}: the namespaceSelector must never select {ns}, even labelled")
        ca = (wh.get("clientConfig") or {}).get("caBundle")
        if "generated-certs" in comps:
            c.check(bool(ca), f"{n}: caBundle set by generated-certs")
            if ca:
                pem = base64.b64decode(ca).decode()
                c.check("-----BEGIN CERTIFICATE-----" in pem, f"{n}: caBundle is a PEM certificate")
        else:
            c.check(not ca, f"{n}: no caBundle without generated-certs")
    if "cert-manager" in comps:
        c.check(annotations.get("cert-manager.io/inject-ca-from") ==
                f"{NAMESPACE}/twostep-webhook", "cert-manager.io/inject-ca-from names the Certificate")
    else:
        c.check("cert-manager.io/inject-ca-from" not in annotations,
                "no cainjector annotation without cert-manager")
    if len(webhooks) != 3:
        return
    objects, namespaces, unlock = webhooks

    # 0: objects in enforced namespaces.
    sel = objects.get("namespaceSelector") or {}
    c.check((sel.get("matchLabels") or {}).get(ENFORCE_LABEL) == "enabled",
            f"objects: namespaceSelector matchLabels {ENFORCE_LABEL}=enabled")
    c.check(selector_matches(sel, namespace_labels("team-a", True)),
            "objects: selects an enforced namespace")
    c.check(not selector_matches(sel, namespace_labels("team-a", False)),
            "objects: skips a namespace without the label")
    c.check(not objects.get("objectSelector"), "objects: no objectSelector (a user could dodge it)")
    for group, resource in PROTECTED:
        for op in ("CREATE", "UPDATE"):
            c.check(rule_covers(objects.get("rules", []), group, resource, op),
                    f"objects: covers {op} {group or 'core'}/{resource}")
    c.check(all(r.get("scope") == "Namespaced" for r in objects.get("rules", [])),
            "objects: every rule is scope Namespaced (the selector applies)")
    grants = "grants" in comps
    for group, resource in PROTECTED:
        c.check(rule_covers(objects["rules"], group, resource, "DELETE") == grants,
                f"objects: DELETE {group or 'core'}/{resource} {'covered' if grants else 'not covered'}"
                f" {'with' if grants else 'without'} the grants component")
    for sub in CONNECT_SUBRESOURCES:
        c.check(rule_covers(objects["rules"], "", sub, "CONNECT") == grants,
                f"objects: CONNECT {sub} {'covered' if grants else 'not covered'}")

    # 1: Namespace UPDATE and DELETE, not scoped by the enforcement label.
    c.check(rule_covers(namespaces.get("rules", []), "", "namespaces", "UPDATE") and
            rule_covers(namespaces.get("rules", []), "", "namespaces", "DELETE"),
            "namespaces: covers Namespace UPDATE and DELETE")
    c.check(all(r.get("scope") == "Cluster" for r in namespaces.get("rules", [])),
            "namespaces: scope Cluster")
    c.check(not selector_mentions(namespaces.get("namespaceSelector"), ENFORCE_LABEL),
            "namespaces: the namespaceSelector does not depend on the enforcement label")
    c.check(not namespaces.get("objectSelector"), "namespaces: no objectSelector")
    for enforce in (True, False):
        c.check(selector_matches(namespaces.get("namespaceSelector"),
                                 namespace_labels("team-a", enforce)),
                f"namespaces: sends team-a {'with' if enforce else 'without'} the label")

    # 2: the unlock SelfSubjectAccessReview.
    rules = unlock.get("rules", [])
    c.check(len(rules) == 1 and rules[0].get("apiGroups") == ["authorization.k8s.io"] and
            rules[0].get("apiVersions") == ["v1"] and
            rules[0].get("resources") == ["selfsubjectaccessreviews"] and
            rules[0].get("operations") == ["CREATE"] and rules[0].get("scope") == "Cluster",
            f"unlock: exactly SelfSubjectAccessReview v1 CREATE, scope Cluster; got {rules}")

    # matchConditions (the default; legacy has none): mirror the server's default exemptions
    # (src/core/Policy.hpp).
    mc = not legacy
    users, groups = exemption_defaults(source)
    c.check(users and groups, "read the default exemptions from src/core/Policy.hpp")
    for wh in webhooks:
        conds = wh.get("matchConditions") or []
        c.check(bool(conds) == mc, f"{wh['name']}: matchConditions unless legacy")
        if not mc:
            continue
        text = " ".join(x["expression"] for x in conds)
        for glob in users:
            form = (f"startsWith('{glob[:-1]}')" if glob.endswith("*") and glob.count("*") == 1
                    else f"!= '{glob}'")
            c.check(form in text, f"{wh['name']}: a condition skips exempt user {glob} ({form})")
        for group in groups:
            c.check(f"'{group}' in request.userInfo.groups" in text,
                    f"{wh['name']}: a condition skips exempt group {group}")
        names = [x["name"] for x in conds]
        c.check(len(names) == len(set(names)), f"{wh['name']}: unique condition names")
    if mc:
        text = " ".join(x["expression"] for x in unlock.get("matchConditions") or [])
        c.check("object.spec.nonResourceAttributes.path.startsWith('/twostep.dev/')" in text,
                "unlock: only twostep's own reviews are sent (nonResourceAttributes.path)")
        # The Namespace entry sees only namespaces enforced BEFORE the change: the old object's
        # label, so removing it is sent too, and turning enforcement on is not.
        text = " ".join(x["expression"] for x in namespaces.get("matchConditions") or [])
        c.check(f"oldObject.metadata.labels['{ENFORCE_LABEL}'] == '{ENFORCED}'" in text,
                "namespaces: only namespaces enforced before the change are sent (oldObject)")
        c.check("object.metadata" not in text.replace("oldObject.metadata", ""),
                "namespaces: the new object's labels never decide (adding the label is free)")


def container_checks(c, container, where):
    sc = container.get("securityContext") or {}
    n = f"{where} {container['name']}"
    c.check(sc.get("allowPrivilegeEscalation") is False, f"{n}: allowPrivilegeEscalation false")
    c.check(sc.get("readOnlyRootFilesystem") is True, f"{n}: readOnlyRootFilesystem true")
    c.check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), f"{n}: drops ALL")
    c.check(not (sc.get("capabilities") or {}).get("add"), f"{n}: adds no capability")
    c.check(sc.get("privileged") is not True, f"{n}: not privileged")
    c.check(sc.get("runAsUser", 65532) != 0, f"{n}: not uid 0")
    res = container.get("resources") or {}
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            c.check(r in (res.get(kind) or {}), f"{n}: resources.{kind}.{r}")
    if all(r in (res.get(k) or {}) for k in ("requests", "limits") for r in ("cpu", "memory")):
        c.check(cpu_millis(res["limits"]["cpu"]) >= cpu_millis(res["requests"]["cpu"]),
                f"{n}: cpu limit >= request")
        c.check(mem_bytes(res["limits"]["memory"]) >= mem_bytes(res["requests"]["memory"]),
                f"{n}: memory limit >= request")


def dockerfile_paths(source):
    """The paths the image's ENTRYPOINT expects (the mounts must provide them)."""
    with open(os.path.join(source, "Dockerfile"), encoding="utf-8") as f:
        text = f.read()
    return dict(re.findall(r'"--(tls-cert|tls-key|master-key-file)=([^"]+)"', text))


def check_workload(c, docs, comps, source):
    def one(kind, name=None):
        found = [d for d in docs if d["kind"] == kind and
                 (name is None or d["metadata"]["name"] == name)]
        c.check(len(found) == 1, f"exactly one {kind}{' ' + name if name else ''}, found {len(found)}")
        return found[0] if found else None

    ns = one("Namespace", NAMESPACE)
    if ns:
        c.check((ns["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce") ==
                "restricted", "namespace: Pod Security Standard restricted enforced")
    for d in docs:
        if d["kind"] not in ("Namespace", "MutatingWebhookConfiguration",
                             "ValidatingWebhookConfiguration"):
            c.check(d["metadata"].get("namespace") == NAMESPACE,
                    f"{d['kind']} {d['metadata']['name']} lives in {NAMESPACE}")
    sa = one("ServiceAccount")
    sts = one("StatefulSet", "twostep-webhook")
    svc = one("Service", "twostep-webhook")
    pdb = one("PodDisruptionBudget")
    netpol = one("NetworkPolicy")
    if not sts:
        return
    ha = "ha" in comps
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    c.check(selector_matches(spec["selector"], labels), "statefulset: selector matches its pods")
    c.check(spec.get("replicas") == (3 if ha else 1),
            f"statefulset: {3 if ha else 1} replicas, got {spec.get('replicas')}")
    if sa:
        c.check(pod.get("serviceAccountName") == sa["metadata"]["name"], "pod: its ServiceAccount")
    c.check(pod.get("automountServiceAccountToken") is False, "pod: no API token mounted")
    psc = pod.get("securityContext") or {}
    c.check(psc.get("runAsNonRoot") is True, "pod: runAsNonRoot")
    c.check(isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] != 0, "pod: numeric non-root uid")
    c.check((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
            "pod: seccompProfile RuntimeDefault")
    containers = pod.get("containers", [])
    for ctr in containers:
        container_checks(c, ctr, "container")
    for ctr in pod.get("initContainers", []):
        container_checks(c, ctr, "initContainer")
    web = next((x for x in containers if x["name"] == "webhook"), None)
    if not c.check(web is not None, "a container named webhook"):
        return
    ports = {p.get("name"): p.get("containerPort") for p in web.get("ports", [])}
    c.check(ports.get("https") == 8443, "webhook: port https = 8443")

    def probe_ok(probe, path):
        get = (probe or {}).get("httpGet") or {}
        return get.get("path") == path and get.get("scheme") == "HTTPS" and \
            get.get("port") in ("https", 8443)
    c.check(probe_ok(web.get("readinessProbe"), "/readyz"), "webhook: readiness probe HTTPS /readyz")
    c.check(probe_ok(web.get("livenessProbe"), "/healthz"), "webhook: liveness probe HTTPS /healthz")

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in web.get("volumeMounts", [])}
    paths = dockerfile_paths(source)
    c.check(set(paths) == {"tls-cert", "tls-key", "master-key-file"},
            f"the Dockerfile's ENTRYPOINT names the TLS and key files, found {paths}")
    for flag, file in paths.items():
        parent = os.path.dirname(file)
        c.check(parent in mounts, f"webhook: {parent} is mounted (the image's --{flag}={file})")
    tls = mounts.get(os.path.dirname(paths.get("tls-cert", "/etc/twostep/tls/tls.crt")))
    if tls:
        vol = volumes.get(tls["name"], {})
        c.check((vol.get("secret") or {}).get("secretName") == "twostep-webhook-tls",
                "webhook: the TLS directory is the Secret twostep-webhook-tls")
        c.check("subPath" not in tls, "webhook: TLS mounted as a directory (renewals appear live)")
    key_secret = [v for v in volumes.values()
                  if (v.get("secret") or {}).get("secretName") == "twostep-master-key"]
    c.check(len(key_secret) == 1, "pod: the master key comes from the Secret twostep-master-key")
    if key_secret:
        items = key_secret[0]["secret"].get("items") or []
        c.check([i.get("key") for i in items] == ["master.key"], "master key Secret key master.key")
    # Only /tmp and (SQLite) the database directory are writable in the webhook container.
    writable = sorted(p for p, m in mounts.items() if not m.get("readOnly"))
    expected = ["/tmp"] if ha else ["/tmp", "/var/lib/twostep"]
    c.check(writable == expected, f"webhook: writable mounts {expected}, got {writable}")
    args = web.get("args", []) + web.get("command", [])
    env = {e["name"]: e for e in web.get("env", [])}
    if ha:
        c.check(not spec.get("volumeClaimTemplates"), "ha: no volumeClaimTemplates")
        c.check(not any(a.startswith("--db") for a in args), "ha: no --db on the command line")
        ref = ((env.get("TWOSTEP_DB") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        c.check(ref.get("name") == "twostep-db" and ref.get("key") == "url",
                "ha: TWOSTEP_DB from Secret twostep-db key url")
        anti = ((pod.get("affinity") or {}).get("podAntiAffinity") or {})
        terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []
        c.check(any(t.get("topologyKey") == "kubernetes.io/hostname" and
                    selector_matches(t.get("labelSelector"), labels) for t in terms),
                "ha: required pod anti-affinity per node on the webhook's own pods")
    else:
        claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates") or []]
        c.check(claims == ["data"], f"statefulset: a volumeClaimTemplate data, got {claims}")
        c.check((mounts.get("/var/lib/twostep") or {}).get("name") == "data",
                "webhook: the claim is mounted at /var/lib/twostep")
        c.check("--db=/var/lib/twostep/twostep.db" in args, "webhook: SQLite on the volume")
        c.check("TWOSTEP_DB" not in env, "webhook: no TWOSTEP_DB next to --db")

    if svc:
        c.check(selector_matches({"matchLabels": svc["spec"]["selector"]}, labels),
                "service: selects the webhook pods")
        sp = svc["spec"]["ports"]
        c.check(len(sp) == 1 and sp[0]["port"] == 443 and sp[0]["targetPort"] in ("https", 8443),
                "service: 443 -> 8443")
        c.check(spec.get("serviceName") == svc["metadata"]["name"], "statefulset: serviceName")
    if pdb:
        c.check(selector_matches(pdb["spec"]["selector"], labels), "pdb: selects the webhook pods")
        if ha:
            c.check(pdb["spec"].get("minAvailable") == 2 and "maxUnavailable" not in pdb["spec"],
                    "ha: PodDisruptionBudget minAvailable 2")
        else:
            c.check(pdb["spec"].get("maxUnavailable") == 1,
                    "pdb: maxUnavailable 1 (one replica: drains proceed)")
    if netpol:
        npspec = netpol["spec"]
        c.check(selector_matches(npspec["podSelector"], labels), "networkpolicy: selects the pods")
        c.check("Ingress" in npspec.get("policyTypes", []), "networkpolicy: governs ingress")
        ingress = npspec.get("ingress", [])
        ports = [(p.get("port"), p.get("protocol", "TCP")) for r in ingress for p in r.get("ports", [])]
        c.check(ingress and all(r.get("ports") for r in ingress) and
                set(ports) == {(8443, "TCP")}, f"networkpolicy: admits only TCP 8443, got {ports}")

    if "cert-manager" in comps:
        certs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Certificate"}
        issuers = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Issuer"}
        serving = certs.get("twostep-webhook")
        if c.check(serving is not None, "cert-manager: Certificate twostep-webhook"):
            c.check(serving["spec"]["secretName"] == "twostep-webhook-tls",
                    "cert-manager: the serving certificate lands in the mounted Secret")
            c.check(sorted(serving["spec"]["dnsNames"]) == sorted(SERVICE_DNS),
                    f"cert-manager: dnsNames are the Service's names, got {serving['spec']['dnsNames']}")
            issuer = issuers.get(serving["spec"]["issuerRef"]["name"], {})
            ca_secret = ((issuer.get("spec") or {}).get("ca") or {}).get("secretName")
            ca = next((x for x in certs.values() if x["spec"]["secretName"] == ca_secret), None)
            c.check(ca is not None and ca["spec"].get("isCA") is True,
                    "cert-manager: the serving Issuer is a CA Issuer backed by an isCA Certificate")
            if ca:
                root = issuers.get(ca["spec"]["issuerRef"]["name"], {})
                c.check("selfSigned" in (root.get("spec") or {}),
                        "cert-manager: the CA comes from a self-signed Issuer")


def compose(tmp, name, comps):
    """A kustomization in tmp/name: deploy/base plus these components; returns its directory."""
    directory = os.path.join(tmp, name)
    os.mkdir(directory)
    lines = ["apiVersion: kustomize.config.k8s.io/v1beta1", "kind: Kustomization",
             "resources:", "  - ../deploy/base", "components:"]
    lines += [f"  - ../deploy/components/{x}" for x in sorted(comps)]
    with open(os.path.join(directory, "kustomization.yaml"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return directory


def main():
    if len(sys.argv) != 4 or sys.argv[2] not in ("overlay", "compose"):
        print(__doc__)
        return 2
    source, mode, what = sys.argv[1], sys.argv[2], sys.argv[3]
    deploy = os.path.join(source, "deploy")
    c = Checks(f"manifests {mode} {what}")
    with tempfile.TemporaryDirectory() as tmp:
        # Work on a copy: generated-certs needs the caBundle patch that certs/generate.sh writes.
        root = os.path.join(tmp, "deploy")
        shutil.copytree(deploy, root,
                        ignore=shutil.ignore_patterns("out", "cabundle.patch.yaml"))
        if mode == "overlay":
            directory = os.path.join(root, "overlays", what)
            comps = components_of(directory)
            c.check(what in comps, f"overlay {what} includes the component {what}")
        else:
            comps = set() if what == "base" else set(what.split(","))
            unknown = comps - COMPONENTS
            if not c.check(not unknown, f"known components, unknown: {unknown}"):
                return c.finish()
            directory = compose(tmp, "compose", comps)
        if "generated-certs" in comps:
            subprocess.run(["sh", os.path.join(root, "certs/generate.sh"), "--no-apply"],
                           check=True, stdout=subprocess.DEVNULL)
        docs = render(directory)
        if "match-conditions" in comps:
            # Deprecated and empty: an overlay that still names it renders as without it.
            without = render(compose(tmp, "without-match-conditions",
                                     comps - {"match-conditions"}))
            c.check(docs == without, "match-conditions (deprecated) changes nothing")
        if "generated-certs" in comps:
            with open(os.path.join(root, "certs/out/ca.crt"), "rb") as f:
                ca = base64.b64encode(f.read()).decode()
            bundles = {w["clientConfig"].get("caBundle") for d in docs
                       if d["kind"].endswith("WebhookConfiguration") for w in d["webhooks"]}
            c.check(bundles == {ca}, "generated-certs: every caBundle is the generated CA")
        kinds = {d["kind"] for d in docs}
        for kind in ("Namespace", "ServiceAccount", "Service", "StatefulSet",
                     "PodDisruptionBudget", "NetworkPolicy"):
            c.check(kind in kinds, f"renders a {kind}")
        c.check(("Issuer" in kinds and "Certificate" in kinds) == ("cert-manager" in comps),
                "cert-manager objects exactly when the component is used")
        c.check("Secret" not in kinds, "no Secret is rendered (keys are never committed)")
        check_webhooks(c, docs, comps, source)
        check_workload(c, docs, comps, source)
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
