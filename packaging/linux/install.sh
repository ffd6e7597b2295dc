#!/usr/bin/env bash
# Install Pattern Sync for the current user, from an unpacked release tarball. No root needed.
#
#   ./install.sh [--autostart] [--dir DIR]
#
#   --autostart   also start Pattern Sync when you log in (you can change this later in
#                 Settings; ./uninstall.sh removes it)
#   --dir DIR     install the program folder here instead of ~/.local/opt/pattern-sync
#
# What goes where (XDG base directories are honoured):
#   ~/.local/opt/pattern-sync/               the program (self-contained; Python not needed)
#   ~/.local/bin/trayapp                     a symlink, so `trayapp` works in a terminal
#   ~/.local/share/applications/trayapp.desktop          the application menu entry
#   ~/.local/share/icons/hicolor/*/apps/trayapp.{png,svg} the icon, 16 px to scalable
#   ~/.config/autostart/trayapp.desktop      only with --autostart
# Every file and every directory this script creates is listed in
# ~/.local/opt/pattern-sync/.install-manifest, which uninstall.sh follows, so uninstalling
# removes exactly what was added. Running it again upgrades in place.
set -euo pipefail

APP_ID=trayapp               # command, desktop file id and icon name
FOLDER_NAME=pattern-sync
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '%s\n' "$*"; }

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

autostart=0
target=""
while [ $# -gt 0 ]; do
  case "$1" in
    --autostart) autostart=1 ;;
    --dir) [ $# -ge 2 ] || die "--dir needs a directory"; target=$2; shift ;;
    --dir=*) target=${1#--dir=} ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done

if [ -z "${HOME:-}" ] || [ ! -d "$HOME" ]; then die "HOME is not set to an existing directory"; fi
case "$HOME" in *$'\n'*) die "HOME contains a newline; this installer cannot record such paths" ;; esac

