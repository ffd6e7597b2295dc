#!/usr/bin/env bash
# Build the Linux release of Pattern Sync from this checkout:
#
#   packaging/build.sh            ->  out/dist/pattern-sync-<version>-linux-<arch>.tar.gz
#                                     out/dist/pattern-sync_<version>_<debarch>.deb
#                                     out/dist/pattern-sync-<version>-linux-<arch>.json (build facts)
#
# Options: --no-deb (tarball only). Environment: PYTHON (default .venv/bin/python; a fresh
# checkout gets its .venv from ./dev), OUT (default out), SOURCE_DATE_EPOCH (default: the last
# commit's time, for reproducible archive timestamps).
#
# Steps: PyInstaller one-folder build (packaging/trayapp.spec), ICU's data cut to what Qt uses
# (packaging/linux/shrink_icu.py; needs icupkg from icu-devtools, and gcc), a self-test of the
# frozen app (packaging/bundle_selftest.py: keyring backends, Qt plugins, SVG, ICU, notifier
# data, certifi, clean child environment), `trayapp --version` against pyproject's version,
# icons rendered from resources/icons, the tarball with install.sh/uninstall.sh, and a .deb.
set -euo pipefail
# What is installed must be readable by every user (files 0644, folders and programs 0755) and
# dpkg-deb refuses a DEBIAN folder outside 0755-0775, whatever the builder's own umask is (a
# private 077 is common, and a test process that opened a profile had one).
umask 022
cd "$(dirname "$0")/.."
ROOT=$PWD

APP_ID=trayapp
PACKAGE=pattern-sync
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
OUT=${OUT:-$ROOT/out}
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac
make_deb=1
for arg in "$@"; do
  case "$arg" in
    --no-deb) make_deb=0 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
started=$(now_ms)

# --- build environment ------------------------------------------------------------------------
if [ ! -x "$PYTHON" ]; then
  if ! { [ -x ./dev ] && [ "$PYTHON" = "$ROOT/.venv/bin/python" ]; }; then
    die "no Python at $PYTHON; set PYTHON to a virtualenv with trayapp's dependencies"
  fi
  log "no .venv yet: setting it up with ./dev"
  ./dev run --version >/dev/null
fi
version=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
installed=$("$PYTHON" -c 'from importlib.metadata import version; print(version("pattern-sync"))' 2>/dev/null || true)
if [ "$installed" != "$version" ]; then
  # Package metadata is where the app reads its version; an editable install made before a
  # version bump still says the old number.
  log "refreshing pattern-sync's package metadata ($installed -> $version)"
  "$PYTHON" -m pip install -q --no-deps -e . || die "could not install pattern-sync into $PYTHON"
fi
if ! "$PYTHON" -c 'import PyInstaller' 2>/dev/null; then
  requirement=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["packaging"][0])')
  log "installing $requirement (the packaging extra)"
  "$PYTHON" -m pip install -q "$requirement"
fi
for tool in objdump objcopy nm readelf ldd tar gzip; do command -v "$tool" >/dev/null || die "$tool is needed (binutils, libc-bin, tar, gzip)"; done
for tool in icupkg gcc; do command -v "$tool" >/dev/null || die "$tool is needed to shrink ICU's data (Debian: icu-devtools, gcc)"; done
[ "$make_deb" = 0 ] || command -v dpkg-deb >/dev/null || die "dpkg-deb is needed for the .deb (or pass --no-deb)"

arch=$(uname -m)
base="$PACKAGE-$version-linux-$arch"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
mkdir -p "$OUT"
# One build at a time per output folder: a second one would delete the first one's files.
if command -v flock >/dev/null; then
  exec 9>"$OUT/.build.lock"
  flock -w 900 9 || die "another build in $OUT did not finish within 15 minutes"
fi
work="$OUT/pyinstaller"
stage="$OUT/stage"
dist="$OUT/dist"
rm -rf "$work" "$stage"
mkdir -p "$dist"
rm -f "$dist/$PACKAGE"[-_]"$version"[-_]*

# --- freeze -----------------------------------------------------------------------------------
log "PyInstaller (one folder)"
t0=$(now_ms)
# No --clean: the work folder is fresh anyway, and PyInstaller's cache of stripped binaries
# (keyed by content) saves a third of the time on the next build.
"$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
  --distpath "$work/dist" --workpath "$work/build" packaging/trayapp.spec 2>&1 \
  | grep -v -E "required via ctypes not found|^$" >&2 || true
