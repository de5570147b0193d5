#!/usr/bin/env bash
# Tests of the worker image and the deployment kit (docker/).
#
#   bash docker/test.sh [--require-docker]
#
# Manifests and policies (always):
#   docker/k8s/*.yaml are valid Kubernetes 1.29 objects (kubernetes-validate,
#   strict); the master's Role is namespaced, wildcard-free and exactly least
#   privilege; the IAM policies grant exactly what SPEC's two sides need.
# The image (needs a Docker engine):
#   (a) docker/build.sh builds it; < 10 MB, numeric non-root user, entrypoint
#       /cnd-worker, OCI labels, and its layers hold only the binary and the CA
#       bundle (FROM scratch: no shell);
#   (b) a worker with a missing or malformed variable exits non-zero at once,
#       naming it (with no network at all);
#   (c) against a local SQS (moto) with the SPEC §4 environment, the worker
#       finds a golden nonce in shard 1 of 4 and reports it; the report is
#       re-checked with hashlib. A second run, sharded like an Indexed Job
#       (JOB_COMPLETION_INDEX), searches a shard with no golden nonce and
#       reports it exhausted. Over HTTPS (moto with a test CA), the worker
#       verifies the endpoint against the bundle at the image's CA path: it
#       reports when the test CA is mounted there and refuses the endpoint
#       with the image's own bundle.
#
# Without a Docker engine the image tests are skipped (exit 0), unless CI=true
# or --require-docker, when that is a failure. Python packages go into a venv
# under target/ (CND_TEST_VENV), made once and reused while
# .ci/requirements.txt is unchanged. The last line is "N passed, N failed".
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 1

require_docker=false
[[ ${CI:-} == true ]] && require_docker=true
for arg in "$@"; do
  case $arg in
    --require-docker) require_docker=true ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "docker/test.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

passed=0
failed=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }
indent() { sed 's/^/    /'; }
# check NAME COMMAND...: runs COMMAND, passes if it exits 0, shows its output.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name"; fi
  [[ -z $out ]] || printf '%s\n' "$out" | indent
}
finish() {
  echo "$passed passed, $failed failed"
  ((failed == 0))
  exit
}

