"""Checks that docker/test.sh runs in its virtual environment.

Each subcommand checks one thing, prints what it found, and exits 1 (with the
reason on stderr) when the check fails. Nothing here trusts the worker: nonces
are re-hashed with hashlib and shard bounds recomputed from SPEC §1-2.
"""

import argparse
import hashlib
import hmac
import json
import pathlib
import sys
import tarfile
import time

SPACE = 1 << 32  # 32-bit nonces, binary format: the defaults of SPEC §1
RUN_ID_ATTRIBUTE = "cnd-run-id"  # cnd_cloud::sqs::RUN_ID_ATTRIBUTE
SIGNATURE_ATTRIBUTE = "cnd-signature"  # cnd_core::SIGNATURE_ATTRIBUTE


class CheckFailed(Exception):
    pass


def require(condition, message):
    if not condition:
        raise CheckFailed(message)


# --- the puzzle, independently of cnd-core ---------------------------------


def double_sha256(block: bytes, nonce: int) -> bytes:
    message = block + nonce.to_bytes(4, "big")
    return hashlib.sha256(hashlib.sha256(message).digest()).digest()


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def shard_range(index: int, count: int, space: int = SPACE) -> tuple:
    return index * space // count, (index + 1) * space // count


# --- image ------------------------------------------------------------------


def image_files(args):
    """The files in the layers of a `docker image save` archive are exactly the expected ones."""
    names = set()
    with tarfile.open(args.archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        require(len(manifest) == 1, f"expected one image in the archive, got {len(manifest)}")
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                names.update(m.name.strip("/").removeprefix("./") for m in inner.getmembers())
    names.discard("")
    expected = set(args.expect)
    for name in args.expect:  # parent directories come along with a file
        parts = name.split("/")
        expected.update("/".join(parts[:i]) for i in range(1, len(parts)))
    print("image files:", " ".join(sorted(names)))
    require(names == expected, f"unexpected image contents: extra {sorted(names - expected)}, missing {sorted(expected - names)}")


# --- SQS (moto) ---------------------------------------------------------------


def sqs_client(endpoint, ca=None):
    import boto3

    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        verify=ca if ca else True,
    )


def make_tls(args):
    """Writes a test CA (ca.pem) and a certificate for localhost signed by it (server.pem, server.key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    def certificate(subject, issuer, public_key, signing_key, extensions):
        builder = x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
        builder = builder.public_key(public_key).serial_number(x509.random_serial_number())
        builder = builder.not_valid_before(validity[0]).not_valid_after(validity[1])
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cnd test CA")])
    ca = certificate(ca_name, ca_name, ca_key.public_key(), ca_key, [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                       data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                       encipher_only=False, decipher_only=False), True),
    ])
    key = ec.generate_private_key(ec.SECP256R1())
    server = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), ca_name,
                         key.public_key(), ca_key, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
    ])
    directory = pathlib.Path(args.directory)
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(server.public_bytes(pem))
    (directory / "server.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    for name, mode in (("ca.pem", 0o644), ("server.pem", 0o644), ("server.key", 0o600)):
        (directory / name).chmod(mode)  # the CA is read by the container's user 65532


def create_queue(args):
    """Waits for the SQS endpoint to answer, creates the queue and prints its URL."""
    client = sqs_client(args.endpoint, args.ca)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            client.list_queues()
            break
        except Exception as error:  # not up yet
            if time.monotonic() > deadline:
                raise CheckFailed(f"SQS endpoint {args.endpoint} did not answer within {args.wait}s: {error}")
            time.sleep(0.2)
    print(client.create_queue(QueueName=args.name)["QueueUrl"])


def receive_report(args):
    """Reads the queue until the worker's final report (found/exhausted) arrives."""
    client = sqs_client(args.endpoint, args.ca)
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        response = client.receive_message(
            QueueUrl=args.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        )
        for message in response.get("Messages", []):
            body = json.loads(message["Body"])
            print("message:", json.dumps(body), "attributes:", json.dumps(message.get("MessageAttributes", {})))
            if body.get("kind") in ("found", "exhausted", "failed"):
                return message["Body"], body, message.get("MessageAttributes", {})
    raise CheckFailed(f"no found/exhausted message on {args.queue_url} within {args.wait}s")


def read_envelope(path):
    """The last report in a file of SPEC §5.1 envelopes (a worker's stdout, or its
    termination message): one JSON object per line, the body as a string."""
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    require(lines, f"{path} holds no report")
    envelope = json.loads(lines[-1])
    require(isinstance(envelope, dict) and set(envelope) == {"body", SIGNATURE_ATTRIBUTE},
            f"the last line of {path} is not an envelope: {lines[-1][:200]}")
    print("envelope:", lines[-1][:300])
    return envelope["body"], json.loads(envelope["body"]), envelope[SIGNATURE_ATTRIBUTE]


