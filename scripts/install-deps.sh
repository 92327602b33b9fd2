#!/usr/bin/env bash
# Installs the Debian packages minnow's build and tests need, if missing: gcc/binutils
# for the test guests, g++ to build libFuzzer (fuzz/run.sh), busybox-static for images and
# guests, iproute2 for network tests, e2fsprogs for disk images, cpio for initramfs images, umoci and skopeo for the tests that
# check other OCI tools read and write minnow's image store, libseccomp-dev and pkg-config to
# build the libseccomp crate (container seccomp filters), runc as the control for the
# container security tests and tests/runc.rs (minnow-runc against runc), procps (`minnow-runc ps`),
# docker.io and containerd (a private dockerd and containerd running minnow-runc beside runc in
# tests/runc.rs);
# docker-registry (the CNCF distribution registry), apache2-utils
# (htpasswd), openssl and podman for the registry tests (tests/registry.rs; each starts its
# own registry on 127.0.0.1, never the package's own service). Idempotent; needs root to install.
set -euo pipefail
need=()
for p in gcc g++ binutils make busybox-static iproute2 e2fsprogs cpio umoci skopeo libseccomp-dev pkg-config runc procps docker.io containerd \
    docker-registry apache2-utils openssl podman; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages: ${need[*]}; install them as root (apt-get install ${need[*]})" >&2
    exit 1
fi
echo "install-deps: installing ${need[*]}"
apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >/dev/null
