# Helpers shared by the service scripts. Sourced, not run.

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Installs Debian packages when a command is missing. Needs root (or sudo).
ensure_packages() {
  local probe=$1; shift
  if command -v "$probe" >/dev/null 2>&1 || ls $probe >/dev/null 2>&1; then return 0; fi
  echo "installing $*" >&2
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "error: $* missing and not root (no sudo) to install them" >&2; return 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Waits until "$@" succeeds, up to $WAIT_SECONDS (default 60).
wait_for() {
  local deadline=$((SECONDS + ${WAIT_SECONDS:-60}))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.25
  done
}

# Runs a command as the given user when we are root (servers refuse to run as root).
as_user() {
  local user=$1; shift
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}
