#!/usr/bin/env bash
# Remove a per-user Pattern Sync install made by install.sh.
#
#   ~/.local/opt/pattern-sync/uninstall.sh [--purge] [--dir DIR] [--force]
#
#   --purge   also delete your Pattern Sync data: the profile (settings, charms, imported
#             items, logs) in ~/.local/share/trayapp, its config/cache/state folders, and the
#             sign-ins it saved in your keyring. Without it your data stays for a reinstall
#             (this script goes with the program: it then says how to delete the data by hand).
#   --dir DIR the program folder, if it was installed with --dir
#   --force   uninstall even while Pattern Sync is running
#
# It removes what install.sh recorded in the install's .install-manifest, the autostart entry
# (whether the installer or the app's Settings made it) when it points at this install, the
# program folder, and then every directory the installer had to create, if it is now empty.
set -euo pipefail

APP_ID=trayapp
FOLDER_NAME=pattern-sync
SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { printf 'uninstall.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '%s\n' "$*"; }
usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

purge=0
force=0
target=""
while [ $# -gt 0 ]; do
  case "$1" in
    --purge) purge=1 ;;
    --force) force=1 ;;
    --dir) [ $# -ge 2 ] || die "--dir needs a directory"; target=$2; shift ;;
    --dir=*) target=${1#--dir=} ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done

[ -n "${HOME:-}" ] || die "HOME is not set"
xdg() { case "${1:-}" in /*) printf '%s' "$1" ;; *) printf '%s' "$2" ;; esac; }
data_home=$(xdg "${XDG_DATA_HOME:-}" "$HOME/.local/share")
config_home=$(xdg "${XDG_CONFIG_HOME:-}" "$HOME/.config")
cache_home=$(xdg "${XDG_CACHE_HOME:-}" "$HOME/.cache")
state_home=$(xdg "${XDG_STATE_HOME:-}" "$HOME/.local/state")

if [ -z "$target" ]; then
  # Run from inside an install (the usual way): that install. Otherwise the default place.
  if [ -f "$SELF_DIR/.install-manifest" ]; then target=$SELF_DIR; else target="$HOME/.local/opt/$FOLDER_NAME"; fi
fi
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
target=${target%/}
manifest="$target/.install-manifest"
exe="$target/$APP_ID"

if [ ! -f "$manifest" ]; then
  say "Pattern Sync is not installed in $target (no .install-manifest there); nothing to do."
  exit 0
fi

# A running app would keep going from deleted files and could rewrite its autostart entry.
running=()
for proc in /proc/[0-9]*; do
  [ "$(readlink "$proc/exe" 2>/dev/null || true)" = "$exe" ] && running+=("${proc#/proc/}")
done
if [ ${#running[@]} -gt 0 ] && [ "$force" = 0 ]; then
  die "Pattern Sync is running (pid ${running[*]}); quit it from its tray menu first, or pass --force"
fi

declare -a dirs=()
while IFS= read -r line; do
  case "$line" in
    "file "*) rm -f -- "${line#file }" ;;
    "link "*)
      link=${line#link }
      # Only our symlink: something else may have taken the name since.
      if [ -L "$link" ] && [ "$(readlink "$link")" = "$exe" ]; then rm -f -- "$link"; fi ;;
    "dir "*) dirs+=("${line#dir }") ;;
  esac
done < "$manifest"

autostart="$config_home/autostart/$APP_ID.desktop"
if [ -f "$autostart" ]; then
  if grep -qF -- "$target/" "$autostart"; then
    rm -f -- "$autostart"
  else
    say "note: $autostart starts another copy of Pattern Sync; left as is"
  fi
fi

# The program folder: only ever the one holding our manifest.
if [ -z "$target" ] || [ "$target" = "/" ] || [ "$target" = "$HOME" ]; then die "refusing to delete $target"; fi
rm -rf -- "$target"

if [ "$purge" = 1 ]; then
  for dir in "$data_home/$APP_ID" "$config_home/$APP_ID" "$cache_home/$APP_ID" "$state_home/$APP_ID"; do
    [ -e "$dir" ] && rm -rf -- "$dir" && say "deleted $dir"
  done
  # Sign-ins live in the keyring under the service name "trayapp". secret-tool may need an
  # unlocked keyring; never let it hang the uninstall.
  keyring_note="note: saved sign-ins may remain in your keyring (service \"$APP_ID\"); remove them with your keyring manager (e.g. Seahorse)"
  if command -v secret-tool >/dev/null && [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
    timeout 10 secret-tool clear service "$APP_ID" 2>/dev/null || say "$keyring_note"
  else
    say "$keyring_note"
  fi
  # Base directories the app created on a fresh account, if nothing else uses them.
  for dir in "$state_home" "$cache_home" "$config_home" "$data_home" "$HOME/.local"; do
    case "$dir" in "$HOME"/*) rmdir -- "$dir" 2>/dev/null || true ;; esac
  done
fi

# Directories the installer created, deepest first, if they are empty now.
if [ ${#dirs[@]} -gt 0 ]; then
  while IFS= read -r dir; do
    rmdir -- "$dir" 2>/dev/null || true
  done < <(printf '%s\n' "${dirs[@]}" | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-)
fi

say "Pattern Sync is uninstalled."
if [ "$purge" = 0 ] && [ -d "$data_home/$APP_ID" ]; then
  # This script is gone with the program folder, so no "run again with --purge": say how.
  say "  your data is still in $data_home/$APP_ID for a reinstall; to delete it as well:"
  say "    rm -rf '$data_home/$APP_ID'   (saved sign-ins: your keyring, service \"$APP_ID\")"
fi