# XDG base directories: only absolute values count (the spec says to ignore relative ones).
xdg() { case "${1:-}" in /*) printf '%s' "$1" ;; *) printf '%s' "$2" ;; esac; }
data_home=$(xdg "${XDG_DATA_HOME:-}" "$HOME/.local/share")
config_home=$(xdg "${XDG_CONFIG_HOME:-}" "$HOME/.config")
bin_dir="$HOME/.local/bin"
target=${target:-$HOME/.local/opt/$FOLDER_NAME}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
target=${target%/}
manifest="$target/.install-manifest"

[ -x "$HERE/app/$APP_ID" ] || die "no app/$APP_ID next to this script: run it from the unpacked release folder"
# The bundle carries its own Python and Qt but uses the system's C library: fail here, with the
# reason, rather than from the application menu where nobody sees the error.
if ! version_line=$("$HERE/app/$APP_ID" --version 2>&1); then
  printf '%s\n' "$version_line" >&2
  die "the program in this bundle does not run on this system (see above); it needs a 64-bit Linux with glibc $(cat "$HERE/GLIBC_REQUIRED" 2>/dev/null || echo 2.36) or newer"
fi

# Carry over the directories an earlier install created, so an upgrade followed by an
# uninstall still removes them.
declare -a created_dirs=()
if [ -f "$manifest" ]; then
  while IFS= read -r line; do
    case "$line" in "dir "*) created_dirs+=("${line#dir }") ;; esac
  done < "$manifest"
fi
declare -a files=()

# mkdir -p that remembers which directories did not exist before.
make_dir() {
  local dir=$1 missing=()
  while [ ! -d "$dir" ]; do missing=("$dir" "${missing[@]}"); dir=$(dirname "$dir"); done
  for dir in "${missing[@]}"; do
    mkdir "$dir"
    created_dirs+=("$dir")
  done
}

install_file() {  # SOURCE DEST [MODE]
  make_dir "$(dirname "$2")"
  cp -f "$1" "$2.tmp-install"
  chmod "${3:-0644}" "$2.tmp-install"
  mv -f "$2.tmp-install" "$2"
  files+=("$2")
}

# Desktop entry Exec values are quoted by their own rules (not the shell's): plain when safe,
# otherwise double-quoted with \" \` \$ \\ escaped, then backslashes doubled for the file format.
exec_quote() {
  local s=$1
  if [[ "$s" =~ ^[A-Za-z0-9_./+:@%,=-]+$ ]]; then printf '%s' "$s"; return; fi
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//\`/\\\`}; s=${s//\$/\\\$}
  s="\"$s\""
  printf '%s' "${s//\\/\\\\}"
}

desktop_entry() {  # EXEC_PATH > entry
  local exec_value tryexec
  exec_value=$(exec_quote "$1")
  tryexec=${1//\\/\\\\}
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      Exec=*) printf 'Exec=%s\n' "$exec_value"; printf 'TryExec=%s\n' "$tryexec" ;;
      Icon=*) printf 'Icon=%s\n' "$APP_ID" ;;
      TryExec=*) ;;
      *) printf '%s\n' "$line" ;;
    esac
  done < "$HERE/share/applications/$APP_ID.desktop"
}

# 1. The program: copy beside the old one, then swap, so a failed copy leaves the old install.
make_dir "$(dirname "$target")"
rm -rf "$target.new-install"
cp -a "$HERE/app" "$target.new-install"
cp -f "$HERE/uninstall.sh" "$target.new-install/uninstall.sh"
chmod 0755 "$target.new-install/uninstall.sh"
upgrading=0
if [ -e "$target" ]; then
  [ -f "$manifest" ] || { rm -rf "$target.new-install"; die "$target exists but was not made by this installer; move it away or use --dir"; }
  upgrading=1
  rm -rf "$target.old-install"
  mv "$target" "$target.old-install"
fi
mv "$target.new-install" "$target"
rm -rf "$target.old-install"
[[ " ${created_dirs[*]} " == *" $target "* ]] || created_dirs+=("$target")
exe="$target/$APP_ID"

# 2. Application menu entry and icons.
tmp_entry=$(mktemp)
trap 'rm -f "$tmp_entry"' EXIT
desktop_entry "$exe" > "$tmp_entry"
install_file "$tmp_entry" "$data_home/applications/$APP_ID.desktop"
while IFS= read -r -d '' icon; do
  rel=${icon#"$HERE/share/icons/"}
  install_file "$icon" "$data_home/icons/$rel"
done < <(find "$HERE/share/icons" -type f -print0 | sort -z)
# Refresh caches only where the desktop already keeps one: creating them would leave files
# behind that are not ours.
if [ -f "$data_home/icons/hicolor/icon-theme.cache" ] && command -v gtk-update-icon-cache >/dev/null; then
  gtk-update-icon-cache -q -t -f "$data_home/icons/hicolor" || true
fi
if [ -f "$data_home/applications/mimeinfo.cache" ] && command -v update-desktop-database >/dev/null; then
  update-desktop-database -q "$data_home/applications" || true
fi

# 3. The command, unless something else already answers to it.
link="$bin_dir/$APP_ID"
linked=0
if [ -L "$link" ] && [ "$(readlink "$link")" = "$exe" ]; then
  linked=1
elif [ -L "$link" ] && [ ! -e "$link" ]; then
  # A dangling link (say, to a copy deleted by hand) serves nobody: take the name.
  ln -sfn "$exe" "$link"
  linked=1
elif [ -e "$link" ] || [ -L "$link" ]; then
  say "note: $link already exists and is not ours; left as is (the program is $exe)"
else
  make_dir "$bin_dir"
  ln -s "$exe" "$link"
  linked=1
fi

# 4. Autostart: the same entry and file name the app's own Settings toggle uses.
if [ "$autostart" = 1 ]; then
  desktop_entry "$exe" > "$tmp_entry"
  install_file "$tmp_entry" "$config_home/autostart/$APP_ID.desktop"
fi

# 5. The manifest uninstall.sh follows.
{
  printf '# Pattern Sync per-user install; read by uninstall.sh\n'
  printf 'version %s\n' "$version_line"
  [ "$linked" = 1 ] && printf 'link %s\n' "$link"
  for f in "${files[@]}"; do printf 'file %s\n' "$f"; done
  for d in "${created_dirs[@]}"; do printf 'dir %s\n' "$d"; done
} > "$manifest"

[ "$upgrading" = 1 ] && verb=Upgraded || verb=Installed
say "$verb $version_line in $target"
say "  start it from your application menu (Pattern Sync), or run: $APP_ID"
case ":$PATH:" in *":$bin_dir:"*) ;; *) [ "$linked" = 1 ] && say "  ($bin_dir is not on your PATH; the menu entry works regardless)" ;; esac
[ "$autostart" = 1 ] && say "  it will start when you log in ($config_home/autostart/$APP_ID.desktop)"
case "${XDG_CURRENT_DESKTOP:-}" in
  *GNOME*) say "  GNOME shows tray icons only with the AppIndicator extension (gnome-shell-extension-appindicator)" ;;
esac
say "  to uninstall: $target/uninstall.sh   (add --purge to delete your Pattern Sync data too)"
