#!/usr/bin/env bash
# Builds the cnd worker image.
#
#   docker/build.sh [TAG]          (default tag: cnd-worker:latest)
#
# 1. builds cnd-worker statically linked (glibc, crt-static) on the host, into
#    target/x86_64-unknown-linux-gnu/dist (the `dist` profile: fat LTO), apart
#    from normal builds;
# 2. checks that the binary really is static (no interpreter, no shared libraries);
# 3. copies it and the host's CA roots into a two-file build context and runs
#    `docker build` on docker/Dockerfile, which is FROM scratch: nothing is pulled.
#
# Runs from any directory. Needs cargo and a running Docker engine.
# Environment: CARGO_TARGET_DIR (default <repo>/target); CND_CA_BUNDLE (default
# /etc/ssl/certs/ca-certificates.crt, Debian's ca-certificates package).
set -euo pipefail

die() { printf 'docker/build.sh: %s\n' "$*" >&2; exit 1; }

[[ $# -le 1 ]] || die "usage: docker/build.sh [TAG]"
tag=${1:-cnd-worker:latest}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

command -v docker >/dev/null 2>&1 || die "docker is not installed (no 'docker' on PATH); install Docker Engine to build the image."
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable ('docker info' failed): is the daemon running, and may this user use it?"
command -v cargo >/dev/null 2>&1 || die "cargo is not installed (no 'cargo' on PATH); install the Rust toolchain."

ca_bundle=${CND_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[[ -s $ca_bundle ]] || die "no CA bundle at $ca_bundle: install the ca-certificates package or set CND_CA_BUNDLE to a PEM bundle."

triple=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-$repo/target}
bin=$target_dir/$triple/dist/cnd-worker

# An explicit --target keeps RUSTFLAGS off build scripts and proc macros (which
# cannot be static); the flags are set, not inherited, so a host-specific
# RUSTFLAGS (target-cpu=native) never leaks into an image meant for any node.
echo "==> building cnd-worker (static, $triple)"
RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_DIST_STRIP=symbols \
  cargo build --profile dist --locked -p cnd-worker --target "$triple"
[[ -x $bin ]] || die "cargo did not produce $bin"

# Static means: no program interpreter and no shared-library dependencies.
if command -v readelf >/dev/null 2>&1; then
  if readelf -lW "$bin" | grep -q 'INTERP' || readelf -dW "$bin" | grep -q '(NEEDED)'; then
    die "$bin is dynamically linked; a FROM scratch image needs a static binary"
  fi
elif command -v file >/dev/null 2>&1; then
  file -L "$bin" | grep -Eq 'statically linked|static-pie linked' ||
    die "$bin is not statically linked: $(file -L "$bin")"
else
  die "neither readelf (binutils) nor file is installed: cannot check that the binary is static"
fi

context=$target_dir/docker-context
rm -rf "$context"
mkdir -p "$context"
install -m 0755 "$bin" "$context/cnd-worker"
install -m 0644 "$ca_bundle" "$context/ca-certificates.crt"

version=$(cargo pkgid -p cnd-worker 2>/dev/null) && version=${version##*[#@]} || version=dev
revision=unknown
if git rev-parse --git-dir >/dev/null 2>&1; then
  revision=$(git rev-parse HEAD)
  [[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || revision+="-dirty"
fi

# The legacy builder handles FROM scratch without any registry; let docker fall
# back to it where the buildx plugin is missing (DOCKER_BUILDKIT=1 would fail).
if ! docker buildx version >/dev/null 2>&1; then
  unset DOCKER_BUILDKIT
fi

echo "==> building image $tag"
docker build \
  --file docker/Dockerfile \
  --tag "$tag" \
  --build-arg "VERSION=$version" \
  --build-arg "REVISION=$revision" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  "$context"

size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "==> $tag: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f MB", s / 1e6 }'))"