def check_report(args):
    if args.from_file:
        raw, body, signature = read_envelope(args.from_file)
        attributes = None
    else:
        raw, body, attributes = receive_report(args)
        signature = attributes.get(SIGNATURE_ATTRIBUTE, {})
        require(signature.get("DataType") == "String", f"message attribute {SIGNATURE_ATTRIBUTE} is {signature}")
        signature = signature.get("StringValue")
    # SPEC §5: HMAC-SHA256 of the body's exact bytes under the run's key, by Python's hmac.
    expected = hmac.new(bytes.fromhex(args.run_key), raw.encode(), hashlib.sha256).hexdigest()
    require(signature == expected, f"the signature is {signature!r}, expected {expected}")
    require(body.get("v") == 1, f"message version is {body.get('v')!r}, expected 1")
    require(body.get("run_id") == args.run_id, f"run_id is {body.get('run_id')!r}, expected {args.run_id}")
    if attributes is not None:
        attribute = attributes.get(RUN_ID_ATTRIBUTE, {})
        require(attribute.get("DataType") == "String" and attribute.get("StringValue") == args.run_id,
                f"message attribute {RUN_ID_ATTRIBUTE} is {attribute}, expected the String {args.run_id}")
    require(body.get("kind") == args.kind, f"kind is {body.get('kind')!r}, expected {args.kind} (error: {body.get('error')!r})")
    require(body.get("shard") == args.shard, f"shard is {body.get('shard')!r}, expected {args.shard}")
    if args.worker is not None:
        require(body.get("worker") == args.worker, f"worker is {body.get('worker')!r}, expected {args.worker}")
    for field in ("hashes", "elapsed_ms"):
        require(isinstance(body.get(field), int) and body[field] >= 0, f"{field} is {body.get(field)!r}, expected a count")
    start, end = shard_range(args.shard, args.shards)
    block = args.block.encode()
    if args.kind == "found":
        nonce_text = body.get("nonce")
        require(isinstance(nonce_text, str) and nonce_text.isdigit(), f"nonce is {nonce_text!r}, expected a decimal string")
        nonce = int(nonce_text)
        require(start <= nonce < end, f"nonce {nonce} lies outside shard {args.shard} of {args.shards}: [{start}, {end})")
        digest = double_sha256(block, nonce)
        zeros = leading_zero_bits(digest)
        require(zeros >= args.difficulty, f"nonce {nonce} is not golden: {zeros} leading zero bits < {args.difficulty}")
        require(body.get("hash") == digest.hex(), f"hash is {body.get('hash')!r}, hashlib says {digest.hex()}")
        print(f"golden nonce {nonce} in [{start}, {end}): {zeros} leading zero bits, hash {digest.hex()}")
    else:
        require(body.get("hashes") == end - start, f"hashes is {body.get('hashes')!r}, expected the shard's size {end - start}")
        print(f"exhausted shard {args.shard} of {args.shards}: [{start}, {end})")


def barren_shard(args):
    """Prints the first shard index whose range holds no golden nonce (checked with hashlib)."""
    block = args.block.encode()
    for index in range(args.shards):
        start, end = shard_range(index, args.shards)
        if all(leading_zero_bits(double_sha256(block, n)) < args.difficulty for n in range(start, end)):
            print(index)
            return
    raise CheckFailed("every shard holds a golden nonce")


# --- Kubernetes manifests and IAM policies ---------------------------------


