#!/usr/bin/env bash
# Builds `vae` with the Swift standard library and Foundation linked statically and packs it, with
# every shared library it and Open MPI load, into one tarball that runs on an x86-64 Linux machine
# without Swift (glibc 2.36 or newer; libstdc++ and libgcc_s come from that machine, which keeps
# them compatible with whatever else it loads there, such as the CUDA libraries):
#
#   bash scripts/package.sh [OUT_DIR]     → OUT_DIR/swift-vae-<commit>-linux-x86_64.tar.xz (default dist/)
#
# On the other machine:
#
#   tar xf swift-vae-*.tar.xz && swift-vae/bin/vae --version
#   swift-vae/bin/mpirun -np 4 swift-vae/bin/vae train …      # Debian's Open MPI 4.1, relocated
#
# Layout: bin/vae and bin/mpirun are small launchers that point the loader at lib/ (and Open MPI
# and PMIx at their relocated trees through OPAL_PREFIX and PMIX_INSTALL_PREFIX); lib/vae is the
# program; share/fonts holds DejaVu Sans for the pictures' labels. The script ends by running the
# bundle with an empty environment and checking that every library it loaded came from the bundle
# or from the glibc family.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
arch=x86_64-linux-gnu

echo "package: building vae (release, static Swift runtime) in .build-static/"
# The commit `vae --version` reports is written by a prebuild plugin (Plugins/BuildInfo) that
# SwiftPM does not always rerun in an existing build folder: write its file here the same way
# first, so that a new commit recompiles it.
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
reported=$commit
if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null | head -c1)" ]; then reported="$commit+changes"; fi
if [ -d .build-static/plugins ]; then  # (a first build runs the plugin itself)
    find .build-static/plugins -name BuildInfo.swift | while read -r info; do
        line="let buildCommit = \"$reported\""
        [ "$(cat "$info")" = "$line" ] || printf '%s\n' "$line" > "$info"
    done
fi
swift build -c release --static-swift-stdlib --build-path .build-static >/dev/null
binary=.build-static/release/vae
version=$("$binary" --version 2>&1 | head -1)
case "$version" in
    *"$commit"*) ;;
    *) echo "package: the build reports '$version', not commit $commit" >&2; exit 1 ;;
esac
name=swift-vae-$commit-linux-x86_64

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/swift-vae
mkdir -p "$root/bin" "$root/lib" "$root/share/fonts"
cp "$binary" "$root/lib/vae"
strip --strip-debug "$root/lib/vae"

# The libraries a file needs, less the ones the target machine provides itself.
provided='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libutil\.so|libstdc\+\+\.so|libgcc_s\.so)'
needs() { ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | while read -r lib; do
    basename "$lib" | grep -Eq "$provided" || echo "$lib"; done; }
copy_needs() { for f in "$@"; do needs "$f"; done | sort -u | while read -r lib; do
    [ -e "$root/lib/$(basename "$lib")" ] || cp -L "$lib" "$root/lib/"; done; }

copy_needs "$binary"

# Open MPI (loaded by vae at run time under mpirun: libmpi.so.40) in its own prefix, laid out as
# Debian installs it under /usr so that OPAL_PREFIX relocates every configured path.
if [ -x /usr/bin/orterun ]; then
    ompi=$root/openmpi
    mkdir -p "$ompi/bin" "$ompi/lib/$arch/openmpi/lib" "$ompi/share"
    cp /usr/bin/orterun /usr/bin/orted "$ompi/bin/"
    ln -s orterun "$ompi/bin/mpirun"
    cp -r /usr/lib/$arch/openmpi/lib/openmpi3 "$ompi/lib/$arch/openmpi/lib/"
    cp -r /usr/share/openmpi "$ompi/share/"
    cp -L /usr/lib/$arch/libmpi.so.40 "$root/lib/"
    # PMIx (Debian's is a separate tree) with its plugins and help texts.
    cp -r /usr/lib/$arch/pmix2 "$root/pmix2"
    rm -rf "$root/pmix2/include"
    copy_needs /usr/bin/orterun /usr/bin/orted /usr/lib/$arch/libmpi.so.40 \
        "$ompi"/lib/$arch/openmpi/lib/openmpi3/*.so "$root"/pmix2/lib/pmix/*.so "$root"/pmix2/lib/libpmix.so*
    # The plugins' own dependencies (UCX, libfabric, …) can pull in more: a second pass.
    copy_needs "$root"/lib/*.so*
    cat > "$root/bin/mpirun" <<'EOF'
#!/bin/sh
# Open MPI's mpirun from this bundle (its libraries, plugins and help texts relocated).
here=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
export OPAL_PREFIX="$here/openmpi" PMIX_INSTALL_PREFIX="$here/pmix2"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$here/openmpi/bin:$here/bin:$PATH"
exec "$here/openmpi/bin/orterun" "$@"
EOF
    chmod +x "$root/bin/mpirun"
fi

cp /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf "$root/share/fonts/"
# The peers' scripts, for `vae bench --peers` (found there beside the program).
mkdir -p "$root/share/swift-vae/peers"
cp scripts/pytorch_reference.py scripts/jax_reference.py "$root/share/swift-vae/peers/"
cat > "$root/bin/vae" <<'EOF'
#!/bin/sh
# swift-vae's vae with the libraries of this bundle.
here=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -d "$here/openmpi" ] && export OPAL_PREFIX="${OPAL_PREFIX:-$here/openmpi}" PMIX_INSTALL_PREFIX="${PMIX_INSTALL_PREFIX:-$here/pmix2}"
exec "$here/lib/vae" "$@"
EOF
chmod +x "$root/bin/vae"
cat > "$root/README.txt" <<EOF
swift-vae $commit for x86-64 Linux (glibc 2.36 or newer), built $(date -u +%Y-%m-%d).
  bin/vae --help                      the command (see the project's README)
  bin/mpirun -np N bin/vae train …    several ranks with the bundled Open MPI $(ompi_info --version 2>/dev/null | awk 'NR==1{print $NF}')
lib/ holds the program and the libraries it loads (oneDNN, OpenBLAS, libpng, FreeType, zlib, Open MPI, …).
EOF

# Check: run the bundle with an empty environment; every library loaded must be the bundle's or
# one the target machine provides (the glibc family, libstdc++, libgcc_s).
log=$work/loaded.txt
env -i LD_DEBUG=libs LD_DEBUG_OUTPUT="$work/ld" "$root/bin/vae" --version >"$work/version.txt"
cat "$work"/ld.* | awk '/calling init:/ {print $NF}' | sort -u >"$log"
outside=$(grep -v "^$root/" "$log" | while read -r lib; do basename "$lib" | grep -Eq "$provided" || echo "$lib"; done || true)
if [ -n "$outside" ]; then
    echo "package: the bundle loaded libraries from outside itself:" >&2
    echo "$outside" >&2
    exit 1
fi
echo "package: $(cat "$work/version.txt")"

mkdir -p "$out"
tar -C "$work" -cJf "$out/$name.tar.xz" swift-vae
echo "package: wrote $out/$name.tar.xz ($(du -h "$out/$name.tar.xz" | cut -f1); $(ls "$root/lib" | wc -l) files in lib/)"
