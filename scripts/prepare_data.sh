#!/usr/bin/env bash
# Build the demix12 multi-domain text corpus from English text shipped in
# Debian packages (see data/README.md for domains and the output format).
#
#   bash scripts/prepare_data.sh [OUT_DIR]        # default: data/demix12
#
# Steps: fetch the .deb files with `apt-get download` into data/.cache/debs/,
# unpack each one with `dpkg -x` into data/.cache/root/<package>/ (nothing is
# installed system-wide), then convert with scripts/data/build_corpus.py,
# which writes OUT_DIR.tmp and renames it to OUT_DIR only when complete.
# Re-running is cheap: a complete OUT_DIR is left alone, cached .debs are
# reused, and the unpacked tree is only rebuilt when the .debs changed.
set -euo pipefail

die() { echo "error: $*" >&2; exit 1; }

for tool in python3 apt-get dpkg dpkg-deb; do
    command -v "$tool" >/dev/null || die "$tool: command not found (expected on Debian 12)"
done

# A given OUT_DIR is relative to the caller's directory; the default and
# everything else are relative to the repository root.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -ge 1 ]; then OUT="$(realpath -m "$1")"; else OUT="$REPO/data/demix12"; fi
cd "$REPO"
BUILD="scripts/data/build_corpus.py"
CACHE="$REPO/data/.cache"
START=$SECONDS

if python3 "$BUILD" --check "$OUT"; then
    echo "data up to date"
    exit 0
fi

mapfile -t PACKAGES < <(python3 "$BUILD" --list-packages)
[ "${#PACKAGES[@]}" -gt 0 ] || die "$BUILD --list-packages: expected a package list"

# --- download -------------------------------------------------------------
APT_OPTS=()
# As root, apt cannot drop to the _apt user for a download into this
# directory and warns; downloading as root is what we want here.
[ "$(id -u)" -eq 0 ] && APT_OPTS=(-o APT::Sandbox::User=root)

deb_of() {  # the cached .deb of package $1, if exactly one
    local matches=("$CACHE/debs/$1"_*.deb)
    [ "${#matches[@]}" -eq 1 ] && [ -f "${matches[0]}" ] && echo "${matches[0]}"
}

apt_download() {  # download packages "$@" into $CACHE/debs (all or nothing)
    rm -rf "$CACHE/debs.partial" && mkdir -p "$CACHE/debs.partial"
    (cd "$CACHE/debs.partial" && apt-get "${APT_OPTS[@]}" download "$@") \
        >>"$CACHE/apt.log" 2>&1 || return 1
    mv "$CACHE/debs.partial"/*.deb "$CACHE/debs/"
    rmdir "$CACHE/debs.partial"
}

mkdir -p "$CACHE/debs"
MISSING=()
for p in "${PACKAGES[@]}"; do
    if [ -z "$(deb_of "$p")" ]; then
        rm -f "$CACHE/debs/$p"_*.deb       # none, or several versions: refetch
        MISSING+=("$p")
    fi
done
if [ "${#MISSING[@]}" -gt 0 ]; then
    echo "downloading ${#MISSING[@]} packages: ${MISSING[*]}"
    : >"$CACHE/apt.log"
    if ! apt_download "${MISSING[@]}"; then
        # Usually the package lists are missing on a fresh machine.
        apt-get update >>"$CACHE/apt.log" 2>&1 || die "apt-get update failed (see $CACHE/apt.log)"
        for p in "${MISSING[@]}"; do
            [ -n "$(deb_of "$p")" ] && continue
            apt_download "$p" || die "apt-get download $p failed: Debian package $p not available (see $CACHE/apt.log)"
        done
    fi
fi

# --- unpack ---------------------------------------------------------------
# PACKAGES.tsv (package<TAB>version from the .deb itself) doubles as the
# stamp that tells whether the unpacked tree matches the cached .debs.
VERSIONS=""
for p in "${PACKAGES[@]}"; do
    deb="$(deb_of "$p")" || die "$CACHE/debs: expected one ${p}_*.deb"
    [ "$(dpkg-deb -f "$deb" Package)" = "$p" ] || die "$deb: expected package $p"
    VERSIONS+="$p"$'\t'"$(dpkg-deb -f "$deb" Version)"$'\n'
done
if [ "$(cat "$CACHE/root/PACKAGES.tsv" 2>/dev/null)"$'\n' != "$VERSIONS" ]; then
    echo "unpacking ${#PACKAGES[@]} packages into $CACHE/root"
    rm -rf "$CACHE/root.tmp" && mkdir -p "$CACHE/root.tmp"
    for p in "${PACKAGES[@]}"; do
        dpkg -x "$(deb_of "$p")" "$CACHE/root.tmp/$p" || die "dpkg -x failed for package $p"
    done
    printf '%s' "$VERSIONS" >"$CACHE/root.tmp/PACKAGES.tsv"
    rm -rf "$CACHE/root" && mv "$CACHE/root.tmp" "$CACHE/root"
fi

# --- convert --------------------------------------------------------------
echo "building corpus in $OUT"
python3 "$BUILD" --root "$CACHE/root" --out "$OUT"
echo "done in $((SECONDS - START)) s"