def load_manifests(directory):
    import yaml

    for path in sorted(pathlib.Path(directory).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path.name, doc


def validate_k8s(args):
    """Every document is a valid Kubernetes object (strict: no unknown fields)."""
    import kubernetes_validate

    problems = []
    count = 0
    for name, doc in load_manifests(args.directory):
        count += 1
        what = f"{name}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, args.version, strict=True)
            print(f"valid for Kubernetes {args.version}: {what}")
        except Exception as error:
            problems.append(f"{what}: {type(error).__name__}: {str(error).splitlines()[0]}")
        labels = doc.get("metadata", {}).get("labels", {})
        if labels.get("app.kubernetes.io/name") != "cnd":
            problems.append(f"{what}: no label app.kubernetes.io/name=cnd")
    require(count > 0, f"no manifests in {args.directory}")
    require(not problems, "\n".join(problems))


# The least privilege the master needs (docker/k8s/rbac-master.yaml says why for each).
MASTER_RULES = {
    ("batch", "jobs"): {"create", "get", "list", "delete"},
    ("", "pods"): {"create", "list", "watch", "delete", "deletecollection"},
    # The run's key: written and removed, never read (no get/list/watch).
    ("", "secrets"): {"create", "patch", "delete", "deletecollection"},
}


def check_rbac(args):
    """RBAC is namespaced, wildcard-free and grants the master exactly MASTER_RULES."""
    docs = list(load_manifests(args.directory))
    kinds = {doc["kind"] for _, doc in docs}
    require(not kinds & {"ClusterRole", "ClusterRoleBinding"}, f"cluster-wide RBAC found: {sorted(kinds)}")
    for name, doc in docs:
        if doc["kind"] != "Namespace":
            require(doc["metadata"].get("namespace") == args.namespace, f"{name}: {doc['kind']} is not in namespace {args.namespace}")
    roles = [doc for _, doc in docs if doc["kind"] == "Role"]
    require(len(roles) == 1, f"expected one Role, found {len(roles)}")
    granted = {}
    for rule in roles[0]["rules"]:
        for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            values = rule.get(key, [])
            require(not any("*" in value for value in values), f"wildcard in {key}: {values}")
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    require(granted == MASTER_RULES, f"Role grants {granted}, expected exactly {MASTER_RULES}")
    bindings = [doc for _, doc in docs if doc["kind"] == "RoleBinding"]
    require(len(bindings) == 1, f"expected one RoleBinding, found {len(bindings)}")
    binding = bindings[0]
    require(binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": roles[0]["metadata"]["name"]},
            f"RoleBinding refers to {binding['roleRef']}")
    subjects = {(s["kind"], s["name"]) for s in binding["subjects"]}
    require(subjects == {("ServiceAccount", "cnd-master"), ("User", "cnd-master")}, f"RoleBinding subjects are {subjects}")
    worker = [doc for _, doc in docs if doc["kind"] == "ServiceAccount" and doc["metadata"]["name"] == "cnd-worker"]
    require(len(worker) == 1, "no ServiceAccount cnd-worker")
    require(worker[0].get("automountServiceAccountToken") is False, "ServiceAccount cnd-worker mounts an API token")
    print("RBAC:", {f"{g or 'core'}/{r}": sorted(v) for (g, r), v in granted.items()})


def statements(path):
    policy = json.loads(pathlib.Path(path).read_text())
    require(policy.get("Version") == "2012-10-17", f"{path}: Version is {policy.get('Version')!r}")
    result = []
    for statement in policy["Statement"]:
        require(statement.get("Effect") == "Allow", f"{path}: a statement is not Allow")
        require(not ({"NotAction", "NotResource"} & statement.keys()), f"{path}: NotAction/NotResource")
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        require(not any("*" in action for action in actions), f"{path}: wildcard action in {actions}")
        result.append((tuple(sorted(actions)), tuple(sorted(resources))))
    return sorted(result)


def check_iam(args):
    """The IAM policies grant exactly the SQS actions each side needs, on cnd-* queues."""
    queues = ("arn:aws:sqs:*:*:cnd-*",)
    worker = statements(pathlib.Path(args.directory) / "worker-policy.json")
    expected = [(("sqs:GetQueueUrl", "sqs:SendMessage"), queues)]
    require(worker == expected, f"worker policy grants {worker}, expected {expected}")
    master = statements(pathlib.Path(args.directory) / "master-policy.json")
    scoped = ("sqs:ChangeMessageVisibility", "sqs:CreateQueue", "sqs:DeleteMessage", "sqs:DeleteQueue",
              "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ListQueueTags", "sqs:ReceiveMessage", "sqs:TagQueue")
    expected = sorted([(scoped, queues), (("sqs:ListQueues",), ("*",))])
    require(master == expected, f"master policy grants {master}, expected {expected}")
    print("IAM: worker", worker, "master", master)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("image-files")
    p.add_argument("archive")
    p.add_argument("expect", nargs="+")
    p.set_defaults(run=image_files)

    p = commands.add_parser("create-queue")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--wait", type=float, default=30)
    p.add_argument("--ca", help="CA bundle that verifies an https endpoint")
    p.set_defaults(run=create_queue)

    p = commands.add_parser("make-tls")
    p.add_argument("directory")
    p.set_defaults(run=make_tls)

    p = commands.add_parser("check-report")
    p.add_argument("--endpoint")
    p.add_argument("--queue-url")
    p.add_argument("--from-file", help="read the report from this file of envelopes instead of SQS")
    p.add_argument("--run-id", required=True)
    p.add_argument("--run-key", required=True, help="CND_RUN_KEY, 64 hex digits")
    p.add_argument("--kind", choices=["found", "exhausted"], required=True)
    p.add_argument("--block", required=True)
    p.add_argument("--difficulty", type=int, required=True)
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--shards", type=int, required=True)
    p.add_argument("--worker")
    p.add_argument("--wait", type=float, default=15)
    p.add_argument("--ca", help="CA bundle that verifies an https endpoint")
    p.set_defaults(run=check_report)

    p = commands.add_parser("barren-shard")
    p.add_argument("--block", required=True)
    p.add_argument("--difficulty", type=int, required=True)
    p.add_argument("--shards", type=int, required=True)
    p.set_defaults(run=barren_shard)

    for name, run in (("validate-k8s", validate_k8s), ("check-rbac", check_rbac)):
        p = commands.add_parser(name)
        p.add_argument("directory")
        p.add_argument("--version", default="1.29.0")
        p.add_argument("--namespace", default="cnd")
        p.set_defaults(run=run)

    p = commands.add_parser("check-iam")
    p.add_argument("directory")
    p.set_defaults(run=check_iam)

    args = parser.parse_args()
    try:
        args.run(args)
    except CheckFailed as failure:
        print(f"check failed: {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