tag=cnd-worker:test-$$  # one per run: concurrent runs must not share it
moto_pids=()
containers=()
scratch=$(mktemp -d)
cleanup() {
  ((${#moto_pids[@]} == 0)) || kill "${moto_pids[@]}" 2>/dev/null
  ((${#containers[@]} == 0)) || docker rm -f "${containers[@]}" >/dev/null 2>&1
  [[ -n ${KEEP_IMAGE:-} ]] || docker image rm "$tag" >/dev/null 2>&1
  rm -rf "$scratch"
}
trap cleanup EXIT

# --- Python: a venv with pinned packages, reused between runs ---------------
venv=${CND_TEST_VENV:-$repo/target/test-venv}
requirements=.ci/requirements.txt
# Rebuilt when the pins change, or when it was made at another path (a copied
# target/: its scripts' #! lines name the old one).
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null ||
  [[ $(head -n 1 "$venv/bin/pip" 2>/dev/null) != "#!$venv/bin/python"* ]]; then
  echo "==> installing $requirements into $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >"$scratch/venv.log" 2>&1 ||
    ! "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >>"$scratch/venv.log" 2>&1; then
    fail "Python test environment (python3 -m venv and pip install -r $requirements)"
    indent <"$scratch/venv.log"
    rm -rf "$venv"
    finish
  fi
  cp "$requirements" "$venv/requirements.txt"
fi
kit() { "$venv/bin/python" docker/testkit.py "$@"; }

# --- Manifests and policies ---------------------------------------------------
check "docker/k8s/*.yaml are valid Kubernetes 1.29 objects (strict) labelled app.kubernetes.io/name=cnd" \
  kit validate-k8s docker/k8s --version 1.29.0
check "master RBAC: one namespaced Role, no wildcards, exactly the verbs submit/status/stop/cleanup use" \
  kit check-rbac docker/k8s --namespace cnd
check "IAM: worker may only SendMessage/GetQueueUrl on cnd-*, master only what it uses" \
  kit check-iam docker/iam

# --- The image ------------------------------------------------------------------
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  if $require_docker; then
    fail "a Docker engine is required (CI=true or --require-docker) but 'docker info' failed"
  else
    echo "docker engine not available: skipping image tests"
  fi
  finish
fi

# (a) build and inspect
echo "==> docker/build.sh $tag"
if docker/build.sh "$tag" >"$scratch/build.log" 2>&1; then
  pass "docker/build.sh $tag builds the image"
else
  fail "docker/build.sh $tag builds the image"
  tail -n 40 "$scratch/build.log" | indent
  finish
fi

inspect() { docker image inspect --format "$1" "$tag"; }
size=$(inspect '{{.Size}}')
check "image is smaller than 10 MB ($size bytes)" test "$size" -lt 10000000
user=$(inspect '{{.Config.User}}')
check "image runs as a numeric non-root user and group ($user)" \
  bash -c '[[ $1 =~ ^([0-9]+):([0-9]+)$ ]] && ((BASH_REMATCH[1] > 0 && BASH_REMATCH[2] > 0))' _ "$user"
entrypoint=$(inspect '{{json .Config.Entrypoint}}')
check "image entrypoint is /cnd-worker ($entrypoint)" test "$entrypoint" = '["/cnd-worker"]'
check "image carries OCI labels title, version, revision, source" bash -c '
  for key in title version revision source; do
    value=$(docker image inspect --format "{{index .Config.Labels \"org.opencontainers.image.$key\"}}" "$1")
    echo "org.opencontainers.image.$key=$value"
    [[ -n $value && $value != "<no value>" ]] || exit 1
  done' _ "$tag"
check "image layers hold only /cnd-worker and the CA bundle (FROM scratch)" bash -c '
  docker image save --output "$1" "$2" && "$3" docker/testkit.py image-files "$1" cnd-worker etc/ssl/certs/ca-certificates.crt' \
  _ "$scratch/image.tar" "$tag" "$venv/bin/python"
check "image has no shell (running /bin/sh fails)" \
  bash -c '! docker run --rm --network none --entrypoint /bin/sh "$1" -c true' _ "$tag"

# A worker run: worker NAME [docker run options...]; output in $scratch/NAME.{out,err}, status in $status.
worker() {
  local name=$1 container=cnd-test-$$-$((${#containers[@]} + 1))
  shift
  containers+=("$container")
  timeout 300 docker run --name "$container" "$@" "$tag" >"$scratch/$name.out" 2>"$scratch/$name.err"
  status=$?
  docker rm -f "$container" >/dev/null 2>&1
}
# expect_refusal NAME VARIABLE [docker run options...]: the worker exits non-zero, naming VARIABLE.
expect_refusal() {
  local name=$1 variable=$2
  shift 2
  worker "$name" --network none "$@"
  if ((status != 0 && status != 124 && status != 125)) && grep -q "$variable" "$scratch/$name.err"; then
    pass "worker with $name exits non-zero ($status) naming $variable"
  else
    fail "worker with $name exits non-zero ($status) naming $variable"
  fi
  cat "$scratch/$name.out" "$scratch/$name.err" | tail -n 5 | indent
}

# (b) refusals, before any network
run_id=$("$venv/bin/python" -c 'import uuid; print(uuid.uuid4())')
run_key=$("$venv/bin/python" -c 'import secrets; print(secrets.token_hex(32))')
block=COMSM0010cloud
spec_env=(-e "CND_RUN_ID=$run_id" -e "CND_RUN_KEY=$run_key" -e "CND_BLOCK=$block" -e CND_DIFFICULTY=16 -e CND_SHARD_COUNT=4
  -e CND_SHARD_INDEX=1 -e "CND_QUEUE_URL=http://127.0.0.1:9/000000000000/cnd-$run_id"
  -e AWS_REGION=us-east-1 -e AWS_ACCESS_KEY_ID=test -e AWS_SECRET_ACCESS_KEY=test)
# spec_env_without VAR...: spec_env less the given variables, in $filtered.
spec_env_without() {
  local i drop
  filtered=()
  for ((i = 0; i < ${#spec_env[@]}; i += 2)); do
    for drop in "$@"; do [[ ${spec_env[i + 1]} == "$drop="* ]] && continue 2; done
    filtered+=("${spec_env[@]:i:2}")
  done
}
expect_refusal "no environment" CND_RUN_ID
spec_env_without CND_DIFFICULTY
expect_refusal "CND_DIFFICULTY unset" CND_DIFFICULTY "${filtered[@]}"
expect_refusal "CND_DIFFICULTY=abc" CND_DIFFICULTY "${filtered[@]}" -e CND_DIFFICULTY=abc
spec_env_without CND_SHARD_INDEX
expect_refusal "CND_SHARD_INDEX=4 of 4" CND_SHARD_INDEX "${filtered[@]}" -e CND_SHARD_INDEX=4
spec_env_without CND_RUN_KEY
expect_refusal "CND_RUN_KEY unset" CND_RUN_KEY "${filtered[@]}"

# (c) a real search against a local SQS
# moto ENDPOINT_VAR QUEUE_VAR [TLS_DIR]: starts a moto server on a free loopback
# port (https://localhost with TLS_DIR's certificate, else http://127.0.0.1)
# and creates the run's queue on it; sets the two variables.
moto() {
  local -n endpoint_out=$1 queue_out=$2
  local tls=${3:-} port options=() ca=() url
  port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  endpoint_out=http://127.0.0.1:$port
  if [[ -n $tls ]]; then
    endpoint_out=https://localhost:$port
    options=(-c "$tls/server.pem" -k "$tls/server.key")
    ca=(--ca "$tls/ca.pem")
  fi
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" "${options[@]}" >"$scratch/moto-$port.log" 2>&1 &
  moto_pids+=($!)
  if url=$(kit create-queue --endpoint "$endpoint_out" --name "cnd-$run_id" "${ca[@]}" 2>&1); then
    queue_out=$url
  else
    fail "moto SQS server on $endpoint_out answers and creates queue cnd-$run_id"
    printf '%s\n' "$url" | indent
    tail -n 20 "$scratch/moto-$port.log" | indent
    finish
  fi
}
moto endpoint queue_url
sqs_env=(--network host -e "CND_QUEUE_URL=$queue_url" -e "AWS_ENDPOINT_URL_SQS=$endpoint")

worker found "${spec_env[@]}" "${sqs_env[@]}" -e CND_WORKER_NAME=cnd-test-found
check "worker (D=16, shard 1 of 4, SQS at $endpoint) exits 0 ($status)" test "$status" -eq 0
tail -n 5 "$scratch/found.err" | indent
check "queue holds a 'found' report for run $run_id whose nonce is golden and lies in shard 1 of 4" \
  kit check-report --endpoint "$endpoint" --queue-url "$queue_url" --run-id "$run_id" --run-key "$run_key" --kind found \
  --block "$block" --difficulty 16 --shard 1 --shards 4 --worker cnd-test-found

# Exhausted: 2^16 shards of 2^16 nonces at D=20; the first shard with no golden
# nonce (hashlib says which), chosen the Indexed Job way.
barren=$(kit barren-shard --block "$block" --difficulty 20 --shards 65536)
spec_env_without CND_DIFFICULTY CND_SHARD_COUNT CND_SHARD_INDEX
worker exhausted "${filtered[@]}" "${sqs_env[@]}" -e CND_DIFFICULTY=20 -e CND_SHARD_COUNT=65536 \
  -e "JOB_COMPLETION_INDEX=$barren" -e CND_WORKER_NAME=cnd-test-exhausted
check "worker (D=20, JOB_COMPLETION_INDEX=$barren of 65536 shards, no golden nonce) exits 0 ($status)" test "$status" -eq 0
tail -n 5 "$scratch/exhausted.err" | indent
check "queue holds an 'exhausted' report for shard $barren covering all of it" \
  kit check-report --endpoint "$endpoint" --queue-url "$queue_url" --run-id "$run_id" --run-key "$run_key" --kind exhausted \
  --block "$block" --difficulty 20 --shard "$barren" --shards 65536 --worker cnd-test-exhausted

# Without SQS (SPEC §5.1): the final report in the termination-message file, as
# the kubelet mounts it (read-only root, no network, no AWS variables), and every
# report on stdout, one envelope per line.
spec_env_without CND_QUEUE_URL AWS_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
touch "$scratch/termination-log" && chmod 666 "$scratch/termination-log"
worker termlog "${filtered[@]}" --network none --read-only -v "$scratch/termination-log:/dev/termination-log" \
  -e CND_QUEUE_URL=termination-log:/dev/termination-log -e CND_WORKER_NAME=cnd-test-termlog
check "worker (shard 1 of 4, CND_QUEUE_URL=termination-log:…, no network) exits 0 ($status)" test "$status" -eq 0
tail -n 3 "$scratch/termlog.err" | indent
check "its termination message is one signed 'found' envelope under 4096 bytes with a golden nonce in shard 1 of 4" \
  bash -c 'test "$(stat -c %s "$1")" -le 4096 && test "$(wc -l < "$1")" -eq 0 && shift && "$@"' _ "$scratch/termination-log" \
  "$venv/bin/python" docker/testkit.py check-report --from-file "$scratch/termination-log" --run-id "$run_id" --run-key "$run_key" \
  --kind found --block "$block" --difficulty 16 --shard 1 --shards 4 --worker cnd-test-termlog
worker stdout "${filtered[@]}" --network none -e CND_QUEUE_URL=stdout: -e CND_WORKER_NAME=cnd-test-stdout
check "worker (shard 1 of 4, CND_QUEUE_URL=stdout:, no network) exits 0 ($status)" test "$status" -eq 0
check "its stdout ends with a signed 'found' envelope whose nonce is golden and lies in shard 1 of 4" \
  kit check-report --from-file "$scratch/stdout.out" --run-id "$run_id" --run-key "$run_key" \
  --kind found --block "$block" --difficulty 16 --shard 1 --shards 4 --worker cnd-test-stdout

# HTTPS, as on AWS: the static binary resolves localhost through /etc/hosts
# and verifies the endpoint against the bundle at the image's CA path (here a
# test CA mounted over it); with the image's own bundle it must refuse it.
kit make-tls "$scratch/tls"
moto tls_endpoint tls_queue_url "$scratch/tls"
tls_env=(--network host -e "CND_QUEUE_URL=$tls_queue_url" -e "AWS_ENDPOINT_URL_SQS=$tls_endpoint")
spec_env_without CND_SHARD_INDEX
worker tls "${filtered[@]}" "${tls_env[@]}" -e CND_SHARD_INDEX=2 -e CND_WORKER_NAME=cnd-test-tls \
  -v "$scratch/tls/ca.pem:/etc/ssl/certs/ca-certificates.crt:ro"
check "worker (shard 2 of 4, SQS at $tls_endpoint, test CA at the image's CA path) exits 0 ($status)" test "$status" -eq 0
tail -n 3 "$scratch/tls.err" | indent
check "queue holds a 'found' report, sent over TLS, for shard 2 of 4" \
  kit check-report --endpoint "$tls_endpoint" --ca "$scratch/tls/ca.pem" --queue-url "$tls_queue_url" \
  --run-id "$run_id" --run-key "$run_key" --kind found --block "$block" --difficulty 16 --shard 2 --shards 4 --worker cnd-test-tls
worker untrusted "${filtered[@]}" "${tls_env[@]}" -e CND_SHARD_INDEX=3
check "worker refuses an endpoint whose certificate the image's CA bundle does not vouch for (exit $status)" \
  bash -c '(($1 != 0 && $1 != 124 && $1 != 125)) && grep -m 1 -E "invalid peer certificate|UnknownIssuer" "$2"' \
  _ "$status" "$scratch/untrusted.err"

finish