app="$work/dist/$APP_ID"
[ -x "$app/$APP_ID" ] || die "PyInstaller did not produce $app/$APP_ID (see its output above)"
pyinstaller_ms=$(( $(now_ms) - t0 ))

log "ICU data: keeping what Qt uses"
# 31 MB of ICU locale data and code pages down to ~4 MB (packaging/linux/shrink_icu.py says what
# stays and why); the self-test below checks Qt still finds what it needs.
icu_sizes=$("$PYTHON" packaging/linux/shrink_icu.py "$app") || die "could not shrink ICU's data (see above)"

log "self-test of the frozen app"
report="$work/selftest.json"
if ! env -u QT_QPA_PLATFORM TRAYAPP_BUNDLE_SELFTEST="$report" "$app/$APP_ID"; then
  "$PYTHON" - "$report" <<'EOF' >&2 || true
import json, sys
for name, check in json.load(open(sys.argv[1]))["checks"].items():
    if not check["ok"]:
        print(f"  {name}: {check['error']}")
EOF
  die "the frozen app is missing something (report: $report)"
fi
shown=$("$app/$APP_ID" --version)
case "$shown" in *"$version"*) ;; *) die "trayapp --version says '$shown', pyproject.toml says $version" ;; esac

info=$("$PYTHON" packaging/linux/bundle_info.py "$app")
glibc=$(printf '%s' "$info" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["glibc"])')
missing=$(printf '%s' "$info" | "$PYTHON" -c 'import json,sys; print(" ".join(json.load(sys.stdin)["missing"]))')
[ -z "$missing" ] || die "bundled binaries need libraries nothing provides: $missing"

# --- icons and desktop entry ------------------------------------------------------------------
icon_svg=resources/icons/$APP_ID.svg
[ -f "$icon_svg" ] || icon_svg=resources/icons/tray-ok.svg   # the "all synced" tray icon
[ -f "$icon_svg" ] || die "no application icon: add resources/icons/$APP_ID.svg"
[ -f resources/$APP_ID.desktop.in ] || die "resources/$APP_ID.desktop.in (the desktop entry template) is missing"
icons="$stage/icons/hicolor"
"$PYTHON" packaging/render_icons.py "$icon_svg" "$icons" --name "$APP_ID" >/dev/null

# --- tarball ----------------------------------------------------------------------------------
log "tarball"
tree="$stage/$base"
mkdir -p "$tree/share/applications" "$tree/share/icons"
cp -a "$app" "$tree/app"
cp -a "$icons" "$tree/share/icons/"
cp resources/$APP_ID.desktop.in "$tree/share/applications/$APP_ID.desktop"
install -m 0755 packaging/linux/install.sh packaging/linux/uninstall.sh "$tree/"
printf '%s\n' "$glibc" > "$tree/GLIBC_REQUIRED"
# The distributions named must match the measured version (README.md and docs/install.md say
# the same: tests/packaging/test_bundle.py checks all three agree).
case "$glibc" in
  2.31|2.32) distros="Debian 11, Ubuntu 20.04, Fedora 32 or later" ;;
  2.33|2.34) distros="Debian 12, Ubuntu 22.04, Fedora 35 or later" ;;
  2.35) distros="Debian 12, Ubuntu 22.04, Fedora 36 or later" ;;
  2.36) distros="Debian 12, Ubuntu 22.10, Fedora 37 or later" ;;
  *) distros="a distribution released with glibc $glibc or later" ;;
esac
cat > "$tree/README.txt" <<EOF
Pattern Sync $version for Linux ($arch)

Install for your user (no root needed):   ./install.sh            (or ./install.sh --autostart)
Then start "Pattern Sync" from your application menu, or run: trayapp
Try it without a Google account:         trayapp --demo
Uninstall:                               ~/.local/opt/$PACKAGE/uninstall.sh   (--purge also deletes your data)

Needs a 64-bit Linux with glibc $glibc or newer ($distros)
and a desktop with a system tray (GNOME: the AppIndicator extension). The program folder is
self-contained: Python and Qt are included.
EOF
tarball="$dist/$base.tar.gz"
# Compressed in the background while the .deb is staged and compressed (two cores, two jobs).
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
  -C "$stage" -cf - "$base" | gzip -n -6 > "$tarball.part" &
