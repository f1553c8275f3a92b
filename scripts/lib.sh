# Shared steps of scripts/test.sh and scripts/quickstart.sh (sourced, not run).
# Everything heavy is cached outside the clone so a fresh checkout (and CI) reuses it.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${APPLIANCE_VENV:-$REPO/.venv}
PYTHON=${PYTHON:-python3}

log() { printf '\n== %s\n' "$*" >&2; }

# Debian packages listed in scripts/system-packages.txt: "package" or "package:command" (the
# package is then skipped when the command is already on PATH, however it was installed).
install_system_packages() {
  local missing=() line pkg cmd
  while read -r line; do
    line=${line%%#*}; line=$(echo "$line" | xargs)
    [ -n "$line" ] || continue
    pkg=${line%%:*}; cmd=${line#*:}
    if [ "$cmd" != "$line" ]; then
      command -v "$cmd" >/dev/null && continue
    fi
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done < "$REPO/scripts/system-packages.txt"
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The project's venv with the given extras (editable install of this checkout).
install_venv() {
  local extras=$1
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  log "installing the appliance into $VENV ($extras)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -e "$REPO[$extras]" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  "$VENV/bin/python" -c "import appliance.app, audit" # fail now if the install is broken
}
