#!/usr/bin/env bash
# Installs the real programs the test suite runs beside certbound, from Debian/Ubuntu packages.
# `npm test` runs it first (the "pretest" script); `npm run test:setup` runs it alone.
#
#   nginx-light haproxy apache2 caddy   test/lb: the load balancers' certificate headers
#   prometheus                          promtool: test/ops metrics, test/deploy alert rules
#   kubernetes-client                   kubectl kustomize: test/deploy (only when kubectl is absent)
#   openssl redis-server                OCSP responders and CAs (test/revocation), Redis (test/shared, shared-state)
#
# Nothing missing: exits at once, no apt call. Something missing: as root (or through sudo)
# `apt-get update` once, then `apt-get install -y --no-install-recommends` of what is missing.
# When it cannot install, it prints what is missing and the command that installs it, and exits 0:
# the suite still runs and the tests that need those programs fail, saying so.
# CERTBOUND_SKIP_TEST_SETUP=1 skips it altogether.
set -uo pipefail

if [ -n "${CERTBOUND_SKIP_TEST_SETUP:-}" ] && [ "${CERTBOUND_SKIP_TEST_SETUP}" != 0 ]; then exit 0; fi

packages=(nginx-light haproxy apache2 caddy prometheus openssl redis-server)
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)

say() { printf 'test-setup: %s\n' "$*" >&2; }

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  # Not Debian or Ubuntu: name the programs the suite looks for instead.
  program() { case $1 in nginx-light) echo nginx ;; prometheus) echo promtool ;; kubernetes-client) echo kubectl ;; *) echo "$1" ;; esac; }
  absent=()
  for p in "${packages[@]}"; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$(program "$p")" >/dev/null 2>&1 || absent+=("$(program "$p")")
  done
  [ ${#absent[@]} -eq 0 ] && exit 0
  say "not found: ${absent[*]}"
  say "no apt-get here: install them with your package manager (Debian/Ubuntu packages: ${packages[*]})"
  say "the tests that need them will fail"
  exit 0
fi

# One dpkg-query for all of them. Not `dpkg -s`: it also succeeds for a removed package whose
# configuration files remain; the status must be "installed".
installed=" $(dpkg-query -W -f='${Package}=${db:Status-Status} ' "${packages[@]}" 2>/dev/null) "
missing=()
for p in "${packages[@]}"; do
  [[ $installed == *" $p=installed "* ]] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

command="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
[ "$(id -u)" -eq 0 ] || command="sudo sh -c '$command'"
cannot() {
  say "$1"
  say "missing Debian packages: ${missing[*]}"
  say "install them with:  $command"
  say "the tests that need them will fail"
  exit 0
}

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  # With a terminal sudo may ask for a password; without one (CI) it must not wait for one.
  if [ -t 0 ]; then as_root=(sudo); else as_root=(sudo -n); fi
else
  cannot "not root and no sudo: cannot install"
fi

say "installing ${missing[*]} (apt-get${as_root[0]:+, through sudo})"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Another apt run (a second `npm test` installing the same packages) holds the lock: wait for it.
apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
if ! "${apt[@]}" update -qq >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  cannot "apt-get update failed"
fi
if ! "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  cannot "apt-get install failed"
fi
say "installed ${missing[*]}"