tar_pid=$!

# --- .deb -------------------------------------------------------------------------------------
deb=""
if [ "$make_deb" = 1 ]; then
  log ".deb"
  debarch=$(dpkg --print-architecture)
  droot="$stage/deb"
  mkdir -p "$droot/DEBIAN" "$droot/opt" "$droot/usr/bin" "$droot/usr/share/applications" \
    "$droot/usr/share/icons" "$droot/usr/share/doc/$PACKAGE"
  cp -a "$app" "$droot/opt/$PACKAGE"
  ln -s "/opt/$PACKAGE/$APP_ID" "$droot/usr/bin/$APP_ID"
  cp -a "$icons" "$droot/usr/share/icons/"
  sed -e "s|^Exec=.*|Exec=/usr/bin/$APP_ID|" -e "s|^Icon=.*|Icon=$APP_ID|" \
    resources/$APP_ID.desktop.in > "$droot/usr/share/applications/$APP_ID.desktop"
  cat > "$droot/usr/share/doc/$PACKAGE/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: Pattern Sync
Comment: /opt/$PACKAGE bundles CPython, Qt/PySide6 (LGPLv3) and the Python libraries listed
 in _internal/*.dist-info, each under its own license.

Files: *
License: MIT
EOF
  depends=$(printf '%s' "$info" | "$PYTHON" -c '
import json, sys
deps = json.load(sys.stdin)["depends"]
glibc = sys.argv[1]
print(", ".join(f"libc6 (>= {glibc})" if d == "libc6" else d for d in deps))' "$glibc")
  cat > "$droot/DEBIAN/control" <<EOF
Package: $PACKAGE
Version: $version
Architecture: $debarch
Maintainer: Pattern Sync developers <noreply@patternsync.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$droot" | cut -f1)
Depends: $depends
Recommends: xdg-utils, gnome-keyring | kwalletmanager | keepassxc
Section: net
Priority: optional
Homepage: https://patternsync.invalid/
Description: tray app that keeps Gmail, Calendar and feed imports in sync locally
 Pattern Sync runs your sync patterns (Gmail importer, Calendar importer, feed importer,
 plugins) on your own computer from the system tray, shows each one's status, and asks you
 to sign in again when Google stops accepting a sign-in. Self-contained: it ships its own
 Python and Qt in /opt/$PACKAGE.
EOF
  find "$droot" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  deb="$dist/${PACKAGE}_${version}_${debarch}.deb"
  # gzip rather than xz/zstd: any dpkg can read it and it takes seconds, not a minute.
  dpkg-deb --root-owner-group -Zgzip -z6 --build "$droot" "$deb" >/dev/null
fi

wait "$tar_pid" || die "could not write $tarball"
mv "$tarball.part" "$tarball"

# --- report -----------------------------------------------------------------------------------
total_ms=$(( $(now_ms) - started ))
unpacked=$(du -sb "$app" | cut -f1)
"$PYTHON" - "$dist/$base.json" <<EOF
import json, os, sys
facts = {
    "version": "$version",
    "arch": "$arch",
    "glibc_required": "$glibc",
    "build_seconds": round($total_ms / 1000, 1),
    "pyinstaller_seconds": round($pyinstaller_ms / 1000, 1),
    "unpacked_bytes": $unpacked,
    "icu_data_bytes": dict(zip(("before", "after"), map(int, "$icu_sizes".split()))),
    "tarball": os.path.basename("$tarball"),
    "tarball_bytes": os.path.getsize("$tarball"),
    "deb": os.path.basename("$deb") if "$deb" else None,
    "deb_bytes": os.path.getsize("$deb") if "$deb" else None,
}
json.dump(facts, open(sys.argv[1], "w"), indent=2)
mb = lambda n: f"{n / 1e6:.0f} MB"
print(f"built Pattern Sync {facts['version']} in {facts['build_seconds']} s "
      f"(PyInstaller {facts['pyinstaller_seconds']} s): {mb(facts['unpacked_bytes'])} unpacked")
print(f"  {os.path.relpath('$tarball')}  {mb(facts['tarball_bytes'])}")
if facts["deb"]:
    print(f"  {os.path.relpath('$deb')}  {mb(facts['deb_bytes'])}")
EOF
