#!/usr/bin/env bash
# Validates what `cnd-cli submit --dry-run` prints (an Indexed Job, and bare pods)
# against the official Kubernetes schemas, strict (unknown fields are errors),
# for Kubernetes 1.29 and 1.33.
#
# Uses kubernetes-validate's Python API: its CLI crashes on a manifest that has
# only `generateName`, as bare pods do.
#
#   VENV=path    a virtualenv to use (created, with kubernetes-validate, if needed);
#                default target/venv
#   CND_CLI=path the cnd-cli binary; default: built here (test profile)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-target/venv}
VERSIONS=${K8S_VERSIONS:-1.29 1.33}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import kubernetes_validate' 2>/dev/null; then
    "$VENV/bin/pip" install --quiet 'kubernetes-validate==1.37.0'
fi

CLI=${CND_CLI:-}
if [ -z "$CLI" ]; then
    # The profile and features of `cargo test --workspace --all-features`, which
    # .ci/test runs first: its artifacts are reused instead of a second build.
    cargo build --quiet --profile test --workspace --all-features --bin cnd-cli
    CLI=target/debug/cnd-cli
fi

out=target/manifests
mkdir -p "$out"
# Every option that changes the manifests, in one of the two.
"$CLI" submit -d 30 --pods 4 --shards 16 --timeout 10m --namespace cnd \
    --image registry.example/cnd-worker:1 --image-pull-policy Always \
    --cpu 2 --memory 256Mi --service-account cnd-worker \
    --queue-url https://sqs.eu-west-2.amazonaws.com/123456789012/cnd-results \
    --dry-run >"$out/job.yaml"
"$CLI" submit -d 30 --pods 3 --workload pods --cpu 500m --memory 64Mi \
    --block "another block" --nonce-format decimal --range 0..1000000 --channel pod-status \
    --dry-run >"$out/pods.yaml"

"$VENV/bin/python" - "$VERSIONS" "$out/job.yaml" "$out/pods.yaml" <<'PY'
import sys

import kubernetes_validate
import yaml

versions = sys.argv[1].split()
failures = 0
checked = 0
for path in sys.argv[2:]:
    with open(path) as f:
        documents = [d for d in yaml.safe_load_all(f) if d is not None]
    if not documents:
        print(f"{path}: no manifests")
        failures += 1
    for document in documents:
        kind = document.get("kind")
        name = document["metadata"].get("name") or document["metadata"].get("generateName")
        for version in versions:
            checked += 1
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                failures += 1
                print(f"{path}: {kind} {name}: invalid for Kubernetes {version}: {e.message} at {list(e.path)}")
print(f"{checked - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
PY
